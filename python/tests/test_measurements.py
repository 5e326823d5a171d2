"""Measurements, printed and never asserted: status() latency and listener delivery cost."""

import statistics
import threading
import time

import ferry
from helpers import WAIT, fast_config, poll

STATUS_CALLS = 10_000
EVENTS = 5_000


def report(capsys, text):
    with capsys.disabled():
        print(f"\n[measurement] {text}")


def test_status_call_latency(server, tmp_path, capsys):
    task_id = ferry.download(server.url, str(tmp_path / "s.bin"))
    poll(lambda: ferry.status(task_id).state == ferry.TaskState.COMPLETED)
    samples = []
    clock = time.perf_counter_ns
    for _ in range(STATUS_CALLS):
        start = clock()
        ferry.status(task_id)
        samples.append(clock() - start)
    samples.sort()
    report(capsys, f"status(): median {statistics.median(samples) / 1000:.1f} µs, "
                   f"p99 {samples[int(len(samples) * 0.99)] / 1000:.1f} µs over {STATUS_CALLS} calls")


def test_listener_delivery_cost(serve, tmp_path, capsys):
    server = serve(64 << 20, rate=100_000)  # the one running task trickles
    queued = 0
    first = None
    all_queued = threading.Event()

    def listener(event):
        nonlocal queued, first
        if event.is_state_changed() and event._from is None and event.to == ferry.TaskState.QUEUED:
            if first is None:
                first = time.perf_counter()
            queued += 1
            if queued == EVENTS:
                all_queued.set()

    out = tmp_path / "out"
    out.mkdir()
    requests = [ferry.make_request(server.url, out / f"{i}.bin") for i in range(EVENTS)]
    with ferry.Manager(tmp_path / "state", fast_config(max_running_tasks=1)) as manager:
        manager.add_listener(listener)
        start = time.perf_counter()
        items = manager.enqueue_batch(requests)
        enqueued = time.perf_counter()
        delivered = all_queued.wait(WAIT)
        end = time.perf_counter()
        manager.pause_all()
    assert all(item.is_enqueued() for item in items)
    assert delivered, f"only {queued} of {EVENTS} Queued events arrived"
    report(capsys, f"listener: all {EVENTS} Queued events {(end - start) * 1000:.0f} ms after enqueue_batch started "
                   f"= {(end - start) / EVENTS * 1e6:.1f} µs/event; enqueue_batch took {(enqueued - start) * 1000:.0f} ms; "
                   f"first to last event {(end - first) * 1000:.0f} ms = {(end - first) / EVENTS * 1e6:.1f} µs/event")

"""Real-world misuse and stress: threads hammering one manager, misbehaving callbacks, abandoned
waits, shutdown from another handle, hostile strings, big batches, process exit."""

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest

import ferry
from helpers import WAIT, fast_config, poll, sha256_of

State = ferry.TaskState
Code = ferry.ErrorCode


def listener_threads() -> int:
    """Threads of this process named `ferry-listener` (one per live listener registration)."""
    count = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                count += f.read().strip() == "ferry-listener"
        except OSError:  # the thread ended meanwhile
            pass
    return count


def run_bounded(fn, timeout: float):
    """Runs `fn` on a daemon thread; fails the test if it has not returned within `timeout`."""
    outcome = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # reported to the test below
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not return within {timeout}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def test_many_threads_hammering_one_manager(serve, manager, tmp_path):
    server = serve(1 << 20, rate=4_000_000)
    ids = [manager.download(server.url, tmp_path / f"{i}.bin", task_id=f"t{i}") for i in range(8)]
    errors = []
    stop = time.monotonic() + 1.5

    def hammer(n):
        ops = 0
        while time.monotonic() < stop:
            task_id = ids[(n + ops) % len(ids)]
            try:
                [manager.status, manager.pause, manager.resume, manager.status][ops % 4](task_id)
                manager.list()
                # Enqueueing an existing id is idempotent, whatever state the task is in.
                assert manager.download(server.url, tmp_path / f"{ids.index(task_id)}.bin", task_id=task_id) == task_id
            except ferry.DownloadError as exc:
                if exc.code != Code.INVALID_STATE:  # e.g. pausing a task that just completed
                    errors.append(exc)
            except BaseException as exc:
                errors.append(exc)
            ops += 1
        return ops

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads), "a caller thread is stuck"
    assert errors == []
    manager.resume_all()
    for i, task_id in enumerate(ids):
        assert manager.wait(task_id, timeout=WAIT).state == State.COMPLETED
        assert sha256_of(tmp_path / f"{i}.bin") == server.sha256


def test_raising_and_blocking_listeners_do_not_delay_others(serve, manager, tmp_path):
    server = serve(256 << 10)
    blocked = threading.Event()

    def raising(event):
        raise ValueError("raises on every event (expected by the test)")

    def blocking(event):
        blocked.wait(10)  # far longer than the download

    prompt_states = []
    done = threading.Event()

    def prompt(event):
        if event.is_state_changed():
            prompt_states.append(event.to)
            if event.to == State.COMPLETED:
                done.set()

    manager.add_listener(raising)
    manager.add_listener(blocking)
    manager.add_listener(prompt)
    started = time.monotonic()
    task_id = manager.download(server.url, tmp_path / "x.bin")
    assert manager.wait(task_id, timeout=WAIT).state == State.COMPLETED
    assert done.wait(5), "a well-behaved listener was held up by a blocked one"
    assert time.monotonic() - started < 8
    assert prompt_states == [State.QUEUED, State.RUNNING, State.COMPLETED]
    blocked.set()


def test_listeners_added_and_cancelled_in_a_loop_leave_nothing_behind(manager):
    before = listener_threads()
    refs = []
    for _ in range(1000):
        registration = manager.add_listener(lambda event: None)
        registration.cancel()
        refs.append(weakref.ref(registration))
        del registration
    gc.collect()
    # Cancelled registrations are not kept alive by the manager wrapper (it forgets them when the
    # next listener is added, so at most the last one is left)...
    assert sum(r() is not None for r in refs) <= 1
    # ...and its delivery thread ends.
    poll(lambda: listener_threads() <= before, timeout=10)


def test_sync_event_iterator_ends_when_another_handle_shuts_the_manager_down(tmp_path):
    state = tmp_path / "state"
    first = ferry.Manager(state, fast_config())
    second = ferry.Manager(state, fast_config())  # the same engine manager
    events = second.events()
    seen = []
    consumer = threading.Thread(target=lambda: seen.extend(events), daemon=True)
    consumer.start()
    time.sleep(0.1)
    started = time.process_time()
    first.close()
    consumer.join(10)
    assert not consumer.is_alive(), "the iterator went on after the manager shut down"
    assert time.process_time() - started < 2, "the iterator spun on the CPU"
    second.close()


def test_async_event_iterator_ends_when_the_manager_shuts_down(tmp_path):
    async def main():
        manager = ferry.Manager(tmp_path / "state", fast_config())
        events = manager.events()

        async def consume():
            return [event async for event in events]

        consumer = asyncio.ensure_future(consume())
        await asyncio.sleep(0.1)
        await manager.ffi.shutdown()  # not through the wrapper
        got = await asyncio.wait_for(consumer, 10)
        await manager.aclose()
        return got

    assert asyncio.run(main()) == []


def test_cancelling_wait_async_leaves_the_task_running_and_shutdown_prompt(serve, tmp_path):
    server = serve(8 << 20, rate=1_000_000)

    async def main():
        async with ferry.Manager(tmp_path / "state", fast_config()) as manager:
            task_id = manager.download(server.url, tmp_path / "slow.bin", task_id="slow")
            waiters = [asyncio.ensure_future(manager.wait_async(task_id)) for _ in range(50)]
            await asyncio.sleep(0.3)
            for w in waiters:
                w.cancel()
            results = await asyncio.gather(*waiters, return_exceptions=True)
            assert all(isinstance(r, asyncio.CancelledError) for r in results)
            status = manager.status(task_id)
            assert status.state == State.RUNNING
            started = time.monotonic()
        return time.monotonic() - started

    shutdown_took = run_bounded(lambda: asyncio.run(main()), 30)
    assert shutdown_took < 10


def test_calls_after_close_raise_shut_down(server, tmp_path):
    manager = ferry.Manager(tmp_path / "state", fast_config())
    task_id = manager.download(server.url, tmp_path / "a.bin")
    manager.close()
    manager.close()  # twice is fine
    for call in (lambda: manager.status(task_id), lambda: manager.download(server.url, tmp_path / "b.bin"),
                 lambda: manager.pause(task_id), lambda: manager.cancel(task_id), lambda: manager.list(),
                 lambda: manager.wait(task_id, timeout=5), lambda: manager.add_listener(print)):
        with pytest.raises(ferry.DownloadError.Stopped) as info:
            call()
        assert info.value.code == Code.SHUT_DOWN

    # The engine manager itself, shut down but still referenced: typed errors, waits end at once.
    engine = ferry.DownloadManager.open(str(tmp_path / "state2"))
    asyncio.run(engine.shutdown())
    with pytest.raises(ferry.DownloadError.Stopped) as info:
        engine.enqueue(ferry.make_request(server.url, tmp_path / "c.bin"))
    assert info.value.code == Code.SHUT_DOWN
    assert engine.list() == []
    asyncio.run(engine.shutdown())  # twice is fine


def test_state_dir_that_is_a_file_is_a_typed_error(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"x")
    for path in (not_a_dir, not_a_dir / "state"):
        with pytest.raises(ferry.DownloadError.Storage) as info:
            ferry.Manager(path)
        assert info.value.code == Code.STORAGE_IO
    if os.geteuid() != 0:  # root ignores permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ferry.DownloadError.Storage) as info:
            ferry.Manager(locked / "state")
        assert info.value.code == Code.PERMISSION_DENIED


def test_strings_python_cannot_encode_are_typed_errors(server, manager, tmp_path):
    # A file name decoded with surrogateescape (os.listdir of a non-UTF-8 name) holds a lone surrogate.
    bad = os.fsdecode(b"\xff.bin")
    cases = [
        (lambda: manager.download(server.url, tmp_path / bad), Code.DESTINATION_NOT_WRITABLE),
        (lambda: manager.download(server.url + "/\udcff", tmp_path / "u.bin"), Code.INVALID_URL),
        (lambda: manager.download(server.url, tmp_path / "t.bin", task_id="\udcff"), Code.INVALID_TASK_ID),
        (lambda: manager.download(server.url, tmp_path / "h.bin", headers={"X-A": "\udcff"}), Code.INVALID_HEADER),
    ]
    for call, code in cases:
        with pytest.raises(ferry.DownloadError.InvalidInput) as info:
            call()
        assert info.value.code == code
    items = manager.enqueue_batch([ferry.make_request(server.url, tmp_path / bad)])
    assert items[0].is_rejected() and items[0].error.code == Code.DESTINATION_NOT_WRITABLE
    mixed = manager.enqueue_batch([ferry.make_request(server.url, tmp_path / "ok.bin", task_id="ok"),
                                   ferry.make_request(server.url, tmp_path / "bad.bin", task_id="\udcff"),
                                   ferry.make_request("ftp://x/y", tmp_path / "ftp.bin")])
    assert [m.is_enqueued() for m in mixed] == [True, False, False]
    assert [m.error.code for m in mixed[1:]] == [Code.INVALID_TASK_ID, Code.UNSUPPORTED_SCHEME]
    for call in (manager.status, manager.cancel, ferry.status, ferry.cancel):
        with pytest.raises(ferry.DownloadError.InvalidInput) as info:
            call("\udcff")
        assert info.value.code == Code.TASK_NOT_FOUND
    with pytest.raises(ferry.DownloadError.InvalidInput) as info:
        ferry.download(server.url, tmp_path / bad)
    assert info.value.code == Code.DESTINATION_NOT_WRITABLE
    assert manager.wait("ok", timeout=WAIT).state == State.COMPLETED
    assert [t.task_id for t in manager.list()] == ["ok"]


def test_huge_and_odd_strings(server, manager, tmp_path):
    with pytest.raises(ferry.DownloadError.InvalidInput) as info:
        manager.download(server.url, tmp_path / "x.bin", task_id="a" * 10_000_000)
    assert info.value.code == Code.INVALID_TASK_ID
    with pytest.raises(ferry.DownloadError.InvalidInput) as info:
        manager.download(server.url + "?" + "q" * 5_000_000, tmp_path / ("n" * 300))
    assert info.value.code == Code.DESTINATION_NOT_WRITABLE
    with pytest.raises(ferry.DownloadError.InvalidInput) as info:
        manager.status("\x00")
    assert info.value.code == Code.TASK_NOT_FOUND
    unicode_id = "téléchargement-🚢-\u202e"
    task_id = manager.download(server.url, tmp_path / "ünïcode 🚢.bin", task_id=unicode_id)
    assert task_id == unicode_id
    assert manager.wait(task_id, timeout=WAIT).state == State.COMPLETED
    assert sha256_of(tmp_path / "ünïcode 🚢.bin") == server.sha256


def test_error_messages_hide_credentials_and_query(serve, manager, tmp_path):
    server = serve(1 << 10)
    secret = "s3cr3t-TOKEN"
    host = server.base.split("://", 1)[1]
    closed_port = "http://127.0.0.1:9"  # discard port: nobody listens
    urls = [
        f"http://user:{secret}@{host}/status/404?sig={secret}",
        f"{closed_port}/file?sig={secret}",
        f"http://user:{secret}@{host}/loop/a?x={secret}",
    ]
    for i, url in enumerate(urls):
        task_id = manager.download(url, tmp_path / f"{i}.bin")
        status = manager.wait(task_id, timeout=WAIT)
        assert status.state == State.FAILED
        assert secret not in status.url and secret not in status.error.message, status.error.message
    with pytest.raises(ferry.DownloadError) as info:
        ferry.download_url(f"http://user:{secret}@{host}/status/404?sig={secret}", timeout=WAIT)
    assert info.value.code == Code.NOT_FOUND and secret not in str(info.value)


def test_slow_chunk_sinks_do_not_stall_other_downloads(serve, manager, tmp_path):
    server = serve(1 << 20)
    release = threading.Event()
    entered = threading.Semaphore(0)

    def stuck(chunk):
        entered.release()
        release.wait(30)

    # More stuck stream callbacks than the engine has worker threads.
    streams = [manager.enqueue_stream(ferry.make_request(server.url), stuck) for _ in range(4)]
    for _ in range(4):
        assert entered.acquire(timeout=WAIT)
    try:
        manager.limits = ferry.Limits(max_running_tasks=8)
        task_id = manager.download(server.url, tmp_path / "other.bin")
        status = run_bounded(lambda: manager.wait(task_id, timeout=15), 20)
        assert status.state == State.COMPLETED
    finally:
        release.set()
    for stream_id in streams:
        assert manager.wait(stream_id, timeout=WAIT).state == State.COMPLETED


def test_batch_of_ten_thousand(serve, manager, tmp_path):
    server = serve(4 << 20, rate=100_000)  # no task finishes during the test
    manager.limits = ferry.Limits(max_running_tasks=1)
    queued = threading.Semaphore(0)
    manager.add_listener(lambda e: e.is_state_changed() and e.to == State.QUEUED and queued.release())
    requests = [ferry.make_request(server.url, tmp_path / f"{i}.bin", task_id=f"b{i}") for i in range(10_000)]
    started = time.monotonic()
    items = manager.enqueue_batch(requests)
    took = time.monotonic() - started
    print(f"\n[measurement] enqueue_batch of 10,000 file requests: {took * 1000:.0f} ms")
    assert [i.task_id for i in items] == [f"b{i}" for i in range(10_000)]
    # Every QUEUED event arrives: none is dropped, however far the listener is behind.
    for _ in range(10_000):
        assert queued.acquire(timeout=WAIT)
    assert manager.pause_all() == 10_000
    again = manager.enqueue_batch(requests[:100])  # idempotent
    assert all(i.is_enqueued() for i in again)


def test_seed_api_is_idempotent_by_task_id(serve, tmp_path):
    server = serve(64 << 10)
    slow_server = serve(8 << 20, rate=500_000)
    dest = tmp_path / "seed.bin"
    task_id = ferry.download(server.url, dest, "seed-twice")
    assert ferry.download(server.url, dest, "seed-twice") == task_id
    poll(lambda: ferry.status(task_id).state == State.COMPLETED)
    assert ferry.download(server.url, dest, "seed-twice") == task_id  # even once completed
    ferry.cancel(task_id)  # cancelling a finished task does nothing, twice
    ferry.cancel(task_id)
    assert ferry.status(task_id).state == State.COMPLETED
    assert sha256_of(dest) == server.sha256

    slow = ferry.download(slow_server.url, tmp_path / "seed2.bin", "seed-cancel")
    ferry.cancel(slow)
    ferry.cancel(slow)
    # A running task turns cancelled once its transfer stopped and its partial file is gone.
    poll(lambda: ferry.status(slow).state == State.CANCELLED, timeout=10)
    ferry.cancel(slow)
    assert not (tmp_path / "seed2.bin.part").exists()
    with pytest.raises(ferry.DownloadError.InvalidInput) as info:
        ferry.status("seed-never-enqueued")
    assert info.value.code == Code.TASK_NOT_FOUND


def test_process_exits_with_a_busy_listener_and_no_close(serve, tmp_path):
    server = serve(4 << 20, rate=1_000_000)
    script = textwrap.dedent(f"""
        import threading, time, ferry
        m = ferry.Manager({str(tmp_path / 'state')!r})
        hold = threading.Event()
        m.add_listener(lambda e: hold.wait(60))      # stuck in Python when the interpreter exits
        m.add_listener(lambda e: 1 / 0)              # raises on every event
        m.download({server.url!r}, {str(tmp_path / 'x.bin')!r})
        time.sleep(0.5)
        print("exiting", flush=True)
    """)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr.decode()
    assert b"exiting" in result.stdout
    assert time.monotonic() - started < 20


def test_enqueue_batch_async_keeps_the_event_loop_running(serve, manager, tmp_path):
    server = serve(1 << 20, rate=100_000)
    manager.limits = ferry.Limits(max_running_tasks=1)
    requests = [ferry.make_request(server.url, tmp_path / f"{i}.bin") for i in range(5_000)]

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        beat = asyncio.ensure_future(ticker())
        items = await manager.enqueue_batch_async(requests)
        beat.cancel()
        return items, ticks

    items, ticks = asyncio.run(main())
    assert all(i.is_enqueued() for i in items) and len(items) == 5_000
    assert ticks > 1, "the event loop ran while the batch was recorded"
    manager.pause_all()



class TrickleServer:
    """Answers every request on 127.0.0.1 with a 100 kB body sent one byte every 20 ms."""

    def __init__(self):
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/slow.bin"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        import socket

        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn):
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            for _ in range(100_000):
                if self.stop.wait(0.02):
                    break
                conn.sendall(b"x")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_a_server_feeding_below_the_minimum_speed_fails_typed_and_the_minimum_can_be_lifted(tmp_path):
    """50 bytes a second never trips the idle timeout; the minimum speed ends the task."""
    server = TrickleServer()
    try:
        config = ferry.ManagerConfig(
            retry_budget=1, retry_base_delay_ms=20, idle_timeout_ms=10_000,
            min_speed_bytes_per_second=1024, min_speed_window_ms=500,
        )
        with ferry.Manager(tmp_path / "state", config) as m:
            started = time.monotonic()
            task = m.download(server.url, tmp_path / "slow.bin")
            info = m.wait(task, timeout=WAIT)
            assert info.state == State.FAILED, info
            assert info.error.code == Code.TIMEOUT, info.error
            assert "below the minimum" in info.error.message, info.error
            assert time.monotonic() - started < 15
            assert not (tmp_path / "slow.bin").exists()
        # With no minimum the same server is waited for, slow as it is.
        with ferry.Manager(tmp_path / "state2", ferry.ManagerConfig(min_speed_bytes_per_second=0, min_speed_window_ms=500)) as m:
            task = m.download(server.url, tmp_path / "slow2.bin")
            time.sleep(2.0)
            info = m.status(task)
            assert info.state == State.RUNNING and info.error is None, info
            m.cancel(task)
    finally:
        server.close()

"""Pausing keeps the partial file and its journal; resuming continues to a verified file."""

import time

import ferry
from helpers import WAIT, poll, sha256_of

SIZE = 8 << 20
RATE = 2_000_000  # bytes per second and connection


def test_pause_and_resume_a_throttled_download(serve, manager, tmp_path):
    server = serve(SIZE, rate=RATE)
    dest = tmp_path / "big.bin"
    states = []
    manager.add_listener(lambda ev: states.append(ev.to) if ev.is_state_changed() else None)
    task_id = manager.download(server.url, dest, connections=2, sha256=server.sha256)

    poll(lambda: manager.status(task_id).bytes >= 1 << 20)
    manager.pause(task_id)
    paused = poll(lambda: (lambda st: st if st.state == ferry.TaskState.PAUSED else None)(manager.status(task_id)))
    assert 0 < paused.bytes < SIZE
    # The state turns PAUSED at once; the stopping connections still write what they hold (one
    # read's worth each) before the journal is synced. Once that is done, nothing moves.
    time.sleep(0.3)
    paused = manager.status(task_id)
    time.sleep(0.5)
    still = manager.status(task_id)
    assert still.state == ferry.TaskState.PAUSED
    assert still.bytes == paused.bytes, "nothing moves while paused"
    assert not dest.exists(), "the file appears only when complete"

    manager.resume(task_id)
    assert manager.status(task_id).bytes >= paused.bytes, "resumed where it stopped"
    done = manager.wait(task_id, timeout=WAIT)
    assert done.state == ferry.TaskState.COMPLETED, done.error
    assert done.bytes == SIZE
    assert sha256_of(dest) == server.sha256
    poll(lambda: ferry.TaskState.COMPLETED in states, timeout=5)
    assert ferry.TaskState.PAUSED in states
    assert states.index(ferry.TaskState.PAUSED) < states.index(ferry.TaskState.COMPLETED)

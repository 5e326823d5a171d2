"""`ferry.Manager`: lifecycle, persistence across close/reopen, task operations."""

import hashlib

import pytest

import ferry
from helpers import WAIT, fast_config, poll, sha256_of


def test_close_then_reopen_resumes_from_the_task_table(serve, tmp_path):
    server = serve(8 << 20, rate=2_000_000)
    state, dest = tmp_path / "state", tmp_path / "r.bin"
    with ferry.Manager(state, fast_config()) as manager:
        manager.download(server.url, dest, connections=2, task_id="persist", sha256=server.sha256)
        poll(lambda: manager.status("persist").bytes >= 1 << 20)
    with pytest.raises(ferry.DownloadError.Stopped) as info:
        manager.status("persist")
    assert info.value.code == ferry.ErrorCode.SHUT_DOWN

    with ferry.Manager(state, fast_config()) as manager:
        reopened = manager.status("persist")
        assert reopened.state in (ferry.TaskState.QUEUED, ferry.TaskState.RUNNING)
        assert reopened.bytes > 0, "journaled progress survived the close"
        done = manager.wait("persist", timeout=WAIT)
    assert done.state == ferry.TaskState.COMPLETED, done.error
    assert sha256_of(dest) == server.sha256


def test_limits_list_remove(server, manager, tmp_path):
    manager.limits = ferry.Limits(max_running_tasks=1)
    assert manager.limits.max_running_tasks == 1
    with pytest.raises(ferry.DownloadError.InvalidInput) as info:
        manager.limits = ferry.Limits(max_running_tasks=0)
    assert info.value.code == ferry.ErrorCode.INVALID_CONFIG
    ids = [manager.download(server.url, tmp_path / f"{i}.bin", priority=i) for i in range(3)]
    for task_id in ids:
        assert manager.wait(task_id, timeout=WAIT).state == ferry.TaskState.COMPLETED
    assert [t.task_id for t in manager.list()] == ids
    manager.remove(ids[0], delete_file=True)
    assert not (tmp_path / "0.bin").exists()
    assert [t.task_id for t in manager.list()] == ids[1:]


def test_pause_all_and_resume_all(serve, manager, tmp_path):
    server = serve(4 << 20, rate=1_000_000)
    ids = [manager.download(server.url, tmp_path / f"{i}.bin") for i in range(2)]
    poll(lambda: all(manager.status(i).state == ferry.TaskState.RUNNING for i in ids))
    assert manager.pause_all() == 2
    assert {manager.status(i).state for i in ids} == {ferry.TaskState.PAUSED}
    assert manager.resume_all() == 2
    manager.limits = ferry.Limits(max_running_tasks=4)
    for task_id in ids:
        manager.cancel(task_id)
        assert manager.wait(task_id, timeout=WAIT).state == ferry.TaskState.CANCELLED


def test_memory_and_stream_outputs(server, manager):
    task_id = manager.enqueue(ferry.make_request(server.url, memory_limit=server.size))
    assert manager.wait(task_id, timeout=WAIT).output == "memory"
    assert hashlib.sha256(manager.take_bytes(task_id)).hexdigest() == server.sha256

    digest = hashlib.sha256()
    task_id = manager.enqueue_stream(ferry.make_request(server.url), digest.update)
    assert manager.wait(task_id, timeout=WAIT).output == "stream"
    assert digest.hexdigest() == server.sha256


def test_batch_reports_each_request(server, manager, tmp_path):
    items = manager.enqueue_batch([
        ferry.make_request(server.url, tmp_path / "ok.bin"),
        ferry.make_request("ftp://127.0.0.1/x", tmp_path / "bad.bin"),
    ])
    assert items[0].is_enqueued() and items[1].is_rejected()
    assert items[1].error.code == ferry.ErrorCode.UNSUPPORTED_SCHEME
    assert manager.wait(items[0].task_id, timeout=WAIT).state == ferry.TaskState.COMPLETED

"""The seed-style flow of iOS `background_download`: download → poll status → cancel."""

import pytest

import ferry
from helpers import poll, sha256_of

TERMINAL = (ferry.TaskState.COMPLETED, ferry.TaskState.FAILED, ferry.TaskState.CANCELLED)


def poll_until_done(task_id):
    return poll(lambda: (lambda st: st if st.state in TERMINAL else None)(ferry.status(task_id)))


def test_download_then_status_reports_completion(server, tmp_path):
    dest = tmp_path / "seed.bin"
    task_id = ferry.download(server.url, str(dest))
    st = poll_until_done(task_id)
    assert st.state == ferry.TaskState.COMPLETED
    assert st.progress == 1.0
    assert st.bytes == st.total == server.size
    assert st.speed >= 0.0
    assert st.destination == str(dest)
    assert st.error is None
    assert sha256_of(dest) == server.sha256


def test_caller_task_id_is_idempotent(server, tmp_path):
    dest = tmp_path / "mine.bin"
    assert ferry.download(server.url, dest, task_id="seed-mine") == "seed-mine"
    assert ferry.download(server.url, dest, task_id="seed-mine") == "seed-mine"
    assert poll_until_done("seed-mine").state == ferry.TaskState.COMPLETED


def test_status_while_running_then_cancel(serve, tmp_path):
    server = serve(8 << 20, rate=500_000)
    dest = tmp_path / "slow.bin"
    task_id = ferry.download(server.url, str(dest))
    st = poll(lambda: (lambda s: s if s.bytes > 0 else None)(ferry.status(task_id)))
    assert st.state == ferry.TaskState.RUNNING
    assert 0.0 < st.progress < 1.0
    assert st.total == server.size
    assert st.error is None

    ferry.cancel(task_id)
    st = poll_until_done(task_id)
    assert st.state == ferry.TaskState.CANCELLED
    assert not dest.exists()
    # The state turns CANCELLED at once; the stopping transfer deletes its partial file right after.
    poll(lambda: not any(tmp_path.iterdir()), timeout=10)


def test_failed_task_reports_code_and_message(server, tmp_path):
    task_id = ferry.download(f"{server.base}/status/404", str(tmp_path / "missing.bin"))
    st = poll_until_done(task_id)
    assert st.state == ferry.TaskState.FAILED
    assert st.error.code == ferry.ErrorCode.NOT_FOUND
    assert st.error.code.value == 2004
    assert st.error.message


def test_unknown_task_raises_task_not_found():
    with pytest.raises(ferry.DownloadError.InvalidInput) as info:
        ferry.status("no-such-task")
    assert info.value.code == ferry.ErrorCode.TASK_NOT_FOUND

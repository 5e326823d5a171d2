"""Credentials that expire: a signed URL that ran out while the download was paused is replaced
through the callback and the download finishes from its bytes; a callback that raises fails the
task with a typed error; `update_credentials` then `resume` finishes a task that was denied."""

import time

import ferry
from helpers import WAIT, fast_config, poll, sha256_of


def test_a_paused_download_whose_url_expired_resumes_through_the_callback(serve, tmp_path):
    server = serve(4 << 20, rate=2_000_000)
    asked = []

    def refresh(task_id, status):
        asked.append((task_id, status))
        return server.signed_url(300_000)

    with ferry.Manager(tmp_path / "state", fast_config()) as m:
        m.on_credentials_expired(refresh)
        m.download(server.signed_url(1_500), tmp_path / "signed.bin", task_id="signed")
        poll(lambda: m.status("signed").bytes > 0)
        m.pause("signed")
        assert m.wait("signed", timeout=WAIT).state == ferry.TaskState.PAUSED
        time.sleep(1.8)
        m.resume("signed")
        done = m.wait("signed", timeout=WAIT)
        assert done.state == ferry.TaskState.COMPLETED, done.error
        assert sha256_of(tmp_path / "signed.bin") == server.sha256
        assert asked and all(a == ("signed", 403) for a in asked), asked


def test_a_callback_that_raises_fails_the_task_typed(serve, tmp_path):
    server = serve(1 << 20)

    def refresh(task_id, status):
        raise RuntimeError("token service down")

    with ferry.Manager(tmp_path / "state", fast_config()) as m:
        m.on_credentials_expired(refresh)
        task = m.download(server.signed_url(0), tmp_path / "denied.bin")
        st = m.wait(task, timeout=WAIT)
        assert st.state == ferry.TaskState.FAILED
        assert st.error.code == ferry.ErrorCode.CREDENTIALS_REFRESH_FAILED
        assert "token service down" in st.error.message
        assert not (tmp_path / "denied.bin").exists()


def test_update_credentials_then_resume_finishes_a_task_that_was_denied(serve, tmp_path):
    server = serve(1 << 20)
    with ferry.Manager(tmp_path / "state", fast_config()) as m:
        m.download(server.signed_url(0), tmp_path / "later.bin", task_id="later")
        assert m.wait("later", timeout=WAIT).error.code == ferry.ErrorCode.ACCESS_DENIED
        m.update_credentials("later", url=server.signed_url(300_000), headers={"Authorization": "Bearer fresh"})
        m.resume("later")
        done = m.wait("later", timeout=WAIT)
        assert done.state == ferry.TaskState.COMPLETED, done.error
        assert sha256_of(tmp_path / "later.bin") == server.sha256

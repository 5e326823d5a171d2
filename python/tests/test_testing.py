"""`ferry.testing.TestServer`, the loopback server applications unit-test their download code with:
its faults reach a download as the application would see them, and it stops when closed."""

import urllib.request

import pytest

import ferry
from ferry.testing import TestServer, TestServerConfig, TestValidators
from helpers import WAIT, poll, sha256_of


def test_an_error_page_fails_the_task_with_its_code(manager, tmp_path):
    with TestServer() as server:
        status = manager.wait(manager.download(server.status_url(404), tmp_path / "missing.bin"), timeout=WAIT)
    assert status.state == ferry.TaskState.FAILED
    assert status.error.code == ferry.ErrorCode.NOT_FOUND
    assert not (tmp_path / "missing.bin").exists()


def test_a_dropped_connection_is_retried_to_the_exact_bytes(manager, tmp_path):
    with TestServer(size=2 << 20, drop_after=256 << 10, drop_requests=1) as server:
        dest = tmp_path / "dropped.bin"
        status = manager.wait(manager.download(server.url_named("dropped.bin"), dest, connections=1), timeout=WAIT)
        assert status.state == ferry.TaskState.COMPLETED
        assert sha256_of(dest) == server.sha256
        assert server.stats.requests == 2, server.log  # the dropped one and the retry


def test_configure_changes_the_next_answer_and_wait_for_stats_is_bounded(manager, tmp_path):
    with TestServer(size=4 << 20, rate=1 << 20) as server:
        task_id = manager.download(server.url, tmp_path / "slow.bin", connections=1)
        seen = server.wait_for_stats(lambda s: s.body_bytes >= 512 << 10, timeout=20)
        assert seen.body_bytes >= 512 << 10
        manager.pause(task_id)
        with pytest.raises(TimeoutError):
            server.wait_for_stats(lambda s: s.requests > 100, timeout=0.2)

        server.configure(size=5000, seed=9, rate=None, validators=TestValidators.E_TAG_ONLY)
        assert server.size == 5000 and server.config.validators == TestValidators.E_TAG_ONLY
        body = ferry.download_url(server.redirect_url(2), timeout=WAIT)
        assert body == server.content() and len(body) == 5000


def test_config_or_keywords_and_closing(tmp_path):
    with pytest.raises(TypeError):
        TestServer(TestServerConfig(), size=1)
    server = TestServer(TestServerConfig(size=1000, seed=5))
    with urllib.request.urlopen(server.url, timeout=10) as answer:
        assert answer.read() == server.content()
    assert repr(server) == f"<ferry.testing.TestServer {server.url}>"
    server.close()
    server.close()
    with pytest.raises(RuntimeError):
        server.stats
    poll(lambda: refused(server.url), timeout=10)  # the native server stops as it is released


def refused(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            answer.read()
    except OSError:  # refused, reset, or closed without an answer
        return True
    return False

"""Real downloads from a loopback `ferry.testing.TestServer`, verified by SHA-256."""

from pathlib import Path

import ferry
from helpers import WAIT, sha256_of


def test_installed_package_is_tested():
    assert "site-packages" in Path(ferry.__file__).parts
    assert ferry.__version__ == ferry.version()


def test_download_verifies_sha256(serve, manager, tmp_path):
    server = serve(4 << 20, seed=7)
    dest = tmp_path / "file.bin"
    task_id = manager.download(server.url, dest, sha256=server.sha256)
    status = manager.wait(task_id, timeout=WAIT)
    assert status.state == ferry.TaskState.COMPLETED, status.error
    assert status.bytes == status.total == server.size
    assert status.progress == 1.0
    assert status.destination == str(dest)
    assert sha256_of(dest) == server.sha256


def test_redirects_are_followed(serve, manager, tmp_path):
    server = serve(256 << 10)
    dest = tmp_path / "redirected.bin"
    status = manager.wait(manager.download(f"{server.base}/redirect/3", dest), timeout=WAIT)
    assert status.state == ferry.TaskState.COMPLETED, status.error
    assert sha256_of(dest) == server.sha256


def test_same_task_id_downloads_once(server, manager, tmp_path):
    dest = tmp_path / "once.bin"
    first = manager.download(server.url, dest, task_id="once")
    second = manager.download(server.url, dest, task_id="once")
    assert first == second == "once"
    manager.wait("once", timeout=WAIT)
    assert [t.task_id for t in manager.list()] == ["once"]

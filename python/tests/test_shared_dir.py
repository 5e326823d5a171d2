"""A state directory another process has open: a `ferry get` child downloads into it while this
process opens the same directory, sees the task with its progress, and follows it to its end."""

import os
import subprocess

import ferry
from helpers import WAIT, fast_config, poll, sha256_of


def test_a_directory_another_process_downloads_into_opens_and_shows_its_task(serve, tmp_path):
    server = serve(3 << 20, rate=1_000_000)
    state = tmp_path / "state"
    destination = tmp_path / "cli.bin"
    cli = subprocess.Popen(
        [os.environ["FERRY_BIN"], "--state-dir", str(state), "get", server.url, "-x", "2", "--quiet", "--id", "cli",
         "-o", str(destination)],
        stdin=subprocess.DEVNULL,
    )
    try:
        poll(lambda: (state / "tasks.sqlite3").exists())
        with ferry.Manager(state, fast_config()) as manager:

            def moving():
                try:
                    status = manager.status("cli")
                except ferry.DownloadError:
                    return None
                return status if status.bytes > 0 else None

            status = poll(moving)
            assert status.state == ferry.TaskState.RUNNING
            assert [t.task_id for t in manager.list()] == ["cli"]
            seen = status.bytes
            poll(lambda: manager.status("cli").bytes > seen)
            done = manager.wait("cli", timeout=WAIT)
            assert done.state == ferry.TaskState.COMPLETED
        assert cli.wait(timeout=WAIT) == 0
        assert sha256_of(destination) == server.sha256
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()

"""Bandwidth caps: per task over its connections, global, both changed while downloads run."""

import time

import pytest

import ferry
from helpers import fast_config, poll, sha256_of

MIB = 1 << 20


def test_a_task_cap_holds_over_its_connections_and_lifting_it_lets_the_rest_through(serve, tmp_path):
    server = serve(16 * MIB)
    with ferry.Manager(tmp_path / "state", fast_config()) as m:
        dest = tmp_path / "capped.bin"
        task = m.download(server.url, dest, connections=3, rate_limit=MIB)
        assert m.task_rate_limit(task) == MIB
        poll(lambda: m.status(task).bytes > 0)
        time.sleep(1.0)
        t0, b0 = time.monotonic(), m.status(task).bytes
        time.sleep(2.0)
        t1, b1 = time.monotonic(), m.status(task).bytes
        rate = (b1 - b0) / (t1 - t0)
        assert abs(rate - MIB) <= 0.15 * MIB, f"measured {rate:.0f} B/s against a cap of {MIB}"

        # 13 MiB left: 13 s at the cap, far less without it.
        m.set_task_rate_limit(task, None)
        assert m.task_rate_limit(task) is None
        assert m.wait(task, timeout=8.0).state == ferry.TaskState.COMPLETED
        assert sha256_of(dest) == server.sha256


def test_the_global_cap_is_set_at_open_and_changed_at_run_time(tmp_path):
    with ferry.Manager(tmp_path / "state", ferry.ManagerConfig(rate_limit=2 * MIB)) as m:
        assert m.rate_limit == 2 * MIB
        m.rate_limit = 512 * 1024
        assert m.rate_limit == 512 * 1024
        m.rate_limit = None
        assert m.rate_limit is None
        with pytest.raises(ValueError):
            m.rate_limit = -1


def test_a_task_cap_is_stored_with_the_task_and_holds_after_a_reopen(serve, tmp_path):
    server = serve(16 * MIB)
    dest = tmp_path / "kept.bin"
    with ferry.Manager(tmp_path / "state", fast_config()) as m:
        task = m.download(server.url, dest, connections=2, rate_limit=2 * MIB)
        m.set_task_rate_limit(task, 512 * 1024)
        poll(lambda: m.status(task).bytes > 0)
        m.pause(task)
        poll(lambda: m.status(task).state == ferry.TaskState.PAUSED)
    with ferry.Manager(tmp_path / "state", fast_config()) as m:
        assert m.task_rate_limit(task) == 512 * 1024, "the cap set last, kept in the task table"
        m.set_task_rate_limit(task, None)
        m.resume(task)
        assert m.wait(task, timeout=30.0).state == ferry.TaskState.COMPLETED
        assert sha256_of(dest) == server.sha256
    with ferry.Manager(tmp_path / "state", fast_config()) as m:
        assert m.task_rate_limit(task) is None, "a lifted cap stays lifted"

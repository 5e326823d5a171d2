"""Directories that move: tasks under a declared root follow it to its new path."""

import os

import pytest

import ferry
from helpers import WAIT, fast_config, poll, sha256_of

SIZE = 4 << 20
RATE = 2_000_000  # bytes per second and connection


def _tree(base, name):
    """A state directory and a `data` root side by side, as an application lays them out."""
    data = base / name / "data"
    data.mkdir(parents=True, exist_ok=True)
    return base / name / "state", data


def test_a_moved_tree_resolves_against_the_roots_of_the_next_open(serve, tmp_path):
    server = serve(SIZE, rate=RATE)
    state, data = _tree(tmp_path, "one")
    with ferry.Manager(state, fast_config(), roots={"data": data}) as m:
        m.download(server.url, data / "done.bin", task_id="done")
        assert m.wait("done", timeout=WAIT).destination == str(data / "done.bin")
        (data / "sub").mkdir()
        m.download(server.url, data / "sub" / "paused.bin", task_id="paused")
        poll(lambda: m.status("paused").bytes > 0)
        m.pause("paused")
        assert m.wait("paused", timeout=WAIT).state == ferry.TaskState.PAUSED

    # The whole tree moves, by a rename.
    os.rename(tmp_path / "one", tmp_path / "two")
    state, data = _tree(tmp_path, "two")
    with ferry.Manager(state, fast_config(), roots={"data": data}) as m:
        done = m.status("done")
        assert done.state == ferry.TaskState.COMPLETED
        assert done.destination == str(data / "done.bin"), "a completed task reports its new path"
        paused = m.status("paused")
        assert paused.state == ferry.TaskState.PAUSED and paused.bytes > 0
        m.resume("paused")
        resumed = m.wait("paused", timeout=WAIT)
        assert resumed.state == ferry.TaskState.COMPLETED, resumed.error
        assert resumed.destination == str(data / "sub" / "paused.bin")
        assert sha256_of(data / "sub" / "paused.bin") == server.sha256

    # Without the root: listed as stored, with ROOT_UNKNOWN, and never run.
    with ferry.Manager(state, fast_config()) as m:
        done = m.status("done")
        assert done.destination == "@data/done.bin"
        assert done.error.code == ferry.ErrorCode.ROOT_UNKNOWN
        with pytest.raises(ferry.DownloadError) as refused:
            m.resume("done")
        assert refused.value.code == ferry.ErrorCode.ROOT_UNKNOWN


def test_a_missing_root_directory_is_invalid_config(tmp_path):
    with pytest.raises(ferry.DownloadError) as refused:
        ferry.Manager(tmp_path / "state", roots={"data": tmp_path / "missing"})
    assert refused.value.code == ferry.ErrorCode.INVALID_CONFIG


def test_roots_add_to_the_config_without_changing_it(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    config = fast_config()
    with ferry.Manager(tmp_path / "state", config, roots={"data": data}):
        pass
    assert config.roots == [], "the caller's config is left as it was"

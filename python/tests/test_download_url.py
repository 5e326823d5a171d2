"""MicroPythonOS-style `download_url`: memory, file and stream outputs."""

import hashlib

import pytest

import ferry
from helpers import WAIT, sha256_of


def test_memory_mode_returns_bytes(server):
    body = ferry.download_url(server.url, timeout=WAIT)
    assert isinstance(body, bytes)
    assert len(body) == server.size
    assert hashlib.sha256(body).hexdigest() == server.sha256


def test_file_mode_writes_the_file(server, tmp_path):
    dest = tmp_path / "app.mpk"
    assert ferry.download_url(server.url, outfile=str(dest), timeout=WAIT) is True
    assert sha256_of(dest) == server.sha256
    # Like MicroPythonOS, downloading again replaces the file.
    assert ferry.download_url(server.url, outfile=str(dest), timeout=WAIT) is True


def test_stream_mode_calls_chunk_callback(serve):
    server = serve(3 << 20, seed=3)
    digest, chunks = hashlib.sha256(), []

    def on_chunk(chunk):
        chunks.append(len(chunk))
        digest.update(chunk)

    assert ferry.download_url(server.url, chunk_callback=on_chunk, timeout=WAIT) is True
    assert sum(chunks) == server.size
    assert len(chunks) > 1
    assert digest.hexdigest() == server.sha256


def test_progress_callback_reaches_100(serve):
    server = serve(4 << 20, rate=2_000_000)  # memory mode uses one connection: about 2 s
    percents = []
    ferry.download_url(server.url, progress_callback=percents.append, timeout=WAIT)
    assert percents[-1] == 100
    assert percents == sorted(percents)
    assert len(percents) > 2


def test_progress_callback_sees_the_end_of_fast_downloads(server):
    for _ in range(5):
        percents = []
        ferry.download_url(server.url, progress_callback=percents.append, timeout=WAIT)
        assert percents and percents[-1] == 100


def test_headers_are_accepted(server):
    assert len(ferry.download_url(server.url, headers={"X-Test": "1"}, timeout=WAIT)) == server.size


def test_failures_raise_typed_errors(server):
    with pytest.raises(ferry.DownloadError.Network) as info:
        ferry.download_url(f"{server.base}/status/404", timeout=WAIT)
    assert info.value.code == ferry.ErrorCode.NOT_FOUND


def test_memory_limit_is_enforced(server):
    with pytest.raises(ferry.DownloadError) as info:
        ferry.download_url(server.url, memory_limit=1000, timeout=WAIT)
    assert info.value.code == ferry.ErrorCode.MEMORY_LIMIT_EXCEEDED


def test_raising_chunk_callback_stops_the_task(server):
    def reject(chunk):
        raise ValueError("no thanks")

    with pytest.raises(ferry.DownloadError.Stopped) as info:
        ferry.download_url(server.url, chunk_callback=reject, timeout=WAIT)
    assert info.value.code == ferry.ErrorCode.SINK_REJECTED


def test_timeout_cancels_the_download(serve):
    server = serve(8 << 20, rate=100_000)
    with pytest.raises(TimeoutError):
        ferry.download_url(server.url, timeout=0.3)


def test_one_shot_tasks_are_forgotten(server, manager, tmp_path):
    ferry.download_url(server.url, manager=manager, timeout=WAIT)
    ferry.download_url(server.url, outfile=str(tmp_path / "f.bin"), manager=manager, timeout=WAIT)
    assert manager.list() == []

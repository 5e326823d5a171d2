"""Seed 004, MicroPythonOS's `DownloadManager`: its documented calls, as written, on `ferry.mpos`.

Why: code written for MicroPythonOS should only need `from ferry.mpos import ...` instead of
`from mpos import ...`. Each test follows one section of that documentation (quick start, file,
progress, streaming, headers, ranges, timeouts, session helpers, errors) against loopback servers:
`ferry.testing.TestServer` (some with faults), and for headers and JSON a small stdlib server that
records what it was sent.
"""

import asyncio
import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import ferry
from ferry.mpos import DownloadManager, TaskManager
from helpers import poll, sha256_of

ITEMS = [{"name": "app", "version": 1}, {"name": "icon", "version": 2}]


@pytest.fixture
def json_server():
    """Serves ITEMS as JSON on loopback; `.requests` holds each request's headers (lower-case)."""
    body = json.dumps(ITEMS).encode()
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url, httpd.requests = f"http://127.0.0.1:{httpd.server_address[1]}/data.json", requests
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_quick_start_download_to_memory(json_server, capsys):
    class MyActivity:
        def onCreate(self):
            self.task = TaskManager.create_task(self.fetch_data())

        async def fetch_data(self):
            # Download JSON data
            data = await DownloadManager.download_url(
                json_server.url
            )
            if data:
                import json
                parsed = json.loads(data)
                print(f"Got {len(parsed)} items")
            else:
                print("Download failed")

    async def main():
        activity = MyActivity()
        activity.onCreate()
        await activity.task

    asyncio.run(main())
    assert capsys.readouterr().out == "Got 2 items\n"


def test_download_to_file(server, tmp_path):
    outfile = tmp_path / "app.mpk"
    success = asyncio.run(DownloadManager.download_url(server.url, outfile=str(outfile)))
    assert success is True
    assert sha256_of(outfile) == server.sha256


def test_download_to_file_after_a_503(serve, tmp_path):
    server = serve(busy_requests=1)  # a 503 with Retry-After: 1, then the file
    outfile = tmp_path / "app.mpk"
    assert asyncio.run(DownloadManager.download_url(server.url, outfile=str(outfile))) is True
    assert sha256_of(outfile) == server.sha256
    assert server.stats.requests == 2


def test_download_with_progress(serve, tmp_path):
    server = serve(4 << 20, rate=8 << 20)
    percents = []

    async def update_progress(percent):
        percents.append(percent)
        print(f"Downloaded: {percent}%")

    success = asyncio.run(DownloadManager.download_url(
        server.url, outfile=str(tmp_path / "large_file.bin"), progress_callback=update_progress))
    assert success is True
    assert percents[-1] == 100 and len(percents) > 1
    assert all(isinstance(p, int) and 0 <= p <= 100 for p in percents)
    assert percents == sorted(percents)


def test_download_with_explicit_size(server, tmp_path):
    percents = []
    success = asyncio.run(DownloadManager.download_url(
        server.url, outfile=str(tmp_path / "pkg.mpk"), total_size=server.size,
        progress_callback=percents.append))  # a plain function works too
    assert success is True and percents[-1] == 100


def test_streaming_with_callbacks(serve):
    server = serve(3 << 20, seed=5)
    digest = hashlib.sha256()

    async def stream_download():
        processed_bytes = 0

        async def process_chunk(chunk):
            nonlocal processed_bytes
            # Process each chunk as it arrives
            processed_bytes += len(chunk)
            digest.update(chunk)

        success = await DownloadManager.download_url(
            server.url,
            chunk_callback=process_chunk
        )
        return success, processed_bytes

    assert asyncio.run(stream_download()) == (True, server.size)
    assert digest.hexdigest() == server.sha256


def test_outfile_with_chunk_callback_raises_value_error(server, tmp_path):
    async def process(chunk):
        pass

    with pytest.raises(ValueError):
        asyncio.run(DownloadManager.download_url(server.url, outfile="file.bin", chunk_callback=process))
    assert not os.path.exists("file.bin")


def test_failures_return_none_or_false(server, tmp_path):
    missing = f"{server.base}/status/404"

    async def main():
        return (await DownloadManager.download_url(missing),
                await DownloadManager.download_url(missing, outfile=str(tmp_path / "file.bin")),
                await DownloadManager.download_url(missing, chunk_callback=lambda chunk: None))

    assert asyncio.run(main()) == (None, False, False)
    assert not any(tmp_path.iterdir())


def test_custom_headers_reach_the_server(json_server):
    async def main():
        await DownloadManager.download_url(
            json_server.url,
            headers={
                'User-Agent': 'MicroPythonOS/0.3.3',
                'Accept': 'application/json'
            }
        )
        return await DownloadManager.download_url(
            json_server.url,
            headers={
                'Authorization': 'Bearer YOUR_TOKEN'
            }
        )

    assert json.loads(asyncio.run(main())) == ITEMS
    assert any(r.get("user-agent") == "MicroPythonOS/0.3.3" and r.get("accept") == "application/json"
               for r in json_server.requests)
    assert any(r.get("authorization") == "Bearer YOUR_TOKEN" for r in json_server.requests)


def test_range_requests(serve, tmp_path):
    server = serve(64 << 10, seed=7)
    url = server.url
    chunks = []

    async def main():
        full = await DownloadManager.download_url(url)
        # Download specific byte range
        part = await DownloadManager.download_url(
            url,
            headers={
                'Range': 'bytes=1000-2000'  # Download bytes 1000-2000
            }
        )
        await DownloadManager.download_url(url, chunk_callback=chunks.append, headers={'Range': 'bytes=5000-'})
        ok = await DownloadManager.download_url(url, outfile=str(tmp_path / "slice.bin"),
                                                headers={"range": "bytes=10-19"})
        return full, part, ok

    full, part, ok = asyncio.run(main())
    assert hashlib.sha256(full).hexdigest() == server.sha256
    assert part == full[1000:2001]
    assert b"".join(chunks) == full[5000:]
    assert ok is True and (tmp_path / "slice.bin").read_bytes() == full[10:20]


def test_resume_partial_download(server, tmp_path):
    outfile = str(tmp_path / "partial.bin")
    with open(outfile, "wb") as f:
        f.write(asyncio.run(DownloadManager.download_url(server.url, headers={"Range": "bytes=0-4999"})))

    async def resume_download(url, outfile):
        """Resume a partial download using Range headers"""
        bytes_written = 0
        # Check if partial file exists
        try:
            bytes_written = os.stat(outfile)[6]  # File size
            print(f"Resuming from {bytes_written} bytes")
        except OSError:
            print("Starting new download")
        # Download remaining bytes
        success = await DownloadManager.download_url(
            url,
            outfile=outfile,
            headers={'Range': f'bytes={bytes_written}-'}
        )
        return success

    assert asyncio.run(resume_download(server.url, outfile)) is True
    assert sha256_of(outfile) == server.sha256


def test_unsupported_or_unsatisfiable_ranges(server):
    for bad in ("bytes=-500", "bytes=0-1,5-6", "bytes=9-3", "items=0-1"):
        with pytest.raises(ValueError):
            asyncio.run(DownloadManager.download_url(server.url, headers={"Range": bad}))
    past_end = {"Range": f"bytes={server.size + 10}-"}
    assert asyncio.run(DownloadManager.download_url(server.url, headers=past_end)) is None


def test_download_with_timeout(serve):
    server = serve(8 << 20, rate=200_000)

    async def download_with_timeout(url, timeout=10):
        try:
            data = await TaskManager.wait_for(
                DownloadManager.download_url(url),
                timeout=timeout
            )
            return data
        except asyncio.TimeoutError:
            print(f"Download timed out after {timeout}s")
            return None

    assert asyncio.run(download_with_timeout(server.url, timeout=0.3)) is None
    # The abandoned download was cancelled and forgotten.
    poll(lambda: not [t for t in ferry.default_manager().list() if t.task_id.startswith("download_url-")],
         timeout=10)


def test_session_helpers(serve):
    server = serve(2 << 20, rate=4 << 20)

    async def main():
        before = DownloadManager.is_session_active()
        task = TaskManager.create_task(DownloadManager.download_url(server.url))
        while not DownloadManager.is_session_active():
            await TaskManager.sleep_ms(5)
        data = await task
        await DownloadManager.close_session()
        return before, data, DownloadManager.is_session_active()

    before, data, after = asyncio.run(main())
    assert (before, len(data), after) == (False, server.size, False)


def test_concurrent_downloads(serve):
    servers = [serve(256 << 10, seed=i) for i in range(3)]

    async def download_batch(urls):
        results = []
        for data in await asyncio.gather(*(TaskManager.wait_for(DownloadManager.download_url(u), timeout=30)
                                           for u in urls)):
            results.append(data)
        return results

    results = asyncio.run(download_batch([s.url for s in servers]))
    assert [hashlib.sha256(r).hexdigest() for r in results] == [s.sha256 for s in servers]

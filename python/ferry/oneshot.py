"""MicroPythonOS-style one-shot downloads: `download_url` and `download_url_async`.

One call, three outputs, like MicroPythonOS `DownloadManager.download_url`:

* memory (no `outfile`, no `chunk_callback`): returns the body as `bytes`;
* file (`outfile`): writes the file and returns True;
* stream (`chunk_callback`): calls `chunk_callback(chunk)` with the body's bytes, returns True.

Unlike MicroPythonOS, failures raise `DownloadError` (with a stable `code`) instead of returning
None/False, and `outfile` with `chunk_callback` raises the engine's `CONFLICTING_OUTPUTS` error.
The task runs on the default manager (or `manager`) and is forgotten once the call returns.
"""

import asyncio
import threading
import uuid
from typing import Any, Callable, Optional, Union

from ._ffi import ChunkSink, DownloadError, DownloadEvent, TaskState, TaskStatus
from .callbacks import CallbackListener, CallbackSink, call_maybe_async
from .errors import raise_for_status
from .manager import Manager
from .request import Headers, make_request

DEFAULT_MEMORY_LIMIT = 64 << 20
REPORT_DRAIN_TIMEOUT = 5.0  # how long the caller waits for the listener to report the end
_ENDED = (TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED)


class _OneShot:
    """One download_url call: starts the task, reports progress, collects the result, cleans up."""

    def __init__(self, manager: Optional[Manager], url: str, outfile, chunk_callback, headers: Headers,
                 progress_callback, total_size: Optional[int], memory_limit: int, overwrite: bool,
                 loop: Optional[asyncio.AbstractEventLoop]):
        self.manager = manager or Manager.default()
        self.task_id = f"download_url-{uuid.uuid4()}"
        self.memory = outfile is None and chunk_callback is None
        self.registration = None
        self.reported = threading.Event()  # the listener has seen the task end
        if progress_callback is not None:
            self.registration = self.manager.ffi.add_listener(
                CallbackListener(self._progress_reporter(progress_callback, total_size, loop)))
        fields = dict(task_id=self.task_id, headers=headers)
        try:
            if chunk_callback is not None:
                # An outfile too is refused by the engine with CONFLICTING_OUTPUTS.
                request = make_request(url, outfile, overwrite=overwrite, **fields)
                sink = chunk_callback if isinstance(chunk_callback, ChunkSink) else CallbackSink(chunk_callback, loop)
                self.manager.enqueue_stream(request, sink)
            elif outfile is not None:
                self.manager.enqueue(make_request(url, outfile, overwrite=overwrite, **fields))
            else:
                self.manager.enqueue(make_request(url, memory_limit=memory_limit, **fields))
        except BaseException:
            self.cleanup(started=False)
            raise

    def _progress_reporter(self, callback, total_size, loop) -> Callable[[DownloadEvent], None]:
        last = [-1]

        def report(event: DownloadEvent) -> None:
            if event.task_id != self.task_id:
                return
            if event.is_progress():
                total = event.total or total_size
                percent = min(100, event.bytes * 100 // total) if total else 0
            elif event.is_state_changed() and event.to in _ENDED:
                percent = 100 if event.to == TaskState.COMPLETED else last[0]
            else:
                return
            try:
                if percent != last[0]:
                    last[0] = percent
                    call_maybe_async(callback, percent, loop)
            finally:
                if event.is_state_changed():
                    self.reported.set()

        return report

    def drain_reports(self) -> None:
        """Waits (bounded) until the progress listener, on its own thread, has seen the end."""
        if self.registration is not None:
            self.reported.wait(REPORT_DRAIN_TIMEOUT)

    async def drain_reports_async(self) -> None:
        """`drain_reports` without blocking the event loop (async callbacks run on it)."""
        if self.registration is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.reported.wait, REPORT_DRAIN_TIMEOUT)

    def result(self, status: TaskStatus) -> Union[bytes, bool]:
        raise_for_status(status)
        return self.manager.take_bytes(self.task_id) if self.memory else True

    def cleanup(self, started: bool = True) -> None:
        if self.registration is not None:
            self.registration.cancel()
        if started:
            for forget in (self.manager.cancel, self.manager.remove):
                try:
                    forget(self.task_id)
                except DownloadError:
                    pass


def download_url(url: str, outfile=None, chunk_callback: Optional[Callable[[bytes], Any]] = None,
                 headers: Headers = None, *, progress_callback: Optional[Callable[[int], Any]] = None,
                 total_size: Optional[int] = None, memory_limit: int = DEFAULT_MEMORY_LIMIT,
                 overwrite: bool = True, timeout: Optional[float] = None,
                 manager: Optional[Manager] = None) -> Union[bytes, bool]:
    """Downloads `url` to memory (returns bytes), to `outfile` (returns True) or to `chunk_callback`.

    `chunk_callback` may also be a `ChunkSink` (its `on_chunk` gets each chunk's offset too).
    `headers` is a dict or `(name, value)` pairs. `progress_callback(percent)` gets 0..100 as the
    transfer advances (`total_size` stands in when the server sends no length). `memory_limit` caps
    memory mode; `overwrite` replaces an existing `outfile` (an absolute path). Callbacks run on
    Ferry threads. Raises `DownloadError`, or `TimeoutError` after `timeout` seconds (the download
    is then cancelled).
    """
    shot = _OneShot(manager, url, outfile, chunk_callback, headers, progress_callback, total_size,
                    memory_limit, overwrite, loop=None)
    try:
        status = shot.manager.wait(shot.task_id, timeout)
        shot.drain_reports()
        return shot.result(status)
    finally:
        shot.cleanup()


async def download_url_async(url: str, outfile=None, chunk_callback: Optional[Callable[[bytes], Any]] = None,
                             headers: Headers = None, *, progress_callback: Optional[Callable[[int], Any]] = None,
                             total_size: Optional[int] = None, memory_limit: int = DEFAULT_MEMORY_LIMIT,
                             overwrite: bool = True, timeout: Optional[float] = None,
                             manager: Optional[Manager] = None) -> Union[bytes, bool]:
    """`download_url` for asyncio. `chunk_callback` and `progress_callback` may also be coroutine
    functions (as in MicroPythonOS); they run on the calling event loop."""
    loop = asyncio.get_running_loop()
    shot = _OneShot(manager, url, outfile, chunk_callback, headers, progress_callback, total_size,
                    memory_limit, overwrite, loop=loop)
    try:
        status = await shot.manager.wait_async(shot.task_id, timeout)
        await shot.drain_reports_async()
        return shot.result(status)
    finally:
        shot.cleanup()

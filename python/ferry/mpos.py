"""A stand-in for MicroPythonOS's `DownloadManager`: `from ferry.mpos import DownloadManager`.

Why a module of its own: code written for MicroPythonOS (`from mpos import DownloadManager`) calls
`await DownloadManager.download_url(url, outfile=None, total_size=None, progress_callback=None,
chunk_callback=None, headers=None)` and tests the result for None / False. `ferry.download_url`
raises typed errors instead, orders its arguments differently and refuses a `Range` header (the
engine owns ranges), and `ferry.DownloadManager` is already the engine's manager class. Here the
documented calls work as written but for the import, on Ferry's default manager:

* memory (no `outfile`, no `chunk_callback`): the body as `bytes`, or None on failure;
* file (`outfile`, relative paths taken from the current directory): True, or False on failure;
  the file appears complete or not at all, and is replaced if it exists;
* stream (`chunk_callback(chunk)`): True, or False on failure; chunks come as the engine reads
  them (not 1 KiB each);
* `outfile` with `chunk_callback` raises ValueError, as does a `Range` other than `bytes=A-[B]`;
* `progress_callback(percent)` gets an int 0..100; both callbacks may be coroutine functions
  (as MicroPythonOS requires) or plain ones. The percentage uses the server's length when it sends
  one, else `total_size`, else 100 KiB (MicroPythonOS's assumption);
* `headers` is a dict. A `Range: bytes=A-[B]` is not sent (the engine asks for ranges itself):
  memory and stream modes get exactly bytes A..B of the body (Ferry reads from the start and skips
  the rest); a file with an open range (`bytes=N-`, the documented "resume a partial download")
  ends up complete, fetched whole (the engine never adopts bytes it did not write); a file with a
  closed range gets those bytes;
* `is_session_active()` is True while a `download_url` call is in progress; `close_session()` is
  awaitable and does nothing (the engine pools connections itself).

Failures are logged (logger `ferry`) with Ferry's error code. `TaskManager` has the part of
MicroPythonOS's task manager these examples use (`create_task`, `wait_for`, `sleep`, `sleep_ms`).
"""

import asyncio
import logging
import os
import re
import tempfile
import threading
from typing import Any, Callable, Optional, Tuple

from ._ffi import CallbackError, ChunkSink, DownloadError
from .callbacks import call_maybe_async
from .oneshot import download_url_async

__all__ = ["DownloadManager", "TaskManager"]

DEFAULT_TOTAL_SIZE = 100 * 1024  # MicroPythonOS's assumption when the length is unknown
log = logging.getLogger("ferry")
_RANGE = re.compile(r"\s*bytes\s*=\s*(\d+)\s*-\s*(\d*)\s*$", re.I)


class _Unsatisfiable(Exception):
    """The range starts past the end of the body (a server would answer 416)."""


def _split_range(headers: Optional[dict]) -> Tuple[dict, Optional[Tuple[int, Optional[int]]]]:
    """The headers without `Range`, and the range asked for: (start, inclusive end or None)."""
    rest, wanted = {}, None
    for name, value in (headers or {}).items():
        if name.strip().lower() != "range":
            rest[name] = value
            continue
        match = _RANGE.match(str(value))
        if not match or (match.group(2) and int(match.group(2)) < int(match.group(1))):
            raise ValueError(f"unsupported Range {value!r}: only one 'bytes=START-[END]' range")
        wanted = (int(match.group(1)), int(match.group(2)) if match.group(2) else None)
    return rest, wanted


class _RangeSink(ChunkSink):
    """Passes on bytes `start..end` (inclusive; None: to the end) of the body, then stops the
    transfer; `complete` once the range was passed on. A restarted body (the resource changed)
    calls `on_restart` first."""

    def __init__(self, start: int, end: Optional[int], deliver: Callable[[bytes], Any],
                 on_restart: Callable[[], None], loop: asyncio.AbstractEventLoop):
        self.start, self.end = start, end
        self.deliver, self.on_restart, self.loop = deliver, on_restart, loop
        self.seen = 0  # bytes of the body seen so far
        self.complete = False

    def on_chunk(self, offset: int, data: bytes) -> None:
        if offset == 0 and self.seen:
            self.on_restart()
        self.seen = offset + len(data)
        lo = max(self.start - offset, 0)
        hi = len(data) if self.end is None else min(self.end + 1 - offset, len(data))
        try:
            if lo < hi:
                call_maybe_async(self.deliver, data[lo:hi], self.loop)
        except Exception as exc:
            log.warning("ferry chunk callback %r raised %r", self.deliver, exc, exc_info=exc)
            raise CallbackError.Failed(f"{type(exc).__name__}: {exc}") from exc
        if self.end is not None and self.seen > self.end:
            self.complete = True
            raise CallbackError.Failed("the requested range was delivered")  # stops the transfer


def _write_atomically(path: str, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file renamed into place."""
    fd, tmp = tempfile.mkstemp(prefix=".ferry-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


async def _download_range(url: str, outfile: Optional[str], chunk_callback, headers: dict,
                          wanted: Tuple[int, Optional[int]], **progress) -> Any:
    """A ranged `download_url`: streams the body through a `_RangeSink`."""
    buffer = bytearray()
    deliver = chunk_callback if chunk_callback is not None else buffer.extend
    sink = _RangeSink(wanted[0], wanted[1], deliver, buffer.clear, asyncio.get_running_loop())
    try:
        await download_url_async(url, chunk_callback=sink, headers=headers, **progress)
    except DownloadError:
        if not sink.complete:
            raise
    if sink.seen <= wanted[0] and wanted[0] > 0:
        raise _Unsatisfiable(f"the range starts at {wanted[0]}, the body has {sink.seen} bytes")
    if chunk_callback is not None:
        return True
    if outfile is None:
        return bytes(buffer)
    _write_atomically(outfile, bytes(buffer))
    return True


class DownloadManager:
    """MicroPythonOS's `DownloadManager` calls, on Ferry (see the module's docstring)."""

    _active = 0
    _lock = threading.Lock()

    @staticmethod
    async def download_url(url: str, outfile: Optional[str] = None, total_size: Optional[int] = None,
                           progress_callback: Optional[Callable[[int], Any]] = None,
                           chunk_callback: Optional[Callable[[bytes], Any]] = None,
                           headers: Optional[dict] = None) -> Any:
        """Downloads `url` to memory (bytes / None), to `outfile` or to `chunk_callback`
        (True / False). Raises ValueError for `outfile` with `chunk_callback` or a bad `Range`."""
        if outfile and chunk_callback:
            raise ValueError("Cannot use both outfile and chunk_callback: "
                             "use outfile for saving to disk, or chunk_callback for streaming.")
        headers, wanted = _split_range(headers)
        outfile = os.path.abspath(os.fspath(outfile)) if outfile else None
        progress = dict(progress_callback=progress_callback, total_size=total_size or DEFAULT_TOTAL_SIZE)
        with DownloadManager._lock:
            DownloadManager._active += 1
        try:
            if wanted is not None and (outfile is None or wanted[1] is not None):
                return await _download_range(url, outfile, chunk_callback, headers, wanted, **progress)
            return await download_url_async(url, outfile=outfile, chunk_callback=chunk_callback,
                                            headers=headers, **progress)
        except (DownloadError, _Unsatisfiable, OSError) as exc:
            code = getattr(getattr(exc, "code", None), "value", None)
            log.warning("DownloadManager: %s failed: %s (code %s)", url, exc, code)
            return None if outfile is None and chunk_callback is None else False
        finally:
            with DownloadManager._lock:
                DownloadManager._active -= 1

    @staticmethod
    def is_session_active() -> bool:
        """True while a `download_url` call is in progress."""
        with DownloadManager._lock:
            return DownloadManager._active > 0

    @staticmethod
    async def close_session() -> None:
        """Nothing to close: the engine pools and closes connections itself."""


class TaskManager:
    """The part of MicroPythonOS's `TaskManager` the `DownloadManager` examples use, on asyncio."""

    @staticmethod
    def create_task(coroutine) -> "asyncio.Task":
        """Runs `coroutine` as a task of the running event loop."""
        return asyncio.get_running_loop().create_task(coroutine)

    wait_for = staticmethod(asyncio.wait_for)  # raises asyncio.TimeoutError after `timeout`
    sleep = staticmethod(asyncio.sleep)

    @staticmethod
    async def sleep_ms(ms: int) -> None:
        await asyncio.sleep(ms / 1000)

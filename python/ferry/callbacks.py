"""Adapters from plain Python callables to the engine's foreign traits.

`CallbackListener` wraps `fn(event)` as an `EventListener`; `CallbackSink` wraps `fn(chunk)` as a
`ChunkSink`. Both run on Ferry threads. An exception in the callable is logged (logger `ferry`) and
handed to the engine as `CallbackError.Failed`: a listener is kept, a sink stops its task with
`SINK_REJECTED`.
"""

import asyncio
import contextlib
import contextvars
import inspect
import logging
import threading
from typing import Any, Callable, Optional

from ._ffi import CallbackError, ChunkSink, CredentialRefresher, DownloadEvent, EventListener, FreshCredentials, HttpHeader

log = logging.getLogger("ferry")

_calling = threading.local()
# For an async sink: its coroutine runs on the event loop's thread while the engine's thread waits.
_calling_async = contextvars.ContextVar("ferry_calling_async", default=False)


def in_callback() -> bool:
    """Whether this code runs inside one of this module's adapters (a listener, sink or refresher
    call from the engine), or in the coroutine of an async sink."""
    return getattr(_calling, "depth", 0) > 0 or _calling_async.get()


@contextlib.contextmanager
def _calling_back():
    _calling.depth = getattr(_calling, "depth", 0) + 1
    try:
        yield
    finally:
        _calling.depth -= 1


def _failed(what: str, fn: Callable, exc: BaseException) -> CallbackError:
    log.warning("ferry %s %r raised %r", what, fn, exc, exc_info=exc)
    return CallbackError.Failed(f"{type(exc).__name__}: {exc}")


def call_maybe_async(fn: Callable, arg: Any, loop: Optional[asyncio.AbstractEventLoop]) -> None:
    """Calls `fn(arg)`; if that returns an awaitable, runs it on `loop` and waits for it."""
    result = fn(arg)
    if inspect.isawaitable(result):
        if loop is None:
            raise TypeError("async callbacks need an event loop: use the *_async function")

        async def run():
            _calling_async.set(True)
            await result

        runner = run()
        try:
            scheduled = asyncio.run_coroutine_threadsafe(runner, loop)
        except RuntimeError:
            # The loop is closed: nothing will ever run them.
            runner.close()
            result.close()
            raise
        scheduled.result()


class CallbackListener(EventListener):
    """An `EventListener` calling `fn(event)` for every `DownloadEvent`."""

    def __init__(self, fn: Callable[[DownloadEvent], Any]):
        self.fn = fn

    def on_event(self, event: DownloadEvent) -> None:
        try:
            with _calling_back():
                self.fn(event)
        except Exception as exc:
            raise _failed("event listener", self.fn, exc) from exc


class CallbackSink(ChunkSink):
    """A `ChunkSink` calling `fn(chunk)` with the body's bytes, in order.

    `fn` may be a coroutine function when `loop` is given (it then runs on that loop, and the
    transfer waits for it). The offsets are dropped: if the resource changes mid-transfer the
    engine starts over and `fn` sees the body again from its first byte (`restarts` counts that).
    """

    def __init__(self, fn: Callable[[bytes], Any], loop: Optional[asyncio.AbstractEventLoop] = None):
        self.fn = fn
        self.loop = loop
        self.delivered = 0
        self.restarts = 0

    def on_chunk(self, offset: int, data: bytes) -> None:
        if offset == 0 and self.delivered:
            self.restarts += 1
        try:
            with _calling_back():
                call_maybe_async(self.fn, data, self.loop)
        except Exception as exc:
            raise _failed("chunk callback", self.fn, exc) from exc
        self.delivered = offset + len(data)


def fresh_credentials(url: Optional[str] = None, headers: Optional[dict] = None) -> FreshCredentials:
    """A new `url` for the same resource, new `headers` (a dict), or both; `None` keeps the current."""
    pairs = None if headers is None else [HttpHeader(name=k, value=v) for k, v in headers.items()]
    return FreshCredentials(url=url, headers=pairs)


class CallbackRefresher(CredentialRefresher):
    """A `CredentialRefresher` calling `fn(task_id, status)`, which returns `FreshCredentials`, a
    new URL as a `str`, or `None` to give up. What it raises fails the task with
    `CREDENTIALS_REFRESH_FAILED`."""

    def __init__(self, fn: Callable[[str, int], Any]):
        self.fn = fn

    def refresh(self, task_id: str, status: int) -> Optional[FreshCredentials]:
        try:
            with _calling_back():
                fresh = self.fn(task_id, status)
        except Exception as exc:
            raise _failed("credential refresher", self.fn, exc) from exc
        return fresh_credentials(url=fresh) if isinstance(fresh, str) else fresh

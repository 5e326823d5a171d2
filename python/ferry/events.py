"""`EventIterator`: a manager's events as a (sync or async) iterator."""

import asyncio
import time
from typing import Callable, Optional

from ._ffi import DownloadEvent, EventStream

_SLICE_MS = 200  # blocking slice, so Ctrl-C is noticed between slices


class EventIterator:
    """Iterates over the events of a manager, from the moment it was created.

    `for event in it` blocks for the next event; `async for event in it` awaits it. Iteration ends
    after `idle_timeout` seconds without an event (never when `idle_timeout` is None), so with no
    timeout, break out of the loop yourself. Each iterator has its own queue: state changes are
    never dropped, progress of a task is coalesced while you are behind. Iteration also ends once
    the manager shut down (through any handle) and every event before was taken, and sync
    iteration once `is_closed()` is true (the `Manager` that made the iterator was closed).

    Abandoning an `async for` while it awaits (timeout, cancellation) may lose the one event that
    was being awaited; the iterator is finished then anyway.
    """

    def __init__(self, stream: EventStream, idle_timeout: Optional[float] = None,
                 is_closed: Callable[[], bool] = lambda: False):
        self.stream = stream
        self.idle_timeout = idle_timeout
        self.is_closed = is_closed

    def __iter__(self) -> "EventIterator":
        return self

    def __next__(self) -> DownloadEvent:
        deadline = None if self.idle_timeout is None else time.monotonic() + self.idle_timeout
        while True:
            left_ms = _SLICE_MS if deadline is None else int((deadline - time.monotonic()) * 1000)
            event = self.stream.next_blocking(max(0, min(_SLICE_MS, left_ms)))
            if event is not None:
                return event
            # A shut-down manager's stream answers None at once: stop instead of spinning.
            if self.stream.is_closed() or self.is_closed() or (deadline is not None and time.monotonic() >= deadline):
                raise StopIteration

    def __aiter__(self) -> "EventIterator":
        return self

    async def __anext__(self) -> DownloadEvent:
        try:
            event = await asyncio.wait_for(self.stream.next(), self.idle_timeout)
        except asyncio.TimeoutError:
            raise StopAsyncIteration from None
        if event is None:
            raise StopAsyncIteration
        return event

    def poll(self) -> Optional[DownloadEvent]:
        """The next event if one is waiting, else None (never blocks)."""
        return self.stream.try_next()

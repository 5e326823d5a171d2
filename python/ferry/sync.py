"""Running the engine's async calls from synchronous code."""

import asyncio
import concurrent.futures
from typing import Awaitable, Callable, Optional, TypeVar

T = TypeVar("T")


def run_sync(make: Callable[[], Awaitable[T]], timeout: Optional[float] = None) -> T:
    """Runs the coroutine `make()` to completion on a private event loop and returns its result.

    Raises `TimeoutError` after `timeout` seconds (the engine call is then abandoned, not the task).
    Called from a thread that runs an event loop, it runs on a helper thread instead (and blocks
    that loop: in async code, await the `*_async` method).
    """

    async def bounded() -> T:
        return await asyncio.wait_for(make(), timeout)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(bounded())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ferry-sync") as pool:
        return pool.submit(asyncio.run, bounded()).result()

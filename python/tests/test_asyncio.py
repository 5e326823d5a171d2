"""asyncio: the engine's coroutines (`wait`, event streams) and the async helpers."""

import asyncio
import hashlib

import pytest

import ferry
from helpers import WAIT, fast_config, sha256_of


def test_wait_async_and_gather(serve, tmp_path):
    server = serve(2 << 20)

    async def main():
        async with ferry.Manager(tmp_path / "state", fast_config()) as manager:
            ids = [manager.download(server.url, tmp_path / f"{i}.bin") for i in range(3)]
            statuses = await asyncio.gather(*(manager.wait_async(i, timeout=WAIT) for i in ids))
            raw = await manager.ffi.wait(ids[0])  # the generated coroutine itself
            return statuses, raw

    statuses, raw = asyncio.run(main())
    assert [s.state for s in statuses] == [ferry.TaskState.COMPLETED] * 3
    assert raw.state == ferry.TaskState.COMPLETED
    assert all(sha256_of(tmp_path / f"{i}.bin") == server.sha256 for i in range(3))


def test_wait_async_timeout_leaves_the_task_running(serve, manager, tmp_path):
    server = serve(8 << 20, rate=200_000)
    task_id = manager.download(server.url, tmp_path / "slow.bin")

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await manager.wait_async(task_id, timeout=0.2)

    asyncio.run(main())
    assert manager.status(task_id).state == ferry.TaskState.RUNNING
    with pytest.raises(TimeoutError):
        manager.wait(task_id, timeout=0.2)
    manager.cancel(task_id)
    assert manager.wait(task_id, timeout=WAIT).state == ferry.TaskState.CANCELLED


def test_async_for_over_events(server, manager, tmp_path):
    async def main():
        events = manager.events(idle_timeout=WAIT)
        task_id = manager.download(server.url, tmp_path / "a.bin")
        async for event in events:
            if event.is_state_changed() and event.to == ferry.TaskState.COMPLETED:
                return event.task_id == task_id

    assert asyncio.run(main())


def test_sync_wait_inside_a_running_loop(server, manager, tmp_path):
    async def main():
        return manager.wait(manager.download(server.url, tmp_path / "b.bin"), timeout=WAIT)

    assert asyncio.run(main()).state == ferry.TaskState.COMPLETED


def test_download_url_async_with_async_callbacks(server):
    async def main():
        digest, percents = hashlib.sha256(), []

        async def on_chunk(chunk):
            await asyncio.sleep(0)
            digest.update(chunk)

        async def on_progress(percent):
            percents.append(percent)

        body = await ferry.download_url_async(server.url, timeout=WAIT)
        ok = await ferry.download_url_async(server.url, chunk_callback=on_chunk,
                                            progress_callback=on_progress, timeout=WAIT)
        return body, ok, digest.hexdigest(), percents

    body, ok, streamed, percents = asyncio.run(main())
    assert hashlib.sha256(body).hexdigest() == server.sha256
    assert ok is True and streamed == server.sha256
    assert percents[-1] == 100

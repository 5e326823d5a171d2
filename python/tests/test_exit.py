"""The interpreter exits cleanly whatever Ferry is doing: CPython before 3.14 kills a thread that
enters it while it finalizes, and that forced unwind through a Ferry thread aborted the process
(SIGABRT, "FATAL: exception not rethrown"). Each script runs several times: the aborts came in
about half of the runs."""

import subprocess
import sys
import textwrap

import pytest

RUNS = 8


def exits_cleanly(script: str) -> None:
    for run in range(RUNS):
        result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, timeout=60)
        assert result.returncode == 0, f"run {run + 1}: exit {result.returncode}: {result.stderr.decode()[-2000:]}"
        assert b"done" in result.stdout


def test_exit_after_timed_out_waits_and_close(serve, tmp_path):
    # Each timed-out wait abandons an async engine call; close() then wakes the last one from a
    # Ferry thread while the interpreter may already be on its way out.
    server = serve(64 << 20, rate=1 << 20)
    exits_cleanly(f"""
        import tempfile, ferry
        m = ferry.Manager(tempfile.mkdtemp(dir={str(tmp_path)!r}))
        task = m.download({server.url!r}, tempfile.mkdtemp(dir={str(tmp_path)!r}) + "/f")
        for _ in range(20):
            try:
                m.wait(task, 0.05)
            except TimeoutError:
                pass
        m.close()
        print("done", flush=True)
    """)


@pytest.mark.parametrize("output", ["file", "stream"])
def test_exit_with_an_open_manager_a_listener_and_a_download_running(serve, tmp_path, output):
    # The listener (and the stream's sink) is released by a Ferry thread after the interpreter
    # said it exits; releasing a foreign object calls into the interpreter.
    server = serve(64 << 20, rate=1 << 20)
    start = (f"m.enqueue_stream(ferry.make_request({server.url!r}, None), lambda chunk: None)" if output == "stream"
             else f"m.download({server.url!r}, tempfile.mkdtemp(dir={str(tmp_path)!r}) + '/f')")
    exits_cleanly(f"""
        import tempfile, time, ferry
        m = ferry.Manager(tempfile.mkdtemp(dir={str(tmp_path)!r}))
        m.add_listener(lambda event: None)
        {start}
        time.sleep(0.5)
        print("done", flush=True)
    """)


def test_close_from_a_chunk_callback_returns_at_once(serve, tmp_path):
    # Waiting for the shutdown there waited for the callback itself: 30 s, then TimeoutError.
    import threading
    import time
    import ferry

    server = serve(8 << 20, rate=1 << 20)
    m = ferry.Manager(tmp_path / "state")
    took = {}
    closed = threading.Event()

    def sink(chunk):
        if not took:
            started = time.monotonic()
            m.close()
            took["s"] = time.monotonic() - started
            closed.set()

    m.enqueue_stream(ferry.make_request(server.url, None), sink)
    assert closed.wait(20), "the callback never returned"
    assert took["s"] < 1, took
    assert repr(m) == "Manager(closed)"


def test_wait_and_close_still_work_in_an_atexit_handler_that_runs_after_ferrys(serve, tmp_path):
    # atexit runs handlers last-registered first: one registered before `import ferry` runs after
    # Ferry's own, which stops every call back into Python. A wait or close there used to await a
    # wake-up that never came (wait hung, close timed out after 30 s).
    import time

    server = serve(1 << 20, rate=1 << 20)
    script = textwrap.dedent(f"""
        import atexit, time
        held = {{}}

        def late():
            started = time.monotonic()
            status = held["m"].wait(held["task"], 20)
            held["m"].close()
            print("late", status.state, round(time.monotonic() - started, 1), flush=True)

        atexit.register(late)
        import ferry
        held["m"] = ferry.Manager({str(tmp_path / 'state')!r})
        held["task"] = held["m"].download({server.url!r}, {str(tmp_path / 'f.bin')!r})
        print("done", flush=True)
    """)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert b"late TaskState.COMPLETED" in result.stdout, (result.stdout, result.stderr.decode()[-2000:])
    assert time.monotonic() - started < 15
    assert (tmp_path / "f.bin").stat().st_size == 1 << 20


def test_aclose_from_an_async_chunk_callback_returns_at_once(serve, tmp_path):
    # An async sink's coroutine runs on the event loop while the engine's thread waits for it:
    # awaiting the shutdown there waited for itself.
    import asyncio
    import time
    import ferry

    server = serve(8 << 20, rate=1 << 20)

    async def main():
        m = ferry.Manager(tmp_path / "state")
        took = {}
        closed = asyncio.Event()

        async def sink(chunk):
            if not took:
                started = time.monotonic()
                took["s"] = None
                await m.aclose()
                took["s"] = time.monotonic() - started
                closed.set()

        m.enqueue_stream(ferry.make_request(server.url, None), ferry.CallbackSink(sink, asyncio.get_running_loop()))
        await asyncio.wait_for(closed.wait(), 20)
        assert took["s"] < 1, took
        assert repr(m) == "Manager(closed)"

    asyncio.run(main())

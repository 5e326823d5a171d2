"""Events through listeners (callbacks) and iterators."""

import threading

import pytest

import ferry
from helpers import WAIT, poll

State = ferry.TaskState


def completion(task_id):
    done = threading.Event()
    events = []

    def listener(event):
        if event.task_id == task_id or task_id is None:
            events.append(event)
            if event.is_state_changed() and event.to in (State.COMPLETED, State.FAILED, State.CANCELLED):
                done.set()

    return listener, events, done


def test_listener_gets_progress_and_completion(serve, manager, tmp_path):
    server = serve(4 << 20, rate=2_000_000)
    task_id = "evented"
    listener, events, done = completion(task_id)
    registration = manager.add_listener(listener)
    manager.download(server.url, tmp_path / "e.bin", task_id=task_id, connections=2)
    assert done.wait(WAIT)
    assert not registration.is_cancelled()

    progress = [e for e in events if e.is_progress()]
    states = [e for e in events if e.is_state_changed()]
    assert progress, "progress events were delivered"
    assert [p.bytes for p in progress] == sorted(p.bytes for p in progress)
    # A report may come before the server has answered, with no total yet (as in the Kotlin test).
    assert all(0.0 <= p.progress <= 1.0 and p.total in (None, server.size) for p in progress), progress
    assert any(p.bytes > 0 and p.total == server.size for p in progress)
    assert states[0]._from is None and states[0].to == State.QUEUED
    assert [s.to for s in states][-2:] == [State.RUNNING, State.COMPLETED]
    assert events.index(states[-1]) > events.index(progress[0])


def test_cancelled_registration_stops_delivery(server, manager, tmp_path):
    seen = []
    registration = manager.add_listener(seen.append)
    registration.cancel()
    assert registration.is_cancelled()
    manager.wait(manager.download(server.url, tmp_path / "quiet.bin"), timeout=WAIT)
    assert seen == []


def test_event_iterator_yields_until_done(server, manager, tmp_path):
    events = manager.events(idle_timeout=WAIT)
    task_id = manager.download(server.url, tmp_path / "it.bin")
    seen = []
    for event in events:
        seen.append(event)
        if event.is_state_changed() and event.to == State.COMPLETED:
            break
    assert all(e.task_id == task_id for e in seen)
    assert [e.to for e in seen if e.is_state_changed()] == [State.QUEUED, State.RUNNING, State.COMPLETED]


def test_event_iterator_stops_when_idle(manager):
    assert list(manager.events(idle_timeout=0.2)) == []
    assert manager.events().poll() is None


def test_raising_listener_does_not_stop_the_engine(serve, manager, tmp_path, caplog):
    server = serve(2 << 20, rate=2_000_000)
    calls = []

    def broken(event):
        calls.append(event)
        raise RuntimeError("listener bug")

    manager.add_listener(broken)
    listener, events, done = completion(None)
    manager.add_listener(listener)
    first = manager.download(server.url, tmp_path / "a.bin")
    assert manager.wait(first, timeout=WAIT).state == State.COMPLETED
    second = manager.download(server.url, tmp_path / "b.bin")
    assert manager.wait(second, timeout=WAIT).state == State.COMPLETED
    # The broken listener keeps being called after raising, for both tasks.
    poll(lambda: any(e.task_id == second and e.is_state_changed() and e.to == State.COMPLETED for e in calls))
    assert any(e.task_id == first for e in calls)
    assert "listener bug" in caplog.text


def test_event_stream_ends_after_shutdown(tmp_path):
    import asyncio

    manager = ferry.DownloadManager.open(str(tmp_path / "state"))
    stream = manager.events()

    async def drain():
        while (event := await asyncio.wait_for(stream.next(), 2)) is not None:
            pass

    asyncio.run(manager.shutdown())
    asyncio.run(drain())


def test_cancelled_next_loses_no_event(server, manager, tmp_path):
    import asyncio

    cancelled, reference = manager.ffi.events(), manager.ffi.events()

    async def give_up():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(cancelled.next(), 0.1)

    asyncio.run(give_up())
    manager.wait(manager.download(server.url, tmp_path / "x.bin"), timeout=WAIT)
    seen = []
    poll(lambda: seen.extend(e for e in iter(reference.try_next, None) if e.is_state_changed()) or len(seen) == 3)
    assert len([e for e in iter(cancelled.try_next, None) if e.is_state_changed()]) == len(seen)

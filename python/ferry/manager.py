"""`Manager`: a Pythonic wrapper of the generated `DownloadManager`."""

import asyncio
import copy
import os
import threading
from typing import Any, Callable, List, Mapping, Optional, Union

from . import _ffi
from ._ffi import (BatchItem, ChunkSink, DownloadError, DownloadEvent, DownloadManager, DownloadRequest,
                   ErrorCode, EventListener, Limits, ListenerRegistration, ManagerConfig, NetworkPolicy,
                   NetworkState, PathRoot, TaskErrorInfo, TaskStatus)
from .callbacks import CallbackListener, CallbackRefresher, CallbackSink, fresh_credentials, in_callback
from .events import EventIterator
from .request import check_request, check_task_id, make_request

SHUTDOWN_TIMEOUT = 30.0


def _rate(bytes_per_sec: Optional[int]) -> Optional[int]:
    """A rate for the FFI: a negative one is a caller's mistake, said in Python's terms."""
    if bytes_per_sec is not None and not 0 <= bytes_per_sec < 1 << 64:
        raise ValueError(f"a rate limit must be between 0 and 2**64 - 1 bytes a second, got {bytes_per_sec}")
    return bytes_per_sec


class _Closed:
    """Stands in for the engine manager of a closed `Manager`: every use raises `SHUT_DOWN`."""

    def __getattr__(self, name: str) -> Any:
        raise DownloadError.Stopped(ErrorCode.SHUT_DOWN, "this Manager is closed")


class Manager:
    """Downloads over one state directory (its persistent task table).

    Use it as a context manager (`with` or `async with`): leaving it removes the listeners added
    through it and shuts the manager down (running transfers stop with their progress journaled and
    resume when the directory is opened again, which the same process may then do). Every call
    raises `DownloadError` on failure (`SHUT_DOWN` once closed).
    `manager.ffi` is the generated `DownloadManager`, for anything not wrapped here.

    Other processes may have the same state directory open (see "Several processes" in
    python/README.md): every process lists every task; each runs the ones it enqueued or resumed.
    Opening raises `LOCKS_UNAVAILABLE` on a file system without working file locks.

    `roots` names directories whose path may change (a data directory restored elsewhere, a
    volume mounted at another place): `{"data": "/srv/app/data"}`. A destination under one is
    stored relative to it and resolved against the roots of each open, so its task resumes from
    its bytes and reports where its file is now. Declare the same names at every open (and in
    every process sharing `state_dir`); a task under a name that is not declared is listed with
    `ROOT_UNKNOWN` and not run. A bad root (a missing directory, a relative path) raises
    `INVALID_CONFIG`. They are added to `config.roots`.
    """

    def __init__(self, state_dir: "os.PathLike | str", config: Optional[ManagerConfig] = None,
                 roots: Optional[Mapping[str, "os.PathLike | str"]] = None):
        if roots:
            config = copy.copy(config) if config is not None else ManagerConfig()
            config.roots = list(config.roots) + [PathRoot(name=name, path=os.fspath(path))
                                                 for name, path in roots.items()]
        self._attach(DownloadManager.open(os.fspath(state_dir), config), owned=True)

    @classmethod
    def default(cls) -> "Manager":
        """The process-wide default manager (the one of `download`/`status`/`cancel`).

        Closing this wrapper removes its listeners but never shuts the default manager down.
        """
        self = cls.__new__(cls)
        self._attach(_ffi.default_manager(), owned=False)
        return self

    def _attach(self, ffi: DownloadManager, owned: bool) -> None:
        self.ffi = ffi
        self._owned = owned  # whether close() shuts the engine manager down
        self._closed = False
        self._listeners: List[ListenerRegistration] = []

    @property
    def state_dir(self) -> str:
        """The state directory."""
        return self.ffi.state_dir()

    # Enqueueing -------------------------------------------------------------------------------

    def enqueue(self, request: DownloadRequest) -> str:
        """Enqueues a download; returns its task id (the same id twice downloads once)."""
        check_request(request)
        return self.ffi.enqueue(request)

    def download(self, url: str, destination: "os.PathLike | str", **fields: Any) -> str:
        """Enqueues a download of `url` to the absolute path `destination`; returns the task id.

        Keyword arguments are `DownloadRequest` fields (`task_id`, `headers` as a dict,
        `connections`, `sha256`, `priority`, `overwrite`, `rate_limit` in bytes per second, `network_policy`).
        """
        return self.enqueue(make_request(url, destination, **fields))

    def enqueue_batch(self, requests: List[DownloadRequest]) -> List[BatchItem]:
        """Enqueues many downloads in one transaction; one `BatchItem` per request, in order.

        Blocks while the batch is recorded (about 0.1 s per 1,000 requests); from asyncio, use
        `enqueue_batch_async`.
        """
        requests = list(requests)
        refused = {}
        for i, request in enumerate(requests):
            try:
                check_request(request)
            except DownloadError as exc:
                refused[i] = BatchItem.REJECTED(TaskErrorInfo(code=exc.code, message=exc.message, http_status=None))
        if not refused:
            return self.ffi.enqueue_batch(requests)
        accepted = iter(self.ffi.enqueue_batch([r for i, r in enumerate(requests) if i not in refused]))
        return [refused[i] if i in refused else next(accepted) for i in range(len(requests))]

    async def enqueue_batch_async(self, requests: List[DownloadRequest]) -> List[BatchItem]:
        """`enqueue_batch` on a worker thread, so the event loop keeps running meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(None, self.enqueue_batch, list(requests))

    def enqueue_stream(self, request: DownloadRequest,
                       sink: Union[ChunkSink, Callable[[bytes], Any]]) -> str:
        """Enqueues a download whose bytes go to `sink` (a `ChunkSink` or `fn(chunk)`)."""
        check_request(request)
        return self.ffi.enqueue_stream(request, sink if isinstance(sink, ChunkSink) else CallbackSink(sink))

    # Tasks ------------------------------------------------------------------------------------

    def status(self, task_id: str) -> TaskStatus:
        """A task's status."""
        check_task_id(task_id)
        return self.ffi.status(task_id)

    def list(self) -> List[TaskStatus]:
        """Every task, in enqueue order."""
        return self.ffi.list()

    def pause(self, task_id: str) -> None:
        """Pauses a task, keeping its partial file."""
        check_task_id(task_id)
        self.ffi.pause(task_id)

    def resume(self, task_id: str) -> None:
        """Resumes a paused or failed task from where it stopped."""
        check_task_id(task_id)
        self.ffi.resume(task_id)

    def cancel(self, task_id: str) -> None:
        """Cancels a task and deletes its partial file."""
        check_task_id(task_id)
        self.ffi.cancel(task_id)

    def remove(self, task_id: str, delete_file: bool = False) -> None:
        """Forgets a task; with `delete_file`, also deletes its completed file."""
        check_task_id(task_id)
        self.ffi.remove(task_id, delete_file)

    def take_bytes(self, task_id: str) -> bytes:
        """The body of a completed memory task (once)."""
        check_task_id(task_id)
        return self.ffi.take_bytes(task_id)

    def on_credentials_expired(self, fn: Optional[Callable[[str, int], Any]]) -> None:
        """Sets `fn(task_id, status)`, called on a Ferry thread when a server answers 401 or 403
        (`status`), and before a resume with `ManagerConfig(refresh_before_resume=True)` (status 0).
        It returns `fresh_credentials(url=..., headers=...)` (or a new URL as a `str`) and the
        download goes on from its bytes; `None` gives up (`ACCESS_DENIED`); raising, or taking longer
        than `refresh_timeout_ms`, fails the task with `CREDENTIALS_REFRESH_FAILED`. `None` removes it."""
        self.ffi.set_credential_refresher(None if fn is None else CallbackRefresher(fn))

    def update_credentials(self, task_id: str, url: Optional[str] = None, headers: Optional[dict] = None) -> None:
        """Replaces a task's URL or headers (stored with it, used from its next request on); resume a
        task that failed with `ACCESS_DENIED` afterwards. The server's validators still decide whether
        the new URL serves the same bytes. `INVALID_STATE` for a completed or cancelled task."""
        check_task_id(task_id)
        self.ffi.update_credentials(task_id, fresh_credentials(url=url, headers=headers))

    def pause_all(self) -> int:
        """Pauses every queued or running task; returns how many."""
        return self.ffi.pause_all()

    def resume_all(self) -> int:
        """Resumes every queued, paused or failed task; returns how many."""
        return self.ffi.resume_all()

    @property
    def limits(self) -> Limits:
        """Concurrency limits; assign a `Limits` to change them at run time."""
        return self.ffi.limits()

    @limits.setter
    def limits(self, limits: Limits) -> None:
        self.ffi.set_limits(limits)

    @property
    def rate_limit(self) -> Optional[int]:
        """Cap on all downloads together, in bytes per second (`None`: none).

        Assign to change it at once, running downloads included (`None` or 0 lifts it); set it at
        open with `ManagerConfig(rate_limit=...)`.
        """
        return self.ffi.rate_limit()

    @rate_limit.setter
    def rate_limit(self, bytes_per_sec: Optional[int]) -> None:
        self.ffi.set_rate_limit(_rate(bytes_per_sec))

    def task_rate_limit(self, task_id: str) -> Optional[int]:
        """A task's own cap, in bytes per second (`None`: none)."""
        check_task_id(task_id)
        return self.ffi.task_rate_limit(task_id)

    def set_task_rate_limit(self, task_id: str, bytes_per_sec: Optional[int]) -> None:
        """Caps one task over all its connections (`None` or 0 lifts it), at once if it runs.

        A file task's cap is stored: it holds after the directory is reopened and reaches another
        process that runs the task. Give one at enqueue with `download(..., rate_limit=...)`.
        """
        check_task_id(task_id)
        self.ffi.set_task_rate_limit(task_id, _rate(bytes_per_sec))

    # Network ----------------------------------------------------------------------------------

    @property
    def network(self) -> NetworkState:
        """The network as last reported (available and unrestricted until the first report).

        Assign a `NetworkState` on every change the platform reports: tasks the network refuses
        stop with their bytes kept and wait (`QUEUED`, `status.waiting` says why) without spending
        retries, and resume on their own when a report allows them.
        """
        return self.ffi.network()

    @network.setter
    def network(self, network: NetworkState) -> None:
        self.ffi.set_network(network)

    def set_network_policy(self, task_id: str, policy: "NetworkPolicy | str") -> None:
        """Changes which networks a task may use (`NetworkPolicy` or its name: "any",
        "not_expensive", "not_constrained"); applies at once."""
        check_task_id(task_id)
        if isinstance(policy, str):
            policy = NetworkPolicy[policy.upper()]
        self.ffi.set_network_policy(task_id, policy)

    # Waiting ----------------------------------------------------------------------------------

    def wait(self, task_id: str, timeout: Optional[float] = None) -> TaskStatus:
        """Blocks until the task is no longer queued or running; returns its status.

        Raises `TimeoutError` after `timeout` seconds (the task keeps going). A failed task is not
        an exception here: look at `status.state` / `status.error`, or call `raise_for_status`.
        """
        check_task_id(task_id)
        # Blocking in the engine, not awaiting a wake-up from it: a wait in an atexit handler
        # that runs after Ferry's own (which stops every call back into Python) still ends.
        status = self.ffi.wait_blocking(task_id, None if timeout is None else max(0, round(timeout * 1000)))
        if status is None:
            raise TimeoutError(f"task {task_id} still running after {timeout} s")
        return status

    async def wait_async(self, task_id: str, timeout: Optional[float] = None) -> TaskStatus:
        """`wait` for asyncio: awaits the engine's `DownloadManager.wait` coroutine.

        Cancelling the awaiting task (or the timeout) stops the waiting, not the download.
        """
        check_task_id(task_id)
        return await asyncio.wait_for(self.ffi.wait(task_id), timeout)

    # Events -----------------------------------------------------------------------------------

    def add_listener(self, listener: Union[EventListener, Callable[[DownloadEvent], Any]]) -> ListenerRegistration:
        """Calls `listener` (an `EventListener` or `fn(event)`) for every event, on a Ferry thread.

        Events arrive in order; a listener that raises is logged and kept. Delivery stops when the
        returned registration is cancelled or when this `Manager` is closed (the manager keeps the
        registration until then, so dropping it does not stop delivery).
        """
        if not isinstance(listener, EventListener):
            listener = CallbackListener(listener)
        registration = self.ffi.add_listener(listener)
        # Cancelled registrations are forgotten, so adding and cancelling listeners in a loop does
        # not grow this list.
        self._listeners = [r for r in self._listeners if not r.is_cancelled()]
        self._listeners.append(registration)
        return registration

    def events(self, idle_timeout: Optional[float] = None) -> EventIterator:
        """An iterator (sync or async) over events from now on; see `EventIterator`."""
        return EventIterator(self.ffi.events(), idle_timeout, lambda: self._closed)

    # Closing ----------------------------------------------------------------------------------

    def _drop_listeners(self) -> None:
        self._closed = True
        for registration in self._listeners:
            registration.cancel()
        self._listeners.clear()

    def close(self) -> None:
        """Removes this wrapper's listeners and shuts the manager down (waits up to 30 s).

        Called from a listener, sink or refresher of this package, it starts the shutdown and
        returns at once: waiting would wait for the very call it is made from.
        """
        self._drop_listeners()
        if self._owned:
            self._owned = False
            timeout_ms = round(SHUTDOWN_TIMEOUT * 1000)
            if in_callback():
                threading.Thread(target=self.ffi.shutdown_blocking, args=(timeout_ms,), name="ferry-close", daemon=True).start()
                self._release()
            else:
                finished = self.ffi.shutdown_blocking(timeout_ms)
                self._release()
                if not finished:
                    raise TimeoutError(f"the manager did not shut down within {SHUTDOWN_TIMEOUT} s")

    async def aclose(self) -> None:
        """`close` for asyncio (from a callback, it too starts the shutdown and returns)."""
        if in_callback():
            self.close()
            return
        self._drop_listeners()
        if self._owned:
            self._owned = False
            await asyncio.wait_for(self.ffi.shutdown(), SHUTDOWN_TIMEOUT)
            self._release()

    def _release(self) -> None:
        # Dropping the last handle frees the engine manager and its lock on the state directory.
        self.ffi = _Closed()

    def __enter__(self) -> "Manager":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> "Manager":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return "Manager(closed)" if self._closed else f"Manager({self.state_dir!r})"

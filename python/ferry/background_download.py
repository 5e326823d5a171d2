"""A drop-in for the iOS `background_download` module: `from ferry import background_download`.

Why a module of its own: scripts written for that module (PythonIDE on iOS) poll `status()` as a
plain dict with string states and catch `BackgroundDownloadError` with a `.code`. `ferry.status`
returns the engine's `TaskStatus` record (an enum state, the path as `destination`) and raises
`ferry.DownloadError`, so those scripts do not run on it. Here they run unchanged but for the
import, on Ferry's process-wide default manager (its state directory: `ferry.set_default_state_dir`,
else `$FERRY_STATE_DIR`, else the platform's data directory), so tasks survive the process as they
survive an iOS app's suspension.

* `download(url, destination_path, task_id=None) -> str`: starts a download, returns its task id
  (the same `task_id` again returns it without downloading twice). A relative path is taken from
  the current directory.
* `status(task_id) -> dict`: `state` ("queued", "running", "paused", "completed", "failed",
  "cancelled"; "unknown" for an id no task has), `progress` (0.0-1.0, 1.0 once completed), `path`,
  `bytes`, `total` (None while unknown), `speed` (bytes/s), `task_id`, and `error`: None, or
  `{"code": 2004, "name": "NOT_FOUND", "message": ...}` with Ferry's stable numeric code, and
  `waiting`: None, or why a queued task waits ("network_unavailable", "network_expensive",
  "network_constrained", "network_unreachable") once the app reports the network
  (`ferry.Manager.default().network = ferry.NetworkState(...)`).
* `cancel(task_id)`: cancels the task and deletes its partial file.
* `BackgroundDownloadError`: raised by the three calls; `.code` (int), `.name`, `.message`.
"""

import os
from typing import Any, Dict, Optional

from . import seed
from ._ffi import DownloadError, ErrorCode, TaskErrorInfo, TaskStatus

__all__ = ["BackgroundDownloadError", "cancel", "download", "status"]


class BackgroundDownloadError(Exception):
    """A call of this module failed. `code` is Ferry's stable numeric code (e.g. 1003 for a
    relative destination, 2001 when the connection failed), `name` its name, `message` the detail.
    The engine's `ferry.DownloadError` is the `__cause__`."""

    def __init__(self, code: int, name: str, message: str):
        super().__init__(message)
        self.code = code
        self.name = name
        self.message = message

    @classmethod
    def from_error(cls, error: DownloadError) -> "BackgroundDownloadError":
        return cls(error.code.value, error.code.name, error.message)

    def __repr__(self) -> str:
        return f"BackgroundDownloadError(code={self.code}, name={self.name!r}, message={self.message!r})"


def _error_dict(info: Optional[TaskErrorInfo]) -> Optional[Dict[str, Any]]:
    if info is None:
        return None
    return {"code": info.code.value, "name": info.code.name, "message": info.message}


def _status_dict(st: TaskStatus) -> Dict[str, Any]:
    return {
        "task_id": st.task_id,
        "state": st.state.name.lower(),
        "progress": st.progress,
        "path": st.destination,
        "bytes": st.bytes,
        "total": st.total,
        "speed": st.speed,
        "error": _error_dict(st.error),
        "waiting": None if st.waiting is None else st.waiting.name.lower(),
    }


def download(url: str, destination_path: "os.PathLike | str", task_id: Optional[str] = None) -> str:
    """Starts downloading `url` to `destination_path`; returns the task id (a new UUID if none
    is given). Raises `BackgroundDownloadError` for bad input (URL, path, task id)."""
    try:
        return seed.download(url, os.path.abspath(os.fspath(destination_path)), task_id)
    except DownloadError as exc:
        raise BackgroundDownloadError.from_error(exc) from exc


def status(task_id: str) -> Dict[str, Any]:
    """The task's status as a dict (see the module's docstring); state "unknown", with the
    `TASK_NOT_FOUND` error, for an id no task has."""
    try:
        return _status_dict(seed.status(task_id))
    except DownloadError as exc:
        if exc.code != ErrorCode.TASK_NOT_FOUND:
            raise BackgroundDownloadError.from_error(exc) from exc
        error = {"code": exc.code.value, "name": exc.code.name, "message": exc.message}
        return {"task_id": task_id, "state": "unknown", "progress": 0.0, "path": None, "bytes": 0,
                "total": None, "speed": 0.0, "error": error, "waiting": None}


def cancel(task_id: str) -> None:
    """Cancels the task (its state becomes "cancelled") and deletes its partial file; a finished
    task is left as it is. Raises `BackgroundDownloadError` (code 1013 `TASK_NOT_FOUND`...)."""
    try:
        seed.cancel(task_id)
    except DownloadError as exc:
        raise BackgroundDownloadError.from_error(exc) from exc

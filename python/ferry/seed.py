"""The seed-style API of iOS `background_download`: `download` / `status` / `cancel`.

They work on the process-wide default manager. Its state directory is the one given to
`set_default_state_dir` (call it first), else `$FERRY_STATE_DIR`, else the platform's data directory.
Differences from the seed: `status` returns a `TaskStatus` record (attributes, `state` is a
`TaskState`, the path is `destination`), and failures raise `DownloadError` with a stable `code`.
"""

import os
from typing import Optional

from . import _ffi
from ._ffi import TaskStatus
from .request import check_request, check_task_id


def download(url: str, destination: "os.PathLike | str", task_id: Optional[str] = None) -> str:
    """Starts downloading `url` to the absolute path `destination`; returns the task id.

    Calling it again with the same `task_id` returns that id without downloading again.
    """
    destination = os.fspath(destination)
    check_request(_ffi.DownloadRequest(url=url, destination=destination, task_id=task_id))
    return _ffi.download(url, destination, task_id)


def status(task_id: str) -> TaskStatus:
    """The task's status: `state`, `progress` (0..1), `bytes`, `total`, `speed`, `destination`,
    `error` (`code` + `message`, for failed tasks) and more."""
    check_task_id(task_id)
    return _ffi.status(task_id)


def cancel(task_id: str) -> None:
    """Cancels the task and deletes its partial file (a finished task is left as it is)."""
    check_task_id(task_id)
    _ffi.cancel(task_id)

"""Turning a task's recorded error into the typed `DownloadError` the engine raises for calls."""

from ._ffi import DownloadError, ErrorCode, TaskErrorInfo, TaskState, TaskStatus

_BY_BAND = {
    1: DownloadError.InvalidInput,
    3: DownloadError.Storage,
    4: DownloadError.Integrity,
    5: DownloadError.Stopped,
}


def error_from_info(info: TaskErrorInfo) -> DownloadError:
    """The `DownloadError` variant of a task's error, chosen by its code band like the engine does.

    A task's record keeps only the code and the message, so a `Network` error built here has
    `http_status=None` and `retryable=False` (the engine already spent its retries on the task).
    """
    band = info.code.value // 1000
    if band == 2:
        return DownloadError.Network(info.code, info.message, None, False)
    return _BY_BAND.get(band, DownloadError.Internal)(info.code, info.message)


def raise_for_status(status: TaskStatus) -> TaskStatus:
    """Returns `status` if its task completed; raises its `DownloadError` otherwise."""
    if status.state == TaskState.COMPLETED:
        return status
    if status.error is not None:
        raise error_from_info(status.error)
    if status.state == TaskState.CANCELLED:
        raise DownloadError.Stopped(ErrorCode.CANCELLED, f"task {status.task_id} was cancelled")
    raise DownloadError.InvalidInput(
        ErrorCode.INVALID_STATE, f"task {status.task_id} is {status.state.name.lower()}, not completed"
    )

"""Building `DownloadRequest` records from Python-friendly arguments, and refusing (with the
engine's typed errors) strings that cannot cross the FFI."""

import os
from typing import Iterable, Mapping, Optional, Tuple, Union

from ._ffi import DownloadError, DownloadRequest, ErrorCode, HttpHeader, NetworkPolicy

Headers = Union[Mapping[str, str], Iterable[Tuple[str, str]], Iterable[HttpHeader], None]


def headers_list(headers: Headers) -> list:
    """`HttpHeader` records from a dict, `(name, value)` pairs or `HttpHeader`s."""
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [h if isinstance(h, HttpHeader) else HttpHeader(name=h[0], value=h[1]) for h in items]


def make_request(url: str, destination: "Optional[os.PathLike | str]" = None, *, headers: Headers = None,
                 **fields) -> DownloadRequest:
    """A `DownloadRequest`; `destination` may be any path-like, `headers` a dict or pairs.

    Other keyword arguments are the record's fields (`task_id`, `connections`, `sha256`, `priority`,
    `overwrite`, `memory_limit`, `rate_limit`, `network_policy`: a `NetworkPolicy` or its name). Paths are passed on as given: the engine wants absolute ones.
    """
    dest = None if destination is None else os.fspath(destination)
    if isinstance(fields.get("network_policy"), str):
        fields["network_policy"] = NetworkPolicy[fields["network_policy"].upper()]
    return DownloadRequest(url=url, destination=dest, headers=headers_list(headers), **fields)


def _unencodable(value) -> bool:
    """Whether `value` is a str that UTF-8 cannot carry: it holds lone surrogates, as
    `os.fsdecode` makes of a file name that is not UTF-8."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_request(request: DownloadRequest) -> None:
    """Raises the engine's `DownloadError.InvalidInput` for a field the FFI cannot carry, with the
    code the engine gives that field's other mistakes (instead of a bare `UnicodeEncodeError`)."""
    fields = [
        (request.url, ErrorCode.INVALID_URL, "the URL"),
        (request.task_id, ErrorCode.INVALID_TASK_ID, "the task id"),
        # Like a NUL byte: a path the engine could never create.
        (request.destination, ErrorCode.DESTINATION_NOT_WRITABLE, "the destination path"),
        (request.sha256, ErrorCode.INVALID_CHECKSUM, "the checksum"),
    ]
    for header in request.headers or ():
        if isinstance(header, HttpHeader):
            fields += [(header.name, ErrorCode.INVALID_HEADER, "a header name"),
                       (header.value, ErrorCode.INVALID_HEADER, "a header value")]
    for value, code, what in fields:
        if _unencodable(value):
            raise DownloadError.InvalidInput(code, f"{what} is not valid Unicode (it holds lone surrogates)")
    # Numbers the FFI cannot carry: the connection count gets the engine's code for its other
    # mistakes (0, too many), the rest a ValueError that names the field (not the FFI's type).
    connections = request.connections
    if isinstance(connections, int) and not 0 <= connections < 1 << 32:
        raise DownloadError.InvalidInput(ErrorCode.INVALID_CONNECTIONS, f"connections must be between 1 and 64, got {connections}")
    for name, low, high in (("priority", -(1 << 31), 1 << 31), ("memory_limit", 0, 1 << 64), ("rate_limit", 0, 1 << 64)):
        value = getattr(request, name)
        if isinstance(value, int) and not low <= value < high:
            raise ValueError(f"{name} must be between {low} and {high - 1}, got {value}")


def check_task_id(task_id) -> None:
    """No task can have an id UTF-8 cannot carry: `TASK_NOT_FOUND`, as for any unknown id."""
    if _unencodable(task_id):
        raise DownloadError.InvalidInput(ErrorCode.TASK_NOT_FOUND, "no task has an id that is not valid Unicode")

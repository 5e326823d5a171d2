"""Building `DownloadRequest` records from Python-friendly arguments."""

import os
from typing import Iterable, Mapping, Optional, Tuple, Union

from ._ffi import DownloadRequest, HttpHeader

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
    `overwrite`, `memory_limit`). Paths are passed on as given: the engine wants absolute ones.
    """
    dest = None if destination is None else os.fspath(destination)
    return DownloadRequest(url=url, destination=dest, headers=headers_list(headers), **fields)

"""ferry.testing: Ferry's loopback test server, for unit tests of the code that drives Ferry.

Why: an application's tests of its progress reporting, retry logic and error handling need a server
that misbehaves on cue, without a network and without starting a process. `TestServer` runs in the
test process, on 127.0.0.1, on the engine's own threads: it is the server the engine's Rust tests
use, with their faults (drops, stalls, 503 or 429 with Retry-After, validators that change, rate
caps), exported through the generated bindings (`ferry._ffi.TestServer`, cargo feature `testing`,
in every build of the library). This module only makes it a context manager with Python names;
the behaviour is all in Rust.

    from ferry.testing import TestServer

    with TestServer(busy_requests=1) as server:  # a 503 with Retry-After: 1, then the file
        ...  # download server.url with the code under test
        assert server.stats.requests == 2

Faults are `TestServerConfig` fields, given as keywords: `size`, `seed`, `ranges`, `validators`
(a `TestValidators`), `rate`, `latency_ms`, `change_every`, `drop_after` / `drop_requests`,
`stall_after` / `stall_requests` / `stall_ms`, `busy_status` / `busy_requests` /
`retry_after_secs`, `chunked`, `short_by` / `short_requests`.
"""

import time

from ._ffi import TestServer as _FfiTestServer
from ._ffi import TestServerConfig, TestServerStats, TestValidators

__all__ = ["TestServer", "TestServerConfig", "TestServerStats", "TestValidators"]

# Named Test*, but helpers: pytest must not try to collect them from test modules that import them.
for _helper in (TestServerConfig, TestServerStats, TestValidators):
    _helper.__test__ = False
del _helper


class TestServer:
    """An HTTP/1.1 server on 127.0.0.1, in this process, serving one generated file at `url`.

    `TestServer(config=None, **fields)` starts it with a `TestServerConfig`, or with that config's
    fields as keywords (`TestServer(size=4 << 20, drop_after=1 << 20, drop_requests=1)`). Also
    `url_named(name)`, `status_url(code)` (an error page) and `redirect_url(hops)`. `close()`, or
    leaving the `with` block, stops it. Starting fails with `ferry.DownloadError` when no port can
    be bound.
    """

    __test__ = False  # a helper, not a test class, for pytest

    def __init__(self, config: TestServerConfig = None, **fields):
        if config is not None and fields:
            raise TypeError("give a TestServerConfig or its fields as keywords, not both")
        self._config = config if config is not None else TestServerConfig(**fields)
        self._server = _FfiTestServer.start(self._config)
        #: `http://127.0.0.1:<port>`.
        self.base = self._server.base()
        #: The file's URL.
        self.url = self._server.url()

    def _live(self) -> _FfiTestServer:
        if self._server is None:
            raise RuntimeError("the test server is closed")
        return self._server

    def url_named(self, name: str) -> str:
        """The file's URL ending in `name` (names matter to code that names files after URLs)."""
        return self._live().url_named(name)

    def status_url(self, code: int) -> str:
        """A page answered with `code` (404, 500, 503, ...)."""
        return self._live().status_url(code)

    def redirect_url(self, hops: int) -> str:
        """A chain of `hops` redirects that ends at the file."""
        return self._live().redirect_url(hops)

    def signed_url(self, valid_ms: int) -> str:
        """The file's URL signed to expire `valid_ms` milliseconds from now: after that it answers
        403, as a CDN's signed URLs do (for code that refreshes credentials)."""
        return self._live().signed_url(valid_ms)

    @property
    def size(self) -> int:
        """The file's length now."""
        return self._live().size()

    @property
    def sha256(self) -> str:
        """SHA-256 (lower-case hex) of the file as it is served now."""
        return self._live().sha256()

    def content(self) -> bytes:
        """The file's bytes as they are served now."""
        return self._live().content()

    @property
    def stats(self) -> TestServerStats:
        """What the server has sent: `requests`, `body_bytes`, `ranged_requests`,
        `if_range_requests`, `active` and `max_active`."""
        return self._live().stats()

    @property
    def log(self) -> list:
        """One line per request for the file: its range, `If-Range`, and the status answered."""
        return self._live().log()

    @property
    def config(self) -> TestServerConfig:
        """The size, seed and faults; setting it changes them from the next request on."""
        return self._config

    @config.setter
    def config(self, config: TestServerConfig) -> None:
        self._live().set_config(config)
        self._config = config

    def configure(self, **fields) -> None:
        """Changes the given fields of `config` from the next request on (requests in flight keep
        theirs): `server.configure(busy_requests=3, busy_status=429)`."""
        self.config = TestServerConfig(**{**vars(self._config), **fields})

    def wait_for_stats(self, predicate, timeout: float = 10.0) -> TestServerStats:
        """Polls `stats` every 10 ms until `predicate(stats)` is true and returns them, e.g.
        `server.wait_for_stats(lambda s: s.body_bytes >= 1 << 20)` before pausing a download
        half-way. Raises `TimeoutError` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats
            if predicate(stats):
                return stats
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the test server's stats did not match within {timeout}s (last: {stats})")
            time.sleep(0.01)

    def close(self) -> None:
        """Stops the server (connections closed, its port refused). Closing twice is fine."""
        self._server = None  # the only reference: the native server stops as it is released

    def __enter__(self) -> "TestServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._server is None else self.url
        return f"<ferry.testing.TestServer {state}>"

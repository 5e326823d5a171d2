"""Fixtures: `ferry serve` loopback servers, the default state directory, managers.

Tests talk only to servers they start. `$FERRY_BIN serve` prints one JSON line (url, base, size,
sha256) and serves until its stdin closes; every server is stopped and reaped after its test.
"""

import os

import pytest

import ferry
from helpers import fast_config, start_server


@pytest.fixture
def serve():
    """`serve(size, rate=None, seed=None)` starts a server; all are stopped after the test."""
    binary = os.environ.get("FERRY_BIN")
    if not binary:
        pytest.fail("FERRY_BIN is not set (run python/test.sh)")
    servers = []

    def start(size: int = 1 << 20, rate: int = None, seed: int = None):
        servers.append(start_server(binary, size, rate, seed))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(serve):
    """A 1 MiB server, unthrottled."""
    return serve(1 << 20)


@pytest.fixture(scope="session", autouse=True)
def default_state_dir(tmp_path_factory):
    """The default manager (seed API, download_url) lives in a temporary directory."""
    path = tmp_path_factory.mktemp("default-state")
    ferry.set_default_state_dir(str(path))
    return path


@pytest.fixture
def manager(tmp_path):
    """A `ferry.Manager` over a fresh state directory, closed after the test."""
    with ferry.Manager(tmp_path / "state", fast_config()) as m:
        yield m

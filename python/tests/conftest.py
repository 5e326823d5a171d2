"""Fixtures: loopback servers, the default state directory, managers.

Tests talk only to servers they start: `ferry.testing.TestServer`, the product applications use for
their own unit tests, in this process on 127.0.0.1. Every server is closed after its test.
"""

import pytest

import ferry
from ferry.testing import TestServer
from helpers import fast_config


@pytest.fixture
def serve():
    """`serve(size, rate=None, seed=1, **faults)` starts a `TestServer` (two with the same size and
    seed serve the same bytes); all are closed after the test."""
    servers = []

    def start(size: int = 1 << 20, rate: int = None, seed: int = 1, **faults) -> TestServer:
        servers.append(TestServer(size=size, rate=rate, seed=seed, **faults))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


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

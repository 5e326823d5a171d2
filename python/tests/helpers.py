"""Helpers of the tests: a fast manager configuration, digests, polling. (The servers are
`ferry.testing.TestServer`, started by the fixtures in conftest.py.)"""

import hashlib
import time
from pathlib import Path

import pytest

import ferry

WAIT = 60.0  # bound of every wait for a download


def fast_config(**limits) -> ferry.ManagerConfig:
    """Frequent progress events, quick retries."""
    return ferry.ManagerConfig(
        progress_interval_ms=50,
        retry_budget=2,
        retry_base_delay_ms=50,
        limits=ferry.Limits(**limits) if limits else None,
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def poll(predicate, timeout: float = WAIT, interval: float = 0.02):
    """Calls `predicate()` until it returns something truthy; returns that, or fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(interval)

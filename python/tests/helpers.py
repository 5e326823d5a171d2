"""Helpers of the tests: the `ferry serve` process, a fast manager configuration, polling."""

import hashlib
import json
import os
import select
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import ferry

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
WAIT = 60.0  # bound of every wait for a download


@dataclass
class Server:
    """A running `ferry serve`."""

    url: str
    base: str
    size: int
    sha256: str
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=STOP_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        self.process.stdout.close()


def _read_line(process: subprocess.Popen, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    line = b""
    fd = process.stdout.fileno()
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError("ferry serve printed no line")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise RuntimeError(f"ferry serve exited ({process.poll()})")
        line += chunk
    return line


def start_server(binary: str, size: int, rate: int = None, seed: int = None) -> Server:
    """Starts `ferry serve` and reads its JSON line."""
    args = [binary, "serve", "--size", str(size)]
    if rate is not None:
        args += ["--rate", str(rate)]
    if seed is not None:
        args += ["--seed", str(seed)]
    process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        info = json.loads(_read_line(process, START_TIMEOUT))
    except BaseException:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)
        process.stdout.close()
        process.stdin.close()
        raise
    return Server(info["url"], info["base"], info["size"], info["sha256"], process)


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

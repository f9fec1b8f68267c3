"""Helpers for tests that run `proveniq serve` as a subprocess: a free port on 127.0.0.1 and
waiting until the stack answers `/ready` (its database too)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path, *, timeout: float = 90) -> None:
    """Return once `base/ready` answers 2xx; fail with the log's tail if the process exits or
    the stack is not ready within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            if requests.get(base + "/ready", timeout=1).ok:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or listening while its workers still start
        time.sleep(0.1)
    raise AssertionError(f"proveniq serve did not become ready: {log.read_text()[-3000:]}")

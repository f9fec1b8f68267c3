"""Emulators for the contract tests, started once per session.

The Firebase Auth emulator comes from the npm package firebase-tools, pinned by
``firebase/package.json`` and ``firebase/package-lock.json``; ``npm ci`` installs it into
``firebase/node_modules`` (git-ignored) when that is missing. It runs offline (``CI=true``, a
``demo-`` project needs no credentials) on free 127.0.0.1 ports and is stopped at session end.
If it cannot be installed or started the tests fail, with the emulator's log: they never skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

FIREBASE_DIR = Path(__file__).parent / "firebase"
FIREBASE_BIN = FIREBASE_DIR / "node_modules" / ".bin" / "firebase"
FIREBASE_PROJECT = "demo-proveniq"
START_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class AuthEmulator:
    host: str  # "127.0.0.1:<port>", the value of FIREBASE_AUTH_EMULATOR_HOST
    project_id: str

    @property
    def base_url(self) -> str:
        return f"http://{self.host}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _install_firebase_tools() -> None:
    if FIREBASE_BIN.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed: it is needed for the Firebase Auth emulator")
    done = subprocess.run(
        # Only what the Auth emulator needs: no install scripts, no optional native modules.
        [
            npm,
            "ci",
            "--no-audit",
            "--no-fund",
            "--prefer-offline",
            "--ignore-scripts",
            "--omit=optional",
        ],
        cwd=FIREBASE_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0 or not FIREBASE_BIN.exists():
        pytest.fail(f"npm ci for firebase-tools failed ({done.returncode}):\n{done.stderr[-4000:]}")


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - loopback http only
            return bool(json.load(r).get("authEmulator", {}).get("ready"))
    except (OSError, ValueError, urllib.error.URLError):
        return False


@pytest.fixture(scope="session")
def firebase_auth_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthEmulator]:
    _install_firebase_tools()
    work = tmp_path_factory.mktemp("firebase-emulator")
    port = _free_port()
    config = {
        "emulators": {
            "auth": {"host": "127.0.0.1", "port": port},
            "hub": {"host": "127.0.0.1", "port": _free_port()},
            "logging": {"host": "127.0.0.1", "port": _free_port()},
            "ui": {"enabled": False},
        }
    }
    (work / "firebase.json").write_text(json.dumps(config, indent=2))
    log_path = work / "emulator.log"
    env = {**os.environ, "CI": "true", "HOME": str(work)}
    env.pop("FIREBASE_AUTH_EMULATOR_HOST", None)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(FIREBASE_BIN), "emulators:start", "--only", "auth", "--project", FIREBASE_PROJECT],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, killed as one at the end
        )
    emulator = AuthEmulator(host=f"127.0.0.1:{port}", project_id=FIREBASE_PROJECT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _ready(emulator.base_url + "/"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"Firebase Auth emulator did not start (exit {proc.poll()}):\n"
                    + log_path.read_text(errors="replace")[-4000:]
                )
            time.sleep(0.2)
        yield emulator
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the emulator's whole process group: politely, then for sure."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

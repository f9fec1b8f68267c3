"""The npm Firestore emulator for the projection contract tests, started once per session.

`@firestore-emulator/server` is pinned by ``firestore/package.json`` and
``firestore/package-lock.json``; ``npm ci`` installs it into ``firestore/node_modules``
(git-ignored) when that is missing. The package has no command of its own and its `start()`
binds 0.0.0.0, so ``firestore/serve.js`` binds its gRPC server to 127.0.0.1 on a port the
system picks and prints it. If it cannot be installed or started the tests fail, with its log:
they never skip.

Import the fixture into a test module: ``from tests.contract.firestore_emulator import
firestore_emulator``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

FIRESTORE_DIR = Path(__file__).parent / "firestore"
SERVER_PACKAGE = FIRESTORE_DIR / "node_modules" / "@firestore-emulator" / "server"
SERVE_SCRIPT = FIRESTORE_DIR / "serve.js"
PROJECT = "demo-proveniq"
START_TIMEOUT_SECONDS = 30
_LISTENING = re.compile(r"^listening (127\.0\.0\.1:\d+)$", re.M)


@dataclass(frozen=True)
class FirestoreEmulator:
    host: str  # "127.0.0.1:<port>", the value of FIRESTORE_EMULATOR_HOST
    project_id: str


def _install() -> None:
    if SERVER_PACKAGE.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed: it is needed for the Firestore emulator")
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--ignore-scripts"],
        cwd=FIRESTORE_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0 or not SERVER_PACKAGE.exists():
        pytest.fail(f"npm ci for the Firestore emulator failed ({done.returncode}):\n{done.stderr}")


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirestoreEmulator]:
    _install()
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: it is needed for the Firestore emulator")
    log_path = tmp_path_factory.mktemp("firestore-emulator") / "emulator.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [node, str(SERVE_SCRIPT), "0"],
            cwd=FIRESTORE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            found = _LISTENING.search(log_path.read_text(errors="replace"))
            if found:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"Firestore emulator did not start (exit {proc.poll()}):\n"
                    + log_path.read_text(errors="replace")[-4000:]
                )
            time.sleep(0.05)
        yield FirestoreEmulator(host=found.group(1), project_id=PROJECT)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

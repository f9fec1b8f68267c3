"""The npm Firestore emulator (`@firestore-emulator/server`, pinned in
`tools/firestore-emulator/`), installed with `npm ci` when missing and started on 127.0.0.1.

Its own `start()` binds 0.0.0.0, so `serve.js` binds the gRPC server to 127.0.0.1 on a port
the system picks and prints it. Used by the local stack and the projection contract tests.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from proveniq.errors import Unavailable

ROOT = Path(__file__).resolve().parents[4] / "tools" / "firestore-emulator"
_LISTENING = re.compile(r"^listening (127\.0\.0\.1:\d+)$", re.M)


@dataclass
class FirestoreEmulator:
    host: str  # "127.0.0.1:<port>", the value of FIRESTORE_EMULATOR_HOST
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def _die_with_parent() -> None:
    """Linux: the emulator gets SIGTERM when the process that started it dies, even by SIGKILL."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def available() -> bool:
    return shutil.which("node") is not None and (
        (ROOT / "node_modules").exists() or shutil.which("npm") is not None
    )


def install(root: Path = ROOT) -> None:
    """`npm ci` into `root/node_modules` (git-ignored) if it is not there yet."""
    if (root / "node_modules" / "@firestore-emulator" / "server").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise Unavailable("npm is not installed: it is needed for the Firestore emulator")
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--ignore-scripts"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise Unavailable(f"npm ci for the Firestore emulator failed: {done.stderr[-2000:]}")


def start(log_path: Path, *, root: Path = ROOT, timeout: float = 30) -> FirestoreEmulator:
    install(root)
    node = shutil.which("node")
    if node is None:
        raise Unavailable("node is not installed: it is needed for the Firestore emulator")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [node, str(root / "serve.js"), "0"],
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # a SIGKILLed stack leaves no emulator behind
        )
    deadline = time.monotonic() + timeout
    while True:
        found = _LISTENING.search(log_path.read_text(errors="replace"))
        if found:
            return FirestoreEmulator(host=found.group(1), process=proc)
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                FirestoreEmulator(host="", process=proc).stop()
            raise Unavailable(
                "Firestore emulator did not start: " + log_path.read_text(errors="replace")[-2000:]
            )
        time.sleep(0.05)

"""The README's quickstart, run as written (its shell block extracted from README.md) against a
fresh `proveniq serve`, so it cannot drift. The only substitution: port 8080 becomes a free
port, so the test does not collide with a developer's own `make run`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.serving import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[2]


def quickstart_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the quickstart has exactly one shell block"
    return blocks[0]


def test_the_readme_quickstart_runs_as_written() -> None:
    work = Path(tempfile.mkdtemp(prefix="pvq-readme-", dir="/tmp"))
    port = free_port()
    (work / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVENIQ_", "FIRESTORE_"))}
    env.update(
        PROVENIQ_STATE_DIR=str(work / ".proveniq"),
        PROVENIQ_LOCAL_PUBSUB_PORT=str(free_port()),
        FIRESTORE_EMULATOR_HOST="127.0.0.1:1",  # no projection: not what this test is about
    )
    log = (work / "stack.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "proveniq.app.cli", "serve", "--port", str(port)],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", serve, work / "stack.log")
        script = "set -euo pipefail\n" + quickstart_block().replace("8080", str(port))
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        out = done.stdout
        assert "OK: entry evt_" in out and "payload checked" in out
        assert "is consistent with size" in out
        assert "ledger_events_written_total" in out
        assert re.search(r"OK: \d+ entries, \d+ nodes, \d+ checkpoints verified", out)
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
        from proveniq.adapters.local import postgres

        postgres.stop(work / ".proveniq" / "pg")
        shutil.rmtree(work, ignore_errors=True)

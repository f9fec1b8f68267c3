"""End to end against the running local stack (`proveniq serve`, as `make run` starts it):
its own embedded PostgreSQL, bootstrap keys, the seal timer, then offline verification with the
`proveniq` command exactly as a partner or auditor would run it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.serving import free_port, wait_ready

CLI = [sys.executable, "-m", "proveniq.app.cli"]


@pytest.fixture(scope="module", params=[1, 2], ids=["one-process", "two-workers"])
def local_stack(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    state = Path(tempfile.mkdtemp(prefix="pvq-e2e-", dir="/tmp"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENIQ_")}
    env.update(
        PROVENIQ_STATE_DIR=str(state),
        PROVENIQ_SEAL_INTERVAL_MS="200",
        PROVENIQ_LOCAL_PUBSUB_PORT=str(free_port()),
    )
    log = (state / "stack.log").open("wb")
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--workers", str(request.param)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, state / "stack.log")
        yield {
            "base": base,
            "state": state,
            "env": env,
            "key": (state / "demo-api-key").read_text().strip(),
            "admin": (state / "admin-api-key").read_text().strip(),
        }
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the stack stops its database too
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        stopped = not (state / "pg" / "postmaster.pid").exists()
        shutil.rmtree(state, ignore_errors=True)
        assert stopped, "Ctrl-C left the embedded PostgreSQL running"


def write(stack: dict[str, Any], event: dict[str, Any]) -> requests.Response:
    """POST one event to the stack as its demo partner."""
    return requests.post(
        f"{stack['base']}/v1/events",
        headers={"Authorization": f"Bearer {stack['key']}"},
        timeout=30,
        json=event,
    )


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_append_seal_download_verify_offline(local_stack: dict[str, Any], tmp_path: Path) -> None:
    base, key = local_stack["base"], local_stack["key"]
    auth = {"Authorization": f"Bearer {key}"}
    first = write(
        local_stack,
        {"type": "asset.created", "subject": "ast_e2e", "payload": {"vin": "4T1B11HK5KU000001"}},
    )
    assert first.status_code == 201, first.text
    batch = requests.post(
        f"{base}/v1/events:batch",
        headers=auth,
        timeout=30,
        json={
            "events": [
                {"type": "asset.submitted", "subject": "ast_e2e"},
                {
                    "type": "document.uploaded",
                    "subject": "ast_e2e",
                    "payload": {"name": "title.pdf"},
                },
                {"type": "claim.created", "subject": "clm_e2e", "payload": {"amount_cents": 90000}},
            ]
        },
    )
    assert batch.status_code == 201, batch.text
    sealed = requests.post(
        f"{base}/v1/events?wait=proof&timeout=20",
        headers=auth,
        timeout=30,
        json={"type": "custody.transferred", "subject": "ast_e2e", "payload": {"to": "carrier-2"}},
    )
    assert sealed.status_code == 201 and sealed.json()["data"]["proof_status"] == "sealed"
    old_size = sealed.json()["data"]["bundle"]["tree_size"]

    pem = requests.get(f"{base}/v1/log/public-key", headers=auth, timeout=30).text
    (tmp_path / "log.pem").write_text(pem)
    eid = first.json()["data"]["id"]
    bundle = requests.get(f"{base}/v1/events/{eid}/proof?wait=10", headers=auth, timeout=30)
    assert bundle.status_code == 200, bundle.text
    (tmp_path / "bundle.json").write_text(json.dumps(bundle.json()["data"]))
    ok = cli("verify", "bundle.json", "--key", "log.pem", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"OK: entry {eid} (seq 0, payload checked)")

    tampered = bundle.json()["data"]
    tampered["payload"]["vin"] = "4T1B11HK5KU000002"
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    bad = cli("verify", "tampered.json", "--key", "log.pem", cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr.startswith("FAILED: payload"), bad.stderr

    # more writes, a newer checkpoint, and a consistency proof between the two
    more = requests.post(
        f"{base}/v1/events:batch",
        headers=auth,
        timeout=30,
        json={
            "events": [
                {"type": "claim.note", "subject": "clm_e2e", "payload": {"i": i}} for i in range(20)
            ]
        },
    )
    assert more.status_code == 201
    new_size = 0
    for _ in range(100):
        latest = requests.get(
            f"{base}/v1/checkpoints/latest",
            timeout=30,
            headers={**auth, "Accept": "application/json"},
        ).json()["data"]
        new_size = latest["tree_size"]
        if new_size >= old_size + 20:
            break
        time.sleep(0.1)
    # >=: the risk_score follower appends its own risk.scored entries for the claims
    assert new_size >= old_size + 20
    for size, name in ((old_size, "old.txt"), (new_size, "new.txt")):
        (tmp_path / name).write_text(
            requests.get(f"{base}/v1/checkpoints/{size}", headers=auth, timeout=30).text
        )
    cons = requests.get(
        f"{base}/v1/proofs/consistency?from={old_size}&to={new_size}", headers=auth, timeout=30
    )
    (tmp_path / "cons.json").write_text(json.dumps(cons.json()["data"]))
    ok = cli(
        "verify-consistency",
        "old.txt",
        "new.txt",
        "--proof",
        "cons.json",
        "--key",
        "log.pem",
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr

    audit = subprocess.run(
        [*CLI, "audit"],
        env=local_stack["env"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert audit.returncode == 0, audit.stderr
    assert f"OK: {new_size} entries" in audit.stdout


def test_the_followers_score_a_claim_in_either_mode(local_stack: dict[str, Any]) -> None:
    """One process, or each of two workers: the followers run on the in-process bus of the
    process that wrote the claim, and score it."""
    base, key = local_stack["base"], local_stack["key"]
    auth = {"Authorization": f"Bearer {key}"}
    r = write(
        local_stack,
        {
            "type": "claim.created",
            "subject": "clm_modes",
            "payload": {"amount_cents": 125000, "currency": "EUR", "claimant": "c1"},
        },
    )
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        score = requests.get(f"{base}/v1/risk/clm_modes/score", headers=auth, timeout=30)
        if score.status_code == 200:
            break
        time.sleep(0.2)
    assert score.status_code == 200, score.text
    assert score.json()["data"]["risk_event"]["id"]

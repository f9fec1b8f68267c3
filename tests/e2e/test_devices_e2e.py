"""Devices end to end on the running local stack (`proveniq serve`, as `make run` starts it).

The stack runs as a subprocess with its own state folder and embedded PostgreSQL, and serves the
Pub/Sub Publisher API on a free port (`PROVENIQ_LOCAL_PUBSUB_PORT`). Everything a device owner
does goes through public interfaces: `proveniq device keygen` and `register` (over HTTP), then
`proveniq device simulate` — the real google-cloud-pubsub `PublisherClient` with
``PUBSUB_EMULATOR_HOST`` — publishes signed readings. They must appear as ledger events of the
device (actor ``device:<id>``); a bundle of one verifies offline with `proveniq verify`, and the
device's own signature inside it verifies with the key registered for the device.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from proveniq.intake.devices.message import build, check_payload
from proveniq.intake.devices.registry import decode_key
from tests.serving import free_port, wait_ready

CLI = [sys.executable, "-m", "proveniq.app.cli"]
DEVICE = "locker-e2e"
ASSET = "asset-e2e-0001"
READINGS = 6


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, Any]]:
    from proveniq.adapters.local import postgres

    state = Path(tempfile.mkdtemp(prefix="pvq-dev-", dir="/tmp"))  # short: Unix socket limit
    port, pubsub_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PROVENIQ_", "PUBSUB_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT"))
    }
    env.update(
        PROVENIQ_STATE_DIR=str(state),
        PROVENIQ_SEAL_INTERVAL_MS="200",
        PROVENIQ_LOCAL_PUBSUB_PORT=str(pubsub_port),
    )
    log_path = state / "stack.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, log_path)
        yield {
            "base": base,
            "state": state,
            "env": env,
            "log": log_path,
            "pubsub": f"127.0.0.1:{pubsub_port}",
            "key": (state / "demo-api-key").read_text().strip(),
        }
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the stack stops its database too
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
        stopped = not (state / "pg" / "postmaster.pid").exists()
        if not stopped:  # FIELD-NOTES: the server outlives a killed owner; never leave it
            with contextlib.suppress(Exception):
                postgres.stop(state / "pg")
        shutil.rmtree(state, ignore_errors=True)
        assert stopped, "Ctrl-C left the embedded PostgreSQL running"


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def actors(state: Path) -> dict[str, str]:
    """event id -> actor, read from the stack's own database (the API does not show actors)."""
    import pg8000.dbapi

    # postmaster.pid: pid, data dir, start time, port, socket directory, ...
    lines = (state / "pg" / "postmaster.pid").read_text().splitlines()
    sock = f"{lines[4]}/.s.PGSQL.{lines[3]}"
    conn = pg8000.dbapi.connect(user="postgres", unix_sock=sock, database="proveniq")
    try:
        cur = conn.cursor()
        cur.execute("SELECT id, actor FROM events")
        rows = cur.fetchall()
        conn.commit()
    finally:
        conn.close()
    return dict(rows)


def test_a_device_publishes_signed_readings_that_verify_twice_over(
    served: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, auth = served["base"], {"Authorization": f"Bearer {served['key']}"}

    # 1. the device's key, and its registration through the API (org:settings: demo is ADMIN)
    keygen = cli("device", "keygen", "--out", "device.pem", cwd=tmp_path)
    assert keygen.returncode == 0, keygen.stderr
    public_key = keygen.stdout.strip()
    register = cli(
        "device", "register", "--api-url", base, "--api-key", served["key"],
        "--device", DEVICE, "--kind", "locker", "--key", "device.pem",
        cwd=tmp_path,
    )  # fmt: skip
    assert register.returncode == 0, register.stderr
    assert json.loads(register.stdout)["public_key"] == public_key
    assert requests.get(f"{base}/v1/devices/{DEVICE}", timeout=10).status_code == 401

    # 2. the device program: real PublisherClient against the stack's Publisher API
    env = {**served["env"], "PUBSUB_EMULATOR_HOST": served["pubsub"]}
    sim = cli(
        "device", "simulate", "--device", DEVICE, "--key", "device.pem",
        "--count", str(READINGS), "--rate", "50", "--subject", ASSET,
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    assert f"[{READINGS}/{READINGS}]" in sim.stderr  # progress
    summary = json.loads(sim.stdout.strip().splitlines()[-1])
    first, last = summary["first_counter"], summary["last_counter"]
    assert (summary["published"], last - first + 1) == (READINGS, READINGS)

    # 3. two bad messages from the same program's client: a forgery and a replay
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", served["pubsub"])
    _publish_bad_messages(first, tmp_path / "device.pem")

    device = _wait_for_device(base, auth, accepted=READINGS, rejected=2)
    assert device["last_counter"] == last
    assert device["rejected"] == {"bad_signature": 1, "replayed_counter": 1}
    assert device["status"] == "active" and device["public_key"] == public_key

    # 4. the readings are ledger events of the device's tenant, with the device as actor
    page = requests.get(f"{base}/v1/events", params={"subject": ASSET}, headers=auth, timeout=10)
    assert page.status_code == 200, page.text
    events = page.json()["data"]
    assert [e["payload"]["counter"] for e in events] == list(range(first, last + 1))
    assert {e["type"] for e in events} == {"device.reading"}
    assert all(e["payload"]["device"] == DEVICE for e in events)
    by_id = actors(served["state"])
    assert {by_id[e["id"]] for e in events} == {f"device:{DEVICE}"}
    newest = json.loads(events[-1]["payload"]["message"])
    assert device["last_seen"] == newest["sent_at"]  # the newest reading's own sent_at

    # 5. a bundle of one of them verifies offline with `proveniq verify`
    event = events[len(events) // 2]
    proof = requests.get(f"{base}/v1/events/{event['id']}/proof?wait=10", headers=auth, timeout=30)
    assert proof.status_code == 200, proof.text
    answer = proof.json()
    assert answer["success"] is True  # the bundle is the envelope's data
    bundle = answer["data"]
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    pem = requests.get(f"{base}/v1/log/public-key", headers=auth, timeout=10).text
    (tmp_path / "log.pem").write_text(pem)
    ok = cli("verify", "bundle.json", "--key", "log.pem", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"OK: entry {event['id']} (seq {event['seq']}, payload checked)")

    # 6. ... and the device's own signature inside it verifies with the registered key
    registered = decode_key(device["public_key"])
    payload = bundle["payload"]
    telemetry = check_payload(payload, keys=[registered])
    assert (telemetry.device, telemetry.counter) == (DEVICE, event["payload"]["counter"])
    Ed25519PublicKey.from_public_bytes(registered).verify(  # the same with cryptography alone
        base64.b64decode(payload["signature"]), payload["message"].encode("utf-8")
    )
    forged = dict(payload, message=payload["message"].replace('"temp_c":', '"temp_c":1'))
    (tmp_path / "forged.json").write_text(json.dumps(dict(bundle, payload=forged)))
    bad = cli("verify", "forged.json", "--key", "log.pem", cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr.startswith("FAILED: payload"), bad.stderr

    # 7. dead letters are logged without their payload
    text = served["log"].read_text(errors="replace")
    assert "reason=bad_signature" in text and "reason=replayed_counter" in text
    assert "do-not-log-me" not in text


def _publish_bad_messages(first: int, key_file: Path) -> None:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined,unused-ignore]

    from proveniq.app.device_cli import load_key

    key = load_key(key_file)
    forger = Ed25519PrivateKey.generate()
    now = datetime.now(UTC)
    messages = [
        build(  # a forgery: the device's id, another key
            device=DEVICE, counter=first + 10_000, sent_at=now, type="device.reading",
            subject=ASSET, data={"note": "do-not-log-me"}, sign=forger.sign,
        ),
        build(  # a replay: the first counter again, other bytes, the device's own key
            device=DEVICE, counter=first, sent_at=now, type="device.reading",
            subject=ASSET, data={"note": "do-not-log-me", "temp_c": -1}, sign=key.sign,
        ),
    ]  # fmt: skip
    client = pubsub_v1.PublisherClient()
    try:
        topic = client.topic_path("proveniq-local", "device-telemetry")
        for m in messages:
            client.publish(topic, m.data, **dict(m.attributes)).result(timeout=30)
    finally:
        client.stop()


def _wait_for_device(base: str, auth: dict[str, str], *, accepted: int, rejected: int) -> Any:
    deadline = time.monotonic() + 30
    while True:
        r = requests.get(f"{base}/v1/devices/{DEVICE}", headers=auth, timeout=10)
        assert r.status_code == 200, r.text
        device = r.json()["data"]
        done = device["accepted"] >= accepted and sum(device["rejected"].values()) >= rejected
        if done or time.monotonic() > deadline:
            assert device["accepted"] == accepted, device
            return device
        time.sleep(0.2)

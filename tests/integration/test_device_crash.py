"""Crash test for device ingest: `proveniq serve` is SIGKILLed while devices publish, 6+ rounds.

What "acknowledged" means. In production a device's publish is acknowledged by Pub/Sub, which
then redelivers the message to device_ingest until the function acknowledges it — and the
function returns (2xx) only after the append committed. Locally the Publisher API hands each
message to the in-process bus, which is memory only: a SIGKILL loses what it had queued, so the
local publish acknowledgement promises nothing across a crash. What the code promises, and what
this test checks, is the function's acknowledgement:

* every message whose `device_ingest` returned is in the ledger after the restart;
* a redelivery (here: the device program publishing again what was not acknowledged, standing
  in for Pub/Sub's redelivery) completes the ledger without a second entry for anything, and a
  redelivery of everything afterwards appends nothing new.

The stack's `device_ingest` is wrapped by a launcher that appends "(device, counter, outcome)"
to an ack log after the function returned (an O_APPEND write reaches the kernel, so it survives
the SIGKILL of the process; written before the HTTP answer, it may only over-state the acks,
which makes the check stricter). The launcher also delays the device store's `record` (step 5,
after the append committed) by 30 ms, so that random kills often land between a commit and its
acknowledgement — the case redelivery must repair without a second entry; the test runs more
rounds (up to MAX_ROUNDS) until at least one kill did.

The stack uses the test session's PostgreSQL through PROVENIQ_DATABASE_URL, as test_crash.py
does: the SIGKILL hits the stack's process group, and no embedded server owned by the killed
process is left running (FIELD-NOTES).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proveniq.intake.devices.message import build
from proveniq.intake.devices.registry import encode_key
from proveniq.ports import Message
from tests.integration.ledger_check import check_log
from tests.serving import free_port, wait_ready

ROUNDS = 6  # at least; more (up to MAX_ROUNDS) until a kill landed between commit and ack
MAX_ROUNDS = 12
DEVICES = 6
RATE = 15.0  # messages per second per device
LAUNCHER = """
import base64, json, os, sys, time
from proveniq.adapters.postgres.devices import PostgresDevices
from proveniq.app import entrypoints

_record = PostgresDevices.record


def slow_record(self, *args, **kw):  # widen the window between the append's commit and the ack
    time.sleep(0.03)
    return _record(self, *args, **kw)


PostgresDevices.record = slow_record

ACKS = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
_ingest = entrypoints.device_ingest


def device_ingest(event):
    result = _ingest(event)  # returned: committed; the function acknowledges the message
    try:
        m = json.loads(base64.b64decode(event.get_data()["message"]["data"]))
        line = {"device": m["device"], "counter": m["counter"], "status": result["status"]}
    except Exception:
        line = {"device": "", "counter": 0, "status": result.get("status", "?")}
    os.write(ACKS, (json.dumps(line) + "\\n").encode())
    return result


entrypoints.device_ingest = device_ingest
from proveniq.app.cli import main

main(sys.argv[2:])
"""


class Stack:
    """One `proveniq serve` process (its own session) with the ack-logging launcher."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.port, self.pubsub_port = free_port(), free_port()
        launcher = tmp / "launch.py"
        launcher.write_text(LAUNCHER)
        self.proc = subprocess.Popen(
            [sys.executable, str(launcher), str(tmp / "acks.jsonl"), "serve", "--port",
             str(self.port)],
            env={**env, "PROVENIQ_LOCAL_PUBSUB_PORT": str(self.pubsub_port)},
            stdout=(tmp / "server.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        wait_ready(self.base, self.proc, tmp / "server.log", timeout=60)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def read_acks(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


_ENV_LOCK = threading.Lock()


def publisher(address: str) -> Any:
    """A device's real PublisherClient, pointed at the stack by PUBSUB_EMULATOR_HOST."""
    from google.cloud import pubsub_v1  # type: ignore[attr-defined,unused-ignore]

    with _ENV_LOCK:  # the constructor reads the variable; device threads build clients at once
        os.environ["PUBSUB_EMULATOR_HOST"] = address
        try:
            return pubsub_v1.PublisherClient()
        finally:
            del os.environ["PUBSUB_EMULATOR_HOST"]


def publish_all(address: str, messages: Iterable[Message]) -> None:
    client = publisher(address)
    topic = client.topic_path("proveniq-local", "device-telemetry")
    try:
        for m in messages:
            client.publish(topic, m.data, **dict(m.attributes)).result(timeout=30)
    finally:
        client.stop()


def wait_for_acks(path: Path, wanted: set[tuple[str, int]], *, after: int = 0) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        acked = {(a["device"], a["counter"]) for a in read_acks(path)[after:]}
        if wanted <= acked:
            return
        time.sleep(0.2)
    raise AssertionError(f"{len(wanted - acked)} messages never acknowledged")


def ledger(conn: Any) -> dict[tuple[str, int], int]:
    """(device, counter) -> how many entries the ledger holds for it."""
    cur = conn.cursor()
    cur.execute(
        "SELECT actor, convert_from(payload, 'UTF8') FROM events WHERE actor LIKE 'device:%%'"
    )
    counts: dict[tuple[str, int], int] = {}
    for actor, payload in cur.fetchall():
        p = json.loads(payload)
        assert actor == f"device:{p['device']}"
        counts[(p["device"], p["counter"])] = counts.get((p["device"], p["counter"]), 0) + 1
    conn.commit()
    return counts


class Fleet:
    """The device programs: one thread per device, publishing in counter order at RATE."""

    def __init__(self, n: int) -> None:
        self.keys = {f"locker-{i}": Ed25519PrivateKey.generate() for i in range(n)}
        self.published: dict[tuple[str, int], Message] = {}  # every message ever tried
        self._next = dict.fromkeys(self.keys, 1)
        self._lock = threading.Lock()
        self.errors: list[BaseException] = []

    def register(self, base: str, api_key: str) -> None:
        for device_id, key in self.keys.items():
            r = requests.post(
                f"{base}/v1/devices",
                json={
                    "device_id": device_id,
                    "kind": "locker",
                    "public_key": encode_key(key.public_key().public_bytes_raw()),
                },
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=10,
            )
            assert r.status_code == 201, r.text

    def start(self, address: str, acked: set[tuple[str, int]], stop: threading.Event) -> Any:
        threads = [
            threading.Thread(target=self._run, args=(d, address, acked, stop)) for d in self.keys
        ]
        for t in threads:
            t.start()
        return threads

    def _run(
        self, device_id: str, address: str, acked: set[tuple[str, int]], stop: threading.Event
    ) -> None:
        try:
            self._device(device_id, address, acked, stop)
        except BaseException as e:  # fail the test, not just the thread
            self.errors.append(e)

    def _device(
        self, device_id: str, address: str, acked: set[tuple[str, int]], stop: threading.Event
    ) -> None:
        """First what was never acknowledged (Pub/Sub would redeliver it), then new readings;
        stop at the first failed publish (the stack died)."""
        with self._lock:
            backlog = [
                self.published[(d, c)]
                for (d, c) in sorted(self.published)
                if d == device_id and (d, c) not in acked
            ]
        client = publisher(address)
        topic = client.topic_path("proveniq-local", "device-telemetry")
        try:
            while not stop.is_set():
                message = backlog.pop(0) if backlog else self._new(device_id)
                try:
                    client.publish(
                        topic, message.data, retry=None, timeout=5, **dict(message.attributes)
                    ).result(timeout=5)
                except Exception:
                    return  # not accepted: the message stays unacknowledged
                time.sleep(1 / RATE)
        finally:
            client.stop()

    def _new(self, device_id: str) -> Message:
        with self._lock:
            counter = self._next[device_id]
            self._next[device_id] += 1
            message = build(
                device=device_id, counter=counter, sent_at=datetime.now(UTC),
                type="device.reading", subject=f"asset-{device_id}",
                data={"temp_c": counter % 40}, sign=self.keys[device_id].sign,
            )  # fmt: skip
            self.published[(device_id, counter)] = message
            return message


@pytest.mark.slow
def test_sigkill_during_ingest_loses_no_acknowledged_message(
    stack: Any, tmp_path: Path, pg_server: Any
) -> None:
    rng = random.Random(4321)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PUBSUB_EMULATOR_HOST")},
        "PROVENIQ_DATABASE_URL": pg_server.url(user="proveniq_app", database=stack.database),
        "PROVENIQ_STATE_DIR": str(tmp_path / "state"),
        "PROVENIQ_POOL_SIZE": "8",
    }
    ack_log = tmp_path / "acks.jsonl"
    fleet = Fleet(DEVICES)
    published = fleet.published
    kills_mid_ingest = 0

    committed_unacked: set[tuple[str, int]] = set()  # appended, killed before the ack
    rounds = 0
    while rounds < ROUNDS or (not committed_unacked and rounds < MAX_ROUNDS):
        rounds += 1
        server = Stack(env, tmp_path)
        if rounds == 1:  # through the API; the bootstrap's demo key is an org ADMIN (org:settings)
            fleet.register(server.base, (tmp_path / "state" / "demo-api-key").read_text().strip())
        acked = {(a["device"], a["counter"]) for a in read_acks(ack_log)}
        stop = threading.Event()
        threads = fleet.start(f"127.0.0.1:{server.pubsub_port}", acked, stop)
        time.sleep(rng.uniform(1.0, 3.0))
        before = len(read_acks(ack_log))
        time.sleep(0.1)
        if len(read_acks(ack_log)) > before:
            kills_mid_ingest += 1  # acknowledgements were still coming in: ingest was busy
        server.kill()
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert not fleet.errors, fleet.errors
        with stack.superuser() as conn:
            now_in = ledger(conn).keys()
        committed_unacked |= now_in - {(a["device"], a["counter"]) for a in read_acks(ack_log)}

    # 1. after the last kill: every acknowledged message is in the ledger, once
    acks = read_acks(ack_log)
    assert {a["status"] for a in acks} <= {"ingested", "duplicate"}, "nothing may be refused"
    acked = {(a["device"], a["counter"]) for a in acks}
    with stack.superuser() as conn:
        in_ledger = ledger(conn)
    assert len(acked) > 100, "the devices should have had messages acknowledged"
    assert kills_mid_ingest >= rounds // 2, "the kills should land while ingest is busy"
    lost = sorted(acked - in_ledger.keys())
    assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {lost[:5]}"
    assert set(in_ledger.values()) == {1}, "a message was appended twice"
    unacked = set(published) - acked
    assert unacked, "the kills should have caught messages before their acknowledgement"
    assert committed_unacked, f"no kill in {rounds} rounds landed between commit and ack"

    # 2. restart: the unacknowledged messages are redelivered; none is appended twice
    server = Stack(env, tmp_path)
    try:
        address = f"127.0.0.1:{server.pubsub_port}"
        mark = len(acks)
        publish_all(address, (published[k] for k in sorted(unacked)))
        wait_for_acks(ack_log, unacked, after=mark)
        with stack.superuser() as conn:
            complete = ledger(conn)
        assert complete.keys() == set(published) and set(complete.values()) == {1}

        # 3. a redelivery of everything appends nothing new
        mark = len(read_acks(ack_log))
        publish_all(address, (published[k] for k in sorted(published)))
        wait_for_acks(ack_log, set(published), after=mark)
        assert {a["status"] for a in read_acks(ack_log)[mark:]} == {"duplicate"}
        with stack.superuser() as conn:
            assert ledger(conn) == complete
            check_log(conn)  # contiguous seq, every prev link, every stored leaf recomputed

        demo = (tmp_path / "state" / "demo-api-key").read_text().strip()
        for device_id in fleet.keys:
            r = requests.get(
                f"{server.base}/v1/devices/{device_id}",
                headers={"Authorization": f"Bearer {demo}"},
                timeout=10,
            )
            d = r.json()["data"]
            sent = [c for (dev, c) in published if dev == device_id]
            assert (d["last_counter"], d["accepted"], d["rejected"]) == (max(sent), len(sent), {})
    finally:
        server.kill()
    print(
        f"\n{len(published)} published, {len(acked)} acknowledged before the last kill, "
        f"{len(unacked)} redelivered, {len(committed_unacked)} killed between commit and ack, "
        f"{kills_mid_ingest}/{rounds} kills while acknowledgements were coming in"
    )

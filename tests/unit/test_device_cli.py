"""`proveniq device` keygen / register / simulate, against local servers on 127.0.0.1."""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

from proveniq.adapters.local.pubsub_server import LocalPubSubServer
from proveniq.adapters.memory.devices import MemoryDevices
from proveniq.app.device_cli import device, load_key
from proveniq.intake.devices.ingest import Delivery, DeviceIngest, Ingested
from proveniq.intake.devices.message import Telemetry, parse
from proveniq.intake.devices.registry import decode_key, parse_register
from proveniq.log.timefmt import utcnow
from proveniq.ports import Message


@pytest.fixture
def keyfile(tmp_path: Path) -> tuple[Path, str]:
    out = tmp_path / "device.pem"
    result = CliRunner().invoke(device, ["keygen", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output.strip()


def test_keygen_writes_a_private_pem_and_prints_the_public_key(
    keyfile: tuple[Path, str], tmp_path: Path
) -> None:
    out, public = keyfile
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    key = load_key(out)
    assert decode_key(public) == key.public_key().public_bytes_raw()
    again = CliRunner().invoke(device, ["keygen", "--out", str(out)])
    assert again.exit_code != 0 and "exists" in again.output
    assert load_key(out).public_key().public_bytes_raw() == decode_key(public)  # untouched
    forced = CliRunner().invoke(device, ["keygen", "--out", str(out), "--force"])
    assert forced.exit_code == 0 and forced.output.strip() != public


class _Api(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, dict[str, str], Any]]] = []
    status: ClassVar[int] = 201

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        answer = json.dumps({"success": True, "data": {**body, "status": "active"}}).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    _Api.seen = []
    _Api.status = 201
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_register_posts_the_device_with_its_public_key(keyfile: tuple[Path, str], api: str) -> None:
    out, public = keyfile
    args = ["register", "--api-url", api, "--api-key", "pk_test_123", "--device", "tag-1"]
    args += ["--kind", "smart-tag", "--asset", "asset-9", "--key", str(out)]
    result = CliRunner().invoke(device, args)
    assert result.exit_code == 0, result.output
    [(path, headers, body)] = _Api.seen
    assert path == "/v1/devices"
    assert headers["x-api-key"] == "pk_test_123"
    assert body == {
        "device_id": "tag-1",
        "kind": "smart-tag",
        "public_key": public,
        "asset": "asset-9",
    }
    parse_register(body, tenant="acme", now=utcnow())  # what the route will validate
    assert json.loads(result.output)["status"] == "active"  # the envelope is unwrapped

    _Api.status = 409
    refused = CliRunner().invoke(device, args)
    assert refused.exit_code == 1 and "HTTP 409" in refused.output


def test_simulate_publishes_signed_canonical_telemetry_that_ingest_accepts(
    keyfile: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, public = keyfile
    received: list[tuple[str, Message, str, str]] = []
    lock = threading.Lock()

    def on_message(topic: str, m: Message, message_id: str, publish_time: str) -> None:
        with lock:
            received.append((topic, m, message_id, publish_time))

    with LocalPubSubServer(on_message=on_message, port=0, topics=["device-telemetry"]) as srv:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", srv.address)
        args = ["simulate", "--device", "locker-1", "--key", str(out), "--count", "5"]
        args += ["--rate", "50", "--subject", "asset-1", "--project", "demo"]
        first = CliRunner().invoke(device, args)
        second = CliRunner().invoke(device, [*args[:-4], "--count", "2", "--subject", "asset-1"])
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert "[5/5] counter=" in first.output
    summary = json.loads(first.output.strip().splitlines()[-1])
    assert summary["published"] == 5 and summary["topic"] == "projects/demo/topics/device-telemetry"

    assert len(received) == 7 and {t for t, *_ in received} == {"device-telemetry"}
    parsed = [parse(m) for _, m, _, _ in received]
    assert all(isinstance(p, Telemetry) for p in parsed)
    counters = [p.counter for p in parsed if isinstance(p, Telemetry)]
    assert counters == sorted(set(counters))  # increasing, and the second run did not collide
    assert counters[1:5] == [counters[0] + i for i in range(1, 5)]
    assert summary["first_counter"] == counters[0]

    # The same messages through the use case: all ingested against the registered key.
    store = MemoryDevices()
    store.register(
        parse_register(
            {"device_id": "locker-1", "kind": "locker", "public_key": public},
            tenant="acme",
            now=utcnow(),
        )
    )
    appended: list[str] = []

    class Ledger:
        def append(
            self, *, tenant: str, actor: str, events: Any, idempotency_key: Any = None
        ) -> Any:
            from proveniq.log.entry import Entry

            appended.append(idempotency_key)
            return [
                Entry(
                    seq=len(appended),
                    id="e",
                    tenant=tenant,
                    type=events[0].type,
                    subject=events[0].subject,
                    payload_hash=bytes(32),
                    recorded_at=utcnow(),
                    prev=bytes(32),
                )
            ]

    class NoBus:
        def send(self, topic: str, messages: Any) -> None:
            raise AssertionError(f"dead-lettered: {[m.attributes for m in messages]}")

    ingest = DeviceIngest(store=store, appender=Ledger(), dead_letters=NoBus())
    outcomes = ingest.ingest(
        [Delivery.of(message=m, message_id=i, publish_time=t) for _, m, i, t in received]
    )
    assert all(isinstance(o, Ingested) for o in outcomes)
    assert store.get("acme", "locker-1").last_counter == counters[-1]

"""webhook_dispatch as Cloud Tasks drives it: the task's JSON body POSTed to the function's own
functions-framework app (`create_app(...).test_client()`), against a real PostgreSQL, sending to
a receiver on 127.0.0.1.

200 for every handled task (a failed send is recorded and rescheduled by us, not retried by
Cloud Tasks), 400 for a malformed task (never retried), 503 only when it may be retried; a task
delivered twice, one after the other or at the same time, sends once.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from proveniq.followers.webhooks.ports import AttemptTask, Delivery
from proveniq.followers.webhooks.signing import LedgerEvent
from proveniq.log.canonical import sha256_canonical
from proveniq.log.entry import Entry

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "functions" / "webhook_dispatch" / "main.py"


@dataclass
class Receiver:
    server: http.server.ThreadingHTTPServer
    status: int = 204
    delay: float = 0.0
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: list[Receiver] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            r = holder[0]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            r.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            time.sleep(r.delay)
            self.send_response(r.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(Receiver(server=server))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield holder[0]
    server.shutdown()
    server.server_close()


@dataclass
class Function:
    app: Any
    rt: Any
    tenant: str
    secret: str
    subscription_id: str
    seq: Iterator[int] = field(default_factory=lambda: iter(range(1, 1_000_000)))

    def post(self, body: bytes) -> Any:
        return self.app.test_client().post(
            "/", data=body, headers={"Content-Type": "application/json"}
        )

    def new_delivery(self) -> tuple[Delivery, AttemptTask]:
        """Fan one claim event out; returns the delivery and the task fan-out enqueued."""
        n = next(self.seq)
        payload = {"amount_cents": 1000 + n, "currency": "EUR"}
        entry = Entry(
            seq=n,
            id=f"evt_{n:032x}",
            tenant=self.tenant,
            type="claim.filed",
            subject=f"clm_{n}",
            payload_hash=sha256_canonical(payload),
            recorded_at=datetime.now(UTC),
            prev=bytes(32),
        )
        [d] = self.rt.webhooks.dispatcher.fan_out(LedgerEvent(entry=entry, payload=payload))
        [task] = [t for t in self.rt.webhooks.queue.pending() if t.delivery_id == d.id]
        return d, task

    def delivery(self, delivery_id: str) -> tuple[Delivery, list[Any]]:
        store = self.rt.webhooks.dispatcher.store
        d = store.delivery(self.tenant, delivery_id)
        return d, store.attempts(self.tenant, [delivery_id]).get(delivery_id, [])


@pytest.fixture
def fn(
    pg_server: Any,
    database: str,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Function]:
    from functions_framework import create_app

    from proveniq.app.runtime import release_runtime, runtime

    monkeypatch.setenv(
        "PROVENIQ_DATABASE_URL", pg_server.url(user="proveniq_app", database=database)
    )
    monkeypatch.setenv("PROVENIQ_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PROVENIQ_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    monkeypatch.setenv("PROVENIQ_WEBHOOK_ALLOW_HTTP", "true")
    monkeypatch.setenv("PROVENIQ_WEBHOOK_RETRY_SCHEDULE", "0,60")
    app = create_app(target="webhook_dispatch", source=str(SOURCE))  # type: ignore[no-untyped-call]
    rt = runtime()
    tenant = rt.accounts.create_partner(name="acme", tier="internal").id
    created = rt.webhooks.subscriptions.create(tenant=tenant, url=receiver.url, events=["claim.*"])
    yield Function(app, rt, tenant, created.secret, created.subscription.id)
    release_runtime()  # before the database is dropped


def result(resp: Any) -> str:
    assert resp.status_code == 200, resp.get_data(as_text=True)
    doc = json.loads(resp.get_data())
    assert doc["success"] is True
    value: str = doc["data"]["result"]
    return value


def test_a_valid_task_sends_once_and_records_the_attempt(fn: Function, receiver: Receiver) -> None:
    d, task = fn.new_delivery()
    assert task == d.next_task()  # what fan-out enqueued is the delivery's first attempt
    assert result(fn.post(task.to_json())) == "attempted"

    [(headers, body)] = receiver.got
    Webhook(fn.secret).verify(body, headers)
    expected = "sha256=" + hmac.new(fn.secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-proveniq-signature"] == expected
    assert json.loads(body)["id"] == d.event_id == headers["webhook-id"]
    stored, [attempt] = fn.delivery(d.id)
    assert (stored.state, stored.attempt, stored.last_status) == ("delivered", 1, 204)
    assert (attempt.round, attempt.number, attempt.status, attempt.outcome) == (
        0,
        1,
        204,
        "delivered",
    )
    assert attempt.next_attempt_at is None and attempt.latency_ms >= 0


def test_a_failed_send_is_recorded_rescheduled_and_answered_200(
    fn: Function, receiver: Receiver
) -> None:
    receiver.status = 500
    d, task = fn.new_delivery()
    assert result(fn.post(task.to_json())) == "attempted"  # Cloud Tasks must not retry it
    assert len(receiver.got) == 1
    stored, [attempt] = fn.delivery(d.id)
    assert (stored.state, stored.attempt, attempt.status, attempt.error) == (
        "pending",
        1,
        500,
        "HTTP 500",
    )
    queued = [t for t in fn.rt.webhooks.queue.pending() if t.delivery_id == d.id]
    # the first task stays queued here: only the queue's own worker completes (deletes) it
    assert sorted((t.round, t.attempt) for t in queued) == [(0, 1), (0, 2)]
    [retry] = [t for t in queued if t.attempt == 2]
    assert retry.not_before == stored.next_attempt_at == attempt.next_attempt_at
    delay = (retry.not_before - attempt.started_at).total_seconds()
    assert 60 <= delay < 65  # the schedule's second delay, counted from the attempt's end

    receiver.status = 204
    assert result(fn.post(retry.to_json())) == "attempted"
    stored, attempts = fn.delivery(d.id)
    assert stored.state == "delivered" and [a.status for a in attempts] == [500, 204]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"tenant": "t"}',
        b"\xff\xfe",
    ],
    ids=["empty", "not-json", "array", "missing-keys", "not-utf8"],
)
def test_a_malformed_task_is_400_and_sends_nothing(
    fn: Function, receiver: Receiver, body: bytes
) -> None:
    resp = fn.post(body)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert json.loads(resp.get_data())["success"] is False
    assert receiver.got == []


def test_a_task_with_a_bad_field_is_400(fn: Function, receiver: Receiver) -> None:
    d, task = fn.new_delivery()
    good = json.loads(task.to_json())
    for change in (
        {"attempt": 0},
        {"attempt": True},
        {"round": -1},
        {"round": "0"},
        {"delivery_id": ""},
        {"not_before": "yesterday"},
        {"extra": 1},
    ):
        resp = fn.post(json.dumps({**good, **change}).encode())
        assert resp.status_code == 400, (change, resp.get_data(as_text=True))
    assert receiver.got == []
    stored, attempts = fn.delivery(d.id)
    assert stored.state == "pending" and stored.attempt == 0 and attempts == []


def test_the_same_task_twice_sends_once(fn: Function, receiver: Receiver) -> None:
    d, task = fn.new_delivery()
    assert result(fn.post(task.to_json())) == "attempted"
    assert result(fn.post(task.to_json())) == "stale"  # acknowledged, nothing sent
    assert len(receiver.got) == 1
    _, attempts = fn.delivery(d.id)
    assert len(attempts) == 1


def test_the_same_task_twice_at_once_sends_once(fn: Function, receiver: Receiver) -> None:
    receiver.delay = 0.5  # the first copy is still sending when the second arrives
    d, task = fn.new_delivery()
    answers: list[Any] = []
    threads = [
        threading.Thread(target=lambda: answers.append(fn.post(task.to_json()))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(receiver.got) == 1
    codes = sorted(a.status_code for a in answers)
    # the copy that lost the lease is busy (503: Cloud Tasks tries it again later) or stale
    assert codes in ([200, 200], [200, 503]), [a.get_data(as_text=True) for a in answers]
    assert "attempted" in [
        json.loads(a.get_data())["data"]["result"] for a in answers if a.status_code == 200
    ]
    _, attempts = fn.delivery(d.id)
    assert len(attempts) == 1
    later = [a for a in answers if a.status_code == 503]
    if later:  # its retry finds the attempt made
        assert result(fn.post(task.to_json())) == "stale"
        assert len(receiver.got) == 1


def test_a_task_for_an_unknown_delivery_is_acknowledged(fn: Function, receiver: Receiver) -> None:
    task = AttemptTask(
        tenant=fn.tenant,
        delivery_id="dlv_" + "0" * 32,
        round=0,
        attempt=1,
        not_before=datetime.now(UTC),
    )
    assert result(fn.post(task.to_json())) == "stale"
    assert receiver.got == []

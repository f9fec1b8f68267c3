"""The risk_score function through functions-framework's test client, as Eventarc delivers
`ledger-events` to it: binary-mode CloudEvents carrying the relay's messages for real sequenced
events (on the `stack` fixture's database, whose bus has no subscribers, so only these
deliveries score). Pub/Sub delivers at least once: redeliveries append one `risk.scored`; a
permanently bad message is acknowledged (2xx) and appends nothing. With Gemini configured
(a local generateContent server on 127.0.0.1 behind the real google-genai client), the entry
records the model and the SHA-256 of the prompt it was sent; when Gemini fails the
deterministic result stands."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from functions_framework import create_app

from proveniq.app.runtime import runtime
from proveniq.edge.cloudevents import pubsub_event
from proveniq.ledger.outbox import message_for
from proveniq.log.canonical import sha256_canonical
from proveniq.log.timefmt import format_time, utcnow
from proveniq.ports import Message, StoredEvent

SOURCE = Path(__file__).resolve().parents[2] / "functions" / "risk_score" / "main.py"
MODEL = "gemini-2.5-flash"
ANSWER = {
    "risk_level": "medium",
    "adjustment": 7,
    "rationale": "One weak signal.",
    "cited_evidence": [],
    "narrative": "Nothing stands out beyond the amount.",
}
_ids = itertools.count(1)


# ---- the function and its deliveries -----------------------------------------------------------


@pytest.fixture
def risk_score(stack: Any) -> Any:
    """The function's test client, on the stack's runtime (the process-wide one)."""
    return create_app(target="risk_score", source=str(SOURCE)).test_client()  # type: ignore[no-untyped-call]


def deliver(client: Any, message: Message, *, message_id: str | None = None) -> Any:
    """One push delivery: the CloudEvent Eventarc sends for `message`, in binary mode."""
    attributes, data = pubsub_event(
        project="demo-proveniq",
        topic="ledger-events",
        subscription="eventarc-risk-score",
        message=message,
        message_id=message_id or str(next(_ids)),
        publish_time=format_time(utcnow()),
    )
    return post_event(client, CloudEvent(attributes, data))


def post_event(client: Any, event: CloudEvent) -> Any:
    headers, body = to_binary(event)
    return client.post("/", data=body, headers=dict(headers))


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_claim(stack: Any, claim: str, **payload: Any) -> StoredEvent:
    """A claim.created written over HTTP, as the ledger stores it."""
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "type": "claim.created",
        "subject": claim,
        "payload": {
            "amount_cents": 420_000,
            "currency": "EUR",
            "claimant": "claimant-secret-77",
            "asset": "ast_contract",
            "incident_at": iso(now - timedelta(days=2)),
            "policy_id": "pol_contract",
            "policy_start": iso(now - timedelta(days=300)),
            **payload,
        },
    }
    r = requests.post(
        stack.base + "/v1/events",
        json=body,
        headers={"Authorization": f"Bearer {stack.keys['acme:MEMBER']}"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return runtime().queries.event(None, r.json()["data"]["id"])


def risk_entries(stack: Any, claim: str) -> list[dict[str, Any]]:
    r = requests.get(
        stack.base + f"/v1/events?type=risk.scored&subject={claim}",
        headers={"Authorization": f"Bearer {stack.keys['acme:VIEWER']}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    entries: list[dict[str, Any]] = r.json()["data"]
    return entries


def ledger_size(stack: Any) -> int:
    conn = stack.superuser()
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM events")
        n: int = cur.fetchone()[0]
        return n
    finally:
        conn.close()


# ---- redelivery ----------------------------------------------------------------------------------


def test_the_same_event_delivered_three_times_appends_one_risk_scored(
    stack: Any, risk_score: Any
) -> None:
    claim = write_claim(stack, "clm_redelivered")
    message = message_for(claim)
    for _ in range(3):  # Pub/Sub redelivers with the same message id
        resp = deliver(risk_score, message, message_id="1234567890")
        assert resp.status_code == 200, resp.get_data(as_text=True)
    [entry] = risk_entries(stack, "clm_redelivered")
    assert entry["payload"]["scores"] == {
        "event_id": claim.entry.id,
        "seq": claim.entry.seq,
        "leaf_hash": claim.entry.leaf_hash().hex(),
        "type": "claim.created",
    }
    # a republish by the outbox sweep is a new message id for the same event: still one
    assert deliver(risk_score, message).status_code == 200
    assert len(risk_entries(stack, "clm_redelivered")) == 1
    assert ledger_size(stack) == 2  # the claim and its one score


def test_concurrent_redeliveries_append_one_risk_scored(stack: Any, risk_score: Any) -> None:
    """Pub/Sub may hand the same message to two instances at once."""
    claim = write_claim(stack, "clm_concurrent")
    message = message_for(claim)
    app = risk_score.application

    def one(_: int) -> int:
        status: int = deliver(app.test_client(), message, message_id="777").status_code
        return status

    with ThreadPoolExecutor(max_workers=3) as pool:
        assert list(pool.map(one, range(3))) == [200, 200, 200]
    assert len(risk_entries(stack, "clm_concurrent")) == 1


# ---- malformed messages --------------------------------------------------------------------------


def _with_data(message: Message, data: bytes) -> Message:
    return Message(data=data, attributes=message.attributes, ordering_key=message.ordering_key)


def test_malformed_messages_are_acknowledged_and_append_nothing(
    stack: Any, risk_score: Any
) -> None:
    claim = write_claim(stack, "clm_malformed")
    good = message_for(claim)
    doc = json.loads(good.data)
    forged_entry = {**doc, "entry": {**doc["entry"], "subject": "clm_other"}}  # leaf_hash stale
    bad_amount = {**doc, "payload": {**doc["payload"], "amount_cents": "x"}}
    size = ledger_size(stack)
    bodies = [
        b"not json",
        b"[1, 2, 3]",
        json.dumps({"entry": {"seq": "zero"}}).encode(),
        json.dumps(forged_entry).encode(),
        json.dumps(bad_amount).encode(),
        json.dumps({**doc, "payload": ["not", "an", "object"]}).encode(),
    ]
    for body in bodies:
        resp = deliver(risk_score, _with_data(good, body))
        assert 200 <= resp.status_code < 300, (body[:40], resp.status_code)

    attributes, data = pubsub_event(
        project="demo-proveniq",
        topic="ledger-events",
        subscription="eventarc-risk-score",
        message=good,
        message_id="m-1",
        publish_time=format_time(utcnow()),
    )
    broken_events = [
        CloudEvent({**attributes, "type": "google.cloud.storage.object.v1.finalized"}, data),
        CloudEvent({**attributes, "source": "//storage.googleapis.com/b"}, data),
        CloudEvent(attributes, {"subscription": data["subscription"]}),  # no message
        CloudEvent(attributes, {**data, "message": {**data["message"], "data": "%%%"}}),
    ]
    for event in broken_events:
        resp = post_event(risk_score, event)
        assert 200 <= resp.status_code < 300, (event["type"], resp.status_code)

    assert ledger_size(stack) == size
    assert risk_entries(stack, "clm_malformed") == []
    # the real message still scores afterwards: nothing above was folded half-way
    assert deliver(risk_score, good).status_code == 200
    assert len(risk_entries(stack, "clm_malformed")) == 1


def test_a_payload_that_does_not_match_its_entry_is_not_scored(stack: Any, risk_score: Any) -> None:
    """The message's entry is genuine but its payload is not the one the entry commits to
    (payload_hash): scoring it would attribute the score to evidence the ledger never held."""
    claim = write_claim(stack, "clm_swapped", amount_cents=1000)
    doc = json.loads(message_for(claim).data)
    swapped = {**doc, "payload": {**doc["payload"], "amount_cents": 99_000_000}}
    assert sha256_canonical(swapped["payload"]) != claim.entry.payload_hash
    resp = deliver(risk_score, _with_data(message_for(claim), json.dumps(swapped).encode()))
    assert resp.status_code == 200
    assert risk_entries(stack, "clm_swapped") == []
    assert deliver(risk_score, message_for(claim)).status_code == 200
    [entry] = risk_entries(stack, "clm_swapped")
    assert entry["payload"]["scores"]["event_id"] == claim.entry.id


# ---- Gemini --------------------------------------------------------------------------------------


@dataclass
class FakeGemini:
    """generateContent on 127.0.0.1: records each request, answers `status` with `ANSWER`."""

    base_url: str = ""
    status: int = 200
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        state = self.server.state
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with state.lock:
            state.requests.append((self.path, dict(self.headers), body))
        if not self.path.endswith(":generateContent"):
            return self._reply(404, {"error": {"code": 404, "message": "no such method"}})
        if state.status != 200:
            return self._reply(state.status, {"error": {"code": state.status, "message": "boom"}})
        text = json.dumps(ANSWER)
        self._reply(
            200,
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": text}]},
                        "finishReason": "STOP",
                    }
                ],
                "modelVersion": MODEL,
            },
        )

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeGemini


@pytest.fixture
def gemini(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGemini]:
    """The fake Gemini API, and the stack (requested after the settings point at it)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = FakeGemini(base_url=f"http://127.0.0.1:{server.server_port}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PROVENIQ_GEMINI_MODEL", MODEL)
    monkeypatch.setenv("PROVENIQ_GEMINI_API_KEY", "local-test-key")
    monkeypatch.setenv("PROVENIQ_GEMINI_ENDPOINT", server.state.base_url)
    yield server.state
    server.shutdown()
    server.server_close()


def _prompt_sha256(body: dict[str, Any]) -> str:
    """The SHA-256 the scorer records, recomputed from what Gemini actually received."""
    system = body["systemInstruction"]["parts"][0]["text"]
    user = body["contents"][0]["parts"][0]["text"]
    return sha256_canonical({"system": system, "user": user}).hex()


def test_gemini_model_and_prompt_hash_are_recorded(gemini: FakeGemini, request: Any) -> None:
    stack = request.getfixturevalue("stack")
    client = request.getfixturevalue("risk_score")
    claim = write_claim(stack, "clm_gemini")
    assert deliver(client, message_for(claim)).status_code == 200

    [(path, headers, body)] = gemini.requests
    assert path.endswith(f"models/{MODEL}:generateContent")
    assert headers.get("x-goog-api-key") == "local-test-key"
    sent = json.dumps(body)
    for secret in ("claimant-secret-77", "ast_contract", "pol_contract", "clm_gemini", "420000"):
        assert secret not in sent  # data minimisation: features and evidence ids only

    [entry] = risk_entries(stack, "clm_gemini")
    p = entry["payload"]
    assert p["model"]["gemini"] == MODEL
    assert p["model"]["prompt_version"] == "risk-prompt/1"
    assert p["model"]["prompt_sha256"] == _prompt_sha256(body)
    assert p["assessment"]["status"] == "ok" and p["assessment"]["risk_level"] == "medium"
    assert p["score"] == min(100, p["deterministic"]["score"] + 7)
    assert p["explanation"] == ANSWER["narrative"]


def test_gemini_failing_leaves_the_deterministic_result(gemini: FakeGemini, request: Any) -> None:
    gemini.status = 500
    stack = request.getfixturevalue("stack")
    client = request.getfixturevalue("risk_score")
    claim = write_claim(stack, "clm_gemini_down")
    resp = deliver(client, message_for(claim))
    assert resp.status_code == 200  # acknowledged: a Gemini outage never redelivers

    assert 1 <= len(gemini.requests) <= 3  # bounded retries
    [entry] = risk_entries(stack, "clm_gemini_down")
    p = entry["payload"]
    assert p["assessment"] == {"status": "unavailable"}
    assert p["score"] == p["deterministic"]["score"]
    assert p["level"] == p["deterministic"]["level"]
    assert "deterministic score stands" in p["explanation"]
    assert p["model"]["gemini"] == MODEL
    assert p["model"]["prompt_sha256"] == _prompt_sha256(gemini.requests[0][2])

    # Gemini recovers; a redelivery of the same event still appends nothing new
    gemini.status = 200
    assert deliver(client, message_for(claim)).status_code == 200
    assert len(risk_entries(stack, "clm_gemini_down")) == 1

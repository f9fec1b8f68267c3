"""GeminiAssessor: the real google-genai client in Vertex AI mode, against a local HTTP server
speaking the generateContent REST API on 127.0.0.1 (Vertex path shape). Credentials are a real
google-auth object with a fixed token, so nothing of ours is mocked."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import google.oauth2.credentials
import pytest

from proveniq.adapters.gcp.gemini import GeminiAssessor
from proveniq.adapters.memory.risk import MemoryRiskFacts, MemoryRiskResults
from proveniq.errors import Unavailable
from proveniq.followers.risk.assessment import GeminiAssessment, build_prompt
from proveniq.followers.risk.facts import EvidenceRef
from proveniq.followers.risk.features import Feature
from proveniq.followers.risk.model import evaluate
from proveniq.followers.risk.scoring import RiskScorer
from proveniq.log.canonical import sha256_canonical
from proveniq.log.entry import Entry
from proveniq.log.timefmt import format_time
from proveniq.ports import NewEvent

PROJECT, LOCATION, MODEL = "demo-proveniq", "europe-west1", "gemini-2.5-flash"
PATH = (
    f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{MODEL}:generateContent"
)
ANSWER = {
    "risk_level": "high",
    "adjustment": 7,
    "rationale": "Two independent signals point the same way.",
    "cited_evidence": ["evt_doc_1"],
    "narrative": "The same photo supports another claimant's claim.",
}
Behaviour = Callable[["Handler"], None]


@dataclass
class FakeVertex:
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    behaviour: Behaviour | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Handler(BaseHTTPRequestHandler):
    server: Server

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.state.lock:
            self.server.state.requests.append((self.path, dict(self.headers), body))
        if self.server.state.behaviour is not None:
            self.server.state.behaviour(self)
            return
        self.reply(200, answer(json.dumps(ANSWER)))

    def reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeVertex


def answer(text: str) -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}
        ],
        "modelVersion": MODEL,
    }


@pytest.fixture
def vertex() -> Iterator[tuple[FakeVertex, str]]:
    server = Server(("127.0.0.1", 0), Handler)
    server.state = FakeVertex()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.state, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def assessor(base_url: str, *, timeout: float = 5.0, attempts: int = 2) -> GeminiAssessor:
    return GeminiAssessor.vertex(
        project=PROJECT,
        location=LOCATION,
        model=MODEL,
        base_url=base_url,
        credentials=google.oauth2.credentials.Credentials(token="test-token"),
        timeout=timeout,
        attempts=attempts,
    )


def _prompt() -> Any:
    ref = EvidenceRef(event_id="evt_doc_1", seq=4, leaf_hash="ab" * 32, type="document.uploaded")
    features = [
        Feature(
            name="duplicate_document",
            weight=60.0,
            value=1.0,
            reason="document sha256 ... is also attached to claim clm_other of another claimant",
            evidence=(ref,),
            facts={"other_claims": 1, "different_claimant": True},
        )
    ]
    return build_prompt(evaluate(features))


def test_request_shape_and_parsed_answer(vertex: tuple[FakeVertex, str]) -> None:
    state, base = vertex
    got = assessor(base).assess(_prompt())
    assert got == GeminiAssessment.model_validate(ANSWER)
    [(path, headers, body)] = state.requests
    assert path == PATH
    assert headers["Authorization"] == "Bearer test-token"
    gen = body["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    schema = gen["responseSchema"]
    assert schema["type"] == "OBJECT"
    assert set(schema["required"]) >= {"risk_level", "adjustment", "rationale", "narrative"}
    assert schema["properties"]["adjustment"]["minimum"] == -20
    assert schema["properties"]["adjustment"]["maximum"] == 20
    assert schema["properties"]["risk_level"]["enum"] == ["low", "medium", "high", "critical"]
    text = body["contents"][0]["parts"][0]["text"]
    assert json.loads(text)["features"][0]["evidence_ids"] == ["evt_doc_1"]
    assert "clm_other" not in text  # reasons (which name claims) are never sent
    assert "systemInstruction" in body


class Ledger:
    def __init__(self) -> None:
        self.entries: list[tuple[Entry, Any]] = []

    def append(
        self, *, tenant: str, actor: str, events: Any, idempotency_key: Any = None
    ) -> list[Entry]:
        return [self.add(tenant, e) for e in events]

    def add(self, tenant: str, ev: NewEvent) -> Entry:
        recorded = datetime(2025, 3, 1, tzinfo=UTC) + timedelta(minutes=len(self.entries))
        entry = Entry(
            seq=len(self.entries),
            id=f"evt_{len(self.entries)}",
            tenant=tenant,
            type=ev.type,
            subject=ev.subject,
            payload_hash=sha256_canonical(dict(ev.payload)),
            recorded_at=recorded,
            prev=bytes(32),
            occurred_at=ev.occurred_at,
        )
        self.entries.append((entry, ev.payload))
        return entry


def test_no_raw_payload_or_claimant_reaches_gemini(vertex: tuple[FakeVertex, str]) -> None:
    state, base = vertex
    ledger = Ledger()
    scorer = RiskScorer(
        facts=MemoryRiskFacts(), results=MemoryRiskResults(), ledger=ledger, assessor=assessor(base)
    )
    payload = {
        "amount_cents": 987654,
        "currency": "CHF",
        "claimant": "claimant-ZX81-secret",
        "asset": "asset-secret-42",
        "incident_at": format_time(datetime(2025, 2, 27, tzinfo=UTC)),
        "policy_id": "policy-secret-7",
        "description": "my neighbour Jane Doe saw it",
    }
    entry = ledger.add("ptn", NewEvent(type="claim.created", subject="clm_secret", payload=payload))
    out = scorer.handle(entry, payload)
    assert out.status == "scored" and out.record is not None
    [(_, _, body)] = state.requests
    sent = json.dumps(body)
    for secret in (
        "ZX81",
        "asset-secret",
        "policy-secret",
        "Jane Doe",
        "clm_secret",
        "987654",
        "CHF",
    ):
        assert secret not in sent
    result = out.record.result
    assert result["assessment"]["status"] == "ok" and result["model"]["gemini"] == MODEL
    assert result["score"] == result["deterministic"]["score"] + 7


def test_5xx_is_retried_a_bounded_number_of_times_then_falls_back(
    vertex: tuple[FakeVertex, str],
) -> None:
    state, base = vertex
    state.behaviour = lambda h: h.reply(503, {"error": {"code": 503, "message": "overloaded"}})
    with pytest.raises(Unavailable, match="503"):
        assessor(base, attempts=2).assess(_prompt())
    assert len(state.requests) == 2

    ledger = Ledger()
    scorer = RiskScorer(
        facts=MemoryRiskFacts(), results=MemoryRiskResults(), ledger=ledger, assessor=assessor(base)
    )
    p = {"amount_cents": 100, "claimant": "c", "asset": "a"}
    out = scorer.handle(
        ledger.add("ptn", NewEvent(type="claim.created", subject="clm", payload=p)), p
    )
    assert out.record is not None
    assert out.record.result["assessment"] == {"status": "unavailable"}
    assert "deterministic score stands" in out.record.result["explanation"]


def test_a_slow_answer_times_out_and_falls_back(vertex: tuple[FakeVertex, str]) -> None:
    state, base = vertex

    def slow(h: Handler) -> None:
        time.sleep(2.0)
        h.reply(200, answer(json.dumps(ANSWER)))

    state.behaviour = slow
    started = time.monotonic()
    with pytest.raises(Unavailable):
        assessor(base, timeout=0.5, attempts=1).assess(_prompt())
    assert time.monotonic() - started < 1.8
    assert len(state.requests) == 1


def test_an_answer_outside_the_schema_falls_back(vertex: tuple[FakeVertex, str]) -> None:
    state, base = vertex
    state.behaviour = lambda h: h.reply(200, answer(json.dumps({**ANSWER, "adjustment": 90})))
    with pytest.raises(Unavailable, match="schema"):
        assessor(base).assess(_prompt())
    state.behaviour = lambda h: h.reply(400, {"error": {"code": 400, "message": "bad schema"}})
    with pytest.raises(Unavailable, match="400"):
        assessor(base).assess(_prompt())
    assert len(state.requests) == 2  # 400 is not retried

"""The risk chain end to end on the local stack: claims and documents written over HTTP are
scored by risk_score (pushed `ledger-events` on the in-process bus) with no other call; the
`risk.scored` entry is in the ledger, proves offline with `proveniq verify`, and points at the
leaf hash of the event it scored; reviews, the queue, roles, tenants and the write path's
evidence checks are exercised over real HTTP."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from proveniq.log.entry import Entry

CLI = [sys.executable, "-m", "proveniq.app.cli"]
WAIT_SECONDS = 20


class Client:
    """One partner key against the stack: JSON in, the `{"success", "data"}` envelope out."""

    def __init__(self, stack: Any, role: str) -> None:
        self.base = stack.base
        self.headers = {"Authorization": f"Bearer {stack.keys[role]}"}

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base + path, headers=self.headers, timeout=30)

    def post(self, path: str, body: Any) -> requests.Response:
        return requests.post(self.base + path, json=body, headers=self.headers, timeout=30)

    def write(self, *events: dict[str, Any]) -> list[dict[str, Any]]:
        r = self.post("/v1/events:batch", {"events": list(events)})
        assert r.status_code == 201, r.text
        acks: list[dict[str, Any]] = r.json()["data"]["events"]
        return acks


def until(what: str, probe: Callable[[], Any]) -> Any:
    """Poll `probe` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def scored(client: Client, claim: str, event_id: str) -> dict[str, Any]:
    """The claim's score once the chain has scored `event_id` (its latest evidence)."""

    def probe() -> dict[str, Any] | None:
        r = client.get(f"/v1/risk/{claim}/score")
        if r.status_code == 200 and r.json()["data"]["scored_event"] == event_id:
            data: dict[str, Any] = r.json()["data"]
            return data
        assert r.status_code in (200, 404), r.text
        return None

    result: dict[str, Any] = until(f"the score of {event_id}", probe)
    return result


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def claim_event(claim: str, *, claimant: str, asset: str, amount: int = 180_000) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "type": "claim.created",
        "subject": claim,
        "occurred_at": iso(now),
        "payload": {
            "amount_cents": amount,
            "currency": "EUR",
            "claimant": claimant,
            "asset": asset,
            "incident_at": iso(now - timedelta(days=3)),
            "policy_id": f"pol_{claimant}",
            "policy_start": iso(now - timedelta(days=400)),
            "description": "water damage, kitchen",
        },
    }


def document_event(claim: str, content: bytes, kind: str = "photo") -> dict[str, Any]:
    return {
        "type": "document.uploaded",
        "subject": claim,
        "payload": {"sha256": hashlib.sha256(content).hexdigest(), "kind": kind},
    }


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_written_claim_is_scored_explained_and_verifies_offline(
    followed_stack: Any, tmp_path: Path
) -> None:
    acme = Client(followed_stack, "acme:MEMBER")
    claim_ack, doc_ack = acme.write(
        claim_event("clm_chain_1", claimant="cl_one", asset="ast_one"),
        document_event("clm_chain_1", b"a photo of the kitchen"),
    )

    # the chain scores both events; the latest score is the document's, with no other call
    score = scored(acme, "clm_chain_1", doc_ack["id"])
    assert score["claim_id"] == "clm_chain_1"
    assert 0 <= score["score"] < 50 and score["level"] in ("low", "medium")
    assert score["review_required"] is False and score["review_status"] == "not_required"
    risk_id = score["risk_event"]["id"]
    assert score["proof_url"] == f"/v1/events/{risk_id}/proof"

    explanation = acme.get("/v1/risk/clm_chain_1/explanation")
    assert explanation.status_code == 200, explanation.text
    ex = explanation.json()["data"]
    assert ex["score"] == score["score"] and ex["proof_url"] == score["proof_url"]
    assert ex["explanation"].startswith("Gemini assessment off: the deterministic score stands.")
    assert ex["models"]["deterministic"] == "proveniq-risk-det/1.0"
    assert ex["models"]["gemini"] is None and ex["models"]["prompt_sha256"] is None
    for reason in ex["reasons"]:
        for evidence in reason["evidence"]:
            assert evidence["proof_url"] == f"/v1/events/{evidence['event_id']}/proof"

    # the risk.scored entry: one per scored event, on the claim's subject, by the service
    entry = acme.get(f"/v1/events/{risk_id}").json()["data"]
    assert entry["type"] == "risk.scored" and entry["subject"] == "clm_chain_1"
    payload = entry["payload"]
    assert payload["score"] == score["score"]
    assert [f["name"] for f in payload["features"]] == [
        "duplicate_document",
        "velocity",
        "amount_outlier",
        "timing",
        "custody_contradiction",
    ]
    assert payload["model"]["deterministic"] == "proveniq-risk-det/1.0"
    assert payload["assessment"] == {"status": "off"}
    history = acme.get("/v1/events?type=risk.scored&subject=clm_chain_1").json()["data"]
    assert sorted(e["payload"]["scores"]["event_id"] for e in history) == sorted(
        [claim_ack["id"], doc_ack["id"]]
    )

    # its parent reference is the scored event's leaf hash, as the ledger and the kernel see it
    parent = payload["scores"]
    assert parent["event_id"] == doc_ack["id"] and parent["seq"] == doc_ack["seq"]
    assert parent["leaf_hash"] == doc_ack["leaf_hash"]
    by_leaf = acme.get(f"/v1/leaves/{parent['leaf_hash']}")
    assert by_leaf.status_code == 200 and by_leaf.json()["data"]["id"] == doc_ack["id"]
    doc_bundle = acme.get(f"/v1/events/{doc_ack['id']}/proof?wait=5")
    assert doc_bundle.status_code == 200, doc_bundle.text
    doc_entry = Entry.from_json(doc_bundle.json()["data"]["entry"], field="entry")
    assert doc_entry.leaf_hash().hex() == parent["leaf_hash"]

    # the risk.scored entry's bundle verifies offline, and a forged score does not
    (tmp_path / "log.pem").write_text(acme.get("/v1/log/public-key").text)
    bundle = acme.get(f"/v1/events/{risk_id}/proof?wait=5")
    assert bundle.status_code == 200, bundle.text
    data = bundle.json()["data"]
    assert data["payload"]["scores"] == parent
    (tmp_path / "bundle.json").write_text(json.dumps(data))
    ok = cli("verify", "bundle.json", "--key", "log.pem", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"OK: entry {risk_id}"), ok.stdout
    data["payload"]["score"] = 0 if score["score"] else 99
    (tmp_path / "forged.json").write_text(json.dumps(data))
    bad = cli("verify", "forged.json", "--key", "log.pem", cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr.startswith("FAILED: payload"), bad.stderr


def test_duplicate_document_needs_review_and_a_member_reviews_it(followed_stack: Any) -> None:
    member = Client(followed_stack, "acme:MEMBER")
    viewer = Client(followed_stack, "acme:VIEWER")
    photo = b"the same photo, submitted twice"
    member.write(
        claim_event("clm_dup_a", claimant="cl_alice", asset="ast_alice"),
        document_event("clm_dup_a", photo),
    )
    _, first_doc = member.write(
        claim_event("clm_dup_b", claimant="cl_bob", asset="ast_bob"),
        document_event("clm_dup_b", photo),
    )
    score = scored(member, "clm_dup_b", first_doc["id"])
    assert score["score"] >= 50 and score["level"] in ("high", "critical")
    assert score["review_required"] is True and score["review_status"] == "pending"

    ex = member.get("/v1/risk/clm_dup_b/explanation").json()["data"]
    top = ex["reasons"][0]
    assert top["feature"] == "duplicate_document" and top["contribution"] == 60.0
    assert "clm_dup_a" in top["reason"] and "another claimant" in top["reason"]
    cited = {e["event_id"] for e in top["evidence"]}
    assert first_doc["id"] in cited and len(cited) == 2  # this claim's document and the other's

    entry = member.get(f"/v1/events/{score['risk_event']['id']}").json()["data"]
    assert entry["payload"]["review_reasons"] == ["score at or above threshold"]

    queue = viewer.get("/v1/risk/reviews")  # reading the queue is asset:read
    assert queue.status_code == 200, queue.text
    assert "clm_dup_b" in [q["claim_id"] for q in queue.json()["data"]]
    assert "clm_dup_a" not in [q["claim_id"] for q in queue.json()["data"]]

    # a VIEWER may read but not decide; a MEMBER (asset:update) may
    denied = viewer.post("/v1/risk/clm_dup_b/review", {"decision": "reject", "note": "no"})
    assert denied.status_code == 403, denied.text
    bad = member.post("/v1/risk/clm_dup_b/review", {"decision": "maybe"})
    assert bad.status_code == 400 and "decision" in bad.text
    reviewed = member.post(
        "/v1/risk/clm_dup_b/review", {"decision": "reject", "note": "photo reused from clm_dup_a"}
    )
    assert reviewed.status_code == 201, reviewed.text
    view = reviewed.json()["data"]
    assert view["review_status"] == "rejected"
    assert view["review"]["decision"] == "reject"
    assert view["review"]["note"] == "photo reused from clm_dup_a"

    # the decision is a ledger entry pointing at the score it decided on
    [rev] = member.get("/v1/events?type=risk.reviewed&subject=clm_dup_b").json()["data"]
    assert rev["id"] == view["review"]["event_id"]
    assert rev["payload"]["decision"] == "reject"
    assert rev["payload"]["reviews"]["event_id"] == score["risk_event"]["id"]
    assert rev["payload"]["reviews"]["leaf_hash"] == score["risk_event"]["leaf_hash"]
    assert rev["payload"]["score"] == score["score"]

    after = viewer.get("/v1/risk/reviews").json()["data"]
    assert "clm_dup_b" not in [q["claim_id"] for q in after]
    assert viewer.get("/v1/risk/clm_dup_b/score").json()["data"]["review_status"] == "rejected"
    # the chain projects its own risk.reviewed without scoring it: no new risk.scored appears
    time.sleep(0.5)
    scores = member.get("/v1/events?type=risk.scored&subject=clm_dup_b").json()["data"]
    assert len(scores) == 2  # the claim and its document, nothing for risk.* entries


def test_analyze_rescores_on_request(followed_stack: Any) -> None:
    member = Client(followed_stack, "acme:MEMBER")
    viewer = Client(followed_stack, "acme:VIEWER")
    [ack] = member.write(claim_event("clm_again", claimant="cl_carol", asset="ast_carol"))
    first = scored(member, "clm_again", ack["id"])
    assert viewer.post("/v1/risk/analyze", {"claim_id": "clm_again"}).status_code == 403
    again = member.post("/v1/risk/analyze", {"claim_id": "clm_again"})
    assert again.status_code == 200, again.text
    data = again.json()["data"]
    assert data["scored_event"] == ack["id"] and data["score"] == first["score"]
    assert data["risk_event"]["id"] != first["risk_event"]["id"]  # a new entry, on request
    missing = member.post("/v1/risk/analyze", {"claim_id": "clm_nowhere"})
    assert missing.status_code == 404, missing.text
    bad = member.post("/v1/risk/analyze", {"claim_id": "../etc"})
    assert bad.status_code == 400 and "claim_id" in bad.text


def test_another_tenant_sees_nothing(followed_stack: Any) -> None:
    acme = Client(followed_stack, "acme:MEMBER")
    globex = Client(followed_stack, "globex:MEMBER")
    photo = b"acme's evidence"
    acme.write(
        claim_event("clm_acme_x", claimant="cl_x", asset="ast_x"),
        document_event("clm_acme_x", photo),
    )
    acme.write(claim_event("clm_acme_y", claimant="cl_y", asset="ast_y"))
    [_, doc] = acme.write(
        claim_event("clm_acme_z", claimant="cl_z", asset="ast_z"),
        document_event("clm_acme_z", photo),
    )
    assert scored(acme, "clm_acme_z", doc["id"])["review_required"] is True

    for path in ("/v1/risk/clm_acme_z/score", "/v1/risk/clm_acme_z/explanation"):
        r = globex.get(path)
        assert r.status_code == 404, (path, r.text)
    assert globex.get("/v1/risk/reviews").json()["data"] == []
    assert globex.post("/v1/risk/clm_acme_z/review", {"decision": "approve"}).status_code == 404
    assert globex.post("/v1/risk/analyze", {"claim_id": "clm_acme_z"}).status_code == 404

    # globex reusing acme's photo is no duplicate: facts are per tenant
    [_, gdoc] = globex.write(
        claim_event("clm_globex_1", claimant="cl_g", asset="ast_g"),
        document_event("clm_globex_1", photo),
    )
    g = scored(globex, "clm_globex_1", gdoc["id"])
    assert g["review_required"] is False
    reasons = globex.get("/v1/risk/clm_globex_1/explanation").json()["data"]["reasons"]
    assert "duplicate_document" not in [r["feature"] for r in reasons]


def test_malformed_known_evidence_field_is_refused_naming_it(followed_stack: Any) -> None:
    member = Client(followed_stack, "acme:MEMBER")
    bad = claim_event("clm_bad", claimant="cl_bad", asset="ast_bad")
    bad["payload"]["amount_cents"] = "x"
    r = member.post("/v1/events", bad)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "VALIDATION_ERROR"
    assert [d["field"] for d in err["details"]] == ["payload.amount_cents"]

    in_batch = member.post("/v1/events:batch", {"events": [document_event("clm_ok", b"ok"), bad]})
    assert in_batch.status_code == 400, in_batch.text
    fields = [d["field"] for d in in_batch.json()["error"]["details"]]
    assert len(fields) == 1 and fields[0].endswith("payload.amount_cents"), fields

    for field, value in (("sha256", "not-hex"), ("kind", "")):
        doc = document_event("clm_bad", b"d")
        doc["payload"][field] = value
        r = member.post("/v1/events", doc)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["details"][0]["field"] == f"payload.{field}"

    # unknown fields stay allowed; nothing of the refused writes reached the ledger
    ok = claim_event("clm_bad", claimant="cl_bad", asset="ast_bad")
    ok["payload"]["adjuster_notes"] = {"free": "form"}
    assert member.post("/v1/events", ok).status_code == 201
    history = member.get("/v1/subjects/clm_bad/history").json()["data"]
    assert [e["type"] for e in history if not e["type"].startswith("risk.")] == ["claim.created"]


def test_partners_cannot_write_risk_entries(followed_stack: Any) -> None:
    member = Client(followed_stack, "acme:MEMBER")
    forged = {
        "type": "risk.scored",
        "subject": "clm_forged",
        "payload": {"score": 0, "level": "low", "review_required": False, "scores": {}},
    }
    for path, body in (
        ("/v1/events", forged),
        ("/v1/events:batch", {"events": [forged]}),
        ("/v1/events", {**forged, "type": "risk.reviewed"}),
    ):
        r = member.post(path, body)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"]["code"] == "VALIDATION_ERROR"
    assert member.get("/v1/risk/clm_forged/score").status_code == 404
    assert member.get("/v1/events?subject=clm_forged").json()["data"] == []

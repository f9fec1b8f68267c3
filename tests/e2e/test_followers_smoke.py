"""The followers run on the local stack: a claim written over HTTP is scored without any other
call, and its `risk.scored` entry is in the ledger."""

from __future__ import annotations

import time
from typing import Any

import requests


def test_a_written_claim_is_scored_by_the_chain(followed_stack: Any) -> None:
    key = followed_stack.keys["acme:MEMBER"]
    h = {"Authorization": f"Bearer {key}"}
    r = requests.post(
        followed_stack.base + "/v1/events",
        json={
            "type": "claim.created",
            "subject": "clm_smoke",
            "payload": {"amount_cents": 125000, "currency": "EUR", "claimant": "c1"},
        },
        headers=h,
        timeout=10,
    )
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        score = requests.get(
            followed_stack.base + "/v1/risk/clm_smoke/score", headers=h, timeout=10
        )
        if score.status_code == 200:
            break
        time.sleep(0.2)
    assert score.status_code == 200, score.text
    data = score.json()["data"]
    assert 0 <= data["score"] <= 100
    ev = requests.get(
        followed_stack.base + f"/v1/events/{data['risk_event']['id']}", headers=h, timeout=10
    )
    assert ev.status_code == 200 and ev.json()["data"]["type"] == "risk.scored"
    assert ev.json()["data"]["payload"]["scores"]["event_id"] == r.json()["data"]["id"]

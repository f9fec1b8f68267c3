"""Regression tests for the hostile review of the new endpoints (2026-12-01)."""

from __future__ import annotations

import json
from typing import Any

import requests


def org_admin(stack: Any, org: str = "acme") -> dict[str, str]:
    from proveniq.app.runtime import runtime

    key, _ = runtime().accounts.create_key(partner_id=stack.partners[org], org_role="ADMIN")
    return {"Authorization": f"Bearer {key.secret}", "Content-Type": "application/json"}


def post(stack: Any, path: str, body: Any, headers: dict[str, str]) -> requests.Response:
    data = body if isinstance(body, str) else json.dumps(body)
    return requests.post(stack.base + path, data=data, headers=headers, timeout=60)


def test_risk_review_input_and_idempotency(followed_stack: Any) -> None:
    s = followed_stack
    h = {"Authorization": f"Bearer {s.keys['acme:MEMBER']}", "Content-Type": "application/json"}
    assert (
        post(s, "/v1/events", {"type": "claim.created", "subject": "clm_r"}, h).status_code == 201
    )
    for bad in (["approve"], {"a": 1}, None, 7):
        r = post(s, "/v1/risk/clm_r/review", {"decision": bad}, h)
        assert r.status_code == 400 and r.json()["error"]["details"][0]["field"] == "decision"
    import time

    for _ in range(100):
        if requests.get(s.base + "/v1/risk/clm_r/score", headers=h, timeout=10).status_code == 200:
            break
        time.sleep(0.1)
    once = {**h, "Idempotency-Key": "rev-1"}
    first = post(s, "/v1/risk/clm_r/review", {"decision": "approve", "note": "ok"}, once)
    again = post(s, "/v1/risk/clm_r/review", {"decision": "approve", "note": "ok"}, once)
    assert first.status_code == again.status_code == 201
    assert first.json()["data"]["review"]["event_id"] == again.json()["data"]["review"]["event_id"]
    history = requests.get(s.base + "/v1/subjects/clm_r/history", headers=h, timeout=10).json()
    assert [e["type"] for e in history["data"]].count("risk.reviewed") == 1


def test_webhook_subscription_inputs(followed_stack: Any) -> None:
    s = followed_stack
    h = org_admin(s)
    url = "http://127.0.0.1:9/hook"
    many = {"url": url, "events": [f"asset.a{i}" for i in range(66_000)]}
    assert post(s, "/v1/webhooks", many, h).status_code == 400  # refused before walking it all
    assert post(s, "/v1/webhooks", {"url": url, "events": {"asset.sold": 1}}, h).status_code == 400
    assert post(s, "/v1/webhooks", {"url": url, "events": ["asset.sold\n"]}, h).status_code == 400
    bidi = {"url": url, "events": ["claim.*"], "description": "evil\u202etxt"}
    assert post(s, "/v1/webhooks", bidi, h).status_code == 400
    made = post(s, "/v1/webhooks", {"url": url, "events": ["claim.*"]}, h)
    assert made.status_code == 201
    wid = made.json()["data"]["id"]
    for body in ({"description": None}, {"url": None}, {"events": None}, {}):
        r = requests.patch(
            s.base + f"/v1/webhooks/{wid}", data=json.dumps(body), headers=h, timeout=10
        )
        assert r.status_code == 400, body
    assert post(s, f"/v1/webhooks/{wid}/rotate-secret", "garbage", h).status_code == 400
    page = requests.get(s.base + f"/v1/webhooks/{wid}/deliveries?limit=100", headers=h, timeout=10)
    assert page.status_code == 200
    over = requests.get(s.base + f"/v1/webhooks/{wid}/deliveries?limit=150", headers=h, timeout=10)
    assert over.status_code == 400


def test_device_patch_refuses_null_status(followed_stack: Any) -> None:
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    s = followed_stack
    h = org_admin(s)
    pub = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    body = {
        "device_id": "tag-rf-1",
        "kind": "smart-tag",
        "public_key": base64.b64encode(pub).decode(),
    }
    assert post(s, "/v1/devices", body, h).status_code == 201
    r = requests.patch(
        s.base + "/v1/devices/tag-rf-1", data='{"status": null}', headers=h, timeout=10
    )
    assert r.status_code == 400 and r.json()["error"]["details"][0]["field"] == "status"

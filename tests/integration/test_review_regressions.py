"""Regressions for defects found in review: each would have been a 500, a poisoned pooled
connection, a cross-tenant write, or a write followed by an error."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from proveniq.app.runtime import runtime


def call(stack: Any, method: str, path: str, key: str, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}", **kw.pop("headers", {})}
    return requests.request(method, stack.base + path, headers=headers, timeout=30, **kw)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/events?since=9999-12-31T23:59:59-12:00",
        "/v1/events?until=0001-01-01T00:00:00%2B14:00",
        "/v1/events?limit=%C2%B2",
        "/v1/events?cursor=99999999999999999999",
        "/v1/events?type=claim%00x",
        "/v1/events?subject=a%00b",
        "/v1/checkpoints/9999999999999999999",
        "/v1/proofs/consistency?from=%C2%B2&to=3",
    ],
)
def test_bad_query_params_are_4xx_and_do_not_poison_the_pool(stack: Any, path: str) -> None:
    key = stack.keys["acme:MEMBER"]
    for _ in range(runtime().settings.pool_size + 2):  # more requests than pooled connections
        r = call(stack, "GET", path, key)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
    ok = call(
        stack, "POST", "/v1/events", key, json={"type": "claim.created", "subject": "clm_after"}
    )
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize(
    "occurred",
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2025-W01-1T00:00Z",
        "2026-11-24T10:00:00.1234567Z",
    ],
)
def test_out_of_range_occurred_at_is_400(stack: Any, occurred: str) -> None:
    r = call(
        stack,
        "POST",
        "/v1/events",
        stack.keys["acme:MEMBER"],
        json={"type": "claim.created", "subject": "c", "occurred_at": occurred},
    )
    assert r.status_code == 400 and r.json()["error"]["details"][0]["field"] == "occurred_at"


def test_nul_bytes_in_admin_and_batch_ids_are_4xx(stack: Any) -> None:
    r = call(stack, "POST", "/v1/admin/partners", stack.admin_key, json={"name": "a\u0000b"})
    assert r.status_code == 400
    r = call(
        stack,
        "POST",
        "/v1/admin/api-keys",
        stack.admin_key,
        json={"partner_id": "prt_\u0000", "role": "MEMBER"},
    )
    assert r.status_code == 400
    r = call(
        stack,
        "POST",
        "/v1/admin/api-keys",
        stack.admin_key,
        json={"partner_id": "prt_nope", "role": "MEMBER"},
    )
    assert r.status_code == 404
    r = call(
        stack, "POST", "/v1/proofs:batch", stack.keys["acme:MEMBER"], json={"ids": ["evt_\u0000"]}
    )
    assert r.status_code == 200 and r.json()["data"]["results"][0]["status"] == "not_found"


def test_wait_proof_timeout_is_validated_before_writing(stack: Any) -> None:
    for bad in ("abc", "0", "999"):
        r = call(
            stack,
            "POST",
            f"/v1/events?wait=proof&timeout={bad}",
            stack.keys["acme:MEMBER"],
            json={"type": "claim.created", "subject": "c"},
        )
        assert r.status_code == 400
    with stack.superuser() as conn:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM events")
        assert cur.fetchone()[0] == 0


def test_org_role_grants_nothing_in_another_tenant(stack: Any) -> None:
    accounts = runtime().accounts
    auditor, _ = accounts.create_key(
        partner_id=stack.partners["acme"], org_role="MEMBER", global_role="AUDITOR"
    )
    globex = {"X-Proveniq-Tenant": stack.partners["globex"]}
    r = call(
        stack,
        "POST",
        "/v1/events",
        auditor.secret,
        headers=globex,
        json={"type": "claim.created", "subject": "c"},
    )
    assert r.status_code == 403
    assert call(stack, "GET", "/v1/events", auditor.secret, headers=globex).status_code == 200
    r = call(
        stack,
        "POST",
        "/v1/events",
        stack.admin_key,
        headers={"X-Proveniq-Tenant": "no-such-tenant"},
        json={"type": "claim.created", "subject": "c"},
    )
    assert r.status_code == 404


def test_rate_bucket_uses_the_organizations_tier(stack: Any) -> None:
    """A credential claiming a lower tier cannot shrink its organization's shared bucket."""
    accounts = runtime().accounts
    partner = accounts.create_partner(name="Big", tier="enterprise")
    key, _ = accounts.create_key(partner_id=partner.id, org_role="MEMBER")
    r = call(
        stack, "POST", "/v1/events", key.secret, json={"type": "claim.created", "subject": "c"}
    )
    assert r.headers["X-RateLimit-Limit"] == "6000"


def test_pinned_proof_outside_the_tree_is_400(stack: Any) -> None:
    key = stack.keys["acme:MEMBER"]
    ids = [
        call(
            stack, "POST", "/v1/events", key, json={"type": "claim.created", "subject": f"c{i}"}
        ).json()["data"]["id"]
        for i in range(2)
    ]
    runtime().integrator.integrate_and_publish()
    r = call(stack, "GET", f"/v1/events/{ids[1]}/proof?tree_size=1", key)
    assert r.status_code == 404  # no checkpoint of size 1 was published
    r = call(stack, "GET", f"/v1/events/{ids[1]}/proof?tree_size=2", key)
    assert r.status_code == 200
    cp = call(stack, "GET", "/v1/checkpoints/2", key)
    assert cp.headers["Vary"] == "Accept"


def test_recorded_at_is_monotonic_with_seq(stack: Any) -> None:
    key = stack.keys["acme:MEMBER"]
    for i in range(20):
        call(stack, "POST", "/v1/events", key, json={"type": "claim.note", "subject": f"c{i}"})
    with stack.superuser() as conn:
        cur = conn.cursor()
        cur.execute("SELECT recorded_at FROM events ORDER BY seq")
        times = [r[0] for r in cur.fetchall()]
    assert times == sorted(times)

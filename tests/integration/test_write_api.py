"""The write path through real HTTP against a real PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from proveniq.log import merkle
from proveniq.log.entry import ZERO_HASH


def post(stack: Any, path: str, body: Any, key: str | None, **headers: str) -> requests.Response:
    h = {"Content-Type": "application/json", **headers}
    if key:
        h["Authorization"] = f"Bearer {key}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(stack.base + path, data=data, headers=h, timeout=30)


def test_append_returns_201_with_seq_and_leaf(stack: Any) -> None:
    r = post(
        stack,
        "/v1/events",
        {"type": "claim.created", "subject": "clm_1", "payload": {"amount_cents": 1200}},
        stack.keys["acme:MEMBER"],
    )
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    assert data["seq"] == 0 and len(data["leaf_hash"]) == 64
    assert data["proof_url"] == f"/v1/events/{data['id']}/proof"
    assert r.headers["Location"] == data["proof_url"]
    with stack.superuser() as conn:
        cur = conn.cursor()
        cur.execute("SELECT prev, leaf_hash, tenant FROM events WHERE id = %s", (data["id"],))
        prev, leaf, tenant = cur.fetchone()
    assert bytes(prev) == ZERO_HASH and bytes(leaf).hex() == data["leaf_hash"]
    assert tenant == stack.partners["acme"]


def test_batch_is_all_or_nothing(stack: Any) -> None:
    key = stack.keys["acme:MEMBER"]
    ok = post(
        stack,
        "/v1/events:batch",
        {
            "events": [
                {"type": "asset.created", "subject": "ast_1"},
                {"type": "asset.submitted", "subject": "ast_1"},
                {"type": "document.uploaded", "subject": "ast_1", "payload": {"sha256": "ab" * 32}},
            ]
        },
        key,
    )
    assert ok.status_code == 201, ok.text
    assert [e["seq"] for e in ok.json()["data"]["events"]] == [0, 1, 2]
    bad = post(
        stack,
        "/v1/events:batch",
        {
            "events": [
                {"type": "claim.created", "subject": "clm_2"},
                {"type": "asset.sold", "subject": "ast_1"},  # PENDING -> SOLD is impossible
            ]
        },
        key,
    )
    assert bad.status_code == 409 and bad.json()["error"]["code"] == "INVALID_TRANSITION"
    with stack.superuser() as conn:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM events")
        assert cur.fetchone()[0] == 3


def test_idempotency_replays_and_conflicts(stack: Any) -> None:
    key = stack.keys["acme:MEMBER"]
    body = {"type": "claim.created", "subject": "clm_9", "payload": {"n": 1}}
    first = post(stack, "/v1/events", body, key, **{"Idempotency-Key": "k-1"})
    again = post(stack, "/v1/events", body, key, **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert first.content == again.content
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = post(
        stack, "/v1/events", {**body, "payload": {"n": 2}}, key, **{"Idempotency-Key": "k-1"}
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"type": "claim.created", "subject": "c", "subject": "d"}', "subject"),
        (b'{"type": "claim.created", "subject": "c", "payload": {"x": NaN}}', "$"),
        (
            b'{"type": "claim.created", "subject": "c", "payload": {"x": 9007199254740993}}',
            "$.payload.x",
        ),
        (b'{"type": "claim.created", "subject": "c", "extra": 1}', "extra"),
        (b'{"type": "bogus", "subject": "c"}', "type"),
        (b'{"type": "claim.created", "subject": "has space"}', "subject"),
        (b'{"type": "claim.created", "subject": "c", "occurred_at": "yesterday"}', "occurred_at"),
        (b'{"type": "asset.teleported", "subject": "c"}', "type"),
        (b"[1, 2]", "body"),
        (b"not json", "$"),
    ],
)
def test_bad_input_is_400_with_field(stack: Any, body: bytes, field: str) -> None:
    r = post(stack, "/v1/events", body, stack.keys["acme:MEMBER"])
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "VALIDATION_ERROR"
    assert field in [d["field"] for d in err["details"]], err


def test_limits_and_auth(stack: Any) -> None:
    key = stack.keys["acme:MEMBER"]
    big = {
        "type": "claim.created",
        "subject": "c",
        "payload": {"x": "a" * 16000, "y": "b" * 16000, "z": ["c" * 16000] * 4},
    }
    assert post(stack, "/v1/events", big, key).status_code == 413
    deep: Any = {}
    cur = deep
    for _ in range(20):
        cur["d"] = {}
        cur = cur["d"]
    assert (
        post(
            stack, "/v1/events", {"type": "claim.created", "subject": "c", "payload": deep}, key
        ).status_code
        == 400
    )
    assert post(stack, "/v1/events:batch", {"events": []}, key).status_code == 400
    r = post(stack, "/v1/events", {"type": "claim.created", "subject": "c"}, None)
    assert r.status_code == 401 and r.json()["error"]["code"] == "AUTH_REQUIRED"
    r = post(
        stack, "/v1/events", {"type": "claim.created", "subject": "c"}, "pvq_live_000000000000_nope"
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "AUTH_INVALID"
    r = post(
        stack, "/v1/events", {"type": "claim.created", "subject": "c"}, stack.keys["acme:VIEWER"]
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"
    r = post(
        stack,
        "/v1/events",
        {"type": "claim.created", "subject": "c"},
        key,
        **{"X-Proveniq-Tenant": stack.partners["globex"]},
    )
    assert r.status_code == 403
    r = requests.post(
        stack.base + "/v1/events",
        data=b"{}",
        timeout=10,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "text/plain"},
    )
    assert r.status_code == 400


def test_health_and_ready_are_public(stack: Any) -> None:
    assert requests.get(stack.base + "/health", timeout=10).json()["data"]["status"] == "ok"
    assert requests.get(stack.base + "/ready", timeout=10).status_code == 200
    r = requests.get(stack.base + "/nowhere", timeout=10)
    assert r.status_code == 404 and r.json()["success"] is False
    r = requests.delete(
        stack.base + "/v1/admin/partners", timeout=10, headers={"X-API-Key": stack.admin_key}
    )
    assert r.status_code == 405 and r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_append_only_in_the_database(stack: Any) -> None:
    post(stack, "/v1/events", {"type": "claim.created", "subject": "c"}, stack.keys["acme:MEMBER"])
    with stack.superuser() as conn:  # even the superuser hits the trigger
        cur = conn.cursor()
        for sql in (
            "UPDATE events SET subject = 'x'",
            "DELETE FROM events",
            "TRUNCATE events CASCADE",
        ):
            with pytest.raises(Exception, match="append-only"):
                cur.execute(sql)
            conn.rollback()
    app = stack.pg.connect(user="proveniq_app", database=stack.database)
    with pytest.raises(Exception, match="permission denied"):
        app.cursor().execute("UPDATE events SET subject = 'x'")
    app.close()


def test_payload_erasure_keeps_the_leaf(stack: Any) -> None:
    r = post(
        stack,
        "/v1/events",
        {"type": "claim.created", "subject": "c", "payload": {"name": "Jane Doe"}},
        stack.keys["acme:MEMBER"],
    )
    eid = r.json()["data"]["id"]
    with stack.superuser() as conn:
        cur = conn.cursor()
        cur.execute("SELECT erase_payload(%s, 'dpo', 'GDPR art. 17')", (eid,))
        conn.commit()
        cur.execute("SELECT payload, leaf_hash FROM events WHERE id = %s", (eid,))
        payload, leaf = cur.fetchone()
    assert payload is None and bytes(leaf).hex() == r.json()["data"]["leaf_hash"]


def test_admin_endpoints(stack: Any) -> None:
    r = post(stack, "/v1/admin/partners", {"name": "Initech", "tier": "pro"}, stack.admin_key)
    assert r.status_code == 201, r.text
    pid = r.json()["data"]["id"]
    r = post(stack, "/v1/admin/api-keys", {"partner_id": pid, "role": "MEMBER"}, stack.admin_key)
    assert r.status_code == 201
    new_key, key_id = r.json()["data"]["api_key"], r.json()["data"]["id"]
    ok = post(stack, "/v1/events", {"type": "claim.created", "subject": "c"}, new_key)
    assert ok.status_code == 201
    assert ok.headers["X-RateLimit-Limit"] == "600"
    assert (
        post(stack, "/v1/admin/partners", {"name": "x"}, stack.keys["acme:MEMBER"]).status_code
        == 403
    )
    listed = requests.get(
        stack.base + "/v1/admin/partners", timeout=10, headers={"X-API-Key": stack.admin_key}
    )
    assert pid in [p["id"] for p in listed.json()["data"]]
    d = requests.delete(
        f"{stack.base}/v1/admin/api-keys/{key_id}",
        timeout=10,
        headers={"X-API-Key": stack.admin_key},
    )
    assert d.status_code == 200
    import time

    time.sleep(5.2)  # the per-instance key cache (auth.KEY_CACHE_SECONDS)
    r = post(stack, "/v1/events", {"type": "claim.created", "subject": "c"}, new_key)
    assert r.status_code == 401


def test_rate_limit_free_tier(stack: Any) -> None:
    r = post(stack, "/v1/admin/partners", {"name": "Tiny", "tier": "free"}, stack.admin_key)
    pid = r.json()["data"]["id"]
    key = post(stack, "/v1/admin/api-keys", {"partner_id": pid}, stack.admin_key).json()["data"][
        "api_key"
    ]
    codes = [
        post(stack, "/v1/events", {"type": "claim.created", "subject": f"c{i}"}, key)
        for i in range(14)
    ]
    statuses = [c.status_code for c in codes]
    assert statuses[:10] == [201] * 10 and 429 in statuses[10:]
    limited = next(c for c in codes if c.status_code == 429)
    assert limited.json()["error"]["code"] == "RATE_LIMITED"
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["X-RateLimit-Remaining"] == "0"


def test_merkle_root_of_appended_leaves(stack: Any) -> None:
    for i in range(5):
        post(
            stack,
            "/v1/events",
            {"type": "claim.created", "subject": f"c{i}"},
            stack.keys["globex:MEMBER"],
        )
    with stack.superuser() as conn:
        cur = conn.cursor()
        cur.execute("SELECT leaf_hash FROM events ORDER BY seq")
        leaves = [bytes(r[0]) for r in cur.fetchall()]
    assert len(leaves) == 5 and len(merkle.root(leaves)) == 32


def test_large_batch_copy_path_round_trips_exactly(stack: Any) -> None:
    """Batches of >= store.COPY_THRESHOLD go through COPY: payload bytes and every leaf field
    must come back exactly (tabs, newlines, backslashes, non-ASCII)."""
    key = stack.keys["acme:MEMBER"]
    tricky = {"note": "tab\there\nnew line \\ backslash \\N é 日本 \u2028", "n": -0.5}
    events = [
        {
            "type": "document.uploaded",
            "subject": f"doc_{i}",
            "payload": {**tricky, "i": i},
            "occurred_at": "2026-11-24T01:02:03.000004+01:00",
        }
        for i in range(40)
    ]
    r = post(stack, "/v1/events:batch", {"events": events}, key)
    assert r.status_code == 201, r.text
    ids = [e["id"] for e in r.json()["data"]["events"]]
    got = requests.get(
        f"{stack.base}/v1/events/{ids[7]}", timeout=10, headers={"Authorization": f"Bearer {key}"}
    ).json()["data"]
    assert got["payload"] == {**tricky, "i": 7}
    assert got["occurred_at"] == "2026-11-24T00:02:03.000004Z"
    with stack.superuser() as conn:
        from tests.integration.ledger_check import check_log

        leaves = check_log(conn)
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM outbox")
        assert cur.fetchone()[0] == len(leaves) == 40

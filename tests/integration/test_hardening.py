"""Regression tests for the hostile probe's findings (issue 12); each failed before its fix."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
from click.testing import CliRunner

from proveniq.access.ratelimit import RateLimiter
from proveniq.adapters.memory.accounts import MemoryRateBuckets
from proveniq.app.cli import main
from proveniq.errors import RateLimited
from tests.serving import free_port, wait_ready

HUGE = "9" * 4301


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def raw_post(stack: Any, path: str, body: str, key: str) -> requests.Response:
    return requests.post(stack.base + path, data=body, headers=auth(key), timeout=30)


@pytest.mark.parametrize(
    ("path", "body", "admin"),
    [
        ("/v1/events", '{"type":"claim.created","subject":"c","payload":{"n":%s}}', False),
        (
            "/v1/events:batch",
            '{"events":[{"type":"claim.note","subject":"c","payload":{"n":%s}}]}',
            False,
        ),
        ("/v1/proofs:batch", '{"ids":[%s]}', False),
        ("/v1/proofs/verify", '{"bundle":{"leaf_index":%s}}', False),
        ("/v1/admin/partners", '{"name":"x","tier":%s}', True),
    ],
)
def test_item1_huge_integers_are_a_400_naming_the_field(
    stack: Any, path: str, body: str, admin: bool
) -> None:
    key = stack.admin_key if admin else stack.keys["acme:MEMBER"]
    r = raw_post(stack, path, body % HUGE, key)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "VALIDATION_ERROR"
    assert err["details"][0]["field"].startswith("$")


def test_item2_huge_checkpoint_size_is_malformed_input(stack: Any, tmp_path: Path) -> None:
    note = f"proveniq.local/ledger\n{HUGE}\n" + "A" * 43 + "=\n\n— x AAAA\n"
    bundle = {"bundle": {"checkpoint": note}}
    r = raw_post(stack, "/v1/proofs/verify", json.dumps(bundle), stack.keys["acme:MEMBER"])
    assert r.status_code == 400, r.text
    f = tmp_path / "bundle.json"
    f.write_text(json.dumps({"leaf_index": int("9" * 30)}).replace("9" * 30, HUGE))
    key = tmp_path / "k.pem"
    key.write_text(
        requests.get(
            stack.base + "/v1/log/public-key", headers=auth(stack.keys["acme:MEMBER"]), timeout=10
        ).text
    )
    out = CliRunner().invoke(main, ["verify", str(f), "--key", str(key)])
    assert out.exit_code == 2, out.output


def test_item3_short_body_is_a_400_in_the_envelope(stack: Any) -> None:
    u = urlparse(stack.base)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(
            (
                "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {stack.keys['acme:MEMBER']}\r\n"
                'Content-Length: 500\r\nConnection: close\r\n\r\n{"type":'
            ).encode()
        )
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400", head
    assert json.loads(body)["success"] is False


def test_item4_gateway_404_is_valid_json_without_injection(stack: Any) -> None:
    r = requests.get(stack.base + "/x%22%7D%2C%22success%22%3Atrue%2C%22a%22%3A%7B%22b", timeout=10)
    assert r.status_code == 404
    assert r.json()["success"] is False
    r = requests.get(stack.base + "/x%01%02", timeout=10)
    assert r.json()["error"]["code"] == "NOT_FOUND"


def test_item5_wrong_method_is_405_with_allow(stack: Any) -> None:
    r = requests.delete(
        stack.base + "/v1/events", headers=auth(stack.keys["acme:MEMBER"]), timeout=10
    )
    assert r.status_code == 405, r.text
    assert set(r.headers["Allow"].split(", ")) == {"GET", "POST"}
    assert r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_item10_two_different_credentials_are_refused(stack: Any) -> None:
    h = {**auth(stack.keys["acme:MEMBER"]), "X-API-Key": stack.keys["globex:MEMBER"]}
    r = requests.get(stack.base + "/v1/events", headers=h, timeout=10)
    assert r.status_code == 401 and "conflicting" in r.json()["error"]["message"]
    h = {
        **auth(stack.keys["acme:MEMBER"]),
        "X-Forwarded-Authorization": f"Bearer {stack.keys['globex:MEMBER']}",
    }
    assert requests.get(stack.base + "/v1/events", headers=h, timeout=10).status_code == 401
    same = {**auth(stack.keys["acme:MEMBER"]), "X-API-Key": stack.keys["acme:MEMBER"]}
    assert requests.get(stack.base + "/v1/events", headers=same, timeout=10).status_code == 200


def test_item11_retry_after_is_long_enough_and_429_has_reset() -> None:
    limiter = RateLimiter(MemoryRateBuckets())
    for _ in range(10):
        limiter.take(bucket="b", tier="free")
    with pytest.raises(RateLimited) as e:
        limiter.take(bucket="b", tier="free")
    assert e.value.reset > time.time()
    wait = e.value.retry_after
    assert wait >= 2
    limiter.buckets._buckets["b"] = (  # type: ignore[attr-defined]
        limiter.buckets._buckets["b"][0],  # type: ignore[attr-defined]
        limiter.buckets._buckets["b"][1] - wait,  # type: ignore[attr-defined]  # `wait` later
    )
    assert limiter.take(bucket="b", tier="free") is not None  # honouring Retry-After succeeds


def test_item12_tenant_data_is_never_cached(stack: Any) -> None:
    key = stack.keys["acme:MEMBER"]
    r = raw_post(stack, "/v1/events", '{"type":"claim.created","subject":"c1"}', key)
    eid = r.json()["data"]["id"]
    for path in (
        f"/v1/events/{eid}",
        "/v1/events",
        "/v1/subjects/c1/history",
        f"/v1/events/{eid}/proof",
    ):
        got = requests.get(stack.base + path, headers=auth(key), timeout=10)
        assert got.headers.get("Cache-Control") == "no-store", path


def test_item14_replayed_201_keeps_location(stack: Any) -> None:
    key = stack.keys["acme:MEMBER"]
    h = {**auth(key), "Idempotency-Key": "loc-1"}
    body = '{"type":"claim.created","subject":"c2"}'
    first = requests.post(stack.base + "/v1/events", data=body, headers=h, timeout=10)
    again = requests.post(stack.base + "/v1/events", data=body, headers=h, timeout=10)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]


def test_item20_checkpoints_are_listed_and_verify_takes_the_envelope(
    stack: Any, tmp_path: Path
) -> None:
    from proveniq.app.runtime import runtime

    key = stack.keys["acme:MEMBER"]
    for _ in range(3):
        raw_post(stack, "/v1/events", '{"type":"claim.note","subject":"c3"}', key)
        runtime().integrator.integrate_and_publish()
    listed = requests.get(stack.base + "/v1/checkpoints?limit=2", headers=auth(key), timeout=10)
    sizes = [c["tree_size"] for c in listed.json()["data"]]
    assert sizes == [3, 2] and listed.json()["meta"]["next_cursor"] == "2"
    rest = requests.get(stack.base + "/v1/checkpoints?cursor=2", headers=auth(key), timeout=10)
    assert [c["tree_size"] for c in rest.json()["data"]] == [1]
    eid = requests.get(stack.base + "/v1/events", headers=auth(key), timeout=10).json()["data"][0][
        "id"
    ]
    (tmp_path / "bundle.json").write_text(
        requests.get(stack.base + f"/v1/events/{eid}/proof", headers=auth(key), timeout=10).text
    )
    (tmp_path / "log.pem").write_text(
        requests.get(stack.base + "/v1/log/public-key", headers=auth(key), timeout=10).text
    )
    out = CliRunner().invoke(
        main, ["verify", str(tmp_path / "bundle.json"), "--key", str(tmp_path / "log.pem")]
    )
    assert out.exit_code == 0, out.output


def test_item19_sigterm_stops_the_stack_and_its_database(tmp_path: Path) -> None:
    port, pubsub_port = free_port(), free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "PROVENIQ_STATE_DIR": str(tmp_path / "state"),
        "PROVENIQ_LOCAL_PUBSUB_PORT": str(pubsub_port),
        "PROVENIQ_FIRESTORE_PROJECT": "",
        "HOME": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "proveniq.app.cli", "serve", "--port", str(port)],
        env={**env, "FIRESTORE_EMULATOR_HOST": "127.0.0.1:1"},
        stdout=(tmp_path / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, tmp_path / "serve.log", timeout=60)
        pid_file = tmp_path / "state" / "pg" / "postmaster.pid"
        assert pid_file.exists()
        proc.terminate()
        assert proc.wait(timeout=30) is not None
        for _ in range(100):
            if not pid_file.exists():
                break
            time.sleep(0.1)
        assert not pid_file.exists(), "SIGTERM left the embedded PostgreSQL running"
    finally:
        if proc.poll() is None:
            proc.kill()
        from proveniq.adapters.local import postgres

        postgres.stop(tmp_path / "state" / "pg")


def test_item9_claim_verification_is_bounded_and_takes_no_body(stack: Any) -> None:
    from proveniq.ledger.claims import MAX_CLAIM_ENTRIES

    key = stack.keys["acme:MEMBER"]
    events = [{"type": "claim.note", "subject": "big"}] * (MAX_CLAIM_ENTRIES + 1)
    assert (
        raw_post(stack, "/v1/events:batch", json.dumps({"events": events}), key).status_code == 201
    )
    too_big = raw_post(stack, "/v1/claims/big/verify", "", key)
    assert too_big.status_code == 400 and MAX_CLAIM_ENTRIES <= 200
    with_body = raw_post(stack, "/v1/claims/big/verify", '{"x": 1}', key)
    assert with_body.status_code == 400
    assert with_body.json()["error"]["details"][0]["field"] == "body"


def test_item13_the_app_role_cannot_update_keys_or_partners(stack: Any) -> None:
    import pg8000

    from proveniq.app.runtime import runtime

    key = stack.keys["acme:VIEWER"]
    from proveniq.access.apikeys import prefix_of

    rec = runtime().accounts.lookup(prefix_of(key))
    runtime().accounts.revoke_key(rec.id)  # still possible, through the narrow function
    assert runtime().accounts.lookup(rec.prefix).revoked
    conn = stack.pg.connect(database=stack.database, user="proveniq_app")
    try:
        cur = conn.cursor()
        for sql in (
            "UPDATE api_keys SET revoked_at = NULL",
            "UPDATE partners SET tier = 'internal'",
        ):
            with pytest.raises(pg8000.DatabaseError, match="permission denied"):
                cur.execute(sql)
            conn.rollback()
    finally:
        conn.close()


def test_item16_a_suspended_partner_is_refused_and_can_be_reinstated(stack: Any) -> None:
    from proveniq.app.runtime import runtime

    admin = {"Authorization": f"Bearer {stack.admin_key}", "Content-Type": "application/json"}
    pid = stack.partners["globex"]
    key = stack.keys["globex:MEMBER"]
    assert requests.get(stack.base + "/v1/events", headers=auth(key), timeout=10).status_code == 200
    got = requests.get(stack.base + f"/v1/admin/partners/{pid}", headers=admin, timeout=10)
    assert got.json()["data"]["status"] == "active"
    r = requests.patch(
        stack.base + f"/v1/admin/partners/{pid}",
        data='{"status":"suspended","tier":"pro"}',
        headers=admin,
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["data"] == {
        **r.json()["data"],
        "status": "suspended",
        "tier": "pro",
    }
    runtime().gate.authenticator._cache.clear()  # the caches' few seconds, skipped
    runtime().gate._tiers.clear()
    refused = requests.get(stack.base + "/v1/events", headers=auth(key), timeout=10)
    assert refused.status_code == 401
    bad = requests.patch(
        stack.base + f"/v1/admin/partners/{pid}",
        data='{"status":"gone"}',
        headers=admin,
        timeout=10,
    )
    assert bad.status_code == 400 and bad.json()["error"]["details"][0]["field"] == "status"
    requests.patch(
        stack.base + f"/v1/admin/partners/{pid}",
        data='{"status":"active"}',
        headers=admin,
        timeout=10,
    )
    runtime().gate.authenticator._cache.clear()
    runtime().gate._tiers.clear()
    assert requests.get(stack.base + "/v1/events", headers=auth(key), timeout=10).status_code == 200
    member = requests.get(stack.base + f"/v1/admin/partners/{pid}", headers=auth(key), timeout=10)
    assert member.status_code == 403


def test_item17_keys_are_listed_without_secrets_and_orgs_manage_their_own(stack: Any) -> None:
    from proveniq.app.runtime import runtime

    admin = {"Authorization": f"Bearer {stack.admin_key}"}
    pid = stack.partners["acme"]
    listed = requests.get(
        stack.base + f"/v1/admin/api-keys?partner_id={pid}", headers=admin, timeout=10
    )
    assert listed.status_code == 200 and len(listed.json()["data"]) == 2
    text = listed.text
    assert stack.keys["acme:MEMBER"].rsplit("_", 1)[1] not in text and "key_hash" not in text
    owner, _ = runtime().accounts.create_key(partner_id=pid, org_role="ADMIN")
    h = auth(owner.secret)
    made = requests.post(
        stack.base + "/v1/keys", data='{"role":"VIEWER","label":"ci"}', headers=h, timeout=10
    )
    assert made.status_code == 201 and made.json()["data"]["api_key"].startswith("pvq_")
    above = requests.post(stack.base + "/v1/keys", data='{"role":"OWNER"}', headers=h, timeout=10)
    assert above.status_code == 403  # an ADMIN never mints an OWNER
    mine = requests.get(stack.base + "/v1/keys", headers=h, timeout=10).json()["data"]
    assert {k["role"] for k in mine} >= {"VIEWER", "ADMIN", "MEMBER"} and all(
        "api_key" not in k for k in mine
    )
    theirs = runtime().accounts.list_keys(stack.partners["globex"])[0].id
    assert (
        requests.delete(stack.base + f"/v1/keys/{theirs}", headers=h, timeout=10).status_code == 404
    )
    new_id = made.json()["data"]["id"]
    assert (
        requests.delete(stack.base + f"/v1/keys/{new_id}", headers=h, timeout=10).status_code == 200
    )
    member = auth(stack.keys["acme:MEMBER"])
    assert requests.get(stack.base + "/v1/keys", headers=member, timeout=10).status_code == 403


def test_item18_config_is_served_without_secrets(stack: Any) -> None:
    admin = {"Authorization": f"Bearer {stack.admin_key}"}
    r = requests.get(stack.base + "/v1/admin/config", headers=admin, timeout=10)
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["log_origin"] == "proveniq.local/ledger" and data["database_url"] is True
    assert "unix_sock" not in r.text and "postgresql://" not in r.text
    member = auth(stack.keys["acme:MEMBER"])
    assert (
        requests.get(stack.base + "/v1/admin/config", headers=member, timeout=10).status_code == 403
    )


def test_item8_failed_authentications_are_limited_per_client(stack: Any) -> None:
    from proveniq.access.gate import FAILURES_PER_MINUTE
    from proveniq.app.runtime import runtime

    known = auth(stack.keys["acme:MEMBER"])
    forged = auth("pvq_live_" + "0" * 12 + "_" + "x" * 32)
    assert requests.get(stack.base + "/v1/events", headers=known, timeout=10).status_code == 200
    for _ in range(3):
        assert (
            requests.get(stack.base + "/v1/events", headers=forged, timeout=10).status_code == 401
        )
    assert runtime().gate._failures["127.0.0.1"] == 3
    runtime().gate._failures["127.0.0.1"] = FAILURES_PER_MINUTE  # the budget, spent
    assert requests.get(stack.base + "/v1/events", headers=known, timeout=10).status_code == 200
    limited = requests.get(stack.base + "/v1/events", headers=forged, timeout=10)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "60"
    # a key this instance already knows keeps working from that client
    assert requests.get(stack.base + "/v1/events", headers=known, timeout=10).status_code == 200


def test_item6_an_oversized_header_is_answered_in_the_envelope(stack: Any) -> None:
    u = urlparse(stack.base)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(b"GET /v1/events HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"431", head[:200]
    doc = json.loads(body)
    assert doc["success"] is False and doc["error"]["code"] == "PAYLOAD_TOO_LARGE"

"""Webhooks end to end on the local stack: ledger writes over HTTP, the followers' fan-out, the
webhook worker and ``webhook_dispatch``, to a receiver on 127.0.0.1 that checks both signatures.

The retry schedule is shortened to ``0,1,1,1,1,1`` (six attempts a second apart). Nothing here
connects anywhere but 127.0.0.1: the refused URLs are refused by the SSRF guard's decision at
subscription time, before any connection.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from proveniq.log.entry import Entry
from tests.serving import free_port, wait_ready

FAST = pytest.mark.stack_env(PROVENIQ_WEBHOOK_RETRY_SCHEDULE="0,1,1,1,1,1")
WAIT = 30.0


# ---- a receiver on 127.0.0.1 ------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.time() on arrival
    status: int  # what the receiver answered


@dataclass
class Receiver:
    """Records every POST; answers what ``answer[path]`` says (204 by default)."""

    server: http.server.ThreadingHTTPServer
    answer: dict[str, Callable[[int], int]] = field(default_factory=dict)
    got: list[Received] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def at(self, path: str) -> list[Received]:
        with self.cond:
            return [r for r in self.got if r.path == path]

    def wait(self, path: str, count: int, timeout: float = WAIT) -> list[Received]:
        """The first ``count`` requests to ``path`` (fails after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(got := [r for r in self.got if r.path == path]) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{path}: {len(got)} of {count} requests after {timeout} s"
                self.cond.wait(left)
        return got

    def record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self.cond:
            n = len([r for r in self.got if r.path == path])
            status = self.answer.get(path, lambda n: 204)(n)
            self.got.append(Received(path, headers, body, time.time(), status))
            self.cond.notify_all()
        return status


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: list[Receiver] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = holder[0].record(self.path, headers, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(Receiver(server=server))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield holder[0]
    server.shutdown()
    server.server_close()


def verify_both(r: Received, secret: str) -> dict[str, Any]:
    """The event, if both signatures verify with ``secret``: Standard Webhooks with the
    maintained verifier, X-Proveniq-Signature with nothing but an HMAC over the raw body."""
    event: dict[str, Any] = Webhook(secret).verify(r.body, r.headers)
    expected = "sha256=" + hmac.new(secret.encode(), r.body, hashlib.sha256).hexdigest()
    values = r.headers["x-proveniq-signature"].split()
    assert any(hmac.compare_digest(expected, v) for v in values), "X-Proveniq-Signature"
    return event


# ---- the API -----------------------------------------------------------------------------------


def admin_key(live: Any, partner: str) -> str:
    from proveniq.app.runtime import runtime

    key, _ = runtime().accounts.create_key(partner_id=live.partners[partner], org_role="ADMIN")
    secret: str = key.secret
    return secret


class Api:
    def __init__(self, base: str, key: str) -> None:
        self.base = base
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.s.request(method, self.base + path, timeout=30, **kw)

    def subscribe(self, url: str, events: list[str]) -> dict[str, Any]:
        r = self.call("POST", "/v1/webhooks", json={"url": url, "events": events})
        assert r.status_code == 201, r.text
        data: dict[str, Any] = r.json()["data"]
        return data

    def write(self, type: str, subject: str, payload: dict[str, Any]) -> dict[str, Any]:
        r = self.call(
            "POST", "/v1/events", json={"type": type, "subject": subject, "payload": payload}
        )
        assert r.status_code == 201, r.text
        data: dict[str, Any] = r.json()["data"]
        return {**data, "type": type}

    def deliveries(self, sub_id: str) -> list[dict[str, Any]]:
        r = self.call("GET", f"/v1/webhooks/{sub_id}/deliveries")
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["data"]
        return items

    def settled(
        self, sub_id: str, count: int, *, states: tuple[str, ...] = ("delivered",)
    ) -> list[dict[str, Any]]:
        """The subscription's deliveries once ``count`` of them are in one of ``states``."""
        deadline = time.monotonic() + WAIT
        while True:
            items = self.deliveries(sub_id)
            if len([d for d in items if d["state"] in states]) >= count:
                return items
            assert time.monotonic() < deadline, f"deliveries did not settle: {items}"
            time.sleep(0.2)


def at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# ---- delivery, signatures, filtering ----------------------------------------------------------


@FAST
def test_every_matching_event_arrives_once_signed_with_the_secret_from_creation(
    followed_stack: Any, receiver: Receiver
) -> None:
    from proveniq.app.runtime import runtime

    live = followed_stack
    api = Api(live.base, admin_key(live, "acme"))
    claims = api.subscribe(receiver.url("/claims"), ["claim.*"])
    assets = api.subscribe(receiver.url("/assets"), ["asset.created"])

    written = [
        api.write("claim.filed", "clm_e2e_1", {"amount_cents": 125000, "currency": "EUR"}),
        api.write("asset.created", "ast_e2e_1", {"vin": "4T1B11HK5KU000001"}),
        api.write("claim.payout.sent", "clm_e2e_1", {"amount_cents": 1000}),
        api.write("asset.updated", "ast_e2e_1", {"colour": "red"}),  # matches neither
    ]
    batch = api.call(
        "POST",
        "/v1/events:batch",
        json={
            "events": [
                {"type": "claim.note", "subject": "clm_e2e_2", "payload": {"i": i}}
                for i in range(3)
            ]
            + [{"type": "custody.transferred", "subject": "ast_e2e_1", "payload": {}}]
        },
    )
    assert batch.status_code == 201, batch.text
    written += [
        {**e, "type": "claim.note" if i < 3 else "custody.transferred"}
        for i, e in enumerate(batch.json()["data"]["events"])
    ]
    by_id = {w["id"]: w for w in written}
    want_claims = [w["id"] for w in written if w["type"].startswith("claim.")]
    want_assets = [w["id"] for w in written if w["type"] == "asset.created"]

    api.settled(claims["id"], len(want_claims))
    api.settled(assets["id"], len(want_assets))
    time.sleep(1.5)  # a duplicate or a stray event would have arrived by now

    base = runtime().settings.public_base_url.rstrip("/")
    for sub, path, want in ((claims, "/claims", want_claims), (assets, "/assets", want_assets)):
        got = receiver.at(path)
        ids = [r.headers["webhook-id"] for r in got]
        assert sorted(ids) == sorted(want), f"{path}: each matching event exactly once"
        for r in got:
            event = verify_both(r, sub["secret"])
            assert r.headers["user-agent"] == "Proveniq-Webhooks/1"
            assert r.headers["content-type"] == "application/json"
            w = by_id[event["id"]]
            assert event["type"] == w["type"]
            assert event["organizationId"] == live.partners["acme"]
            ledger = event["data"]["ledger"]
            assert ledger["seq"] == w["seq"]
            assert ledger["leaf_hash"] == w["leaf_hash"]
            assert Entry.from_json(ledger["entry"]).leaf_hash().hex() == w["leaf_hash"]
            assert ledger["proof_url"] == f"{base}/v1/events/{w['id']}/proof"
            assert abs(int(r.headers["webhook-timestamp"]) - r.at) < 60
    # the proof the receiver was pointed at exists and is of that leaf
    first = json.loads(receiver.at("/claims")[0].body)
    proof_path = first["data"]["ledger"]["proof_url"][len(base) :]
    proof = api.call("GET", proof_path + "?wait=10")
    assert proof.status_code == 200, proof.text
    assert json.dumps(first["data"]["ledger"]["leaf_hash"]) in proof.text
    # a wrong secret verifies neither signature
    other = receiver.at("/claims")[0]
    with pytest.raises(Exception):  # noqa: B017 - WebhookVerificationError or AssertionError
        verify_both(other, assets["secret"])
    # claim deliveries never carried the payload of an asset event
    assert all(json.loads(r.body)["type"].startswith("claim.") for r in receiver.at("/claims"))


@FAST
def test_a_rotated_secret_verifies_beside_the_old_one_during_the_overlap(
    followed_stack: Any, receiver: Receiver
) -> None:
    live = followed_stack
    api = Api(live.base, admin_key(live, "acme"))
    sub = api.subscribe(receiver.url("/rot"), ["claim.*"])
    old = sub["secret"]
    rotated = api.call("POST", f"/v1/webhooks/{sub['id']}/rotate-secret")
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()["data"]["secret"]
    assert new.startswith("whsec_") and new != old
    until = at(rotated.json()["data"]["previous_valid_until"])
    assert 23.9 * 3600 < until - time.time() <= 24 * 3600

    api.write("claim.filed", "clm_rot", {"amount_cents": 5})
    [r] = receiver.wait("/rot", 1)
    assert len(r.headers["webhook-signature"].split()) == 2
    assert len(r.headers["x-proveniq-signature"].split()) == 2
    assert verify_both(r, new) == verify_both(r, old)  # either secret verifies both headers


# ---- retries, dead letters, replay, 410 --------------------------------------------------------


@FAST
def test_a_failing_receiver_is_retried_on_the_schedule_until_it_recovers(
    followed_stack: Any, receiver: Receiver
) -> None:
    live = followed_stack
    api = Api(live.base, admin_key(live, "acme"))
    receiver.answer["/flaky"] = lambda n: 500 if n < 2 else 204
    sub = api.subscribe(receiver.url("/flaky"), ["claim.*"])
    w = api.write("claim.filed", "clm_flaky", {"amount_cents": 7})

    got = receiver.wait("/flaky", 3)
    [d] = api.settled(sub["id"], 1)
    assert [r.status for r in got] == [500, 500, 204]
    assert {r.headers["webhook-id"] for r in got} == {w["id"]}
    assert len({r.body for r in got}) == 1  # the same signed body every time
    for r in got:
        verify_both(r, sub["secret"])
    assert got[1].at - got[0].at >= 0.95 and got[2].at - got[1].at >= 0.95  # 1 s apart
    assert d["state"] == "delivered" and d["attempts_made"] == 3 and d["event_id"] == w["id"]
    attempts = d["attempts"]
    assert [a["number"] for a in attempts] == [1, 2, 3]
    assert [a["status_code"] for a in attempts] == [500, 500, 204]
    assert [a["outcome"] for a in attempts] == ["retry", "retry", "delivered"]
    assert attempts[0]["error"] == "HTTP 500" and attempts[2]["error"] is None
    assert attempts[0]["next_attempt_at"] is not None and attempts[2]["next_attempt_at"] is None
    for a in attempts:
        assert isinstance(a["latency_ms"], int) and a["latency_ms"] >= 0
    time.sleep(1.5)
    assert len(receiver.at("/flaky")) == 3  # nothing after the 2xx


@FAST
def test_six_failures_dead_letter_the_delivery_and_a_replay_delivers_it(
    followed_stack: Any, receiver: Receiver
) -> None:
    live = followed_stack
    api = Api(live.base, admin_key(live, "acme"))
    up = threading.Event()
    receiver.answer["/down"] = lambda n: 204 if up.is_set() else 503
    sub = api.subscribe(receiver.url("/down"), ["claim.*"])
    w = api.write("claim.filed", "clm_down", {"amount_cents": 9})

    receiver.wait("/down", 6)
    [d] = api.settled(sub["id"], 1, states=("dead",))
    assert d["state"] == "dead" and d["attempts_made"] == 6 and d["next_attempt_at"] is None
    assert d["last_status"] == 503
    attempts = d["attempts"]
    assert [(a["round"], a["number"]) for a in attempts] == [(0, n) for n in range(1, 7)]
    assert all(a["status_code"] == 503 and a["outcome"] == "retry" for a in attempts)
    assert (
        all(a["next_attempt_at"] for a in attempts[:5]) and attempts[5]["next_attempt_at"] is None
    )
    starts = [at(a["at"]) for a in attempts]
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(starts))
    time.sleep(1.5)
    assert len(receiver.at("/down")) == 6  # no seventh attempt

    up.set()
    replay = api.call("POST", f"/v1/webhooks/{sub['id']}/deliveries/{d['id']}/replay")
    assert replay.status_code == 202, replay.text
    assert replay.json()["data"]["state"] == "pending" and replay.json()["data"]["round"] == 1
    got = receiver.wait("/down", 7)
    [d] = api.settled(sub["id"], 1)
    assert got[6].status == 204 and got[6].headers["webhook-id"] == w["id"]
    verify_both(got[6], sub["secret"])
    assert (d["round"], d["attempts_made"], d["state"]) == (1, 1, "delivered")
    assert [(a["round"], a["number"], a["status_code"]) for a in d["attempts"]][-1] == (1, 1, 204)
    assert len(d["attempts"]) == 7
    time.sleep(1.0)
    assert len(receiver.at("/down")) == 7


@FAST
def test_410_gone_disables_the_subscription(followed_stack: Any, receiver: Receiver) -> None:
    live = followed_stack
    api = Api(live.base, admin_key(live, "acme"))
    receiver.answer["/gone"] = lambda n: 410
    sub = api.subscribe(receiver.url("/gone"), ["claim.*"])
    api.write("claim.filed", "clm_gone", {"amount_cents": 1})

    receiver.wait("/gone", 1)
    [d] = api.settled(sub["id"], 1, states=("dead",))
    assert d["attempts_made"] == 1 and d["attempts"][0]["outcome"] == "gone"
    view = api.call("GET", f"/v1/webhooks/{sub['id']}").json()["data"]
    assert view["enabled"] is False and "410" in view["disabledReason"]
    replay = api.call("POST", f"/v1/webhooks/{sub['id']}/deliveries/{d['id']}/replay")
    assert replay.status_code == 409, replay.text

    api.write("claim.filed", "clm_gone_2", {"amount_cents": 2})  # no delivery any more
    time.sleep(2.0)
    assert len(receiver.at("/gone")) == 1
    assert len(api.deliveries(sub["id"])) == 1

    # the organization re-enables it (the endpoint is back) and replays the dead delivery
    receiver.answer["/gone"] = lambda n: 204
    enabled = api.call("PATCH", f"/v1/webhooks/{sub['id']}", json={"enabled": True})
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["data"]["enabled"] is True
    assert enabled.json()["data"]["disabledReason"] is None
    replay = api.call("POST", f"/v1/webhooks/{sub['id']}/deliveries/{d['id']}/replay")
    assert replay.status_code == 202, replay.text
    got = receiver.wait("/gone", 2)
    assert got[1].status == 204 and got[1].headers["webhook-id"] == d["event_id"]
    assert api.settled(sub["id"], 1)[0]["round"] == 1


# ---- the API's guards -------------------------------------------------------------------------


@FAST
def test_subscription_api_guards_ssrf_roles_tenants_and_the_secret(
    followed_stack: Any, receiver: Receiver
) -> None:
    live = followed_stack
    acme = Api(live.base, admin_key(live, "acme"))
    globex = Api(live.base, admin_key(live, "globex"))

    # SSRF: refused at subscription time by the guard's decision (IP literals: no lookup, no
    # connection); loopback is open only through the local stack's allow-list.
    for url in (
        "http://10.0.0.1/x",
        "http://169.254.169.254/",
        "http://169.254.169.254/computeMetadata/v1/",
        "http://192.168.1.1/hook",
        "http://100.64.0.1/hook",
        "http://0.0.0.0/hook",
        "http://[fd00::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://2130706433/hook",
    ):
        r = acme.call("POST", "/v1/webhooks", json={"url": url, "events": ["claim.*"]})
        assert r.status_code == 400, (url, r.text)
        assert r.json()["success"] is False
    assert acme.call("GET", "/v1/webhooks").json()["data"] == []

    sub = acme.subscribe(receiver.url("/guarded"), ["claim.*"])
    secret = sub["secret"]
    assert secret.startswith("whsec_")
    patched = acme.call("PATCH", f"/v1/webhooks/{sub['id']}", json={"url": "http://10.1.2.3/"})
    assert patched.status_code == 400, patched.text

    # roles: org:settings is an organization ADMIN's (or OWNER's)
    for role in ("VIEWER", "MEMBER"):
        other = Api(live.base, live.keys[f"acme:{role}"])
        for method, path in (
            ("POST", "/v1/webhooks"),
            ("GET", "/v1/webhooks"),
            ("GET", f"/v1/webhooks/{sub['id']}"),
            ("POST", f"/v1/webhooks/{sub['id']}/rotate-secret"),
            ("GET", f"/v1/webhooks/{sub['id']}/deliveries"),
        ):
            body = {"url": receiver.url("/x"), "events": ["claim.*"]}
            r = other.call(method, path, json=body if method == "POST" else None)
            assert r.status_code == 403, (role, method, path, r.text)

    # tenants: globex sees nothing of acme's
    assert globex.call("GET", "/v1/webhooks").json()["data"] == []
    for method, path in (
        ("GET", f"/v1/webhooks/{sub['id']}"),
        ("PATCH", f"/v1/webhooks/{sub['id']}"),
        ("DELETE", f"/v1/webhooks/{sub['id']}"),
        ("POST", f"/v1/webhooks/{sub['id']}/rotate-secret"),
        ("POST", f"/v1/webhooks/{sub['id']}/test"),
        ("GET", f"/v1/webhooks/{sub['id']}/deliveries"),
    ):
        r = globex.call(method, path, json={"enabled": False} if method == "PATCH" else None)
        assert r.status_code == 404, (method, path, r.text)
    assert acme.call("GET", f"/v1/webhooks/{sub['id']}").json()["data"]["enabled"] is True

    # the test event goes out signed; the secret is never returned again
    test = acme.call("POST", f"/v1/webhooks/{sub['id']}/test")
    assert test.status_code == 200, test.text
    assert test.json()["data"]["state"] == "delivered"
    [r] = receiver.wait("/guarded", 1)
    assert verify_both(r, secret)["type"] == "webhook.test"
    for path in (
        "/v1/webhooks",
        f"/v1/webhooks/{sub['id']}",
        f"/v1/webhooks/{sub['id']}/deliveries",
    ):
        r = acme.call("GET", path)
        assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
        assert secret not in r.text and secret[len("whsec_") :] not in r.text
        assert '"secret"' not in r.text
    assert secret not in patched.text

    deleted = acme.call("DELETE", f"/v1/webhooks/{sub['id']}")
    assert deleted.status_code == 200, deleted.text
    assert acme.call("GET", f"/v1/webhooks/{sub['id']}").status_code == 404


# ---- a restart between a failed attempt and its retry ------------------------------------------


def serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "proveniq.app.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, log, timeout=60)
    except AssertionError:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc, base


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError("proveniq serve ignored SIGTERM") from None


def test_a_pending_retry_survives_a_stack_restart(
    database: str, pg_server: Any, receiver: Receiver, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENIQ_")}
    env.update(
        PROVENIQ_DATABASE_URL=pg_server.url(user="proveniq_app", database=database),
        PROVENIQ_STATE_DIR=str(tmp_path / "state"),  # the secret box's key file lives here
        PROVENIQ_SEAL_INTERVAL_MS="200",
        PROVENIQ_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
        PROVENIQ_WEBHOOK_ALLOW_HTTP="true",
        PROVENIQ_WEBHOOK_RETRY_SCHEDULE="0,4",
    )
    log = tmp_path / "serve.log"
    receiver.answer["/restart"] = lambda n: 500 if n == 0 else 204

    proc, base = serve(env, log)
    try:
        api = Api(base, (tmp_path / "state" / "demo-api-key").read_text().strip())  # an ADMIN
        sub = api.subscribe(receiver.url("/restart"), ["claim.*"])
        w = api.write("claim.filed", "clm_restart", {"amount_cents": 3})
        [failed] = receiver.wait("/restart", 1)
        assert failed.status == 500
        [d] = api.settled(sub["id"], 1, states=("pending",))
        deadline = time.monotonic() + WAIT
        while not d["attempts"]:  # the failed attempt is recorded and its retry scheduled
            assert time.monotonic() < deadline, d
            time.sleep(0.05)
            [d] = api.deliveries(sub["id"])
        assert d["attempts_made"] == 1 and d["next_attempt_at"] is not None
    finally:
        stop(proc)
    assert len(receiver.at("/restart")) == 1, "the retry must not have been sent before the stop"
    conn = pg_server.connect(database=database)
    try:
        cur = conn.cursor()
        cur.execute("SELECT delivery_id, round, attempt FROM webhook_tasks")
        rows = [tuple(r) for r in cur.fetchall()]
        assert rows == [(d["id"], 0, 2)]  # the retry, durable in PostgreSQL
    finally:
        conn.close()

    proc, base = serve(env, log)
    try:
        api = Api(base, (tmp_path / "state" / "demo-api-key").read_text().strip())
        got = receiver.wait("/restart", 2)
        [d] = api.settled(sub["id"], 1)
        time.sleep(1.0)
        assert len(receiver.at("/restart")) == 2
    finally:
        stop(proc)
    assert got[1].status == 204 and got[1].headers["webhook-id"] == w["id"]
    verify_both(got[1], sub["secret"])  # the secret from creation, opened after the restart
    assert got[1].at - failed.at >= 3.9  # on the schedule, not early
    assert d["state"] == "delivered"
    assert [(a["number"], a["status_code"]) for a in d["attempts"]] == [(1, 500), (2, 204)]

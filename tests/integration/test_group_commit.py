"""Group commit against a real PostgreSQL: round trips per transaction, a connection lost inside
a group, and a group of HTTP requests in which one is refused (409)."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from proveniq.adapters.postgres import pool as db
from proveniq.adapters.postgres.ledger import PostgresLedger
from proveniq.errors import Unavailable
from proveniq.ledger.sequencing import GroupCommit, Request, Sequenced, Sequencer
from proveniq.ledger.submission import parse_single
from proveniq.ports import Idempotency, StoredResponse
from tests.integration.ledger_check import check_log


class CountingSocket:
    """pg8000's buffered socket, counting round trips: a read after a write is one."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self.round_trips = 0
        self._wrote = False

    def write(self, b: Any) -> Any:
        self._wrote = True
        return self._f.write(b)

    def read(self, n: int) -> Any:
        if self._wrote:
            self.round_trips += 1
            self._wrote = False
        return self._f.read(n)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


@pytest.fixture
def counted(pg_server: Any, database: str) -> Iterator[tuple[PostgresLedger, CountingSocket]]:
    """A ledger over ONE connection whose round trips are counted."""
    sockets: list[CountingSocket] = []

    def connect() -> Any:
        conn = db.prepare_connection(pg_server.connect(user="proveniq_app", database=database))
        sockets.append(CountingSocket(conn._sock))
        conn._sock = sockets[-1]
        return conn

    pool = db.Pool(connect, size=1)
    ledger = PostgresLedger(pool)
    with ledger.snapshot():
        pass  # open the connection
    try:
        yield ledger, sockets[0]
    finally:
        pool.dispose()


def event(kind: str = "claim.note", subject: str = "c1") -> Any:
    return parse_single(json.dumps({"type": kind, "subject": subject, "payload": {}}).encode())


def response(entries: list[Any]) -> StoredResponse:
    return StoredResponse(status=201, body=b"{}")


def key() -> Idempotency:
    return Idempotency(key=uuid.uuid4().hex, request_hash=os.urandom(32))


def request(kind: str, n: int) -> Request:
    idem = key() if kind == "idempotent" else None
    prepared = event("asset.created", f"ast_{n}") if kind == "governed" else event()
    return Request(
        tenant="t1",
        actor="a",
        items=[(f"evt_{uuid.uuid4().hex}", prepared)],
        idempotency=idem,
        render=response,
    )


KINDS = ("plain", "governed", "idempotent")


def test_round_trips_per_transaction(counted: tuple[PostgresLedger, CountingSocket]) -> None:
    ledger, sock = counted
    one_each = Sequencer(store=ledger, relay=None)  # group commit off: as before
    grouped = Sequencer(store=ledger, relay=None, group=GroupCommit(wait=0, max_size=64))
    found: dict[tuple[str, str], int] = {}
    for mode, s in (("off", one_each), ("on", grouped)):
        for n, kind in enumerate(KINDS):
            r = request(kind, n if mode == "off" else 10 + n)
            sock.round_trips = 0
            s.sequence(
                tenant="t1",
                actor="a",
                prepared=[p for _, p in r.items],
                idempotency=r.idempotency,
                render=response,
            )
            found[(mode, kind)] = sock.round_trips
    # off: BEGIN (1) + ledger_lock_tail and COMMIT (3 each: Parse, Describe, Bind/Execute) +
    # the events/outbox INSERT as a prepared statement (1, or 2 on its first use on this
    # connection) + statuses read and write (governed: 3 + 3 less the INSERT's saving) or the
    # idempotency record (3) and the replay check before the lock (1; a transaction of its own,
    # 7, before group commit)
    assert found[("off", "plain")] == 9
    assert found[("off", "governed")] == 14
    assert found[("off", "idempotent")] == 12
    # on: BEGIN + ledger_lock_group, then ledger_append_group + COMMIT; a key's replay check is
    # one more, before the lock
    assert found[("on", "plain")] == 2
    assert found[("on", "governed")] == 2
    assert found[("on", "idempotent")] == 3
    for kinds in (["plain"] * 32, [KINDS[i % 3] for i in range(48)]):
        sock.round_trips = 0
        out = grouped.commit_group([request(k, 100 + i) for i, k in enumerate(kinds)])
        assert all(isinstance(o, Sequenced) for o in out)
        assert sock.round_trips == 2  # the whole group, whatever it holds


def test_a_connection_lost_inside_a_group_fails_it_whole(pg_server: Any, database: str) -> None:
    pool = db.Pool(db.url_connector(pg_server.url(user="proveniq_app", database=database)), size=2)
    ledger = PostgresLedger(pool)
    real_group = ledger.group

    def group_killed_before_commit() -> Any:
        cm = real_group()
        tx = cm.__enter__()
        commit = tx.commit

        def kill_then_commit(write: Any) -> Any:
            pid = db.pipeline(tx.conn, [("SELECT pg_backend_pid()", ())])[0][0][0]
            with pg_server.connect(database=database) as su:
                su.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
                su.commit()
            return commit(write)

        tx.commit = kill_then_commit

        class Cm:
            def __enter__(self) -> Any:
                return tx

            def __exit__(self, *exc: Any) -> Any:
                return cm.__exit__(*exc)

        return Cm()

    try:
        s = Sequencer(store=ledger, relay=None)
        ledger.group = group_killed_before_commit  # type: ignore[method-assign]
        out = s.commit_group([request(k, i) for i, k in enumerate(KINDS)])
        assert all(isinstance(o, Unavailable) for o in out)
        ledger.group = real_group  # type: ignore[method-assign]
        with pg_server.connect(database=database) as su:
            cur = su.cursor()
            cur.execute("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM outbox)")
            assert cur.fetchone() == [0, 0]
            cur.execute("SELECT count(*) FROM idempotency_keys")
            assert cur.fetchone()[0] == 0
        again = s.commit_group([request(k, i) for i, k in enumerate(KINDS)])
        assert [o.entries[0].seq for o in again if isinstance(o, Sequenced)] == [0, 1, 2]
    finally:
        pool.dispose()


GROUP = 8


@pytest.fixture
def long_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic groups: the first request waits up to 10 s, until GROUP are pending."""
    monkeypatch.setenv("PROVENIQ_GROUP_COMMIT_WAIT_MS", "10000")
    monkeypatch.setenv("PROVENIQ_GROUP_COMMIT_MAX", str(GROUP))


def test_one_refused_request_of_an_http_group(long_groups: None, stack: Any) -> None:
    from proveniq.app.runtime import runtime

    key = stack.keys["acme:MEMBER"]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    r = requests.post(
        stack.base + "/v1/events:batch",  # on its own: 32 events are more than a group takes
        data=json.dumps(
            {
                "events": [{"type": "asset.created", "subject": "ast_1"}]
                + [{"type": "claim.note", "subject": f"pad_{i}"} for i in range(31)]
            }
        ),
        headers=headers,
        timeout=30,
    )
    assert r.status_code == 201, r.text
    barrier = threading.Barrier(GROUP)
    answers: dict[int, requests.Response] = {}

    def one(i: int) -> None:
        body = (
            {"type": "asset.sold", "subject": "ast_1"}  # DRAFT -> SOLD: refused
            if i == 3
            else {"type": "claim.note", "subject": f"w{i}", "payload": {"i": i}}
        )
        h = {**headers, "Idempotency-Key": f"g-{i}"} if i % 2 else headers
        barrier.wait()
        answers[i] = requests.post(
            stack.base + "/v1/events?wait=proof&timeout=0.5"
            if i == 6
            else stack.base + "/v1/events",
            data=json.dumps(body),
            headers=h,
            timeout=60,
        )

    committer = runtime().sequencer.committer
    assert committer is not None
    committer.adaptive = False  # the first request waits for the others, whatever came before
    before = committer.groups
    threads = [threading.Thread(target=one, args=(i,)) for i in range(GROUP)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert committer.groups == before + 1 and committer.largest == GROUP  # one group of 8
    assert answers[3].status_code == 409
    assert answers[3].json()["error"]["code"] == "INVALID_TRANSITION"
    ok = {i: a.json()["data"] for i, a in answers.items() if i != 3}
    assert all(answers[i].status_code == 201 for i in ok), [a.text for a in answers.values()]
    assert sorted(d["seq"] for d in ok.values()) == list(range(32, 32 + GROUP - 1))
    assert ok[6]["proof_status"] in ("pending", "sealed")  # ?wait=proof in a group
    with stack.superuser() as conn:
        check_log(conn)
        cur = conn.cursor()
        cur.execute("SELECT count(DISTINCT xmin::text) FROM events WHERE seq >= 32")
        assert cur.fetchone()[0] == 1  # one transaction
        cur.execute("SELECT count(*) FROM idempotency_keys")
        assert cur.fetchone()[0] == 3  # g-1, g-5, g-7 (g-3 was refused: not recorded)
    # a replay of a grouped idempotent request answers with the recorded response
    again = requests.post(
        stack.base + "/v1/events",
        data=json.dumps({"type": "claim.note", "subject": "w1", "payload": {"i": 1}}),
        headers={**headers, "Idempotency-Key": "g-1"},
        timeout=30,
    )
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["data"]["seq"] == ok[1]["seq"]

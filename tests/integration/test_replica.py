"""Reads off a read replica: writes on the primary, proofs on a real streaming replica
(`pg_basebackup -R` of the embedded server), no wrong answer while it lags.

The replica is made to lag deterministically: `pg_wal_replay_pause()` on the standby, writes and
a seal on the primary, reads through get_proof over HTTP, then `pg_wal_replay_resume()`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from proveniq.app.runtime import Runtime, runtime
from proveniq.errors import NotFound
from proveniq.ledger.replica import ReplicaReader
from proveniq.log import proof
from proveniq.log.bundle import Bundle, verify_bundle
from proveniq.settings import Settings
from tests.conftest import LiveStack, _live_stack
from tests.integration.test_seal_prove import append
from tests.integration.test_seal_prove import get as get_as


@pytest.fixture(scope="module")
def pg_standby(pg_server: Any) -> Iterator[Any]:
    """A hot standby of the session's embedded server, stopped at the end of the module."""
    from proveniq.adapters.local import postgres

    data = Path("/tmp") / f"proveniq-test-standby-{os.getpid()}"
    shutil.rmtree(data, ignore_errors=True)
    standby = postgres.start_standby(pg_server, data)
    try:
        yield standby
    finally:
        postgres.stop(data)
        shutil.rmtree(data, ignore_errors=True)


def caught_up(pg_server: Any, standby: Any) -> None:
    from proveniq.adapters.local import postgres

    postgres.wait_replayed(pg_server, standby, timeout=30)


def standby_sql(standby: Any, sql: str, database: str = "postgres") -> Any:
    conn = standby.connect(database=database)
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


@pytest.fixture
def replica_stack(
    database: str,
    pg_server: Any,
    pg_standby: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[LiveStack]:
    """The gateway over real HTTP with PROVENIQ_READ_REPLICA_URL pointing at the standby."""
    caught_up(pg_server, pg_standby)  # CREATE DATABASE replayed
    monkeypatch.setenv(
        "PROVENIQ_READ_REPLICA_URL", pg_standby.url(user="proveniq_app", database=database)
    )
    monkeypatch.setenv("PROVENIQ_READ_REPLICA_POOL_SIZE", "4")
    paused = False

    def pause() -> None:
        nonlocal paused
        standby_sql(pg_standby, "SELECT pg_wal_replay_pause()")
        paused = True

    def resume() -> None:
        nonlocal paused
        standby_sql(pg_standby, "SELECT pg_wal_replay_resume()")
        paused = False
        caught_up(pg_server, pg_standby)

    try:
        for live in _live_stack(database, pg_server, monkeypatch, tmp_path, followers=False):
            live.pause, live.resume = pause, resume  # type: ignore[attr-defined]
            yield live
    finally:
        if paused:  # never leave the standby paused: the database drop must replay
            standby_sql(pg_standby, "SELECT pg_wal_replay_resume()")


def write(stack: LiveStack, n: int, subject: str) -> list[dict[str, Any]]:
    return append(stack, n, stack.keys["acme:MEMBER"], subject)


def sealed_and_replayed(
    stack: LiveStack, pg_server: Any, standby: Any, n: int, subject: str
) -> list[dict[str, Any]]:
    """`n` events written on the primary, sealed, and replayed by the standby."""
    events = write(stack, n, subject)
    assert runtime().integrator.integrate_and_publish() is not None
    caught_up(pg_server, standby)
    return events


def get(stack: LiveStack, path: str, **headers: str) -> requests.Response:
    return get_as(stack, path, stack.keys["acme:MEMBER"], **headers)


def reader() -> ReplicaReader:
    reads = runtime().reads
    assert reads is not None and reads.reader is not None
    return reads.reader


def verified_bundle(r: requests.Response) -> Bundle:
    assert r.status_code == 200, r.text
    bundle = Bundle.from_json(r.json()["data"])
    verify_bundle(bundle, runtime().verifiers())  # raises on a wrong path or checkpoint
    return bundle


def primary_sizes(stack: LiveStack) -> set[int]:
    with stack.superuser() as conn:
        cur = conn.cursor()
        cur.execute("SELECT size FROM checkpoints")
        return {s for (s,) in cur.fetchall()}


def test_writes_on_primary_proofs_on_replica_no_wrong_answer_while_it_lags(
    replica_stack: LiveStack, pg_server: Any, pg_standby: Any
) -> None:
    stack = replica_stack
    old = sealed_and_replayed(stack, pg_server, pg_standby, 5, "clm_old")

    # caught up: every read is the replica's
    base = sum(reader().fallbacks.values())
    b = verified_bundle(get(stack, f"/v1/events/{old[2]['id']}/proof"))
    assert b.tree_size == 5
    assert (
        get(stack, "/v1/checkpoints/latest", Accept="application/json").json()["data"]["tree_size"]
        == 5
    )
    assert sum(reader().fallbacks.values()) == base

    # the replica lags: paused, then writes and a seal on the primary
    stack.pause()  # type: ignore[attr-defined]
    new = write(stack, 7, "clm_new")
    assert runtime().integrator.integrate_and_publish() is not None
    db = stack.database
    assert standby_sql(pg_standby, "SELECT count(*) FROM events", db) == [(5,)]
    assert standby_sql(pg_standby, "SELECT max(size) FROM checkpoints", db) == [(5,)]
    assert primary_sizes(stack) == {5, 12}

    # an event only the primary has: found, and proven against the primary's checkpoint
    # (never a 404, never "pending" because the replica's checkpoint is older)
    assert get(stack, f"/v1/events/{new[0]['id']}").status_code == 200
    for ev in new:
        b = verified_bundle(get(stack, f"/v1/events/{ev['id']}/proof"))
        assert b.tree_size == 12 and b.leaf_index == ev["seq"]
    leaf = new[-1]["leaf_hash"]
    assert get(stack, f"/v1/leaves/{leaf}").status_code == 200
    # the latest checkpoint never goes back to one the replica has while a newer was served
    latest = get(stack, "/v1/checkpoints/latest", Accept="application/json").json()["data"]
    assert latest["tree_size"] == 12
    # an old event: a valid bundle, in a checkpoint the primary has
    b = verified_bundle(get(stack, f"/v1/events/{old[0]['id']}/proof"))
    assert b.tree_size in primary_sizes(stack)
    # a checkpoint the replica lacks, pinned bundles and consistency up to it
    assert get(stack, "/v1/checkpoints/12").status_code == 200
    b = verified_bundle(get(stack, f"/v1/events/{old[1]['id']}/proof?tree_size=12"))
    assert b.tree_size == 12
    r = get(stack, "/v1/proofs/consistency?from=5&to=12")
    assert r.status_code == 200, r.text
    with stack.superuser() as conn:
        from proveniq.adapters.postgres.ledger import CursorView

        expected = proof.consistency_proof(CursorView(conn.cursor()).nodes, 5, 12)
    assert r.json()["data"]["proof"] == [h.hex() for h in expected]
    # listings include what the replica lacks
    history = get(stack, "/v1/subjects/clm_new/history").json()["data"]
    assert [e["id"] for e in history] == [e["id"] for e in new]
    page = get(stack, "/v1/checkpoints").json()["data"]
    assert [c["tree_size"] for c in page] == [12, 5]
    page = get(stack, "/v1/checkpoints?limit=1&cursor=12").json()["data"]
    assert [c["tree_size"] for c in page] == [5]
    batch = requests.post(
        stack.base + "/v1/proofs:batch",
        json={"ids": [new[3]["id"], old[3]["id"]]},
        timeout=30,
        headers={"Authorization": f"Bearer {stack.keys['acme:MEMBER']}"},
    ).json()["data"]["results"]
    assert [x["status"] for x in batch] == ["ok", "ok"]
    # nodes the replica lacks (a checkpoint known from elsewhere, e.g. a cache): the primary's
    last = verified_bundle(get(stack, f"/v1/events/{new[-1]['id']}/proof"))
    before = reader().fallbacks["nodes"]
    with reader().snapshot() as view:
        path = proof.inclusion_proof(view.nodes, last.leaf_index, 12)
    assert path == list(last.inclusion_path)
    assert reader().fallbacks["nodes"] == before + 1
    # still lagging: the answers above came from the primary
    assert standby_sql(pg_standby, "SELECT count(*) FROM events", db) == [(5,)]
    lagging = sum(reader().fallbacks.values())
    assert lagging > base
    # (checkpoint 12 itself came from the primary: by fallback, or announced by the watch,
    # which follows the primary's seals, into the proofs' checkpoint cache)
    assert reader().fallbacks["event"] > 0

    # caught up again: the same answers, all from the replica
    stack.resume()  # type: ignore[attr-defined]
    for ev in (*new, *old):
        b = verified_bundle(get(stack, f"/v1/events/{ev['id']}/proof"))
        assert b.tree_size == 12
    assert get(stack, "/v1/checkpoints/12").status_code == 200
    assert get(stack, "/v1/proofs/consistency?from=5&to=12").json()["data"]["proof"] == [
        h.hex() for h in expected
    ]
    assert get(stack, f"/v1/leaves/{leaf}").status_code == 200
    latest = get(stack, "/v1/checkpoints/latest", Accept="application/json").json()["data"]
    assert latest["tree_size"] == 12
    assert sum(reader().fallbacks.values()) == lagging


def test_pending_on_the_primary_stays_pending_and_unknown_ids_are_404(
    replica_stack: LiveStack, pg_server: Any, pg_standby: Any
) -> None:
    stack = replica_stack
    sealed_and_replayed(stack, pg_server, pg_standby, 3, "clm_a")
    stack.pause()  # type: ignore[attr-defined]
    unsealed = write(stack, 2, "clm_b")  # acknowledged, not yet sealed anywhere
    r = get(stack, f"/v1/events/{unsealed[0]['id']}/proof")
    assert r.status_code == 202, r.text
    assert get(stack, f"/v1/events/evt_{'0' * 32}").status_code == 404
    assert get(stack, f"/v1/events/evt_{'0' * 32}/proof").status_code == 404
    # sealed while the replica is paused: the next poll proves it against the primary
    assert runtime().integrator.integrate_and_publish() is not None
    b = verified_bundle(get(stack, f"/v1/events/{unsealed[1]['id']}/proof"))
    assert b.tree_size == 5
    stack.resume()  # type: ignore[attr-defined]


def test_wait_on_the_replica_is_woken_by_the_primarys_seal(
    replica_stack: LiveStack, pg_server: Any, pg_standby: Any
) -> None:
    """`?wait=` on get_proof (replica reads) is woken by the primary's seal while the replica
    lags, and answers with the primary's checkpoint, not 202 at the deadline."""
    import threading
    import time

    stack = replica_stack
    reads = runtime().reads
    assert reads is not None and reads.proofs.awaiter is runtime().proofs.awaiter  # one watch
    sealed_and_replayed(stack, pg_server, pg_standby, 2, "clm_w")
    stack.pause()  # type: ignore[attr-defined]
    unsealed = write(stack, 1, "clm_w")
    answer: dict[str, Any] = {}

    def waiter() -> None:
        started = time.monotonic()
        answer["r"] = get(stack, f"/v1/events/{unsealed[0]['id']}/proof?wait=20")
        answer["s"] = time.monotonic() - started

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.5)
    assert t.is_alive()  # still waiting: nothing sealed it yet
    assert runtime().integrator.integrate_and_publish() is not None
    t.join(timeout=15)
    assert not t.is_alive()
    b = verified_bundle(answer["r"])
    assert b.tree_size == 3
    assert answer["s"] < 10  # woken by the seal, long before the 20 s deadline
    assert standby_sql(pg_standby, "SELECT count(*) FROM events", stack.database) == [(2,)]
    stack.resume()  # type: ignore[attr-defined]


def test_replica_down_reads_go_to_the_primary(database: str, pg_server: Any) -> None:
    settings = Settings(
        database_url=pg_server.url(user="proveniq_app", database=database),
        read_replica_url=f"postgresql://proveniq_app@/{database}?unix_sock=/tmp/no-such-socket",
    )
    from proveniq.app.metrics import metrics

    def counted() -> float:
        value = metrics().registry.get_sample_value(
            "ledger_replica_fallbacks_total", {"reason": "unavailable"}
        )
        return value or 0.0

    before = counted()
    rt = Runtime.build(settings)
    try:
        assert rt.reads is not None and rt.reads.reader is not None
        with pytest.raises(NotFound):
            rt.reads.queries.event(None, f"evt_{'1' * 32}")
        assert rt.reads.reader.fallbacks["unavailable"] == 1
        with pytest.raises(NotFound):
            rt.reads.proofs.checkpoint()  # skipped during the cooldown, answered by the primary
        assert rt.reads.reader.fallbacks["unavailable"] == 2
        assert counted() == before + 2  # ledger_replica_fallbacks_total{reason="unavailable"}
    finally:
        rt.pool.dispose()
        rt.reads.pool.dispose()  # type: ignore[union-attr]


def test_without_a_replica_url_reads_stay_on_the_primary() -> None:
    assert not Settings().read_replica
    assert Settings(read_replica_url="").read_replica_url is None
    assert Settings(read_replica_url="postgresql://x@/y").read_replica


def test_replica_connections_dropped_mid_use_fall_back_to_the_primary(
    replica_stack: LiveStack, pg_server: Any, pg_standby: Any
) -> None:
    stack = replica_stack
    events = sealed_and_replayed(stack, pg_server, pg_standby, 4, "clm_c")
    verified_bundle(get(stack, f"/v1/events/{events[0]['id']}/proof"))  # pooled replica conns
    killed = standby_sql(
        pg_standby,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        stack.database,
    )
    assert killed[0][0] >= 1
    before = reader().fallbacks["unavailable"]
    for ev in events:  # every answer right, none a 5xx (the stack fixture checks that too)
        assert verified_bundle(get(stack, f"/v1/events/{ev['id']}/proof")).tree_size == 4
    assert reader().fallbacks["unavailable"] > before

"""The log's tables in PostgreSQL: events, outbox, subject state, idempotency records, tree
nodes and checkpoints. Every SQL statement over them lives here.

Sequencing takes `pg_advisory_xact_lock` and reads the tail in one function call
(`ledger_lock_tail`: two statements, so the tail is read after the lock is granted - see
FIELD-NOTES); integration takes its own advisory lock. Reads run in one transaction per view.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from proveniq.adapters.postgres.pool import Pool
from proveniq.log.chain import Tail
from proveniq.log.entry import Entry
from proveniq.log.integrate import NodeId
from proveniq.log.timefmt import format_time
from proveniq.ports import (
    EventFilter,
    Idempotency,
    StoredCheckpoint,
    StoredEvent,
    StoredResponse,
)

LEDGER_LOCK_KEY = 0x50524F56454E4951  # "PROVENIQ"
INTEGRATION_LOCK_KEY = 0x5345414C50525651  # "SEALPRVQ"
COPY_THRESHOLD = 32  # batches at least this large are written with COPY
EVENT_COLUMNS = (
    "seq, id, tenant, type, subject, payload_hash, payload, occurred_at, recorded_at, prev, "
    "leaf_hash, actor"
)


class PostgresLedger:
    """SequencingStore, LedgerReader, IntegrationStore, Outbox and AuditSource over one pool."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    # ---- sequencing ------------------------------------------------------------------------

    @contextmanager
    def sequencing(self) -> Iterator[_SequencingTx]:
        with self.pool.transaction() as cur:
            yield _SequencingTx(cur)

    def stored_response(self, tenant: str, key: str) -> tuple[bytes, StoredResponse] | None:
        with self.pool.transaction() as cur:
            cur.execute(
                "SELECT request_hash, status, response FROM idempotency_keys "
                "WHERE tenant = %s AND key = %s",
                (tenant, key),
            )
            row = cur.fetchone()
        if row is None:
            return None
        return bytes(row[0]), StoredResponse(status=row[1], body=bytes(row[2]))

    # ---- reads -----------------------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[CursorView]:
        with self.pool.transaction() as cur:
            yield CursorView(cur)

    # ---- integration -----------------------------------------------------------------------

    @contextmanager
    def integration(self) -> Iterator[_IntegrationTx]:
        with self.pool.transaction() as cur:
            yield _IntegrationTx(cur)

    # ---- outbox ----------------------------------------------------------------------------

    def unrelayed(self, *, limit: int, min_age_seconds: float) -> list[StoredEvent]:
        with self.pool.transaction() as cur:
            cur.execute(
                f"SELECT {', '.join('e.' + c.strip() for c in EVENT_COLUMNS.split(','))} "  # noqa: S608
                "FROM outbox o JOIN events e USING (seq) WHERE o.published_at IS NULL "
                "AND e.recorded_at <= now() - make_interval(secs => %s) "
                "ORDER BY o.seq LIMIT %s",
                (float(min_age_seconds), limit),
            )
            return [stored_event(r) for r in cur.fetchall()]

    def mark_relayed(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        with self.pool.transaction() as cur:
            # Losing this mark in a crash only means a re-send (delivery is at least once),
            # so it need not wait for its WAL flush like the append itself does.
            cur.execute("SET LOCAL synchronous_commit TO off")
            cur.execute(
                "UPDATE outbox SET published_at = now() WHERE seq = ANY(%s) "
                "AND published_at IS NULL",
                (list(seqs),),
            )

    def backlog(self) -> int:
        with self.pool.transaction() as cur:
            cur.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            return int(cur.fetchone()[0])

    # ---- audit -----------------------------------------------------------------------------

    @contextmanager
    def audit_snapshot(self) -> Iterator[CursorAuditView]:
        with self.pool.transaction() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield CursorAuditView(cur)


class _SequencingTx:
    def __init__(self, cur: Any) -> None:
        self.cur = cur

    def lock_tail(self) -> tuple[Tail, datetime]:
        self.cur.execute(
            "SELECT size, leaf_hash, recorded_at FROM ledger_lock_tail(%s)", (LEDGER_LOCK_KEY,)
        )
        size, tail_hash, recorded_at = self.cur.fetchone()
        return Tail(size=size, leaf_hash=bytes(tail_hash)), recorded_at

    def subject_statuses(self, tenant: str, subjects: Sequence[str]) -> dict[str, str]:
        self.cur.execute(
            "SELECT subject, status FROM subject_state WHERE tenant = %s AND subject = ANY(%s)",
            (tenant, list(subjects)),
        )
        return {s: st for s, st in self.cur.fetchall()}

    def insert(self, entries: Sequence[Entry], payloads: Sequence[bytes], actor: str) -> None:
        if len(entries) >= COPY_THRESHOLD:
            copy_insert(self.cur, entries, payloads, actor)
        else:
            values_insert(self.cur, entries, payloads, actor)

    def save_statuses(self, tenant: str, statuses: Mapping[str, tuple[str, int]]) -> None:
        rows = ", ".join(["(%s, %s, %s, %s)"] * len(statuses))
        params: list[Any] = []
        for subject, (status, seq) in statuses.items():
            params += [tenant, subject, status, seq]
        self.cur.execute(
            f"INSERT INTO subject_state (tenant, subject, status, last_seq) VALUES {rows} "  # noqa: S608
            "ON CONFLICT (tenant, subject) DO UPDATE "
            "SET status = EXCLUDED.status, last_seq = EXCLUDED.last_seq",
            params,
        )

    def save_response(self, tenant: str, idem: Idempotency, response: StoredResponse) -> bool:
        self.cur.execute(
            "INSERT INTO idempotency_keys (tenant, key, request_hash, status, response) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (tenant, idem.key, idem.request_hash, response.status, response.body),
        )
        return self.cur.fetchone() is not None

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self.cur.execute("SAVEPOINT request")
        try:
            yield
        except BaseException:
            self.cur.execute("ROLLBACK TO SAVEPOINT request")
            raise
        self.cur.execute("RELEASE SAVEPOINT request")


class _Nodes:
    cur: Any

    def nodes(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        if not ids:
            return {}
        self.cur.execute(
            "SELECT n.level, n.idx, n.hash FROM tree_nodes n "
            "JOIN unnest(%s::int[], %s::bigint[]) AS want(level, idx) "
            "ON n.level = want.level AND n.idx = want.idx",
            ([i[0] for i in ids], [i[1] for i in ids]),
        )
        return {(lv, ix): bytes(h) for lv, ix, h in self.cur.fetchall()}

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        self.cur.execute("SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1")
        return _checkpoint(self.cur.fetchone())


class CursorView(_Nodes):
    def __init__(self, cur: Any) -> None:
        self.cur = cur

    def event(self, tenant: str | None, event_id: str) -> StoredEvent | None:
        return self._one("id", event_id, tenant)

    def event_by_leaf(self, tenant: str | None, leaf_hash: bytes) -> StoredEvent | None:
        return self._one("leaf_hash", leaf_hash, tenant)

    def _one(self, column: str, value: Any, tenant: str | None) -> StoredEvent | None:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE {column} = %s"  # noqa: S608
        params: list[Any] = [value]
        if tenant is not None:
            sql += " AND tenant = %s"
            params.append(tenant)
        self.cur.execute(sql, params)
        row = self.cur.fetchone()
        return None if row is None else stored_event(row)

    def events(self, f: EventFilter) -> list[StoredEvent]:
        where, params = ["true"], []
        for clause, value in (
            ("tenant = %s", f.tenant),
            ("type = %s", f.event_type),
            ("subject = %s", f.subject),
            ("recorded_at >= %s", f.since),
            ("recorded_at < %s", f.until),
            ("seq > %s", f.after_seq),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        params.append(f.limit)
        self.cur.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} "  # noqa: S608
            "ORDER BY seq LIMIT %s",
            params,
        )
        return [stored_event(r) for r in self.cur.fetchall()]

    def checkpoint(self, size: int) -> StoredCheckpoint | None:
        self.cur.execute("SELECT size, root, note FROM checkpoints WHERE size = %s", (size,))
        return _checkpoint(self.cur.fetchone())

    def checkpoints_page(self, *, before: int | None, limit: int) -> list[StoredCheckpoint]:
        self.cur.execute(
            "SELECT size, root, note FROM checkpoints WHERE size < %s ORDER BY size DESC LIMIT %s",
            (before if before is not None else 2**62, limit),
        )
        return [
            StoredCheckpoint(size=r[0], root=bytes(r[1]), note=r[2]) for r in self.cur.fetchall()
        ]


class _IntegrationTx(_Nodes):
    def __init__(self, cur: Any) -> None:
        self.cur = cur

    def lock(self) -> None:
        self.cur.execute("SELECT pg_advisory_xact_lock(%s)", (INTEGRATION_LOCK_KEY,))

    def leaves(self, start: int, limit: int) -> list[tuple[int, bytes]]:
        self.cur.execute(
            "SELECT seq, leaf_hash FROM events WHERE seq >= %s ORDER BY seq LIMIT %s",
            (start, limit),
        )
        return [(r[0], bytes(r[1])) for r in self.cur.fetchall()]

    def write_nodes(self, nodes: Mapping[NodeId, bytes]) -> None:
        items = iter(nodes.items())  # chunk by chunk: no list of a whole batch's nodes
        while chunk := list(itertools.islice(items, 5000)):
            self.cur.execute(
                "INSERT INTO tree_nodes (level, idx, hash) "
                "SELECT * FROM unnest(%s::smallint[], %s::bigint[], %s::bytea[])",
                ([k[0] for k, _ in chunk], [k[1] for k, _ in chunk], [v for _, v in chunk]),
            )

    def recorded_at(self, seqs: Sequence[int]) -> list[datetime]:
        self.cur.execute(
            "SELECT recorded_at FROM events WHERE seq = ANY(%s) ORDER BY seq", (list(seqs),)
        )
        return [r[0] for r in self.cur.fetchall()]

    def save_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        self.cur.execute(
            "INSERT INTO checkpoints (size, root, note) VALUES (%s, %s, %s)",
            (checkpoint.size, checkpoint.root, checkpoint.note),
        )


class CursorAuditView(_Nodes):
    def __init__(self, cur: Any) -> None:
        self.cur = cur

    def events_from(self, seq: int, limit: int) -> list[StoredEvent]:
        self.cur.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq >= %s ORDER BY seq LIMIT %s",  # noqa: S608
            (seq, limit),
        )
        return [stored_event(r) for r in self.cur.fetchall()]

    def nodes_in(self, ranges: Sequence[tuple[int, int, int]]) -> list[tuple[NodeId, bytes]]:
        if not ranges:
            return []
        # LATERAL: one primary-key range scan per level, never a scan of the whole table.
        self.cur.execute(
            "SELECT r.level, n.idx, n.hash "
            "FROM unnest(%s::smallint[], %s::bigint[], %s::bigint[]) AS r(level, lo, hi) "
            "CROSS JOIN LATERAL (SELECT idx, hash FROM tree_nodes "
            "WHERE level = r.level AND idx >= r.lo AND idx < r.hi) n",
            ([r[0] for r in ranges], [r[1] for r in ranges], [r[2] for r in ranges]),
        )
        return [((lv, ix), bytes(h)) for lv, ix, h in self.cur.fetchall()]

    def nodes_from(self, level: int, idx: int, limit: int) -> list[tuple[int, bytes]]:
        self.cur.execute(
            "SELECT idx, hash FROM tree_nodes WHERE level = %s AND idx >= %s ORDER BY idx LIMIT %s",
            (level, idx, limit),
        )
        return [(ix, bytes(h)) for ix, h in self.cur.fetchall()]

    def checkpoints_after(self, size: int, limit: int) -> list[StoredCheckpoint]:
        self.cur.execute(
            "SELECT size, root, note FROM checkpoints WHERE size > %s ORDER BY size LIMIT %s",
            (size, limit),
        )
        return [
            StoredCheckpoint(size=r[0], root=bytes(r[1]), note=r[2]) for r in self.cur.fetchall()
        ]


def _checkpoint(row: Any) -> StoredCheckpoint | None:
    return None if row is None else StoredCheckpoint(size=row[0], root=bytes(row[1]), note=row[2])


def _row(e: Entry, payload: bytes, actor: str) -> tuple[Any, ...]:
    """One events row, in EVENT_COLUMNS order."""
    return (
        e.seq,
        e.id,
        e.tenant,
        e.type,
        e.subject,
        e.payload_hash,
        payload,
        e.occurred_at,
        e.recorded_at,
        e.prev,
        e.leaf_hash(),
        actor,
    )


def values_insert(
    cur: Any, entries: Sequence[Entry], payloads: Sequence[bytes], actor: str
) -> None:
    """Small batches: one multi-row INSERT ... VALUES, outbox rows in the same statement."""
    rows = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(entries))
    params: list[Any] = []
    for e, payload in zip(entries, payloads, strict=True):
        params += _row(e, payload, actor)
    cur.execute(
        f"WITH ev AS (INSERT INTO events ({EVENT_COLUMNS}) VALUES {rows} RETURNING seq) "  # noqa: S608
        "INSERT INTO outbox (seq) SELECT seq FROM ev",
        params,
    )


def copy_insert(cur: Any, entries: Sequence[Entry], payloads: Sequence[bytes], actor: str) -> None:
    """Large batches: COPY FROM STDIN (text format) is 1.3-1.6x faster than multi-row VALUES
    and skips pg8000's per-execute rewrite of a long parameterised statement."""
    out = io.BytesIO()
    for e, payload in zip(entries, payloads, strict=True):
        fields = _row(e, payload, actor)
        out.write(b"\t".join(_copy_field(v) for v in fields) + b"\n")
    cur.execute(f"COPY events ({EVENT_COLUMNS}) FROM STDIN", stream=io.BytesIO(out.getvalue()))
    cur.execute(
        "INSERT INTO outbox (seq) SELECT generate_series(%s::bigint, %s::bigint)",
        (entries[0].seq, entries[-1].seq),
    )


def _copy_field(v: Any) -> bytes:
    if v is None:
        return b"\\N"
    if isinstance(v, bytes):
        return b"\\\\x" + v.hex().encode()
    if isinstance(v, datetime):
        return format_time(v).encode()
    if isinstance(v, int):
        return str(v).encode()
    text = str(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    return text.replace("\r", "\\r").encode()


def stored_event(row: Sequence[Any]) -> StoredEvent:
    """A row of `SELECT {EVENT_COLUMNS}`; the entry's leaf hash is NOT taken from the row (it
    is recomputed on demand); the stored one is kept apart for audits."""
    seq, eid, tenant, etype, subject, ph, payload, occurred, recorded, prev, leaf, actor = row
    entry = Entry(
        seq=seq,
        id=eid,
        tenant=tenant,
        type=etype,
        subject=subject,
        payload_hash=bytes(ph),
        occurred_at=occurred,
        recorded_at=recorded,
        prev=bytes(prev),
    )
    return StoredEvent(
        entry=entry,
        payload=None if payload is None else bytes(payload),
        actor=actor,
        stored_leaf=bytes(leaf),
    )

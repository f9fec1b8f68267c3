"""Prepared hot statements (adapters/postgres/statements.py) against real PostgreSQL: the same
rows and errors as cursor.execute, one preparation per connection, atomic on their own."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from proveniq.adapters.postgres import statements
from proveniq.adapters.postgres.ledger import EVENT_COLUMNS, copy_insert, stored_event
from proveniq.adapters.postgres.pool import Pool, url_connector
from proveniq.errors import ValidationError
from proveniq.log.chain import Draft, Tail, link

SQL = "SELECT %s::int + 1, %s::text, '100%%'"


@pytest.fixture
def pool(pg_server: Any, database: str) -> Iterator[Pool]:
    p = Pool(url_connector(pg_server.url(user="proveniq_app", database=database)), size=1)
    yield p
    p.dispose()


def test_rows_equal_cursor_execute_and_prepare_once(pool: Pool) -> None:
    with pool.transaction() as cur:
        cur.execute(SQL, (41, "x"))
        expected = cur.fetchall()
    for _ in range(3):
        with pool.connection() as conn:
            assert statements.rows(conn, SQL, (41, "x")) == [list(r) for r in expected]
            assert not conn.dbapi_connection._in_transaction  # committed at its Sync
            assert len(conn.dbapi_connection._proveniq_prepared) == 1
    with pool.transaction() as cur:
        cur.execute(SQL, (1, None))
        plain = cur.fetchall()
        statements.execute(cur, SQL, (1, None))
        assert cur.fetchone() == plain[0] and plain[0][:2] == [2, None]
        assert cur.fetchone() is None


def test_execute_joins_the_cursor_transaction(pool: Pool) -> None:
    insert = "INSERT INTO rate_buckets (bucket, tokens, updated_at) VALUES (%s, 1, now())"
    with pytest.raises(ValidationError), pool.transaction() as cur:
        statements.execute(cur, insert, ("rolled-back",))
        raise ValidationError("roll back", field="x")  # ours: the connection is kept
    with pool.transaction() as cur:
        statements.execute(cur, insert, ("committed",))
    with pool.connection() as conn:
        rows = statements.rows(conn, "SELECT bucket FROM rate_buckets ORDER BY bucket", ())
        assert rows == [["committed"]]
        assert len(conn.dbapi_connection._proveniq_prepared) == 2  # the same connection


def test_server_errors_translate_and_leave_the_connection_usable(pool: Pool) -> None:
    with pytest.raises(ValidationError), pool.connection() as conn:
        statements.rows(conn, "SELECT %s::int", ("not a number",))
    with pool.connection() as conn:
        assert statements.rows(conn, "SELECT %s::int", ("7",)) == [[7]]


def test_past_the_limit_statements_run_unnamed(pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statements, "MAX_PREPARED", 1)
    with pool.connection() as conn:
        assert statements.rows(conn, "SELECT 1 WHERE %s", (True,)) == [[1]]
        assert statements.rows(conn, "SELECT 2 WHERE %s", (True,)) == [[2]]
        assert len(conn.dbapi_connection._proveniq_prepared) == 1
        assert not conn.dbapi_connection.autocommit
    with pool.transaction() as cur:
        statements.execute(cur, "SELECT 3 WHERE %s", (True,))
        assert list(cur.fetchall()) == [[3]]


def test_copy_rows_escape_text_and_round_trip(pool: Pool) -> None:
    """copy_insert's COPY text lines: tabs, newlines, CR and backslashes in text survive."""
    odd = "a\tb\\c\nd\re"
    drafts = [
        Draft(
            id=f"evt_{i:032x}",
            tenant="prt_0000000000000001",
            type="claim.filed",
            subject=odd if i == 1 else f"clm-{i}",
            payload_hash=hashlib.sha256(b"%d" % i).digest(),
            occurred_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC) if i == 2 else None,
        )
        for i in range(3)
    ]
    entries = link(drafts, tail=Tail.empty(), recorded_at=datetime.now(UTC))
    payloads = [b'{"n":%d}' % i for i in range(3)]
    with pool.transaction() as cur:
        copy_insert(cur, entries, payloads, odd)
    with pool.transaction() as cur:
        cur.execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY seq")  # noqa: S608
        stored = [stored_event(r) for r in cur.fetchall()]
    assert [s.entry for s in stored] == entries
    assert [s.payload for s in stored] == payloads
    assert {s.actor for s in stored} == {odd}
    assert [s.stored_leaf for s in stored] == [e.leaf_hash() for e in entries]

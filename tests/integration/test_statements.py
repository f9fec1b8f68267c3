"""Prepared hot statements (adapters/postgres/statements.py) against real PostgreSQL: the same
rows and errors as cursor.execute, one preparation per connection, atomic on their own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from proveniq.adapters.postgres import statements
from proveniq.adapters.postgres.pool import Pool, url_connector
from proveniq.errors import ValidationError

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

"""Hot statements as named prepared statements, one set per connection.

pg8000's DB-API `cursor.execute` rescans the SQL text character by character on every call
(its `%s` -> `$n` conversion: ~0.2 ms for a 12-column multi-row INSERT) and runs each statement
unnamed, which costs three round trips (Parse+Sync, Describe+Sync, Bind+Execute+Sync); its
`commit()` is three more. Here a statement's text is converted once per process and prepared
once per connection; each later call is one round trip (Bind+Execute+Sync) with the same
parameter encoding, the same server-side type inference (no parameter types are declared,
exactly as for an unnamed statement) and the same errors.

    rows(conn, sql, params)       one statement on its own, outside any transaction block: the
                                  server runs it in an implicit transaction committed at its
                                  Sync (as durable as BEGIN/COMMIT around it), one round trip
    execute(cur, sql, params)     inside the cursor's DB-API transaction (BEGIN sent first if
                                  none is open); the cursor then reads as after cur.execute

Only for statements run on every request (bounded in number: a fixed text, or one text per
small row count): each distinct text stays prepared for the connection's lifetime.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pg8000.dbapi
from pg8000.converters import make_params

_ATTR = "_proveniq_prepared"
MAX_PREPARED = 256  # per connection; past it, statements run unnamed (as cursor.execute)
Prepared = tuple[str, bytes, Any, Any]  # $n text, statement name, columns, input functions


@functools.lru_cache(maxsize=1024)
def _numbered(sql: str) -> str:
    """`%s` placeholders as `$1, $2, ...` (pg8000's own conversion, done once per text)."""
    statement: str = pg8000.dbapi.convert_paramstyle("format", sql, ())[0]
    return statement


def _prepared(conn: Any, sql: str) -> Prepared | None:
    """`sql` prepared on the pg8000 connection `conn` (None past MAX_PREPARED)."""
    cache: dict[str, Prepared] | None = getattr(conn, _ATTR, None)
    if cache is None:
        cache = {}
        setattr(conn, _ATTR, cache)
    ps = cache.get(sql)
    if ps is None and len(cache) < MAX_PREPARED:
        text = _numbered(sql)
        name, columns, input_funcs = conn.prepare_statement(text, ())
        funcs = [
            _timestamptz if c.get("type_oid") == TIMESTAMPTZ_OID else f
            for c, f in zip(columns or (), input_funcs or (), strict=True)
        ]
        ps = cache[sql] = (text, name, columns, funcs)
    return ps


TIMESTAMPTZ_OID = 1184


def _timestamptz(text: str) -> Any:
    """pg8000's timestamptz parser goes through strptime (~0.1 ms a value); the server's
    ISO output (UTC session, see pool.prepare_connection) parses with fromisoformat."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        from pg8000.converters import timestamptz_in

        return timestamptz_in(text)


def _run(conn: Any, ps: Prepared, params: Sequence[Any]) -> Any:
    text, name, columns, input_funcs = ps
    return conn.execute_named(name, make_params(conn.py_types, params), columns, input_funcs, text)


def rows(conn: Any, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """The rows of one statement run outside a transaction block on a pooled connection
    (`Pool.connection()`), committed by the server when it completes."""
    raw = getattr(conn, "dbapi_connection", conn)  # the pool's wrapper, or pg8000's own
    if raw._in_transaction:
        raise RuntimeError("statements.rows runs outside a transaction block")
    ps = _prepared(raw, sql)
    if ps is None:
        was = raw.autocommit
        raw.autocommit = True
        try:
            cur = raw.cursor()
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []
        finally:
            raw.autocommit = was
    return list(_run(raw, ps, params).rows or ())


def execute(cur: Any, sql: str, params: Sequence[Any] = ()) -> None:
    """`cur.execute(sql, params)` through a prepared statement of the cursor's connection."""
    conn = cur._c
    ps = _prepared(conn, sql)
    if ps is None:
        cur.execute(sql, params)
        return
    if not conn._in_transaction and not conn.autocommit:
        conn.execute_simple("begin transaction")
    context = _run(conn, ps, params)
    cur._context = context
    cur._row_iter = None if context.rows is None else iter(context.rows)
    cur._input_oids = ()

"""Hot statements as named prepared statements, one set per connection.

pg8000's DB-API `cursor.execute` rescans the SQL text character by character on every call
(its `%s` -> `$n` conversion: ~0.2 ms for a 12-column multi-row INSERT) and runs each statement
unnamed, which costs three round trips (Parse+Sync, Describe+Sync, Bind+Execute+Sync). `execute`
converts a statement's text once per process and prepares it once per connection; each later
call is one round trip (Bind+Execute+Sync) with the same parameter encoding, the same server-side
type inference (no parameter types are declared, exactly as for an unnamed statement) and the
same errors. Afterwards the cursor reads as after `cursor.execute` (`fetchone`, `fetchall`).

Only for statements run on every request (bounded in number: a fixed text, or one text per
small row count): each distinct text stays prepared for the connection's lifetime.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import pg8000.dbapi
from pg8000.converters import make_params

_ATTR = "_proveniq_prepared"  # the same cache (and layout) as ledger.run_prepared
MAX_PREPARED = 256  # per connection; past it, statements run unnamed (as cursor.execute)


@functools.lru_cache(maxsize=1024)
def _numbered(sql: str) -> str:
    """`%s` placeholders as `$1, $2, ...` (pg8000's own conversion, done once per text)."""
    statement: str = pg8000.dbapi.convert_paramstyle("format", sql, ())[0]
    return statement


def execute(cur: Any, sql: str, params: Sequence[Any] = ()) -> None:
    """`cur.execute(sql, params)` through a prepared statement of this connection."""
    conn = cur._c
    prepared: dict[str, tuple[str, bytes, Any, Any]] | None = getattr(conn, _ATTR, None)
    if prepared is None:
        prepared = {}
        setattr(conn, _ATTR, prepared)
    ps = prepared.get(sql)
    if ps is None and len(prepared) >= MAX_PREPARED:
        cur.execute(sql, params)
        return
    if not conn._in_transaction and not conn.autocommit:
        conn.execute_simple("begin transaction")
    if ps is None:
        statement = _numbered(sql)
        name, columns, input_funcs = conn.prepare_statement(statement, ())
        ps = prepared[sql] = (name, columns, input_funcs, statement)
    context = conn.execute_named(ps[0], make_params(conn.py_types, params), ps[1], ps[2], ps[3])
    cur._context = context
    cur._row_iter = None if context.rows is None else iter(context.rows)
    cur._input_oids = ()

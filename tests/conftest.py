"""Shared fixtures: an isolated environment, one embedded PostgreSQL per session with a migrated
template database, a fresh database per test, and the local stack served over real HTTP."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ENV_PREFIXES = (
    "PROVENIQ_",
    "PUBSUB_EMULATOR_HOST",
    "FIREBASE_AUTH_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "GOOGLE_CLOUD_PROJECT",
)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for k in list(os.environ):
        if k.startswith(ENV_PREFIXES):
            monkeypatch.delenv(k)
    # `proveniq serve` started by a test (and its children) must not start a Firestore emulator
    # each: only the projection's own tests use one (they set the variable themselves).
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")
    yield
    from proveniq.app.runtime import release_runtime

    release_runtime()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from proveniq.adapters.local import postgres
    from proveniq.adapters.postgres import pool as db

    data = Path("/tmp") / f"proveniq-test-pg-{os.getpid()}"  # short: Unix socket path limit
    server = postgres.start(data)
    postgres.ensure_database(server, "proveniq_template")
    db.migrate(lambda: server.connect(database="proveniq_template"))
    yield server
    postgres.stop(data)
    import shutil

    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def database(pg_server: Any) -> Iterator[str]:
    """A fresh migrated database (copied from the template); yields its app-role URL."""
    name = f"t_{secrets.token_hex(6)}"
    conn = pg_server.connect()
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}" TEMPLATE proveniq_template')
    conn.close()
    yield name
    conn = pg_server.connect()
    conn.autocommit = True
    conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


class LiveStack:
    def __init__(self, base: str, server: Any, database: str, pg: Any) -> None:
        self.base = base
        self.server = server
        self.database = database
        self.pg = pg
        self.admin_key = ""
        self.keys: dict[str, str] = {}
        self.partners: dict[str, str] = {}
        self.apps: dict[str, Any] = {}

    def superuser(self) -> Any:
        return self.pg.connect(database=self.database)


@pytest.fixture
def stack(
    database: str, pg_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[LiveStack]:
    """The local stack's gateway over real HTTP on 127.0.0.1, with two partners' keys."""
    yield from _live_stack(database, pg_server, monkeypatch, tmp_path, followers=False)


@pytest.fixture
def followed_stack(
    request: pytest.FixtureRequest,
    database: str,
    pg_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[LiveStack]:
    """`stack` plus what `make run` runs beside the gateway: the in-process bus pushing
    `ledger-events` to risk_score and `device-telemetry` to device_ingest, the seal timer, the
    outbox sweep and the webhook worker. Webhook targets on loopback are allowed. Extra
    settings: ``@pytest.mark.stack_env(PROVENIQ_X="...")``."""
    monkeypatch.setenv("PROVENIQ_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    monkeypatch.setenv("PROVENIQ_WEBHOOK_ALLOW_HTTP", "true")
    monkeypatch.setenv("PROVENIQ_SEAL_INTERVAL_MS", "200")
    marker = request.node.get_closest_marker("stack_env")
    for k, v in (marker.kwargs if marker else {}).items():
        monkeypatch.setenv(k, v)
    yield from _live_stack(database, pg_server, monkeypatch, tmp_path, followers=True)


def _live_stack(
    database: str,
    pg_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    *,
    followers: bool,
) -> Iterator[LiveStack]:
    from werkzeug.serving import make_server

    from proveniq.app import localstack
    from proveniq.app.runtime import release_runtime, runtime

    monkeypatch.setenv(
        "PROVENIQ_DATABASE_URL", pg_server.url(user="proveniq_app", database=database)
    )
    monkeypatch.setenv("PROVENIQ_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PROVENIQ_POOL_SIZE", "16")
    apps = localstack.build_apps()
    gateway = localstack.gateway(apps)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    if followers:
        localstack.connect_followers(apps)
        threads = localstack.start_background(stop, apps)
    server_errors: list[str] = []

    def recording(environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: Any, exc_info: Any = None) -> Any:
            if status.startswith("5"):
                server_errors.append(
                    f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}: {status}"
                )
            return start_response(status, headers, exc_info)

        return gateway(environ, start)

    server = make_server(
        "127.0.0.1", 0, recording, threaded=True, request_handler=localstack.AccessLog
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    live = LiveStack(f"http://127.0.0.1:{server.server_port}", server, database, pg_server)
    accounts = runtime().accounts
    admin, _ = accounts.create_key(partner_id=None, org_role=None, global_role="ADMIN")
    live.admin_key = admin.secret
    for name in ("acme", "globex"):
        p = accounts.create_partner(name=name, tier="internal")
        live.partners[name] = p.id
        for role in ("MEMBER", "VIEWER"):
            k, _ = accounts.create_key(partner_id=p.id, org_role=role)
            live.keys[f"{name}:{role}"] = k.secret
    live.apps = apps
    yield live
    stop.set()
    for th in threads:
        th.join(timeout=10)
    server.shutdown()
    server.server_close()
    release_runtime()  # before the database is dropped
    assert not server_errors, f"the stack answered 5xx: {server_errors[:5]}"

"""`make run`: the whole system on one machine.

Embedded PostgreSQL (data under `.proveniq/`), migrations, every built function served by
functions-framework behind one gateway on http://127.0.0.1:8080 with the API Gateway's paths,
the in-process bus for `ledger-events`, the outbox sweep, and a first-run bootstrap that
creates a demo partner and a global admin key (stored in `.proveniq/*-api-key`, local only).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from werkzeug.serving import WSGIRequestHandler

from proveniq.edge.routes import allowed_methods, function_for, http_functions
from proveniq.errors import Unavailable
from proveniq.ports import Message
from proveniq.settings import Settings

log = logging.getLogger("proveniq.localstack")
SWEEP_MIN_AGE_SECONDS = 5.0  # leave in-flight publishes to the request that makes them
WEBHOOK_POLL_SECONDS = 0.2
WEBHOOK_SWEEP_SECONDS = 60
FIRESTORE_PROJECT = "demo-proveniq"
ROOT = Path(__file__).resolve().parents[3]


def function_dirs() -> list[str]:
    """Every function of the system: one folder under functions/ with a main.py each."""
    return sorted(p.parent.name for p in (ROOT / "functions").glob("*/main.py"))


def gateway_function(method: str, path: str, *, http_apps: Iterable[str]) -> str | None:
    """Which function serves `method path` (health goes to the first HTTP function)."""
    name = function_for(method, path.rstrip("/") or "/")
    if name == "*":
        apps = set(http_apps)
        served = [f for f in http_functions() if f in apps]
        return "write_event" if "write_event" in served else (served[0] if served else None)
    return name


def gateway(apps: dict[str, Callable[..., Any]]) -> Callable[..., Any]:
    """The local API Gateway: routes each request to the function the route map names."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        if path == "/metrics" and method == "GET":  # Prometheus text; no tenant data in labels
            from proveniq.app.metrics import render

            body, content_type = render()
            start_response("200 OK", [("Content-Type", content_type)])
            return [body]
        allow = allowed_methods(path.rstrip("/") or "/")
        if allow and method not in allow:
            return _answer(
                start_response,
                "405 Method Not Allowed",
                {"code": "METHOD_NOT_ALLOWED", "message": f"{method} is not allowed here"},
                [("Allow", ", ".join(sorted(allow)))],
            )
        name = gateway_function(method, path, http_apps=apps)
        if name is not None and name in apps:
            result: Iterable[bytes] = apps[name](environ, start_response)
            return result
        return _answer(
            start_response,
            "404 Not Found",
            {"code": "NOT_FOUND", "message": f"no route for {method} {path[:200]}"},
        )

    return app


def _answer(
    start_response: Callable[..., Any],
    status: str,
    error: dict[str, str],
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    body = json.dumps({"success": False, "error": error}).encode()
    start_response(status, [("Content-Type", "application/json"), *(headers or [])])
    return [body]


def prepare(settings: Settings) -> Settings:
    """Start the embedded database (unless a URL is configured) and point the functions at it."""
    from proveniq.adapters.local import postgres

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    if not settings.database_url:  # an external database is migrated by `proveniq migrate`
        server = postgres.prepare(settings.state_dir / "pg", database=settings.db_name)
        os.environ["PROVENIQ_DATABASE_URL"] = server.url(
            user=settings.db_user, database=settings.db_name
        )
    os.environ.setdefault("PROVENIQ_STATE_DIR", str(settings.state_dir))
    return Settings.from_env().model_copy(update={"port": settings.port})


def build_apps() -> dict[str, Callable[..., Any]]:
    from functions_framework import create_app

    apps = {}
    for directory in function_dirs():  # each main.py's decorator declares its signature type
        source = ROOT / "functions" / directory / "main.py"
        apps[directory] = create_app(  # type: ignore[no-untyped-call]
            target=directory, source=str(source)
        )
    return apps


def bootstrap(settings: Settings, echo: Callable[[str], None]) -> None:
    """First run only: a demo partner and a global admin, keys saved under the state folder."""
    from proveniq.app.runtime import runtime

    admin_file = settings.state_dir / "admin-api-key"
    demo_file = settings.state_dir / "demo-api-key"
    if admin_file.exists() and demo_file.exists():
        echo(f"reusing API keys in {admin_file} and {demo_file}")
        return
    accounts = runtime().accounts
    partner = accounts.create_partner(name="Demo Carrier", tier="enterprise")
    demo, _ = accounts.create_key(partner_id=partner.id, org_role="ADMIN", label="demo", env="test")
    admin, _ = accounts.create_key(
        partner_id=None, org_role=None, global_role="ADMIN", label="local admin", env="test"
    )
    for path, key in ((demo_file, demo.secret), (admin_file, admin.secret)):
        path.write_text(key + "\n")
        path.chmod(0o600)
    echo(f"created demo partner {partner.id}")
    echo(f"  demo partner API key (local only): {demo.secret}")
    echo(f"  global admin API key (local only): {admin.secret}")


def start_background(
    stop: threading.Event, apps: dict[str, Callable[..., Any]]
) -> list[threading.Thread]:
    from proveniq.app.runtime import runtime

    def sweep() -> None:
        while not stop.wait(1.0):
            try:
                runtime().relay.sweep(min_age_seconds=SWEEP_MIN_AGE_SECONDS)
            except Unavailable as e:
                log.warning("outbox sweep skipped: %s", e.message)
            except Exception:
                log.exception("outbox sweep failed")

    def seal() -> None:
        # Stands in for Cloud Scheduler -> Pub/Sub -> batch_merkle, with production's wiring:
        # one tick per period (at start, then every `seal_tick_seconds`), each delivered on
        # its own thread as Pub/Sub pushes it, and the run itself keeps sealing every
        # `seal_interval_ms` until the next tick's run takes over (`entrypoints.batch_merkle`).
        period = runtime().settings.seal_tick_seconds
        runs: list[threading.Thread] = []
        while True:
            runs = [t for t in runs if t.is_alive()]
            runs.append(threading.Thread(target=tick, name="batch-merkle-run", daemon=True))
            runs[-1].start()
            if stop.wait(period):
                break
        from proveniq.app.entrypoints import SEALING_STOPPED

        SEALING_STOPPED.set()  # whoever set `stop`: the looping runs end at their next wait
        for t in runs:
            t.join(timeout=10)

    def tick() -> None:
        try:
            seal_tick(apps)
        except Exception:
            log.exception("seal tick failed")

    def webhooks() -> None:
        # Stands in for Cloud Tasks: due attempts are POSTed to webhook_dispatch.
        from proveniq.followers.webhooks.worker import drain

        last_sweep = time.monotonic()
        while not stop.wait(WEBHOOK_POLL_SECONDS):
            try:
                drain(
                    runtime().webhooks.queue,
                    lambda task: dispatch_task(apps, task),
                    now=datetime.now(UTC),
                )
                if time.monotonic() - last_sweep > WEBHOOK_SWEEP_SECONDS:
                    # re-queue deliveries whose first task a crash lost (Cloud Scheduler's job
                    # in production)
                    runtime().webhooks.dispatcher.sweep()
                    last_sweep = time.monotonic()
            except Unavailable as e:
                log.warning("webhook worker skipped: %s", e.message)
            except Exception:
                log.exception("webhook worker failed")

    from proveniq.app.entrypoints import SEALING_STOPPED

    SEALING_STOPPED.clear()
    threads = [
        threading.Thread(target=sweep, name="outbox-sweep", daemon=True),
        threading.Thread(target=seal, name="seal-timer", daemon=True),
    ]
    if "webhook_dispatch" in apps:
        threads.append(threading.Thread(target=webhooks, name="webhook-worker", daemon=True))
    for t in threads:
        t.start()
    return threads


def stop_sealing(stop: threading.Event) -> None:
    """Stop the background threads and end a looping batch_merkle run at its next wait."""
    from proveniq.app.entrypoints import SEALING_STOPPED

    SEALING_STOPPED.set()
    stop.set()


def connect_followers(apps: dict[str, Callable[..., Any]]) -> None:
    """Subscribe the in-process bus to the functions Eventarc triggers in production:
    `ledger-events` -> risk_score, `device-telemetry` -> device_ingest."""
    from proveniq.adapters.local.bus import InProcessBus
    from proveniq.app.runtime import runtime

    rt = runtime()
    if not isinstance(rt.bus, InProcessBus):
        return
    s = rt.settings
    for topic, function in ((s.pubsub_topic, "risk_score"), (s.device_topic, "device_ingest")):
        app = apps.get(function)
        if app is not None:
            rt.bus.subscribe(topic, _push_to(app, function), subscription=f"{topic}-{function}")


def _push_to(app: Any, function: str) -> Callable[[Any], None]:
    """A push subscription: the CloudEvent in binary mode, as Eventarc sends it."""
    from cloudevents.conversion import to_binary

    def push(event: Any) -> None:
        headers, body = to_binary(event)
        resp = app.test_client().post("/", data=body, headers=dict(headers))
        if resp.status_code >= 300:  # the bus redelivers, then dead-letters
            raise Unavailable(f"{function} answered {resp.status_code}")

    return push


def dispatch_task(apps: dict[str, Callable[..., Any]], task: Any) -> None:
    """Deliver one Cloud Tasks-style HTTP task to webhook_dispatch."""
    app: Any = apps["webhook_dispatch"]
    headers = {"traceparent": task.traceparent} if task.traceparent else {}
    resp = app.test_client().post(
        "/", data=task.to_json(), content_type="application/json", headers=headers
    )
    if resp.status_code == 503:
        raise Unavailable("webhook_dispatch is unavailable")
    if resp.status_code >= 300:
        log.error("webhook_dispatch refused task %s: %s", task.name, resp.status_code)


def start_pubsub_server(settings: Settings, echo: Callable[[str], None]) -> Any:
    """The Pub/Sub Publisher API on 127.0.0.1 for device programs (PUBSUB_EMULATOR_HOST)."""
    from proveniq.adapters.local.pubsub_server import LocalPubSubServer
    from proveniq.app.runtime import runtime

    def on_message(topic: str, message: Message, message_id: str, publish_time: str) -> None:
        runtime().bus.send(topic, [message])

    try:
        server = LocalPubSubServer(
            on_message=on_message,
            port=settings.local_pubsub_port,
            topics=[
                settings.device_topic,
                settings.device_dead_letter_topic,
                settings.pubsub_topic,
            ],
        ).start()
    except Exception as e:  # a port in use must not stop the ledger itself
        log.warning(
            "Pub/Sub Publisher API for devices not started on port %s: %s",
            settings.local_pubsub_port,
            e,
        )
        return _NoServer()
    echo(f"Pub/Sub Publisher API for devices: PUBSUB_EMULATOR_HOST={server.address}")
    return server


class _NoServer:
    def stop(self) -> None:
        return None


def start_firestore(settings: Settings, echo: Callable[[str], None]) -> Any:
    """The npm Firestore emulator for the app projection, when Node is available."""
    from proveniq.adapters.local import firestore_emulator

    if settings.firestore_project or os.environ.get("FIRESTORE_EMULATOR_HOST"):
        return None  # configured by hand
    if not firestore_emulator.available():
        log.info("Node.js not found: the Firestore projection for apps is not running")
        return None
    try:
        emulator = firestore_emulator.start(settings.state_dir / "firestore-emulator.log")
    except Unavailable as e:
        log.warning("Firestore projection not running: %s", e.message)
        return None
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
    os.environ["PROVENIQ_FIRESTORE_PROJECT"] = FIRESTORE_PROJECT
    echo(
        f"Firestore projection for apps: FIRESTORE_EMULATOR_HOST={emulator.host} "
        f"(project {FIRESTORE_PROJECT})"
    )
    return emulator


def seal_tick(apps: dict[str, Callable[..., Any]]) -> int:
    """Deliver one scheduler tick to batch_merkle as a binary-mode Pub/Sub CloudEvent."""
    from flask import Flask

    from proveniq.edge.cloudevents import pubsub_event

    app = apps.get("batch_merkle")
    if not isinstance(app, Flask):
        return 0
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    attributes, data = pubsub_event(
        project="local",
        topic="seal-tick",
        subscription="seal-tick-batch-merkle",
        message=Message(data=b"tick"),
        message_id=str(time.time_ns()),
        publish_time=now,
    )
    headers = {f"ce-{k}": v for k, v in attributes.items() if k != "datacontenttype"}
    resp = app.test_client().post("/", json=data, headers=headers)
    if resp.status_code >= 300:
        log.warning("batch_merkle answered %s", resp.status_code)
    return resp.status_code


class AccessLog(WSGIRequestHandler):
    """Werkzeug's request log as Cloud Logging `httpRequest` entries (no terminal colours), and
    the server's own errors (an oversized header: 431, a malformed request line: 400) in the
    Core manual's envelope instead of http.server's HTML page."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        from http import HTTPStatus

        self.close_connection = True
        phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "Error"
        error = {
            "code": "PAYLOAD_TOO_LARGE" if code in (413, 414, 431) else "VALIDATION_ERROR",
            "message": f"{phrase}: {message or explain or ''}".rstrip(": "),
        }
        body = json.dumps({"success": False, "error": error}).encode()
        self.send_response(code, message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.info(
            "%s %s %s",
            self.command,
            self.path.split("?")[0],
            code,
            extra={
                "httpRequest": {
                    "requestMethod": self.command,
                    "requestUrl": self.path.split("?")[0],
                    "status": int(code) if str(code).isdigit() else 0,
                    "remoteIp": self.client_address[0],
                }
            },
        )


def run(settings: Settings, *, host: str, echo: Callable[[str], None], workers: int = 1) -> None:

    from proveniq.app import logs

    logs.setup()
    _stop_on_sigterm()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    firestore = start_firestore(settings, echo)
    try:
        settings = prepare(settings)
        bootstrap(settings, echo)
        if workers > 1:
            run_workers(settings, host=host, echo=echo, workers=workers)
            return
        _serve(settings, host=host, echo=echo)
    finally:
        if firestore is not None:
            firestore.stop()


def _serve(settings: Settings, *, host: str, echo: Callable[[str], None]) -> None:
    from werkzeug.serving import make_server

    apps = build_apps()
    connect_followers(apps)
    stop = threading.Event()
    threads = start_background(stop, apps)
    pubsub = start_pubsub_server(settings, echo)
    server = make_server(
        host, settings.port, gateway(apps), threaded=True, request_handler=AccessLog
    )
    echo(
        f"Proveniq Ledger local stack on http://{host}:{settings.port} "
        f"(functions: {', '.join(sorted(apps))}); Ctrl-C stops it"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        echo("stopping...")
    finally:
        stop_sealing(stop)
        server.server_close()
        pubsub.stop()
        for t in threads:
            t.join(timeout=5)
        shutdown(settings)


def _stop_on_sigterm() -> None:
    """SIGTERM (kill, systemd, containers, CI) stops the stack like Ctrl-C does, database too."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # started in the background by a shell
        signal.signal(signal.SIGINT, stop)


def run_workers(
    settings: Settings, *, host: str, echo: Callable[[str], None], workers: int
) -> None:
    """Several server processes (gunicorn, threaded workers) share the port, so more than one
    interpreter serves requests; the seal timer and outbox sweep run in one extra process.
    Each process has its own runtime and connection pool, built after the fork."""
    import multiprocessing

    from gunicorn.app.base import BaseApplication

    from proveniq.app.runtime import release_runtime

    release_runtime()  # no connection may cross a fork
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    background = ctx.Process(target=_background_main, args=(stop,), name="proveniq-background")
    background.start()

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {
                "bind": f"{host}:{settings.port}",
                "workers": workers,
                "worker_class": "gthread",
                "threads": 16,
                "timeout": 120,
                "graceful_timeout": 10,
                "accesslog": None,
                "loglevel": "warning",
            }.items():
                self.cfg.set(key, value)

        def load(self) -> Callable[..., Any]:
            apps = build_apps()
            connect_followers(apps)
            return gateway(apps)

    echo(
        f"Proveniq Ledger local stack on http://{host}:{settings.port} ({workers} server "
        "processes); Ctrl-C stops it"
    )
    master = os.getpid()
    try:
        Server().run()
    except SystemExit as e:
        if os.getpid() != master:  # a forked worker finishing: leave without the master's cleanup
            os._exit(e.code if isinstance(e.code, int) else 0)
    echo("stopping...")
    stop.set()
    background.join(timeout=15)
    if background.is_alive():
        background.terminate()
    shutdown(settings)


def _background_main(stop: Any) -> None:
    """The seal timer and the outbox sweep, in their own process (multi-worker mode)."""
    import signal

    from proveniq.app import logs
    from proveniq.app.runtime import release_runtime

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logs.setup()
    local_stop = threading.Event()
    apps = build_apps()
    connect_followers(apps)
    threads = start_background(local_stop, apps)
    pubsub = start_pubsub_server(Settings.from_env(), lambda _: None)
    stop.wait()
    pubsub.stop()
    stop_sealing(local_stop)
    for t in threads:
        t.join(timeout=5)
    release_runtime()


def shutdown(settings: Settings) -> None:
    from proveniq.adapters.local import postgres
    from proveniq.app.runtime import release_runtime

    release_runtime()
    if (settings.state_dir / "pg").exists():
        postgres.stop(settings.state_dir / "pg")

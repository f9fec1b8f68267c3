"""The composition root: settings -> adapters -> use cases -> handlers, built once per process.

`Runtime.from_settings` picks adapters by `settings.backend` (named variants `local` and `gcp`);
tests inject their own (`Runtime.build(settings, bus=...)`). Clients are built on first use,
never at import, so cold starts stay cheap. Nothing below `app` fetches this runtime.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from proveniq.access.accounts import Accounts
from proveniq.access.authentication import Authenticator
from proveniq.access.gate import Gate
from proveniq.access.ratelimit import RateLimiter
from proveniq.adapters.postgres import pool as pg
from proveniq.adapters.postgres.accounts import PostgresAccounts
from proveniq.adapters.postgres.ledger import PostgresLedger
from proveniq.adapters.postgres.ratebuckets import PostgresRateBuckets
from proveniq.adapters.postgres.watch import PostgresCheckpointWatch
from proveniq.app import tracing
from proveniq.app.metrics import metrics
from proveniq.edge.admin import AdminHandlers
from proveniq.edge.devices import DeviceHandlers
from proveniq.edge.health import HealthHandlers
from proveniq.edge.http import Route
from proveniq.edge.keys import KeyHandlers
from proveniq.edge.proofs import ProofHandlers
from proveniq.edge.risk import RiskHandlers
from proveniq.edge.routes import routes_for
from proveniq.edge.webhooks import WebhookHandlers
from proveniq.edge.write import WriteHandlers
from proveniq.errors import ValidationError
from proveniq.followers.risk.scoring import RiskScorer
from proveniq.ledger.claims import ClaimVerification
from proveniq.ledger.integration import Integrator
from proveniq.ledger.outbox import Relay
from proveniq.ledger.proofs import CheckpointAwaiter, Proofs
from proveniq.ledger.publishing import CheckpointPublisher
from proveniq.ledger.queries import Queries
from proveniq.ledger.replica import ReplicaReader
from proveniq.ledger.sequencing import GroupCommit, Sequencer
from proveniq.log.note import NoteVerifier
from proveniq.log.signer import Signer
from proveniq.ports import Bus, IdentityVerifier, NoTelemetry, Telemetry
from proveniq.settings import Settings

log = logging.getLogger("proveniq.runtime")
WATCH_POLL_SECONDS = 1.0  # the checkpoint watch's safety poll (a lost notification)


@dataclass(eq=False)
class Runtime:
    settings: Settings
    pool: pg.Pool
    ledger: PostgresLedger
    accounts: Accounts
    gate: Gate
    bus: Bus
    relay: Relay
    sequencer: Sequencer
    publisher: CheckpointPublisher
    integrator: Integrator
    proofs: Proofs
    queries: Queries
    claims: ClaimVerification
    reads: Reads | None = None  # get_proof's reads off a replica, when one is configured
    _route_cache: dict[str, list[Route]] = field(default_factory=dict, init=False)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        bus: Bus | None = None,
        signers: list[Signer] | None = None,
        identity: IdentityVerifier | None = None,
    ) -> Runtime:
        connect = _connector(settings)
        pool = pg.Pool(connect, size=settings.pool_size)
        ledger = PostgresLedger(pool)
        accounts = Accounts(PostgresAccounts(pool))
        the_bus = bus or _bus(settings)
        telemetry: Telemetry = metrics() if settings.telemetry else NoTelemetry()
        relay = Relay(
            outbox=ledger,
            bus=the_bus,
            topic=settings.pubsub_topic,
            # the trace travels with each message
            decorate=tracing.inject_attributes if settings.telemetry else None,
        )
        publisher = CheckpointPublisher(
            origin=settings.log_origin, signers=signers or _signers(settings)
        )
        proofs = Proofs(
            reader=ledger,
            publisher=publisher,
            telemetry=telemetry,
            # one LISTEN connection per process, opened on the first `?wait=`
            watch=PostgresCheckpointWatch(connect, poll_seconds=WATCH_POLL_SECONDS),
        )
        queries = Queries(reader=ledger)
        reads = (
            _reads(
                settings,
                ledger,
                publisher,
                telemetry,
                # the replica's waiters are woken by the primary's seal, through the same watch;
                # a checkpoint the replica has not replayed yet is read through its fallback
                awaiter=proofs.awaiter,
            )
            if settings.read_replica
            else None
        )
        return cls(
            reads=reads,
            settings=settings,
            pool=pool,
            ledger=ledger,
            accounts=accounts,
            gate=Gate(
                authenticator=Authenticator(
                    accounts=accounts,
                    identity=identity or _identity(settings),
                    behind_gateway=settings.backend == "gcp",
                ),
                limiter=RateLimiter(PostgresRateBuckets(pool)),
                accounts=accounts,
            ),
            bus=the_bus,
            relay=relay,
            sequencer=Sequencer(
                store=ledger,
                relay=relay,
                reader=ledger,
                telemetry=telemetry,
                group=_group_commit(settings),
            ),
            publisher=publisher,
            integrator=Integrator(store=ledger, publisher=publisher, telemetry=telemetry),
            proofs=proofs,
            queries=queries,
            claims=ClaimVerification(queries=queries, proofs=proofs),
        )

    @classmethod
    def local(cls, settings: Settings, **overrides: Any) -> Runtime:
        """Embedded (or configured) PostgreSQL, key files, the in-process bus."""
        return cls.build(settings.model_copy(update={"backend": "local"}), **overrides)

    @classmethod
    def gcp(cls, settings: Settings, **overrides: Any) -> Runtime:
        """Cloud SQL, Cloud KMS, Pub/Sub, Firebase."""
        return cls.build(settings.model_copy(update={"backend": "gcp"}), **overrides)

    def verifiers(self) -> list[NoteVerifier]:
        return self.publisher.verifiers()

    def routes(self, function: str) -> list[Route]:
        """The HTTP routes of one function (from the single route map), cached."""
        with _lock:
            cached = self._route_cache.get(function)
            if cached is None:
                cached = self._route_cache[function] = routes_for(
                    function, self._handlers(function)
                )
            return cached

    def _handlers(self, function: str) -> dict[str, object]:
        """Handler objects by route group (`edge.routes.handler_group`) for one function."""
        risk = RiskHandlers(scorer=lambda: self.risk)
        reads = self.reads or Reads(
            proofs=self.proofs, queries=self.queries, claims=self.claims, reader=None, pool=None
        )
        table: dict[str, dict[str, object]] = {
            "write_event": {
                "events": WriteHandlers(
                    sequencer=self.sequencer, queries=self.queries, proofs=self.proofs
                ),
                "risk": risk,
            },
            "get_proof": {
                **dict.fromkeys(
                    ("events", "leaves", "subjects", "claims", "proofs", "checkpoints", "log"),
                    ProofHandlers(proofs=reads.proofs, queries=reads.queries, claims=reads.claims),
                ),
                "risk": risk,
            },
            "admin": {
                "admin": AdminHandlers(
                    accounts=self.accounts, config=lambda: self.settings.model_dump(mode="json")
                ),
                "keys": KeyHandlers(accounts=self.accounts),
                "webhooks": WebhookHandlers(
                    subscriptions=lambda: self.webhooks.subscriptions,
                    dispatcher=lambda: self.webhooks.dispatcher,
                ),
                "devices": DeviceHandlers(registry=lambda: self.devices.store, clock=_now),
            },
        }
        return {"health": HealthHandlers(ready=self.ready), **table.get(function, {})}

    # ---- the followers and the device intake, built on first use -------------------------

    @functools.cached_property
    def risk(self) -> RiskScorer:
        from proveniq.app import wiring

        return wiring.risk_scorer(self)

    @functools.cached_property
    def webhooks(self) -> Any:
        from proveniq.app import wiring

        return wiring.webhooks(self)

    @functools.cached_property
    def devices(self) -> Any:
        from proveniq.app import wiring

        return wiring.devices(self)

    @functools.cached_property
    def projection(self) -> Any:
        """The Firestore sink, or None when no projection is configured."""
        from proveniq.app import wiring

        return wiring.projection_sink(self)

    def ready(self) -> None:
        with self.pool.transaction() as cur:
            cur.execute("SELECT 1")


_traced = False


def tracing_setup(settings: Settings) -> None:
    """One tracer provider per process: Cloud Trace on GCP, spans kept local otherwise (the
    trace ids still reach every log line and travel with messages and tasks)."""
    global _traced
    if _traced:
        return
    _traced = True
    exporter = "none"
    if settings.backend == "gcp":
        try:
            import opentelemetry.exporter.cloud_trace  # noqa: F401

            exporter = "cloud-trace"
        except ImportError:
            log.warning("opentelemetry-exporter-gcp-trace missing: spans are not exported")
    tracing.setup(service="proveniq-ledger", exporter=exporter, project=settings.gcp_project)  # type: ignore[arg-type]


def _now() -> datetime:
    return datetime.now(UTC)


_lock = threading.RLock()
_current: Runtime | None = None


def runtime() -> Runtime:
    """The process-wide runtime, built once (thread-safe) from the environment's settings."""
    global _current
    rt = _current
    if rt is None:
        with _lock:
            if _current is None:
                from proveniq.app import logs

                settings = Settings.from_env()
                logs.setup(project=settings.gcp_project or "local")
                tracing_setup(settings)
                _current = Runtime.build(settings)
            rt = _current
    return rt


def install_runtime(rt: Runtime) -> None:
    """Use `rt` as the process-wide runtime (tests that inject adapters)."""
    global _current
    with _lock:
        _current = rt


def release_runtime() -> None:
    """Flush outbox marks, close the bus, close the pool, forget the runtime."""
    global _current
    with _lock:
        rt, _current = _current, None
    if rt is None:
        return
    try:
        rt.relay.flush_marks()
    except Exception:
        log.warning("could not flush outbox marks; the next sweep re-sends them")
    close = getattr(rt.bus, "close", None)
    if close is not None:
        close()
    if rt.proofs.awaiter.watch is not None:
        rt.proofs.awaiter.watch.close()
    rt.pool.dispose()
    if rt.reads is not None and rt.reads.pool is not None:
        rt.reads.pool.dispose()


@dataclass(frozen=True, kw_only=True)
class Reads:
    """get_proof's use cases over a `ReplicaReader` (the write path keeps the primary's: it
    must see its own writes), and the replica's own pool."""

    proofs: Proofs
    queries: Queries
    claims: ClaimVerification
    reader: ReplicaReader | None
    pool: pg.Pool | None


def _reads(
    settings: Settings,
    ledger: PostgresLedger,
    publisher: CheckpointPublisher,
    telemetry: Any,
    *,
    awaiter: CheckpointAwaiter,
) -> Reads:
    if settings.backend == "gcp":
        from proveniq.adapters.gcp.cloudsql import cloudsql_connector

        connect = cloudsql_connector(settings, replica=True)
    else:
        assert settings.read_replica_url is not None
        connect = pg.url_connector(settings.read_replica_url)
    pool = pg.Pool(connect, size=settings.read_replica_pool_size)
    fallback = getattr(telemetry, "replica_fallback", None)
    reader = ReplicaReader(primary=ledger, replica=PostgresLedger(pool), on_fallback=fallback)
    proofs = Proofs(reader=reader, publisher=publisher, telemetry=telemetry, awaiter=awaiter)
    queries = Queries(reader=reader)
    return Reads(
        proofs=proofs,
        queries=queries,
        claims=ClaimVerification(queries=queries, proofs=proofs),
        reader=reader,
        pool=pool,
    )


def _group_commit(settings: Settings) -> GroupCommit | None:
    if not settings.group_commit:
        return None  # one transaction per request
    return GroupCommit(
        wait=settings.group_commit_wait_ms / 1000, max_size=settings.group_commit_max
    )


def _connector(settings: Settings) -> pg.Connect:
    if settings.backend == "gcp":
        from proveniq.adapters.gcp.cloudsql import cloudsql_connector

        return cloudsql_connector(settings)
    if settings.database_url:
        return pg.url_connector(settings.database_url)
    from proveniq.adapters.local import postgres

    server = postgres.prepare(settings.state_dir / "pg", database=settings.db_name)
    return pg.url_connector(server.url(user=settings.db_user, database=settings.db_name))


def _bus(settings: Settings) -> Bus:
    if settings.backend == "gcp":
        from proveniq.adapters.gcp.pubsub import PubSubBus

        assert settings.gcp_project is not None
        return PubSubBus(project=settings.gcp_project)
    from proveniq.adapters.local.bus import InProcessBus

    return InProcessBus()


def _signers(settings: Settings) -> list[Signer]:
    """Every configured key signs each checkpoint (key rotation); the first is the primary."""
    if settings.backend == "gcp":
        from proveniq.adapters.gcp.kms import KmsSigner

        if not settings.kms_key_versions:
            raise ValidationError(
                "required when PROVENIQ_BACKEND=gcp", field="PROVENIQ_KMS_KEY_VERSION"
            )
        return [
            KmsSigner(name=settings.log_origin, key_version=v) for v in settings.kms_key_versions
        ]
    from proveniq.adapters.local.keyfile import load_or_create_signer

    return [load_or_create_signer(p, name=settings.log_origin) for p in settings.signing_key_paths]


def _identity(settings: Settings) -> IdentityVerifier | None:
    if not settings.firebase_project:
        return None
    from proveniq.adapters.gcp.firebase import FirebaseIdentity

    return FirebaseIdentity(project_id=settings.firebase_project)

"""The one cached factory every function uses: settings -> pool, store, ports, services.

Clients are built on first use, never at import (cold starts stay cheap).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cachetools import TTLCache

from proveniq.access.authentication import Authenticator
from proveniq.access.ratelimit import RateLimiter
from proveniq.adapters.postgres import pool as db
from proveniq.adapters.postgres.accounts import Accounts
from proveniq.adapters.postgres.ledger import LedgerStore
from proveniq.adapters.postgres.pool import Pool
from proveniq.edge.http import Edge
from proveniq.edge.proofs import ProofService
from proveniq.edge.write import AppendService
from proveniq.errors import NotFound, ValidationError
from proveniq.ledger.integration import Sealer
from proveniq.ledger.outbox import Relay
from proveniq.log.note import NoteVerifier
from proveniq.log.signer import Signer
from proveniq.ports import IdentityVerifier, Principal, Publisher
from proveniq.settings import Settings

log = logging.getLogger("proveniq.runtime")
TIER_CACHE_SECONDS = 30


@dataclass(eq=False)  # hashed by identity: route tables are cached per runtime
class Runtime(Edge):
    settings: Settings
    pool: Pool
    store: LedgerStore
    accounts: Accounts
    authenticator: Authenticator
    limiter: RateLimiter
    publisher: Publisher
    relay: Relay
    append: AppendService
    signer: Signer  # the primary key, served as the log's public key
    signers: list[Signer]
    sealer: Sealer
    prove: ProofService
    _tiers: TTLCache[str, str | None] = field(
        default_factory=lambda: TTLCache(maxsize=10_000, ttl=TIER_CACHE_SECONDS)
    )
    _tier_lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticate(self, headers: Any) -> Principal:
        return self.authenticator.authenticate(headers)

    def rate_limit(self, principal: Principal, tenant: str | None) -> Mapping[str, str]:
        # One bucket per organization, sized by that organization's tier (not by whatever tier
        # a token claims); platform credentials without an organization get their own bucket.
        if principal.tenant is not None:
            bucket, tier = principal.tenant, self._tier(principal.tenant) or "free"
        else:
            bucket, tier = principal.subject, principal.tier
        budget = self.limiter.take(bucket=bucket, tier=tier)
        return budget.headers() if budget else {}

    def verifiers(self) -> list[NoteVerifier]:
        return [
            NoteVerifier.from_public_key(name=s.name, public_key=s.public_key) for s in self.signers
        ]

    def check_tenant(self, tenant: str) -> None:
        if self._tier(tenant) is None:
            raise NotFound(f"organization {tenant} does not exist")

    def _tier(self, partner_id: str) -> str | None:
        with self._tier_lock:
            if partner_id in self._tiers:
                return self._tiers[partner_id]
        tier = self.accounts.partner_tier(partner_id)
        with self._tier_lock:
            self._tiers[partner_id] = tier
        return tier

    def ready(self) -> None:
        with self.pool.transaction() as cur:
            cur.execute("SELECT 1")


def build(settings: Settings, *, publisher: Publisher | None = None) -> Runtime:
    pool = Pool(_connector(settings), size=settings.pool_size)
    store = LedgerStore(pool)
    accounts = Accounts(pool)
    pub = publisher or _publisher(settings)
    relay = Relay(store=store, publisher=pub, topic=settings.pubsub_topic)
    signers = _signers(settings)
    prove = ProofService(pool=pool, store=store, signers=signers)
    return Runtime(
        settings=settings,
        pool=pool,
        store=store,
        accounts=accounts,
        authenticator=Authenticator(accounts=accounts, identity=_identity(settings)),
        limiter=RateLimiter(pool),
        publisher=pub,
        relay=relay,
        append=AppendService(store=store, relay=relay, prove=prove),
        signer=signers[0],
        signers=signers,
        sealer=Sealer(pool=pool, signers=signers, origin=settings.log_origin),
        prove=prove,
    )


_lock = threading.Lock()
_current: Runtime | None = None


def runtime() -> Runtime:
    """The process-wide runtime, built once (thread-safe) from the environment's settings."""
    global _current
    rt = _current
    if rt is None:
        with _lock:
            if _current is None:
                from proveniq.app import logs

                logs.setup()
                _current = build(Settings.from_env())
            rt = _current
    return rt


def release_runtime() -> None:
    """Flush outbox marks, close the publisher, close the pool, forget the runtime."""
    global _current
    with _lock:
        rt, _current = _current, None
    if rt is None:
        return
    try:
        rt.relay.flush_marks()
    except Exception:
        log.warning("could not flush outbox marks; the next sweep re-publishes them")
    close = getattr(rt.publisher, "close", None)
    if close is not None:
        close()
    rt.pool.dispose()


def _connector(settings: Settings) -> db.Connect:
    if settings.backend == "gcp":
        from proveniq.adapters.gcp.cloudsql import cloudsql_connector

        return cloudsql_connector(settings)
    if settings.database_url:
        return db.url_connector(settings.database_url)
    from proveniq.adapters.local import postgres

    server = postgres.prepare(settings.state_dir / "pg", database=settings.db_name)
    return db.url_connector(server.url(user=settings.db_user, database=settings.db_name))


def _publisher(settings: Settings) -> Publisher:
    if settings.backend == "gcp":
        from proveniq.adapters.gcp.pubsub import PubSubPublisher

        assert settings.gcp_project is not None
        return PubSubPublisher(project=settings.gcp_project)
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


def describe(rt: Runtime) -> dict[str, Any]:
    s = rt.settings
    return {"backend": s.backend, "origin": s.log_origin, "topic": s.pubsub_topic}

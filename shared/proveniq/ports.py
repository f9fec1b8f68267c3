"""Ports: the narrow interfaces the services need from the outside world.

Each has a GCP adapter (`proveniq.adapters.gcp`) and a local one (`proveniq.adapters.local`);
settings choose, never "if testing". The ledger store itself is PostgreSQL everywhere
(`proveniq.store`); only how connections are made differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from proveniq.log.entry import Entry

GlobalRole = Literal["ADMIN", "AUDITOR", "INVESTOR", "USER"]
OrgRole = Literal["OWNER", "ADMIN", "MEMBER", "VIEWER"]


@dataclass(frozen=True, kw_only=True)
class Message:
    """One Pub/Sub message: `ordering_key` keeps one subject's events in order."""

    data: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)
    ordering_key: str = ""


class Publisher(Protocol):
    def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Publish all messages or raise `errors.Unavailable` (the outbox relay retries)."""


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who is calling: an API key of a partner, or an app user with a Firebase ID token."""

    subject: str  # "key:<api key id>" or "firebase:<uid>"
    tenant: str | None  # the partner / organization id, None for platform-wide principals
    org_role: OrgRole | None
    global_role: GlobalRole = "USER"
    tier: str = "free"


class IdentityVerifier(Protocol):
    def verify(self, id_token: str) -> Principal:
        """Verify an app's ID token or raise `errors.AuthInvalid` naming why."""


@dataclass(frozen=True, kw_only=True)
class NewEvent:
    """An event a follower or an intake asks the ledger to sequence (validated like a partner's
    submission: type, subject, payload limits, lifecycle rules)."""

    type: str
    subject: str
    payload: Mapping[str, Any]
    occurred_at: datetime | None = None


class LedgerAppender(Protocol):
    def append(
        self,
        *,
        tenant: str,
        actor: str,
        events: Sequence[NewEvent],
        idempotency_key: str | None = None,
    ) -> list[Entry]:
        """Sequence `events` all-or-nothing and return their entries. With an idempotency key
        already used for the same events, return the entries sequenced the first time (no second
        append). Raises `errors.ValidationError` / `errors.LifecycleConflict` for permanent
        refusals and `errors.Unavailable` for transient ones."""

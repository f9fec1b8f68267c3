"""The evidence vocabulary the risk model reads (docs/EVENTS.md is the partner-facing copy).

    claim.created / claim.updated   subject: claim id
        amount_cents  int >= 0          currency      ISO 4217 (3 upper-case letters)
        claimant      opaque id         asset         subject id of the insured asset
        incident_at   RFC 3339          policy_id     string
        policy_start  RFC 3339 (opt.)   description   string (opt., never read by the model)
    document.uploaded               subject: claim id
        sha256        64 lowercase hex  kind          string (photo, invoice, report, ...)
        taken_at      RFC 3339 (opt.)
    custody.*                       subject: asset id
        to            custodian id      locker        locker id (the asset is in a locker)
    asset.*                         subject: asset id; the type sets the lifecycle status

`check_evidence` validates the known fields that are present (absent and unknown fields are
allowed) and names the offending one as ``payload.<name>``. The `*_evidence` functions read the
checked fields into typed values. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from proveniq.errors import ValidationError
from proveniq.ledger import lifecycle

CLAIM_TYPES = frozenset({"claim.created", "claim.updated"})
DECISION_TYPES = frozenset({"claim.approved", "claim.rejected", "claim.paid"})
DOCUMENT_TYPE = "document.uploaded"
RISK_PREFIX = "risk."
LOCKER_TYPES = frozenset({"custody.locked", "custody.stored"})

# asset.* event type -> the lifecycle status it leads to (Core manual §4.1; asset.updated keeps it)
ASSET_STATUS: Mapping[str, str] = lifecycle.TARGET_STATUS
CLOSED_STATUSES = frozenset({"SOLD", "ARCHIVED"})

_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_ID = 256


def parse_rfc3339(value: Any, *, field: str) -> datetime:
    """An RFC 3339 timestamp with an offset (``Z`` or ``±HH:MM``), returned in UTC."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValidationError("expected an RFC 3339 timestamp with a time zone", field=field)
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as e:
        raise ValidationError(f"invalid timestamp: {e}", field=field) from e


def _amount(value: Any, field: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValidationError("expected an integer >= 0 (minor units)", field=field)


def _currency(value: Any, field: str) -> None:
    if not isinstance(value, str) or not _CURRENCY.match(value):
        raise ValidationError("expected an ISO 4217 code (3 upper-case letters)", field=field)


def _identifier(value: Any, field: str) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID:
        raise ValidationError(f"expected a non-empty string of at most {MAX_ID}", field=field)


def _text(value: Any, field: str) -> None:
    if not isinstance(value, str):
        raise ValidationError("expected a string", field=field)


def _time(value: Any, field: str) -> None:
    parse_rfc3339(value, field=field)


def _sha256(value: Any, field: str) -> None:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise ValidationError("expected 64 lowercase hex characters", field=field)


Check = Callable[[Any, str], None]
_CLAIM_FIELDS: Mapping[str, Check] = {
    "amount_cents": _amount,
    "currency": _currency,
    "claimant": _identifier,
    "asset": _identifier,
    "incident_at": _time,
    "policy_id": _identifier,
    "policy_start": _time,
    "description": _text,
}
_DOCUMENT_FIELDS: Mapping[str, Check] = {"sha256": _sha256, "kind": _identifier, "taken_at": _time}
_CUSTODY_FIELDS: Mapping[str, Check] = {"to": _identifier, "locker": _identifier}


def _fields_for(event_type: str) -> Mapping[str, Check]:
    if event_type in CLAIM_TYPES:
        return _CLAIM_FIELDS
    if event_type == DOCUMENT_TYPE:
        return _DOCUMENT_FIELDS
    if event_type.startswith("custody."):
        return _CUSTODY_FIELDS
    return {}


def check_evidence(event_type: str, payload: Mapping[str, Any], *, prefix: str = "payload") -> None:
    """Raise `ValidationError` (field ``<prefix>.<name>``) for the first malformed known field."""
    for name, check in _fields_for(event_type).items():
        if name in payload:
            check(payload[name], f"{prefix}.{name}")


@dataclass(frozen=True, kw_only=True)
class ClaimEvidence:
    """The fields of one claim.* event (None: absent from this event)."""

    amount_cents: int | None = None
    currency: str | None = None
    claimant: str | None = None
    asset: str | None = None
    incident_at: datetime | None = None
    policy_id: str | None = None
    policy_start: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class DocumentEvidence:
    sha256: str | None = None
    kind: str | None = None
    taken_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class CustodyEvidence:
    """Where a custody event puts the asset: in a locker, or with a custodian."""

    placement: str  # "locker" | "custodian"
    holder: str


def _opt_time(payload: Mapping[str, Any], name: str) -> datetime | None:
    v = payload.get(name)
    return None if v is None else parse_rfc3339(v, field=f"payload.{name}")


def claim_evidence(payload: Mapping[str, Any]) -> ClaimEvidence:
    check_evidence("claim.created", payload)
    return ClaimEvidence(
        amount_cents=payload.get("amount_cents"),
        currency=payload.get("currency"),
        claimant=payload.get("claimant"),
        asset=payload.get("asset"),
        incident_at=_opt_time(payload, "incident_at"),
        policy_id=payload.get("policy_id"),
        policy_start=_opt_time(payload, "policy_start"),
    )


def document_evidence(payload: Mapping[str, Any]) -> DocumentEvidence:
    check_evidence(DOCUMENT_TYPE, payload)
    return DocumentEvidence(
        sha256=payload.get("sha256"),
        kind=payload.get("kind"),
        taken_at=_opt_time(payload, "taken_at"),
    )


def custody_evidence(event_type: str, payload: Mapping[str, Any]) -> CustodyEvidence | None:
    """None when the custody event says nothing about where the asset is (e.g. a scan)."""
    check_evidence(event_type, payload)
    locker = payload.get("locker")
    if locker is not None and (event_type in LOCKER_TYPES or "to" not in payload):
        return CustodyEvidence(placement="locker", holder=locker)
    if event_type in LOCKER_TYPES:
        return CustodyEvidence(placement="locker", holder=payload.get("to") or "locker")
    to = payload.get("to")
    if to is not None:
        return CustodyEvidence(placement="custodian", holder=to)
    return None


def is_risk_event(event_type: str) -> bool:
    return event_type.startswith(RISK_PREFIX)


def is_scorable(event_type: str) -> bool:
    """claim.created / claim.updated / document.uploaded are scored; risk.* never."""
    return event_type in CLAIM_TYPES or event_type == DOCUMENT_TYPE

"""What a partner submits: validated with pydantic, bounded, then turned into chain drafts.

Raw bodies are parsed by `canonical.parse_strict` (duplicate keys, NaN, unsafe integers and lone
surrogates refused) before pydantic sees them; unknown fields are refused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from proveniq.errors import FieldIssue, PayloadTooLarge, ValidationError
from proveniq.ledger import evidence, lifecycle
from proveniq.log.canonical import canonicalize, parse_strict
from proveniq.log.chain import Draft
from proveniq.log.timefmt import format_time
from proveniq.ports import NewEvent

M = TypeVar("M", bound=BaseModel)
MAX_EVENTS_PER_BATCH = 1000
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_DEPTH = 16
MAX_STRING = 16 * 1024
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
)

EventType = Annotated[
    str,
    StringConstraints(
        pattern=r"^(asset|document|claim|custody|device)\.[a-z][a-z0-9_]{0,48}(\.[a-z][a-z0-9_]{0,48})?$"
    ),
]
SubjectId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]


class EventSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    type: EventType
    subject: SubjectId
    payload: dict[str, Any] = Field(default_factory=dict)
    occurred_at: str | None = Field(default=None, max_length=40)


SystemEventType = Annotated[
    str,
    StringConstraints(
        pattern=r"^(asset|document|claim|custody|device|risk)\.[a-z][a-z0-9_]{0,48}(\.[a-z][a-z0-9_]{0,48})?$"
    ),
]


class SystemEventSubmission(EventSubmission):
    """What the ledger's own followers and intakes may append: also `risk.*`, which partners
    cannot write (a partner must never forge a score)."""

    type: SystemEventType


class BatchSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    events: list[EventSubmission] = Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)


@dataclass(frozen=True, kw_only=True, slots=True)
class Prepared:
    """A validated submission with its canonical payload bytes, ready to be sequenced (a plain
    value built from validated fields: no second validation)."""

    type: str
    subject: str
    payload: bytes
    payload_hash: bytes
    occurred_at: datetime | None

    def draft(self, *, event_id: str, tenant: str) -> Draft:
        return Draft(
            id=event_id,
            tenant=tenant,
            type=self.type,
            subject=self.subject,
            payload_hash=self.payload_hash,
            occurred_at=self.occurred_at,
        )


def parse_single(raw: bytes) -> Prepared:
    return prepare(_validate(EventSubmission, parse_strict(raw)), field="")


def parse_batch(raw: bytes) -> list[Prepared]:
    batch = _validate(BatchSubmission, parse_strict(raw))
    return [prepare(e, field=f"events[{i}].") for i, e in enumerate(batch.events)]


def prepare_new_event(event: NewEvent, *, field: str) -> Prepared:
    """A follower's or an intake's event, held to the same rules as a partner's submission."""
    occurred = None if event.occurred_at is None else format_time(event.occurred_at)
    doc = {"type": event.type, "subject": event.subject, "payload": dict(event.payload)}
    if occurred is not None:
        doc["occurred_at"] = occurred
    return prepare(_validate(SystemEventSubmission, doc), field=field)


def prepare(sub: EventSubmission, *, field: str) -> Prepared:
    if lifecycle.governs(sub.type) and sub.type not in lifecycle.TRANSITIONS:
        raise ValidationError(f"unknown asset event {sub.type!r}", field=f"{field}type")
    if not _shape_ok(sub.payload, 1):
        _check_shape(sub.payload, f"{field}payload", depth=1)  # raises, naming the field
    evidence.check_evidence(sub.type, sub.payload, prefix=f"{field}payload")
    payload = canonicalize(sub.payload, field=f"{field}payload", checked=True)  # parse_strict
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"{field}payload is {len(payload)} bytes canonical; the limit is {MAX_PAYLOAD_BYTES}"
        )
    return Prepared(
        type=sub.type,
        subject=sub.subject,
        payload=payload,
        payload_hash=hashlib.sha256(payload).digest(),
        occurred_at=_parse_occurred(sub.occurred_at, f"{field}occurred_at"),
    )


def _validate(model: type[M], value: Any) -> M:
    if not isinstance(value, dict):
        raise ValidationError("request body must be a JSON object", field="body")
    try:
        return model.model_validate(value)
    except pydantic.ValidationError as e:
        issues = [
            FieldIssue(".".join(str(p) for p in err["loc"]) or "body", err["msg"])
            for err in e.errors()
        ]
        raise ValidationError("invalid request", issues=issues) from None


_SCALARS = (int, float, bool, type(None))


def _shape_ok(value: Any, depth: int) -> bool:
    """`_check_shape` without building a path per node: True when it would pass (False when
    unsure: `_check_shape` then decides and names the field)."""
    if depth > MAX_DEPTH:
        return False
    t = type(value)
    if t is str:
        return len(value) <= MAX_STRING
    if t is dict:
        for k, v in value.items():  # a loop, not all(...): no generator per object
            if len(k) > 256 or not _shape_ok(v, depth + 1):
                break
        else:
            return True
        return False
    if t is list:
        return all(_shape_ok(v, depth + 1) for v in value)
    return t in _SCALARS


def _check_shape(value: Any, path: str, *, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValidationError(f"nesting deeper than {MAX_DEPTH} levels", field=path)
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise ValidationError(f"string longer than {MAX_STRING} characters", field=path)
    if isinstance(value, dict):
        for k, v in value.items():
            if len(k) > 256:
                raise ValidationError("object key longer than 256 characters", field=path)
            _check_shape(v, f"{path}.{k}", depth=depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_shape(v, f"{path}[{i}]", depth=depth + 1)


def _parse_occurred(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    if not _RFC3339.fullmatch(value):
        raise ValidationError(
            "expected an RFC 3339 timestamp with an offset, e.g. "
            "2026-11-24T10:00:00Z (at most 6 fractional digits)",
            field=field,
        )
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValidationError("timestamp out of range", field=field) from None

"""The one timestamp format of the ledger: RFC 3339 UTC with exactly six fractional digits."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from proveniq.errors import ValidationError

_RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def format_time(t: datetime) -> str:
    if t.tzinfo is None:
        raise ValueError("naive datetime: ledger timestamps are UTC-aware")
    u = t.astimezone(UTC)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:"
        f"{u.second:02d}.{u.microsecond:06d}Z"
    )


def parse_time(s: str, *, field: str) -> datetime:
    if not isinstance(s, str) or not _RFC3339_UTC.match(s):
        raise ValidationError("expected UTC timestamp YYYY-MM-DDTHH:MM:SS.ffffffZ", field=field)
    try:
        return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError as e:
        raise ValidationError(f"invalid timestamp: {e}", field=field) from e


def utcnow() -> datetime:
    return datetime.now(UTC)

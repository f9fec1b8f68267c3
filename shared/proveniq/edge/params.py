"""Request parameters: query strings and small JSON bodies, strictly parsed into values."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from proveniq.edge.http import Call
from proveniq.errors import ValidationError
from proveniq.log.canonical import parse_strict

_DIGITS = re.compile(r"[0-9]{1,18}")


def opt_int(call: Call, name: str) -> int | None:
    raw = call.request.args.get(name)
    if raw is None or raw == "":
        return None
    if not _DIGITS.fullmatch(raw):
        raise ValidationError("must be a non-negative integer below 10^18", field=name)
    return int(raw)


def req_int(call: Call, name: str) -> int:
    value = opt_int(call, name)
    if value is None:
        raise ValidationError("required", field=name)
    return value


def page_limit(call: Call, *, default: int, maximum: int) -> int:
    limit = opt_int(call, "limit")
    limit = default if limit is None else limit
    if not 1 <= limit <= maximum:
        raise ValidationError(f"limit must be 1-{maximum}", field="limit")
    return limit


def opt_text(call: Call, name: str, pattern: re.Pattern[str]) -> str | None:
    raw = call.request.args.get(name)
    if raw is not None and not pattern.fullmatch(raw):
        raise ValidationError(f"malformed {name}", field=name)
    return raw


def opt_time(call: Call, name: str) -> datetime | None:
    raw = call.request.args.get(name)
    if raw is None:
        return None
    try:
        t = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError("expected an RFC 3339 timestamp", field=name) from None
    if t.tzinfo is None:
        raise ValidationError("timestamp needs a UTC offset", field=name)
    try:
        return t.astimezone(UTC)
    except OverflowError:
        raise ValidationError("timestamp out of range", field=name) from None


def wait_seconds(call: Call, name: str, maximum: float) -> float:
    raw = call.request.args.get(name)
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise ValidationError(f"{name} must be a number of seconds", field=name) from None
    if not 0 <= value <= maximum:
        raise ValidationError(f"{name} must be 0-{maximum:g} seconds", field=name)
    return value


def idempotency_key(call: Call, *, max_length: int) -> str | None:
    """The request's `Idempotency-Key` header (None when absent), 1-`max_length` printable
    characters."""
    key = call.header("Idempotency-Key")
    if key is None:
        return None
    if not key or len(key) > max_length or not key.isprintable():
        raise ValidationError(
            f"Idempotency-Key must be 1-{max_length} printable characters",
            field="Idempotency-Key",
        )
    return key


def json_object(body: bytes, allowed: set[str]) -> dict[str, Any]:
    """A small JSON request object with only the `allowed` keys (strict parsing)."""
    doc = parse_strict(body or b"{}")
    if not isinstance(doc, dict):
        raise ValidationError("request body must be a JSON object", field="body")
    unknown = sorted(doc.keys() - allowed)
    if unknown:
        raise ValidationError(f"unknown fields: {', '.join(unknown)}", field=unknown[0])
    return doc

"""One device telemetry message: parse it, check it is canonical, verify it against its device.

Pure: no I/O. A message on the `device-telemetry` topic carries

    data        RFC 8785 canonical JSON of
                {"device", "counter", "sent_at", "type", "subject", "data"}
    signature   standard base64 of the Ed25519 signature over the exact `data` bytes
    device      the device id (the same as in `data`)

`parse` checks the message on its own (size, canonical bytes, schema, attributes); `verify` checks
it against the registered device: status, signature (current key, or the previous one during a
rotation overlap), counter (strictly above the last accepted one; the same counter with the same
bytes is a `Duplicate` redelivery), `sent_at` within `max_skew` of the time the message reached
Pub/Sub. The outcome is `Accepted`, `Duplicate` or `Rejected(reason)`.

An accepted message becomes one ledger event whose payload keeps the signed bytes as a string
and the signature (`event_payload`), so anyone holding a proof bundle can re-check the device's
own signature (`check_payload`). docs/DEVICES.md has a worked example.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from proveniq.errors import FormatError, SignatureError, ValidationError
from proveniq.intake.devices.registry import ASSET_ID, DEVICE_ID, Device, decode_key, encode_key
from proveniq.log.canonical import canonicalize, parse_strict
from proveniq.log.timefmt import format_time
from proveniq.ports import Message, NewEvent

MAX_MESSAGE_BYTES = 16 * 1024  # the payload (bytes as a JSON string, escaped) stays under 64 KiB
MAX_DEPTH = 8
SIGNATURE_BYTES = 64
DEFAULT_MAX_SKEW = timedelta(minutes=15)
FIELDS = frozenset({"device", "counter", "sent_at", "type", "subject", "data"})
PAYLOAD_FIELDS = frozenset({"device", "counter", "message", "signature", "public_key"})
TYPE = re.compile(r"device\.reading|custody\.[a-z][a-z0-9_]{0,48}")
SENT_AT = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z")

Reason = Literal[
    "oversized",  # data longer than MAX_MESSAGE_BYTES
    "non_canonical",  # data is not the RFC 8785 canonical JSON of a JSON object
    "bad_schema",  # fields missing, extra or of the wrong type or form
    "device_mismatch",  # the `device` attribute is missing or differs from data.device
    "bad_signature",  # missing, malformed, or not by the device's key(s)
    "unknown_device",
    "suspended_device",
    "retired_device",
    "replayed_counter",  # counter not above the last accepted one, with different bytes
    "stale_sent_at",  # sent_at earlier than the publish time minus max_skew
    "future_sent_at",  # sent_at later than the publish time plus max_skew
    "subject_mismatch",  # a smart tag bound to an asset reported another subject
    "lifecycle_conflict",  # the ledger refused the event (asset lifecycle / custody rules)
    "ledger_refused",  # the ledger refused the event as invalid
]
REASONS: tuple[Reason, ...] = Reason.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True, kw_only=True)
class Telemetry:
    """A parsed, canonical, well-formed message (its signature not yet checked)."""

    device: str
    counter: int
    sent_at: datetime
    type: str
    subject: str
    data: Mapping[str, Any]
    raw: bytes  # the exact signed bytes
    signature: bytes

    @property
    def digest(self) -> bytes:
        """SHA-256 of the signed bytes: what tells a redelivery from a replay."""
        return hashlib.sha256(self.raw).digest()

    @property
    def idempotency_key(self) -> str:
        """One ledger append per device and counter, however often the message is delivered."""
        return idempotency_key(self.device, self.counter)


@dataclass(frozen=True)
class Rejected:
    reason: Reason
    detail: str  # why, without the payload
    device: str = ""  # the device the message claims to come from ("" if none)


@dataclass(frozen=True)
class Accepted:
    telemetry: Telemetry
    public_key: bytes  # the key that verified the signature

    def event(self) -> NewEvent:
        t = self.telemetry
        return NewEvent(
            type=t.type,
            subject=t.subject,
            payload=event_payload(t, self.public_key),
            occurred_at=t.sent_at,
        )


@dataclass(frozen=True)
class Duplicate:
    """A redelivery of a message already in the ledger: acknowledge it, append nothing."""

    telemetry: Telemetry


Verdict = Accepted | Duplicate | Rejected


def idempotency_key(device: str, counter: int) -> str:
    return f"device:{device}:{counter}"


def build(
    *,
    device: str,
    counter: int,
    sent_at: datetime,
    type: str,
    subject: str,
    data: Mapping[str, Any],
    sign: Callable[[bytes], bytes],
) -> Message:
    """The message a device sends: canonical bytes, `sign(bytes)` (Ed25519) as the signature."""
    raw = canonicalize(
        {
            "device": device,
            "counter": counter,
            "sent_at": format_time(sent_at),
            "type": type,
            "subject": subject,
            "data": dict(data),
        }
    )
    signature = base64.b64encode(sign(raw)).decode("ascii")
    return Message(data=raw, attributes={"device": device, "signature": signature})


def parse(message: Message) -> Telemetry | Rejected:
    """Check a message on its own: size, canonical bytes, schema, attributes."""
    claimed = message.attributes.get("device", "")
    raw = message.data
    if len(raw) > MAX_MESSAGE_BYTES:
        return Rejected("oversized", f"{len(raw)} bytes; the limit is {MAX_MESSAGE_BYTES}", claimed)
    try:
        value = parse_strict(raw)
        canonical = canonicalize(value, checked=True)
    except (ValidationError, ValueError) as e:  # ValueError: an int beyond 4,300 digits
        return Rejected("non_canonical", f"not canonical JSON: {_message(e)}", claimed)
    if canonical != raw:
        return Rejected("non_canonical", "data differs from its RFC 8785 canonical form", claimed)
    try:
        fields = _fields(value)
    except ValidationError as e:
        return Rejected("bad_schema", f"{e.field}: {e.message}", claimed)
    if claimed != fields["device"]:
        return Rejected("device_mismatch", "attribute device differs from data.device", claimed)
    signature = _signature(message.attributes.get("signature"))
    if signature is None:
        return Rejected("bad_signature", "attribute signature is not base64 of 64 bytes", claimed)
    return Telemetry(raw=raw, signature=signature, **fields)


def verify(
    message: Message | Telemetry,
    device: Device | None,
    *,
    now: datetime,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    seen: bytes | None = None,
) -> Verdict:
    """Check a message against its registered device (None: not registered).

    `now` is when the message reached Pub/Sub (its publish time; the clock if unknown), so a
    redelivery hours later is judged as the first delivery was. `seen` is the digest of the
    message already accepted with this device and counter, if any.
    """
    t = parse(message) if isinstance(message, Message) else message
    if isinstance(t, Rejected):
        return t
    if device is None or device.device_id != t.device:
        return Rejected("unknown_device", "no such device is registered", t.device)
    if seen is not None and seen == t.digest:
        return Duplicate(t)
    replayed = seen is not None  # judged after the signature: a forgery is not a "replay"
    if device.status != "active":
        reason: Reason = "suspended_device" if device.status == "suspended" else "retired_device"
        return Rejected(reason, f"device is {device.status}", t.device)
    key = _verifying_key(t, device.keys_at(now))
    if key is None:
        return Rejected("bad_signature", "signature does not verify with the device key", t.device)
    if replayed:
        return Rejected("replayed_counter", f"counter {t.counter} was used already", t.device)
    if t.counter <= device.last_counter:
        detail = f"counter {t.counter} is not above the last accepted {device.last_counter}"
        return Rejected("replayed_counter", detail, t.device)
    if t.sent_at < now - max_skew:
        return Rejected("stale_sent_at", f"sent_at more than {max_skew} before publish", t.device)
    if t.sent_at > now + max_skew:
        return Rejected("future_sent_at", f"sent_at more than {max_skew} after publish", t.device)
    if device.kind == "smart-tag" and device.asset is not None and t.subject != device.asset:
        return Rejected("subject_mismatch", "subject is not the tag's asset", t.device)
    return Accepted(t, key)


def event_payload(t: Telemetry, public_key: bytes) -> dict[str, Any]:
    """The ledger payload of an accepted message (docs/DEVICES.md, "The ledger event")."""
    return {
        "device": t.device,
        "counter": t.counter,
        "message": t.raw.decode("utf-8"),  # canonical JSON is UTF-8: round-trips exactly
        "signature": base64.b64encode(t.signature).decode("ascii"),
        "public_key": encode_key(public_key),
    }


def check_payload(payload: Any, *, keys: Iterable[bytes] | None = None) -> Telemetry:
    """Re-check a device event's payload (from a proof bundle): the message is canonical, the
    signature verifies with the payload's `public_key`, which must be one of `keys` if given.
    Raises `FormatError` for a malformed payload and `SignatureError` for a bad signature."""
    if not isinstance(payload, Mapping) or set(payload) != PAYLOAD_FIELDS:
        raise FormatError(
            f"expected the fields {', '.join(sorted(PAYLOAD_FIELDS))}", field="payload"
        )
    key = decode_key(payload["public_key"], field="payload.public_key")
    if keys is not None and key not in set(keys):
        raise SignatureError("the signing key is not one of the device's keys", what="device key")
    text = payload["message"]
    if not isinstance(text, str) or not isinstance(payload["signature"], str):
        raise FormatError("message and signature must be strings", field="payload")
    parsed = parse(
        Message(
            data=text.encode("utf-8"),
            attributes={"device": str(payload["device"]), "signature": payload["signature"]},
        )
    )
    if isinstance(parsed, Rejected):
        if parsed.reason == "bad_signature":
            raise SignatureError(parsed.detail, what="device signature")
        raise FormatError(f"{parsed.reason}: {parsed.detail}", field="payload.message")
    if parsed.counter != payload["counter"]:
        raise FormatError("counter differs from the signed message", field="payload.counter")
    if _verifying_key(parsed, (key,)) is None:
        raise SignatureError("the device signature does not verify", what="device signature")
    return parsed


def _fields(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError("must be a JSON object", field="$")
    for name in sorted(FIELDS - value.keys()):
        raise ValidationError("is required", field=name)
    for name in sorted(value.keys() - FIELDS):
        raise ValidationError("unknown field", field=name)
    device, counter, kind, subject = (value[k] for k in ("device", "counter", "type", "subject"))
    if not isinstance(device, str) or not DEVICE_ID.fullmatch(device):
        raise ValidationError(f"must match {DEVICE_ID.pattern}", field="device")
    if not isinstance(counter, int) or isinstance(counter, bool) or counter < 1:
        raise ValidationError("must be an integer >= 1", field="counter")
    if not isinstance(kind, str) or not TYPE.fullmatch(kind):
        raise ValidationError("must be device.reading or custody.<verb>", field="type")
    if not isinstance(subject, str) or not ASSET_ID.fullmatch(subject):
        raise ValidationError(f"must match {ASSET_ID.pattern}", field="subject")
    if not isinstance(value["data"], dict):
        raise ValidationError("must be a JSON object", field="data")
    _check_depth(value["data"])
    return {
        "device": device,
        "counter": counter,
        "sent_at": _sent_at(value["sent_at"]),
        "type": kind,
        "subject": subject,
        "data": value["data"],
    }


def _sent_at(value: Any) -> datetime:
    m = SENT_AT.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise ValidationError(
            "expected RFC 3339 UTC, e.g. 2026-11-24T10:00:00.000Z", field="sent_at"
        )
    try:
        t = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError as e:
        raise ValidationError(f"invalid timestamp: {e}", field="sent_at") from e
    return t.replace(microsecond=int((m.group(2) or "0")[:6].ljust(6, "0")))


def _check_depth(data: Any) -> None:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValidationError(f"nesting deeper than {MAX_DEPTH} levels", field="data")
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)


def _signature(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == SIGNATURE_BYTES else None


def _verifying_key(t: Telemetry, keys: Iterable[bytes]) -> bytes | None:
    for key in keys:
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(t.signature, t.raw)
        except (InvalidSignature, ValueError):
            continue
        return key
    return None


def _message(e: Exception) -> str:
    return e.message if isinstance(e, ValidationError) else str(e)[:200]

"""The device registry's values and the validation of register / patch requests.

Pure: no I/O. A device belongs to one tenant; its id is unique across tenants (a Pub/Sub message
names only the device, so the id alone must determine the tenant). Its public key is an Ed25519
key, exchanged as standard base64 of the 32 raw bytes. A key rotation keeps the previous key
valid until `previous_key_until` (the overlap), so messages signed just before the rotation and
still in flight are accepted.

    status   active <-> suspended;  active | suspended -> retired (final)
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from proveniq.errors import Conflict, ValidationError
from proveniq.log.timefmt import format_time

Kind = Literal["smart-tag", "locker"]
Status = Literal["active", "suspended", "retired"]
KINDS: frozenset[str] = frozenset({"smart-tag", "locker"})
STATUSES: frozenset[str] = frozenset({"active", "suspended", "retired"})

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ASSET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")  # the ledger's subject ids
PUBLIC_KEY_BYTES = 32
DEFAULT_KEY_OVERLAP = timedelta(hours=1)
MAX_KEY_OVERLAP = timedelta(days=30)

_REGISTER_FIELDS = frozenset({"device_id", "kind", "public_key", "asset"})
_PATCH_FIELDS = frozenset({"status", "asset", "public_key", "key_overlap_seconds"})


@dataclass(frozen=True, kw_only=True)
class Device:
    """A registered device and what ingest has seen of it."""

    device_id: str
    tenant: str
    kind: Kind
    public_key: bytes  # 32 raw Ed25519 bytes
    status: Status = "active"
    asset: str | None = None
    previous_key: bytes | None = None
    previous_key_until: datetime | None = None
    created_at: datetime
    updated_at: datetime
    last_counter: int = 0  # highest accepted counter, 0 before the first message
    last_seen: datetime | None = None  # sent_at of the message with the highest counter
    accepted: int = 0
    rejected: Mapping[str, int] = field(default_factory=dict)  # reason -> count

    @property
    def actor(self) -> str:
        """The ledger actor of this device's events."""
        return f"device:{self.device_id}"

    def keys_at(self, t: datetime) -> tuple[bytes, ...]:
        """The public keys a message published at `t` may be signed with."""
        until = self.previous_key_until
        if self.previous_key is not None and until is not None and t < until:
            return (self.public_key, self.previous_key)
        return (self.public_key,)

    def to_json(self) -> dict[str, Any]:
        """The API's view of the device (the one `GET /v1/devices/{id}` answers)."""
        return {
            "device_id": self.device_id,
            "kind": self.kind,
            "public_key": encode_key(self.public_key),
            "previous_key": encode_key(self.previous_key) if self.previous_key else None,
            "previous_key_until": _time(self.previous_key_until),
            "asset": self.asset,
            "status": self.status,
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
            "last_counter": self.last_counter,
            "last_seen": _time(self.last_seen),
            "accepted": self.accepted,
            "rejected": dict(sorted(self.rejected.items())),
        }


@dataclass(frozen=True, kw_only=True)
class DevicePatch:
    """A validated `PATCH /v1/devices/{id}` body; `None` fields are left unchanged."""

    status: Status | None = None
    asset: str | None = None
    clear_asset: bool = False  # `"asset": null` detaches the device from its asset
    public_key: bytes | None = None
    key_overlap: timedelta = DEFAULT_KEY_OVERLAP


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def decode_key(value: Any, *, field: str = "public_key") -> bytes:
    """Standard base64 of exactly 32 bytes (an Ed25519 public key), or ValidationError."""
    if not isinstance(value, str) or not value:
        raise ValidationError("expected standard base64 of a 32-byte Ed25519 key", field=field)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValidationError("not standard base64", field=field) from e
    if len(raw) != PUBLIC_KEY_BYTES or encode_key(raw) != value:
        raise ValidationError(
            f"an Ed25519 public key is {PUBLIC_KEY_BYTES} bytes (44 base64 characters)",
            field=field,
        )
    return raw


def parse_register(body: Any, *, tenant: str, now: datetime) -> Device:
    """Validate a `POST /v1/devices` body into a new active device of `tenant`."""
    d = _object(body, _REGISTER_FIELDS)
    for name in ("device_id", "kind", "public_key"):
        if name not in d:
            raise ValidationError(f"{name} is required", field=name)
    return Device(
        device_id=_matching(d["device_id"], DEVICE_ID, "device_id"),
        tenant=tenant,
        kind=cast(Kind, _one_of(d["kind"], KINDS, "kind")),
        public_key=decode_key(d["public_key"]),
        asset=None if d.get("asset") is None else _matching(d["asset"], ASSET_ID, "asset"),
        created_at=now,
        updated_at=now,
    )


def parse_patch(body: Any) -> DevicePatch:
    """Validate a `PATCH /v1/devices/{id}` body (at least one field)."""
    d = _object(body, _PATCH_FIELDS)
    if not d:
        raise ValidationError("nothing to change", field="body")
    overlap = DEFAULT_KEY_OVERLAP
    if "key_overlap_seconds" in d:
        if "public_key" not in d:
            raise ValidationError("only meaningful with public_key", field="key_overlap_seconds")
        seconds = d["key_overlap_seconds"]
        limit = int(MAX_KEY_OVERLAP.total_seconds())
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not 0 <= seconds <= limit:
            raise ValidationError(
                f"expected an integer from 0 to {limit}", field="key_overlap_seconds"
            )
        overlap = timedelta(seconds=seconds)
    status = d.get("status")
    if "status" in d and status is None:
        raise ValidationError("must not be null", field="status")
    asset = d.get("asset")
    return DevicePatch(
        status=None if status is None else cast(Status, _one_of(status, STATUSES, "status")),
        asset=None if asset is None else _matching(asset, ASSET_ID, "asset"),
        clear_asset="asset" in d and asset is None,
        public_key=None if "public_key" not in d else decode_key(d["public_key"]),
        key_overlap=overlap,
    )


def apply_patch(device: Device, patch: DevicePatch, *, now: datetime) -> Device:
    """The device after `patch`, or Conflict for an impossible change (a retired device)."""
    if device.status == "retired":
        raise Conflict(f"device {device.device_id} is retired; register a new device id")
    changed = replace(device, updated_at=now)
    if patch.status is not None:
        changed = replace(changed, status=patch.status)
    if patch.clear_asset:
        changed = replace(changed, asset=None)
    elif patch.asset is not None:
        changed = replace(changed, asset=patch.asset)
    if patch.public_key is not None and patch.public_key != device.public_key:
        changed = replace(
            changed,
            public_key=patch.public_key,
            previous_key=device.public_key if patch.key_overlap else None,
            previous_key_until=now + patch.key_overlap if patch.key_overlap else None,
        )
    return changed


def _object(body: Any, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ValidationError("request body must be a JSON object", field="body")
    for name in sorted(body.keys() - allowed):
        raise ValidationError(f"unknown field; allowed: {', '.join(sorted(allowed))}", field=name)
    return body


def _matching(value: Any, pattern: re.Pattern[str], name: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValidationError(f"must match {pattern.pattern}", field=name)
    return value


def _one_of(value: Any, allowed: frozenset[str], name: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(f"must be one of {', '.join(sorted(allowed))}", field=name)
    return value


def _time(t: datetime | None) -> str | None:
    return None if t is None else format_time(t)

"""A ledger entry and its leaf bytes.

The leaf is the RFC 8785 canonical JSON of the entry's fields *without* the payload (only its
SHA-256 is in the leaf), so a payload can be erased later without breaking any proof:

    leaf_bytes = JCS({"v": 1, "seq", "id", "tenant", "type", "subject",
                      "payload_hash", "occurred_at", "recorded_at", "prev"})
    leaf_hash  = SHA-256(0x00 || leaf_bytes)

Hashes are lowercase hex in the JSON form; timestamps are `proveniq.timefmt` strings.
`docs/FORMAT.md` gives the exact format with a worked example.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring as _string  # C; TypeError unless a str
from typing import Any

from proveniq.errors import ValidationError
from proveniq.log import merkle
from proveniq.log.canonical import canonicalize
from proveniq.log.timefmt import format_time, parse_time

ENTRY_VERSION = 1
ZERO_HASH = bytes(32)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
LEAF_FIELDS = frozenset(
    {
        "v",
        "seq",
        "id",
        "tenant",
        "type",
        "subject",
        "payload_hash",
        "occurred_at",
        "recorded_at",
        "prev",
    }
)


@dataclass(frozen=True, kw_only=True)
class Entry:
    seq: int
    id: str
    tenant: str
    type: str
    subject: str
    payload_hash: bytes
    recorded_at: datetime
    prev: bytes
    occurred_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "v": ENTRY_VERSION,
            "seq": self.seq,
            "id": self.id,
            "tenant": self.tenant,
            "type": self.type,
            "subject": self.subject,
            "payload_hash": self.payload_hash.hex(),
            "occurred_at": format_time(self.occurred_at) if self.occurred_at else None,
            "recorded_at": format_time(self.recorded_at),
            "prev": self.prev.hex(),
        }

    def leaf_bytes(self) -> bytes:
        return canonicalize(self.to_json())

    def leaf_hash(self) -> bytes:
        """SHA-256(0x00 || leaf_bytes), computed once per instance."""
        cached: bytes | None = self.__dict__.get("_leaf_hash")
        if cached is None:
            cached = merkle.leaf_hash(self.leaf_bytes())
            object.__setattr__(self, "_leaf_hash", cached)
        return cached

    @classmethod
    def from_json(cls, d: Any, *, field: str = "entry") -> Entry:
        """Strict inverse of `to_json`: exact key set, exact types, canonical formats."""
        if not isinstance(d, dict):
            raise ValidationError("entry must be a JSON object", field=field)
        missing, extra = LEAF_FIELDS - d.keys(), d.keys() - LEAF_FIELDS
        if missing or extra:
            names = ", ".join(sorted(missing | extra))
            raise ValidationError(f"entry fields do not match version 1: {names}", field=field)
        if d["v"] != ENTRY_VERSION or isinstance(d["v"], bool):
            raise ValidationError(f"unsupported entry version {d['v']!r}", field=f"{field}.v")
        seq = d["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValidationError("seq must be a non-negative integer", field=f"{field}.seq")
        for name in ("id", "tenant", "type", "subject"):
            if not isinstance(d[name], str) or not d[name]:
                raise ValidationError(f"{name} must be a non-empty string", field=f"{field}.{name}")
        occurred = d["occurred_at"]
        return cls(
            seq=seq,
            id=d["id"],
            tenant=d["tenant"],
            type=d["type"],
            subject=d["subject"],
            payload_hash=hex32(d["payload_hash"], field=f"{field}.payload_hash"),
            occurred_at=None
            if occurred is None
            else parse_time(occurred, field=f"{field}.occurred_at"),
            recorded_at=parse_time(d["recorded_at"], field=f"{field}.recorded_at"),
            prev=hex32(d["prev"], field=f"{field}.prev"),
        )


def hex32(value: Any, *, field: str) -> bytes:
    """Decode a lowercase-hex SHA-256 value."""
    if not isinstance(value, str) or not _HEX64.match(value):
        raise ValidationError("expected 64 lowercase hex characters", field=field)
    return bytes.fromhex(value)


@dataclass(frozen=True)
class LeafTemplate:
    """The leaf bytes of an entry split around the fields only known under the write lock.

    In RFC 8785 key order the lock-dependent keys (`prev`, `recorded_at`, `seq`) are adjacent,
    so the canonical bytes are `head + "prev":..,"recorded_at":..,"seq":N + tail`, where head and
    tail are produced by the `rfc8785` package before the lock is taken. The spliced values are
    ours and plain ASCII (64 hex digits, a fixed-format timestamp, a non-negative integer), so
    `fill` equals `canonicalize(entry.to_json())` byte for byte (a property test checks it).
    """

    head: bytes
    tail: bytes

    @classmethod
    def of(
        cls,
        *,
        id: str,
        tenant: str,
        type: str,
        subject: str,
        payload_hash: bytes,
        occurred_at: datetime | None,
    ) -> LeafTemplate:
        # Written directly in RFC 8785 key order, strings escaped by the C JSON encoder (its
        # escapes are RFC 8785's); anything that is not plain UTF-8 text goes through
        # `canonicalize`, which refuses what it cannot encode.
        occurred = "null" if occurred_at is None else f'"{format_time(occurred_at)}"'
        try:
            head = (
                f'{{"id":{_string(id)},"occurred_at":{occurred},'
                f'"payload_hash":"{payload_hash.hex()}",'
            ).encode()
            tail = (
                f',"subject":{_string(subject)},"tenant":{_string(tenant)},'
                f'"type":{_string(type)},"v":{ENTRY_VERSION}}}'
            ).encode()
        except (UnicodeEncodeError, TypeError):
            head = (
                canonicalize(
                    {
                        "id": id,
                        "occurred_at": format_time(occurred_at) if occurred_at else None,
                        "payload_hash": payload_hash.hex(),
                    },
                    checked=True,
                )[:-1]
                + b","
            )
            tail = (
                b","
                + canonicalize(
                    {"subject": subject, "tenant": tenant, "type": type, "v": ENTRY_VERSION},
                    checked=True,
                )[1:]
            )
        return cls(head=head, tail=tail)

    def fill(self, *, seq: int, prev: bytes, recorded_at: str) -> bytes:
        """`recorded_at` already in `timefmt.format_time` form (shared by a whole batch)."""
        middle = f'"prev":"{prev.hex()}","recorded_at":"{recorded_at}","seq":{seq}'
        return self.head + middle.encode("ascii") + self.tail

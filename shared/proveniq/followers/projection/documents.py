"""What one ledger event changes in the apps' documents, and how a change merges. Pure: no I/O.

Three document kinds live under each tenant (docs/PROJECTIONS.md gives the shapes):

    orgs/{tenant}/assets/{asset}    lifecycle status, custody holder, last device reading
    orgs/{tenant}/claims/{claim}    claim status, risk score and level, review state
    orgs/{tenant}/devices/{device}  last seen, accepted / rejected counts

A document is a set of *field groups*, each a map stored with the `seq` of the event that last
wrote it. `merge` replaces a group only with a strictly newer seq, so a late or redelivered event
never takes a document back; counters (`counts`) are incremented once per event, which the sink
guarantees with a per-event marker (`Change.marker`). `sealed` says whether a signed checkpoint
covers the document's last event (its seq is below the checkpoint's tree size).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from proveniq.ledger import lifecycle
from proveniq.log.entry import Entry

Kind = Literal["assets", "claims", "devices"]
KINDS: tuple[Kind, ...] = ("assets", "claims", "devices")
SEALABLE: frozenset[Kind] = frozenset({"assets", "claims"})

# The asset lifecycle of the Core manual (§4.1), as proveniq.ledger.lifecycle.TRANSITIONS: the
# status each asset.* event leads to; asset.updated keeps the status. The ledger refuses
# impossible transitions before anything is written, so the projection only needs the target.
ASSET_STATUS: Mapping[str, str] = lifecycle.TARGET_STATUS
CLAIM_STATUS: Mapping[str, str] = {
    "claim.created": "OPEN",
    "claim.submitted": "SUBMITTED",
    "claim.approved": "APPROVED",
    "claim.denied": "DENIED",
    "claim.rejected": "DENIED",
    "claim.paid": "PAID",
    "claim.closed": "CLOSED",
    "claim.reopened": "OPEN",
}
# docs/EVENTS.md: a claim's review state is its latest risk.scored or risk.reviewed.
REVIEW_STATE: Mapping[str, str] = {
    "approve": "approved",
    "reject": "rejected",
    "escalate": "escalated",
}
DEVICE_REJECTED_TYPES = frozenset({"device.rejected", "device.message_rejected"})
# Same shape as a ledger subject; an id taken from a payload that does not match is ignored.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_INT64 = 2**63
MAX_READING_VALUES = 20
MAX_TEXT = 256
MAX_MESSAGE = 65_536
_NOT_READINGS = frozenset({"device_id", "device", "signature", "public_key", "message"})


@dataclass(frozen=True, kw_only=True)
class FieldGroup:
    """Fields written together, stored as `{**values, "seq": seq}` under `name`."""

    name: str
    seq: int
    values: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class DocUpdate:
    tenant: str
    kind: Kind
    id: str
    groups: tuple[FieldGroup, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
    seal_size: int = 0  # a signed checkpoint of this tree size exists (0: none known)

    @property
    def path(self) -> str:
        return doc_path(self.tenant, self.kind, self.id)


@dataclass(frozen=True, kw_only=True)
class Change:
    """Everything one ledger event changes. `marker` (the leaf hash) is recorded by the sink with
    the documents, in one atomic write, so the event's counters are applied at most once."""

    tenant: str
    seq: int
    marker: str
    updates: tuple[DocUpdate, ...]


def doc_path(tenant: str, kind: Kind, doc_id: str) -> str:
    return f"orgs/{tenant}/{kind}/{doc_id}"


def change_for(entry: Entry, payload: Mapping[str, Any] | None) -> Change:
    """The document updates of one ledger event (an empty tuple if it concerns no document)."""
    p: Mapping[str, Any] = payload or {}
    t = entry.type
    at = entry.recorded_at
    last = FieldGroup(
        name="last_event",
        seq=entry.seq,
        values={
            "id": entry.id,
            "type": t,
            "subject": entry.subject,
            "recorded_at": at,
            "occurred_at": entry.occurred_at,
        },
    )
    updates: list[DocUpdate] = []
    device = _ref(p, "device_id", "device") or (entry.subject if t.startswith("device.") else None)
    asset = _asset_of(entry, p)
    claim = _claim_of(entry, p)

    if asset is not None:
        groups = [last]
        status = ASSET_STATUS.get(t)
        if status is not None:
            groups.append(_group("status", entry, value=status, event_type=t))
        if t.startswith("custody."):
            holder = _text(p.get("to", p.get("holder", p.get("locker"))))
            if holder is not None:
                groups.append(
                    _group("custody", entry, holder=holder, previous=_text(p.get("from")))
                )
        if device is not None:
            groups.append(_group("reading", entry, device=device, event_type=t, values=_scalars(p)))
        counts = {"events": 1}
        if t.startswith("document.") and claim is None:
            counts["documents"] = 1 if t == "document.uploaded" else 0
        updates.append(_update(entry.tenant, "assets", asset, groups, counts))

    if claim is not None:
        groups = [last]
        status = CLAIM_STATUS.get(t)
        if isinstance(p.get("status"), str) and t.startswith("claim."):
            status = _text(p["status"])
        if status is not None:
            groups.append(_group("status", entry, value=status, event_type=t))
        linked = _ref(p, "asset", "asset_id")
        if t == "claim.created" and linked is not None:
            groups.append(_group("asset", entry, value=linked))
        if t == "risk.scored":
            review_required = p.get("review_required") is True
            groups.append(
                _group(
                    "risk",
                    entry,
                    score=_number(p.get("score")),
                    level=_text(p.get("level")),
                    review_required=review_required,
                )
            )
            state = "pending" if review_required else "not_required"
            groups.append(_group("review", entry, state=state, decision=None))
        if t == "risk.reviewed":
            decision = _text(p.get("decision"))
            state = REVIEW_STATE.get(decision or "", "reviewed")
            groups.append(_group("review", entry, state=state, decision=decision))
        counts = {"events": 1}
        if t == "document.uploaded":
            counts["documents"] = 1
        updates.append(_update(entry.tenant, "claims", claim, groups, counts))

    if device is not None:
        rejected = t in DEVICE_REJECTED_TYPES or p.get("accepted") is False
        seen = _group("last_seen", entry, event_type=t, subject=entry.subject, at=at)
        counts = {"events": 1, "rejected" if rejected else "accepted": 1}
        updates.append(_update(entry.tenant, "devices", device, [last, seen], counts))

    return Change(
        tenant=entry.tenant, seq=entry.seq, marker=entry.leaf_hash().hex(), updates=tuple(updates)
    )


def mark_sealed(tenant: str, kind: Kind, doc_id: str, tree_size: int) -> DocUpdate:
    """A checkpoint of `tree_size` exists: the document is sealed if its last event is below."""
    return DocUpdate(tenant=tenant, kind=kind, id=doc_id, seal_size=tree_size)


def merge(
    current: Mapping[str, Any] | None, update: DocUpdate, *, sealed_size: int = 0
) -> dict[str, Any] | None:
    """The document after `update`, or None if nothing changes (an older or repeated event).

    Group by group: a group is replaced only by a strictly newer seq. `sealed_size` is the
    largest checkpoint size the caller knows of for the tenant."""
    if current is None and not update.groups:
        return None  # a seal for a document that does not exist yet
    doc: dict[str, Any] = (
        dict(current)
        if current is not None
        else {"kind": update.kind[:-1], "tenant": update.tenant, "id": update.id, "counts": {}}
    )
    changed = current is None
    last_changed = False
    for g in update.groups:
        old = doc.get(g.name)
        old_seq = old.get("seq") if isinstance(old, Mapping) else None
        if isinstance(old_seq, int) and old_seq >= g.seq:
            continue
        doc[g.name] = {**g.values, "seq": g.seq}
        changed = True
        if g.name == "last_event":
            doc["last_seq"] = g.seq  # flat copy: queries cannot use nested paths everywhere
            last_changed = True
    if update.counts:  # the sink applies each event's counters once (its marker)
        counts = dict(doc.get("counts") or {})
        for name, n in update.counts.items():
            counts[name] = int(counts.get(name, 0)) + n
        doc["counts"] = counts
        changed = True
    if update.kind in SEALABLE:
        size = max(sealed_size, update.seal_size)
        last_seq = doc.get("last_seq")
        covered = isinstance(last_seq, int) and last_seq < size
        sealed = covered if last_changed else (doc.get("sealed") is True or covered)
        if doc.get("sealed") is not sealed:
            doc["sealed"] = sealed
            changed = True
    return doc if changed else None


def _update(
    tenant: str, kind: Kind, doc_id: str, groups: list[FieldGroup], counts: dict[str, int]
) -> DocUpdate:
    return DocUpdate(
        tenant=tenant,
        kind=kind,
        id=doc_id,
        groups=tuple(groups),
        counts={k: v for k, v in counts.items() if v},
    )


def _group(name: str, entry: Entry, **values: Any) -> FieldGroup:
    values.setdefault("at", entry.recorded_at)
    return FieldGroup(name=name, seq=entry.seq, values=values)


def _asset_of(entry: Entry, p: Mapping[str, Any]) -> str | None:
    t = entry.type
    if t.startswith(("asset.", "custody.")):
        return entry.subject
    if t.startswith("document."):
        return None if _claim_named(entry, p) else entry.subject
    if t.startswith("device."):
        # A device event's subject is the device, unless the payload names the device: then
        # the subject is the asset it read.
        named = _ref(p, "asset", "asset_id")
        if named is None and _ref(p, "device_id", "device") is not None:
            return entry.subject
        return named
    return None


def _claim_of(entry: Entry, p: Mapping[str, Any]) -> str | None:
    t = entry.type
    if t.startswith("claim."):
        return entry.subject
    if t.startswith(("risk.", "document.")):
        return _claim_named(entry, p)
    return None


def _claim_named(entry: Entry, p: Mapping[str, Any]) -> str | None:
    """The claim a document or risk event belongs to: named by the payload, else the subject
    when it is a claim id (`clm_` prefix, the Core manual's id convention) or a risk event's."""
    named = _ref(p, "claim_id", "claim")
    if named is not None:
        return named
    if entry.subject.startswith("clm_") or entry.type.startswith("risk."):
        return entry.subject
    return None


def _ref(p: Mapping[str, Any], *keys: str) -> str | None:
    for k in keys:
        v = p.get(k)
        if isinstance(v, str) and _ID.match(v):
            return v
    return None


def _text(v: Any) -> str | None:
    return v[:MAX_TEXT] if isinstance(v, str) else None


def _number(v: Any) -> int | float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if -_INT64 <= v < _INT64 else None
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    return None


def _scalars(p: Mapping[str, Any]) -> dict[str, Any]:
    """The reading's scalar values, bounded, in a form Firestore stores as given: a device
    intake's signed `message` (JSON text, docs/DEVICES.md) gives its `data`; else the payload's
    `reading` map, else the payload itself."""
    source: Mapping[str, Any] = p
    message = p.get("message")
    if isinstance(message, str) and len(message) <= MAX_MESSAGE:
        try:
            signed = json.loads(message)
        except ValueError:
            signed = None
        if isinstance(signed, dict) and isinstance(signed.get("data"), dict):
            source = signed["data"]
    elif isinstance(p.get("reading"), Mapping):
        source = p["reading"]
    out: dict[str, Any] = {}
    for k in sorted(source):
        if len(out) >= MAX_READING_VALUES:
            break
        if not isinstance(k, str) or k in _NOT_READINGS or "." in k:
            continue
        v = source[k]
        if isinstance(v, bool) or v is None:
            out[k] = v
        elif isinstance(v, int | float):
            n = _number(v)
            if n is not None:
                out[k] = n
        elif isinstance(v, str):
            out[k] = v[:MAX_TEXT]
        elif isinstance(v, datetime):
            out[k] = v
    return out

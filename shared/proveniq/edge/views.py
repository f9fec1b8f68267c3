"""How ledger values look on the wire: event views, write acknowledgements, bundle replies."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from proveniq.edge.http import Reply
from proveniq.ledger.proofs import Pending
from proveniq.log.bundle import Bundle
from proveniq.log.entry import Entry
from proveniq.log.timefmt import format_time
from proveniq.ports import StoredEvent

# Tenant data (events, payloads, bundles, which carry the payload) is never cached: an erased
# payload must not outlive its erasure in a cache. Checkpoints and proofs between them are
# payload-free and immutable, and are cached publicly (edge/proofs.py).
NO_STORE = {"Cache-Control": "no-store"}


def proof_url(event_id: str) -> str:
    return f"/v1/events/{event_id}/proof"


def acknowledgement(e: Entry) -> dict[str, Any]:
    """The 201 body of a sequenced event."""
    return {
        "id": e.id,
        "seq": e.seq,
        "leaf_hash": e.leaf_hash().hex(),
        "recorded_at": _recorded(e.recorded_at),
        "proof_url": proof_url(e.id),
    }


_last_recorded: tuple[datetime, str] | None = None


def _recorded(t: datetime) -> str:
    """`format_time(t)`, formatted once for the many entries of a batch (one recorded_at)."""
    global _last_recorded
    last = _last_recorded
    if last is None or last[0] is not t:
        last = _last_recorded = (t, format_time(t))
    return last[1]


def event_view(ev: StoredEvent) -> dict[str, Any]:
    e = ev.entry
    return {
        "id": e.id,
        "seq": e.seq,
        "type": e.type,
        "subject": e.subject,
        "payload": None if ev.payload is None else json.loads(ev.payload),
        "payload_erased": ev.payload is None,
        "payload_hash": e.payload_hash.hex(),
        "occurred_at": format_time(e.occurred_at) if e.occurred_at else None,
        "recorded_at": format_time(e.recorded_at),
        "leaf_hash": e.leaf_hash().hex(),
        "prev": e.prev.hex(),
        "proof_url": proof_url(e.id),
    }


def event_page(events: Sequence[StoredEvent], limit: int) -> Reply:
    items = [event_view(ev) for ev in events]
    meta: dict[str, Any] = {"limit": limit, "count": len(items)}
    meta["next_cursor"] = str(events[-1].entry.seq) if len(events) == limit else None
    return Reply(data=items, meta=meta, headers=NO_STORE)


def pending_view(p: Pending) -> dict[str, Any]:
    return {
        "status": "pending",
        "seq": p.seq,
        "published_size": p.size,
        "message": "sequenced; not yet covered by a published checkpoint",
    }


def bundle_reply(result: Bundle | Pending, *, pinned: bool) -> Reply:
    if isinstance(result, Pending):
        return Reply(
            status=202, headers={"Retry-After": "1", **NO_STORE}, data=pending_view(result)
        )
    return Reply(data=result.to_json(), headers=NO_STORE)

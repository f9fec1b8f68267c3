"""Outbox relay: publish committed events to `ledger-events`, then mark them sent.

The write path publishes right after commit; anything left unsent (a crash between commit and
publish, Pub/Sub unavailable) is swept later. Delivery is at least once: consumers dedupe by
event id (the `event_id` attribute).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from proveniq.errors import Unavailable
from proveniq.ports import Message, Publisher
from proveniq.store import LedgerStore, StoredEvent

log = logging.getLogger("proveniq.relay")


def message_for(ev: StoredEvent) -> Message:
    e = ev.entry
    doc = {
        "entry": e.to_json(),
        "leaf_hash": e.leaf_hash().hex(),
        "payload": None if ev.payload is None else json.loads(ev.payload),
    }
    return Message(
        data=json.dumps(doc, separators=(",", ":")).encode(),
        attributes={"event_id": e.id, "tenant": e.tenant, "type": e.type, "seq": str(e.seq)},
        ordering_key=f"{e.tenant}/{e.subject}",
    )


class Relay:
    def __init__(self, *, store: LedgerStore, publisher: Publisher, topic: str) -> None:
        self.store = store
        self.publisher = publisher
        self.topic = topic

    def publish(self, events: Sequence[StoredEvent]) -> bool:
        """Publish and mark; False (logged, left for the sweep) if Pub/Sub is unavailable."""
        if not events:
            return True
        try:
            self.publisher.publish(self.topic, [message_for(ev) for ev in events])
        except Unavailable as e:
            log.warning("publish deferred to the outbox sweep: %s", e.message)
            return False
        self.store.mark_published([ev.entry.seq for ev in events])
        return True

    def sweep(self, *, batch: int = 500, min_age_seconds: float = 0) -> int:
        """Publish everything still unsent; returns how many were published."""
        total = 0
        while True:
            pending = self.store.unpublished(limit=batch, min_age_seconds=min_age_seconds)
            if not pending or not self.publish(pending):
                return total
            total += len(pending)
            if len(pending) < batch:
                return total

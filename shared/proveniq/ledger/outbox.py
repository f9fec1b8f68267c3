"""The outbox and its relay: send committed events to the Pub/Sub topic `ledger-events`, then
mark their outbox rows as sent.

Sequencing relays right after commit; anything left unsent (a crash between commit and send,
Pub/Sub unavailable) is swept later. Delivery is at least once: consumers dedupe by
event id (the `event_id` attribute).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from proveniq.errors import Unavailable, ValidationError
from proveniq.log.canonical import sha256_canonical
from proveniq.log.entry import Entry
from proveniq.ports import Bus, Message, Outbox, StoredEvent

log = logging.getLogger("proveniq.relay")
MARK_BATCH_SECONDS = 0.05
MARK_BATCH_MAX = 5000


def message_for(ev: StoredEvent) -> Message:
    """The event as a `ledger-events` message. The stored payload is its canonical JSON text
    (what payload_hash commits to), so it is embedded as is rather than parsed and re-encoded."""
    e = ev.entry
    data = b"".join(
        (
            b'{"entry":',
            json.dumps(e.to_json(), separators=(",", ":")).encode(),
            b',"leaf_hash":"',
            e.leaf_hash().hex().encode(),
            b'","payload":',
            b"null" if ev.payload is None else ev.payload,
            b"}",
        )
    )
    return Message(
        data=data,
        attributes={"event_id": e.id, "tenant": e.tenant, "type": e.type, "seq": str(e.seq)},
        ordering_key=f"{e.tenant}/{e.subject}",
    )


def decode_message(data: bytes) -> tuple[Entry, dict[str, Any] | None]:
    """The inverse of `message_for`: the entry and its payload (None if erased). A malformed
    message (permanent: acknowledge it) raises `ValidationError` naming the field."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValidationError(f"not a JSON ledger-events message: {e}", field="data") from e
    if not isinstance(doc, dict):
        raise ValidationError("a ledger-events message is a JSON object", field="data")
    entry = Entry.from_json(doc.get("entry"), field="entry")
    if doc.get("leaf_hash") != entry.leaf_hash().hex():
        raise ValidationError("leaf_hash does not match the entry", field="leaf_hash")
    payload = doc.get("payload")
    if payload is not None and not isinstance(payload, dict):
        raise ValidationError("payload must be an object or null", field="payload")
    if payload is not None and sha256_canonical(payload) != entry.payload_hash:
        # a follower acts only on the payload the ledger committed to
        raise ValidationError("payload does not match the entry's payload_hash", field="payload")
    return entry, payload


class Relay:
    """Relays after commit. Marking rows as sent is batched on a background thread: a mark
    lost in a crash only causes a re-send by the sweep, never a lost event."""

    def __init__(
        self,
        *,
        outbox: Outbox,
        bus: Bus,
        topic: str,
        decorate: Callable[[dict[str, str]], dict[str, str]] | None = None,
    ) -> None:
        self.outbox = outbox
        self.bus = bus
        self.decorate = decorate  # adds attributes to each message (the trace context)
        self.topic = topic
        # seqs to mark, or a flush's Event, set once everything queued before it is marked
        self._marks: queue.SimpleQueue[list[int] | threading.Event] = queue.SimpleQueue()
        self._marker: threading.Thread | None = None
        self._lock = threading.Lock()

    def relay(self, events: Sequence[StoredEvent], *, mark_now: bool = False) -> bool:
        """Send and mark; False (logged, left for the sweep) if Pub/Sub is unavailable."""
        if not events:
            return True
        try:
            self.bus.send(self.topic, [self._message(ev) for ev in events])
        except Unavailable as e:
            log.warning("relay deferred to the outbox sweep: %s", e.message)
            return False
        seqs = [ev.entry.seq for ev in events]
        if mark_now:
            self.outbox.mark_relayed(seqs)
        else:
            self._ensure_marker()
            self._marks.put(seqs)
        return True

    def _message(self, ev: StoredEvent) -> Message:
        m = message_for(ev)
        if self.decorate is None:
            return m
        return Message(
            data=m.data, attributes=self.decorate(dict(m.attributes)), ordering_key=m.ordering_key
        )

    def flush_marks(self, timeout: float = 5.0) -> None:
        """Mark everything queued so far, including a batch the marker thread is writing
        (shutdown, tests): the marker marks in queue order, so once it reaches this flush's
        Event every earlier mark is written."""
        with self._lock:
            running = self._marker is not None and self._marker.is_alive()
        if running:
            done = threading.Event()
            self._marks.put(done)
            if done.wait(timeout):
                return
        batch: list[int] = []
        while True:
            try:
                item = self._marks.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, threading.Event):
                item.set()
            else:
                batch += item
        self.outbox.mark_relayed(batch)

    def _ensure_marker(self) -> None:
        with self._lock:
            if self._marker is None or not self._marker.is_alive():
                self._marker = threading.Thread(
                    target=self._mark_loop, name="outbox-marker", daemon=True
                )
                self._marker.start()

    def _mark_loop(self) -> None:
        while True:
            batch: list[int] = []
            flushes: list[threading.Event] = []
            item = self._marks.get()
            deadline = time.monotonic() + MARK_BATCH_SECONDS
            while True:
                if isinstance(item, threading.Event):
                    flushes.append(item)
                    break  # a flush waits: write what is queued before it now
                batch += item
                if len(batch) >= MARK_BATCH_MAX or time.monotonic() >= deadline:
                    break
                try:
                    item = self._marks.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
            try:
                self.outbox.mark_relayed(batch)
            except Exception:  # the sweep re-sends whatever stays unmarked
                log.warning("could not mark %d outbox rows as relayed", len(batch), exc_info=True)
            for f in flushes:
                f.set()

    def sweep(self, *, batch: int = 500, min_age_seconds: float = 0) -> int:
        """Relay everything still unsent; returns how many were sent."""
        total = 0
        while True:
            pending = self.outbox.unrelayed(limit=batch, min_age_seconds=min_age_seconds)
            if not pending or not self.relay(pending, mark_now=True):
                return total
            total += len(pending)
            if len(pending) < batch:
                return total

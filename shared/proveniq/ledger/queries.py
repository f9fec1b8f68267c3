"""Queries: events by id, by leaf hash, filtered pages, a subject's history. Tenant-scoped."""

from __future__ import annotations

from proveniq.errors import NotFound
from proveniq.ports import EventFilter, LedgerReader, StoredEvent


class Queries:
    def __init__(self, *, reader: LedgerReader) -> None:
        self.reader = reader

    def event(self, tenant: str | None, event_id: str) -> StoredEvent:
        with self.reader.snapshot() as view:
            ev = view.event(tenant, event_id)
        if ev is None:
            raise NotFound(f"event {event_id} not found")
        return ev

    def event_by_leaf(self, tenant: str | None, leaf_hash: bytes) -> StoredEvent:
        with self.reader.snapshot() as view:
            ev = view.event_by_leaf(tenant, leaf_hash)
        if ev is None:
            raise NotFound("no event with that leaf hash")
        return ev

    def events(self, f: EventFilter) -> list[StoredEvent]:
        """A page in seq order; the next page starts after the last seq returned."""
        with self.reader.snapshot() as view:
            return view.events(f)

    def subject_history(
        self, tenant: str | None, subject: str, *, after_seq: int | None, limit: int
    ) -> list[StoredEvent]:
        page = self.events(
            EventFilter(tenant=tenant, subject=subject, after_seq=after_seq, limit=limit)
        )
        if not page and after_seq is None:
            raise NotFound(f"no events for subject {subject}")
        return page

"""Rebuild the projection from the ledger (`proveniq project --rebuild`). Pure: no I/O.

`fold` applies every event, in seq order, to empty documents and then the latest checkpoint
size: the result equals what the follower produces from the same events delivered in any order,
once, plus a seal of that size. `rebuild` writes it through a `RebuildTarget`, one tenant at a
time, recording the last seq it covered so the follower skips events already included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from proveniq.followers.projection.documents import change_for
from proveniq.followers.projection.sink import Document, MemorySink, RebuildTarget, TenantState
from proveniq.log.entry import Entry

Progress = Callable[[str, int], None]  # (stage, count so far): "events", "documents"
PROGRESS_EVERY = 10_000


@dataclass
class Folded:
    documents: dict[str, dict[str, Document]] = field(default_factory=dict)  # tenant -> path -> doc
    events: int = 0
    upto: int = -1  # the last seq folded


@dataclass(frozen=True)
class RebuildReport:
    events: int
    documents: int
    deleted: int
    tenants: int
    upto: int


def fold(
    events: Iterable[tuple[Entry, Mapping[str, Any] | None]],
    *,
    tree_size: int,
    progress: Progress | None = None,
) -> Folded:
    """Every tenant's documents after `events` (in seq order) and a checkpoint of `tree_size`."""
    sink = MemorySink()
    out = Folded()
    tenants: set[str] = set()
    for entry, payload in events:
        sink.apply(change_for(entry, payload))
        sink.markers.clear()  # each event comes once; no need to keep its marker
        tenants.add(entry.tenant)
        out.events += 1
        out.upto = max(out.upto, entry.seq)
        if progress is not None and out.events % PROGRESS_EVERY == 0:
            progress("events", out.events)
    if progress is not None:
        progress("events", out.events)
    for tenant in sorted(tenants):
        if tree_size > 0:
            sink.seal(tenant, tree_size)
        out.documents[tenant] = sink.tenant_documents(tenant)
    return out


def rebuild(
    target: RebuildTarget,
    events: Iterable[tuple[Entry, Mapping[str, Any] | None]],
    *,
    tree_size: int,
    progress: Progress | None = None,
) -> RebuildReport:
    """Replace each tenant's projection with the one folded from `events` (the whole ledger up
    to its tail, in seq order) and the latest checkpoint's `tree_size`."""
    folded = fold(events, tree_size=tree_size, progress=progress)
    written = deleted = 0
    for tenant, documents in folded.documents.items():
        state = TenantState(sealed_size=tree_size, rebuilt_upto=folded.upto)
        deleted += target.replace_tenant(tenant, documents, state=state)
        written += len(documents)
        if progress is not None:
            progress("documents", written)
    return RebuildReport(
        events=folded.events,
        documents=written,
        deleted=deleted,
        tenants=len(folded.documents),
        upto=folded.upto,
    )

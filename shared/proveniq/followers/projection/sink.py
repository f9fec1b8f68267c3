"""The projection's port, and its in-memory twin. Pure: no I/O.

    ProjectionSink   apply(change) once per event; seal(tenant, tree_size)
    RebuildTarget    replace_tenant(...): what `rebuild` writes a tenant's fresh documents with

Per tenant a sink keeps a small state: the largest checkpoint size it was told of
(`sealed_size`, so documents written later are sealed correctly) and the seq a rebuild covered
(`rebuilt_upto`: events up to it are already in the rebuilt documents and are skipped).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from proveniq.followers.projection.documents import (
    SEALABLE,
    Change,
    Kind,
    mark_sealed,
    merge,
)

Document = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class TenantState:
    sealed_size: int = 0
    rebuilt_upto: int = -1


class ProjectionSink(Protocol):
    def apply(self, change: Change) -> bool:
        """Apply one event's change at most once; False if it was already applied (its marker
        exists) or a rebuild covered it. Raises `errors.Unavailable` when a retry may work."""

    def seal(self, tenant: str, tree_size: int) -> int:
        """A checkpoint of `tree_size` is published: mark sealed every document of `tenant`
        whose last event is below it; returns how many documents changed."""


class RebuildTarget(Protocol):
    def replace_tenant(
        self, tenant: str, documents: Mapping[str, Document], *, state: TenantState
    ) -> int:
        """Make `documents` (path -> document) the tenant's whole projection; returns how many
        documents were deleted because the ledger no longer produces them."""


class MemorySink:
    """The in-memory twin of the Firestore sink (same rules, no I/O): tests, the local stack
    without Node, and the rebuild's fold."""

    def __init__(self) -> None:
        self.documents: dict[str, Document] = {}
        self.markers: set[str] = set()
        self.tenants: dict[str, TenantState] = {}

    def apply(self, change: Change) -> bool:
        state = self.tenants.get(change.tenant, TenantState())
        if change.marker in self.markers or change.seq <= state.rebuilt_upto:
            return False
        for update in change.updates:
            new = merge(self.documents.get(update.path), update, sealed_size=state.sealed_size)
            if new is not None:
                self.documents[update.path] = new
        self.markers.add(change.marker)
        return True

    def seal(self, tenant: str, tree_size: int) -> int:
        state = self.tenants.get(tenant, TenantState())
        if tree_size > state.sealed_size:
            self.tenants[tenant] = TenantState(
                sealed_size=tree_size, rebuilt_upto=state.rebuilt_upto
            )
        changed = 0
        for path, doc in list(self.documents.items()):
            kind, doc_id = _kind_and_id(path, tenant)
            if kind not in SEALABLE or doc.get("sealed") is not False:
                continue
            new = merge(doc, mark_sealed(tenant, kind, doc_id, tree_size))
            if new is not None:
                self.documents[path] = new
                changed += 1
        return changed

    def replace_tenant(
        self, tenant: str, documents: Mapping[str, Document], *, state: TenantState
    ) -> int:
        prefix = f"orgs/{tenant}/"
        stale = [p for p in self.documents if p.startswith(prefix) and p not in documents]
        for p in stale:
            del self.documents[p]
        self.documents.update({p: dict(d) for p, d in documents.items()})
        self.tenants[tenant] = state
        return len(stale)

    def tenant_documents(self, tenant: str) -> dict[str, Document]:
        prefix = f"orgs/{tenant}/"
        return {p: d for p, d in self.documents.items() if p.startswith(prefix)}


def _kind_and_id(path: str, tenant: str) -> tuple[Kind | None, str]:
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != "orgs" or parts[1] != tenant:
        return None, ""
    kind = parts[2]
    if kind == "assets":
        return "assets", parts[3]
    if kind == "claims":
        return "claims", parts[3]
    if kind == "devices":
        return "devices", parts[3]
    return None, ""

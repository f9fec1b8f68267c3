"""The projection sink on Cloud Firestore (`ProjectionSink`, `RebuildTarget`).

Order-safety does not depend on transactions (the npm emulator has no transaction isolation, and
Firestore transactions on a hot document serialise badly). Each event is one
read-compare-write:

1. one `get_all` reads the tenant's state doc, the event's marker and the documents it touches;
2. the pure `documents.merge` computes the new documents, group by group, keeping any group
   whose stored seq is newer (so a late or redelivered event never regresses a document);
3. one atomic batch creates the marker (precondition: it does not exist) and writes each
   document with a precondition: `exists=False` for a new one, `last_update_time` of the read
   for an existing one. If any precondition fails, another writer came first: read again and
   retry (at most `attempts` times, then `errors.Unavailable`, and the platform redelivers).

The marker (`projection_state/{tenant}/applied/{leaf hash}`) makes counters exactly-once; it
carries `expire_at` for a Firestore TTL policy (terraform/firestore.tf), longer than Pub/Sub's
retention. Caveat, measured against the npm emulator: it enforces `exists` but ignores
`last_update_time` and applies a batch's writes one by one, so only the marker-first order
protects it; concurrency safety is production Firestore's, checked in the pure unit tests.

The client is built on first use: `firestore.Client(project=..., database=...)`, which honours
``FIRESTORE_EMULATOR_HOST``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.cloud import firestore

from proveniq.errors import InternalError, Unavailable
from proveniq.followers.projection.documents import KINDS, SEALABLE, Change, Kind, merge
from proveniq.followers.projection.sink import Document, TenantState

STATE_COLLECTION = "projection_state"
MARKERS = "applied"
MARKER_TTL = timedelta(days=35)  # > Pub/Sub's longest retention (31 days)
BATCH_LIMIT = 400  # writes per commit (Firestore's limit is 500)
_CONTENTION = (
    api_exceptions.AlreadyExists,
    api_exceptions.FailedPrecondition,
    api_exceptions.Aborted,
    api_exceptions.Conflict,
    api_exceptions.NotFound,
)
_TRANSIENT = (
    api_exceptions.ServiceUnavailable,
    api_exceptions.DeadlineExceeded,
    api_exceptions.InternalServerError,
    api_exceptions.TooManyRequests,
    api_exceptions.Cancelled,
    api_exceptions.Unknown,
    api_exceptions.GatewayTimeout,
    api_exceptions.RetryError,
)


def _translate(e: Exception, what: str) -> Exception:
    if isinstance(e, _TRANSIENT):
        return Unavailable(f"Firestore {what}: {e}")
    return InternalError(f"Firestore {what} failed: {e}")


class FirestoreSink:
    def __init__(
        self,
        *,
        project: str,
        database: str = "(default)",
        client: Any = None,
        attempts: int = 5,
        marker_ttl: timedelta = MARKER_TTL,
    ) -> None:
        if not project:
            raise ValueError("project is required")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.project = project
        self.database = database
        self.attempts = attempts
        self.marker_ttl = marker_ttl
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = firestore.Client(project=self.project, database=self.database)
            return self._client

    # --- ProjectionSink ----------------------------------------------------------------------

    def apply(self, change: Change) -> bool:
        try:
            for _ in range(self.attempts):
                done = self._try_apply(change)
                if done is not None:
                    return done
        except (Unavailable, InternalError):
            raise
        except api_exceptions.GoogleAPICallError as e:
            raise _translate(e, "apply") from e
        raise Unavailable(f"Firestore contention on event {change.seq}: retry later")

    def _try_apply(self, change: Change) -> bool | None:
        """True/False when decided, None when a precondition failed (retry)."""
        db = self.client
        state_ref = db.document(f"{STATE_COLLECTION}/{change.tenant}")
        marker_ref = state_ref.collection(MARKERS).document(change.marker)
        refs = [state_ref, marker_ref, *(db.document(u.path) for u in change.updates)]
        snaps = {s.reference.path: s for s in db.get_all(refs)}
        state = _state(snaps.get(state_ref.path))
        if change.seq <= state.rebuilt_upto or _exists(snaps.get(marker_ref.path)):
            return False
        batch = db.batch()
        batch.create(  # first: on the emulator a failed precondition stops the batch here
            marker_ref,
            {
                "seq": change.seq,
                "expire_at": datetime.now(UTC) + self.marker_ttl,
            },
        )
        for update in change.updates:
            snap = snaps.get(update.path)
            current = snap.to_dict() if snap is not None and snap.exists else None
            new = merge(current, update, sealed_size=state.sealed_size)
            if new is None:
                continue
            ref = db.document(update.path)
            if current is None:
                batch.create(ref, new)
            else:
                assert snap is not None
                batch.update(ref, new, option=db.write_option(last_update_time=snap.update_time))
        try:
            batch.commit()
        except _CONTENTION:
            return None
        return True

    def seal(self, tenant: str, tree_size: int) -> int:
        try:
            self._raise_sealed_size(tenant, tree_size)
            return sum(self._seal_kind(tenant, kind, tree_size) for kind in sorted(SEALABLE))
        except (Unavailable, InternalError):
            raise
        except api_exceptions.GoogleAPICallError as e:
            raise _translate(e, "seal") from e

    def _raise_sealed_size(self, tenant: str, tree_size: int) -> None:
        db = self.client
        ref = db.document(f"{STATE_COLLECTION}/{tenant}")
        for _ in range(self.attempts):
            snap = ref.get()
            state = _state(snap)
            if tree_size <= state.sealed_size:
                return
            try:
                if _exists(snap):
                    ref.update(
                        {"sealed_size": tree_size},
                        option=db.write_option(last_update_time=snap.update_time),
                    )
                else:
                    ref.create({"sealed_size": tree_size, "rebuilt_upto": -1})
                return
            except _CONTENTION:
                continue
        raise Unavailable(f"Firestore contention on {ref.path}: retry later")

    def _seal_kind(self, tenant: str, kind: Kind, tree_size: int) -> int:
        """Unsealed documents whose last event is below `tree_size` (composite index in
        terraform/firestore.tf); each page is updated until none is left."""
        db = self.client
        coll = db.collection(f"orgs/{tenant}/{kind}")
        changed = 0
        while True:
            query = (
                coll.where(filter=firestore.FieldFilter("sealed", "==", False))
                .where(filter=firestore.FieldFilter("last_seq", "<", tree_size))
                .limit(BATCH_LIMIT)
            )
            page = list(query.stream())
            progressed = 0
            for snap in page:
                try:
                    snap.reference.update(
                        {"sealed": True},
                        option=db.write_option(last_update_time=snap.update_time),
                    )
                    progressed += 1
                except _CONTENTION:
                    continue  # a newer event wrote it, sealed with the new size already
            changed += progressed
            if len(page) < BATCH_LIMIT or progressed == 0:
                return changed

    # --- RebuildTarget -----------------------------------------------------------------------

    def replace_tenant(
        self, tenant: str, documents: Mapping[str, Document], *, state: TenantState
    ) -> int:
        """Record the rebuild's state first (the follower then skips what it covers), write the
        documents, delete the ones the ledger no longer produces."""
        try:
            db = self.client
            db.document(f"{STATE_COLLECTION}/{tenant}").set(
                {"sealed_size": state.sealed_size, "rebuilt_upto": state.rebuilt_upto}
            )
            stale = [p for p in self.tenant_documents(tenant) if p not in documents]
            batch, n = db.batch(), 0
            for path, doc in documents.items():
                batch.set(db.document(path), dict(doc))
                batch, n = self._flush(batch, n + 1)
            for path in stale:
                batch.delete(db.document(path))
                batch, n = self._flush(batch, n + 1)
            if n:
                batch.commit()
            return len(stale)
        except api_exceptions.GoogleAPICallError as e:
            raise _translate(e, "rebuild") from e

    def _flush(self, batch: Any, n: int) -> tuple[Any, int]:
        if n < BATCH_LIMIT:
            return batch, n
        batch.commit()
        return self.client.batch(), 0

    # --- reads (tests, tools) -----------------------------------------------------------------

    def tenant_documents(self, tenant: str) -> dict[str, Document]:
        db = self.client
        out: dict[str, Document] = {}
        for kind in KINDS:
            for snap in db.collection(f"orgs/{tenant}/{kind}").stream():
                out[snap.reference.path] = snap.to_dict() or {}
        return out

    def tenant_state(self, tenant: str) -> TenantState:
        return _state(self.client.document(f"{STATE_COLLECTION}/{tenant}").get())


def _exists(snap: Any) -> bool:
    return snap is not None and bool(snap.exists)


def _state(snap: Any) -> TenantState:
    if not _exists(snap):
        return TenantState()
    d = snap.to_dict() or {}
    sealed, upto = d.get("sealed_size", 0), d.get("rebuilt_upto", -1)
    return TenantState(
        sealed_size=sealed if isinstance(sealed, int) else 0,
        rebuilt_upto=upto if isinstance(upto, int) else -1,
    )

"""Asset lifecycle (Core manual §4.1): which `asset.*` event may follow which status.

    DRAFT -> PENDING -> VERIFIED -> LISTED -> SOLD, with DISPUTED, REJECTED and ARCHIVED.

Events outside the `asset.` namespace do not touch the lifecycle. An `asset.*` event whose
transition is impossible for its subject's current status is refused (409) and nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping

from proveniq.errors import LifecycleConflict, ValidationError

NEW = None  # the subject has no status yet

# event type -> (statuses it may follow, status it leads to; None keeps the current status)
TRANSITIONS: Mapping[str, tuple[frozenset[str | None], str | None]] = {
    "asset.created": (frozenset({NEW}), "DRAFT"),
    "asset.submitted": (frozenset({"DRAFT"}), "PENDING"),
    "asset.verified": (frozenset({"PENDING"}), "VERIFIED"),
    "asset.listed": (frozenset({"VERIFIED"}), "LISTED"),
    "asset.sold": (frozenset({"LISTED"}), "SOLD"),
    "asset.disputed": (frozenset({"PENDING", "VERIFIED", "LISTED", "SOLD"}), "DISPUTED"),
    "asset.dispute_resolved": (frozenset({"DISPUTED"}), "VERIFIED"),
    "asset.rejected": (frozenset({"PENDING", "DISPUTED"}), "REJECTED"),
    "asset.archived": (frozenset({"DRAFT", "SOLD", "REJECTED", "DISPUTED"}), "ARCHIVED"),
    "asset.updated": (frozenset({"DRAFT", "PENDING", "VERIFIED", "LISTED", "DISPUTED"}), None),
}
# event type -> the status it leads to (asset.updated, which keeps the status, is absent)
TARGET_STATUS: Mapping[str, str] = {t: to for t, (_, to) in TRANSITIONS.items() if to is not None}
STATUSES = frozenset(
    {"DRAFT", "PENDING", "VERIFIED", "LISTED", "SOLD", "DISPUTED", "REJECTED", "ARCHIVED"}
)


def governs(event_type: str) -> bool:
    return event_type.startswith("asset.")


def next_status(event_type: str, current: str | None, *, subject: str) -> str | None:
    """The subject's status after `event_type`, or LifecycleConflict if the move is impossible."""
    rule = TRANSITIONS.get(event_type)
    if rule is None:
        known = ", ".join(sorted(TRANSITIONS))
        raise ValidationError(f"unknown asset event {event_type!r}; known: {known}", field="type")
    allowed, to = rule
    if current not in allowed:
        state = f"in status {current}" if current else "before asset.created"
        raise LifecycleConflict(f"{event_type} is not allowed for {subject} {state}")
    return current if to is None else to

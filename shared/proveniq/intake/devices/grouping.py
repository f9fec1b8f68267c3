"""Concurrent single-message deliveries sequenced together, in groups.

A Cloud Function instance with concurrency > 1 (or the local bus's workers) receives one Pub/Sub
message per request. `grouped(ingest)` puts each delivery through the ledger's
`GroupCommitter` (the same leader/follower grouping as write_event's group commit): concurrent
deliveries run as ONE `DeviceIngest.ingest` call (one lock acquisition per tenant), lone
deliveries are not delayed (the adaptive linger waits only after a group of several), and
every submitter gets its own outcome once that group committed,
or the group's exception (e.g. `errors.Unavailable`, so each of those requests fails and
Pub/Sub redelivers its message).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from proveniq.grouping import GroupCommitter
from proveniq.intake.devices.ingest import Delivery, Outcome

LINGER_SECONDS = 0.005  # how long a leader waits for company once deliveries come in bursts
MAX_GROUP = 256


class Ingests(Protocol):
    def ingest(self, deliveries: Sequence[Delivery]) -> list[Outcome]: ...


GroupedIngest = GroupCommitter[Delivery, Outcome]


def grouped(
    ingest: Ingests,
    *,
    max_size: int = MAX_GROUP,
    wait: float = LINGER_SECONDS,
    adaptive: bool = True,
) -> GroupedIngest:
    """`submit(delivery)` ingests one delivery within a group and returns its outcome."""
    return GroupCommitter(ingest.ingest, wait=wait, max_size=max_size, adaptive=adaptive)

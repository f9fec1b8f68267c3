"""`GroupedIngest`: concurrent single-message deliveries sequenced together, in groups.

A Cloud Function instance with concurrency > 1 (or the local bus's workers) receives one Pub/Sub
message per request. `submit` puts the delivery in a shared queue; the first waiting thread
becomes the leader, lingers `linger` seconds for company, takes up to `max_batch` deliveries and
runs ONE `DeviceIngest.ingest` for them (one lock acquisition per tenant). Every submitter gets its
own outcome once that batch committed, or the batch's exception (e.g. `errors.Unavailable`, so
each of those requests fails and Pub/Sub redelivers its message). No thread of its own: the work
is done by the requests' threads, which Cloud Functions keeps running while requests are open.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from proveniq.intake.devices.ingest import Delivery, Outcome


class Ingests(Protocol):
    def ingest(self, deliveries: Sequence[Delivery]) -> list[Outcome]: ...


@dataclass(eq=False)
class _Slot:
    delivery: Delivery
    outcome: Outcome | None = None
    error: BaseException | None = None
    done: bool = field(default=False)


class GroupedIngest:
    def __init__(self, ingest: Ingests, *, max_batch: int = 256, linger: float = 0.005) -> None:
        if max_batch < 1 or linger < 0:
            raise ValueError("max_batch must be >= 1 and linger >= 0")
        self._ingest = ingest
        self._max_batch = max_batch
        self._linger = linger
        self._cond = threading.Condition()
        self._queue: list[_Slot] = []
        self._busy = False
        self.batches = 0  # how many ingest calls were made (for tests and benchmarks)

    def submit(self, delivery: Delivery) -> Outcome:
        """Ingest one delivery within a group; its outcome, or the group's exception."""
        slot = _Slot(delivery)
        with self._cond:
            self._queue.append(slot)
        while True:
            with self._cond:
                while self._busy and not slot.done:
                    self._cond.wait()
                if slot.done:
                    return self._result(slot)
                self._busy = True
            try:
                self._lead()
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _lead(self) -> None:
        if self._linger:
            time.sleep(self._linger)
        with self._cond:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
        try:
            self.batches += 1
            outcomes = self._ingest.ingest([s.delivery for s in batch])
            for s, o in zip(batch, outcomes, strict=True):
                s.outcome = o
        except BaseException as e:  # every submitter of the batch sees it
            for s in batch:
                s.error = e
        finally:
            with self._cond:
                for s in batch:
                    s.done = True

    @staticmethod
    def _result(slot: _Slot) -> Outcome:
        if slot.error is not None:
            raise slot.error
        assert slot.outcome is not None
        return slot.outcome

"""Integration (batch_merkle): merge the leaves sequenced since the last checkpoint into the
stored tree, check the new tree is consistent with the last published checkpoint, and publish a
signed checkpoint of it.

One run holds the integration lock (a second concurrent run waits, then finds nothing new),
integrates with the log's pure `integrate`, refuses (and logs an alert) if the stored nodes do
not reproduce the last checkpoint or the consistency proof fails, then stores the new nodes and
the signed note in the same transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from proveniq.errors import ConsistencyProofError, InternalError, Unavailable
from proveniq.ledger.outbox import Relay
from proveniq.ledger.publishing import CheckpointPublisher
from proveniq.log import merkle, proof
from proveniq.log.integrate import Integration, NodeId, integrate, integrate_node_ids
from proveniq.ports import IntegrationStore, NoTelemetry, StoredCheckpoint, Telemetry

log = logging.getLogger("proveniq.integration")
MAX_LEAVES_PER_RUN = 200_000
SWEEP_MIN_AGE_SECONDS = 10


@dataclass(frozen=True)
class Published:
    old_size: int
    size: int
    root: bytes
    note: str


class Integrator:
    def __init__(
        self,
        *,
        store: IntegrationStore,
        publisher: CheckpointPublisher,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.telemetry: Telemetry = telemetry or NoTelemetry()

    def integrate_and_publish(self, *, max_leaves: int = MAX_LEAVES_PER_RUN) -> Published | None:
        """Integrate once and publish a checkpoint; None when nothing new was sequenced."""
        with self.store.integration() as tx:
            tx.lock()
            last = tx.latest_checkpoint()
            old_size, old_root = (0, merkle.EMPTY_ROOT) if last is None else (last.size, last.root)
            rows = tx.leaves(old_size, max_leaves)
            if not rows:
                return None
            if rows[0][0] != old_size or rows[-1][0] != old_size + len(rows) - 1:
                raise InternalError(f"sequence gap after checkpoint {old_size}")
            border = tx.nodes(integrate_node_ids(old_size))
            step = integrate(lambda ids: _pick(border, ids), old_size, [r[1] for r in rows])
            try:
                _check_consistent(border, old_size, old_root, step)
            except ConsistencyProofError:
                self.telemetry.checkpoint_refused()
                raise
            tx.write_nodes(step.new_nodes)
            note = self.publisher.sign(size=step.new_size, root=step.root)
            tx.save_checkpoint(StoredCheckpoint(size=step.new_size, root=step.root, note=note))
            waited = tx.recorded_at(sorted({rows[0][0], rows[-1][0]}))
        now = datetime.now(UTC)
        self.telemetry.checkpoint_published(
            size=step.new_size, integrate_seconds=[(now - t).total_seconds() for t in waited]
        )
        log.info(
            "published",
            extra={"old_size": old_size, "size": step.new_size, "root": step.root.hex()},
        )
        return Published(old_size=old_size, size=step.new_size, root=step.root, note=note)

    def run_until_current(self, relay: Relay | None = None) -> int:
        """The batch_merkle trigger body: sweep the outbox, then integrate and publish until
        caught up; returns how many entries were integrated.

        Transient failures raise (the platform redelivers the tick); an inconsistency is logged
        as an alert and acknowledged, because retrying cannot fix it.
        """
        if relay is not None:  # the same tick re-sends outbox rows a crash left unsent
            try:
                relay.sweep(min_age_seconds=SWEEP_MIN_AGE_SECONDS)
            except Unavailable as e:
                log.warning("outbox sweep deferred: %s", e.message)
        total = 0
        while True:
            try:
                published = self.integrate_and_publish()
            except ConsistencyProofError:
                return total
            if published is None:
                return total
            total += published.size - published.old_size
            if published.size - published.old_size < MAX_LEAVES_PER_RUN:
                return total

    def run_continuously(
        self,
        relay: Relay | None,
        *,
        interval: float,
        seconds: float,
        wait: Callable[[float], bool],
        after_round: Callable[[int], None] | None = None,
    ) -> int:
        """One scheduled batch_merkle run that keeps sealing: `run_until_current`, then again
        every `interval` seconds (a fixed delay after each round) for `seconds`, so sealing is
        continuous although the scheduler fires at most once a minute. `wait(t)` sleeps up to
        `t` and returns False to end the run early (shutdown, or a newer run took over).
        The first round's transient failure raises (the platform may redeliver); later ones
        are logged and retried at the next round. `seconds` 0: one round, as a one-shot tick.
        """
        until = time.monotonic() + seconds
        total = self.run_until_current(relay)
        if after_round is not None:
            after_round(total)
        while time.monotonic() + interval < until and wait(interval):
            try:
                n = self.run_until_current()
            except Unavailable as e:
                log.warning("seal round deferred: %s", e.message)
                continue
            total += n
            if after_round is not None:
                after_round(n)
        return total


def _check_consistent(
    border: Mapping[NodeId, bytes], old_size: int, old_root: bytes, step: Integration
) -> None:
    if old_size == 0:
        return

    def read(ids: Sequence[NodeId]) -> dict[NodeId, bytes]:  # no merged copy of a large batch
        return _pick(border, ids) | _pick(step.new_nodes, ids)

    try:
        if proof.root_at(read, old_size) != old_root:
            raise ConsistencyProofError(
                "stored nodes do not reproduce the last checkpoint",
                what="stored tree",
                expected=old_root.hex(),
            )
        consistency = proof.consistency_proof(read, old_size, step.new_size)
        merkle.verify_consistency(old_size, step.new_size, old_root, step.root, consistency)
    except ConsistencyProofError as e:
        log.critical(
            "ALERT: refusing to publish an inconsistent checkpoint: %s",
            e.message,
            extra={"old_size": old_size, "new_size": step.new_size},
        )
        raise


def _pick(nodes: Mapping[NodeId, bytes], ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
    return {i: nodes[i] for i in ids if i in nodes}

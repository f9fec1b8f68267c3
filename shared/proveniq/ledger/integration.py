"""Seal (batch_merkle): integrate newly sequenced leaves into the stored tree and publish a
signed checkpoint.

One run holds the seal lock (a second concurrent run waits, then finds nothing new), reads the
leaves sequenced since the last checkpoint, integrates them with the kernel's pure
`integrate`, checks the new tree is consistent with the last published checkpoint (refusing and
logging an alert if not), stores the new nodes and the signed note, and commits.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proveniq.adapters.postgres.pool import Pool
from proveniq.errors import ConsistencyProofError, InternalError, Unavailable
from proveniq.log import merkle, proof
from proveniq.log.checkpoint import Checkpoint, sign_checkpoint, with_timestamp
from proveniq.log.integrate import NodeId, integrate, integrate_node_ids
from proveniq.log.signer import Signer
from proveniq.log.timefmt import utcnow

log = logging.getLogger("proveniq.seal")
SEAL_LOCK_KEY = 0x5345414C50525651  # "SEALPRVQ"
MAX_LEAVES_PER_SEAL = 200_000


@dataclass(frozen=True)
class Sealed:
    old_size: int
    size: int
    root: bytes
    note: str


def read_nodes(cur: Any, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
    if not ids:
        return {}
    cur.execute(
        "SELECT n.level, n.idx, n.hash FROM tree_nodes n "
        "JOIN unnest(%s::int[], %s::bigint[]) AS want(level, idx) "
        "ON n.level = want.level AND n.idx = want.idx",
        ([i[0] for i in ids], [i[1] for i in ids]),
    )
    return {(lv, ix): bytes(h) for lv, ix, h in cur.fetchall()}


def latest(cur: Any) -> tuple[int, bytes, str | None]:
    cur.execute("SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1")
    row = cur.fetchone()
    return (0, merkle.EMPTY_ROOT, None) if row is None else (row[0], bytes(row[1]), row[2])


class Sealer:
    def __init__(self, *, pool: Pool, signers: Sequence[Signer], origin: str) -> None:
        self.pool = pool
        self.signers = list(signers)
        self.origin = origin

    def seal(self, *, max_leaves: int = MAX_LEAVES_PER_SEAL) -> Sealed | None:
        """Integrate and publish once; None when nothing new was sequenced."""
        with self.pool.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (SEAL_LOCK_KEY,))
            old_size, old_root, _ = latest(cur)
            cur.execute(
                "SELECT seq, leaf_hash FROM events WHERE seq >= %s ORDER BY seq LIMIT %s",
                (old_size, max_leaves),
            )
            rows = cur.fetchall()
            if not rows:
                return None
            if rows[0][0] != old_size or rows[-1][0] != old_size + len(rows) - 1:
                raise InternalError(f"sequence gap after checkpoint {old_size}")
            leaves = [bytes(r[1]) for r in rows]
            border = read_nodes(cur, integrate_node_ids(old_size))
            step = integrate(lambda ids: _pick(border, ids), old_size, leaves)
            self._check_consistent(border, step.new_nodes, old_size, old_root, step)
            _insert_nodes(cur, step.new_nodes)
            cp = with_timestamp(
                Checkpoint(origin=self.origin, size=step.new_size, root_hash=step.root),
                int(utcnow().timestamp() * 1000),
            )
            note = sign_checkpoint(cp, self.signers)
            cur.execute(
                "INSERT INTO checkpoints (size, root, note) VALUES (%s, %s, %s)",
                (step.new_size, step.root, note),
            )
        log.info(
            "sealed", extra={"old_size": old_size, "size": step.new_size, "root": step.root.hex()}
        )
        return Sealed(old_size=old_size, size=step.new_size, root=step.root, note=note)

    def _check_consistent(
        self,
        border: Mapping[NodeId, bytes],
        new: Mapping[NodeId, bytes],
        old_size: int,
        old_root: bytes,
        step: Any,
    ) -> None:
        if old_size == 0:
            return
        nodes = {**border, **new}
        try:
            if proof.root_at(lambda ids: _pick(nodes, ids), old_size) != old_root:
                raise ConsistencyProofError(
                    "stored nodes do not reproduce the last checkpoint",
                    what="stored tree",
                    expected=old_root.hex(),
                )
            consistency = proof.consistency_proof(
                lambda ids: _pick(nodes, ids), old_size, step.new_size
            )
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


def _insert_nodes(cur: Any, nodes: Mapping[NodeId, bytes]) -> None:
    items = list(nodes.items())
    for start in range(0, len(items), 5000):
        chunk = items[start : start + 5000]
        cur.execute(
            "INSERT INTO tree_nodes (level, idx, hash) "
            "SELECT * FROM unnest(%s::smallint[], %s::bigint[], %s::bytea[])",
            ([k[0] for k, _ in chunk], [k[1] for k, _ in chunk], [v for _, v in chunk]),
        )


def seal_until_current() -> int:
    """The batch_merkle trigger body: sweep the outbox, then seal until caught up; returns how
    many entries were integrated.

    Transient failures raise (the platform redelivers the tick); an inconsistency is logged as
    an alert and acknowledged, because retrying cannot fix it.
    """
    from proveniq.app.runtime import runtime

    rt = runtime()
    sealer = rt.sealer
    try:  # the same tick re-publishes outbox rows a crash left unsent (at least once)
        rt.relay.sweep(min_age_seconds=10)
    except Unavailable as e:
        log.warning("outbox sweep deferred: %s", e.message)
    total = 0
    while True:
        try:
            sealed = sealer.seal()
        except ConsistencyProofError:
            return total
        if sealed is None:
            return total
        total += sealed.size - sealed.old_size
        if sealed.size - sealed.old_size < MAX_LEAVES_PER_SEAL:
            return total

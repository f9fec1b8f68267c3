"""Recompute the log from the database with the kernel: chain, leaf hashes, payload hashes."""

from __future__ import annotations

import hashlib
from typing import Any

from proveniq.adapters.postgres.ledger import EVENT_COLUMNS, stored_event
from proveniq.log.chain import Tail, verify_chain


def check_log(conn: Any) -> list[bytes]:
    """Assert seq contiguity, prev links, stored leaf == recomputed leaf, payload hashes.

    Returns the leaf hashes in seq order.
    """
    cur = conn.cursor()
    cur.execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY seq")  # noqa: S608
    entries, leaves = [], []
    for row in cur.fetchall():
        ev = stored_event(row)
        e = ev.entry
        assert e.leaf_hash() == ev.stored_leaf, f"stored leaf differs at seq {e.seq}"
        if ev.payload is not None:
            assert hashlib.sha256(ev.payload).digest() == e.payload_hash, f"payload at {e.seq}"
        entries.append(e)
        leaves.append(e.leaf_hash())
    verify_chain(entries, start=Tail.empty())
    return leaves

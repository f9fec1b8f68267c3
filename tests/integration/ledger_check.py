"""Recompute the log from the database with the kernel: chain, leaf hashes, payload hashes."""

from __future__ import annotations

import hashlib
from typing import Any

from proveniq.chain import Tail, verify_chain
from proveniq.entry import Entry


def check_log(conn: Any) -> list[bytes]:
    """Assert seq contiguity, prev links, stored leaf == recomputed leaf, payload hashes.

    Returns the leaf hashes in seq order.
    """
    cur = conn.cursor()
    cur.execute(
        "SELECT seq, id, tenant, type, subject, payload_hash, payload, occurred_at, recorded_at,"
        " prev, leaf_hash FROM events ORDER BY seq"
    )
    entries, leaves = [], []
    for row in cur.fetchall():
        seq, eid, tenant, etype, subject, ph, payload, occ, rec, prev, leaf = row
        e = Entry(
            seq=seq,
            id=eid,
            tenant=tenant,
            type=etype,
            subject=subject,
            payload_hash=bytes(ph),
            occurred_at=occ,
            recorded_at=rec,
            prev=bytes(prev),
        )
        assert e.leaf_hash() == bytes(leaf), f"stored leaf differs at seq {seq}"
        if payload is not None:
            assert hashlib.sha256(bytes(payload)).digest() == bytes(ph), f"payload at {seq}"
        entries.append(e)
        leaves.append(bytes(leaf))
    verify_chain(entries, start=Tail.empty())
    return leaves

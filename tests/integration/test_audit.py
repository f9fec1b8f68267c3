"""An insider with superuser rights bypasses the append-only guard and changes one byte;
`proveniq audit` must name what changed. 100 random tamperings, 100 detected."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import requests
from click.testing import CliRunner

from proveniq.adapters.postgres.ledger import CursorAuditView
from proveniq.app.cli import main
from proveniq.app.runtime import runtime
from proveniq.ledger.audit import audit
from proveniq.log.note import NoteVerifier

EVENT_COLUMNS = [
    "id",
    "tenant",
    "type",
    "subject",
    "payload_hash",
    "payload",
    "occurred_at",
    "recorded_at",
    "prev",
    "leaf_hash",
    "seq",
]


def flip(b: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(b))
    return b[:i] + bytes([b[i] ^ (1 << rng.randrange(8))]) + b[i + 1 :]


def change_char(s: str, rng: random.Random) -> str:
    i = rng.randrange(len(s))
    c = "x" if s[i] != "x" else "y"
    return s[:i] + c + s[i + 1 :]


def tamper(cur: Any, rng: random.Random, size: int) -> str:
    """Change one thing; return the text the audit's first problem must start with."""
    kind = rng.choice(["event"] * 6 + ["node"] * 2 + ["checkpoint"] * 2 + ["node_gone"])
    if kind == "node_gone":
        cur.execute(
            "DELETE FROM tree_nodes WHERE (level, idx) = (SELECT level, idx FROM "
            "tree_nodes ORDER BY random() LIMIT 1) RETURNING level, idx"
        )
        level, idx = cur.fetchone()
        return f"node ({level}, {idx}): missing"
    if kind == "event":
        seq = rng.randrange(size)
        col = rng.choice(EVENT_COLUMNS)
        cur.execute(f"SELECT {col} FROM events WHERE seq = %s", (seq,))  # noqa: S608
        (value,) = cur.fetchone()
        if col == "seq":
            new: Any = size + 1000
        elif col in ("occurred_at", "recorded_at"):
            new = (value + timedelta(microseconds=1)) if value else runtime_now()
        elif isinstance(value, bytes | bytearray | memoryview):
            new = flip(bytes(value), rng)
        else:
            new = change_char(value, rng)
        cur.execute(f"UPDATE events SET {col} = %s WHERE seq = %s", (new, seq))  # noqa: S608
        return f"seq {seq}:"
    if kind == "node":
        cur.execute("SELECT level, idx, hash FROM tree_nodes ORDER BY random() LIMIT 1")
        level, idx, h = cur.fetchone()
        cur.execute(
            "UPDATE tree_nodes SET hash = %s WHERE level = %s AND idx = %s",
            (flip(bytes(h), rng), level, idx),
        )
        return f"node ({level}, {idx}):"
    cur.execute("SELECT size, root, note FROM checkpoints ORDER BY random() LIMIT 1")
    csize, root, note = cur.fetchone()
    if rng.random() < 0.5:
        cur.execute(
            "UPDATE checkpoints SET root = %s WHERE size = %s", (flip(bytes(root), rng), csize)
        )
    else:
        cur.execute(
            "UPDATE checkpoints SET note = %s WHERE size = %s", (change_char(note, rng), csize)
        )
    return f"checkpoint {csize}:"


def runtime_now() -> Any:
    from proveniq.log.timefmt import utcnow

    return utcnow()


def test_audit_names_each_of_100_random_tamperings(stack: Any) -> None:
    rng = random.Random(2026)
    key = stack.keys["acme:MEMBER"]
    for n in (37, 64, 1, 90, 58):
        body = {
            "events": [
                {
                    "type": "claim.note",
                    "subject": f"clm_{i % 7}",
                    "payload": {"i": i, "note": "hail damage"},
                }
                for i in range(n)
            ]
        }
        r = requests.post(
            stack.base + "/v1/events:batch",
            json=body,
            timeout=30,
            headers={"Authorization": f"Bearer {key}"},
        )
        assert r.status_code == 201
        runtime().integrator.integrate_and_publish()
    size = 250
    signer = runtime().publisher.primary
    verifiers = [NoteVerifier.from_public_key(name=signer.name, public_key=signer.public_key)]

    conn = stack.superuser()
    cur = conn.cursor()
    clean = audit(CursorAuditView(cur), verifiers)
    assert clean.ok, clean.problems
    assert (clean.entries, clean.checkpoints) == (size, 5)
    conn.rollback()

    detected = 0
    for _ in range(100):
        cur.execute("SET session_replication_role = replica")  # the insider bypass
        expected = tamper(cur, rng, size)
        report = audit(CursorAuditView(cur), verifiers)
        conn.rollback()
        assert not report.ok, f"undetected tampering, expected {expected}"
        assert report.problems[0].startswith(expected), (expected, report.problems[:3])
        detected += 1
    conn.close()
    assert detected == 100

    ok = CliRunner().invoke(main, ["audit"])
    assert ok.exit_code == 0, ok.output
    assert "OK: 250 entries" in ok.output

"""32 concurrent writers through the HTTP API leave one contiguous, correctly linked log, with
group commit on (the default): the writes really were sequenced in groups."""

from __future__ import annotations

import json
import threading
from typing import Any

import requests

from proveniq.log import merkle
from proveniq.log.entry import ZERO_HASH
from tests.integration.ledger_check import check_log

WRITERS = 32
TOTAL = 10_000


def test_32_writers_10k_events(stack: Any) -> None:
    keys = [stack.keys["acme:MEMBER"], stack.keys["globex:MEMBER"]]
    acked: list[list[dict[str, Any]]] = [[] for _ in range(WRITERS)]
    failures: list[str] = []

    def writer(w: int) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {keys[w % 2]}", "Content-Type": "application/json"}
        for i in range(w, TOTAL, WRITERS):
            body = {
                "type": "custody.scanned",
                "subject": f"dev_{w}",
                "payload": {"writer": w, "i": i},
            }
            r = session.post(
                stack.base + "/v1/events", data=json.dumps(body), headers=headers, timeout=60
            )
            if r.status_code != 201:
                failures.append(f"{r.status_code} {r.text[:200]}")
                return
            acked[w].append(r.json()["data"])

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]
    seqs = sorted(d["seq"] for per in acked for d in per)
    assert seqs == list(range(TOTAL))
    for per in acked:  # one client's events are sequenced in the order it sent them
        assert [d["seq"] for d in per] == sorted(d["seq"] for d in per)

    from proveniq.app.runtime import runtime

    committer = runtime().sequencer.committer
    assert committer is not None and committer.requests == TOTAL
    # how much grouping happens depends on the machine's load; that some did cannot fail to hold
    assert committer.groups < TOTAL and committer.largest > 1, (
        committer.groups,
        committer.largest,
    )
    with stack.superuser() as conn:
        leaves = check_log(conn)
        cur = conn.cursor()
        # events inserted by one transaction share its xid: groups of several requests committed
        cur.execute("SELECT count(DISTINCT xmin::text) FROM events")
        transactions = cur.fetchone()[0]
        assert transactions == committer.groups and transactions < TOTAL
    assert len(leaves) == TOTAL
    by_seq = {d["seq"]: d["leaf_hash"] for per in acked for d in per}
    assert all(leaves[s].hex() == h for s, h in by_seq.items())
    assert leaves and merkle.root(leaves) == merkle.root(list(leaves))
    assert ZERO_HASH not in leaves

"""Crash test: the serving process is SIGKILLed at random points under load, 20 rounds.

Every event acknowledged with 201 must be present and intact, no batch may be partial, and
the outbox relay must publish every committed event that was left unsent. Group commit is on
(the default): single-event requests were committed in groups, several per transaction.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from proveniq.adapters.local.bus import InProcessBus
from proveniq.adapters.postgres.ledger import PostgresLedger
from proveniq.adapters.postgres.pool import Pool, url_connector
from proveniq.ledger.outbox import Relay
from tests.integration.ledger_check import check_log
from tests.serving import free_port, wait_ready

ROUNDS = 20
BATCH = 25


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "proveniq.app.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_ready(f"http://127.0.0.1:{port}", proc, log, timeout=60)
    return proc


@pytest.mark.slow
def test_sigkill_under_load_loses_nothing_acknowledged(
    stack: Any, tmp_path: Path, pg_server: Any
) -> None:
    rng = random.Random(1234)
    url = pg_server.url(user="proveniq_app", database=stack.database)
    env = {
        **os.environ,
        "PROVENIQ_DATABASE_URL": url,
        "PROVENIQ_STATE_DIR": str(tmp_path / "state"),
        "PROVENIQ_POOL_SIZE": "8",
    }
    key = stack.keys["acme:MEMBER"]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    acked: dict[str, str] = {}  # event id -> leaf hash
    acked_batches: list[list[str]] = []
    sent_batch_tags: list[str] = []
    log = tmp_path / "server.log"

    for rnd in range(ROUNDS):
        port = free_port()
        proc = start_server(env, port, log)
        stop = threading.Event()
        lock = threading.Lock()

        def load(
            worker: int,
            rnd: int = rnd,
            port: int = port,
            stop: threading.Event = stop,
            lock: threading.Lock = lock,
        ) -> None:
            s = requests.Session()
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    if n % 3 == 0:
                        tag = f"b{rnd}-{worker}-{n}"
                        with lock:
                            sent_batch_tags.append(tag)
                        body = {
                            "events": [
                                {"type": "claim.note", "subject": tag, "payload": {"i": i}}
                                for i in range(BATCH)
                            ]
                        }
                        r = s.post(
                            f"http://127.0.0.1:{port}/v1/events:batch",
                            data=json.dumps(body),
                            headers=headers,
                            timeout=10,
                        )
                        if r.status_code == 201:
                            evs = r.json()["data"]["events"]
                            with lock:
                                acked_batches.append([e["id"] for e in evs])
                                acked.update({e["id"]: e["leaf_hash"] for e in evs})
                    else:
                        body1 = {
                            "type": "claim.note",
                            "subject": f"s{rnd}-{worker}",
                            "payload": {"n": n},
                        }
                        r = s.post(
                            f"http://127.0.0.1:{port}/v1/events",
                            data=json.dumps(body1),
                            headers=headers,
                            timeout=10,
                        )
                        if r.status_code == 201:
                            d = r.json()["data"]
                            with lock:
                                acked[d["id"]] = d["leaf_hash"]
                except requests.RequestException:
                    return  # the server died mid-request: not acknowledged

        workers = [threading.Thread(target=load, args=(w,)) for w in range(6)]
        for w in workers:
            w.start()
        time.sleep(rng.uniform(0.2, 1.2))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        stop.set()
        for w in workers:
            w.join()

    assert len(acked) > 200, "the load generator should have had events acknowledged"
    with stack.superuser() as conn:
        check_log(conn)  # contiguous seq, every prev link, every stored leaf recomputed
        cur = conn.cursor()
        cur.execute("SELECT id, leaf_hash FROM events")
        stored = {eid: bytes(leaf).hex() for eid, leaf in cur.fetchall()}
        cur.execute(
            "SELECT subject, count(*) FROM events WHERE subject LIKE 'b%%' GROUP BY subject"
        )
        batch_counts = dict(cur.fetchall())
        cur.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        (unpublished,) = cur.fetchone()
        # single-event requests (subjects s<round>-<worker>) that share a transaction id
        cur.execute(
            "SELECT count(*) FROM (SELECT xmin::text FROM events WHERE subject LIKE 's%%' "
            "GROUP BY 1 HAVING count(*) > 1) AS grouped"
        )
        (groups_of_several,) = cur.fetchone()
    assert groups_of_several > 0, "no two single-event requests were committed together"
    missing = [eid for eid in acked if eid not in stored]
    assert not missing, f"{len(missing)} acknowledged events lost"
    assert all(stored[eid] == leaf for eid, leaf in acked.items())
    assert all(c == BATCH for c in batch_counts.values()), "a partial batch was committed"
    assert set(batch_counts) <= set(sent_batch_tags)

    # The relay publishes whatever the killed processes left unsent, exactly those events.
    bus = InProcessBus()
    received: list[str] = []
    bus.subscribe(
        "ledger-events", lambda ev: received.append(ev.data["message"]["attributes"]["event_id"])
    )
    pool = Pool(url_connector(url), size=2)
    try:
        published = Relay(outbox=PostgresLedger(pool), bus=bus, topic="ledger-events").sweep()
        bus.flush(timeout=30)
    finally:
        bus.close()
        pool.dispose()
    assert published == unpublished == len(received) == len(set(received))
    with stack.superuser() as conn:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT count(*) FROM events")
        assert cur.fetchone()[0] == len(stored)

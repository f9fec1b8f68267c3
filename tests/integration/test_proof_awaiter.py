"""`?wait=proof` and `?wait=` through the shared awaiter: woken by the seal's NOTIFY (no
per-request polling). How soon after the commit they answer is measured by bench/prove.py
(step 3, target: 50 ms), not asserted here; the test only requires an answer well before the
watch's 1 s safety poll could have produced it."""

from __future__ import annotations

import threading
import time
from typing import Any

import requests

from proveniq.app.runtime import runtime

WAITERS = 4


def test_wait_proof_is_answered_by_the_seals_notification(stack: Any) -> None:
    key = stack.keys["acme:MEMBER"]
    answers: list[tuple[float, dict[str, Any]]] = []

    def write(i: int) -> None:
        r = requests.post(
            stack.base + "/v1/events?wait=proof&timeout=20",
            timeout=30,
            json={"type": "claim.created", "subject": f"clm_a{i}"},
            headers={"Authorization": f"Bearer {key}"},
        )
        answers.append((time.time(), r.json()["data"] if r.status_code == 201 else {}))

    rt = runtime()
    threads = [threading.Thread(target=write, args=(i,)) for i in range(WAITERS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while rt.proofs.awaiter.waiting < WAITERS and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rt.proofs.awaiter.waiting == WAITERS  # all sequenced and waiting, none sealed
    time.sleep(0.3)  # far past a 100 ms poll: nobody answers before the seal
    assert not answers
    published = rt.integrator.integrate_and_publish()
    committed = time.time()  # integrate_and_publish returns right after its commit
    for t in threads:
        t.join()
    assert published is not None and published.size == WAITERS
    assert all(d.get("proof_status") == "sealed" for _, d in answers), answers
    assert all(d["bundle"]["tree_size"] == WAITERS for _, d in answers)
    delays = [t - committed for t, _ in answers]
    assert max(delays) < 0.9, delays  # the NOTIFY, not the 1 s safety poll


def test_get_proof_wait_is_woken_by_the_seal(stack: Any) -> None:
    key = stack.keys["acme:MEMBER"]
    r = requests.post(
        stack.base + "/v1/events",
        timeout=30,
        json={"type": "claim.created", "subject": "clm_g"},
        headers={"Authorization": f"Bearer {key}"},
    )
    eid = r.json()["data"]["id"]
    pending = requests.get(
        f"{stack.base}/v1/events/{eid}/proof",
        timeout=30,
        headers={"Authorization": f"Bearer {key}"},
    )
    assert pending.status_code == 202
    timer = threading.Timer(0.3, runtime().integrator.integrate_and_publish)
    timer.start()
    t0 = time.monotonic()
    r = requests.get(
        f"{stack.base}/v1/events/{eid}/proof?wait=10",
        timeout=30,
        headers={"Authorization": f"Bearer {key}"},
    )
    timer.join()
    assert r.status_code == 200, r.text
    assert 0.25 < time.monotonic() - t0 < 2.0
    assert r.json()["data"]["tree_size"] == 1

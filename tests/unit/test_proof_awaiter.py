"""The shared checkpoint awaiter, the proof caches and continuous sealing, on the memory
ledger (whose integration commit signals the watch directly)."""

from __future__ import annotations

import threading
import time

from proveniq.adapters.memory.ledger import MemoryLedger
from proveniq.ledger.integration import Integrator
from proveniq.ledger.proofs import Pending, Proofs
from proveniq.ledger.publishing import CheckpointPublisher
from proveniq.ledger.sequencing import Sequencer
from proveniq.log.bundle import Bundle, verifiers_for, verify_bundle
from proveniq.log.signer import Ed25519Signer
from proveniq.ports import NewEvent

ORIGIN = "test.local/ledger"


def parts(max_waiters: int = 8) -> tuple[MemoryLedger, Sequencer, Integrator, Proofs]:
    ledger = MemoryLedger()
    publisher = CheckpointPublisher(origin=ORIGIN, signers=[Ed25519Signer.generate(name=ORIGIN)])
    proofs = Proofs(reader=ledger, publisher=publisher, watch=ledger, max_waiters=max_waiters)
    return (
        ledger,
        Sequencer(store=ledger, relay=None, reader=ledger),
        Integrator(store=ledger, publisher=publisher),
        proofs,
    )


def append(seq: Sequencer, subject: str) -> str:
    entries = seq.append(
        tenant="t1",
        actor="key:k",
        events=[NewEvent(type="claim.created", subject=subject, payload={})],
    )
    return entries[0].id


def test_a_waiter_is_woken_by_the_seal_and_gets_a_verifying_bundle() -> None:
    _, seq, integrator, proofs = parts()
    eid = append(seq, "clm-1")
    out: list[Bundle | Pending] = []
    t = threading.Thread(target=lambda: out.append(proofs.event_bundle("t1", eid, wait=10)))
    t.start()
    time.sleep(0.2)
    assert t.is_alive() and proofs.awaiter.waiting == 1
    t0 = time.monotonic()
    integrator.integrate_and_publish()
    t.join(timeout=5)
    assert time.monotonic() - t0 < 0.5
    bundle = out[0]
    assert isinstance(bundle, Bundle) and bundle.tree_size == 1
    signer = proofs.publisher.primary
    verify_bundle(bundle, verifiers_for(bundle.checkpoint, signer.public_key, signer.name))


def test_waiters_beyond_the_cap_answer_pending_at_once() -> None:
    _, seq, integrator, proofs = parts(max_waiters=1)
    first, second = append(seq, "clm-1"), append(seq, "clm-2")
    waiting = threading.Thread(target=proofs.event_bundle, args=("t1", first), kwargs={"wait": 5})
    waiting.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    refused = proofs.event_bundle("t1", second, wait=5)
    assert isinstance(refused, Pending) and time.monotonic() - t0 < 0.2
    integrator.integrate_and_publish()
    waiting.join(timeout=5)
    assert not waiting.is_alive() and proofs.awaiter.waiting == 0


def test_a_timed_out_wait_answers_pending() -> None:
    _, seq, _, proofs = parts()
    eid = append(seq, "clm-1")
    t0 = time.monotonic()
    assert isinstance(proofs.event_bundle("t1", eid, wait=0.2), Pending)
    assert 0.15 < time.monotonic() - t0 < 1.0


def test_the_latest_checkpoint_cache_never_hides_a_newer_seal() -> None:
    _, seq, integrator, proofs = parts()
    a = append(seq, "clm-1")
    integrator.integrate_and_publish()
    first = proofs.event_bundle("t1", a)
    assert isinstance(first, Bundle) and first.tree_size == 1
    b = append(seq, "clm-2")
    integrator.integrate_and_publish()  # within the cache's TTL
    second = proofs.event_bundle("t1", b)
    assert isinstance(second, Bundle) and second.tree_size == 2
    assert proofs.checkpoint().size == 2  # the watch announced it
    pinned = proofs.event_bundle("t1", a, tree_size=1)
    assert isinstance(pinned, Bundle) and pinned.inclusion_path == first.inclusion_path


def test_a_run_keeps_sealing_until_told_to_stop() -> None:
    _, seq, integrator, proofs = parts()
    stop = threading.Event()
    rounds: list[int] = []
    run = threading.Thread(
        target=integrator.run_continuously,
        args=(None,),
        kwargs={
            "interval": 0.05,
            "seconds": 30,
            "wait": lambda s: not stop.wait(s),
            "after_round": rounds.append,
        },
    )
    run.start()
    try:
        for i in range(3):
            eid = append(seq, f"clm-{i}")
            assert isinstance(proofs.event_bundle("t1", eid, wait=2), Bundle)
    finally:
        stop.set()
        run.join(timeout=2)
    assert not run.is_alive()
    assert sum(rounds) == 3 and len(rounds) > 3


def test_a_run_of_zero_seconds_seals_once() -> None:
    _, seq, integrator, _ = parts()
    append(seq, "clm-1")
    t0 = time.monotonic()
    n = integrator.run_continuously(None, interval=0.05, seconds=0, wait=lambda s: True)
    assert n == 1 and time.monotonic() - t0 < 0.5

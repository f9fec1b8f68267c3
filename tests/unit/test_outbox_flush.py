"""`Relay.flush_marks` at shutdown: every mark queued so far is written when it returns, also
the batch the marker thread is still collecting (it lingers up to MARK_BATCH_SECONDS)."""

from __future__ import annotations

import time

from proveniq.adapters.local.bus import InProcessBus
from proveniq.adapters.memory.ledger import MemoryLedger
from proveniq.ledger.outbox import Relay
from proveniq.ledger.sequencing import Sequencer
from proveniq.ports import NewEvent


def test_flush_marks_waits_for_the_batch_the_marker_holds() -> None:
    ledger = MemoryLedger()
    relay = Relay(outbox=ledger, bus=InProcessBus(), topic="ledger-events")
    seq = Sequencer(store=ledger, relay=relay, reader=ledger)
    for i in range(3):
        seq.append(
            tenant="t1",
            actor="key:k",
            events=[NewEvent(type="claim.created", subject=f"clm_{i}", payload={})],
        )
    time.sleep(0.01)  # the marker thread takes the marks off the queue and lingers
    assert ledger.backlog() > 0
    relay.flush_marks()
    assert ledger.backlog() == 0
    relay.flush_marks()  # nothing queued: returns at once
    assert ledger.backlog() == 0

"""Every port test here runs twice: against the in-memory twin and against real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from proveniq.access.accounts import Accounts
from proveniq.adapters.memory.accounts import MemoryAccounts, MemoryRateBuckets
from proveniq.adapters.memory.ledger import MemoryLedger
from proveniq.adapters.postgres.accounts import PostgresAccounts
from proveniq.adapters.postgres.ledger import PostgresLedger
from proveniq.adapters.postgres.pool import Pool, url_connector
from proveniq.adapters.postgres.ratebuckets import PostgresRateBuckets
from proveniq.ledger.integration import Integrator
from proveniq.ledger.proofs import Proofs
from proveniq.ledger.publishing import CheckpointPublisher
from proveniq.ledger.queries import Queries
from proveniq.ledger.sequencing import GroupCommit, Sequencer
from proveniq.ledger.submission import parse_single
from proveniq.log.signer import Ed25519Signer

ORIGIN = "proveniq.test/conformance"


def event(kind: str = "claim.created", subject: str = "clm_1", **payload: Any) -> Any:
    """One prepared event, as a write request's body would give it."""
    return parse_single(json.dumps({"type": kind, "subject": subject, "payload": payload}).encode())


@dataclass
class Subject:
    kind: str
    ledger: Any  # MemoryLedger | PostgresLedger: every storage port of the log
    accounts: Accounts
    buckets: Any
    sequencer: Sequencer
    integrator: Integrator
    proofs: Proofs
    queries: Queries
    publisher: CheckpointPublisher


def _subject(kind: str, ledger: Any, accounts: Any, buckets: Any) -> Subject:
    publisher = CheckpointPublisher(origin=ORIGIN, signers=[Ed25519Signer.generate(name=ORIGIN)])
    return Subject(
        kind=kind,
        ledger=ledger,
        accounts=Accounts(accounts),
        buckets=buckets,
        # group commit on, as the app runs it
        sequencer=Sequencer(
            store=ledger, relay=None, reader=ledger, group=GroupCommit(wait=0.001, max_size=64)
        ),
        integrator=Integrator(store=ledger, publisher=publisher),
        proofs=Proofs(reader=ledger, publisher=publisher),
        queries=Queries(reader=ledger),
        publisher=publisher,
    )


@pytest.fixture(params=["memory", "postgres"])
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    if request.param == "memory":
        yield _subject("memory", MemoryLedger(), MemoryAccounts(), MemoryRateBuckets())
        return
    pg_server = request.getfixturevalue("pg_server")
    database = request.getfixturevalue("database")
    pool = Pool(url_connector(pg_server.url(user="proveniq_app", database=database)), size=8)
    try:
        yield _subject(
            "postgres", PostgresLedger(pool), PostgresAccounts(pool), PostgresRateBuckets(pool)
        )
    finally:
        pool.dispose()

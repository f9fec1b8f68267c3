"""risk_score: the ledger-events follower (risk scoring, webhook fan-out, Firestore projection)."""

import functions_framework
from cloudevents.http import CloudEvent

from proveniq.app import entrypoints


@functions_framework.cloud_event
def risk_score(event: CloudEvent) -> None:
    entrypoints.risk_score(event)

"""device_ingest: signed device telemetry from Pub/Sub `device-telemetry` into the ledger."""

import functions_framework
from cloudevents.http import CloudEvent

from proveniq.app import entrypoints


@functions_framework.cloud_event
def device_ingest(event: CloudEvent) -> None:
    entrypoints.device_ingest(event)

"""batch_merkle: on each scheduler tick, integrate new leaves and publish a signed checkpoint."""

import functions_framework
from cloudevents.http import CloudEvent

from proveniq.app import entrypoints


@functions_framework.cloud_event
def batch_merkle(event: CloudEvent) -> None:
    entrypoints.batch_merkle()

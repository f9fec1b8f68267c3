"""write_event: POST /v1/events and POST /v1/events:batch (sequencing into the ledger)."""

import functions_framework
from flask import Request, Response

from proveniq.app import entrypoints


@functions_framework.http
def write_event(request: Request) -> Response:
    return entrypoints.http("write_event", request)

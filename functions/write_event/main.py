"""write_event: POST /v1/events and POST /v1/events:batch (sequencing into the ledger)."""

import functions_framework
from flask import Request, Response

from proveniq.edge import routes as api


@functions_framework.http
def write_event(request: Request) -> Response:
    return api.handle(request, api.write_routes)

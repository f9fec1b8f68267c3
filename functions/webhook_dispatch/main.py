"""webhook_dispatch: one signed webhook delivery attempt, invoked by Cloud Tasks."""

import functions_framework
from flask import Request, Response

from proveniq.app import entrypoints


@functions_framework.http
def webhook_dispatch(request: Request) -> Response:
    return entrypoints.webhook_dispatch(request)

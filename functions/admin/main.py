"""admin: partners and API keys (global ADMIN only)."""

import functions_framework
from flask import Request, Response

from proveniq.app import entrypoints


@functions_framework.http
def admin(request: Request) -> Response:
    return entrypoints.http("admin", request)

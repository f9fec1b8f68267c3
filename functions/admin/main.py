"""admin: partners and API keys (global ADMIN only)."""

import functions_framework
from flask import Request, Response

from proveniq import api


@functions_framework.http
def admin(request: Request) -> Response:
    return api.handle(request, api.admin_routes)

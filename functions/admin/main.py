"""admin: partners and API keys (global ADMIN only)."""

import functions_framework
from flask import Request, Response

from proveniq.edge import routes as api


@functions_framework.http
def admin(request: Request) -> Response:
    return api.handle(request, api.admin_routes)

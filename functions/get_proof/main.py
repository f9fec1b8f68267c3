"""get_proof: proof bundles, checkpoints, consistency proofs, verification and queries."""

import functions_framework
from flask import Request, Response

from proveniq.edge import routes as api


@functions_framework.http
def get_proof(request: Request) -> Response:
    return api.handle(request, api.proof_routes)

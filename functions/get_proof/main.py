"""get_proof: proof bundles, checkpoints, consistency proofs, verification and queries."""

import functions_framework
from flask import Request, Response

from proveniq.app import entrypoints


@functions_framework.http
def get_proof(request: Request) -> Response:
    return entrypoints.http("get_proof", request)

"""One entry point per function: what `functions/<name>/main.py` calls."""

from __future__ import annotations

from flask import Request, Response

from proveniq.app.runtime import runtime
from proveniq.edge.http import serve


def http(function: str, request: Request) -> Response:
    """Serve one HTTP request for `function` through the route map."""
    rt = runtime()
    return serve(request, rt.routes(function), rt.gate, max_body=rt.settings.max_body_bytes)


def batch_merkle() -> int:
    """A scheduler tick: sweep the outbox, integrate and publish until caught up."""
    rt = runtime()
    return rt.integrator.run_until_current(rt.relay)

"""A bounded schemathesis run over the API Gateway spec (terraform/openapi.yaml) against the
local stack over real HTTP: no 5xx, and every error in the Core manual's envelope. The `stack`
fixture itself fails the test on any 5xx it served. `make fuzz` runs a longer one
(SCHEMATHESIS_EXAMPLES=50)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import schemathesis
import yaml
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "5"))


def _spec() -> dict[str, Any]:
    text = (ROOT / "terraform" / "openapi.yaml").read_text()
    text = re.sub(r"\$\{[a-z_]+\}", "https://function.invalid", text)  # terraform's templatefile
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


schema = schemathesis.openapi.from_dict(_spec())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_5xx_and_every_error_in_the_envelope(case: Any, stack: Any) -> None:
    # Platform routes with the platform admin's key; the rest as an organization MEMBER, which
    # keeps webhook and device settings (org:settings) at 403: a fuzzed webhook URL must never
    # make the guard resolve a random host name (tests reach nothing but 127.0.0.1).
    key = stack.admin_key if case.path.startswith("/v1/admin/") else stack.keys["acme:MEMBER"]
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {key}"}
    response = case.call(base_url=stack.base, timeout=30)
    assert response.status_code < 500, (case.method, case.path, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert body["success"] is False and {"code", "message"} <= body["error"].keys()


def test_the_spec_has_every_route_of_the_route_map() -> None:
    from proveniq.edge.routes import ROUTES

    paths = _spec()["paths"]
    for s in ROUTES:
        template = re.sub(r"\{\w+\}", "{}", s.path)
        found = any(re.sub(r"\{\w+\}", "{}", p) == template for p in paths)
        assert found, s.path

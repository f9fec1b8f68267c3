"""examples/webhook_receiver.py accepts what the sender signs and refuses anything else."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from proveniq.followers.webhooks.guard import Guard, Policy
from proveniq.followers.webhooks.sender import HttpSender
from proveniq.followers.webhooks.signing import (
    SIGNATURE_HEADER,
    signature_headers,
    webhook_test_body,
)
from proveniq.followers.webhooks.subscriptions import new_secret

EXAMPLE = Path(__file__).parents[2] / "examples" / "webhook_receiver.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("webhook_receiver_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def running() -> Iterator[tuple[str, list[str], list[dict[str, Any]]]]:
    example = load_example()
    secrets = [new_secret()]
    events: list[dict[str, Any]] = []
    server = example.make_server("127.0.0.1", 0, secrets, on_event=events.append)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", secrets, events
    server.shutdown()
    server.server_close()


SENDER = HttpSender(guard=Guard(policy=Policy.local()), timeout=3)


def send(
    url: str, secrets: list[str], *, at: datetime | None = None, tamper: str = ""
) -> int | None:
    now = at or datetime.now(UTC)
    body = webhook_test_body(event_id="evt_test_1", tenant="p1", subscription_id="wh_x", at=now)
    headers = signature_headers(message_id="evt_test_1", body=body, secrets=secrets, at=now)
    if tamper == "body":
        body = body.replace(b"p1", b"p2")
    elif tamper == "hmac":
        headers[SIGNATURE_HEADER] = "sha256=" + "0" * 64
    elif tamper == "standard":
        headers["webhook-signature"] = "v1,AAAA"
    return SENDER.send(url=url, body=body, headers=headers).status


def test_the_example_verifies_both_signatures(
    running: tuple[str, list[str], list[dict[str, Any]]],
) -> None:
    url, secrets, events = running
    assert send(url, secrets) == 204
    assert [e["type"] for e in events] == ["webhook.test"]
    assert send(url, secrets) == 204  # a repeat is acknowledged, not processed twice
    assert len(events) == 1
    for tamper in ("body", "hmac", "standard"):
        assert send(url, secrets, tamper=tamper) == 401
    assert send(url, [new_secret()]) == 401
    assert send(url, secrets, at=datetime.now(UTC) - timedelta(minutes=10)) == 401  # replayed
    assert send(url, [new_secret(), secrets[0]]) == 204  # rotation: either secret is enough

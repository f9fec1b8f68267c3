"""A webhook receiver that checks both Proveniq signatures before trusting a delivery.

    pip install standardwebhooks
    WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py --port 9000

It answers 204 to a delivery whose ``webhook-signature`` verifies with `standardwebhooks`
(which also refuses a ``webhook-timestamp`` more than 5 minutes off: replay protection) AND
whose ``X-Proveniq-Signature`` verifies with plain HMAC-SHA256; 401 otherwise. During a secret
rotation, give both secrets (``WEBHOOK_SECRET=new,old``): either one verifying is enough.
Deliveries are at least once: it remembers ``webhook-id`` values and acknowledges a repeat
without processing it again. Answer 2xx fast; do the work after (or queue it).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.server
import json
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY = 1024 * 1024


class Refused(Exception):
    pass


def verify_proveniq_signature(body: bytes, header: str, secret: str) -> bool:
    """``X-Proveniq-Signature: sha256=<hex>`` (several, space-separated, during a rotation):
    HMAC-SHA256 keyed with the secret's text (``whsec_...`` as UTF-8) over the raw body."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, value) for value in header.split())


def verify(body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> dict[str, Any]:
    """The event if both signatures verify with one of ``secrets``; raises `Refused`."""
    lower = {k.lower(): v for k, v in headers.items()}
    proveniq = lower.get("x-proveniq-signature", "")
    for secret in secrets:
        try:
            event: dict[str, Any] = Webhook(secret).verify(body, lower)
        except (WebhookVerificationError, ValueError):  # ValueError: a malformed header
            continue
        if verify_proveniq_signature(body, proveniq, secret):
            return event
    raise Refused("no secret verifies both signatures")


def make_server(
    host: str, port: int, secrets: Sequence[str], on_event: Any = None
) -> http.server.ThreadingHTTPServer:
    seen: set[str] = set()
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                self._answer(413 if length else 400)
                return
            body = self.rfile.read(length)
            try:
                event = verify(body, dict(self.headers), secrets)
            except Refused:
                self._answer(401)
                return
            with lock:
                repeat = self.headers["webhook-id"] in seen
                seen.add(self.headers["webhook-id"])
            if not repeat and on_event is not None:
                on_event(event)
            self._answer(204)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return http.server.ThreadingHTTPServer((host, port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    secrets = [s.strip() for s in os.environ.get("WEBHOOK_SECRET", "").split(",") if s.strip()]
    if not secrets:
        parser.error("set WEBHOOK_SECRET to the subscription's whsec_ secret")

    def show(event: dict[str, Any]) -> None:
        ledger = event.get("data", {}).get("ledger", {})
        print(json.dumps({"id": event["id"], "type": event["type"], "seq": ledger.get("seq")}))

    server = make_server(args.host, args.port, secrets, on_event=show)
    print(f"listening on http://{args.host}:{args.port}/")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()

"""Webhook benchmark: deliveries per second end to end, and commit -> delivered latency.

    python bench/webhooks.py [--events N] [--conc C] [--paced M] [--rate R] [--workers W]

Starts its own embedded PostgreSQL (bench/_harness.py), runs `proveniq serve` on a free
127.0.0.1 port as `make run` does (gateway, in-process bus, risk scoring + webhook fan-out,
the webhook worker polling the durable task queue and POSTing to webhook_dispatch), creates one
subscription to ``claim.*`` over the API, and points it at a receiver in this process on
127.0.0.1 that verifies both signatures of every request and answers 204. Nothing connects
anywhere else.

(a) burst: N claims written over HTTP by C closed-loop clients (a spawned process); figures:
    the write rate, then deliveries per second from the first write to the N-th delivery, and
    commit -> delivered latency under that backlog;
(b) paced: M claims written one at a time at R per second; commit -> delivered latency with no
    backlog (what one event costs: relay, fan-out, the worker's poll, the signed POST).

Latency of one delivery = the receiver's clock on arrival - the body's ``timestamp`` (the
ledger's recorded_at, taken in the write transaction). Same machine, same clock. Every run
also checks that each written claim arrived exactly once. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import hmac
import http.client
import http.server
import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import _harness as h
from standardwebhooks.webhooks import Webhook

SCHEDULE = "0,1,1,1,1,1"  # a failed attempt (none expected) retries within seconds
WARM = h.Request("GET", "/health")


# ---- the receiver ------------------------------------------------------------------------------


@dataclass
class Receiver:
    """Verifies both signatures and records (arrival, recorded_at, webhook-id) per request."""

    secret: str = ""
    arrivals: list[tuple[float, float, str]] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, headers: dict[str, str], body: bytes) -> None:
        now = time.time()
        try:
            event = Webhook(self.secret).verify(body, headers)
            want = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            if not any(
                hmac.compare_digest(want, v) for v in headers["x-proveniq-signature"].split()
            ):
                raise ValueError("X-Proveniq-Signature does not verify")
            recorded = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        except Exception as e:
            with self.lock:
                self.bad.append(repr(e))
            return
        with self.lock:
            self.arrivals.append((now, recorded.timestamp(), headers["webhook-id"]))

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def since(self, start: int) -> list[tuple[float, float, str]]:
        with self.lock:
            return self.arrivals[start:]


def start_receiver(rx: Receiver) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            rx.take({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---- the load ------------------------------------------------------------------------------------


def claim_plan(tag: str) -> h.Plan:
    """Measured requests write claim j; warm-up requests are GET /health (no event, no webhook)."""
    bodies: dict[int, bytes] = {}

    def request(j: int, warm: bool) -> h.Request:
        if warm:
            return WARM
        body = bodies.pop(j, None) or json.dumps(h.claim(f"clm-{tag}-{j}", j)).encode()
        return h.Request("POST", "/v1/events", body, expect=201)

    return request


def call(port: int, key: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def wait_for(rx: Receiver, start: int, count: int, *, timeout: float, label: str) -> None:
    deadline = time.monotonic() + timeout
    last = 0.0
    while (got := rx.count() - start) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{label}: only {got} of {count} deliveries after {timeout:.0f} s")
        if rx.bad:
            raise SystemExit(f"{label}: a delivery failed verification: {rx.bad[0]}")
        if time.monotonic() - last >= 1.0:
            h.log(f"{label}: delivered {got}/{count}")
            last = time.monotonic()
        time.sleep(0.05)
    h.log(f"{label}: delivered {count}/{count}")


def latency_line(label: str, arrivals: list[tuple[float, float, str]]) -> str:
    lat = [(a - r) * 1000 for a, r, _ in arrivals]
    return (
        f"{label}: commit -> delivered p50 {h.pct(lat, 0.5):.0f} ms, p99 {h.pct(lat, 0.99):.0f} ms,"
        f" max {max(lat):.0f} ms ({len(lat)} deliveries)"
    )


def once(arrivals: list[tuple[float, float, str]], expected: int, label: str) -> None:
    ids = [i for _, _, i in arrivals]
    dupes = len(ids) - len(set(ids))
    if len(set(ids)) != expected or dupes:
        raise SystemExit(f"{label}: {len(set(ids))} distinct of {expected}, {dupes} duplicates")


# ---- main ----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--events", type=int, default=500, help="claims in the burst [500]")
    ap.add_argument("--conc", type=int, default=8, help="concurrent writers in the burst [8]")
    ap.add_argument("--paced", type=int, default=50, help="claims written one by one [50]")
    ap.add_argument("--rate", type=float, default=10.0, help="paced writes per second [10]")
    ap.add_argument("--workers", type=int, default=1, help="proveniq serve --workers [1]")
    ap.add_argument("--timeout", type=float, default=300, help="max seconds per phase [300]")
    ap.add_argument(
        "--firestore",
        action="store_true",
        help="also run the app projection (the Firestore emulator, when Node is installed)",
    )
    args = ap.parse_args()
    if args.events < 1 or args.paced < 1 or args.conc < 1 or args.rate <= 0:
        ap.error("--events, --paced and --conc must be >= 1, --rate > 0")

    rx = Receiver()
    receiver = start_receiver(rx)
    url = f"http://127.0.0.1:{receiver.server_port}/hook"
    with h.embedded_postgres() as pg, h.Clients() as clients:
        # what `make run` sets: loopback receivers over http; a short schedule
        os.environ["PROVENIQ_WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.0/8"
        os.environ["PROVENIQ_WEBHOOK_ALLOW_HTTP"] = "true"
        os.environ["PROVENIQ_WEBHOOK_RETRY_SCHEDULE"] = SCHEDULE
        if not args.firestore:  # "configured by hand" to nothing: no emulator, no projection
            os.environ["FIRESTORE_EMULATOR_HOST"] = "127.0.0.1:9"
        db = pg.fresh("webhooks")
        stack = h.ServeProcess(pg, workers=args.workers)
        try:
            h.log(f"starting proveniq serve --workers {args.workers}")
            tenant = stack.use(db)
            rt = h.install(h.stack_env(pg, db, pg.folder / f"serve-{db}"))
            admin, _ = rt.accounts.create_key(partner_id=tenant.partner_id, org_role="ADMIN")
            from proveniq.app.runtime import release_runtime

            release_runtime()
            status, doc = call(
                stack.port,
                admin.secret,
                "POST",
                "/v1/webhooks",
                {"url": url, "events": ["claim.*"]},
            )
            if status != 201:
                raise SystemExit(f"POST /v1/webhooks -> {status}: {doc}")
            rx.secret = doc["data"]["secret"]
            print(h.platform_line("webhooks", pg, "shared_buffers", "synchronous_commit"))
            print(f"proveniq serve --workers {args.workers}, retry schedule {SCHEDULE}")

            # (a) burst
            h.log(f"(a) burst: {args.events} claims, {args.conc} writers")
            start = rx.count()
            go: list[float] = []
            whole = h.Meter(pg.postmaster, server=stack.server_cpu)

            def on_go() -> None:
                go.append(time.time())
                whole.start()

            load = h.Load(
                port=stack.port,
                key=tenant.key,
                conc=args.conc,
                plan=functools.partial(claim_plan, "burst"),
                max_requests=args.events,
            )
            result, usage = clients.run(
                load, h.Meter(pg.postmaster, server=stack.server_cpu), on_go=on_go
            )
            h.log(f"(a) writes done in {result.seconds:.2f} s; waiting for deliveries")
            wait_for(rx, start, args.events, timeout=args.timeout, label="(a)")
            total = whole.stop()
            burst = rx.since(start)
            once(burst, args.events, "(a)")
            span = max(a for a, _, _ in burst) - go[0]
            p50, p99 = (h.pct(result.latencies, q) * 1000 for q in (0.5, 0.99))
            print(
                f"(a) writes: {result.requests} claims in {result.seconds:.2f} s = "
                f"{result.requests / result.seconds:.0f}/s (p50 {p50:.1f} ms, p99 {p99:.1f} ms); "
                f"{usage.summary(result)}"
            )
            print(
                f"(a) deliveries: {len(burst)} in {span:.2f} s from the first write = "
                f"{len(burst) / span:.0f}/s end to end; cores: server "
                f"{total.cores(total.server):.2f}, pg {total.cores(total.pg):.2f}, "
                f"machine {total.cores(total.machine):.2f}"
            )
            print(latency_line("(a) under the backlog", burst))

            # (b) paced
            h.log(f"(b) paced: {args.paced} claims at {args.rate:g}/s")
            start = rx.count()
            t0 = time.monotonic()
            for j in range(args.paced):
                time.sleep(max(0.0, t0 + j / args.rate - time.monotonic()))
                status, doc = call(
                    stack.port, tenant.key, "POST", "/v1/events", h.claim(f"clm-paced-{j}", j)
                )
                if status != 201:
                    raise SystemExit(f"POST /v1/events -> {status}: {doc}")
            wait_for(rx, start, args.paced, timeout=args.timeout, label="(b)")
            paced = rx.since(start)
            once(paced, args.paced, "(b)")
            print(latency_line(f"(b) paced at {args.rate:g}/s", paced))
        finally:
            stack.close()
            receiver.shutdown()
            receiver.server_close()


if __name__ == "__main__":
    main()

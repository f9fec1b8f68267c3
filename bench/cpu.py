"""App CPU per write request: single-event POST /v1/events and POST /v1/events:batch driven
in-process through the local gateway (`localstack.gateway` over every function's
functions-framework app: the same WSGI code the HTTP server runs, without the socket), on a
real embedded PostgreSQL, printing process CPU (not wall time) per request and per batched
event. `--profile` runs the same loops under cProfile and prints the top entries by tottime
and by cumulative time.

    .venv/bin/python bench/cpu.py [--requests 2000] [--batch-events 20000] [--batch 1000]
                                  [--rounds 3] [--tier internal] [--profile]

Process CPU includes PostgreSQL's client side (pg8000) and every thread of this process (the
relay's marker, the in-process bus); PostgreSQL's own CPU is in its own processes, not counted.
The driver's own cost (one environ dict and a BytesIO per request) is a few microseconds.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import _harness as h

WARMUP = 200


def _environ(path: str, body: bytes, key: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:8080",
        "HTTP_AUTHORIZATION": f"Bearer {key}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


class Driver:
    def __init__(self, app: Callable[..., Iterable[bytes]], key: str) -> None:
        self.app = app
        self.key = key
        self.status = ""

    def _start(self, status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
        self.status = status

    def post(self, path: str, body: bytes) -> bytes:
        out = b"".join(self.app(_environ(path, body, self.key), self._start))
        if not self.status.startswith("201"):
            raise AssertionError(f"{path}: {self.status} {out[:300]!r}")
        return out


def bodies_single(tag: str, n: int) -> list[bytes]:
    return [json.dumps(h.claim(f"clm-{tag}-{i}", i)).encode() for i in range(n)]


def bodies_batch(tag: str, events: int, batch: int) -> list[bytes]:
    out = []
    for start in range(0, events, batch):
        evs = [h.claim(f"clm-{tag}-{i}", i) for i in range(start, min(events, start + batch))]
        out.append(json.dumps({"events": evs}).encode())
    return out


def measure(drv: Driver, path: str, bodies: list[bytes]) -> float:
    cpu = time.process_time()
    for b in bodies:
        drv.post(path, b)
    return time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="single-event requests/round")
    parser.add_argument("--batch-events", type=int, default=20_000, help="batched events/round")
    parser.add_argument("--batch", type=int, default=1000, help="events per batch request")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tier", default="internal", help="the tenant's tier (rate limits)")
    parser.add_argument("--profile", action="store_true", help="cProfile top 25, one round")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    from proveniq.app import localstack
    from proveniq.app.runtime import release_runtime

    with h.embedded_postgres() as pg:
        rt = h.install(h.stack_env(pg, pg.fresh("cpu"), pg.folder / "state", pool_size="4"))
        partner = rt.accounts.create_partner(name="bench cpu", tier=args.tier)
        key, _ = rt.accounts.create_key(partner_id=partner.id, org_role="MEMBER", label="cpu")
        drv = Driver(localstack.gateway(localstack.build_apps()), key.secret)
        for b in bodies_single("warm", WARMUP):
            drv.post("/v1/events", b)
        for b in bodies_batch("warmb", 2 * args.batch, args.batch):
            drv.post("/v1/events:batch", b)
        rounds = 1 if args.profile else args.rounds
        single, batched = [], []
        for r in range(rounds):
            one = bodies_single(f"s{r}", args.requests)
            many = bodies_batch(f"b{r}", args.batch_events, args.batch)
            prof = cProfile.Profile(time.process_time) if args.profile else None
            if prof:
                prof.enable()
            s = measure(drv, "/v1/events", one)
            if prof:
                prof.disable()
                _report(prof, f"single-event POST /v1/events x {args.requests}", args.top)
                prof = cProfile.Profile(time.process_time)
                prof.enable()
            b = measure(drv, "/v1/events:batch", many)
            if prof:
                prof.disable()
                _report(prof, f"POST /v1/events:batch, {args.batch_events} events", args.top)
            single.append(s / args.requests * 1e6)
            batched.append(b / args.batch_events * 1e6)
            h.log(f"round {r + 1}/{rounds}: {single[-1]:.0f} us/request, {batched[-1]:.1f} us/ev")
        release_runtime()
    note = " (under cProfile: inflated)" if args.profile else ""
    print(f"app CPU, {rounds} round(s), median (min){note}, tier {args.tier}:")
    print(
        f"  single-event POST /v1/events: {statistics.median(single):7.0f} us/request "
        f"({min(single):.0f})"
    )
    print(
        f"  POST /v1/events:batch ({args.batch}/request): "
        f"{statistics.median(batched):5.1f} us/event ({min(batched):.1f})"
    )


def _report(prof: cProfile.Profile, title: str, top: int) -> None:
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        st = pstats.Stats(prof, stream=out)
        st.strip_dirs().sort_stats(key).print_stats(top)
        text = out.getvalue()
        start = text.find("   ncalls")
        print(f"== {title}: top {top} by {key}")
        print(text[start:].rstrip())
        print()


if __name__ == "__main__":
    main()

"""The cost of metrics and traces on the write path: single-event POST /v1/events through the
write_event function (functions-framework's test client, in-process: the same handler code the
HTTP server runs), alternating telemetry off and on (PROVENIQ_TELEMETRY) in fresh processes,
and printing the medians and their ratio (target: under 10 % more CPU per request).

    .venv/bin/python bench/telemetry.py [--rounds 5] [--requests 1500]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import _harness as h

WARMUP = 200


def one_run(requests: int) -> None:
    """In a child process: CPU ms per request and requests/s, as one JSON line on stdout."""
    from proveniq.app import localstack
    from proveniq.app.runtime import release_runtime

    with h.embedded_postgres() as pg:
        db = pg.fresh("telemetry")
        rt = h.install(h.stack_env(pg, db, pg.folder / "state"))
        tenant = h.new_tenant(rt, "t")
        client = localstack.build_apps()["write_event"].test_client()
        headers = {"Authorization": f"Bearer {tenant.key}"}
        body = {"type": "claim.created", "subject": "clm_1", "payload": {"amount_cents": 5}}
        for _ in range(WARMUP):
            client.post("/v1/events", json=body, headers=headers)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(requests):
            assert client.post("/v1/events", json=body, headers=headers).status_code == 201
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        release_runtime()
    print(json.dumps({"cpu_ms": cpu / requests * 1e3, "rps": requests / wall}))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        one_run(args.requests)
        return
    results: dict[str, list[dict[str, float]]] = {"false": [], "true": []}
    for r in range(args.rounds):
        for telemetry in ("false", "true"):  # alternate, so load drifts hit both alike
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--requests", str(args.requests)],
                env={**os.environ, "BENCH_TELEMETRY": telemetry},
                capture_output=True,
                text=True,
                check=True,
            )
            results[telemetry].append(json.loads(out.stdout.strip().splitlines()[-1]))
            last = results[telemetry][-1]
            h.log(f"[telemetry] round {r + 1}/{args.rounds} telemetry={telemetry}: {last}")
    off = {k: statistics.median(x[k] for x in results["false"]) for k in ("cpu_ms", "rps")}
    on = {k: statistics.median(x[k] for x in results["true"]) for k in ("cpu_ms", "rps")}
    print(f"single-event writes, {args.requests} requests x {args.rounds} rounds each, medians")
    print(f"{'':24}{'CPU ms/request':>16}{'requests/s':>12}")
    print(f"{'telemetry off':24}{off['cpu_ms']:>16.3f}{off['rps']:>12.0f}")
    print(f"{'metrics + traces on':24}{on['cpu_ms']:>16.3f}{on['rps']:>12.0f}")
    print(
        f"overhead: CPU x{on['cpu_ms'] / off['cpu_ms']:.3f} "
        f"({(on['cpu_ms'] / off['cpu_ms'] - 1) * 100:+.1f} %), throughput "
        f"x{on['rps'] / off['rps']:.3f} (target: under 10 % more CPU)"
    )


if __name__ == "__main__":
    main()

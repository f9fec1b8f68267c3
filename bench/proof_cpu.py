"""CPU per proof: `GET /v1/events/{id}/proof` through the get_proof function (functions-framework's
test client, in-process: the handler code the HTTP server runs), and a cProfile of the same loop.

    .venv/bin/python bench/proof_cpu.py [--events 2000] [--requests 2000] [--profile 25]

Writes `--events` single events, seals them (`Integrator.integrate_and_publish`), warms up, then
asks for the proof of random events: CPU ms per request (process time), and with `--profile N`
the N top entries of cProfile by own time (tottime). Telemetry as in the stack
(BENCH_TELEMETRY=false turns it off).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import time

import _harness as h

WARMUP = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--profile", type=int, default=25, help="top entries to print (0: none)")
    args = parser.parse_args()
    from proveniq.app import localstack
    from proveniq.app.runtime import release_runtime

    with h.embedded_postgres() as pg:
        db = pg.fresh("proofcpu")
        rt = h.install(h.stack_env(pg, db, pg.folder / "state"))
        tenant = h.new_tenant(rt, "t")
        apps = localstack.build_apps()
        writer, reader = apps["write_event"].test_client(), apps["get_proof"].test_client()
        headers = {"Authorization": f"Bearer {tenant.key}"}
        ids = []
        for i in range(args.events):
            r = writer.post("/v1/events", json=h.claim(f"clm-{i}", i), headers=headers)
            ids.append(r.get_json()["data"]["id"])
        while rt.integrator.integrate_and_publish() is not None:
            pass

        def one() -> None:
            eid = random.choice(ids)
            r = reader.get(f"/v1/events/{eid}/proof", headers=headers)
            assert r.status_code == 200, r.data[:300]

        for _ in range(WARMUP):
            one()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(args.requests):
            one()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(
            f"GET /v1/events/{{id}}/proof in-process, {args.events} events sealed, "
            f"{args.requests} requests: {cpu / args.requests * 1e3:.3f} ms CPU/request, "
            f"{args.requests / wall:,.0f} requests/s (one thread)"
        )
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(args.requests):
                one()
            prof.disable()
            out = io.StringIO()
            stats = pstats.Stats(prof, stream=out).strip_dirs().sort_stats(args.sort)
            stats.print_stats(args.profile)
            print(out.getvalue())
        release_runtime()


if __name__ == "__main__":
    main()

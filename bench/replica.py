"""Reads off a read replica: proofs/s and latency over HTTP with reads on the primary vs on a
streaming replica, side by side in one run.

    python bench/replica.py [--entries 200000] [--quick] [--clients 8] [--rounds 2]

Starts its own embedded PostgreSQL under /tmp (bench/_harness.py), loads N entries and seals
them (bench/prove.py's loader and integration: link + COPY, then `integrate_and_publish` until
caught up, root checked against an independent RFC 6962 root), then starts a hot standby of that
server (`pg_basebackup -R`, streaming over the Unix socket; adapters/local/postgres.py) and waits
until it has replayed everything. Then, `--rounds` times, alternately:

    primary  the stack as today: every read on the primary
    replica  the same stack with PROVENIQ_READ_REPLICA_URL set to the standby (get_proof's reads
             through `ReplicaReader`; the write path and accounts on the primary)

each `GET /v1/events/{id}/proof` for random events from 8 client threads in a spawned process
(bench/prove.py's proof step: at most 5,000 requests or 30 s, a few bundles verified), printing
requests/s, p50/p99, CPU cores of the server process, the client process, the primary's
PostgreSQL and the standby's, and the replica reader's fallbacks (0 expected: nothing is written
meanwhile). Last, the ratio replica / primary of the best round of each. Both servers share this
machine's cores, so the ratio here says what the replica costs and how much primary CPU it takes
off, not what a separate replica machine would add.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import _harness as h
import prove

from proveniq.adapters.local import postgres

log, pct = h.log, h.pct


def postmaster_pid(data_dir: Any) -> int:
    with open(data_dir / "postmaster.pid") as f:
        return int(f.readline())


def use(run: prove.Run, db: str, *, replica_url: str | None) -> Any:
    """Install the stack's runtime on `db`, with get_proof's reads on the replica or not."""
    extra = {"pool_size": "32"}
    if replica_url:
        extra |= {"read_replica_url": replica_url, "read_replica_pool_size": "32"}
    rt = h.install(h.stack_env(run.pg, db, run.pg.folder / "state", **extra))
    run.stack.runtime = rt
    return rt


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--entries", type=int, help="entries loaded [200000; --quick 20000]")
    parser.add_argument("--quick", action="store_true", help="20,000 entries, 1 round, short")
    parser.add_argument("--clients", type=int, default=8, help="proof clients [8]")
    parser.add_argument("--rounds", type=int, help="primary/replica rounds [2; --quick 1]")
    args = parser.parse_args()
    n = args.entries or (20_000 if args.quick else 200_000)
    rounds = args.rounds or (1 if args.quick else 2)
    if n < 1 or rounds < 1 or args.clients < 1:
        parser.error("--entries, --rounds and --clients must be positive")
    args.proof_requests = 1_000 if args.quick else 5_000
    args.proof_seconds = 10.0 if args.quick else 30.0

    with h.embedded_postgres() as pg:
        print(h.platform_line("Replica read benchmark", pg, "server_version", "shared_buffers"))
        print(
            "HTTP: werkzeug threaded server, PROVENIQ_POOL_SIZE=32 (and "
            "PROVENIQ_READ_REPLICA_POOL_SIZE=32), internal tier; clients in a spawned process"
        )
        stack = h.InProcessStack(pg)
        standby_dir = pg.folder / "standby"
        try:
            with h.Clients() as clients:
                run = prove.Run(pg, stack, clients, args)
                db = pg.fresh(f"r{n}")
                tenant = stack.use(db)
                log(f"loading {n:,} entries")
                ld = prove.load(pg, db, n, tenant)
                log(f"integrating {n:,} entries")
                ig = prove.integrate_all(pg, db, n, stack.runtime)
                if ig.size != n or ig.root != ld.root:
                    raise SystemExit(f"integration check FAILED: size {ig.size}")
                print(
                    f"loaded {n:,} entries in {ld.seconds:.1f} s, integrated in "
                    f"{ig.seconds:.1f} s; root == independent RFC 6962 root"
                )
                log("starting the standby (pg_basebackup -R)")
                t0 = time.perf_counter()
                standby = postgres.start_standby(pg.server, standby_dir)
                lag = postgres.wait_replayed(pg.server, standby, timeout=600)
                print(
                    f"standby: base backup + start {time.perf_counter() - t0 - lag:.1f} s, "
                    f"caught up {lag:.2f} s later"
                )
                standby_pid = postmaster_pid(standby_dir)
                replica_url = standby.url(user=pg.app_role, database=db)
                best: dict[str, float] = {}
                for r in range(rounds):
                    for mode in ("primary", "replica"):
                        rt = use(run, db, replica_url=replica_url if mode == "replica" else None)
                        log(f"round {r + 1}: proofs with reads on the {mode}")
                        cpu0, t = h.tree_cpu(standby_pid), time.perf_counter()
                        pr = prove.prove(run, db, n, tenant)
                        standby_cores = (h.tree_cpu(standby_pid) - cpu0) / (time.perf_counter() - t)
                        fallbacks = (
                            sum(rt.reads.reader.fallbacks.values()) if rt.reads is not None else 0
                        )
                        best[mode] = max(best.get(mode, 0.0), pr.rate)
                        print(
                            f"round {r + 1} {mode:>7}: {pr.requests:,} proofs, {pr.rate:,.0f} "
                            f"req/s, p50 {pct(pr.latencies, 0.5) * 1e3:.1f} ms, p99 "
                            f"{pct(pr.latencies, 0.99) * 1e3:.1f} ms   ({pr.cores}; standby "
                            f"{standby_cores:.2f}); {pr.verified} bundles verified; replica "
                            f"fallbacks {fallbacks}",
                            flush=True,
                        )
                print(
                    f"replica / primary (best of {rounds}): "
                    f"{best['replica'] / best['primary']:.2f} "
                    f"({best['replica']:,.0f} vs {best['primary']:,.0f} proofs/s, "
                    f"{args.clients} clients, N = {n:,})"
                )
                stack.release()
        finally:
            stack.close()
            postgres.stop(standby_dir)


if __name__ == "__main__":
    main()

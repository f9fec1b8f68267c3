"""Write-path benchmark: the ledger's append under the advisory lock, raw and over HTTP.

    python bench/write.py [--events N] [--batch-events M] [--quick] [--workers W]

Starts its own embedded PostgreSQL in a temporary folder under /tmp, migrates a template
database, serves the local stack's gateway over real HTTP on 127.0.0.1 (werkzeug, threaded),
and prints one table, every row measured in the same run on a fresh database per section:

(a) the raw ceiling: the store's own sequencing transaction (`ledger_lock_tail`, then the
    events + outbox insert, then commit; one event per transaction) on one pg8000 connection
    per thread over the Unix socket, at 1, 8 and 32 threads;
(b) `POST /v1/events` (one small claim per request) at 1, 8 and 32 concurrent clients, with
    p50/p99 latency and the ratio to (a) at the same concurrency;
(c) `POST /v1/events:batch` with 100- and 1,000-event batches at 1 and 4 clients, against the
    same rows bulk-loaded under the lock with a multi-row INSERT ... VALUES (the store's SQL) and
    with COPY FROM STDIN; the ratio is to the faster of the two.

HTTP clients run in a separate (spawned) process with one persistent `http.client` connection
per thread, so they do not share the server's GIL. CPU use of the driver, the app server process
and PostgreSQL is shown as cores (CPU seconds / wall seconds; the machine has `nproc` of them).
At the end every database is checked: seq contiguous from 0 and every prev equal to the
previous leaf_hash (SQL window query), one outbox row per event, and every leaf hash recomputed
from the stored entry with the kernel. Progress goes to stderr. The harness is bench/_harness.py.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import itertools
import json
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import _harness as h

from proveniq.adapters.postgres.ledger import (
    CursorView,
    PostgresLedger,
    copy_insert,
    values_insert,
)
from proveniq.errors import VerificationError
from proveniq.log.canonical import canonicalize
from proveniq.log.chain import Draft, Tail, link, verify_chain
from proveniq.log.entry import Entry
from proveniq.log.timefmt import utcnow
from proveniq.ports import EventFilter

RAW_TENANT = "prt_benchraw0000000"
RAW_ACTOR = "key:key_benchraw000"
ZERO32 = bytes(32)


def claim(tag: str, i: int) -> dict[str, Any]:
    return h.claim(f"clm-{tag}-{i}", i)


# ---- measurements ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """What one row measures: `events` events in transactions / requests of `batch`."""

    section: str
    label: str
    conc: int
    events: int
    batch: int
    tag: str  # makes the subjects of the row's claims unique


@dataclass
class Row:
    case: Case
    txs: int
    seconds: float
    latencies: list[float]  # seconds per transaction / request
    cores_driver: float
    cores_server: float | None
    cores_pg: float
    ratio: str = ""

    @property
    def rate(self) -> float:
        return self.case.events / self.seconds

    def pct(self, q: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds."""
        return h.pct(self.latencies, q) * 1000


# ---- (a) and the bulk ceilings of (c): the store's SQL driven directly ------------------------


def raw_drafts(tag: str, count: int) -> tuple[list[Draft], list[bytes]]:
    drafts, payloads = [], []
    for i in range(count):
        c = claim(tag, i)
        payload = canonicalize(c["payload"])
        payloads.append(payload)
        drafts.append(
            Draft(
                id=f"evt_{uuid.uuid4().hex}",
                tenant=RAW_TENANT,
                type=c["type"],
                subject=c["subject"],
                payload_hash=hashlib.sha256(payload).digest(),
            )
        )
    return drafts, payloads


class OneConnection:
    """The pool's `transaction()` on one thread's own connection, so the store's sequencing
    transaction runs with no pool in between."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.cur = conn.cursor()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        try:
            yield self.cur
            self.conn.commit()
        except BaseException:
            with contextlib.suppress(Exception):  # a lost connection cannot roll back
                self.conn.rollback()
            raise


Insert = Callable[[Any, Sequence[Entry], Sequence[bytes], str], None]


def raw_run(pg: h.Database, db: str, case: Case, *, insert: Insert | None = None) -> Row:
    """The case's events in transactions of `batch`, by `conc` threads, each on its own
    connection; `insert` None is the store's own choice (VALUES, or COPY for large batches)."""
    conc, events, batch = case.conc, case.events, case.batch
    drafts, payloads = raw_drafts(case.tag, events + conc * 2)
    n_tx = math.ceil(events / batch)
    chunks = [(drafts[i : i + batch], payloads[i : i + batch]) for i in range(0, events, batch)]
    warm = [([drafts[events + k]], [payloads[events + k]]) for k in range(conc * 2)]
    counter = itertools.count()
    start = threading.Barrier(conc + 1)
    latencies: list[float] = []
    errors: list[BaseException] = []

    def append(one: OneConnection, chunk: tuple[list[Draft], list[bytes]]) -> None:
        with PostgresLedger(one).sequencing() as tx:  # type: ignore[arg-type]
            tail, recorded_at = tx.lock_tail()
            entries = link(chunk[0], tail=tail, recorded_at=recorded_at)
            if insert is None:
                tx.insert(entries, chunk[1], RAW_ACTOR)
            else:
                insert(one.cur, entries, chunk[1], RAW_ACTOR)

    conns: list[Any] = []  # closed after the final CPU sample (a backend's exit races it)

    def worker(k: int) -> None:
        mine: list[float] = []
        try:
            conn = pg.connect(db, app=True)
            conns.append(conn)
            one = OneConnection(conn)
            for w in warm[k * 2 : k * 2 + 2]:
                append(one, w)
            start.wait()
            while (j := next(counter)) < n_tx:
                t = time.perf_counter()
                append(one, chunks[j])
                mine.append(time.perf_counter() - t)
        except BaseException as e:
            errors.append(e)
            start.abort()
        finally:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(conc)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait()
    meter = h.Meter(pg.postmaster).start()
    for t in threads:
        t.join()
    usage = meter.stop()
    for conn in conns:
        with contextlib.suppress(Exception):  # the server may be gone (Ctrl-C)
            conn.close()
    if errors:
        raise RuntimeError(f"{case.label}: {errors[0]!r}") from errors[0]
    driver, pg_cores = usage.cores(usage.driver), usage.cores(usage.pg)
    return Row(case, n_tx, usage.wall, latencies, driver, None, pg_cores)


# ---- (b) and (c) over HTTP: the harness's spawned client process -------------------------------


def write_plan(tag: str, path: str, batch: int, events: int) -> h.Plan:
    """Runs in the client process: every body built before the clock starts."""
    if batch == 1:
        bodies = [json.dumps(claim(tag, i)).encode() for i in range(events)]
    else:
        bodies = []
        for i in range(0, events, batch):
            n = min(batch, events - i)
            bodies.append(json.dumps({"events": [claim(tag, i + k) for k in range(n)]}).encode())

    def request(j: int, warm: bool) -> h.Request:
        if warm:
            return h.Request(
                "POST", "/v1/events", json.dumps(claim(f"{tag}-warm", j)).encode(), 201
            )
        return h.Request("POST", path, bodies[j], 201)

    return request


def http_run(
    stack: h.InProcessStack | h.ServeProcess, clients: h.Clients, key: str, case: Case
) -> Row:
    path = "/v1/events" if case.batch == 1 else "/v1/events:batch"
    load = h.Load(
        port=stack.port,
        key=key,
        conc=case.conc,
        plan=functools.partial(write_plan, case.tag, path, case.batch, case.events),
        max_requests=math.ceil(case.events / case.batch),
    )
    result, usage = clients.run(load, h.Meter(stack.pg.postmaster, server=stack.server_cpu))
    wall = result.seconds
    cores = (result.cpu / wall, usage.server / wall, usage.pg / wall)
    return Row(case, result.requests, wall, result.latencies, *cores)


# ---- correctness -----------------------------------------------------------------------------

CHECK_SQL = """
SELECT count(*), coalesce(min(seq), -1), coalesce(max(seq), -1),
       count(*) FILTER (WHERE seq <> coalesce(prev_seq + 1, 0)),
       count(*) FILTER (WHERE prev <> coalesce(prev_leaf, %s)),
       (SELECT count(*) FROM outbox),
       (SELECT count(*) FROM outbox WHERE published_at IS NULL)
FROM (SELECT seq, prev, lag(seq) OVER w AS prev_seq, lag(leaf_hash) OVER w AS prev_leaf
      FROM events WINDOW w AS (ORDER BY seq)) t
"""


def stored_entries(cur: Any, chunk: int = 20_000) -> Iterator[tuple[Entry, bytes | None]]:
    """Every stored entry in seq order, read with the store's own view, and its leaf_hash."""
    view, last = CursorView(cur), -1
    while events := view.events(EventFilter(tenant=None, after_seq=last, limit=chunk)):
        for ev in events:
            yield ev.entry, ev.stored_leaf
        last = events[-1].entry.seq


def verify(pg: h.Database, db: str) -> tuple[bool, str]:
    conn = pg.connect(db)
    try:
        cur = conn.cursor()
        cur.execute(CHECK_SQL, (ZERO32,))
        n, lo, hi, gaps, broken, outbox, unpublished = cur.fetchone()
        ok = n > 0 and lo == 0 and hi == n - 1 and gaps == 0 and broken == 0 and outbox == n
        mismatched = 0

        def leaves() -> Iterator[Entry]:
            nonlocal mismatched
            for entry, stored in stored_entries(cur):
                if entry.leaf_hash() != stored:
                    mismatched += 1
                yield entry

        t = time.perf_counter()
        chain = "chain OK"
        try:
            verify_chain(leaves(), start=Tail.empty())
        except VerificationError as e:  # the first broken link only
            chain, ok = f"chain FAILED: {e}", False
        t = time.perf_counter() - t
        ok = ok and mismatched == 0
        text = (
            f"{db:<12} {'OK  ' if ok else 'FAIL'} {n:>8,} events, seq {lo}..{hi}, "
            f"gaps {gaps}, broken prev {broken}, outbox rows {outbox:,} "
            f"(unpublished {unpublished}), leaf hashes recomputed {n:,} in {t:.1f} s, "
            f"mismatched {mismatched}; {chain}"
        )
        return ok, text
    finally:
        conn.close()


# ---- report ----------------------------------------------------------------------------------


def report(
    rows: Sequence[Row],
    checks: Sequence[str],
    notes: Sequence[str],
    args: argparse.Namespace,
    platform: str,
) -> None:
    print(f"\n{platform}")
    print(
        f"events per single-event row: {args.events:,}; per batch row: {args.batch_events:,}; "
        + (
            "HTTP: werkzeug threaded server (one process), PROVENIQ_POOL_SIZE=32"
            if args.workers == 1
            else f"HTTP: proveniq serve --workers {args.workers} (gunicorn gthread), pool 16 each"
        )
        + ", internal tier (no rate limit)"
    )
    print(f"load average (1 min) at start {args.load_start:.2f}, at end {os.getloadavg()[0]:.2f}\n")
    head = (
        f"{'row':<46}{'conc':>5}{'events':>9}{'tx/req':>8}{'sec':>7}{'events/s':>10}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'ratio':>9}   {'cores: driver/server/pg':<25}"
        f"{'server us/ev':>12}"
    )
    print(head)
    print("-" * len(head))
    section = None
    for r in rows:
        if section is not None and r.case.section != section:
            print()
        section = r.case.section
        server = "-" if r.cores_server is None else f"{r.cores_server:.2f}"
        per_event = "-" if r.cores_server is None else f"{r.cores_server / r.rate * 1e6:,.0f}"
        print(
            f"{r.case.label:<46}{r.case.conc:>5}{r.case.events:>9,}{r.txs:>8,}"
            f"{r.seconds:>7.1f}{r.rate:>10,.0f}"
            f"{r.pct(0.5):>8.2f}{r.pct(0.99):>8.2f}{r.ratio:>9}   "
            f"{r.cores_driver:.2f} / {server:>4} / {r.cores_pg:.2f}{per_event:>19}"
        )
    print(
        "\nratio: (b) HTTP events/s / (a) tx/s at the same concurrency; (c) events/s / the faster"
        " raw bulk load (marked 'ceiling') at the same batch size and concurrency."
    )
    print("latency: per transaction (raw) or per request (HTTP), as seen by the driver.")
    print(
        "cores: CPU seconds / wall seconds of the driver (raw: this process; HTTP: the client"
        " process), the app server process, PostgreSQL; server us/ev: app CPU per event."
    )
    for line in notes:
        print(line)
    print("\nCorrectness (SQL window query over events, plus leaf hashes recomputed):")
    for line in checks:
        print(f"  {line}")
    print()


def kernel_costs() -> tuple[float, float]:
    """Microseconds per entry: building the drafts (payload JCS + SHA-256 and, in the kernel,
    anything it precomputes before the lock), and `link` (under the lock in the store)."""
    n = 2_000
    t = time.perf_counter()
    drafts, _ = raw_drafts("cost", n)
    t1 = time.perf_counter()
    link(drafts, tail=Tail.empty(), recorded_at=utcnow())
    t2 = time.perf_counter()
    return (t1 - t) / n * 1e6, (t2 - t1) / n * 1e6


# ---- main ------------------------------------------------------------------------------------


def run(args: argparse.Namespace, pg: h.Database) -> None:
    rows: list[Row] = []
    created: list[str] = []
    n, m = args.events, args.batch_events
    single_conc = (1, 8, 32)
    bulk = [(100, 1), (100, 4), (1000, 1), (1000, 4)]

    def fresh(name: str) -> str:
        created.append(pg.fresh(name))
        return name

    h.log(f"(a) raw ceiling: {n:,} single-event transactions at 1, 8, 32 threads")
    raw_db = fresh("raw_single")
    raw: dict[int, Row] = {}
    for c in single_conc:
        row = raw_run(
            pg, raw_db, Case("a", "(a) raw SQL: lock+tail, insert, commit", c, n, 1, f"a{c}")
        )
        row.ratio = "ceiling"
        raw[c] = row
        rows.append(row)
        h.log(f"    {c:>2} threads: {row.rate:,.0f} tx/s")

    h.log("starting the local stack over HTTP")
    stack = h.open_stack(pg, args.workers)
    try:
        with h.Clients() as clients:
            h.log(f"(b) POST /v1/events: {n:,} events at 1, 8, 32 clients")
            key = stack.use(fresh("http_single")).key
            for c in single_conc:
                label = "(b) HTTP POST /v1/events, 1 event/request"
                row = http_run(stack, clients, key, Case("b", label, c, n, 1, f"b{c}"))
                row.ratio = f"{row.rate / raw[c].rate:.2f}"
                rows.append(row)
                h.log(f"    {c:>2} clients: {row.rate:,.0f} events/s, p50 {row.pct(0.5):.1f} ms")

            h.log(f"(c) batches: {m:,} events per row, 100/1,000 per batch, 1 and 4 clients")
            values_db, copy_db = fresh("raw_values"), fresh("raw_copy")
            key = stack.use(fresh("http_batch")).key
            for batch, c in bulk:
                pair = []
                for name, db, insert in (
                    ("INSERT VALUES", values_db, values_insert),
                    ("COPY", copy_db, copy_insert),
                ):
                    label = f"(c) raw {name}, {batch:,} events/tx"
                    case = Case("c", label, c, m, batch, f"c{name[:1]}{batch}-{c}")
                    row = raw_run(pg, db, case, insert=insert)
                    pair.append(row)
                    rows.append(row)
                best = max(pair, key=lambda r: r.rate)
                for r in pair:
                    r.ratio = "ceiling" if r is best else f"{r.rate / best.rate:.2f}"
                label = f"(c) HTTP POST /v1/events:batch, {batch:,}/request"
                row = http_run(stack, clients, key, Case("c", label, c, m, batch, f"cb{batch}-{c}"))
                row.ratio = f"{row.rate / best.rate:.2f}"
                rows.append(row)
                h.log(
                    f"    {batch:>4}/batch, {c} clients: HTTP {row.rate:,.0f} events/s; raw "
                    f"VALUES {pair[0].rate:,.0f}, COPY {pair[1].rate:,.0f}"
                )
    finally:
        stack.close()

    h.log("verifying every database")
    checks, all_ok = [], True
    for db in created:
        ok, text = verify(pg, db)
        all_ok = all_ok and ok
        checks.append(text)
        h.log(f"    {text}")
    before, under = kernel_costs()
    notes = [
        f"kernel, per event: drafts (payload JCS + hash, before the lock) {before:.0f} us; "
        f"link() (leaf hash + chain, under the lock) {under:.0f} us."
    ]
    names = ("server_version", "synchronous_commit", "fsync", "shared_buffers", "wal_level")
    report(rows, checks, notes, args, h.platform_line("Write-path benchmark", pg, *names))
    if not all_ok:
        raise SystemExit("correctness check FAILED")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=None, help="events per row of (a) and (b)")
    parser.add_argument("--batch-events", type=int, default=None, help="events per row of (c)")
    parser.add_argument("--quick", action="store_true", help="small counts (about 30 s)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes for (b) and (c): 1 = the in-process werkzeug "
        "stack, N > 1 = `proveniq serve --workers N`",
    )
    args = parser.parse_args()
    if args.events is None:
        args.events = 800 if args.quick else 10_000
    if args.batch_events is None:
        args.batch_events = 4_000 if args.quick else 60_000
    if args.events < 1 or args.batch_events < 1 or args.workers < 1:
        parser.error("event counts and workers must be positive")
    args.load_start = os.getloadavg()[0]
    with h.embedded_postgres() as pg:
        run(args, pg)


if __name__ == "__main__":
    main()

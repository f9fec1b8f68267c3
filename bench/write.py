"""Write-path benchmark: the ledger's append under the advisory lock, raw and over HTTP, with
the database a simulated network away.

    python bench/write.py [--rtt-ms 0,0.5,1] [--workers 1,2] [--events N] [--batch-events M]
                          [--open-seconds S] [--quick] [--group-commit-wait-ms W]
                          [--group-commit-max K]

Starts its own embedded PostgreSQL in a temporary folder under /tmp, migrates a template
database, serves the local stack's gateway over real HTTP on 127.0.0.1 (werkzeug, threaded, or
`proveniq serve --workers N` for N > 1), and prints one table, every row measured in the same
run on a fresh database per section and server mode:

For each RTT in --rtt-ms (0 is always measured: the targets need it):
  the network: RTT 0 is the Unix socket, as in earlier runs. RTT X > 0 puts a delay line
    (bench/_proxy.py, its own process) between every database client and PostgreSQL, which then
    also listens on 127.0.0.1 TCP: each chunk read is forwarded X/2 ms after it arrived, in order
    per direction, so concurrent and pipelined connections overlap as on a real network. Before
    the rows, the median of 400 `SELECT 1` round trips through it is measured against TCP direct;
    if the added time is off by more than 5 % the one-way delay is corrected once (never below
    X/4) to make it X. Event counts of (a) and (b) are scaled down by 1 + 4X (X in ms).
  (a) the raw ceiling: the store's own sequencing transaction (`ledger_lock_tail`, then the
      events + outbox insert, then commit; one event per transaction) on one pg8000 connection
      per thread, at 1, 8 and 32 threads;
  (b) `POST /v1/events` (one small claim per request) at 1, 8 and 32 concurrent clients, for each
      server mode (--workers) with group commit off and on (PROVENIQ_GROUP_COMMIT=false|true,
      plus --group-commit-wait-ms/--group-commit-max when given), with p50/p99 latency and the
      ratio to (a) at the same RTT and concurrency.
At RTT 0 only:
  (c) `POST /v1/events:batch` with 100- and 1,000-event batches at 1 and 4 clients (group
      commit on), against the same rows bulk-loaded under the lock with a multi-row INSERT ...
      VALUES (the store's SQL) and with COPY FROM STDIN; the ratio is to the faster of the two.
  (d) an open-loop run of `POST /v1/events`, group commit on, in the server mode of the best
      group-commit (b) row at RTT 0: requests are due at a fixed rate, half that row's events/s,
      for --open-seconds, sent by up to 32 connections; latency counts from each request's due
      time, so queueing is not hidden by the client waiting (no coordinated omission). "late"
      counts sends that started over 1 ms after their due time (every connection busy).

HTTP clients run in a separate (spawned) process with one persistent `http.client` connection
per thread, so they do not share the server's GIL. CPU use of the driver, the app server
process(es), PostgreSQL and the delay line is shown as cores (CPU seconds / wall seconds; the
machine has `nproc` of them); server us/ev is the app's CPU per event (per request for (b)).
At the end every database is checked: seq contiguous from 0 and every prev equal to the
previous leaf_hash (SQL window query), one outbox row per event, and every leaf hash recomputed
from the stored entry with the kernel. Then the targets of issue 13 for writes, each figure
against its target:
  #1 (b) events/s at 32 clients / (a) at 32 threads, RTT 1 ms, the best server and GC mode;
  #2 the same at RTT 0;
  #3 app CPU per single-event request: (b) at RTT 0, 32 clients, the mode of #2;
  #4 app CPU per batched event (the worst (c) HTTP row of the best server mode) and 1,000-event
     batches / raw COPY at the same concurrency (the worse of 1 and 4 clients, best mode);
  #5 p99 of the open-loop run (d).
Progress and the estimated time left go to stderr. The harness is bench/_harness.py.
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
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import _harness as h
from _proxy import DelayLine

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

SINGLE_CONC = (1, 8, 32)
BULK = ((100, 1), (100, 4), (1000, 1), (1000, 4))  # (events per batch, clients)
OPEN_CONC = 32  # connections of the open-loop run
PROBES = 400  # SELECT 1 round trips per network measurement
RAW_TENANT = "prt_benchraw0000000"
RAW_ACTOR = "key:key_benchraw000"
ZERO32 = bytes(32)


def claim(tag: str, i: int) -> dict[str, Any]:
    return h.claim(f"clm-{tag}-{i}", i)


# ---- the network ------------------------------------------------------------------------------


@dataclass
class Net:
    """How database clients reach PostgreSQL at one RTT: the Unix socket (rtt 0) or a delay line
    in front of its TCP port."""

    rtt: float  # ms
    line: DelayLine | None = None
    notes: list[str] = field(default_factory=list)  # the round trips measured

    @property
    def port(self) -> int | None:
        return None if self.line is None else self.line.port

    @property
    def name(self) -> str:
        return "Unix socket" if self.line is None else f"delay line, RTT {self.rtt:g} ms"

    def cpu(self) -> float:
        return 0.0 if self.line is None else h.tree_cpu(self.line.pid)

    def settings(self, pg: h.Database, db: str) -> dict[str, str]:
        """The stack's PROVENIQ_* settings to reach db this way."""
        return {} if self.port is None else {"database_url": pg.url(db, port=self.port)}

    def close(self) -> None:
        if self.line is not None:
            self.line.close()


def round_trip(pg: h.Database, port: int | None, n: int = PROBES) -> list[float]:
    """Seconds per `SELECT 1` on one connection (Unix socket, or TCP to 127.0.0.1:port)."""
    conn = pg.connect(port=port)
    try:
        cur, out = conn.cursor(), []
        for _ in range(n + 20):
            t = time.perf_counter()
            cur.execute("SELECT 1")
            cur.fetchall()
            out.append(time.perf_counter() - t)
        return out[20:]
    finally:
        conn.close()


def ms(xs: Sequence[float], q: float = 0.5) -> float:
    return h.pct(xs, q) * 1000


def open_net(pg: h.Database, rtt: float, tcp_ms: float) -> Net:
    """The delay line for `rtt`, its one-way delay corrected once if the measured added round
    trip (over TCP direct, `tcp_ms`) is off by more than 5 %."""
    if rtt == 0:
        return Net(0.0)
    assert pg.tcp_port is not None
    one_way = rtt / 2
    line = DelayLine(pg.tcp_port, rtt_ms=rtt)
    added = ms(round_trip(pg, line.port)) - tcp_ms
    notes = [f"one-way {one_way:.3f} ms: SELECT 1 +{added:.3f} ms over TCP direct"]
    if abs(added - rtt) > 0.05 * rtt:
        one_way = max(rtt / 4, one_way - (added - rtt) / 2)
        line.close()
        line = DelayLine(pg.tcp_port, rtt_ms=rtt, one_way_ms=one_way)
        xs = round_trip(pg, line.port)
        added = ms(xs) - tcp_ms
        notes.append(
            f"corrected one-way {one_way:.3f} ms: +{added:.3f} ms "
            f"(median {ms(xs):.3f}, p99 {ms(xs, 0.99):.3f})"
        )
    h.log(f"    RTT {rtt:g} ms: " + "; ".join(notes))
    return Net(rtt, line, notes)


# ---- measurements ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    """A server mode: server processes and group commit."""

    workers: int
    group_commit: bool

    @property
    def server(self) -> str:
        return "werkzeug" if self.workers == 1 else f"serve -w{self.workers}"

    @property
    def name(self) -> str:
        return f"{self.server}, GC {'on' if self.group_commit else 'off'}"

    def settings(self, args: argparse.Namespace) -> dict[str, str]:
        out = {"group_commit": "true" if self.group_commit else "false"}
        if args.group_commit_wait_ms is not None:
            out["group_commit_wait_ms"] = f"{args.group_commit_wait_ms:g}"
        if args.group_commit_max is not None:
            out["group_commit_max"] = str(args.group_commit_max)
        return out


@dataclass(frozen=True)
class Case:
    """What one row measures: `events` events in transactions / requests of `batch`."""

    section: str
    label: str
    conc: int
    events: int
    batch: int
    tag: str  # makes the subjects of the row's claims unique
    rtt: float = 0.0
    mode: Mode | None = None  # HTTP rows


@dataclass
class Row:
    case: Case
    txs: int
    seconds: float
    latencies: list[float]  # seconds per transaction / request
    cores_driver: float
    cores_server: float | None
    cores_pg: float
    cores_proxy: float | None = None
    ratio: str = ""
    late: int = 0  # (d): sends over 1 ms after their due time

    @property
    def rate(self) -> float:
        return self.case.events / self.seconds

    @property
    def server_us(self) -> float:
        """App CPU per event, microseconds (nan for raw rows)."""
        return math.nan if self.cores_server is None else self.cores_server / self.rate * 1e6

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


def raw_run(pg: h.Database, db: str, case: Case, net: Net, *, insert: Insert | None = None) -> Row:
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
            conn = pg.connect(db, app=True, port=net.port)
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
    meter = h.Meter(pg.postmaster, extra=net.cpu).start()
    for t in threads:
        t.join()
    usage = meter.stop()
    for conn in conns:
        with contextlib.suppress(Exception):  # the server may be gone (Ctrl-C)
            conn.close()
    if errors:
        raise RuntimeError(f"{case.label}: {errors[0]!r}") from errors[0]
    driver, pg_cores = usage.cores(usage.driver), usage.cores(usage.pg)
    proxy = usage.cores(usage.extra) if net.line is not None else None
    return Row(case, n_tx, usage.wall, latencies, driver, None, pg_cores, proxy)


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


Stack: TypeAlias = h.InProcessStack | h.ServeProcess


def http_run(
    stack: Stack, clients: h.Clients, key: str, case: Case, net: Net, rate: float | None = None
) -> Row:
    """Closed loop, or with `rate` (requests/s) open loop."""
    path = "/v1/events" if case.batch == 1 else "/v1/events:batch"
    load = h.Load(
        port=stack.port,
        key=key,
        conc=case.conc,
        plan=functools.partial(write_plan, case.tag, path, case.batch, case.events),
        max_requests=math.ceil(case.events / case.batch),
        rate=rate,
    )
    meter = h.Meter(stack.pg.postmaster, server=stack.server_cpu, extra=net.cpu)
    result, usage = clients.run(load, meter)
    wall = result.seconds
    cores = (result.cpu / wall, usage.server / wall, usage.pg / wall)
    proxy = usage.extra / wall if net.line is not None else None
    row = Row(case, result.requests, wall, result.latencies, *cores, cores_proxy=proxy)
    row.late = result.late
    return row


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
            f"{db:<18} {'OK  ' if ok else 'FAIL'} {n:>8,} events, seq {lo}..{hi}, "
            f"gaps {gaps}, broken prev {broken}, outbox rows {outbox:,} "
            f"(unpublished {unpublished}), leaf hashes recomputed {n:,} in {t:.1f} s, "
            f"mismatched {mismatched}; {chain}"
        )
        return ok, text
    finally:
        conn.close()


# ---- report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    number: str
    figure: str
    value: str
    target: str
    ok: bool | None  # None: not measured in this run
    detail: str = ""


def report(
    rows: Sequence[Row],
    checks: Sequence[str],
    notes: Sequence[str],
    targets: Sequence[Target],
    args: argparse.Namespace,
    platform: str,
) -> None:
    print(f"\n{platform}")
    servers = ", ".join(
        "werkzeug threaded server (one process), PROVENIQ_POOL_SIZE=32"
        if w == 1
        else f"proveniq serve --workers {w} (gunicorn gthread, each worker runs the followers),"
        " pool 16 each"
        for w in args.workers
    )
    print(
        f"events per single-event row: {args.events:,} at RTT 0, divided by 1 + 4 x RTT(ms) "
        f"above; per batch row: {args.batch_events:,}; HTTP: {servers}; internal tier "
        "(no rate limit); GC = group commit (PROVENIQ_GROUP_COMMIT)"
    )
    print(f"load average (1 min) at start {args.load_start:.2f}, at end {os.getloadavg()[0]:.2f}\n")
    head = (
        f"{'row':<48}{'rtt ms':>7}{'conc':>5}{'events':>8}{'tx/req':>8}{'sec':>6}"
        f"{'events/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'ratio':>8}   {'cores: drv/srv/pg/prx':<23}"
        f"{'srv us/ev':>9}"
    )
    print(head)
    print("-" * len(head))
    group = None
    for r in rows:
        if group is not None and (r.case.section, r.case.rtt) != group:
            print()
        group = (r.case.section, r.case.rtt)
        server = "-" if r.cores_server is None else f"{r.cores_server:.2f}"
        proxy = "-" if r.cores_proxy is None else f"{r.cores_proxy:.2f}"
        per_event = "-" if r.cores_server is None else f"{r.server_us:,.0f}"
        cores = f"{r.cores_driver:.2f}/{server}/{r.cores_pg:.2f}/{proxy}"
        print(
            f"{r.case.label:<48}{r.case.rtt:>7g}{r.case.conc:>5}{r.case.events:>8,}{r.txs:>8,}"
            f"{r.seconds:>6.1f}{r.rate:>9,.0f}{r.pct(0.5):>8.2f}{r.pct(0.99):>8.2f}"
            f"{r.ratio:>8}   {cores:<23}{per_event:>9}"
        )
    print(
        "\nratio: (b) HTTP events/s / (a) tx/s at the same RTT and concurrency; (c) events/s / the"
        " faster raw bulk load (marked 'ceiling') at the same batch size and concurrency;"
        " (d) achieved / offered rate. (c) HTTP rows run with group commit on."
    )
    print(
        "latency: per transaction (raw) or per request (HTTP), as seen by the driver; (d) from"
        " each request's due time."
    )
    print(
        "cores: CPU seconds / wall seconds of the driver (raw: this process; HTTP: the client"
        " process), the app server process(es) (serve: gunicorn's master and workers with their"
        " in-process followers, not the background process or the Firestore emulator),"
        " PostgreSQL, the delay line; srv us/ev: app CPU per event."
    )
    for line in notes:
        print(line)
    print("\nCorrectness (SQL window query over events, plus leaf hashes recomputed):")
    for line in checks:
        print(f"  {line}")
    print("\nTargets of issue 13 for writes (measured in this run):")
    tw = max(len(t.figure) for t in targets)
    print(f"  {'#':<4}{'figure':<{tw}}  {'value':>12}  {'target':<10}result")
    for t in targets:
        verdict = "n/a" if t.ok is None else "pass" if t.ok else "MISS"
        line = f"{t.number:<4}{t.figure:<{tw}}  {t.value:>12}  {t.target:<10}{verdict:<6}"
        print(f"  {line}{t.detail}")
    print()


def targets(
    rows: Sequence[Row], raw: dict[tuple[float, int], Row], args: argparse.Namespace
) -> list[Target]:
    def best(rtt: float, conc: int = 32, gc: bool | None = None) -> Row | None:
        cands = [
            r
            for r in rows
            if r.case.section == "b"
            and r.case.rtt == rtt
            and r.case.conc == conc
            and (gc is None or (r.case.mode is not None and r.case.mode.group_commit == gc))
        ]
        return max(cands, key=lambda r: r.rate, default=None)

    def mode(r: Row) -> str:
        return r.case.mode.name if r.case.mode is not None else "?"

    out = []
    top: dict[float, Row] = {}
    for number, rtt, goal in (("1", 1.0, 1.5), ("2", 0.0, 0.8)):
        figure = f"HTTP 1-event events/s, 32 clients / raw ceiling, RTT {rtt:g} ms"
        r = best(rtt)
        if r is None:
            out.append(Target(number, figure, "-", f">= {goal}", None, "add 1 to --rtt-ms"))
            continue
        top[rtt] = r
        ratio = r.rate / raw[(rtt, 32)].rate
        detail = f"{mode(r)}: {r.rate:,.0f} vs {raw[(rtt, 32)].rate:,.0f} tx/s"
        out.append(Target(number, figure, f"{ratio:.2f}", f">= {goal}", ratio >= goal, detail))

    r = top[0.0]
    at0 = [x.server_us / 1000 for x in rows if x.case.section == "b" and x.case.rtt == 0]
    out.append(
        Target(
            "3",
            "app CPU per single-event request (RTT 0, 32 clients)",
            f"{r.server_us / 1000:.2f} ms",
            "<= 0.8 ms",
            r.server_us <= 800,
            f"{mode(r)}; all RTT 0 (b) rows {min(at0):.2f}-{max(at0):.2f} ms",
        )
    )

    copy = {(x.case.batch, x.case.conc): x for x in rows if x.case.label.startswith("(c) raw COPY")}
    per_mode = []
    for w in args.workers:
        mine = [x for x in rows if x.case.section == "c" and x.case.mode is not None]
        mine = [x for x in mine if x.case.mode is not None and x.case.mode.workers == w]
        if not mine:
            continue
        us = [x.server_us for x in mine]
        ratios = [
            x.rate / copy[(x.case.batch, x.case.conc)].rate for x in mine if x.case.batch == 1000
        ]
        per_mode.append((w, max(us), min(us), min(ratios), max(ratios)))
    w, worst, lo, _, _ = min(per_mode, key=lambda t: t[1])
    out.append(
        Target(
            "4a",
            "app CPU per batched event (worst (c) HTTP row)",
            f"{worst:.0f} us",
            "<= 40 us",
            worst <= 40,
            f"{Mode(w, True).server}: (c) rows {lo:.0f}-{worst:.0f} us",
        )
    )
    w, _, _, worst_r, hi = max(per_mode, key=lambda t: t[3])
    out.append(
        Target(
            "4b",
            "1,000-event batches / raw COPY (worse of 1, 4 clients)",
            f"{worst_r:.2f}",
            ">= 0.6",
            worst_r >= 0.6,
            f"{Mode(w, True).server}: {worst_r:.2f}-{hi:.2f}",
        )
    )

    d = next(x for x in rows if x.case.section == "d")
    out.append(
        Target(
            "5",
            "write p99, open loop at half of max load, RTT 0, GC on",
            f"{d.pct(0.99):.1f} ms",
            "< 25 ms",
            d.pct(0.99) < 25,
            f"{mode(d)}: p50 {d.pct(0.5):.1f} ms at {d.rate:,.0f}/s, late sends {d.late}",
        )
    )
    return out


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


class Progress:
    """Steps with predicted seconds; the ETA scales what is left by how far off the finished
    steps' predictions were."""

    def __init__(self, predicted: Sequence[float]) -> None:
        self.predicted = list(predicted)
        self.done = 0
        self.started = time.perf_counter()

    def step(self) -> str:
        self.done += 1
        elapsed = time.perf_counter() - self.started
        spent = sum(self.predicted[: self.done]) or 1.0
        left = sum(self.predicted[self.done :]) * elapsed / spent
        return f"[{self.done}/{len(self.predicted)}, {h.hms(elapsed)}, ETA {h.hms(left)}]"


def scaled(n: int, rtt: float) -> int:
    return max(100, round(n / (1 + 4 * rtt)))


def run(args: argparse.Namespace, pg: h.Database) -> None:
    rows: list[Row] = []
    created: list[str] = []
    planned: dict[str, int] = {}  # events per database, for the verification's ETA
    raw: dict[tuple[float, int], Row] = {}
    notes: list[str] = []
    nets: dict[float, Net] = {0.0: Net(0.0)}
    tcp_ms = [0.0]  # SELECT 1 over TCP direct, the baseline of every delay line
    stacks: dict[int, Stack] = {}
    modes = [Mode(w, gc) for w in args.workers for gc in (False, True)]
    m = args.batch_events
    steps: list[tuple[float, Callable[[], str]]] = []
    keys: dict[str, str] = {}  # database -> the key of its tenant

    def fresh(name: str) -> str:
        created.append(pg.fresh(name))
        return name

    def stack_for(workers: int) -> Stack:
        if workers not in stacks:
            stacks[workers] = h.open_stack(pg, workers)
        return stacks[workers]

    def use(mode: Mode, db: str, net: Net) -> tuple[Stack, str]:
        """The stack of `mode` on db (once per database: a new runtime, or a new process)."""
        stack = stack_for(mode.workers)
        if db not in keys:
            settings = mode.settings(args) | net.settings(pg, db)
            keys[db] = stack.use(fresh(db), **settings).key
        return stack, keys[db]

    def measure_network() -> str:
        assert pg.tcp_port is not None
        unix, tcp = round_trip(pg, None), round_trip(pg, pg.tcp_port)
        with DelayLine(pg.tcp_port, rtt_ms=0) as line:
            hop = round_trip(pg, line.port)
        tcp_ms[0] = ms(tcp)
        notes.append(
            f"network, SELECT 1 round trip (median / p99 of {PROBES}): Unix socket "
            f"{ms(unix):.3f} / {ms(unix, 0.99):.3f} ms; TCP direct {ms(tcp):.3f} / "
            f"{ms(tcp, 0.99):.3f}; delay line at 0 ms (the proxy hop itself) {ms(hop):.3f} / "
            f"{ms(hop, 0.99):.3f}"
        )
        return notes[-1]

    def open_rtt(rtt: float) -> str:
        nets[rtt] = open_net(pg, rtt, tcp_ms[0])
        notes.append(f"network, RTT {rtt:g} ms: " + "; ".join(nets[rtt].notes))
        return f"RTT {rtt:g} ms: delay line on 127.0.0.1:{nets[rtt].port}"

    def close_rtt(rtt: float) -> str:
        for stack in stacks.values():  # their pools hold connections through the line
            stack.release()
        time.sleep(0.2)  # the outbox marker thread's last batch (release does not wait for it)
        nets.pop(rtt).close()
        return f"RTT {rtt:g} ms done"

    def raw_single(rtt: float, db: str, c: int, n: int) -> str:
        if db not in created:
            fresh(db)
        label = "(a) raw SQL: lock+tail, insert, commit"
        tag = f"a{round(rtt * 1000)}-{c}"
        row = raw_run(pg, db, Case("a", label, c, n, 1, tag, rtt), nets[rtt])
        row.ratio = "ceiling"
        raw[(rtt, c)] = row
        rows.append(row)
        return f"(a) RTT {rtt:g}, {c:>2} threads: {row.rate:,.0f} tx/s"

    def http_single(rtt: float, mode: Mode, db: str, c: int, n: int) -> str:
        stack, key = use(mode, db, nets[rtt])
        label = f"(b) HTTP POST /v1/events, {mode.name}"
        tag = f"b{round(rtt * 1000)}-{mode.workers}{mode.group_commit:d}-{c}"
        case = Case("b", label, c, n, 1, tag, rtt, mode)
        row = http_run(stack, clients, key, case, nets[rtt])
        row.ratio = f"{row.rate / raw[(rtt, c)].rate:.2f}"
        rows.append(row)
        return (
            f"(b) RTT {rtt:g}, {mode.name}, {c:>2} clients: {row.rate:,.0f} events/s, "
            f"p50 {row.pct(0.5):.1f} ms"
        )

    pairs: dict[tuple[int, int], list[Row]] = {}

    def raw_bulk(batch: int, c: int) -> str:
        pair = []
        for name, db, insert in (
            ("INSERT VALUES", "raw_values", values_insert),
            ("COPY", "raw_copy", copy_insert),
        ):
            if db not in created:
                fresh(db)
            label = f"(c) raw {name}, {batch:,} events/tx"
            case = Case("c", label, c, m, batch, f"c{name[:1]}{batch}-{c}")
            row = raw_run(pg, db, case, nets[0.0], insert=insert)
            pair.append(row)
            rows.append(row)
        best = max(pair, key=lambda r: r.rate)
        for r in pair:
            r.ratio = "ceiling" if r is best else f"{r.rate / best.rate:.2f}"
        pairs[(batch, c)] = pair
        return (
            f"(c) {batch:>4}/batch, {c} clients: raw VALUES {pair[0].rate:,.0f}, "
            f"COPY {pair[1].rate:,.0f} events/s"
        )

    def http_bulk(mode: Mode, batch: int, c: int) -> str:
        stack, key = use(mode, f"http_batch_w{mode.workers}", nets[0.0])
        label = f"(c) HTTP POST /v1/events:batch, {batch:,}/req"
        if len(args.workers) > 1:
            label = f"(c) HTTP /v1/events:batch, {batch:,}/req, {mode.server}"
        case = Case("c", label, c, m, batch, f"cb{batch}-{c}-{mode.workers}", 0.0, mode)
        row = http_run(stack, clients, key, case, nets[0.0])
        row.ratio = f"{row.rate / max(r.rate for r in pairs[(batch, c)]):.2f}"
        rows.append(row)
        return f"(c) HTTP {batch:>4}/batch, {c} clients, {mode.name}: {row.rate:,.0f} events/s"

    def open_loop() -> str:
        cands = [r for r in rows if r.case.section == "b" and r.case.rtt == 0]
        top = max(
            (r for r in cands if r.case.mode is not None and r.case.mode.group_commit),
            key=lambda r: r.rate,
        )
        assert top.case.mode is not None
        mode, rate = top.case.mode, top.rate / 2
        events = max(50, round(rate * args.open_seconds))
        stack, key = use(mode, "open_loop", nets[0.0])
        label = f"(d) open loop {rate:,.0f}/s, {mode.name}"
        case = Case("d", label, OPEN_CONC, events, 1, "d", 0.0, mode)
        row = http_run(stack, clients, key, case, nets[0.0], rate=rate)
        row.ratio = f"{row.rate / rate:.2f}"
        rows.append(row)
        notes.append(
            f"(d) open loop: offered {rate:,.0f}/s (half of {mode.name} at {top.case.conc} "
            f"clients: {top.rate:,.0f}/s), achieved {row.rate:,.0f}/s over {row.seconds:.1f} s; "
            f"latency from the due time p50 {row.pct(0.5):.2f}, p99 {row.pct(0.99):.2f}, "
            f"p99.9 {row.pct(0.999):.2f}, max {row.pct(1.0):.2f} ms; "
            f"late sends (> 1 ms, all {OPEN_CONC} connections busy) {row.late}"
        )
        return notes[-1]

    # the plan: (predicted seconds, step), in order
    rtts = args.rtts
    if any(r > 0 for r in rtts):
        steps.append((1.0, measure_network))
    for rtt in rtts:
        n = scaled(args.events, rtt)
        if rtt > 0:
            steps.append((3.0, functools.partial(open_rtt, rtt)))
        raw_db = f"raw_r{round(rtt * 1000)}"
        planned[raw_db] = 3 * n
        for c in SINGLE_CONC:
            pred = n * ((0.85 + 2.5 * rtt) if c == 1 else (0.75 + 2 * rtt)) / 1000 + 0.3
            steps.append((pred, functools.partial(raw_single, rtt, raw_db, c, n)))
        for mode in modes:
            gc = "gc" if mode.group_commit else "nogc"
            db = f"http_r{round(rtt * 1000)}_w{mode.workers}_{gc}"
            planned[db] = 3 * n
            for c in SINGLE_CONC:
                pred = n * (1.8 + 3 * rtt) / 1000 + (2.0 if mode.workers > 1 else 0.3)
                steps.append((pred, functools.partial(http_single, rtt, mode, db, c, n)))
        if rtt > 0:
            steps.append((1.0, functools.partial(close_rtt, rtt)))
    for i, w in enumerate(args.workers):
        planned[f"http_batch_w{w}"] = len(BULK) * m
        for batch, c in BULK:
            if i == 0:
                steps.append((2 * m / 25_000 + 0.5, functools.partial(raw_bulk, batch, c)))
            steps.append((m / 10_000 + 0.5, functools.partial(http_bulk, Mode(w, True), batch, c)))
    planned["raw_values"] = planned["raw_copy"] = len(BULK) * m
    steps.append((args.open_seconds + 2, open_loop))
    planned["open_loop"] = 0

    checks, all_ok = [], True

    def verify_db(db: str) -> str:
        nonlocal all_ok
        ok, text = verify(pg, db)
        all_ok = all_ok and ok
        checks.append(text)
        return text

    verify_at = len(steps)
    for db in planned:
        steps.append((planned[db] / 30_000 + 0.2, functools.partial(verify_db, db)))

    progress = Progress([p for p, _ in steps])
    h.log(
        f"{len(steps)} steps: RTT {', '.join(f'{r:g}' for r in rtts)} ms; server modes "
        + "; ".join(x.name for x in modes)
    )
    try:
        with h.Clients() as clients:
            for k, (_, step) in enumerate(steps):
                if k == verify_at:
                    for stack in stacks.values():
                        stack.close()
                    stacks.clear()
                    h.log("verifying every database")
                text = step()
                h.log(f"    {text}  {progress.step()}")
    finally:
        for stack in stacks.values():
            stack.close()
        for net in nets.values():
            net.close()

    before, under = kernel_costs()
    notes.append(
        f"kernel, per event: drafts (payload JCS + hash, before the lock) {before:.0f} us; "
        f"link() (leaf hash + chain, under the lock) {under:.0f} us."
    )
    names = ("server_version", "synchronous_commit", "fsync", "shared_buffers", "wal_level")
    platform = h.platform_line("Write-path benchmark", pg, *names)
    if any(r > 0 for r in rtts):
        platform += "; RTT > 0: TCP 127.0.0.1 through a delay line (bench/_proxy.py)"
    report(rows, checks, notes, targets(rows, raw, args), args, platform)
    if not all_ok:
        raise SystemExit("correctness check FAILED")


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=None, help="events per row of (a), (b)")
    parser.add_argument("--batch-events", type=int, default=None, help="events per row of (c)")
    parser.add_argument("--quick", action="store_true", help="small counts (about 1 min)")
    parser.add_argument(
        "--rtt-ms",
        action="append",
        default=[],
        help="network round trip(s) to the database, ms: repeat or comma list (0 always runs)",
    )
    parser.add_argument(
        "--workers",
        default="1",
        help="server process count(s), comma list: 1 = the in-process werkzeug stack, "
        "N > 1 = `proveniq serve --workers N` [1]",
    )
    parser.add_argument("--open-seconds", type=float, default=None, help="(d) duration [10]")
    parser.add_argument("--group-commit-wait-ms", type=float, default=None)
    parser.add_argument("--group-commit-max", type=int, default=None)
    args = parser.parse_args()
    if args.events is None:
        args.events = 800 if args.quick else 10_000
    if args.batch_events is None:
        args.batch_events = 4_000 if args.quick else 60_000
    if args.open_seconds is None:
        args.open_seconds = 3.0 if args.quick else 10.0
    try:
        args.rtts = sorted({0.0, *(r for text in args.rtt_ms for r in floats(text))})
        args.workers = sorted({int(w) for w in args.workers.split(",") if w.strip()})
    except ValueError as e:
        parser.error(str(e))
    if args.events < 1 or args.batch_events < 1 or not args.workers or min(args.workers) < 1:
        parser.error("event counts and workers must be positive")
    if args.rtts[0] < 0 or args.open_seconds <= 0:
        parser.error("RTTs must be >= 0 and --open-seconds positive")
    args.load_start = os.getloadavg()[0]
    with h.embedded_postgres(tcp=args.rtts[-1] > 0) as pg:
        run(args, pg)


if __name__ == "__main__":
    main()

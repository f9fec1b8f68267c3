"""Read-path benchmark: bulk load, integration, proofs over HTTP and time-to-integrate at scale.

    python bench/prove.py [--sizes 1000000,10000000] [--quick] [--clients C] [--writers W]
                          [--intervals 500,250] [--tick-seconds 60] [--proof-waiters 2]
                          [--serve-workers 2]

Starts its own embedded PostgreSQL in a temporary folder under /tmp, migrates a template
database, serves the local stack's gateway over real HTTP on 127.0.0.1 (werkzeug, threaded),
and for each size N (a fresh database each) prints:

1. load: N entries built with the kernel (`chain.link` over Drafts, 50,000 per chunk: real
   leaf hashes and prev links, one small canonical claim payload each) and streamed into
   `events` with COPY FROM STDIN as the superuser, 500,000 rows per transaction (no outbox rows:
   no read needs them). Linking runs in one thread while the COPY of the previous chunk runs in
   another. An independent RFC 6962 root of the same leaves is folded on the side.
   integrate: `Integrator.integrate_and_publish()` of the stack's runtime on that database (app
   role), called until caught up; entries integrated per second, and the final checkpoint's
   root compared with the independent root.
2. proofs: `GET /v1/events/{id}/proof` for random events through the gateway, from a spawned
   client process with one persistent `http.client` connection per thread (8 threads by default,
   at most 5,000 requests or 30 s); requests/s and p50/p99 latency; a few bundles are verified
   (leaf, inclusion path, checkpoint signature) with the publisher's primary public key. Then
   the same through `proveniq serve --workers 2` (gunicorn, the server kind Cloud Functions
   runs; --serve-workers) on the same database and signing key.
3. time-to-integrate under sustained `POST /v1/events` load (4 closed-loop writers, ~20 s) with
   the production wiring: a scheduler thread fires the real batch_merkle body
   (`entrypoints.batch_merkle()`) once per `--tick-seconds` (Cloud Scheduler's minute), each
   tick on its own thread, and that run keeps sealing every PROVENIQ_SEAL_INTERVAL_MS (500 and
   250 ms) until the next tick's run takes over. Each write's acknowledgement time (client wall
   clock) is matched with the commit time of the first checkpoint whose size exceeds its seq
   (reported by the integrator right after its commit). Two more writers in this process use
   `?wait=proof`: the delay from that commit to their answer is the awaiter's.
4. memory: the integrate step runs in a process of its own, and `proveniq audit` runs on the
   database at the end; the peak RSS of each, against issue 13's target (< 300 MB), and the
   audit's entries/s (bench/_rss.py).

CPU use is shown as cores (CPU seconds / wall seconds) for the driver or server process, the
HTTP client process and PostgreSQL. Progress and estimated remaining time go to stderr. The
harness (PostgreSQL, stack, clients, CPU accounting) is bench/_harness.py.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import hashlib
import json
import os
import queue
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import _harness as h
import _rss

from proveniq.adapters.postgres.ledger import EVENT_COLUMNS
from proveniq.log.chain import Draft, Tail, link
from proveniq.log.integrate import fold_root
from proveniq.log.merkle import node_hash
from proveniq.log.timefmt import utcnow

CHUNK = 50_000  # entries per link() call and per COPY
TX_ROWS = 500_000  # rows per load transaction
pct, hms, log = h.pct, h.hms, h.log


# ---- 1a. bulk load -------------------------------------------------------------------------


class RootBuilder:
    """An independent streaming RFC 6962 root: a stack of perfect-subtree roots."""

    def __init__(self) -> None:
        self.stack: list[bytes] = []
        self.size = 0

    def extend(self, leaves: Sequence[bytes]) -> None:
        stack, size = self.stack, self.size
        for leaf in leaves:
            stack.append(leaf)
            size += 1
            k = size
            while not k & 1:
                right = stack.pop()
                stack[-1] = node_hash(stack[-1], right)
                k >>= 1
        self.size = size

    def root(self) -> bytes:
        return fold_root(self.stack)  # largest subtree first, as `perfect_subtrees` orders them


def chunk_rows(
    start: int, count: int, tail: Tail, tenant: str, actor: str
) -> tuple[bytes, list[bytes], Tail]:
    """Link `count` drafts after `tail` with the kernel: COPY text rows, leaf hashes, new tail."""
    rnd = os.urandom(16 * count).hex()
    payloads = [(h.CLAIM_PAYLOAD % (125_000 + start + i)).encode() for i in range(count)]
    drafts = [
        Draft(
            id=f"evt_{rnd[32 * i : 32 * i + 32]}",
            tenant=tenant,
            type=h.EVENT_TYPE,
            subject=f"clm-{start + i}",
            payload_hash=hashlib.sha256(p).digest(),
        )
        for i, p in enumerate(payloads)
    ]
    entries = link(drafts, tail=tail, recorded_at=utcnow())
    last = entries[-1].leaf_hash()
    # link() makes each entry's prev the previous entry's leaf hash: reuse them (spot-checked).
    leaves = [e.prev for e in entries[1:]] + [last]
    if entries[0].leaf_hash() != leaves[0] or entries[0].prev != tail.leaf_hash:
        raise AssertionError("link() did not chain leaf hashes as expected")
    rec = entries[0].recorded_at.isoformat()
    # One row in EVENT_COLUMNS order (the verified bundles and roots below check it).
    rows = [
        f"{e.seq}\t{e.id}\t{tenant}\t{h.EVENT_TYPE}\t{e.subject}\t\\\\x{e.payload_hash.hex()}\t"
        f"\\\\x{p.hex()}\t\\N\t{rec}\t\\\\x{e.prev.hex()}\t\\\\x{leaf.hex()}\t{actor}\n"
        for e, p, leaf in zip(entries, payloads, leaves, strict=True)
    ]
    return "".join(rows).encode(), leaves, Tail(size=tail.size + count, leaf_hash=last)


@dataclass
class Loaded:
    seconds: float
    cores: str
    root: bytes
    analyze_s: float
    db_bytes: int

    def rate(self, n: int) -> float:
        return n / self.seconds


def load(pg: h.Database, db: str, n: int, tenant: h.Tenant) -> Loaded:
    for s in (tenant.partner_id, tenant.actor):
        assert s.isprintable() and "\t" not in s and "\\" not in s
    h.check_claim_payload()

    todo: queue.Queue[tuple[bytes, int] | BaseException | None] = queue.Queue(maxsize=3)
    stop = threading.Event()
    builder = RootBuilder()

    def produce() -> None:
        tail = Tail.empty()
        try:
            for start in range(0, n, CHUNK):
                count = min(CHUNK, n - start)
                data, leaves, tail = chunk_rows(start, count, tail, tenant.partner_id, tenant.actor)
                builder.extend(leaves)
                while not stop.is_set():
                    try:
                        todo.put((data, count), timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            todo.put(None)
        except BaseException as e:
            todo.put(e)

    producer = threading.Thread(target=produce, name="link", daemon=True)
    meter, t0 = h.Meter(pg.postmaster).start(), time.perf_counter()
    producer.start()
    conn = pg.connect(db)
    done, in_tx, last_log = 0, 0, t0
    try:
        cur = conn.cursor()
        while True:
            item = todo.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise RuntimeError(f"link thread failed: {item!r}") from item
            data, count = item
            cur.execute(f"COPY events ({EVENT_COLUMNS}) FROM STDIN", stream=[data])
            done += count
            in_tx += count
            if in_tx >= TX_ROWS:
                conn.commit()
                in_tx = 0
            now = time.perf_counter()
            if now - last_log >= 10 or done == n:
                rate = done / (now - t0)
                log(
                    f"    loaded {done:,}/{n:,} ({rate:,.0f} entries/s, "
                    f"load ETA {hms((n - done) / rate)})"
                )
                last_log = now
        conn.commit()
    finally:
        stop.set()
        conn.close()
        producer.join(timeout=30)
    u = meter.stop()
    t = time.perf_counter()
    pg.admin("ANALYZE events", db)
    analyze_s = time.perf_counter() - t
    db_bytes = pg.query(db, "SELECT pg_database_size(current_database())")[0][0]
    return Loaded(u.wall, u.summary(), builder.root(), analyze_s, db_bytes)


# ---- 1b. integrate -------------------------------------------------------------------------


@dataclass
class Integrated:
    seconds: float
    cores: str
    root: bytes
    size: int
    per_call: list[float]
    vacuum_s: float

    def rate(self) -> float:
        return self.size / self.seconds


def integrate_all(pg: h.Database, db: str, n: int, rt: Any) -> Integrated:
    per_call: list[float] = []
    size, root = 0, b""
    meter, t0 = h.Meter(pg.postmaster).start(), time.perf_counter()
    last_log = t0
    while True:
        t = time.perf_counter()
        published = rt.integrator.integrate_and_publish()
        if published is None:
            break
        per_call.append(time.perf_counter() - t)
        size, root = published.size, published.root
        now = time.perf_counter()
        if now - last_log >= 10 or size == n:
            rate = size / (now - t0)
            eta = hms((n - size) / rate)
            log(f"    integrated {size:,}/{n:,} ({rate:,.0f} entries/s, ETA {eta})")
            last_log = now
    u = meter.stop()
    # Settle the tables so autovacuum does not start in the middle of the measurements below.
    t = time.perf_counter()
    pg.admin("VACUUM (ANALYZE) events, tree_nodes, checkpoints", db)
    vacuum_s = time.perf_counter() - t
    return Integrated(u.wall, u.summary(), root, size, per_call, vacuum_s)


# ---- HTTP load plans (called in the harness's client process) ------------------------------


def proof_plan(ids: Sequence[str], warm_ids: Sequence[str]) -> h.Plan:
    def request(j: int, warm: bool) -> h.Request:
        pool = warm_ids if warm else ids
        return h.Request("GET", f"/v1/events/{pool[j % len(pool)]}/proof", expect=200)

    return request


def write_plan() -> h.Plan:
    def request(j: int, warm: bool) -> h.Request:
        i = j + (10**9 if warm else 0)
        return h.Request("POST", "/v1/events", json.dumps(h.claim(f"clm-w{i}", i)).encode(), 201)

    return request


# ---- 2. proofs -----------------------------------------------------------------------------


@dataclass
class Proved:
    requests: int
    seconds: float
    latencies: list[float]
    cores: str
    verified: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


@dataclass(frozen=True)
class Run:
    """What every step of a size works with."""

    pg: h.Database
    stack: h.InProcessStack
    clients: h.Clients
    args: Any


def prove(run: Run, db: str, n: int, tenant: h.Tenant, server: Any = None) -> Proved:
    """Proofs through `server` (the in-process werkzeug stack by default, or a ServeProcess on
    the same database and signing key)."""
    from proveniq.log.bundle import Bundle, verifiers_for, verify_bundle

    pg, stack, args = run.pg, run.stack, run.args
    signer = stack.runtime.publisher.primary  # the key served as the log's public key
    server = server or stack
    conc, limit = args.clients, args.proof_requests
    seqs = random.sample(range(n), min(n, limit + conc * 2))
    by_seq = dict(pg.query(db, "SELECT seq, id FROM events WHERE seq = ANY(%s)", (seqs,)))
    ids = [by_seq[s] for s in seqs]
    load = h.Load(
        port=server.port,
        key=tenant.key,
        conc=conc,
        plan=functools.partial(proof_plan, ids[conc * 2 :] or ids, ids[: conc * 2]),
        max_requests=limit,
        seconds=args.proof_seconds,
        samples=5,
    )
    result, u = run.clients.run(load, h.Meter(pg.postmaster, server=server.server_cpu))
    verified = 0
    for body in result.samples:
        bundle = Bundle.from_json(json.loads(body)["data"])
        verify_bundle(bundle, verifiers_for(bundle.checkpoint, signer.public_key, signer.name))
        verified += 1
    return Proved(result.requests, result.seconds, result.latencies, u.summary(result), verified)


def prove_on_serve(run: Run, db: str, n: int, tenant: h.Tenant, workers: int) -> Proved:
    """Step 2 through `proveniq serve --workers N` (gunicorn: the production server kind) on
    the same database, with the in-process stack's state folder (its signing key); the
    in-process stack's runtime is rebuilt afterwards for step 3."""
    serve = h.ServeProcess(run.pg, workers=workers, state_dir=run.pg.folder / "state")
    signer_runtime = run.stack.runtime
    try:
        serve.use(db)
        run.stack.runtime = signer_runtime  # for the bundles' signature check
        return prove(run, db, n, tenant, server=serve)
    finally:
        serve.release()
        run.stack.use(db)


# ---- 3. time-to-integrate ------------------------------------------------------------------


class Recorder:
    """Wraps the integrator's telemetry: `checkpoint_published` is reported right after the
    integration transaction commits; keep (wall clock, size) of each."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.commits: list[tuple[float, int]] = []
        self.lock = threading.Lock()

    def checkpoint_published(self, *, size: int, integrate_seconds: Sequence[float]) -> None:
        with self.lock:
            self.commits.append((time.time(), size))
        self.inner.checkpoint_published(size=size, integrate_seconds=integrate_seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def covered(self) -> int:
        with self.lock:
            return self.commits[-1][1] if self.commits else 0


class Scheduler(threading.Thread):
    """Cloud Scheduler as deployed: one tick every `period` seconds (the first at once), each
    delivered on its own thread to the real batch_merkle body (`entrypoints.batch_merkle()`),
    which keeps sealing every PROVENIQ_SEAL_INTERVAL_MS until the next tick's run takes over
    (or PROVENIQ_SEAL_RUN_SECONDS). The same wiring as the local stack's seal timer."""

    def __init__(self, period: float) -> None:
        super().__init__(name="scheduler", daemon=True)
        self.period = period
        self.stop_event = threading.Event()
        self.runs: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def run(self) -> None:
        from proveniq.app.entrypoints import SEALING_STOPPED

        SEALING_STOPPED.clear()
        while True:
            t = threading.Thread(target=self._tick, name="batch-merkle-run", daemon=True)
            self.runs.append(t)
            t.start()
            if self.stop_event.wait(self.period):
                return

    def _tick(self) -> None:
        from proveniq.app.entrypoints import batch_merkle

        try:
            batch_merkle()
        except Exception as e:
            self.errors.append(e)
            log(f"    batch_merkle run failed: {e!r}")

    def stop(self) -> None:
        from proveniq.app.entrypoints import SEALING_STOPPED

        self.stop_event.set()
        SEALING_STOPPED.set()
        self.join(timeout=10)
        for t in self.runs:
            t.join(timeout=30)


class ProofWaiters:
    """`POST /v1/events?wait=proof` in a loop from a few threads of this process: when each
    answer arrived (wall clock), its seq and proof_status."""

    def __init__(self, port: int, key: str, threads: int) -> None:
        self.port, self.key = port, key
        self.stop_event = threading.Event()
        self.answers: list[tuple[float, int, str]] = []
        self.threads = [
            threading.Thread(target=self._loop, args=(k,), daemon=True) for k in range(threads)
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _loop(self, k: int) -> None:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        i = 0
        while not self.stop_event.is_set():
            i += 1
            body = json.dumps(h.claim(f"clm-p{k}-{i}", i)).encode()
            conn.request("POST", "/v1/events?wait=proof&timeout=10", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            t = time.time()
            if resp.status == 201:
                d = json.loads(data)["data"]
                self.answers.append((t, d["seq"], d["proof_status"]))
        conn.close()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=30)


@dataclass
class TtiResult:
    interval_ms: int
    events: int
    seconds: float
    ack_latencies: list[float]
    tti: list[float]
    early: int  # covered before the client saw the ack (counted as 0)
    uncovered: int
    seals: int
    leaves_per_seal: float
    answer_delays: list[float]  # ?wait=proof: answer - commit of the covering checkpoint, in order
    proof_pending: int
    cores: str

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def _first_covering(commits: list[tuple[float, int]], seq: int) -> float | None:
    sizes = [size for _, size in commits]
    k = bisect.bisect_right(sizes, seq)  # first checkpoint with size > seq
    return None if k == len(sizes) else commits[k][0]


def time_to_integrate(run: Run, tenant: h.Tenant, interval_ms: int) -> TtiResult:
    pg, stack, args = run.pg, run.stack, run.args
    rt = stack.runtime
    rt.settings = rt.settings.model_copy(
        update={"seal_interval_ms": interval_ms, "seal_run_seconds": args.run_seconds}
    )
    recorder = Recorder(rt.integrator.telemetry)
    rt.integrator.telemetry = recorder
    scheduler = Scheduler(args.tick_seconds)
    waiters = ProofWaiters(stack.port, tenant.key, args.proof_waiters)
    load = h.Load(
        port=stack.port,
        key=tenant.key,
        conc=args.writers,
        plan=write_plan,
        max_requests=10**9,
        seconds=args.tti_seconds,
        ack=h.seq_of,
    )

    def go() -> None:
        scheduler.start()
        waiters.start()

    try:
        meter = h.Meter(pg.postmaster, server=stack.server_cpu)
        result, u = run.clients.run(load, meter, on_go=go)
        waiters.stop_event.set()
        acks: list[tuple[float, int]] = result.acks
        top = max(seq for _, seq in acks)
        deadline = time.monotonic() + 30
        while recorder.covered() <= top and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        waiters.stop()
        scheduler.stop()
        rt.integrator.telemetry = recorder.inner
    if scheduler.errors:
        raise RuntimeError(f"batch_merkle failed: {scheduler.errors[0]!r}") from scheduler.errors[0]
    commits = sorted(recorder.commits, key=lambda c: c[1])
    tti, early, uncovered = [], 0, 0
    for t_ack, seq in acks:
        t_commit = _first_covering(commits, seq)
        if t_commit is None:
            uncovered += 1
            continue
        d = t_commit - t_ack
        if d < 0:
            early += 1
        tti.append(max(0.0, d))
    delays, pending = [], 0
    for t_answer, seq, status in sorted(waiters.answers):  # in answer order
        t_commit = _first_covering(commits, seq)
        if status != "sealed" or t_commit is None:
            pending += 1
            continue
        delays.append(t_answer - t_commit)
    seals = len(commits)
    return TtiResult(
        interval_ms=interval_ms,
        events=len(acks),
        seconds=result.seconds,
        ack_latencies=result.latencies,
        tti=tti,
        early=early,
        uncovered=uncovered,
        seals=seals,
        leaves_per_seal=(len(acks) + len(waiters.answers)) / seals if seals else 0.0,
        answer_delays=delays,
        proof_pending=pending,
        cores=u.summary(result),
    )


CHAIN_SQL = """
SELECT count(*), count(*) FILTER (WHERE seq <> prev_seq + 1),
       count(*) FILTER (WHERE prev <> prev_leaf)
FROM (SELECT seq, prev, lag(seq) OVER w AS prev_seq, lag(leaf_hash) OVER w AS prev_leaf
      FROM events WHERE seq >= %s WINDOW w AS (ORDER BY seq)) t
"""

# ---- per size ------------------------------------------------------------------------------


@dataclass
class Estimates:
    load_rate: float = 25_000.0
    integrate_rate: float = 60_000.0
    fixed: float = 0.0  # seconds of steps 2 and 3 plus set-up per size

    def seconds(self, n: int) -> float:
        return n / self.load_rate + n / self.integrate_rate + self.fixed


@dataclass
class SizeReport:
    n: int
    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)


def run_size(run: Run, n: int, est: Estimates) -> None:
    pg, stack, args = run.pg, run.stack, run.args
    t_size = time.perf_counter()
    db = pg.fresh(f"p{n}")
    try:
        tenant = stack.use(db)
        out = SizeReport(n)
        print(flush=True)
        out.add(f"== N = {n:,} entries ==")

        log(f"1. loading {n:,} entries (link + COPY, {CHUNK:,}/chunk, {TX_ROWS:,}/transaction)")
        ld = load(pg, db, n, tenant)
        est.load_rate = ld.rate(n)
        out.add(
            f"1. load:   {n:>11,} entries in {ld.seconds:7.1f} s = {ld.rate(n):>9,.0f} entries/s"
            f"   ({ld.cores}); database {ld.db_bytes / 2**20:,.0f} MiB; "
            f"ANALYZE {ld.analyze_s:.1f} s"
        )

        log(f"1. integrating {n:,} entries (integrate_and_publish until caught up)")
        seal_fields, seal = _rss.seal_in_child(pg, db, n)  # integrate_all in a process of its own
        ig = Integrated(**{k: v for k, v in seal_fields.items() if k != "batch"})
        est.integrate_rate = ig.rate()
        ok = ig.size == n and ig.root == ld.root
        calls = ig.per_call
        out.add(
            f"   integrate: {ig.size:>8,} entries in {ig.seconds:7.1f} s = {ig.rate():>9,.0f} "
            f"entries/s integrated   ({ig.cores});"
            f" {len(calls)} integrate_and_publish() calls, {min(calls):.2f}-{max(calls):.2f} s each"
        )
        out.add(
            f"           root {ig.root.hex()[:16]}... "
            f"{'== independent RFC 6962 root of the loaded leaves' if ok else '!= EXPECTED'}"
            f" ({ld.root.hex()[:16]}...); VACUUM ANALYZE afterwards {ig.vacuum_s:.1f} s"
        )
        out.add(_rss.seal_line(seal, seal_fields))
        if not ok:
            raise SystemExit(f"integration check FAILED: size {ig.size} root {ig.root.hex()}")

        t_fixed = time.perf_counter()
        log(f"2. proofs: {args.proof_requests:,} requests or {args.proof_seconds:.0f} s")
        pr = prove(run, db, n, tenant)
        out.add(
            f"2. proofs: {pr.requests:>6,} x GET /v1/events/{{id}}/proof, {args.clients} clients,"
            f" {pr.seconds:.1f} s = {pr.rate:,.0f} req/s; latency p50 "
            f"{pct(pr.latencies, 0.5) * 1e3:.1f} ms, p99 {pct(pr.latencies, 0.99) * 1e3:.1f} ms"
            f"   ({pr.cores}); all 200, {pr.verified} bundles "
            "verified"
        )
        if args.serve_workers > 1:
            w = args.serve_workers
            log(f"2. proofs again on proveniq serve --workers {w}")
            pr = prove_on_serve(run, db, n, tenant, w)
            out.add(
                f"   on serve -w{w}: {pr.requests:>6,} requests, {pr.seconds:.1f} s = "
                f"{pr.rate:,.0f} req/s; latency p50 {pct(pr.latencies, 0.5) * 1e3:.1f} ms, p99 "
                f"{pct(pr.latencies, 0.99) * 1e3:.1f} ms   ({pr.cores}); all 200, "
                f"{pr.verified} bundles verified"
            )

        out.add(
            f"3. time-to-integrate as deployed ({args.writers} writers, single-event POST "
            f"/v1/events, {args.tti_seconds:.0f} s each; a scheduler tick every "
            f"{args.tick_seconds:g} s to batch_merkle, which keeps sealing; ack -> commit of the "
            f"first checkpoint with size > seq; plus {args.proof_waiters} `?wait=proof` writers: "
            "answer - that commit):"
        )
        for interval in args.intervals:
            log(f"3. time-to-integrate, seal interval {interval} ms, {args.tti_seconds:.0f} s")
            r = time_to_integrate(run, tenant, interval)
            d = r.answer_delays
            out.add(
                f"   interval {interval:>4} ms: {r.events:>6,} events, {r.rate:>5,.0f} events/s "
                f"(ack p50 {pct(r.ack_latencies, 0.5) * 1e3:.1f} ms); TTI p50 "
                f"{pct(r.tti, 0.5) * 1e3:,.0f} ms, p99 {pct(r.tti, 0.99) * 1e3:,.0f} ms, max "
                f"{max(r.tti, default=float('nan')) * 1e3:,.0f} ms"
            )
            out.add(
                f"        {r.seals} checkpoints, {r.leaves_per_seal:,.0f} events/checkpoint; "
                f"?wait=proof answer after the commit: {len(d)} answers, p50 "
                f"{pct(d, 0.5) * 1e3:.1f} ms, p99 {pct(d, 0.99) * 1e3:.1f} ms, max "
                f"{max(d, default=float('nan')) * 1e3:.1f} ms, first "
                f"{(d[0] if d else float('nan')) * 1e3:.1f} ms, {r.proof_pending} pending; "
                f"{r.early} covered before the ack arrived (counted 0), {r.uncovered} uncovered"
                f"   ({r.cores})"
            )
        written, gaps, broken = pg.query(db, CHAIN_SQL, (n - 1,))[0]
        out.add(
            f"   chain check over the {written - 1:,} events written in step 3 (seq >= {n:,}): "
            f"gaps {gaps}, broken prev links {broken}"
        )
        if gaps or broken:
            raise SystemExit("chain check FAILED")
        _rss.audit_lines(pg, db, out.add)  # 4. peak RSS of `proveniq audit` (issue 13)
        est.fixed = time.perf_counter() - t_fixed + 5
        log(f"size {n:,} done in {hms(time.perf_counter() - t_size)}")
    finally:
        stack.release()
        pg.drop(db)


# ---- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", help="comma-separated entry counts [1000000,10000000]")
    parser.add_argument("--quick", action="store_true", help="20,000 entries, short runs (~1 min)")
    parser.add_argument("--clients", type=int, default=8, help="proof clients [8]")
    parser.add_argument("--writers", type=int, default=4, help="writers in step 3 [4]")
    parser.add_argument(
        "--intervals", default="500,250", help="PROVENIQ_SEAL_INTERVAL_MS values [500,250]"
    )
    parser.add_argument(
        "--tick-seconds", type=float, default=60, help="scheduler period, s (Cloud Scheduler: 60)"
    )
    parser.add_argument("--proof-waiters", type=int, default=2, help="?wait=proof writers [2]")
    parser.add_argument(
        "--serve-workers",
        type=int,
        default=2,
        help="step 2 again on `proveniq serve --workers N`; 0 or 1: not [2]",
    )
    args = parser.parse_args()
    sizes_text = args.sizes or ("20000" if args.quick else "1000000,10000000")
    try:
        args.sizes = [int(s.replace("_", "")) for s in sizes_text.split(",") if s.strip()]
        args.intervals = [int(s) for s in args.intervals.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes and --intervals take comma-separated integers")
    if not args.sizes or min(args.sizes) < 1 or not args.intervals or min(args.intervals) < 1:
        parser.error("sizes and intervals must be positive")
    if args.clients < 1 or args.writers < 1:
        parser.error("--clients and --writers must be positive")
    args.proof_requests = 1_000 if args.quick else 5_000
    args.proof_seconds = 10.0 if args.quick else 30.0
    args.tti_seconds = 8.0 if args.quick else 20.0
    args.run_seconds = 70.0  # PROVENIQ_SEAL_RUN_SECONDS as deployed

    est = Estimates(fixed=args.proof_seconds / 2 + (args.tti_seconds + 3) * len(args.intervals))
    with h.embedded_postgres() as pg:
        names = ("server_version", "shared_buffers", "synchronous_commit", "max_wal_size")
        print(h.platform_line("Proof-path benchmark", pg, *names))
        print(
            "HTTP: werkzeug threaded server, PROVENIQ_POOL_SIZE=32, internal tier (no rate limit);"
            " clients in a spawned process, one persistent http.client connection per thread"
        )
        print(
            "cores = CPU seconds / wall seconds of this process (driver/server), the client "
            "process, PostgreSQL, and the whole machine (includes anything else running)"
        )
        stack = h.InProcessStack(pg)
        try:
            with h.Clients() as clients:
                for i, n in enumerate(args.sizes):
                    left = sum(est.seconds(m) for m in args.sizes[i:])
                    log(f"size {n:,}: estimated {hms(est.seconds(n))}; all sizes left {hms(left)}")
                    run_size(Run(pg, stack, clients, args), n, est)
        finally:
            stack.close()


if __name__ == "__main__":
    main()

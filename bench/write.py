"""Write-path benchmark: the ledger's append under the advisory lock, raw and over HTTP.

    python bench/write.py [--events N] [--batch-events M] [--quick]

Starts its own embedded PostgreSQL in a temporary folder under /tmp, migrates a template
database, serves the local stack's gateway over real HTTP on 127.0.0.1 (werkzeug, threaded),
and prints one table, every row measured in the same run on a fresh database per section:

(a) the raw ceiling: the store's own SQL (`ledger_lock_tail`, then the events + outbox insert,
    then commit; one event per transaction) driven with pg8000 over the Unix socket, one
    connection per thread, at 1, 8 and 32 threads;
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
from the stored entry with the kernel. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import itertools
import json
import logging
import math
import multiprocessing
import os
import platform
import resource
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proveniq.adapters.postgres.ledger import (
    LEDGER_LOCK_KEY,
    LedgerStore,
    copy_insert,
    values_insert,
)
from proveniq.errors import VerificationError
from proveniq.log.canonical import canonicalize
from proveniq.log.chain import Draft, Tail, link, verify_chain
from proveniq.log.entry import Entry
from proveniq.log.timefmt import utcnow

APP_ROLE = "proveniq_app"
TEMPLATE = "bench_template"
RAW_TENANT = "prt_benchraw0000000"
RAW_ACTOR = "key:key_benchraw000"
EVENT_TYPE = "claim.filed"
CLK_TCK = os.sysconf("SC_CLK_TCK")
ZERO32 = bytes(32)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def claim(tag: str, i: int) -> dict[str, Any]:
    """The small claim every benchmark writes (about 170 bytes of JSON)."""
    return {
        "type": EVENT_TYPE,
        "subject": f"clm-{tag}-{i}",
        "payload": {
            "amount_cents": 125_000 + i,
            "currency": "USD",
            "policy": "POL-2026-00042",
            "cause": "water damage, kitchen",
        },
    }


# ---- measurements ----------------------------------------------------------------------------


@dataclass
class Row:
    section: str
    label: str
    conc: int
    events: int
    txs: int
    seconds: float
    latencies: list[float]  # seconds per transaction / request
    cores_driver: float
    cores_server: float | None
    cores_pg: float
    ratio: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def pct(self, q: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds."""
        xs = sorted(self.latencies)
        return xs[max(0, math.ceil(q * len(xs)) - 1)] * 1000


@dataclass
class CpuSample:
    wall: float
    self_cpu: float
    pg_cpu: float


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def pg_cpu(postmaster: int) -> float:
    """CPU seconds of the postmaster's live children, then of the postmaster itself with its
    reaped children (read last, so a backend reaped during the scan is not missed)."""

    def times(pid: str) -> tuple[int, int] | None:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            return None
        rest = stat[stat.rfind(b")") + 2 :].split()
        return int(rest[1]), sum(int(x) for x in rest[11:15])  # ppid; utime stime cutime cstime

    total = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (t := times(entry.name)) is not None and t[0] == postmaster:
            total += t[1]
    own = times(str(postmaster))
    return (total + (own[1] if own else 0)) / CLK_TCK


def sample(postmaster: int) -> CpuSample:
    return CpuSample(wall=time.perf_counter(), self_cpu=self_cpu(), pg_cpu=pg_cpu(postmaster))


# ---- embedded PostgreSQL ---------------------------------------------------------------------


@dataclass
class Database:
    server: Any  # proveniq.adapters.local.postgres.EmbeddedServer
    postmaster: int
    created: list[str] = field(default_factory=list)

    def admin(self, sql: str) -> None:
        conn = self.server.connect()
        try:
            conn.autocommit = True
            conn.cursor().execute(sql)
        finally:
            conn.close()

    def fresh(self, name: str) -> str:
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        self.created.append(name)
        return name

    def app(self, name: str) -> Any:
        return self.server.connect(user=APP_ROLE, database=name)

    def url(self, name: str) -> str:
        url: str = self.server.url(user=APP_ROLE, database=name)
        return url

    def settings(self) -> str:
        conn = self.server.connect()
        try:
            cur = conn.cursor()
            names = ("server_version", "synchronous_commit", "fsync", "shared_buffers", "wal_level")
            values = []
            for n in names:
                cur.execute(f"SHOW {n}")
                values.append(f"{n}={cur.fetchone()[0]}")
            return ", ".join(values)
        finally:
            conn.close()


def start_postgres(data_dir: Path) -> Database:
    from proveniq.adapters.local import postgres
    from proveniq.adapters.postgres import pool as db

    server = postgres.start(data_dir)
    postgres.ensure_database(server, TEMPLATE)
    db.migrate(lambda: server.connect(database=TEMPLATE))
    with open(data_dir / "postmaster.pid") as f:
        postmaster = int(f.readline())
    return Database(server=server, postmaster=postmaster)


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


Insert = Callable[[Any, list[Entry], list[bytes], str], None]


def raw_run(
    pg: Database,
    db: str,
    *,
    section: str,
    label: str,
    conc: int,
    events: int,
    batch: int,
    insert: Insert,
    tag: str,
) -> Row:
    """`events` rows in transactions of `batch`, by `conc` threads, each on its own connection."""
    drafts, payloads = raw_drafts(tag, events + conc * 2)
    n_tx = math.ceil(events / batch)
    chunks = [(drafts[i : i + batch], payloads[i : i + batch]) for i in range(0, events, batch)]
    warm = [([drafts[events + k]], [payloads[events + k]]) for k in range(conc * 2)]
    counter = itertools.count()
    start = threading.Barrier(conc + 1)
    latencies: list[float] = []
    errors: list[BaseException] = []

    def append(conn: Any, cur: Any, chunk: tuple[list[Draft], list[bytes]]) -> None:
        cur.execute("SELECT size, leaf_hash FROM ledger_lock_tail(%s)", (LEDGER_LOCK_KEY,))
        size, tail_hash = cur.fetchone()
        entries = link(chunk[0], tail=Tail(size=size, leaf_hash=tail_hash), recorded_at=utcnow())
        insert(cur, entries, chunk[1], RAW_ACTOR)
        conn.commit()

    conns: list[Any] = []  # closed after the final CPU sample (a backend's exit races it)

    def worker(k: int) -> None:
        mine: list[float] = []
        try:
            conn = pg.app(db)
            conns.append(conn)
            cur = conn.cursor()
            for w in warm[k * 2 : k * 2 + 2]:
                append(conn, cur, w)
            start.wait()
            while (j := next(counter)) < n_tx:
                t = time.perf_counter()
                append(conn, cur, chunks[j])
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
    s0 = sample(pg.postmaster)
    for t in threads:
        t.join()
    s1 = sample(pg.postmaster)
    for conn in conns:
        with contextlib.suppress(Exception):  # the server may be gone (Ctrl-C)
            conn.close()
    if errors:
        raise RuntimeError(f"{label}: {errors[0]!r}") from errors[0]
    wall = s1.wall - s0.wall
    return Row(
        section=section,
        label=label,
        conc=conc,
        events=events,
        txs=n_tx,
        seconds=wall,
        latencies=latencies,
        cores_driver=(s1.self_cpu - s0.self_cpu) / wall,
        cores_server=None,
        cores_pg=(s1.pg_cpu - s0.pg_cpu) / wall,
    )


# ---- (b) and (c) over HTTP: a spawned client process -----------------------------------------


def http_bodies(tag: str, requests: int, batch: int, events: int) -> list[bytes]:
    if batch == 1:
        return [json.dumps(claim(tag, i)).encode() for i in range(requests)]
    bodies, i = [], 0
    for _ in range(requests):
        n = min(batch, events - i)
        bodies.append(json.dumps({"events": [claim(tag, i + k) for k in range(n)]}).encode())
        i += n
    return bodies


def http_job(job: dict[str, Any], pipe: Any) -> dict[str, Any]:
    """Runs in the client process: warm up, report ready, wait for go, run, return timings."""
    conc, path, key = job["conc"], job["path"], job["key"]
    batch, events = job["batch"], job["events"]
    n_req = math.ceil(events / batch)
    bodies = http_bodies(job["tag"], n_req, batch, events)
    warm = http_bodies(job["tag"] + "-warm", conc * 2, 1, conc * 2)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    counter = itertools.count()
    warmed, start = threading.Barrier(conc + 1), threading.Barrier(conc + 1)
    latencies: list[float] = []
    errors: list[str] = []

    def post(conn: http.client.HTTPConnection, p: str, body: bytes) -> None:
        conn.request("POST", p, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        if r.status != 201:
            raise RuntimeError(f"POST {p} -> {r.status}: {data[:300]!r}")

    def worker(k: int) -> None:
        mine: list[float] = []
        conn = http.client.HTTPConnection("127.0.0.1", job["port"], timeout=300)
        try:
            conn.connect()
            assert conn.sock is not None
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for body in warm[k * 2 : k * 2 + 2]:
                post(conn, "/v1/events", body)
            warmed.wait()
            start.wait()
            while (j := next(counter)) < n_req:
                t = time.perf_counter()
                post(conn, path, bodies[j])
                mine.append(time.perf_counter() - t)
        except BaseException as e:
            errors.append(repr(e))
            warmed.abort()
            start.abort()
        finally:
            latencies.extend(mine)
            conn.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(conc)]
    for t in threads:
        t.start()
    try:
        warmed.wait()
    except threading.BrokenBarrierError:
        for t in threads:
            t.join()
        raise RuntimeError(errors[0] if errors else "warm-up failed") from None
    pipe.send(("ready",))
    pipe.recv()  # go
    cpu0 = self_cpu()
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    t1 = time.perf_counter()
    if errors:
        raise RuntimeError(errors[0])
    return {
        "requests": n_req,
        "seconds": t1 - t0,
        "latencies": latencies,
        "cpu": self_cpu() - cpu0,
    }


def client_process(pipe: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    while (job := pipe.recv()) is not None:
        try:
            pipe.send(("done", http_job(job, pipe)))
        except Exception as e:
            pipe.send(("error", repr(e)))


class Clients:
    """The spawned load-generator process and the pipe to it."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=client_process, args=(child,), daemon=True)
        self.proc.start()
        child.close()

    def run(
        self, job: dict[str, Any], postmaster: int, server_cpu: Callable[[], float]
    ) -> tuple[dict[str, Any], float, float]:
        """Returns the client's result, the server processes' and PostgreSQL's CPU seconds."""
        self.pipe.send(job)
        msg = self.pipe.recv()
        if msg[0] != "ready":
            raise RuntimeError(f"HTTP clients failed: {msg[1]}")
        s0, c0 = sample(postmaster), server_cpu()
        self.pipe.send("go")
        msg = self.pipe.recv()
        s1, c1 = sample(postmaster), server_cpu()
        if msg[0] != "done":
            raise RuntimeError(f"HTTP clients failed: {msg[1]}")
        return msg[1], c1 - c0, s1.pg_cpu - s0.pg_cpu

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.pipe.send(None)
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=5)


class Stack:
    """The local stack's gateway over real HTTP; `use()` points its runtime at a database."""

    def __init__(self, pg: Database, state_dir: Path) -> None:
        from werkzeug.serving import make_server

        from proveniq.app import localstack

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request log lines
        os.environ["PROVENIQ_BACKEND"] = "local"
        os.environ["PROVENIQ_STATE_DIR"] = str(state_dir)
        os.environ["PROVENIQ_POOL_SIZE"] = "32"
        self.pg = pg
        self.server = make_server(
            "127.0.0.1", 0, localstack.gateway(localstack.build_apps()), threaded=True
        )
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def use(self, db: str) -> str:
        """Switch the runtime to `db`; create an internal-tier partner and a MEMBER key."""
        from proveniq.app.runtime import runtime

        self.release()
        os.environ["PROVENIQ_DATABASE_URL"] = self.pg.url(db)
        accounts = runtime().accounts
        partner = accounts.create_partner(name=f"bench {db}", tier="internal")
        key, _ = accounts.create_key(partner_id=partner.id, org_role="MEMBER", label="bench")
        return key.secret

    @staticmethod
    def release() -> None:
        from proveniq.app.runtime import release_runtime

        release_runtime()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.release()

    @staticmethod
    def server_cpu() -> float:
        return self_cpu()


class ProcessStack:
    """`proveniq serve --workers N` (gunicorn, N server processes) on a database per section;
    its CPU is that of the whole process tree."""

    def __init__(self, pg: Database, state_dir: Path, workers: int) -> None:
        self.pg = pg
        self.state_dir = state_dir
        self.workers = workers
        self.proc: Any = None
        self.port = 0

    def use(self, db: str) -> str:
        from proveniq.app.runtime import release_runtime, runtime

        self.stop()
        os.environ["PROVENIQ_DATABASE_URL"] = self.pg.url(db)
        accounts = runtime().accounts
        partner = accounts.create_partner(name=f"bench {db}", tier="internal")
        key, _ = accounts.create_key(partner_id=partner.id, org_role="MEMBER", label="bench")
        release_runtime()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = {
            **os.environ,
            "PROVENIQ_DATABASE_URL": self.pg.url(db),
            "PROVENIQ_STATE_DIR": str(self.state_dir / f"serve-{db}"),
            "PROVENIQ_POOL_SIZE": "16",
            "PROVENIQ_SEAL_INTERVAL_MS": "3600000",
        }
        import subprocess

        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "proveniq.app.cli",
                "serve",
                "--workers",
                str(self.workers),
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/ready")
                if conn.getresponse().status == 200:
                    return key.secret
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("proveniq serve --workers did not become ready")

    def server_cpu(self) -> float:
        return pg_cpu(self.proc.pid) if self.proc is not None else 0.0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except Exception:
                self.proc.kill()
            self.proc = None

    def close(self) -> None:
        self.stop()


def http_run(
    stack: Stack | ProcessStack,
    clients: Clients,
    key: str,
    *,
    section: str,
    label: str,
    path: str,
    conc: int,
    events: int,
    batch: int,
    tag: str,
) -> Row:
    job = {
        "port": stack.port,
        "key": key,
        "path": path,
        "conc": conc,
        "events": events,
        "batch": batch,
        "tag": tag,
    }
    result, server_cpu, pg_seconds = clients.run(job, stack.pg.postmaster, stack.server_cpu)
    wall = result["seconds"]
    return Row(
        section=section,
        label=label,
        conc=conc,
        events=events,
        txs=result["requests"],
        seconds=wall,
        latencies=result["latencies"],
        cores_driver=result["cpu"] / wall,
        cores_server=server_cpu / wall,
        cores_pg=pg_seconds / wall,
    )


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


def stored_entries(cur: Any, chunk: int = 20_000) -> Iterator[tuple[Entry, bytes]]:
    last = -1
    while True:
        cur.execute(
            "SELECT seq, id, tenant, type, subject, payload_hash, occurred_at, recorded_at, prev,"
            " leaf_hash FROM events WHERE seq > %s ORDER BY seq LIMIT %s",
            (last, chunk),
        )
        rows = cur.fetchall()
        if not rows:
            return
        for r in rows:
            entry = Entry(
                seq=r[0],
                id=r[1],
                tenant=r[2],
                type=r[3],
                subject=r[4],
                payload_hash=bytes(r[5]),
                occurred_at=r[6],
                recorded_at=r[7],
                prev=bytes(r[8]),
            )
            yield entry, bytes(r[9])
        last = rows[-1][0]


def verify(pg: Database, db: str) -> tuple[bool, str]:
    conn = pg.server.connect(database=db)
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
    pg_settings: str,
) -> None:
    print(
        f"\nWrite-path benchmark: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"pg8000, embedded PostgreSQL over a Unix socket ({pg_settings})"
    )
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
        if section is not None and r.section != section:
            print()
        section = r.section
        server = "-" if r.cores_server is None else f"{r.cores_server:.2f}"
        per_event = "-" if r.cores_server is None else f"{r.cores_server / r.rate * 1e6:,.0f}"
        print(
            f"{r.label:<46}{r.conc:>5}{r.events:>9,}{r.txs:>8,}{r.seconds:>7.1f}{r.rate:>10,.0f}"
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


def run(args: argparse.Namespace, pg: Database, state_dir: Path) -> None:
    rows: list[Row] = []
    n, m = args.events, args.batch_events
    single_conc = (1, 8, 32)
    bulk = [(100, 1), (100, 4), (1000, 1), (1000, 4)]

    log(f"(a) raw ceiling: {n:,} single-event transactions at 1, 8, 32 threads")
    raw_db = pg.fresh("raw_single")
    raw: dict[int, Row] = {}
    for c in single_conc:
        row = raw_run(
            pg,
            raw_db,
            section="a",
            label="(a) raw SQL: lock+tail, insert, commit",
            conc=c,
            events=n,
            batch=1,
            insert=LedgerStore._insert,
            tag=f"a{c}",
        )
        row.ratio = "ceiling"
        raw[c] = row
        rows.append(row)
        log(f"    {c:>2} threads: {row.rate:,.0f} tx/s")

    log("starting the local stack over HTTP")
    stack: Stack | ProcessStack = (
        Stack(pg, state_dir) if args.workers == 1 else ProcessStack(pg, state_dir, args.workers)
    )
    clients = Clients()
    try:
        log(f"(b) POST /v1/events: {n:,} events at 1, 8, 32 clients")
        key = stack.use(pg.fresh("http_single"))
        for c in single_conc:
            row = http_run(
                stack,
                clients,
                key,
                section="b",
                label="(b) HTTP POST /v1/events, 1 event/request",
                path="/v1/events",
                conc=c,
                events=n,
                batch=1,
                tag=f"b{c}",
            )
            row.ratio = f"{row.rate / raw[c].rate:.2f}"
            rows.append(row)
            log(f"    {c:>2} clients: {row.rate:,.0f} events/s, p50 {row.pct(0.5):.1f} ms")

        log(f"(c) batches: {m:,} events per row, 100/1,000 per batch, 1 and 4 clients")
        values_db, copy_db = pg.fresh("raw_values"), pg.fresh("raw_copy")
        key = stack.use(pg.fresh("http_batch"))
        for batch, c in bulk:
            pair = []
            for name, db, insert in (
                ("INSERT VALUES", values_db, values_insert),
                ("COPY", copy_db, copy_insert),
            ):
                row = raw_run(
                    pg,
                    db,
                    section="c",
                    label=f"(c) raw {name}, {batch:,} events/tx",
                    conc=c,
                    events=m,
                    batch=batch,
                    insert=insert,
                    tag=f"c{name[:1]}{batch}-{c}",
                )
                pair.append(row)
                rows.append(row)
            best = max(pair, key=lambda r: r.rate)
            for r in pair:
                r.ratio = "ceiling" if r is best else f"{r.rate / best.rate:.2f}"
            row = http_run(
                stack,
                clients,
                key,
                section="c",
                label=f"(c) HTTP POST /v1/events:batch, {batch:,}/request",
                path="/v1/events:batch",
                conc=c,
                events=m,
                batch=batch,
                tag=f"cb{batch}-{c}",
            )
            row.ratio = f"{row.rate / best.rate:.2f}"
            rows.append(row)
            log(
                f"    {batch:>4}/batch, {c} clients: HTTP {row.rate:,.0f} events/s; raw VALUES "
                f"{pair[0].rate:,.0f}, COPY {pair[1].rate:,.0f}"
            )
    finally:
        clients.close()
        stack.close()

    log("verifying every database")
    checks, all_ok = [], True
    for db in pg.created:
        ok, text = verify(pg, db)
        all_ok = all_ok and ok
        checks.append(text)
        log(f"    {text}")
    before, under = kernel_costs()
    notes = [
        f"kernel, per event: drafts (payload JCS + hash, before the lock) {before:.0f} us; "
        f"link() (leaf hash + chain, under the lock) {under:.0f} us."
    ]
    report(rows, checks, notes, args, pg.settings())
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
    if args.events < 1 or args.batch_events < 1:
        parser.error("event counts must be positive")

    from proveniq.adapters.local import postgres

    args.load_start = os.getloadavg()[0]
    for k in [k for k in os.environ if k.startswith("PROVENIQ_")]:
        del os.environ[k]
    tmp = Path(tempfile.mkdtemp(prefix="pvqw-", dir="/tmp"))  # short: Unix socket path limit
    data_dir = tmp / "pg"
    started = time.perf_counter()
    try:
        log(f"starting embedded PostgreSQL in {data_dir}")
        pg = start_postgres(data_dir)
        run(args, pg, tmp / "state")
    except KeyboardInterrupt:
        log("interrupted")
        raise SystemExit(130) from None
    finally:
        log("stopping PostgreSQL and removing the temporary folder")
        try:
            postgres.stop(data_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

"""Read-path benchmark: bulk load, sealing, proofs over HTTP and time-to-integrate at scale.

    python bench/prove.py [--sizes 1000000,10000000] [--quick]

Starts its own embedded PostgreSQL in a temporary folder under /tmp, migrates a template
database, serves the local stack's gateway over real HTTP on 127.0.0.1 (werkzeug, threaded),
and for each size N (a fresh database each) prints:

1. load: N entries built with the kernel (`chain.link` over Drafts, 50,000 per chunk: real
   leaf hashes and prev links, one small canonical claim payload each) and streamed into
   `events` with COPY FROM STDIN as the superuser, 500,000 rows per transaction (no outbox rows:
   no read needs them). Linking runs in one thread while the COPY of the previous chunk runs in
   another. An independent RFC 6962 root of the same leaves is folded on the side.
   seal: `Sealer.seal()` of a `runtime()` built against that database (app role), called until
   caught up; entries integrated per second, and the final checkpoint's root compared with the
   independent root.
2. proofs: `GET /v1/events/{id}/proof` for random events through the gateway, from a spawned
   client process with one persistent `http.client` connection per thread (8 threads by default,
   at most 5,000 requests or 30 s); requests/s and p50/p99 latency; a few bundles are verified
   (leaf, inclusion path, checkpoint signature).
3. time-to-integrate under sustained `POST /v1/events` load (4 closed-loop writers, ~20 s):
   a seal timer thread in the server process behaves like the local stack's (`stop.wait(interval)`
   then the real `seal_until_current`, i.e. a fixed delay after each tick) for
   PROVENIQ_SEAL_INTERVAL_MS of 1000 and 200 ms. Each write's acknowledgement time (client wall
   clock) is matched with the commit time of the first checkpoint whose size exceeds its seq
   (recorded by the seal thread as soon as `seal_until_current` returns).

CPU use is shown as cores (CPU seconds / wall seconds) for the driver or server process, the
HTTP client process and PostgreSQL. Progress and estimated remaining time go to stderr.
"""

from __future__ import annotations

import argparse
import bisect
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
import queue
import random
import resource
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proveniq.log.canonical import canonicalize
from proveniq.log.chain import Draft, Tail, link
from proveniq.log.integrate import fold_root
from proveniq.log.merkle import node_hash
from proveniq.log.timefmt import utcnow

APP_ROLE = "proveniq_app"
TEMPLATE = "bench_template"
EVENT_TYPE = "claim.filed"
CHUNK = 50_000  # entries per link() call and per COPY
TX_ROWS = 500_000  # rows per load transaction
CLK_TCK = os.sysconf("SC_CLK_TCK")
COPY_COLS = (
    "seq, id, tenant, type, subject, payload_hash, payload, occurred_at, recorded_at, prev, "
    "leaf_hash, actor"
)
# The claim payload's RFC 8785 form, written directly (checked against `canonicalize` once).
PAYLOAD = (
    '{"amount_cents":%d,"cause":"water damage, kitchen","currency":"USD","policy":"POL-2026-00042"}'
)


def log(message: str) -> None:
    print(f"[prove] {message}", file=sys.stderr, flush=True)


def claim(i: int) -> dict[str, Any]:
    return {
        "type": EVENT_TYPE,
        "subject": f"clm-w{i}",
        "payload": {
            "amount_cents": 125_000 + i,
            "currency": "USD",
            "policy": "POL-2026-00042",
            "cause": "water damage, kitchen",
        },
    }


def pct(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(xs)
    return s[max(0, math.ceil(q * len(s)) - 1)] if s else float("nan")


def hms(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


# ---- CPU accounting (as in bench/write.py) -----------------------------------------------------


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def pg_cpu(postmaster: int) -> float:
    """CPU seconds of the postmaster, its live children, and its reaped children."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(b")") + 2 :].split()
        pid, ppid = int(entry.name), int(rest[1])
        if pid == postmaster or ppid == postmaster:
            total += sum(int(x) for x in rest[11:15])  # utime stime cutime cstime
    return total / CLK_TCK


def machine_cpu() -> float:
    """CPU seconds the whole machine has been busy (all processes, from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclass
class Meter:
    """Wall time and cores used by this process, by PostgreSQL and by the whole machine."""

    postmaster: int
    wall: float = 0.0
    cpu: float = 0.0
    pg: float = 0.0
    busy: float = 0.0
    machine: float = 0.0  # cores busy machine-wide between start() and stop()

    def start(self) -> Meter:
        self.wall, self.cpu, self.pg = time.perf_counter(), self_cpu(), pg_cpu(self.postmaster)
        self.busy = machine_cpu()
        return self

    def stop(self) -> tuple[float, float, float]:
        """(seconds, process cores, PostgreSQL cores)."""
        wall = time.perf_counter() - self.wall
        cpu, pg = self_cpu() - self.cpu, pg_cpu(self.postmaster) - self.pg
        self.machine = (machine_cpu() - self.busy) / wall
        return wall, cpu / wall, pg / wall


# ---- embedded PostgreSQL -------------------------------------------------------------------


@dataclass
class Database:
    server: Any  # proveniq.adapters.local.postgres.EmbeddedServer
    postmaster: int

    def superuser(self, db: str = "postgres") -> Any:
        return self.server.connect(database=db)

    def admin(self, sql: str, db: str = "postgres") -> None:
        """One statement in autocommit mode (CREATE/DROP DATABASE, VACUUM, ANALYZE)."""
        conn = self.superuser(db)
        try:
            conn.autocommit = True
            conn.cursor().execute(sql)
        finally:
            conn.close()

    def query(self, db: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        conn = self.superuser(db)
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            rows: list[Any] = cur.fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()

    def settings(self) -> str:
        names = ("server_version", "shared_buffers", "synchronous_commit", "max_wal_size")
        values = [f"{n}={self.query('postgres', f'SHOW {n}')[0][0]}" for n in names]
        return ", ".join(values)


def start_postgres(data_dir: Path) -> Database:
    from proveniq.adapters.local import postgres
    from proveniq.adapters.postgres import pool as db

    server = postgres.start(data_dir)
    postgres.ensure_database(server, TEMPLATE)
    db.migrate(lambda: server.connect(database=TEMPLATE))
    with open(data_dir / "postmaster.pid") as f:
        postmaster = int(f.readline())
    return Database(server=server, postmaster=postmaster)


# ---- the local stack over HTTP -------------------------------------------------------------


@dataclass(frozen=True)
class Tenant:
    partner_id: str
    key: str  # API key secret (MEMBER of an internal-tier partner: no rate limit)
    actor: str  # the principal subject the write path records


class Stack:
    """The local stack's gateway over real HTTP; `use()` points its runtime at a database."""

    def __init__(self, pg: Database, state_dir: Path) -> None:
        from werkzeug.serving import make_server

        from proveniq.app import localstack

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

    def use(self, db: str) -> Tenant:
        from proveniq.app.runtime import runtime

        self.release()
        os.environ["PROVENIQ_DATABASE_URL"] = self.pg.server.url(user=APP_ROLE, database=db)
        accounts = runtime().accounts
        quiet()  # runtime() installs the JSON log handler at INFO: one line per seal is noise
        partner = accounts.create_partner(name=f"bench {db}", tier="internal")
        key, rec = accounts.create_key(partner_id=partner.id, org_role="MEMBER", label="bench")
        return Tenant(partner_id=partner.id, key=key.secret, actor=f"key:{rec.id}")

    @staticmethod
    def release() -> None:
        from proveniq.app.runtime import release_runtime

        release_runtime()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.release()


def quiet() -> None:
    for name in ("werkzeug", "proveniq"):
        logging.getLogger(name).setLevel(logging.WARNING)


# ---- 1a. bulk load -------------------------------------------------------------------------


class RootBuilder:
    """An independent streaming RFC 6962 root: a stack of perfect-subtree roots."""

    def __init__(self) -> None:
        self.stack: list[bytes] = []
        self.size = 0

    def extend(self, leaves: Sequence[bytes]) -> None:
        stack, size = self.stack, self.size
        for h in leaves:
            stack.append(h)
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
    payloads = [(PAYLOAD % (125_000 + start + i)).encode() for i in range(count)]
    drafts = [
        Draft(
            id=f"evt_{rnd[32 * i : 32 * i + 32]}",
            tenant=tenant,
            type=EVENT_TYPE,
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
    rows = [
        f"{e.seq}\t{e.id}\t{tenant}\t{EVENT_TYPE}\t{e.subject}\t\\\\x{e.payload_hash.hex()}\t"
        f"\\\\x{p.hex()}\t\\N\t{rec}\t\\\\x{e.prev.hex()}\t\\\\x{leaf.hex()}\t{actor}\n"
        for e, p, leaf in zip(entries, payloads, leaves, strict=True)
    ]
    return "".join(rows).encode(), leaves, Tail(size=tail.size + count, leaf_hash=last)


@dataclass
class LoadResult:
    seconds: float
    cores_driver: float
    cores_pg: float
    root: bytes
    analyze_s: float
    db_bytes: int
    machine: float

    def rate(self, n: int) -> float:
        return n / self.seconds


def load(pg: Database, db: str, n: int, tenant: Tenant) -> LoadResult:
    for s in (tenant.partner_id, tenant.actor):
        assert s.isprintable() and "\t" not in s and "\\" not in s
    sample = claim(0)["payload"]
    sample["amount_cents"] = 125_000
    assert canonicalize(sample) == (PAYLOAD % 125_000).encode()

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
    meter = Meter(pg.postmaster).start()
    producer.start()
    conn = pg.superuser(db)
    done, in_tx, last_log = 0, 0, time.perf_counter()
    try:
        cur = conn.cursor()
        while True:
            item = todo.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise RuntimeError(f"link thread failed: {item!r}") from item
            data, count = item
            cur.execute(f"COPY events ({COPY_COLS}) FROM STDIN", stream=[data])
            done += count
            in_tx += count
            if in_tx >= TX_ROWS:
                conn.commit()
                in_tx = 0
            now = time.perf_counter()
            if now - last_log >= 10 or done == n:
                rate = done / (now - meter.wall)
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
    seconds, cores, pg_cores = meter.stop()
    t = time.perf_counter()
    pg.admin("ANALYZE events", db)
    analyze_s = time.perf_counter() - t
    db_bytes = pg.query(db, "SELECT pg_database_size(current_database())")[0][0]
    return LoadResult(seconds, cores, pg_cores, builder.root(), analyze_s, db_bytes, meter.machine)


# ---- 1b. seal ------------------------------------------------------------------------------


@dataclass
class SealResult:
    seconds: float
    calls: int
    cores_driver: float
    cores_pg: float
    root: bytes
    size: int
    per_call: list[float]
    vacuum_s: float
    machine: float

    def rate(self) -> float:
        return self.size / self.seconds


def seal_all(pg: Database, db: str, n: int) -> SealResult:
    from proveniq.app.runtime import runtime

    sealer = runtime().sealer
    per_call: list[float] = []
    size, root = 0, b""
    meter = Meter(pg.postmaster).start()
    last_log = time.perf_counter()
    while True:
        t = time.perf_counter()
        sealed = sealer.seal()
        if sealed is None:
            break
        per_call.append(time.perf_counter() - t)
        size, root = sealed.size, sealed.root
        now = time.perf_counter()
        if now - last_log >= 10 or size == n:
            rate = size / (now - meter.wall)
            eta = hms((n - size) / rate)
            log(f"    sealed {size:,}/{n:,} ({rate:,.0f} entries/s, seal ETA {eta})")
            last_log = now
    seconds, cores, pg_cores = meter.stop()
    # Settle the tables so autovacuum does not start in the middle of the measurements below.
    t = time.perf_counter()
    pg.admin("VACUUM (ANALYZE) events, tree_nodes, checkpoints", db)
    vacuum_s = time.perf_counter() - t
    return SealResult(
        seconds, len(per_call), cores, pg_cores, root, size, per_call, vacuum_s, meter.machine
    )


# ---- HTTP clients in a spawned process -----------------------------------------------------


def client_job(job: dict[str, Any], pipe: Any) -> dict[str, Any]:
    """Runs in the client process: warm up, report ready, wait for go, run, return timings."""
    conc, kind, key = job["conc"], job["kind"], job["key"]
    headers = {"Authorization": f"Bearer {key}"}
    if kind == "write":
        headers["Content-Type"] = "application/json"
    ids: list[str] = job.get("ids", [])
    warm_ids: list[str] = job.get("warm_ids", [])
    limit = job["max_requests"]
    counter = itertools.count()
    warmed, start = threading.Barrier(conc + 1), threading.Barrier(conc + 1)
    latencies: list[float] = []
    acks: list[tuple[float, int]] = []  # (wall-clock ack time, seq) for writes
    samples: list[bytes] = []
    errors: list[str] = []
    deadline = [0.0]

    def request(conn: http.client.HTTPConnection, j: int, warm: bool) -> None:
        if kind == "proof":
            eid = (warm_ids if warm else ids)[j % len(warm_ids if warm else ids)]
            conn.request("GET", f"/v1/events/{eid}/proof", headers=headers)
            want = 200
        else:
            body = json.dumps(claim(j + (10**9 if warm else 0))).encode()
            conn.request("POST", "/v1/events", body=body, headers=headers)
            want = 201
        r = conn.getresponse()
        data = r.read()
        if r.status != want:
            raise RuntimeError(f"{kind} -> {r.status}: {data[:300]!r}")
        if warm:
            return
        if kind == "write":
            acks.append((time.time(), json.loads(data)["data"]["seq"]))
        elif len(samples) < 5:
            samples.append(data)

    def worker(k: int) -> None:
        mine: list[float] = []
        conn = http.client.HTTPConnection("127.0.0.1", job["port"], timeout=120)
        try:
            conn.connect()
            assert conn.sock is not None
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for w in range(2):
                request(conn, k * 2 + w, warm=True)
            warmed.wait()
            start.wait()
            while (j := next(counter)) < limit and time.perf_counter() < deadline[0]:
                t = time.perf_counter()
                request(conn, j, warm=False)
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
    t0 = time.perf_counter()
    deadline[0] = t0 + job["seconds"]
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait()
    for t in threads:
        t.join()
    t1 = time.perf_counter()
    if errors:
        raise RuntimeError(errors[0])
    return {
        "requests": len(latencies),
        "seconds": t1 - t0,
        "latencies": latencies,
        "acks": acks,
        "samples": samples,
        "cpu": self_cpu() - cpu0,
    }


def client_process(pipe: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    while (job := pipe.recv()) is not None:
        try:
            pipe.send(("done", client_job(job, pipe)))
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
        self, job: dict[str, Any], postmaster: int, on_go: Callable[[], None] | None = None
    ) -> tuple[dict[str, Any], float, float, float]:
        """The client's result; the server process's, PostgreSQL's and the machine's cores."""
        self.pipe.send(job)
        msg = self.pipe.recv()
        if msg[0] != "ready":
            raise RuntimeError(f"HTTP clients failed: {msg[1]}")
        if on_go is not None:
            on_go()
        meter = Meter(postmaster).start()
        self.pipe.send("go")
        msg = self.pipe.recv()
        _, server, pg_cores = meter.stop()
        if msg[0] != "done":
            raise RuntimeError(f"HTTP clients failed: {msg[1]}")
        return msg[1], server, pg_cores, meter.machine

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.pipe.send(None)
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=5)


# ---- 2. proofs -----------------------------------------------------------------------------


@dataclass
class ProofResult:
    requests: int
    seconds: float
    latencies: list[float]
    cores_client: float
    cores_server: float
    cores_pg: float
    verified: int
    machine: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def prove(
    pg: Database, db: str, n: int, stack: Stack, clients: Clients, tenant: Tenant, args: Any
) -> ProofResult:
    from proveniq.app.runtime import runtime
    from proveniq.log.bundle import Bundle, verifiers_for, verify_bundle

    conc, limit = args.clients, args.proof_requests
    seqs = random.sample(range(n), min(n, limit + conc * 2))
    rows = pg.query(db, "SELECT seq, id FROM events WHERE seq = ANY(%s)", (seqs,))
    by_seq = dict(rows)
    ids = [by_seq[s] for s in seqs]
    job = {
        "kind": "proof",
        "port": stack.port,
        "key": tenant.key,
        "conc": conc,
        "ids": ids[conc * 2 :] or ids,
        "warm_ids": ids[: conc * 2],
        "max_requests": limit,
        "seconds": args.proof_seconds,
    }
    result, server, pg_cores, machine = clients.run(job, pg.postmaster)
    signer = runtime().signer
    verified = 0
    for body in result["samples"]:
        bundle = Bundle.from_json(json.loads(body)["data"])
        verify_bundle(bundle, verifiers_for(bundle.checkpoint, signer.public_key, signer.name))
        verified += 1
    wall = result["seconds"]
    return ProofResult(
        requests=result["requests"],
        seconds=wall,
        latencies=result["latencies"],
        cores_client=result["cpu"] / wall,
        cores_server=server,
        cores_pg=pg_cores,
        verified=verified,
        machine=machine,
    )


# ---- 3. time-to-integrate ------------------------------------------------------------------


class SealTimer(threading.Thread):
    """The local stack's seal timer: wait `interval`, then run the real batch_merkle body
    (`seal_until_current`: outbox sweep, then seal until caught up); repeat.

    After a tick that integrated something, records (wall clock when `seal_until_current`
    returned, i.e. just after its last commit; the latest checkpoint's size). Only this thread
    seals, so that size is the one the tick committed.
    """

    def __init__(self, interval: float) -> None:
        super().__init__(name="seal-timer", daemon=True)
        from proveniq.app.runtime import runtime

        self.pool = runtime().pool
        self.interval = interval
        self.stop_event = threading.Event()
        self.commits: list[tuple[float, int]] = []
        self.ticks: list[float] = []  # seconds per tick that sealed something
        self.empty_ticks = 0
        self.errors: list[BaseException] = []

    def run(self) -> None:
        from proveniq.ledger.integration import seal_until_current

        while not self.stop_event.wait(self.interval):
            t = time.perf_counter()
            try:
                integrated = seal_until_current()
                done = time.time()
                if integrated:
                    with self.pool.transaction() as cur:
                        cur.execute("SELECT max(size) FROM checkpoints")
                        self.commits.append((done, cur.fetchone()[0]))
            except Exception as e:
                self.errors.append(e)
                log(f"    seal tick failed: {e!r}")
                continue
            if integrated:
                self.ticks.append(time.perf_counter() - t)
            else:
                self.empty_ticks += 1

    def covered(self) -> int:
        return self.commits[-1][1] if self.commits else 0


@dataclass
class TtiResult:
    interval_ms: int
    events: int
    seconds: float
    ack_latencies: list[float]
    tti: list[float]
    early: int  # covered before the client saw the ack (counted as 0)
    uncovered: int
    ticks: list[float]
    empty_ticks: int
    leaves_per_seal: float
    cores_client: float
    cores_server: float
    cores_pg: float
    machine: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def time_to_integrate(
    pg: Database, stack: Stack, clients: Clients, tenant: Tenant, interval_ms: int, args: Any
) -> TtiResult:
    timer = SealTimer(interval_ms / 1000)
    os.environ["PROVENIQ_SEAL_INTERVAL_MS"] = str(interval_ms)  # what the local stack would read
    job = {
        "kind": "write",
        "port": stack.port,
        "key": tenant.key,
        "conc": args.writers,
        "max_requests": 10**9,
        "seconds": args.tti_seconds,
    }
    try:
        result, server, pg_cores, machine = clients.run(job, pg.postmaster, on_go=timer.start)
        acks: list[tuple[float, int]] = result["acks"]
        top = max(seq for _, seq in acks)
        deadline = time.monotonic() + 30
        while timer.covered() <= top and time.monotonic() < deadline and timer.is_alive():
            time.sleep(0.05)
    finally:
        timer.stop_event.set()
        if timer.is_alive():
            timer.join(timeout=60)
    if timer.errors:
        raise RuntimeError(f"seal timer failed: {timer.errors[0]!r}") from timer.errors[0]
    sizes = [size for _, size in timer.commits]
    tti, early, uncovered = [], 0, 0
    for t_ack, seq in acks:
        k = bisect.bisect_right(sizes, seq)  # first checkpoint with size > seq
        if k == len(sizes):
            uncovered += 1
            continue
        d = timer.commits[k][0] - t_ack
        if d < 0:
            early += 1
        tti.append(max(0.0, d))
    wall = result["seconds"]
    seals = len(timer.commits)
    return TtiResult(
        interval_ms=interval_ms,
        events=len(acks),
        seconds=wall,
        ack_latencies=result["latencies"],
        tti=tti,
        early=early,
        uncovered=uncovered,
        ticks=timer.ticks,
        empty_ticks=timer.empty_ticks,
        leaves_per_seal=(len(acks) / seals) if seals else 0.0,
        cores_client=result["cpu"] / wall,
        cores_server=server,
        cores_pg=pg_cores,
        machine=machine,
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
    seal_rate: float = 60_000.0
    fixed: float = 0.0  # seconds of steps 2 and 3 plus set-up per size

    def seconds(self, n: int) -> float:
        return n / self.load_rate + n / self.seal_rate + self.fixed


@dataclass
class SizeReport:
    n: int
    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)


def run_size(
    pg: Database,
    stack: Stack,
    clients: Clients,
    n: int,
    args: Any,
    est: Estimates,
) -> None:
    t_size = time.perf_counter()
    db = f"p{n}"
    pg.admin(f'CREATE DATABASE "{db}" TEMPLATE "{TEMPLATE}"')
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
            f"   (cores: driver {ld.cores_driver:.2f}, pg {ld.cores_pg:.2f}, machine "
            f"{ld.machine:.2f}); "
            f"database {ld.db_bytes / 2**20:,.0f} MiB; ANALYZE {ld.analyze_s:.1f} s"
        )

        log(f"1. sealing {n:,} entries (Sealer.seal until caught up)")
        sl = seal_all(pg, db, n)
        est.seal_rate = sl.rate()
        ok = sl.size == n and sl.root == ld.root
        calls = sl.per_call
        out.add(
            f"   seal:   {sl.size:>11,} entries in {sl.seconds:7.1f} s = {sl.rate():>9,.0f} "
            f"entries/s integrated   (cores: driver {sl.cores_driver:.2f}, pg {sl.cores_pg:.2f},"
            f" machine {sl.machine:.2f});"
            f" {sl.calls} Sealer.seal() calls, {min(calls):.2f}-{max(calls):.2f} s each"
        )
        out.add(
            f"           root {sl.root.hex()[:16]}... "
            f"{'== independent RFC 6962 root of the loaded leaves' if ok else '!= EXPECTED'}"
            f" ({ld.root.hex()[:16]}...); VACUUM ANALYZE afterwards {sl.vacuum_s:.1f} s"
        )
        if not ok:
            raise SystemExit(f"seal check FAILED: size {sl.size} root {sl.root.hex()}")

        t_fixed = time.perf_counter()
        log(f"2. proofs: {args.proof_requests:,} requests or {args.proof_seconds:.0f} s")
        pr = prove(pg, db, n, stack, clients, tenant, args)
        out.add(
            f"2. proofs: {pr.requests:>6,} x GET /v1/events/{{id}}/proof, {args.clients} clients,"
            f" {pr.seconds:.1f} s = {pr.rate:,.0f} req/s; latency p50 "
            f"{pct(pr.latencies, 0.5) * 1e3:.1f} ms, p99 {pct(pr.latencies, 0.99) * 1e3:.1f} ms"
            f"   (cores: client {pr.cores_client:.2f}, server {pr.cores_server:.2f}, "
            f"pg {pr.cores_pg:.2f}, machine {pr.machine:.2f}); all 200, {pr.verified} bundles "
            "verified"
        )

        out.add(
            f"3. time-to-integrate ({args.writers} writers, single-event POST /v1/events, "
            f"{args.tti_seconds:.0f} s each; ack -> first checkpoint with size > seq committed):"
        )
        for interval in args.intervals:
            log(f"3. time-to-integrate, seal interval {interval} ms, {args.tti_seconds:.0f} s")
            r = time_to_integrate(pg, stack, clients, tenant, interval, args)
            tick = f"{pct(r.ticks, 0.5) * 1e3:.0f}/{max(r.ticks) * 1e3:.0f}" if r.ticks else "-"
            out.add(
                f"   interval {interval:>4} ms: {r.events:>6,} events, {r.rate:>5,.0f} events/s "
                f"(ack p50 {pct(r.ack_latencies, 0.5) * 1e3:.1f} ms); TTI p50 "
                f"{pct(r.tti, 0.5) * 1e3:,.0f} ms, p99 {pct(r.tti, 0.99) * 1e3:,.0f} ms, max "
                f"{max(r.tti, default=float('nan')) * 1e3:,.0f} ms"
            )
            out.add(
                f"        {len(r.ticks)} sealing ticks ({r.empty_ticks} empty), "
                f"{r.leaves_per_seal:,.0f} events/seal, tick p50/max {tick} ms; "
                f"{r.early} covered before the ack arrived (counted 0), {r.uncovered} uncovered"
                f"   (cores: client {r.cores_client:.2f}, server {r.cores_server:.2f}, "
                f"pg {r.cores_pg:.2f}, machine {r.machine:.2f})"
            )
        rows = pg.query(db, CHAIN_SQL, (n - 1,))
        written, gaps, broken = rows[0]
        out.add(
            f"   chain check over the {written - 1:,} events written in step 3 (seq >= {n:,}): "
            f"gaps {gaps}, broken prev links {broken}"
        )
        if gaps or broken:
            raise SystemExit("chain check FAILED")
        est.fixed = time.perf_counter() - t_fixed + 5
        log(f"size {n:,} done in {hms(time.perf_counter() - t_size)}")
    finally:
        stack.release()
        pg.admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


# ---- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", help="comma-separated entry counts [1000000,10000000]")
    parser.add_argument("--quick", action="store_true", help="20,000 entries, short runs (~1 min)")
    parser.add_argument("--clients", type=int, default=8, help="proof clients [8]")
    parser.add_argument("--writers", type=int, default=4, help="writers in step 3 [4]")
    parser.add_argument("--intervals", default="1000,200", help="seal intervals, ms [1000,200]")
    args = parser.parse_args()
    sizes_text = args.sizes or ("20000" if args.quick else "1000000,10000000")
    try:
        args.sizes = [int(s.replace("_", "")) for s in sizes_text.split(",") if s.strip()]
        args.intervals = [int(s) for s in args.intervals.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes and --intervals take comma-separated integers")
    if not args.sizes or min(args.sizes) < 1 or not args.intervals or min(args.intervals) < 1:
        parser.error("sizes and intervals must be positive")
    args.proof_requests = 1_000 if args.quick else 5_000
    args.proof_seconds = 10.0 if args.quick else 30.0
    args.tti_seconds = 8.0 if args.quick else 20.0

    from proveniq.adapters.local import postgres

    for k in [k for k in os.environ if k.startswith("PROVENIQ_")]:
        del os.environ[k]
    tmp = Path(tempfile.mkdtemp(prefix="pvqp-", dir="/tmp"))  # short: Unix socket path limit
    data_dir = tmp / "pg"
    started = time.perf_counter()
    est = Estimates(fixed=args.proof_seconds / 2 + (args.tti_seconds + 3) * len(args.intervals))
    stack: Stack | None = None
    clients: Clients | None = None
    try:
        log(f"starting embedded PostgreSQL in {data_dir}")
        pg = start_postgres(data_dir)
        print(
            f"Proof-path benchmark: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"pg8000, embedded PostgreSQL over a Unix socket ({pg.settings()})"
        )
        print(
            "HTTP: werkzeug threaded server, PROVENIQ_POOL_SIZE=32, internal tier (no rate limit);"
            " clients in a spawned process, one persistent http.client connection per thread"
        )
        print(
            "cores = CPU seconds / wall seconds of this process (driver/server), the client "
            "process, PostgreSQL, and the whole machine (includes anything else running)"
        )
        stack = Stack(pg, tmp / "state")
        clients = Clients()
        for i, n in enumerate(args.sizes):
            left = sum(est.seconds(m) for m in args.sizes[i:])
            log(f"size {n:,}: estimated {hms(est.seconds(n))}; all remaining sizes {hms(left)}")
            run_size(pg, stack, clients, n, args, est)
    except KeyboardInterrupt:
        log("interrupted")
        raise SystemExit(130) from None
    finally:
        log("stopping PostgreSQL and removing the temporary folder")
        try:
            if clients is not None:
                clients.close()
            if stack is not None:
                stack.close()
        finally:
            try:
                postgres.stop(data_dir)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        log(f"total {hms(time.perf_counter() - started)}")


if __name__ == "__main__":
    main()

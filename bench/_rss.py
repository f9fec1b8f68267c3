"""Peak memory of a seal and of `proveniq audit` (issue 13, target 8: < 300 MB at 10 M entries).

    python bench/_rss.py [--size 1000000]

Each runs in a process of its own, whose peak resident set (``ru_maxrss`` of that one process,
from ``os.wait4`` in a small launcher) is the figure:

- seal: `bench/prove.py`'s integrate step (`integrate_all`: `Integrator.integrate_and_publish()`
  until caught up) in a child process with the stack's settings; it reports the same figures as
  before (its "driver" cores are the seal process's own), and VACUUM runs in the parent after it.
- audit: `proveniq audit` (the installed command, the deployment's own signer as the key) on the
  same database, with its wall time and entries/s.

`bench/prove.py` calls `seal_in_child` for its integrate step and `audit_lines` at the end of each
size. Run alone, this module loads `--size` entries with prove.py's loader into a fresh embedded
PostgreSQL, then seals and audits them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import _harness as h

TARGET_MB = 300.0
MB = 2**20
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Child:
    """A finished child process: exit code, wall and CPU seconds, peak RSS, its stdout."""

    rc: int
    seconds: float
    cpu: float
    max_rss: int  # bytes
    stdout: str
    stderr: str

    def verdict(self) -> str:
        mb = self.max_rss / MB
        return (
            f"peak RSS {mb:,.0f} MB ({'pass' if mb < TARGET_MB else 'MISS'}: < {TARGET_MB:.0f} MB)"
        )


# A small launcher between this (large) process and the measured one: a forked child starts
# with its parent's peak RSS as its own (the kernel carries the old memory map's high-water
# mark into ru_maxrss across exec), so the measured command must be forked by a small process.
LAUNCHER = """import json, os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump([os.waitstatus_to_exitcode(status), ru.ru_maxrss, ru.ru_utime + ru.ru_stime], f)
"""


def run_child(cmd: list[str], env: dict[str, str], *, stderr_to_file: bool = True) -> Child:
    """Run ``cmd`` (its first item an absolute path) to completion through `LAUNCHER`, which
    reports that one process's peak RSS (``ru_maxrss`` from wait4) and CPU seconds."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", suffix=".json") as report,
    ):
        t0 = time.perf_counter()
        launcher = [sys.executable, "-S", "-c", LAUNCHER, report.name, *cmd]
        subprocess.run(
            launcher, env=env, stdout=out, stderr=err if stderr_to_file else None, check=True
        )
        seconds = time.perf_counter() - t0
        rc, max_rss_kb, cpu = json.load(report)
        out.seek(0)
        err.seek(0)
        return Child(
            rc=rc,
            seconds=seconds,
            cpu=cpu,
            max_rss=max_rss_kb * 1024,  # Linux: kilobytes
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def child_env(pg: h.Database, db: str, **extra: str) -> dict[str, str]:
    """This process's environment with the stack's settings on ``db`` (the same state folder,
    hence the same signer, as `InProcessStack.use`)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PROVENIQ_")}
    return base | h.stack_env(pg, db, pg.folder / "state", pool_size="4") | extra


# ---- the seal --------------------------------------------------------------------------------


def seal_in_child(pg: h.Database, db: str, n: int) -> tuple[dict[str, Any], Child]:
    """prove.py's `integrate_all` in a child process: its fields (for `Integrated`), the child."""
    env = child_env(pg, db, BENCH_POSTMASTER=str(pg.postmaster), BENCH_DB=db)
    child = run_child(
        [sys.executable, str(HERE / "_rss.py"), "--seal", str(n)], env, stderr_to_file=False
    )
    if child.rc != 0:
        raise SystemExit(f"seal process failed (exit {child.rc})")
    fields: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    fields["root"] = bytes.fromhex(fields["root"])
    t = time.perf_counter()
    pg.admin("VACUUM (ANALYZE) events, tree_nodes, checkpoints", db)
    fields["vacuum_s"] = time.perf_counter() - t
    return fields, child


def _seal_main(n: int) -> None:
    """In the child: integrate until caught up with prove.py's own loop; print its figures."""
    import prove

    from proveniq.ledger.integration import MAX_LEAVES_PER_RUN

    rt = h.install({k: v for k, v in os.environ.items() if k.startswith("PROVENIQ_")})
    shim = SimpleNamespace(postmaster=int(os.environ["BENCH_POSTMASTER"]), admin=lambda *_: None)
    ig = prove.integrate_all(shim, os.environ["BENCH_DB"], n, rt)
    fields = {k: v for k, v in vars(ig).items() if k != "vacuum_s"}
    print(json.dumps(fields | {"root": ig.root.hex(), "batch": MAX_LEAVES_PER_RUN}), flush=True)


def seal_line(child: Child, fields: dict[str, Any]) -> str:
    calls = len(fields["per_call"])
    return (
        f"   seal process: {child.verdict()}; {fields['size']:,} entries in {calls} "
        f"integrate_and_publish() calls of <= {fields['batch']:,} leaves"
    )


# ---- the audit -------------------------------------------------------------------------------


def audit_in_child(pg: h.Database, db: str) -> Child:
    """`proveniq audit` on ``db`` as an operator runs it."""
    cli = Path(sys.executable).with_name("proveniq")
    cmd = (
        [str(cli), "audit"] if cli.exists() else [sys.executable, "-m", "proveniq.app.cli", "audit"]
    )
    return run_child(cmd, child_env(pg, db))


def audit_lines(pg: h.Database, db: str, add: Callable[[str], None]) -> Child:
    """Run the audit; report its memory, time and verdict through ``add``."""
    h.log("4. proveniq audit (a process of its own)")
    child = audit_in_child(pg, db)
    m = re.search(r"OK: (\d+) entries, (\d+) nodes, (\d+) checkpoints", child.stdout)
    if child.rc != 0 or m is None:
        add(f"4. audit: FAILED (exit {child.rc}): {child.stderr.strip().splitlines()[-1:]}")
        raise SystemExit("audit FAILED")
    entries, nodes, cps = (int(x) for x in m.groups())
    add(
        f"4. audit:  {entries:>11,} entries, {nodes:,} nodes, {cps:,} checkpoints in "
        f"{child.seconds:7.1f} s = {entries / child.seconds:>9,.0f} entries/s "
        f"(cores: audit {child.cpu / child.seconds:.2f}); {child.verdict()}"
    )
    return child


# ---- standalone ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="entries [1000000]")
    parser.add_argument("--seal", type=int, default=None, help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.seal is not None:
        _seal_main(args.seal)
        return
    import prove

    n = args.size
    with h.embedded_postgres() as pg:
        db = pg.fresh(f"r{n}")
        tenant = h.new_tenant(h.install(h.stack_env(pg, db, pg.folder / "state")), db)
        from proveniq.app.runtime import release_runtime

        release_runtime()
        h.log(f"loading {n:,} entries")
        ld = prove.load(pg, db, n, tenant)
        print(f"load: {n:,} entries in {ld.seconds:.1f} s", flush=True)
        h.log("sealing in a child process")
        fields, seal = seal_in_child(pg, db, n)
        ok = fields["root"] == ld.root and fields["size"] == n
        print(
            f"seal: {fields['size']:,} entries in {seal.seconds:.1f} s, root "
            f"{'matches' if ok else 'DIFFERS'}",
            flush=True,
        )
        print(seal_line(seal, fields), flush=True)
        audit_lines(pg, db, lambda s: print(s, flush=True))
        pg.drop(db)


if __name__ == "__main__":
    main()

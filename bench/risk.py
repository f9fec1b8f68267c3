"""Risk bench: a labelled synthetic claim set through the real write path, scored by the chain.

    python bench/risk.py [--claims N] [--seed S] [--batch B] [--conc C] [--live L] [--reference]

Starts its own embedded PostgreSQL, serves the local stack's gateway over real HTTP on
127.0.0.1 (the harness's `InProcessStack`) with the followers running as `make run` runs them
(`localstack.connect_followers`: the in-process bus pushes every `ledger-events` message to the
risk_score function; `start_background`: outbox sweep, seal timer, webhook worker), then:

1. bulk: `bench/risk_data.py` generates N labelled claims (about 1% fraudulent through each of
   the five patterns, plus hard negatives) with their assets, custody and documents; a spawned
   client process writes them in time order through `POST /v1/events:batch`; the chain scores
   every claim.* and document.uploaded event as it arrives, appending one `risk.scored` each;
2. the driver waits (bounded, with progress) until every scorable event has its `risk.scored`,
   reads them all back through `GET /v1/events?type=risk.scored` (the auditor's path), checks
   a sample against `GET /v1/risk/{claim}/score`, and prints precision / recall / F1 at the
   stack's review threshold per pattern and overall (`risk_data.evaluate`), events scored per
   second, and write -> score latency p50/p99 under the bulk backlog;
3. live: L claims written one per request at a steady pace below the chain's capacity, for the
   write -> score latency of a stack that is keeping up.

Timestamps, honestly. The generator's history spans two years; it is shifted to end an hour
before now, so every event is in the past and windows (velocity, policy start, custody at the
incident) keep their meaning. But a backfill through the live write path records everything
now, so a claim filed months ago has `occurred_at` far from `recorded_at`, and the timing
feature's clock-skew signal (0.5 x 50 = 25 points; `FeatureConfig.max_clock_skew`, 2 days,
not exposed as a setting) fires on nearly every claim. Two evaluations are printed:

  as scored          the scores the chain recorded, skew signal included (what a backfill
                     through the live path with the default configuration yields);
  without backfill   the same `risk.scored` entries with that one signal removed, recomputed
  skew               from their recorded features (timing keeps its other flags; the score is
                     the capped sum of contributions, as in `model.evaluate`): what the model
                     does on claims filed live. `--reference` also scores the set in-process
                     (`risk_data.run_in_process`, memory facts, recorded a minute after each
                     event) and counts the claims whose chain score differs from it.

Gemini is off (the local default): these are the deterministic model's figures. Progress goes
to stderr, figures to stdout. The harness is bench/_harness.py.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import json
import random
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import _harness as h
import risk_data

SCORABLE = frozenset({"claim.created", "claim.updated", "document.uploaded"})
TIMING_FULL = {"incident_after_filing", "future_incident", "future_occurred_at"}
TIMING_FULL |= {"incident_before_policy"}
POLL_SECONDS = 2.0
STALL_SECONDS = 180.0
SAMPLE_CHECKS = 100


# ---- the client process: request bodies built before the clock starts -----------------------


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dataset(seed: int, claims: int, end_iso: str) -> risk_data.Dataset:
    return risk_data.generate(seed=seed, claims=claims, end=datetime.fromisoformat(end_iso))


def shifted_end(seed: int, claims: int) -> datetime:
    """The `end` that puts the set's last event an hour before now. (Some series, the fleets,
    run past the generator's `end`; left there they would be future-dated, which the timing
    feature rightly flags.) Generation is deterministic per seed and `end` only shifts it."""
    probe = risk_data.generate(seed=seed, claims=claims)
    overrun = max(e.occurred_at for e in probe.events) - risk_data.END
    return (datetime.now(UTC) - timedelta(hours=1) - overrun).replace(microsecond=0)


def batch_bodies(seed: int, claims: int, end_iso: str, size: int) -> list[bytes]:
    wire = [
        {
            "type": e.type,
            "subject": e.subject,
            "payload": dict(e.payload),
            "occurred_at": _iso(e.occurred_at),
        }
        for e in dataset(seed, claims, end_iso).events
    ]
    return [
        json.dumps({"events": wire[i : i + size]}, separators=(",", ":")).encode()
        for i in range(0, len(wire), size)
    ]


def plan(seed: int, claims: int, end_iso: str, size: int) -> h.Plan:
    bodies = batch_bodies(seed, claims, end_iso, size)

    def request(j: int, warm: bool) -> h.Request:
        if warm:  # warm-up must not write: the labelled set is written exactly once
            return h.Request("GET", "/ready")
        return h.Request("POST", "/v1/events:batch", bodies[j], expect=201)

    return request


def batch_ack(body: bytes) -> list[tuple[str, str]]:
    """(event id, recorded_at) of each event in a batch's 201."""
    return [(e["id"], e["recorded_at"]) for e in json.loads(body)["data"]["events"]]


# ---- the driver --------------------------------------------------------------------------------


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class Api:
    """One persistent HTTP connection to the stack with the tenant's key."""

    def __init__(self, port: int, key: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.auth = {"Authorization": f"Bearer {key}"}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = self.auth if data is None else {**self.auth, "Content-Type": "application/json"}
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")

    def close(self) -> None:
        self.conn.close()


@dataclass
class Scored:
    """One `risk.scored` entry, as much of it as the figures need."""

    seq: int
    claim: str
    event_id: str  # the scored event
    recorded_at: float
    score: int
    features: list[dict[str, Any]]


def read_scored(api: Api) -> Iterator[Scored]:
    """Every `risk.scored` entry of the tenant, through the paged public read path."""
    cursor: str | None = None
    for _ in range(1_000_000):  # bounded: 200 per page
        path = "/v1/events?type=risk.scored&limit=200" + (f"&cursor={cursor}" if cursor else "")
        status, doc = api.call("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path} -> {status}: {doc}")
        for e in doc["data"]:
            p = e["payload"]
            yield Scored(
                seq=e["seq"],
                claim=e["subject"],
                event_id=p["scores"]["event_id"],
                recorded_at=ts(e["recorded_at"]),
                score=p["score"],
                features=p["features"],
            )
        cursor = doc["meta"]["next_cursor"]
        if cursor is None:
            return


def without_skew(features: Sequence[Mapping[str, Any]]) -> tuple[int, str | None]:
    """The score and top reason of recorded features with timing's clock-skew signal removed."""
    contributions: dict[str, float] = {}
    for f in features:
        c = float(f["contribution"])
        if f["name"] == "timing" and f["facts"].get("clock_skew"):
            facts = f["facts"]
            value = 1.0 if TIMING_FULL & facts.keys() else 0.0
            if facts.get("soon_after_policy_start"):
                full = float(facts.get("days_after_policy_start", 99)) < 2
                value = max(value, 1.0 if full else 0.5)
            c = round(float(f["weight"]) * value, 2)
        contributions[f["name"]] = c
    score = max(0, min(100, round(sum(contributions.values()))))
    ranked = sorted((-c, n) for n, c in contributions.items() if c > 0)
    return score, ranked[0][1] if ranked else None


def recorded_top(features: Sequence[Mapping[str, Any]]) -> str | None:
    ranked = sorted((-float(f["contribution"]), f["name"]) for f in features)
    return ranked[0][1] if ranked and ranked[0][0] < 0 else None


@dataclass
class Progress:
    """A background thread logging events written and scored, from the database."""

    pg: h.Database
    db: str
    expected: int
    started: float = field(default_factory=time.perf_counter)
    stop: threading.Event = field(default_factory=threading.Event)

    def counts(self) -> tuple[int, int]:
        rows = self.pg.query(
            self.db, "SELECT count(*), count(*) FILTER (WHERE type = 'risk.scored') FROM events"
        )
        return int(rows[0][0]), int(rows[0][1])

    def run(self) -> None:
        while not self.stop.wait(5.0):
            total, scored = self.counts()
            h.log(
                f"{h.hms(time.perf_counter() - self.started)}: {total - scored} events written, "
                f"{scored}/{self.expected} scored"
            )


def wait_scored(progress: Progress, *, timeout: float) -> None:
    """Until every scorable event has its risk.scored (bounded; fails on a stall)."""
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        _, scored = progress.counts()
        if scored >= progress.expected:
            return
        if scored != last:
            last, last_change = scored, time.monotonic()
        elif time.monotonic() - last_change > STALL_SECONDS:
            raise RuntimeError(f"scoring stalled at {scored}/{progress.expected}")
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"not all events scored within {timeout:.0f} s")


def latencies(
    scored: Sequence[Scored], written: Mapping[str, tuple[float, float]]
) -> tuple[list[float], list[float]]:
    """Per scored event (its first risk.scored): sequenced -> scored and acknowledged -> scored,
    in seconds; `written` maps event id -> (recorded_at, client ack wall time)."""
    first: dict[str, Scored] = {}
    for s in scored:
        if s.event_id in written and (s.event_id not in first or s.seq < first[s.event_id].seq):
            first[s.event_id] = s
    seq_lat = [s.recorded_at - written[e][0] for e, s in first.items()]
    ack_lat = [s.recorded_at - written[e][1] for e, s in first.items()]
    return seq_lat, ack_lat


def ms(xs: Sequence[float], q: float) -> str:
    return f"{1000 * h.pct(xs, q):,.0f} ms"


def live_phase(api: Api, n: int, rate: float) -> dict[str, tuple[float, float]]:
    """`n` claims written one per request at `rate` per second; id -> (recorded_at, ack)."""
    written: dict[str, tuple[float, float]] = {}
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    for i in range(n):
        time.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
        body = {
            "type": "claim.created",
            "subject": f"clm_live_{i:05d}",
            "occurred_at": _iso(datetime.now(UTC)),
            "payload": {"amount_cents": 180_000 + i, "currency": "EUR",
                        "claimant": f"cl_live_{i:05d}", "asset": f"ast_live_{i:05d}",
                        "incident_at": _iso(now - timedelta(days=3)), "policy_id": "pol_live",
                        "policy_start": _iso(now - timedelta(days=400))},
        }  # fmt: skip
        status, doc = api.call("POST", "/v1/events", body)
        if status != 201:
            raise RuntimeError(f"live write -> {status}: {doc}")
        written[doc["data"]["id"]] = (ts(doc["data"]["recorded_at"]), time.time())
    return written


def check_sample(api: Api, latest: Mapping[str, Scored], k: int) -> int:
    """GET /v1/risk/{claim}/score for k claims agrees with their latest risk.scored entry."""
    rng = random.Random(1)
    claims = rng.sample(sorted(latest), min(k, len(latest)))
    for c in claims:
        status, doc = api.call("GET", f"/v1/risk/{c}/score")
        if status != 200 or doc["data"]["score"] != latest[c].score:
            raise RuntimeError(f"GET /v1/risk/{c}/score -> {status} {doc} != {latest[c]}")
    return len(claims)


def _start(meter: h.Meter) -> None:
    meter.start()  # from "go" to the chain's last score, not just the writes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--claims", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch", type=int, default=500, help="events per POST /v1/events:batch")
    ap.add_argument("--conc", type=int, default=1, help="concurrent writers (1: time order)")
    ap.add_argument("--live", type=int, default=200, help="paced single claims (0: none)")
    ap.add_argument("--live-rate", type=float, default=20.0, help="paced claims per second")
    ap.add_argument("--timeout", type=float, default=1800.0, help="bound on the wait to score")
    ap.add_argument("--reference", action="store_true", help="also score in-process, compare")
    args = ap.parse_args()
    if not 1 <= args.batch <= 1000 or args.claims < 100 or args.conc < 1:
        ap.error("--batch 1..1000, --claims >= 100, --conc >= 1")

    end = shifted_end(args.seed, args.claims)
    data = dataset(args.seed, args.claims, end.isoformat())
    expected = sum(e.type in SCORABLE for e in data.events)
    n_batches = -(-len(data.events) // args.batch)
    last = max(e.occurred_at for e in data.events)
    h.log(
        f"{len(data.labels)} claims, {len(data.events)} events ({expected} scorable) in "
        f"{n_batches} batches of {args.batch}; history shifted: {data.events[0].occurred_at:%F} "
        f"to {last:%F %H:%M} UTC"
    )

    from proveniq.app import localstack

    with h.embedded_postgres() as pg, h.Clients() as clients:
        stack = h.InProcessStack(pg)
        stop = threading.Event()
        threads: list[threading.Thread] = []
        try:
            db = pg.fresh("risk")
            tenant = stack.use(db)
            rt = stack.runtime
            threshold = rt.settings.risk_review_threshold
            apps = localstack.build_apps()
            localstack.connect_followers(apps)  # ledger-events -> risk_score on the bus
            threads = localstack.start_background(stop, apps)
            print(h.platform_line("risk bench", pg, "shared_buffers", "synchronous_commit"))
            print(
                f"set: {len(data.labels)} claims, {len(data.events)} events, seed {args.seed}; "
                f"writes: {n_batches} x POST /v1/events:batch of <= {args.batch}, "
                f"{args.conc} client(s); review threshold {threshold}; Gemini off"
            )

            # 1. bulk: write the set; the chain scores as it goes
            progress = Progress(pg, db, expected)
            reporter = threading.Thread(target=progress.run, daemon=True)
            meter = h.Meter(pg.postmaster, server=stack.server_cpu)
            load = h.Load(
                port=stack.port,
                key=tenant.key,
                conc=args.conc,
                plan=functools.partial(plan, args.seed, args.claims, end.isoformat(), args.batch),
                max_requests=n_batches,
                ack=batch_ack,
            )
            reporter.start()
            result, _ = clients.run(load, h.Meter(pg.postmaster), on_go=lambda: _start(meter))
            wrote = time.perf_counter()
            h.log(f"written in {h.hms(result.seconds)}; waiting for the chain to score")
            wait_scored(progress, timeout=args.timeout)
            all_scored = time.perf_counter() - wrote
            rt.bus.flush(timeout=300)  # the risk.scored entries' own deliveries (projection)
            usage = meter.stop()
            drained = time.perf_counter() - wrote
            progress.stop.set()

            written = {
                eid: (ts(rec), at) for at, acks in result.acks for eid, rec in acks
            }  # event id -> (recorded_at, client ack time)
            api = Api(stack.port, tenant.key)
            h.log("reading every risk.scored entry back over HTTP")
            scored = list(read_scored(api))
            latest: dict[str, Scored] = {}
            for s in scored:
                if s.claim in data.labels and (
                    s.claim not in latest or s.seq > latest[s.claim].seq
                ):
                    latest[s.claim] = s
            per_event: dict[str, int] = {}
            for s in scored:
                per_event[s.event_id] = per_event.get(s.event_id, 0) + 1
            duplicates = sum(n - 1 for n in per_event.values())
            checked = check_sample(api, latest, SAMPLE_CHECKS)

            first_write = min(rec for rec, _ in written.values())
            last_scored = max(s.recorded_at for s in scored)
            span = last_scored - first_write
            seq_lat, ack_lat = latencies(scored, written)

            print()
            print(
                f"write path: {len(data.events)} events in {result.seconds:.1f} s "
                f"({len(data.events) / result.seconds:,.0f} events/s, batch p50 "
                f"{ms(result.latencies, 0.5)}, p99 {ms(result.latencies, 0.99)})"
            )
            print(
                f"chain: {len(per_event)}/{expected} scorable events scored "
                f"({len(scored)} risk.scored, {duplicates} duplicates) {all_scored:.0f} s after "
                f"the last write; bus drained (the risk.scored entries' own deliveries) after "
                f"{drained:.0f} s; dead letters {len(rt.bus.dead_letters)}"
            )
            print(
                f"scored: {expected / span:,.1f} events/s from the first write to the last "
                f"risk.scored ({span:.1f} s; ledger-events messages handled: "
                f"{(len(data.events) + len(scored)) / span:,.1f}/s incl. risk.* projections)"
            )
            print(f"  {usage.summary()}")
            print(
                f"latency under the bulk backlog (queueing dominates): sequenced -> scored "
                f"p50 {ms(seq_lat, 0.5)}, p99 {ms(seq_lat, 0.99)}; write ack -> scored "
                f"p50 {ms(ack_lat, 0.5)}, p99 {ms(ack_lat, 0.99)}"
            )
            print(
                f"GET /v1/risk/{{claim}}/score agrees with the ledger for {checked} sampled claims"
            )

            # 2. live: paced single claims on a stack that keeps up
            if args.live:
                h.log(f"live phase: {args.live} claims at {args.live_rate:g}/s")
                live = live_phase(api, args.live, args.live_rate)
                progress.expected = expected + args.live
                wait_scored(progress, timeout=120)
                live_scored = [s for s in read_scored(api) if s.event_id in live]
                seq_l, ack_l = latencies(live_scored, live)
                print(
                    f"latency, {len(seq_l)} paced claims at {args.live_rate:g}/s: sequenced -> "
                    f"scored p50 {ms(seq_l, 0.5)}, p99 {ms(seq_l, 0.99)}; write ack -> scored "
                    f"p50 {ms(ack_l, 0.5)}, p99 {ms(ack_l, 0.99)}"
                )
            api.close()

            # 3. the evaluation
            missing = len(data.labels) - len(latest)
            print(f"\nclaims without a score: {missing}")
            as_scored = {c: s.score for c, s in latest.items()}
            tops = {c: t for c, s in latest.items() if (t := recorded_top(s.features))}
            skewed = sum(
                1
                for s in latest.values()
                for f in s.features
                if f["name"] == "timing" and f["facts"].get("clock_skew")
            )
            print(f"\n== as scored by the chain ({skewed} claims carry the backfill skew signal)")
            risk_data.evaluate(data.labels, as_scored, threshold, top_features=tops)
            adjusted = {c: without_skew(s.features) for c, s in latest.items()}
            print("\n== without the backfill skew signal (recomputed from the recorded features)")
            risk_data.evaluate(
                data.labels,
                {c: a[0] for c, a in adjusted.items()},
                threshold,
                top_features={c: a[1] for c, a in adjusted.items() if a[1]},
            )
            if args.reference:
                compare_reference(data, latest, adjusted, threshold)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
            stack.close()


def compare_reference(
    data: risk_data.Dataset,
    latest: Mapping[str, Scored],
    adjusted: Mapping[str, tuple[int, str | None]],
    threshold: int,
) -> None:
    h.log("in-process reference run (memory facts)")
    ref = risk_data.run_in_process(data, threshold=threshold)
    diff = sorted(c for c, (score, _) in adjusted.items() if ref["scores"].get(c) != score)
    for c in diff[:5]:
        f = [(x["name"], x["contribution"], x["facts"]) for x in latest[c].features]
        print(
            f"  {c} ({data.labels[c]}): chain {adjusted[c][0]}, reference "
            f"{ref['scores'].get(c)} ({ref['top_features'].get(c)}); chain features {f}"
        )
    print(
        f"\nin-process reference ({ref['events_per_second']:,.0f} events/s): {len(diff)} of "
        f"{len(adjusted)} claims score differently from the chain without skew"
        + (
            f", e.g. {[(c, adjusted[c][0], ref['scores'].get(c)) for c in diff[:5]]}"
            if diff
            else ""
        )
    )


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
    sys.stdout.flush()

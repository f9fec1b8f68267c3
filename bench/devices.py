"""Device-ingest benchmark: signed telemetry from many simulated devices into the ledger,
grouped sequencing (GroupCommitter -> DeviceIngest -> Sequencer.append_each, one lock per group)
against one-at-a-time sequencing (the OneAtATime wrapper: one lock per message).

    python bench/devices.py [--messages N] [--devices D] [--quick]

Starts its own embedded PostgreSQL in a temporary folder under /tmp (bench/_harness.py), a fresh
database per row with D registered devices of one tenant, and prints one table:

(a) the use case driven directly by C threads (C = 1, 8, 32), each thread owning a share of
    the devices and submitting their messages in counter order, as concurrent Pub/Sub push
    deliveries to one function instance would:
      one-at-a-time    DeviceIngest([message]) per delivery over OneAtATime (lock per message)
      grouped/1-lock   GroupCommitter over a DeviceIngest over OneAtATime (group verify and
                       bookkeeping, still one lock per message)
      grouped          GroupCommitter over DeviceIngest over Sequencer.append_each (as wired)
    latency = submit -> return (committed, recorded; the function would acknowledge);
(b) end to end: a spawned device process publishes the signed messages with the real
    google-cloud-pubsub PublisherClient (PUBSUB_EMULATOR_HOST, ordering key = device) to the
    local Pub/Sub Publisher API on 127.0.0.1, which pushes each message as a binary CloudEvent
    to the device_ingest function's functions-framework app:
      bus (make run)   the local stack's in-process bus: ONE delivery thread per topic, so
                       device_ingest only ever sees one message at a time and groups of one
      push xN          N concurrent push deliveries (Cloud Functions concurrency N), at most
                       one outstanding per ordering key, as Pub/Sub ordered push delivers
    latency = publish() call in the device process -> the message's row in device_messages
    (its recorded_at, written in the transaction after the append committed), same clock.
    Each configuration runs twice: a burst (all messages published as fast as the client
    takes them: the throughput; its latency is mostly queueing), then paced at half the burst
    throughput for about PACED_SECONDS (the latency of a stack that keeps up).

Messages are built and signed before the clock starts. Every row checks that each message is
in the ledger exactly once and nothing was refused. Progress goes to stderr, figures to stdout.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _harness as h

from proveniq.intake.devices.grouping import GroupedIngest, grouped
from proveniq.intake.devices.ingest import Delivery, DeviceIngest, Ingested, OneAtATime, Outcome
from proveniq.ports import Message

ROOT = Path(__file__).resolve().parents[1]
PACED_SECONDS = 20  # a paced row publishes for about this long
SEED = bytes(range(32))  # the devices' Ed25519 seeds derive from it (the device process too)


# ---- the fleet ----------------------------------------------------------------------------


def device_key(i: int) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(bytes((b + i) % 256 for b in SEED))


def device_id(i: int) -> str:
    return f"tag-{i:05d}"


def fleet_messages(devices: int, count: int) -> list[Message]:
    """Message j comes from device j % devices, its counter j // devices + 1 (interleaved)."""
    from proveniq.intake.devices.message import build

    keys = [device_key(i) for i in range(devices)]
    now = datetime.now(UTC)
    return [
        build(
            device=device_id(j % devices),
            counter=j // devices + 1,
            sent_at=now,
            type="device.reading",
            subject=f"asset-{j % devices:05d}",
            data={"temp_c": 20 + j % 10, "battery": 97},
            sign=keys[j % devices].sign,
        )
        for j in range(count)
    ]


def register(rt: Any, tenant: str, devices: int) -> None:
    from proveniq.intake.devices.registry import Device

    now = datetime.now(UTC)
    for i in range(devices):
        rt.devices.store.register(
            Device(
                device_id=device_id(i),
                tenant=tenant,
                kind="smart-tag",
                public_key=device_key(i).public_key().public_bytes_raw(),
                created_at=now,
                updated_at=now,
            )
        )


def check(pg: h.Database, db: str, count: int, devices: int) -> None:
    """Every message in the ledger once, each device its messages' actor; nothing refused."""
    [(events, actors)] = pg.query(
        db, "SELECT count(*), count(DISTINCT actor) FROM events WHERE actor LIKE 'device:%%'"
    )
    [(recorded,)] = pg.query(db, "SELECT count(*) FROM device_messages")
    [(refused,)] = pg.query(db, "SELECT coalesce(sum(count), 0) FROM device_rejections")
    if (events, actors, recorded, refused) != (count, devices, count, 0):
        raise SystemExit(
            f"{db}: {events} events by {actors} devices, {recorded} recorded, {refused} refused"
        )


@dataclass
class Row:
    section: str
    label: str
    conc: int
    messages: int
    seconds: float
    latencies: list[float]
    groups: int | None
    cores: str

    def line(self) -> str:
        rate = self.messages / self.seconds
        group = f"{self.messages / self.groups:7.1f}" if self.groups else "      -"
        return (
            f"{self.section} {self.label:<16} {self.conc:>4} {self.messages:>7} {rate:>9.0f}"
            f" {group} {h.pct(self.latencies, 0.5) * 1000:>8.1f}"
            f" {h.pct(self.latencies, 0.99) * 1000:>8.1f}   {self.cores}"
        )


HEADER = (
    "  mode             conc    msgs    msgs/s   group  p50 ms   p99 ms   cores\n"
    "  ---------------- ---- ------- --------- ------- -------- --------   -----"
)


# ---- (a) the use case, driven by threads -----------------------------------------------------


class PerMessage:
    """One `DeviceIngest.ingest` per delivery (no grouping): what each request would do alone."""

    def __init__(self, ingest: DeviceIngest) -> None:
        self._ingest = ingest
        self.groups = 0

    def submit(self, delivery: Delivery) -> Outcome:
        self.groups += 1
        return self._ingest.ingest([delivery])[0]


def ingests(rt: Any, mode: str) -> PerMessage | GroupedIngest:
    s = rt.settings
    one = OneAtATime(rt.sequencer)
    make: Callable[[Any], DeviceIngest] = lambda appender: DeviceIngest(  # noqa: E731
        store=rt.devices.store,
        appender=appender,
        dead_letters=rt.bus,
        dead_letter_topic=s.device_dead_letter_topic,
    )
    if mode == "one-at-a-time":
        return PerMessage(make(one))
    if mode == "grouped/1-lock":
        return grouped(make(one))
    return grouped(make(rt.sequencer))


def direct(pg: h.Database, mode: str, conc: int, devices: int, count: int, tag: str) -> Row:
    db = pg.fresh(f"dev_{tag}")
    rt = h.install(h.stack_env(pg, db, pg.folder / "state", pool_size=str(conc + 4)))
    tenant = h.new_tenant(rt, db).partner_id
    register(rt, tenant, devices)
    messages = fleet_messages(devices, count)
    target = ingests(rt, mode)
    shares: list[list[Message]] = [[] for _ in range(conc)]
    for j, m in enumerate(messages):  # a device's messages all go to one thread, in order
        shares[(j % devices) % conc].append(m)
    latencies: list[float] = []
    errors: list[str] = []
    busy = [share for share in shares if share]
    go = threading.Barrier(len(busy) + 1)

    def submitter(mine: Sequence[Message]) -> None:
        local: list[float] = []
        go.wait()
        try:
            for m in mine:
                t = time.perf_counter()
                outcome = target.submit(Delivery(message=m))
                local.append(time.perf_counter() - t)
                if not isinstance(outcome, Ingested):
                    errors.append(repr(outcome))
                    return
        finally:
            latencies.extend(local)

    threads = [threading.Thread(target=submitter, args=(share,)) for share in busy]
    for t in threads:
        t.start()
    meter = h.Meter(pg.postmaster).start()
    go.wait()
    for t in threads:
        t.join()
    usage = meter.stop()
    if errors:
        raise SystemExit(f"{mode}: {errors[0]}")
    _release()
    check(pg, db, count, devices)
    pg.drop(db)
    return Row("a", mode, conc, count, usage.wall, latencies, target.groups, usage.summary())


def _release() -> None:
    from proveniq.app.runtime import release_runtime
    from proveniq.ledger.outbox import MARK_BATCH_SECONDS

    time.sleep(4 * MARK_BATCH_SECONDS)  # let the relay's marker thread finish its batch
    release_runtime()


# ---- (b) end to end through the local Publisher API ------------------------------------------


def publisher_process(
    address: str, devices: int, count: int, rate: float | None, pipe: Any
) -> None:
    """The devices: publish the fleet's messages with the real PublisherClient, at `rate` per
    second in total (None: as fast as it takes them); send back each publish() wall time."""
    os.environ["PUBSUB_EMULATOR_HOST"] = address
    from google.cloud import pubsub_v1  # type: ignore[attr-defined,unused-ignore]

    messages = fleet_messages(devices, count)
    client = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    topic = client.topic_path("proveniq-local", "device-telemetry")
    sent: list[float] = []
    pipe.send("ready")
    pipe.recv()
    futures = []
    start = time.perf_counter()
    for j, m in enumerate(messages):
        if rate is not None and (delay := start + j / rate - time.perf_counter()) > 0:
            time.sleep(delay)
        sent.append(time.time())
        futures.append(
            client.publish(topic, m.data, ordering_key=m.attributes["device"], **m.attributes)
        )
    for f in futures:
        f.result(timeout=120)
    client.stop()
    pipe.send(sent)


class PushPool:
    """Pub/Sub push with ordering: N concurrent deliveries, one outstanding per ordering key."""

    def __init__(self, deliver: Callable[[Message, str, str], None], workers: int) -> None:
        self._deliver = deliver
        self._lock = threading.Lock()
        self._waiting: dict[str, collections.deque[tuple[Message, str, str]]] = {}
        self._ready: queue.SimpleQueue[tuple[Message, str, str] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]
        for t in self._threads:
            t.start()

    def on_message(self, topic: str, m: Message, message_id: str, publish_time: str) -> None:
        key = m.ordering_key or message_id
        with self._lock:
            if key in self._waiting:
                self._waiting[key].append((m, message_id, publish_time))
                return
            self._waiting[key] = collections.deque()
        self._ready.put((m, message_id, publish_time))

    def _run(self) -> None:
        while (item := self._ready.get()) is not None:
            self._deliver(*item)
            key = item[0].ordering_key or item[1]
            with self._lock:
                q = self._waiting[key]
                if q:
                    self._ready.put(q.popleft())
                else:
                    del self._waiting[key]

    def close(self) -> None:
        for _ in self._threads:
            self._ready.put(None)


def function_push(app: Any) -> Callable[[Message, str, str], None]:
    """POST one message to the function as Eventarc does (binary CloudEvent); retry on 5xx."""
    from proveniq.edge.cloudevents import pubsub_event

    def deliver(m: Message, message_id: str, publish_time: str) -> None:
        attributes, data = pubsub_event(
            project="proveniq-local",
            topic="device-telemetry",
            subscription="device-telemetry-device_ingest",
            message=m,
            message_id=message_id,
            publish_time=publish_time,
        )
        headers = {f"ce-{k}": v for k, v in attributes.items() if k != "datacontenttype"}
        headers["Content-Type"] = "application/json"
        body = json.dumps(data)
        for _ in range(10):
            if app.test_client().post("/", data=body, headers=headers).status_code == 200:
                return
            time.sleep(0.05)
        raise RuntimeError(f"device_ingest kept failing message {message_id}")

    return deliver


def end_to_end(
    pg: h.Database,
    mode: str,
    deliveries: str,
    workers: int,
    devices: int,
    count: int,
    tag: str,
    rate: float | None = None,
) -> Row:
    from functions_framework import create_app

    from proveniq.adapters.local.pubsub_server import LocalPubSubServer
    from proveniq.app import wiring

    db = pg.fresh(f"dev_{tag}")
    rt = h.install(h.stack_env(pg, db, pg.folder / "state", pool_size=str(workers + 4)))
    tenant = h.new_tenant(rt, db).partner_id
    register(rt, tenant, devices)
    if mode == "one-at-a-time":  # the function's ingest: one lock per message, no grouping
        d = rt.devices
        one = ingests(rt, "one-at-a-time")
        rt.__dict__["devices"] = wiring.Devices(store=d.store, ingest=d.ingest, grouped=one)
    app = create_app(  # type: ignore[no-untyped-call]
        target="device_ingest", source=str(ROOT / "functions" / "device_ingest" / "main.py")
    )
    push = function_push(app)
    pool: PushPool | None = None
    if deliveries == "bus":  # as connect_followers wires it: the bus's one thread per topic
        rt.bus.subscribe("device-telemetry", lambda ev: _push_event(app, ev))

        def on_message(topic: str, m: Message, message_id: str, publish_time: str) -> None:
            rt.bus.send(topic, [m])
    else:
        pool = PushPool(push, workers)
        on_message = pool.on_message
    server = LocalPubSubServer(
        on_message=on_message, port=_free_port(), topics=["device-telemetry"], workers=8
    ).start()
    ctx = multiprocessing.get_context("spawn")
    pipe, child = ctx.Pipe()
    proc = ctx.Process(target=publisher_process, args=(server.address, devices, count, rate, child))
    proc.start()
    try:
        if pipe.recv() != "ready":
            raise SystemExit("the device process did not start")
        meter = h.Meter(pg.postmaster).start()
        pipe.send("go")
        sent: list[float] = pipe.recv()
        deadline = time.monotonic() + 600
        while pg.query(db, "SELECT count(*) FROM device_messages")[0][0] < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"{mode}/{deliveries}: not every message was ingested")
            time.sleep(0.05)
        usage = meter.stop()
    finally:
        proc.join(timeout=30)
        server.stop()
        if pool is not None:
            pool.close()
    rows = pg.query(
        db,
        "SELECT device_id, counter, extract(epoch FROM recorded_at) FROM device_messages",
    )
    done = {(d, int(c)): float(t) for d, c, t in rows}
    latencies = [done[(device_id(j % devices), j // devices + 1)] - sent[j] for j in range(count)]
    seconds = max(done.values()) - min(sent)
    groups = rt.devices.grouped.groups
    _release()
    check(pg, db, count, devices)
    pg.drop(db)
    label = f"{mode} bus" if deliveries == "bus" else f"{mode} x{workers}"
    label += " burst" if rate is None else f" @{rate:.0f}/s"
    conc = 1 if deliveries == "bus" else workers
    return Row("b", label, conc, count, seconds, latencies, groups, usage.summary())


def _push_event(app: Any, event: Any) -> None:
    from cloudevents.conversion import to_binary

    from proveniq.errors import Unavailable

    headers, body = to_binary(event)
    if app.test_client().post("/", data=body, headers=dict(headers)).status_code >= 300:
        raise Unavailable("device_ingest failed")  # the bus retries


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ---- main ------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=2000, help="messages per row")
    p.add_argument("--devices", type=int, default=256, help="simulated devices")
    p.add_argument("--quick", action="store_true", help="600 messages per row, fewer rows")
    args = p.parse_args()
    count = 600 if args.quick else args.messages
    devices = min(args.devices, count)
    plan_a = [("one-at-a-time", c) for c in (1, 8, 32)] + [("grouped", c) for c in (1, 8, 32)]
    plan_a.insert(5, ("grouped/1-lock", 32))
    plan_b = [("grouped", "bus", 1), ("one-at-a-time", "push", 16), ("grouped", "push", 16)]
    if args.quick:
        plan_a = [("one-at-a-time", 1), ("one-at-a-time", 32), ("grouped", 32)]
        plan_b = [("grouped", "bus", 1), ("grouped", "push", 16)]
    rows: list[Row] = []
    started = time.perf_counter()
    with h.embedded_postgres() as pg:
        total = len(plan_a) + len(plan_b)
        for k, (mode, conc) in enumerate(plan_a):
            h.log(f"[{k + 1}/{total}] (a) {mode}, {conc} threads, {count} messages")
            rows.append(direct(pg, mode, conc, devices, count, f"a{k}"))
            h.log(f"      {rows[-1].messages / rows[-1].seconds:.0f} msgs/s")
        for k, (mode, deliveries, workers) in enumerate(plan_b, start=len(plan_a)):
            h.log(f"[{k + 1}/{total}] (b) {mode} via {deliveries} x{workers}, {count} messages")
            burst = end_to_end(pg, mode, deliveries, workers, devices, count, f"b{k}")
            rate = round(burst.messages / burst.seconds / 2)  # half the burst throughput
            h.log(f"      burst {burst.messages / burst.seconds:.0f} msgs/s; again at {rate}/s")
            n = min(count, rate * PACED_SECONDS)
            paced = end_to_end(pg, mode, deliveries, workers, devices, n, f"p{k}", rate)
            rows += [burst, paced]
        print(h.platform_line("devices", pg, "synchronous_commit"))
    print(f"{devices} devices, one tenant; (a) use case in threads, (b) end to end via Pub/Sub API")
    print(HEADER)
    for r in rows:
        print(r.line())
    print(f"total {h.hms(time.perf_counter() - started)}")


if __name__ == "__main__":
    main()

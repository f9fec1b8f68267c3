"""`DeviceIngest`: a batch of device telemetry messages into the ledger, bad ones dead-lettered.

For each batch (one Pub/Sub push is a batch of one; the local bus and a pool of concurrent
deliveries give larger ones):

    1. parse every message (`message.parse`) and resolve the devices named, in one store call;
    2. verify each message in (device, counter) order (`message.verify`), so a device's messages
       in one batch are judged as if delivered in counter order;
    3. append the accepted ones, per tenant, in ONE `append_each` call (one lock acquisition),
       each message its own all-or-nothing request with actor ``device:<id>`` and idempotency
       key ``device:<id>:<counter>``;
    4. publish the rejected ones to `device-telemetry-dead-letter` (attributes `reason`, `device`,
       `detail`), log them without payload;
    5. record accepted counters and rejection counts in the device store.

Crash safety: step 3 commits before step 5. A crash in between leaves the counter behind, so the
redelivered message passes `verify` again and is appended again with the same idempotency key:
the ledger answers with the entry of the first append, no second entry, and step 5 catches up.
A message is acknowledged (the call returns) only after everything committed; any
`errors.Unavailable` propagates so Pub/Sub redelivers the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from proveniq.errors import IdempotencyConflict, LifecycleConflict, ProveniqError
from proveniq.intake.devices.message import (
    DEFAULT_MAX_SKEW,
    Accepted,
    Duplicate,
    Reason,
    Rejected,
    Telemetry,
    Verdict,
    parse,
    verify,
)
from proveniq.intake.devices.registry import Device
from proveniq.intake.devices.store import AcceptedMessage, DeviceCounters, Known, Rejection
from proveniq.log.entry import Entry
from proveniq.ports import AppendRequest, BatchAppender, Bus, LedgerAppender, Message

log = logging.getLogger(__name__)

TELEMETRY_TOPIC = "device-telemetry"
DEAD_LETTER_TOPIC = "device-telemetry-dead-letter"
MAX_DETAIL = 500


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """One delivered Pub/Sub message; `publish_time` anchors the `sent_at` skew check."""

    message: Message
    message_id: str = ""
    publish_time: datetime | None = None

    @classmethod
    def of(cls, *, message: Message, message_id: str = "", publish_time: str = "") -> Delivery:
        """From a decoded CloudEvent (`edge.cloudevents.PubSubDelivery` fields)."""
        return cls(message=message, message_id=message_id, publish_time=_rfc3339(publish_time))


@dataclass(frozen=True)
class Ingested:
    telemetry: Telemetry
    entry: Entry


Outcome = Ingested | Duplicate | Rejected


class OneAtATime:
    """`BatchAppender` over the plain `ports.LedgerAppender`: one append (one lock) per request.
    Correct, but a batch costs as many lock acquisitions as it has messages."""

    def __init__(self, appender: LedgerAppender) -> None:
        self._appender = appender

    def append_each(
        self, *, tenant: str, requests: Sequence[AppendRequest]
    ) -> list[list[Entry] | ProveniqError]:
        out: list[list[Entry] | ProveniqError] = []
        for r in requests:
            try:
                out.append(
                    self._appender.append(
                        tenant=tenant,
                        actor=r.actor,
                        events=r.events,
                        idempotency_key=r.idempotency_key,
                    )
                )
            except ProveniqError as e:
                if e.transient:
                    raise
                out.append(e)
        return out


class DeviceIngest:
    """The device_ingest use case. `appender` is a `BatchAppender` (one lock per tenant and
    batch) or a plain `ports.LedgerAppender` (wrapped in `OneAtATime`)."""

    def __init__(
        self,
        *,
        store: DeviceCounters,
        appender: BatchAppender | LedgerAppender,
        dead_letters: Bus,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_skew: timedelta = DEFAULT_MAX_SKEW,
        dead_letter_topic: str = DEAD_LETTER_TOPIC,
    ) -> None:
        self._store = store
        self._appender: BatchAppender = (
            appender  # type: ignore[assignment]
            if hasattr(appender, "append_each")
            else OneAtATime(appender)
        )
        self._dead_letters = dead_letters
        self._clock = clock
        self._max_skew = max_skew
        self._topic = dead_letter_topic

    def ingest(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        """Ingest a batch; one outcome per delivery, in order. Returns only once every accepted
        message is committed and every rejected one dead-lettered (then acknowledge them all);
        raises `errors.Unavailable` otherwise (acknowledge none: they are redelivered)."""
        now = self._clock()
        parsed = [parse(d.message) for d in deliveries]
        known = self._resolve(parsed)
        devices = {k: v.device for k, v in known.items()}
        verdicts = self._verify(deliveries, parsed, known, now)
        outcomes = self._append(verdicts, devices)
        rejected = [
            (d, o) for d, o in zip(deliveries, outcomes, strict=True) if isinstance(o, Rejected)
        ]
        if rejected:
            self._dead_letter(rejected)
        self._record(outcomes, devices)
        return outcomes

    def _resolve(self, parsed: Sequence[Telemetry | Rejected]) -> dict[str, Known]:
        wanted: dict[str, set[int]] = {}
        for p in parsed:
            if isinstance(p, Telemetry):
                wanted.setdefault(p.device, set()).add(p.counter)
            elif p.device:
                wanted.setdefault(p.device, set())
        return self._store.resolve(wanted) if wanted else {}

    def _verify(
        self,
        deliveries: Sequence[Delivery],
        parsed: Sequence[Telemetry | Rejected],
        known: dict[str, Known],
        now: datetime,
    ) -> list[Verdict]:
        """Judge each device's messages in counter order, as if delivered one by one."""
        verdicts: list[Verdict] = [p if isinstance(p, Rejected) else Duplicate(p) for p in parsed]
        state: dict[str, Device] = {k: v.device for k, v in known.items()}
        seen = {(k, c): digest for k, v in known.items() for c, digest in v.seen.items()}
        telemetry = [(i, p) for i, p in enumerate(parsed) if isinstance(p, Telemetry)]
        for i, t in sorted(telemetry, key=lambda x: (x[1].device, x[1].counter, x[0])):
            device = state.get(t.device)
            published = deliveries[i].publish_time or now
            v = verify(
                t,
                device,
                now=published,
                max_skew=self._max_skew,
                seen=seen.get((t.device, t.counter)),
            )
            if isinstance(v, Accepted) and device is not None:
                state[t.device] = replace(device, last_counter=t.counter)
                seen[(t.device, t.counter)] = t.digest
            verdicts[i] = v
        return verdicts

    def _append(self, verdicts: Sequence[Verdict], devices: dict[str, Device]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        by_tenant: dict[str, list[tuple[int, Accepted]]] = {}
        for i, v in enumerate(verdicts):
            if isinstance(v, Accepted):
                tenant = devices[v.telemetry.device].tenant
                by_tenant.setdefault(tenant, []).append((i, v))
        done: dict[int, Outcome] = {}
        for tenant, accepted in by_tenant.items():
            accepted.sort(key=lambda x: (x[1].telemetry.device, x[1].telemetry.counter))
            requests = [
                AppendRequest(
                    actor=devices[a.telemetry.device].actor,
                    events=[a.event()],
                    idempotency_key=a.telemetry.idempotency_key,
                )
                for _, a in accepted
            ]
            results = self._appender.append_each(tenant=tenant, requests=requests)
            if len(results) != len(requests):
                raise RuntimeError("append_each answered a different number of results")
            for (i, a), r in zip(accepted, results, strict=True):
                t = a.telemetry
                if isinstance(r, ProveniqError):
                    if r.transient:
                        raise r
                    done[i] = Rejected(_refusal(r), r.message[:MAX_DETAIL], t.device)
                else:
                    done[i] = Ingested(t, r[0])
        for i, v in enumerate(verdicts):
            outcomes.append(done[i] if isinstance(v, Accepted) else v)
        return outcomes

    def _dead_letter(self, rejected: Sequence[tuple[Delivery, Rejected]]) -> None:
        messages = []
        for d, r in rejected:
            attributes = {
                "reason": r.reason,
                "device": r.device[:128],
                "detail": r.detail[:MAX_DETAIL],
                "message_id": d.message_id[:128],
            }
            signature = d.message.attributes.get("signature", "")
            if 0 < len(signature) <= 128:
                attributes["signature"] = signature
            messages.append(Message(data=d.message.data, attributes=attributes))
        self._dead_letters.send(self._topic, messages)
        for d, r in rejected:  # never the payload
            log.warning(
                "device message dead-lettered: reason=%s device=%r message_id=%r detail=%s",
                r.reason,
                r.device[:128],
                d.message_id[:128],
                r.detail[:MAX_DETAIL],
            )

    def _record(self, outcomes: Sequence[Outcome], devices: dict[str, Device]) -> None:
        accepted: dict[str, list[AcceptedMessage]] = {}
        rejected: dict[str, list[Rejection]] = {}
        for o in outcomes:
            if isinstance(o, Ingested):
                t = o.telemetry
                accepted.setdefault(devices[t.device].tenant, []).append(
                    AcceptedMessage(
                        device_id=t.device,
                        counter=t.counter,
                        digest=t.digest,
                        seq=o.entry.seq,
                        sent_at=t.sent_at,
                    )
                )
            elif isinstance(o, Rejected) and o.device in devices:
                rejected.setdefault(devices[o.device].tenant, []).append(
                    Rejection(device_id=o.device, reason=o.reason)
                )
        for tenant in sorted(accepted.keys() | rejected.keys()):
            self._store.record(
                tenant, accepted=accepted.get(tenant, []), rejected=rejected.get(tenant, [])
            )


def _refusal(e: ProveniqError) -> Reason:
    if isinstance(e, IdempotencyConflict):
        return "replayed_counter"  # the same counter, appended before with other bytes
    if isinstance(e, LifecycleConflict):
        return "lifecycle_conflict"
    return "ledger_refused"


def _rfc3339(value: str) -> datetime | None:
    """Pub/Sub's publishTime (nanosecond precision allowed); None if absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if "." in text:
        whole, rest = text.split(".", 1)
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{whole}.{rest[:digits][:6].ljust(6, '0')}{rest[digits:]}"
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t.astimezone(UTC) if t.tzinfo else None

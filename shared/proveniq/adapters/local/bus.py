"""An in-process Pub/Sub stand-in for the local stack: `ports.Publisher` plus push subscriptions.

Handlers receive the same CloudEvent Eventarc would deliver for a Pub/Sub message
(`proveniq.cloudevents.pubsub_event`). Each topic has one worker thread, so a topic's messages
reach each handler in publish order. A handler that raises is retried a few times with a short
doubling backoff; then the message is dead-lettered (logged and kept in `dead_letters`) and
delivery goes on with the next message. As on Pub/Sub, a subscription receives only messages
published after it was made. `flush()` waits until everything published so far was handled;
`close()` drains the queues and stops the workers.
"""

from __future__ import annotations

import copy
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cloudevents.http import CloudEvent

from proveniq.edge.cloudevents import pubsub_event
from proveniq.errors import Unavailable, ValidationError
from proveniq.log.timefmt import format_time, utcnow
from proveniq.ports import Message

log = logging.getLogger(__name__)

Handler = Callable[[CloudEvent], object]


@dataclass(frozen=True)
class _Subscription:
    name: str
    handler: Handler


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    """A message whose handler kept failing: the event, the subscription and the last error."""

    topic: str
    subscription: str
    event: CloudEvent
    error: BaseException
    attempts: int


@dataclass(frozen=True)
class _Delivery:
    subscriptions: tuple[_Subscription, ...]
    message: Message
    message_id: str
    publish_time: str


_STOP = object()


class InProcessBus:
    def __init__(
        self, *, project: str = "local", attempts: int = 4, backoff_seconds: float = 0.05
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._project = project
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._closed = False
        self._subscriptions: dict[str, list[_Subscription]] = {}
        self._queues: dict[str, queue.SimpleQueue[_Delivery | object]] = {}
        self._workers: list[threading.Thread] = []
        self._ids = itertools.count(1)
        self.dead_letters: list[DeadLetter] = []

    def subscribe(self, topic: str, handler: Handler, *, subscription: str | None = None) -> str:
        """Push the topic's future messages to `handler`; returns the subscription name."""
        with self._lock:
            if self._closed:
                raise RuntimeError("bus is closed")
            subs = self._subscriptions.setdefault(topic, [])
            name = subscription or f"{topic}-sub-{len(subs) + 1}"
            subs.append(_Subscription(name, handler))
            return name

    def send(self, topic: str, messages: Sequence[Message]) -> None:
        for i, m in enumerate(messages):
            if not isinstance(m.data, bytes) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in m.attributes.items()
            ):
                raise ValidationError("message data must be bytes, attributes str", field=f"[{i}]")
        with self._lock:
            if self._closed:
                raise Unavailable("in-process bus is closed")
            subs = tuple(self._subscriptions.get(topic, ()))
            if not subs:
                return  # like Pub/Sub: a topic without subscriptions drops its messages
            q = self._queue_locked(topic)
            for m in messages:
                self._pending += 1
                q.put(_Delivery(subs, m, str(next(self._ids)), format_time(utcnow())))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every message published so far was handled; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Deliver what is queued, then stop the workers. Later publishes raise Unavailable."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for q in self._queues.values():
                q.put(_STOP)
            workers = list(self._workers)
        for w in workers:
            w.join(timeout)

    def _queue_locked(self, topic: str) -> queue.SimpleQueue[_Delivery | object]:
        q = self._queues.get(topic)
        if q is None:
            q = self._queues[topic] = queue.SimpleQueue()
            worker = threading.Thread(
                target=self._run, args=(topic, q), name=f"bus-{topic}", daemon=True
            )
            self._workers.append(worker)
            worker.start()
        return q

    def _run(self, topic: str, q: queue.SimpleQueue[_Delivery | object]) -> None:
        while (item := q.get()) is not _STOP:
            assert isinstance(item, _Delivery)
            try:
                for sub in item.subscriptions:
                    self._deliver(topic, sub, item)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, topic: str, sub: _Subscription, d: _Delivery) -> None:
        attributes, data = pubsub_event(
            project=self._project,
            topic=topic,
            subscription=sub.name,
            message=d.message,
            message_id=d.message_id,
            publish_time=d.publish_time,
        )
        for attempt in range(1, self._attempts + 1):
            event = CloudEvent(dict(attributes), copy.deepcopy(data))  # fresh, as on redelivery
            try:
                sub.handler(event)
                return
            except Exception as e:
                if attempt < self._attempts:
                    log.warning(
                        "bus: %s message %s attempt %d failed: %r",
                        sub.name,
                        d.message_id,
                        attempt,
                        e,
                    )
                    time.sleep(self._backoff * 2 ** (attempt - 1))
                    continue
                log.error(
                    "bus: %s message %s dead-lettered after %d attempts: %r",
                    sub.name,
                    d.message_id,
                    attempt,
                    e,
                )
                with self._lock:
                    self.dead_letters.append(
                        DeadLetter(
                            topic=topic,
                            subscription=sub.name,
                            event=event,
                            error=e,
                            attempts=attempt,
                        )
                    )

"""`ports.Bus` over Cloud Pub/Sub, with message ordering.

`send` sends every message (its ordering key when non-empty), waits for all of them within
`timeout` seconds, and raises `errors.Unavailable` if any failed; the outbox relay then retries.
With ordering enabled the client library would retry a failed batch forever, so its own retry is
switched off and this adapter retries the failed messages itself: at most `attempts` times, only
for transient errors, within the same deadline. A failed ordering key is paused by the library;
it is resumed (`resume_publish`) so later publishes on that key are not stuck.

The client is built on first use and honours ``PUBSUB_EMULATOR_HOST``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from concurrent import futures

from google.api_core import exceptions as api_exceptions
from google.cloud import pubsub_v1  # type: ignore[attr-defined]

from proveniq.errors import Unavailable
from proveniq.ports import Message

# How long the client library holds a message for more to join its batch. Its default, 10 ms,
# is paid by every write: the relay waits for the publish before the 201. A batch is per
# ordering key (one subject), so few messages would join it anyway, and a `send` publishes all
# of a commit's messages at once.
BATCH_LATENCY_SECONDS = 0.001

_TRANSIENT = (
    api_exceptions.ServiceUnavailable,
    api_exceptions.DeadlineExceeded,
    api_exceptions.InternalServerError,
    api_exceptions.TooManyRequests,
    api_exceptions.Aborted,
    api_exceptions.Cancelled,
    api_exceptions.Unknown,
    api_exceptions.GatewayTimeout,
)


def _permanent(error: BaseException) -> bool:
    """An error a retry cannot fix: bad argument, missing topic, no permission, too large."""
    if isinstance(error, ValueError | TypeError):
        return True
    return isinstance(error, api_exceptions.GoogleAPICallError) and not isinstance(
        error, _TRANSIENT
    )


class PubSubBus:
    def __init__(
        self,
        *,
        project: str,
        client: pubsub_v1.PublisherClient | None = None,
        timeout: float = 30.0,
        attempts: int = 3,
        backoff_seconds: float = 0.2,
        batch_latency: float = BATCH_LATENCY_SECONDS,
    ) -> None:
        if not project:
            raise ValueError("project is required")
        if attempts < 1 or timeout <= 0:
            raise ValueError("attempts must be >= 1 and timeout > 0")
        self._project = project
        self._client = client
        self._owns_client = client is None
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._batch = pubsub_v1.types.BatchSettings(max_latency=batch_latency)
        self._lock = threading.Lock()

    def topic_path(self, topic: str) -> str:
        return f"projects/{self._project}/topics/{topic}"

    def send(self, topic: str, messages: Sequence[Message]) -> None:
        path = self.topic_path(topic)
        deadline = time.monotonic() + self._timeout
        pending = list(messages)
        for attempt in range(1, self._attempts + 1):
            failed = self._publish_once(path, pending, deadline)
            if not failed:
                return
            self._resume(path, failed)
            pending = [m for m, _ in failed]
            error = failed[0][1]
            remaining = deadline - time.monotonic()
            pause = self._backoff * 2 ** (attempt - 1)
            if attempt == self._attempts or any(_permanent(e) for _, e in failed):
                break
            if remaining <= pause:
                break
            time.sleep(pause)
        raise Unavailable(
            f"publish to {path} failed for {len(pending)} of {len(messages)} message(s)"
            f" after {attempt} attempt(s): {type(error).__name__}: {error}"
        ) from error

    def close(self) -> None:
        """Flush and stop a client this publisher built (an injected one is left alone)."""
        if not self._owns_client:
            return
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.stop()

    def _publish_once(
        self, path: str, messages: list[Message], deadline: float
    ) -> list[tuple[Message, BaseException]]:
        try:
            client = self._get_client()
        except Exception as e:  # credentials or configuration: the outbox sweep retries later
            return [(m, e) for m in messages]
        sent: list[tuple[Message, futures.Future[str]]] = []
        failed: list[tuple[Message, BaseException]] = []
        for i, m in enumerate(messages):
            try:
                future = client.publish(
                    path,
                    m.data,
                    ordering_key=m.ordering_key,
                    retry=None,
                    timeout=max(deadline - time.monotonic(), 0.001),
                    **dict(m.attributes),
                )
            except Exception as e:  # stopped client, message too large, bad attribute ...
                self._wait(sent, deadline)
                return [*self._failures(sent), *((x, e) for x in messages[i:])]
            sent.append((m, future))
        not_done = self._wait(sent, deadline)
        if not_done:
            timeout = TimeoutError(f"no publish result within {self._timeout:g} s")
            failed = [(m, timeout) for m, f in sent if f in not_done]
        return [*self._failures([(m, f) for m, f in sent if f.done()]), *failed]

    @staticmethod
    def _wait(
        sent: list[tuple[Message, futures.Future[str]]], deadline: float
    ) -> set[futures.Future[str]]:
        remaining = max(deadline - time.monotonic(), 0.0)
        _, not_done = futures.wait([f for _, f in sent], timeout=remaining)
        return not_done

    @staticmethod
    def _failures(
        sent: list[tuple[Message, futures.Future[str]]],
    ) -> list[tuple[Message, BaseException]]:
        out: list[tuple[Message, BaseException]] = []
        for m, f in sent:
            if f.done() and (e := f.exception()) is not None:
                out.append((m, e))
        return out

    def _resume(self, path: str, failed: list[tuple[Message, BaseException]]) -> None:
        client = self._get_client()
        for key in dict.fromkeys(m.ordering_key for m, _ in failed if m.ordering_key):
            # Raises if the key is not paused (e.g. it only timed out) or the client stopped.
            with contextlib.suppress(RuntimeError, ValueError):
                client.resume_publish(path, key)

    def _get_client(self) -> pubsub_v1.PublisherClient:
        with self._lock:
            if self._client is None:
                self._client = pubsub_v1.PublisherClient(
                    batch_settings=self._batch,
                    publisher_options=pubsub_v1.types.PublisherOptions(
                        enable_message_ordering=True
                    ),
                )
            return self._client

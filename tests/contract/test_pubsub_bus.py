"""PubSubBus against a wire-level Pub/Sub Publisher server (gRPC, on 127.0.0.1).

The real `PublisherClient` finds the server through ``PUBSUB_EMULATOR_HOST``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest
from google.pubsub_v1.types import PublishRequest, PublishResponse

from proveniq.adapters.gcp.pubsub import PubSubBus
from proveniq.errors import Unavailable
from proveniq.ports import Message

PROJECT = "demo-proveniq"
TOPIC_PATH = f"projects/{PROJECT}/topics/ledger-events"

Behaviour = Callable[[PublishRequest, grpc.ServicerContext], PublishResponse]


@dataclass
class FakePubSub:
    """Records every Publish request; `behaviour` decides the answer (default: accept)."""

    requests: list[PublishRequest] = field(default_factory=list)
    behaviour: Behaviour | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_id: int = 0

    def publish(self, request: PublishRequest, context: grpc.ServicerContext) -> PublishResponse:
        with self.lock:
            self.requests.append(request)
            if self.behaviour is not None:
                return self.behaviour(request, context)
            ids = [str(self.next_id + i) for i in range(len(request.messages))]
            self.next_id += len(ids)
        return PublishResponse(message_ids=ids)

    def published(self) -> list[tuple[str, bytes, dict[str, str], str]]:
        with self.lock:
            return [
                (r.topic, m.data, dict(m.attributes), m.ordering_key)
                for r in self.requests
                for m in r.messages
            ]


def fail_with(code: grpc.StatusCode) -> Behaviour:
    def behaviour(request: PublishRequest, context: grpc.ServicerContext) -> PublishResponse:
        context.abort(code, f"injected {code.name}")
        raise AssertionError("unreachable")

    return behaviour


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePubSub]:
    fake = FakePubSub()
    handler = grpc.method_handlers_generic_handler(
        "google.pubsub.v1.Publisher",
        {
            "Publish": grpc.unary_unary_rpc_method_handler(
                fake.publish,
                request_deserializer=PublishRequest.deserialize,
                response_serializer=PublishResponse.serialize,
            )
        },
    )
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    srv.add_generic_rpc_handlers((handler,))
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{port}")
    yield fake
    srv.stop(grace=None)


@pytest.fixture
def publisher(server: FakePubSub) -> Iterator[PubSubBus]:
    # The client is built lazily, on the first publish, from the environment set above.
    p = PubSubBus(project=PROJECT, timeout=5.0, attempts=3, backoff_seconds=0.05)
    yield p
    p.close()


def test_one_ordering_key_arrives_exactly_and_in_order(
    server: FakePubSub, publisher: PubSubBus
) -> None:
    messages = [
        Message(data=f"entry {i}".encode(), attributes={"seq": str(i)}, ordering_key="subject")
        for i in range(25)
    ]
    for i in range(0, 25, 5):
        publisher.send("ledger-events", messages[i : i + 5])
    assert server.published() == [
        (TOPIC_PATH, m.data, dict(m.attributes), "subject") for m in messages
    ]


def test_publishes_exact_bytes_attributes_and_ordering_keys_in_order(
    server: FakePubSub, publisher: PubSubBus
) -> None:
    messages = [
        Message(
            data=bytes([i, 0, 255]) + b"entry",
            attributes={"type": "entry.appended", "seq": str(i)},
            ordering_key="subject-a" if i % 2 else "subject-b",
        )
        for i in range(10)
    ]
    publisher.send("ledger-events", messages[:6])
    publisher.send("ledger-events", messages[6:])
    publisher.send("ledger-events", [Message(data=b"no key", attributes={})])

    seen = server.published()
    assert {t for t, *_ in seen} == {TOPIC_PATH}
    got = [Message(data=d, attributes=a, ordering_key=k) for _, d, a, k in seen]
    assert sorted(got, key=repr) == sorted([*messages, Message(data=b"no key")], key=repr)
    for key in ("subject-a", "subject-b"):  # per ordering key, the server saw publish order
        assert [m for m in got if m.ordering_key == key] == [
            m for m in messages if m.ordering_key == key
        ]


def test_transient_errors_are_retried_then_succeed(
    server: FakePubSub, publisher: PubSubBus
) -> None:
    failures = {"left": 2}

    def flaky(request: PublishRequest, context: grpc.ServicerContext) -> PublishResponse:
        if failures["left"] > 0:
            failures["left"] -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return PublishResponse(message_ids=[str(i) for i in range(len(request.messages))])

    server.behaviour = flaky
    publisher.send("ledger-events", [Message(data=b"x", ordering_key="k")])
    assert len(server.requests) == 3
    assert [r.messages[0].data for r in server.requests] == [b"x"] * 3


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INVALID_ARGUMENT])
def test_failures_raise_unavailable_in_bounded_time_and_the_key_recovers(
    server: FakePubSub, publisher: PubSubBus, code: grpc.StatusCode
) -> None:
    server.behaviour = fail_with(code)
    started = time.monotonic()
    with pytest.raises(Unavailable) as e:
        publisher.send("ledger-events", [Message(data=b"1", ordering_key="k")] * 2)
    assert time.monotonic() - started < 5
    assert TOPIC_PATH in e.value.message
    assert e.value.__cause__ is not None
    expected_attempts = 3 if code is grpc.StatusCode.UNAVAILABLE else 1
    assert len(server.requests) >= expected_attempts

    # The ordering key was resumed: once the server is back, the same key publishes again.
    server.behaviour = None
    server.requests.clear()
    publisher.send("ledger-events", [Message(data=b"2", ordering_key="k")])
    assert server.published() == [(TOPIC_PATH, b"2", {}, "k")]


def test_unreachable_server_raises_unavailable_within_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{port}")
    publisher = PubSubBus(project=PROJECT, timeout=1.5, attempts=5, backoff_seconds=0.05)
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable):
            publisher.send("ledger-events", [Message(data=b"x", ordering_key="k")])
    finally:
        publisher.close()
    assert time.monotonic() - started < 4


def test_a_message_is_not_held_for_the_library_default_batch_latency(
    server: FakePubSub, publisher: PubSubBus
) -> None:
    """The relay waits for the publish before a write's 201: the client library's default
    (a batch waits up to 10 ms for more messages) would be added to every write."""
    from google.cloud import pubsub_v1

    from proveniq.adapters.gcp.pubsub import BATCH_LATENCY_SECONDS

    publisher.send("ledger-events", [Message(data=b"one", ordering_key="subject")])
    client = publisher._get_client()
    assert client.batch_settings.max_latency == BATCH_LATENCY_SECONDS
    assert pubsub_v1.types.BatchSettings().max_latency > BATCH_LATENCY_SECONDS
    assert client.publisher_options.enable_message_ordering
    assert server.published() == [(TOPIC_PATH, b"one", {}, "subject")]

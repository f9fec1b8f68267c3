"""The local Pub/Sub Publisher server, driven by the real google-cloud-pubsub PublisherClient."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from google.api_core import exceptions as api_exceptions
from google.cloud import pubsub_v1

from proveniq.adapters.local.pubsub_server import LocalPubSubServer
from proveniq.edge.cloudevents import pubsub_event
from proveniq.log.timefmt import parse_time
from proveniq.ports import Message

PROJECT = "demo-proveniq"


class Received:
    def __init__(self) -> None:
        self.items: list[tuple[str, Message, str, str]] = []
        self.lock = threading.Lock()
        self.fail = 0

    def __call__(self, topic: str, message: Message, message_id: str, publish_time: str) -> None:
        with self.lock:
            if self.fail:
                self.fail -= 1
                raise RuntimeError("local bus full")
            self.items.append((topic, message, message_id, publish_time))


@pytest.fixture
def received() -> Received:
    return Received()


@pytest.fixture
def server(received: Received, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalPubSubServer]:
    srv = LocalPubSubServer(on_message=received, port=0, topics=["device-telemetry"]).start()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", srv.address)
    yield srv
    srv.stop()


@pytest.fixture
def client(server: LocalPubSubServer) -> Iterator[pubsub_v1.PublisherClient]:
    c = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    yield c
    c.stop()


def test_published_bytes_and_attributes_reach_the_callback_exactly(
    server: LocalPubSubServer, client: pubsub_v1.PublisherClient, received: Received
) -> None:
    assert server.address.startswith("127.0.0.1:")
    path = client.topic_path(PROJECT, "device-telemetry")
    payloads = [bytes([i, 0, 255]) + b'{"counter":%d}' % i for i in range(20)]
    before = datetime.now(UTC) - timedelta(seconds=1)
    ids = [
        client.publish(
            path, p, ordering_key="locker-1", device="locker-1", signature=f"sig{i}"
        ).result(timeout=10)
        for i, p in enumerate(payloads)
    ]
    assert len(set(ids)) == 20
    assert [(t, m.data, dict(m.attributes), m.ordering_key) for t, m, _, _ in received.items] == [
        ("device-telemetry", p, {"device": "locker-1", "signature": f"sig{i}"}, "locker-1")
        for i, p in enumerate(payloads)
    ]
    assert [mid for _, _, mid, _ in received.items] == ids
    for _, _, _, publish_time in received.items:
        t = parse_time(publish_time, field="publish_time")
        assert before <= t <= datetime.now(UTC) + timedelta(seconds=1)

    # What the lead's local stack does with it: the Eventarc CloudEvent for the message.
    topic, message, mid, ptime = received.items[0]
    attributes, data = pubsub_event(
        project=PROJECT,
        topic=topic,
        subscription="device-ingest",
        message=message,
        message_id=mid,
        publish_time=ptime,
    )
    assert attributes["source"] == f"//pubsub.googleapis.com/projects/{PROJECT}/topics/{topic}"
    assert data["message"]["attributes"] == {"device": "locker-1", "signature": "sig0"}


def test_create_and_get_topic(
    server: LocalPubSubServer, client: pubsub_v1.PublisherClient, received: Received
) -> None:
    path = client.topic_path(PROJECT, "device-telemetry-dead-letter")
    with pytest.raises(api_exceptions.NotFound):
        client.get_topic(topic=path, timeout=5)
    with pytest.raises(api_exceptions.NotFound):
        client.publish(path, b"x").result(timeout=10)
    assert client.create_topic(name=path, timeout=5).name == path
    assert client.get_topic(topic=path, timeout=5).name == path
    with pytest.raises(api_exceptions.AlreadyExists):
        client.create_topic(name=path, timeout=5)
    client.publish(path, b"dead", reason="bad_signature").result(timeout=10)
    assert [(t, m.data) for t, m, _, _ in received.items] == [
        ("device-telemetry-dead-letter", b"dead")
    ]


def test_a_failing_callback_fails_the_publish_and_the_client_retries(
    server: LocalPubSubServer, received: Received
) -> None:
    received.fail = 1
    client = pubsub_v1.PublisherClient()  # default retry settings: UNAVAILABLE is retried
    try:
        path = client.topic_path(PROJECT, "device-telemetry")
        client.publish(path, b"once", device="d").result(timeout=20)
    finally:
        client.stop()
    assert [m.data for _, m, _, _ in received.items] == [b"once"]


def test_invalid_messages_are_refused(
    server: LocalPubSubServer, client: pubsub_v1.PublisherClient, received: Received
) -> None:
    path = client.topic_path(PROJECT, "device-telemetry")
    with pytest.raises(api_exceptions.InvalidArgument):
        client.publish(path, b"x", googthing="1").result(timeout=10)
    assert received.items == []

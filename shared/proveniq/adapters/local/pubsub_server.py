"""A local Pub/Sub Publisher API (gRPC `google.pubsub.v1.Publisher`) on 127.0.0.1.

A device program uses the real `google-cloud-pubsub` `PublisherClient` with
``PUBSUB_EMULATOR_HOST=127.0.0.1:<port>``; this server answers `CreateTopic`, `GetTopic` and
`Publish`, assigns each message an id and a publish time, and hands it to
``on_message(topic_id, message, message_id, publish_time)`` — the local stack turns that into the
CloudEvent Eventarc would deliver (`edge.cloudevents.pubsub_event`). `publish_time` is RFC 3339
UTC text (`log.timefmt.format_time`). The callback runs before `Publish` answers: if it raises,
the publish fails with UNAVAILABLE and the client retries, so an answered publish was accepted.

Topics must exist (`topics=` at start, or `CreateTopic`), as on Pub/Sub; a publish to an unknown
topic is NOT_FOUND. Limits as on Pub/Sub: at most 1,000 messages per request, 10 MB per message,
100 attributes (keys <= 256 bytes, values <= 1,024 bytes, no `goog` prefix), and a message needs
data or attributes.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterable
from concurrent import futures
from typing import Any

import grpc
from google.pubsub_v1.types import (
    GetTopicRequest,
    PublishRequest,
    PublishResponse,
    Topic,
)

from proveniq.log.timefmt import format_time, utcnow
from proveniq.ports import Message

OnMessage = Callable[[str, Message, str, str], None]
DEFAULT_PORT = 8085
MAX_MESSAGES = 1000
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
_TOPIC = re.compile(r"projects/([^/]+)/topics/([A-Za-z][A-Za-z0-9\-_.~+%]{2,254})")


class LocalPubSubServer:
    def __init__(
        self,
        *,
        on_message: OnMessage,
        port: int = DEFAULT_PORT,
        host: str = "127.0.0.1",
        topics: Iterable[str] = (),
        workers: int = 8,
    ) -> None:
        self._on_message = on_message
        self._host = host
        self._requested_port = port
        self._workers = workers
        self._lock = threading.Lock()
        self._topics: set[str] = set(topics)  # topic ids (any project)
        self._ids = itertools.count(1)
        self._server: Any = None
        self.port = 0

    @property
    def address(self) -> str:
        """What to put in ``PUBSUB_EMULATOR_HOST``."""
        return f"{self._host}:{self.port}"

    def start(self) -> LocalPubSubServer:
        handler = grpc.method_handlers_generic_handler(
            "google.pubsub.v1.Publisher",
            {
                "CreateTopic": _unary(self._create_topic, Topic, Topic),
                "GetTopic": _unary(self._get_topic, GetTopicRequest, Topic),
                "Publish": _unary(self._publish, PublishRequest, PublishResponse),
            },
        )
        limit = MAX_MESSAGE_BYTES + 1024 * 1024
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._workers),
            options=[("grpc.max_receive_message_length", limit)],
        )
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port(f"{self._host}:{self._requested_port}")
        if port == 0:
            raise OSError(f"cannot listen on {self._host}:{self._requested_port}")
        server.start()
        self._server, self.port = server, port
        return self

    def stop(self, grace: float | None = None) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait()

    def __enter__(self) -> LocalPubSubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def create_topic(self, topic_id: str) -> None:
        with self._lock:
            self._topics.add(topic_id)

    def _create_topic(self, request: Topic, context: grpc.ServicerContext) -> Topic:
        topic_id = _topic_id(request.name, context)
        with self._lock:
            if topic_id in self._topics:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f"Topic already exists: {topic_id}")
            self._topics.add(topic_id)
        return Topic(name=request.name)

    def _get_topic(self, request: GetTopicRequest, context: grpc.ServicerContext) -> Topic:
        self._known(_topic_id(request.topic, context), context)
        return Topic(name=request.topic)

    def _publish(self, request: PublishRequest, context: grpc.ServicerContext) -> PublishResponse:
        topic_id = _topic_id(request.topic, context)
        self._known(topic_id, context)
        if not 0 < len(request.messages) <= MAX_MESSAGES:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "1 to 1000 messages per publish")
        messages = [_message(m, context) for m in request.messages]
        publish_time = format_time(utcnow())
        ids: list[str] = []
        for m in messages:
            message_id = str(next(self._ids))
            try:
                self._on_message(topic_id, m, message_id, publish_time)
            except Exception as e:  # not accepted: the client retries
                context.abort(grpc.StatusCode.UNAVAILABLE, f"message not accepted: {e}")
            ids.append(message_id)
        return PublishResponse(message_ids=ids)

    def _known(self, topic_id: str, context: grpc.ServicerContext) -> None:
        with self._lock:
            known = topic_id in self._topics
        if not known:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Resource not found (topic {topic_id})")


def _unary(method: Callable[[Any, grpc.ServicerContext], Any], request: Any, response: Any) -> Any:
    return grpc.unary_unary_rpc_method_handler(
        method,
        request_deserializer=request.deserialize,
        response_serializer=response.serialize,
    )


def _topic_id(name: str, context: grpc.ServicerContext) -> str:
    m = _TOPIC.fullmatch(name)
    if m is None:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid resource name: {name!r}")
        raise AssertionError("unreachable")
    return m.group(2)


def _message(m: Any, context: grpc.ServicerContext) -> Message:
    data = bytes(m.data)
    attributes = {str(k): str(v) for k, v in m.attributes.items()}
    problem = ""
    if not data and not attributes:
        problem = "a message needs data or attributes"
    elif len(data) > MAX_MESSAGE_BYTES:
        problem = "message larger than 10 MB"
    elif len(attributes) > 100:
        problem = "more than 100 attributes"
    for k, v in attributes.items():
        if not k or len(k.encode()) > 256 or k.startswith("goog") or len(v.encode()) > 1024:
            problem = f"invalid attribute {k[:64]!r}"
    if problem:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
    return Message(data=data, attributes=attributes, ordering_key=str(m.ordering_key))

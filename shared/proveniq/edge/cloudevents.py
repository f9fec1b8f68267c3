"""Pub/Sub messages carried in CloudEvents, as Eventarc delivers them to functions.

A Pub/Sub-triggered CloudEvent has type ``google.cloud.pubsub.topic.v1.messagePublished``,
source ``//pubsub.googleapis.com/projects/<project>/topics/<topic>`` and JSON data::

    {"message": {"data": "<base64>", "attributes": {...}, "messageId": "...",
                 "publishTime": "...", "orderingKey": "..."},
     "subscription": "projects/<project>/subscriptions/<subscription>"}

`pubsub_event` builds those parts (the local bus uses it) and `pubsub_delivery_from_cloud_event`
decodes them back; both are pure. Any object with ``get_attributes()`` and ``get_data()``
(a ``cloudevents.http.CloudEvent``) can be decoded. Malformed events raise
`errors.ValidationError` naming the offending field: a function acknowledges those (400) instead
of having them redelivered.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from proveniq.errors import ValidationError
from proveniq.ports import Message

PUBSUB_MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
_SOURCE_PREFIX = "//pubsub.googleapis.com/"


class CloudEventLike(Protocol):
    def get_attributes(self) -> Mapping[str, Any]: ...

    def get_data(self) -> Any: ...


@dataclass(frozen=True, kw_only=True)
class PubSubDelivery:
    """One delivered Pub/Sub message and where it came from."""

    message: Message
    message_id: str
    publish_time: str
    topic: str  # "projects/<p>/topics/<t>", from the event source
    subscription: str


def topic_path(project: str, topic: str) -> str:
    return f"projects/{project}/topics/{topic}"


def pubsub_event(
    *,
    project: str,
    topic: str,
    subscription: str,
    message: Message,
    message_id: str,
    publish_time: str,
) -> tuple[dict[str, str], dict[str, Any]]:
    """The CloudEvent attributes and data Eventarc sends for one Pub/Sub message."""
    body: dict[str, Any] = {
        "data": base64.b64encode(message.data).decode("ascii"),
        "attributes": dict(message.attributes),
        "messageId": message_id,
        "message_id": message_id,
        "publishTime": publish_time,
        "publish_time": publish_time,
    }
    if message.ordering_key:
        body["orderingKey"] = message.ordering_key
    attributes = {
        "specversion": "1.0",
        "type": PUBSUB_MESSAGE_PUBLISHED,
        "source": _SOURCE_PREFIX + topic_path(project, topic),
        "id": message_id,
        "time": publish_time,
        "datacontenttype": "application/json",
    }
    data = {"message": body, "subscription": f"projects/{project}/subscriptions/{subscription}"}
    return attributes, data


def pubsub_message_from_cloud_event(event: CloudEventLike) -> Message:
    """The Pub/Sub message inside a messagePublished CloudEvent."""
    return pubsub_delivery_from_cloud_event(event).message


def pubsub_delivery_from_cloud_event(event: CloudEventLike) -> PubSubDelivery:
    """Decode a messagePublished CloudEvent, or raise `ValidationError` naming the bad field."""
    try:
        attributes = event.get_attributes()
        data = event.get_data()
    except AttributeError as e:
        raise ValidationError("not a CloudEvent", field="event") from e
    if attributes.get("type") != PUBSUB_MESSAGE_PUBLISHED:
        raise ValidationError(f"expected CloudEvent type {PUBSUB_MESSAGE_PUBLISHED}", field="type")
    source = attributes.get("source")
    topic = source.removeprefix(_SOURCE_PREFIX) if isinstance(source, str) else ""
    if topic == source or "/topics/" not in topic:
        raise ValidationError("expected a Pub/Sub topic as CloudEvent source", field="source")

    body = _json_object(data)
    message = body.get("message")
    if not isinstance(message, Mapping):
        raise ValidationError("missing Pub/Sub message", field="data.message")
    subscription = body.get("subscription", "")
    if not isinstance(subscription, str):
        raise ValidationError("expected a string", field="data.subscription")

    return PubSubDelivery(
        message=Message(
            data=_base64(message.get("data", "")),
            attributes=_attributes(message.get("attributes")),
            ordering_key=_string(message, "orderingKey", "ordering_key"),
        ),
        message_id=_string(message, "messageId", "message_id") or str(attributes.get("id", "")),
        publish_time=_string(message, "publishTime", "publish_time")
        or str(attributes.get("time", "")),
        topic=topic,
        subscription=subscription,
    )


def _json_object(data: Any) -> Mapping[str, Any]:
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError as e:
            raise ValidationError("CloudEvent data is not JSON", field="data") from e
    if not isinstance(data, Mapping):
        raise ValidationError("CloudEvent data is not a JSON object", field="data")
    return data


def _base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValidationError("expected base64 text", field="data.message.data")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValidationError("invalid base64", field="data.message.data") from e


def _attributes(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValidationError("expected string attributes", field="data.message.attributes")
    return dict(value)


def _string(message: Mapping[str, Any], camel: str, snake: str) -> str:
    value = message.get(camel, message.get(snake, ""))
    if not isinstance(value, str):
        raise ValidationError("expected a string", field=f"data.message.{camel}")
    return value

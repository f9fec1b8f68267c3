"""The projection follower of `ledger-events`: decode one message, apply it to the sink.

The message is the outbox relay's (`{"entry": ..., "leaf_hash": ..., "payload": ...}`). A
malformed message raises `errors.ValidationError` (permanent: acknowledge and dead-letter it);
a sink that cannot be reached raises `errors.Unavailable` (let the platform redeliver).
"""

from __future__ import annotations

from typing import Any

from proveniq.followers.projection.documents import change_for
from proveniq.followers.projection.sink import ProjectionSink
from proveniq.ledger.outbox import decode_message
from proveniq.log.entry import Entry
from proveniq.ports import Message


def decode(message: Message) -> tuple[Entry, dict[str, Any] | None]:
    return decode_message(message.data)


def handle(sink: ProjectionSink, message: Message) -> bool:
    """Project one message; False if it was a duplicate (or already in a rebuild)."""
    entry, payload = decode(message)
    return sink.apply(change_for(entry, payload))

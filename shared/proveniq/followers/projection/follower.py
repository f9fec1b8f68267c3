"""The projection follower of `ledger-events`: decode one message, apply it to the sink.

The message is the outbox relay's (`{"entry": ..., "leaf_hash": ..., "payload": ...}`). A
malformed message raises `errors.ValidationError` (permanent: acknowledge and dead-letter it);
a sink that cannot be reached raises `errors.Unavailable` (let the platform redeliver).
"""

from __future__ import annotations

import json
from typing import Any

from proveniq.errors import ValidationError
from proveniq.followers.projection.documents import change_for
from proveniq.followers.projection.sink import ProjectionSink
from proveniq.log.entry import Entry
from proveniq.ports import Message


def decode(message: Message) -> tuple[Entry, dict[str, Any] | None]:
    try:
        doc = json.loads(message.data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValidationError(f"ledger-events message is not JSON: {e}", field="data") from e
    if not isinstance(doc, dict):
        raise ValidationError("ledger-events message must be a JSON object", field="data")
    entry = Entry.from_json(doc.get("entry"), field="entry")
    if doc.get("leaf_hash") != entry.leaf_hash().hex():
        raise ValidationError("leaf_hash does not match the entry", field="leaf_hash")
    payload = doc.get("payload")
    if payload is not None and not isinstance(payload, dict):
        raise ValidationError("payload must be an object or null", field="payload")
    return entry, payload


def handle(sink: ProjectionSink, message: Message) -> bool:
    """Project one message; False if it was a duplicate (or already in a rebuild)."""
    entry, payload = decode(message)
    return sink.apply(change_for(entry, payload))

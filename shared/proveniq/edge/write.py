"""Append: validate, authorise, sequence under the lock, commit, publish, acknowledge."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from proveniq.adapters.postgres.ledger import (
    Idempotency,
    LedgerStore,
    StoredEvent,
    StoredResponse,
    request_hash,
)
from proveniq.edge.http import Call, Reply, envelope
from proveniq.edge.proofs import MAX_WAIT_SECONDS, Pending, ProofService
from proveniq.errors import Unavailable, ValidationError
from proveniq.ledger import lifecycle
from proveniq.ledger.outbox import Relay
from proveniq.ledger.submission import Prepared, parse_batch, parse_single
from proveniq.log.bundle import Bundle
from proveniq.log.entry import Entry
from proveniq.log.timefmt import format_time

MAX_IDEMPOTENCY_KEY = 255


class AppendService:
    def __init__(
        self, *, store: LedgerStore, relay: Relay, prove: ProofService | None = None
    ) -> None:
        self.store = store
        self.relay = relay
        self.prove = prove

    def write_one(self, call: Call) -> Reply:
        wait = call.request.args.get("wait")
        if wait not in (None, "proof"):
            raise ValidationError("wait must be 'proof'", field="wait")
        timeout = _timeout(call) if wait else 0.0  # validated before anything is written
        reply = self._write(call, [parse_single(call.body)], batch=False)
        if wait is None or self.prove is None or reply.raw is None:
            return reply
        return self._with_proof(call, reply, timeout)

    def _with_proof(self, call: Call, reply: Reply, timeout: float) -> Reply:
        """`?wait=proof`: hold the response until a checkpoint covers the event (bounded).
        The event is already committed: a failure while waiting still answers 201, pending."""
        assert self.prove is not None and reply.raw is not None and call.tenant is not None
        data = json.loads(reply.raw)["data"]
        try:
            ev = self.store.get_event(tenant=call.tenant, event_id=data["id"])
            result: Bundle | Pending = self.prove.wait_for_bundle(ev, timeout)
        except Unavailable:
            result = Pending(seq=data["seq"], size=0)
        sealed = not isinstance(result, Pending)
        data["proof_status"] = "sealed" if sealed else "pending"
        data["bundle"] = result.to_json() if not isinstance(result, Pending) else None
        return Reply(status=reply.status, data=data, headers=reply.headers)

    def write_batch(self, call: Call) -> Reply:
        return self._write(call, parse_batch(call.body), batch=True)

    def _write(self, call: Call, prepared: Sequence[Prepared], *, batch: bool) -> Reply:
        assert call.tenant is not None
        for i, p in enumerate(prepared):
            if lifecycle.governs(p.type) and p.type not in lifecycle.TRANSITIONS:
                where = f"events[{i}].type" if batch else "type"
                raise ValidationError(f"unknown asset event {p.type!r}", field=where)
        idem = _idempotency(call)
        items = [(f"evt_{uuid.uuid4().hex}", p) for p in prepared]

        def render(entries: list[Entry]) -> StoredResponse:
            views = [_view(e) for e in entries]
            data = {"events": views, "count": len(views)} if batch else views[0]
            return StoredResponse(status=201, body=envelope(data))

        result = self.store.append(
            tenant=call.tenant,
            actor=call.principal.subject,
            items=items,
            idempotency=idem,
            render=render,
        )
        if not result.replayed:
            self.relay.publish(
                [
                    StoredEvent(entry=e, payload=p, actor=call.principal.subject)
                    for e, p in zip(result.entries, result.payloads, strict=True)
                ]
            )
        assert result.response is not None
        headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
        if not batch and not result.replayed:
            headers["Location"] = json.loads(result.response.body)["data"]["proof_url"]
        return Reply(status=result.response.status, raw=result.response.body, headers=headers)


def _view(e: Entry) -> dict[str, object]:
    return {
        "id": e.id,
        "seq": e.seq,
        "leaf_hash": e.leaf_hash().hex(),
        "recorded_at": format_time(e.recorded_at),
        "proof_url": f"/v1/events/{e.id}/proof",
    }


def _timeout(call: Call) -> float:
    raw = call.request.args.get("timeout", "10")
    try:
        value = float(raw)
    except ValueError:
        raise ValidationError("timeout must be seconds", field="timeout") from None
    if not 0 < value <= MAX_WAIT_SECONDS:
        raise ValidationError(f"timeout must be in (0, {MAX_WAIT_SECONDS}]", field="timeout")
    return value


def _idempotency(call: Call) -> Idempotency | None:
    key = call.header("Idempotency-Key")
    if key is None:
        return None
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise ValidationError(
            "Idempotency-Key must be 1-255 printable characters", field="Idempotency-Key"
        )
    return Idempotency(
        key=key, request_hash=request_hash(call.request.path.encode() + b"\n" + call.body)
    )

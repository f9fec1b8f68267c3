"""write_event's handlers: POST /v1/events (optionally `?wait=proof`) and /v1/events:batch."""

from __future__ import annotations

import json
from collections.abc import Sequence

from proveniq.edge import params, views
from proveniq.edge.http import Call, Reply, envelope
from proveniq.errors import Unavailable, ValidationError
from proveniq.ledger.proofs import MAX_WAIT_SECONDS, Pending, Proofs
from proveniq.ledger.queries import Queries
from proveniq.ledger.sequencing import Sequencer, request_hash
from proveniq.ledger.submission import Prepared, parse_batch, parse_single
from proveniq.log.bundle import Bundle
from proveniq.log.entry import Entry
from proveniq.ports import Idempotency, StoredResponse

MAX_IDEMPOTENCY_KEY = 255


class WriteHandlers:
    def __init__(self, *, sequencer: Sequencer, queries: Queries, proofs: Proofs) -> None:
        self.sequencer = sequencer
        self.queries = queries
        self.proofs = proofs

    def write_one(self, call: Call) -> Reply:
        wait = call.request.args.get("wait")
        if wait not in (None, "proof"):
            raise ValidationError("wait must be 'proof'", field="wait")
        timeout = _timeout(call) if wait else 0.0  # validated before anything is written
        prepared = parse_single(call.body)
        reply, entries = self._write(call, [prepared], batch=False)
        if wait is None or not entries:
            return reply
        return self._with_proof(call, reply, entries[0], timeout)

    def write_batch(self, call: Call) -> Reply:
        return self._write(call, parse_batch(call.body), batch=True)[0]

    def _with_proof(self, call: Call, reply: Reply, entry: Entry, timeout: float) -> Reply:
        """`?wait=proof`: hold the response until a checkpoint covers the event (bounded).
        The event is already committed: a failure while waiting still answers 201, pending."""
        data = views.acknowledgement(entry)
        try:
            result: Bundle | Pending = self.proofs.wait_for_entry(
                call.tenant, entry.id, entry.seq, timeout
            )
        except Unavailable:
            result = Pending(seq=entry.seq, size=0)
        sealed = not isinstance(result, Pending)
        data["proof_status"] = "sealed" if sealed else "pending"
        data["bundle"] = result.to_json() if not isinstance(result, Pending) else None
        return Reply(status=reply.status, data=data, headers=reply.headers)

    def _write(
        self, call: Call, prepared: Sequence[Prepared], *, batch: bool
    ) -> tuple[Reply, list[Entry]]:
        assert call.tenant is not None

        def render(entries: list[Entry]) -> StoredResponse:
            acks = [views.acknowledgement(e) for e in entries]
            data = {"events": acks, "count": len(acks)} if batch else acks[0]
            return StoredResponse(status=201, body=envelope(data))

        result = self.sequencer.sequence(
            tenant=call.tenant,
            actor=call.principal.subject,
            prepared=prepared,
            idempotency=_idempotency(call),
            render=render,
        )
        assert result.response is not None
        headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
        if not batch:  # a replay answers with the original's Location too
            headers["Location"] = (
                json.loads(result.response.body)["data"]["proof_url"]
                if result.replayed
                else views.proof_url(result.entries[0].id)
            )
        reply = Reply(status=result.response.status, raw=result.response.body, headers=headers)
        return reply, result.entries


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
    key = params.idempotency_key(call, max_length=MAX_IDEMPOTENCY_KEY)
    if key is None:
        return None
    return Idempotency(
        key=key, request_hash=request_hash(call.request.path.encode() + b"\n" + call.body)
    )

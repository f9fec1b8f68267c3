"""Prove (get_proof): bundles, checkpoints, consistency proofs, verification and queries.

Every event read is scoped by tenant. Published checkpoints and proofs pinned to a tree size
never change, so they carry long-lived cache headers; "latest" views are cached briefly.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from proveniq.adapters.postgres.ledger import LedgerStore, StoredEvent
from proveniq.adapters.postgres.pool import Pool
from proveniq.edge.http import Call, Reply, json_object
from proveniq.errors import NotFound, ValidationError, VerificationError
from proveniq.ledger.integration import read_nodes
from proveniq.log import proof
from proveniq.log.bundle import Bundle, verify_bundle
from proveniq.log.canonical import parse_strict
from proveniq.log.checkpoint import Checkpoint
from proveniq.log.entry import hex32
from proveniq.log.note import NoteVerifier, parse_note
from proveniq.log.signer import Signer
from proveniq.log.timefmt import format_time

IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
PRIVATE_IMMUTABLE = {"Cache-Control": "private, max-age=31536000, immutable"}
SHORT = {"Cache-Control": "public, max-age=1"}
MAX_WAIT_SECONDS = 30
MAX_BATCH_PROOFS = 100
MAX_PAGE = 200
MAX_CLAIM_ENTRIES = 1000
_DIGITS = re.compile(r"[0-9]{1,18}")
_EVENT_ID = re.compile(r"evt_[0-9a-f]{32}")
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_.]{0,100}")
_SUBJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
VARY_ACCEPT = {"Vary": "Accept"}


@dataclass(frozen=True)
class Pending:
    """The event is sequenced but not yet covered by a published checkpoint."""

    seq: int
    size: int


class ProofService:
    def __init__(self, *, pool: Pool, store: LedgerStore, signers: Sequence[Signer]) -> None:
        self.pool = pool
        self.store = store
        self.signer = signers[0]  # the primary: served as the log's key
        self.verifiers = [
            NoteVerifier.from_public_key(name=s.name, public_key=s.public_key) for s in signers
        ]

    # ---- bundles ------------------------------------------------------------------------

    def bundle(self, ev: StoredEvent, *, tree_size: int | None = None) -> Bundle | Pending:
        with self.pool.transaction() as cur:
            if tree_size is None:
                cur.execute("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
            else:
                cur.execute("SELECT size, note FROM checkpoints WHERE size = %s", (tree_size,))
            row = cur.fetchone()
            if row is None and tree_size is not None:
                raise NotFound(f"no checkpoint of size {tree_size}")
            if tree_size is not None and ev.entry.seq >= tree_size:
                raise ValidationError(
                    f"event seq {ev.entry.seq} is not in the tree of size {tree_size}",
                    field="tree_size",
                )
            if row is None or ev.entry.seq >= row[0]:
                return Pending(seq=ev.entry.seq, size=0 if row is None else row[0])
            size, note = row
            path = proof.inclusion_proof(lambda ids: read_nodes(cur, ids), ev.entry.seq, size)
        payload = None if ev.payload is None else json.loads(ev.payload)
        return Bundle(
            entry=ev.entry,
            payload=payload,
            leaf_index=ev.entry.seq,
            tree_size=size,
            leaf_hash=ev.entry.leaf_hash(),
            inclusion_path=tuple(path),
            checkpoint=note,
        )

    def wait_for_bundle(self, ev: StoredEvent, wait: float) -> Bundle | Pending:
        deadline = time.monotonic() + min(wait, MAX_WAIT_SECONDS)
        while True:
            result = self.bundle(ev)
            if isinstance(result, Bundle) or time.monotonic() >= deadline:
                return result
            time.sleep(0.1)

    def event_proof(self, call: Call) -> Reply:
        ev = self.store.get_event(tenant=call.tenant, event_id=call.params["id"])
        pinned = _opt_int(call, "tree_size")
        result = (
            self.bundle(ev, tree_size=pinned)
            if pinned is not None
            else self.wait_for_bundle(ev, _wait(call))
        )
        return bundle_reply(result, pinned=pinned is not None)

    def proofs_batch(self, call: Call) -> Reply:
        doc = json_object(call.body, {"ids"})
        ids = doc.get("ids")
        if (
            not isinstance(ids, list)
            or not 1 <= len(ids) <= MAX_BATCH_PROOFS
            or not all(isinstance(i, str) for i in ids)
        ):
            raise ValidationError(
                f"ids must be a list of 1-{MAX_BATCH_PROOFS} event ids", field="ids"
            )
        out: list[dict[str, Any]] = []
        for eid in ids:
            if not _EVENT_ID.fullmatch(eid):
                out.append({"id": eid[:80], "status": "not_found"})
                continue
            try:
                ev = self.store.get_event(tenant=call.tenant, event_id=eid)
            except NotFound:
                out.append({"id": eid, "status": "not_found"})
                continue
            result = self.bundle(ev)
            if isinstance(result, Pending):
                out.append({"id": eid, "status": "pending"})
            else:
                out.append({"id": eid, "status": "ok", "bundle": result.to_json()})
        return Reply(data={"results": out})

    def verify(self, call: Call) -> Reply:
        """Server-side convenience check of a bundle against this log's public key."""
        doc = parse_strict(call.body)
        bundle = Bundle.from_json(doc.get("bundle", doc) if isinstance(doc, dict) else doc)
        try:
            verdict = verify_bundle(bundle, self.verifiers)
        except VerificationError as e:
            return Reply(
                data={
                    "valid": False,
                    "failed": e.what,
                    "message": e.message,
                    "expected": e.expected,
                    "found": e.found,
                }
            )
        return Reply(
            data={
                "valid": True,
                "tree_size": verdict.checkpoint.size,
                "root": verdict.checkpoint.root_hash.hex(),
                "signed_by": list(verdict.signed_by),
            }
        )

    # ---- checkpoints and consistency ----------------------------------------------------

    def checkpoint(self, call: Call) -> Reply:
        size_param = call.params.get("size")
        with self.pool.transaction() as cur:
            if size_param is None:
                cur.execute("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
            else:
                cur.execute(
                    "SELECT size, note FROM checkpoints WHERE size = %s", (int(size_param),)
                )
            row = cur.fetchone()
        if row is None:
            raise NotFound(
                "no checkpoint published yet"
                if size_param is None
                else f"no checkpoint of size {size_param}"
            )
        headers = {**(SHORT if size_param is None else IMMUTABLE), **VARY_ACCEPT}
        if "application/json" in (call.header("Accept") or ""):
            cp = Checkpoint.from_body(parse_note(row[1]).body)
            return Reply(
                data={
                    "origin": cp.origin,
                    "tree_size": cp.size,
                    "root_hash": cp.root_hash.hex(),
                    "note": row[1],
                },
                headers=headers,
            )
        return Reply(data=row[1], content_type="text/plain; charset=utf-8", headers=headers)

    def consistency(self, call: Call) -> Reply:
        old, new = _req_int(call, "from"), _req_int(call, "to")
        if not 0 < old <= new:
            raise ValidationError("need 0 < from <= to", field="from")
        with self.pool.transaction() as cur:
            cur.execute("SELECT size FROM checkpoints WHERE size = ANY(%s)", ([old, new],))
            have = {r[0] for r in cur.fetchall()}
            for name, size in (("from", old), ("to", new)):
                if size not in have:
                    raise NotFound(
                        f"'{name}' must be the size of a published checkpoint; {size} is not"
                    )
            hashes = proof.consistency_proof(lambda ids: read_nodes(cur, ids), old, new)
        return Reply(
            data={"from": old, "to": new, "proof": [h.hex() for h in hashes]}, headers=IMMUTABLE
        )

    def public_key(self, call: Call) -> Reply:
        if "text/plain" in (call.header("Accept") or ""):
            return Reply(
                data="\n".join(v.key_string() for v in self.verifiers) + "\n",
                content_type="text/plain; charset=utf-8",
                headers={"Cache-Control": "public, max-age=3600", **VARY_ACCEPT},
            )
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        pem = Ed25519PublicKey.from_public_bytes(self.signer.public_key).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return Reply(
            data=pem.decode(),
            content_type="application/x-pem-file",
            headers={"Cache-Control": "public, max-age=3600", **VARY_ACCEPT},
        )

    # ---- queries ------------------------------------------------------------------------

    def get_event(self, call: Call) -> Reply:
        ev = self.store.get_event(tenant=call.tenant, event_id=call.params["id"])
        return Reply(data=event_view(ev))

    def by_leaf(self, call: Call) -> Reply:
        leaf = hex32(call.params["leaf"], field="leaf_hash")
        ev = self.store.find_by_leaf(tenant=call.tenant, leaf_hash=leaf)
        return Reply(data=event_view(ev))

    def list_events(self, call: Call) -> Reply:
        limit = _opt_int(call, "limit")
        limit = 50 if limit is None else limit
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"limit must be 1-{MAX_PAGE}", field="limit")
        cursor = _opt_int(call, "cursor")
        page = self.store.list_events(
            tenant=call.tenant,
            event_type=_opt_text(call, "type", _EVENT_TYPE),
            subject=_opt_text(call, "subject", _SUBJECT),
            since=_opt_time(call, "since"),
            until=_opt_time(call, "until"),
            after_seq=cursor,
            limit=limit,
        )
        return _page(page, limit)

    def subject_history(self, call: Call) -> Reply:
        limit = _opt_int(call, "limit")
        limit = MAX_PAGE if limit is None else limit
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"limit must be 1-{MAX_PAGE}", field="limit")
        page = self.store.list_events(
            tenant=call.tenant,
            subject=call.params["subject"],
            after_seq=_opt_int(call, "cursor"),
            limit=limit,
        )
        if not page and _opt_int(call, "cursor") is None:
            raise NotFound(f"no events for subject {call.params['subject']}")
        return _page(page, limit)

    def claim_verify(self, call: Call) -> Reply:
        """Check every entry of a claim against the latest checkpoint (reference arch. §5)."""
        subject = call.params["subject"]
        events = self.store.list_events(
            tenant=call.tenant, subject=subject, after_seq=None, limit=MAX_CLAIM_ENTRIES + 1
        )
        if not events:
            raise NotFound(f"no events for claim {subject}")
        if len(events) > MAX_CLAIM_ENTRIES:
            raise ValidationError(
                f"claim has more than {MAX_CLAIM_ENTRIES} entries; verify it "
                "page by page with /v1/proofs:batch",
                field="id",
            )
        results, bundles, pending = [], [], 0
        for ev in events:
            b = self.bundle(ev)
            if isinstance(b, Pending):
                pending += 1
                results.append({"id": ev.entry.id, "seq": ev.entry.seq, "status": "pending"})
                continue
            try:
                verify_bundle(b, self.verifiers)
                results.append({"id": ev.entry.id, "seq": ev.entry.seq, "status": "verified"})
            except VerificationError as e:
                results.append(
                    {"id": ev.entry.id, "seq": ev.entry.seq, "status": "failed", "failed": e.what}
                )
            bundles.append(b.to_json())
        failed = sum(r["status"] == "failed" for r in results)
        verdict = "failed" if failed else ("pending" if pending else "verified")
        return Reply(
            data={"claim": subject, "verdict": verdict, "entries": results, "bundles": bundles}
        )


def bundle_reply(result: Bundle | Pending, *, pinned: bool) -> Reply:
    if isinstance(result, Pending):
        return Reply(
            status=202,
            headers={"Retry-After": "1"},
            data={
                "status": "pending",
                "seq": result.seq,
                "published_size": result.size,
                "message": "sequenced; not yet covered by a published checkpoint",
            },
        )
    return Reply(
        data=result.to_json(),
        headers=PRIVATE_IMMUTABLE if pinned else {"Cache-Control": "private, max-age=1"},
    )


def event_view(ev: StoredEvent) -> dict[str, Any]:
    e = ev.entry
    return {
        "id": e.id,
        "seq": e.seq,
        "type": e.type,
        "subject": e.subject,
        "payload": None if ev.payload is None else json.loads(ev.payload),
        "payload_erased": ev.payload is None,
        "payload_hash": e.payload_hash.hex(),
        "occurred_at": format_time(e.occurred_at) if e.occurred_at else None,
        "recorded_at": format_time(e.recorded_at),
        "leaf_hash": e.leaf_hash().hex(),
        "prev": e.prev.hex(),
        "proof_url": f"/v1/events/{e.id}/proof",
    }


def _page(events: Sequence[StoredEvent], limit: int) -> Reply:
    items = [event_view(ev) for ev in events]
    meta: dict[str, Any] = {"limit": limit, "count": len(items)}
    meta["next_cursor"] = str(events[-1].entry.seq) if len(events) == limit else None
    return Reply(data=items, meta=meta)


def _wait(call: Call) -> float:
    raw = call.request.args.get("wait")
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise ValidationError("wait must be a number of seconds", field="wait") from None
    if not 0 <= value <= MAX_WAIT_SECONDS:
        raise ValidationError(f"wait must be 0-{MAX_WAIT_SECONDS} seconds", field="wait")
    return value


def _opt_int(call: Call, name: str) -> int | None:
    raw = call.request.args.get(name)
    if raw is None or raw == "":
        return None
    if not _DIGITS.fullmatch(raw):
        raise ValidationError("must be a non-negative integer below 10^18", field=name)
    return int(raw)


def _opt_text(call: Call, name: str, pattern: re.Pattern[str]) -> str | None:
    raw = call.request.args.get(name)
    if raw is not None and not pattern.fullmatch(raw):
        raise ValidationError(f"malformed {name}", field=name)
    return raw


def _req_int(call: Call, name: str) -> int:
    value = _opt_int(call, name)
    if value is None:
        raise ValidationError("required", field=name)
    return value


def _opt_time(call: Call, name: str) -> datetime | None:
    raw = call.request.args.get(name)
    if raw is None:
        return None
    try:
        t = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError("expected an RFC 3339 timestamp", field=name) from None
    if t.tzinfo is None:
        raise ValidationError("timestamp needs a UTC offset", field=name)
    try:
        return t.astimezone(UTC)
    except OverflowError:
        raise ValidationError("timestamp out of range", field=name) from None

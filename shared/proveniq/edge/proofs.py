"""get_proof's handlers: bundles, checkpoints, consistency proofs, verification and queries.

Published checkpoints and consistency proofs between them never change, so they carry
long-lived cache headers; "latest" views are cached briefly.
"""

from __future__ import annotations

import re
from typing import Any

from proveniq.edge import params, views
from proveniq.edge.http import Call, Reply
from proveniq.errors import NotFound, ValidationError, VerificationError
from proveniq.ledger.claims import ClaimVerification
from proveniq.ledger.proofs import MAX_WAIT_SECONDS, Pending, Proofs
from proveniq.ledger.queries import Queries
from proveniq.log.bundle import Bundle
from proveniq.log.canonical import parse_strict
from proveniq.log.checkpoint import Checkpoint
from proveniq.log.entry import hex32
from proveniq.log.keys import public_key_pem
from proveniq.log.note import parse_note
from proveniq.ports import EventFilter

IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
SHORT = {"Cache-Control": "public, max-age=1"}
VARY_ACCEPT = {"Vary": "Accept"}
MAX_BATCH_PROOFS = 100
MAX_PAGE = 200
_EVENT_ID = re.compile(r"evt_[0-9a-f]{32}")
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_.]{0,100}")
_SUBJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


class ProofHandlers:
    def __init__(self, *, proofs: Proofs, queries: Queries, claims: ClaimVerification) -> None:
        self.proofs = proofs
        self.queries = queries
        self.claims = claims

    # ---- bundles ------------------------------------------------------------------------

    def event_proof(self, call: Call) -> Reply:
        pinned = params.opt_int(call, "tree_size")
        wait = 0.0 if pinned is not None else params.wait_seconds(call, "wait", MAX_WAIT_SECONDS)
        result = self.proofs.event_bundle(
            call.tenant, call.params["event_id"], tree_size=pinned, wait=wait
        )
        return views.bundle_reply(result, pinned=pinned is not None)

    def proofs_batch(self, call: Call) -> Reply:
        doc = params.json_object(call.body, {"ids"})
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
                ev = self.queries.event(call.tenant, eid)
            except NotFound:
                out.append({"id": eid, "status": "not_found"})
                continue
            result = self.proofs.bundle(ev)
            if isinstance(result, Pending):
                out.append({"id": eid, "status": "pending"})
            else:
                out.append({"id": eid, "status": "ok", "bundle": result.to_json()})
        return Reply(data={"results": out}, headers=views.NO_STORE)

    def verify(self, call: Call) -> Reply:
        """Server-side convenience check of a bundle against this log's public keys."""
        doc = parse_strict(call.body)
        bundle = Bundle.from_json(doc.get("bundle", doc) if isinstance(doc, dict) else doc)
        try:
            verdict = self.proofs.verify(bundle)
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

    def claim_verify(self, call: Call) -> Reply:
        if call.body.strip():
            raise ValidationError("this endpoint takes no request body", field="body")
        result = self.claims.verify(call.tenant, call.params["subject"])
        return Reply(
            data={
                "claim": result.claim,
                "verdict": result.verdict,
                "entries": result.entries,
                "bundles": [b.to_json() for b in result.bundles],
            },
            headers=views.NO_STORE,
        )

    # ---- checkpoints and consistency ----------------------------------------------------

    def checkpoint(self, call: Call) -> Reply:
        size_param = call.params.get("size")
        cp = self.proofs.checkpoint(None if size_param is None else int(size_param))
        headers = {**(SHORT if size_param is None else IMMUTABLE), **VARY_ACCEPT}
        if "application/json" in (call.header("Accept") or ""):
            body = Checkpoint.from_body(parse_note(cp.note).body)
            return Reply(
                data={
                    "origin": body.origin,
                    "tree_size": body.size,
                    "root_hash": body.root_hash.hex(),
                    "note": cp.note,
                },
                headers=headers,
            )
        return Reply(data=cp.note, content_type="text/plain; charset=utf-8", headers=headers)

    def checkpoints(self, call: Call) -> Reply:
        """Published checkpoints, newest first; `cursor` is the last size of the page before."""
        limit = params.page_limit(call, default=50, maximum=MAX_PAGE)
        page = self.proofs.checkpoints(before=params.opt_int(call, "cursor"), limit=limit)
        items = [{"tree_size": c.size, "root_hash": c.root.hex(), "note": c.note} for c in page]
        meta = {
            "count": len(items),
            "next_cursor": str(page[-1].size) if len(page) == limit else None,
        }
        return Reply(data=items, meta=meta, headers=SHORT)

    def consistency(self, call: Call) -> Reply:
        old, new = params.req_int(call, "from"), params.req_int(call, "to")
        hashes = self.proofs.consistency(old, new)
        return Reply(
            data={"from": old, "to": new, "proof": [h.hex() for h in hashes]}, headers=IMMUTABLE
        )

    def public_key(self, call: Call) -> Reply:
        publisher = self.proofs.publisher
        headers = {"Cache-Control": "public, max-age=3600", **VARY_ACCEPT}
        if "text/plain" in (call.header("Accept") or ""):
            return Reply(
                data="\n".join(v.key_string() for v in publisher.verifiers()) + "\n",
                content_type="text/plain; charset=utf-8",
                headers=headers,
            )
        return Reply(
            data=public_key_pem(publisher.primary.public_key),
            content_type="application/x-pem-file",
            headers=headers,
        )

    # ---- queries ------------------------------------------------------------------------

    def get_event(self, call: Call) -> Reply:
        ev = self.queries.event(call.tenant, call.params["event_id"])
        return Reply(data=views.event_view(ev), headers=views.NO_STORE)

    def by_leaf(self, call: Call) -> Reply:
        leaf = hex32(call.params["leaf_hash"], field="leaf_hash")
        ev = self.queries.event_by_leaf(call.tenant, leaf)
        return Reply(data=views.event_view(ev), headers=views.NO_STORE)

    def list_events(self, call: Call) -> Reply:
        limit = params.page_limit(call, default=50, maximum=MAX_PAGE)
        page = self.queries.events(
            EventFilter(
                tenant=call.tenant,
                event_type=params.opt_text(call, "type", _EVENT_TYPE),
                subject=params.opt_text(call, "subject", _SUBJECT),
                since=params.opt_time(call, "since"),
                until=params.opt_time(call, "until"),
                after_seq=params.opt_int(call, "cursor"),
                limit=limit,
            )
        )
        return views.event_page(page, limit)

    def subject_history(self, call: Call) -> Reply:
        limit = params.page_limit(call, default=MAX_PAGE, maximum=MAX_PAGE)
        page = self.queries.subject_history(
            call.tenant,
            call.params["subject"],
            after_seq=params.opt_int(call, "cursor"),
            limit=limit,
        )
        return views.event_page(page, limit)

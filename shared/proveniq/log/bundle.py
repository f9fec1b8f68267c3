"""The offline proof bundle: everything needed to check, with only a public key, that an entry
is in the log.

    {"format": "proveniq-bundle/v1", "entry": {...}, "payload": {...} | absent,
     "leaf_index": n, "tree_size": n, "leaf_hash": hex, "inclusion_path": [hex, ...],
     "checkpoint": "<C2SP signed note text, byte for byte>"}

`verify_bundle` checks, in order: payload hash -> leaf hash -> leaf index -> tree size bound by
the checkpoint -> inclusion against the checkpoint's root -> checkpoint signature, and raises a
VerificationError whose `what` names the first check that failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from proveniq.errors import (
    FormatError,
    InclusionProofError,
    SignatureError,
    ValidationError,
    VerificationError,
)
from proveniq.log import merkle
from proveniq.log.canonical import sha256_canonical
from proveniq.log.checkpoint import Checkpoint, open_checkpoint
from proveniq.log.entry import Entry, hex32
from proveniq.log.note import NoteVerifier, parse_note

BUNDLE_FORMAT = "proveniq-bundle/v1"
_KEYS = {"format", "entry", "payload", "leaf_index", "tree_size", "leaf_hash", "inclusion_path"}


@dataclass(frozen=True, kw_only=True)
class Bundle:
    entry: Entry
    payload: dict[str, Any] | None
    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    inclusion_path: tuple[bytes, ...]
    checkpoint: str

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "entry": self.entry.to_json(),
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash.hex(),
            "inclusion_path": [h.hex() for h in self.inclusion_path],
            "checkpoint": self.checkpoint,
        }
        if self.payload is not None:
            out["payload"] = self.payload
        return out

    @classmethod
    def from_json(cls, d: Any) -> Bundle:
        if not isinstance(d, dict):
            raise FormatError("bundle must be a JSON object", field="bundle")
        unknown = d.keys() - _KEYS - {"checkpoint"}
        if unknown:
            raise FormatError(f"unknown bundle keys: {sorted(unknown)}", field="bundle")
        if d.get("format") != BUNDLE_FORMAT:
            raise FormatError(f"expected format {BUNDLE_FORMAT!r}", field="format")
        payload = d.get("payload")
        if payload is not None and not isinstance(payload, dict):
            raise FormatError("payload must be a JSON object", field="payload")
        path = d.get("inclusion_path")
        if not isinstance(path, list):
            raise FormatError("inclusion_path must be a list of hex hashes", field="inclusion_path")
        checkpoint = d.get("checkpoint")
        if not isinstance(checkpoint, str):
            raise FormatError("checkpoint must be the signed note text", field="checkpoint")
        return cls(
            entry=Entry.from_json(d.get("entry")),
            payload=payload,
            leaf_index=_nonneg_int(d.get("leaf_index"), "leaf_index"),
            tree_size=_nonneg_int(d.get("tree_size"), "tree_size"),
            leaf_hash=hex32(d.get("leaf_hash"), field="leaf_hash"),
            inclusion_path=tuple(
                hex32(h, field=f"inclusion_path[{i}]") for i, h in enumerate(path)
            ),
            checkpoint=checkpoint,
        )


@dataclass(frozen=True)
class BundleVerdict:
    checkpoint: Checkpoint
    signed_by: tuple[str, ...]


def verify_bundle(bundle: Bundle, verifiers: Sequence[NoteVerifier]) -> BundleVerdict:
    entry = bundle.entry
    if bundle.payload is not None:
        try:
            found = sha256_canonical(bundle.payload, field="payload")
        except ValidationError as e:
            raise VerificationError(f"payload: {e.message}", what="payload") from e
        if found != entry.payload_hash:
            raise VerificationError(
                "payload does not match the entry's payload_hash",
                what="payload",
                expected=entry.payload_hash.hex(),
                found=found.hex(),
            )
    computed = entry.leaf_hash()
    if computed != bundle.leaf_hash:
        raise VerificationError(
            "entry does not hash to the bundle's leaf_hash",
            what="leaf_hash",
            expected=bundle.leaf_hash.hex(),
            found=computed.hex(),
        )
    if entry.seq != bundle.leaf_index:
        raise VerificationError(
            "leaf_index differs from the entry's seq",
            what="leaf_index",
            expected=str(entry.seq),
            found=str(bundle.leaf_index),
        )
    unverified = Checkpoint.from_body(parse_note(bundle.checkpoint).body)
    if unverified.size != bundle.tree_size:
        raise VerificationError(
            "tree_size differs from the checkpoint's tree size",
            what="tree_size",
            expected=str(unverified.size),
            found=str(bundle.tree_size),
        )
    try:
        merkle.verify_inclusion(
            bundle.leaf_hash,
            bundle.leaf_index,
            bundle.tree_size,
            list(bundle.inclusion_path),
            unverified.root_hash,
        )
    except InclusionProofError as e:
        raise InclusionProofError(
            f"inclusion proof does not lead to the checkpoint's root: {e.message}",
            what=f"inclusion ({e.what})",
            expected=e.expected,
            found=e.found,
        ) from e
    try:
        checkpoint, note = open_checkpoint(bundle.checkpoint, verifiers)
    except SignatureError as e:
        raise SignatureError(e.message, what="checkpoint signature") from e
    return BundleVerdict(checkpoint=checkpoint, signed_by=tuple(note.verified_by))


def verifiers_for(note_text: str, public_key: bytes, name: str | None) -> list[NoteVerifier]:
    """Verifiers for a bare public key: bound to `name`, or to every signer name in the note."""
    names = [name] if name else sorted({s.name for s in parse_note(note_text).signatures})
    return [NoteVerifier.from_public_key(name=n, public_key=public_key) for n in names]


def _nonneg_int(v: Any, field: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ValidationError("must be a non-negative integer", field=field)
    return v

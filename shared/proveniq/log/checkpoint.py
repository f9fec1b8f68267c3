"""C2SP transparency-log checkpoints (https://c2sp.org/tlog-checkpoint).

A checkpoint is the body of a signed note::

    <origin>
    <tree size, decimal, no leading zeros>
    <base64 RFC 6962 root hash>
    [extension line ...]

Each line ends with a newline. Extension lines are opaque to the spec; Proveniq writes at most
one, ``timestamp <unix-millis>`` (decimal milliseconds since the Unix epoch, UTC, at which the
checkpoint was published), set with :func:`with_timestamp` and read with :func:`read_timestamp`.
``Checkpoint.from_body(cp.to_body()) == cp`` and ``from_body(b).to_body() == b``, byte for byte.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from proveniq.errors import FormatError, VerificationError
from proveniq.log.note import Note, NoteVerifier, open_note, sign_note
from proveniq.log.signer import Signer

HASH_SIZE = 32
MAX_SIZE = 2**64 - 1
TIMESTAMP_PREFIX = "timestamp "

_DECIMAL = re.compile(r"0|[1-9][0-9]*")


def _check_line(value: str, what: str) -> None:
    if not value:
        raise FormatError(f"checkpoint {what} is empty", field=what)
    if any(ord(ch) < 0x20 for ch in value):
        raise FormatError(f"checkpoint {what} contains a control character or newline", field=what)


def _parse_size(text: str) -> int:
    if len(text) > 20 or not _DECIMAL.fullmatch(text):
        raise FormatError(
            f"checkpoint size {text!r} is not a decimal number without sign or leading zeros",
            field="size",
        )
    return int(text)


def _parse_root(text: str) -> bytes:
    try:
        root = base64.b64decode(text, validate=True)
    except binascii.Error as e:
        raise FormatError(
            f"checkpoint root hash is not valid base64: {e}", field="root_hash"
        ) from e
    if len(root) != HASH_SIZE or base64.b64encode(root).decode() != text:
        raise FormatError(
            f"checkpoint root hash must be the base64 of {HASH_SIZE} bytes", field="root_hash"
        )
    return root


@dataclass(frozen=True)
class Checkpoint:
    """A log's signed tree head: origin, tree size, root hash and opaque extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if isinstance(self.size, bool) or not 0 <= self.size <= MAX_SIZE:
            raise FormatError(f"checkpoint size {self.size!r} is out of range", field="size")
        if len(self.root_hash) != HASH_SIZE:
            raise FormatError(f"checkpoint root hash must be {HASH_SIZE} bytes", field="root_hash")
        for line in self.extensions:
            _check_line(line, "extension")

    def to_body(self) -> str:
        """The note body: origin, size, base64 root, extensions, each newline-terminated."""
        root = base64.b64encode(self.root_hash).decode()
        return "".join(
            f"{line}\n" for line in (self.origin, str(self.size), root, *self.extensions)
        )

    @classmethod
    def from_body(cls, body: str) -> Checkpoint:
        """Parse a checkpoint note body strictly; FormatError names the offending line."""
        if not body.endswith("\n"):
            raise FormatError("checkpoint body must end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise FormatError("checkpoint body needs origin, size and root hash lines")
        origin, size, root, *extensions = lines
        return cls(
            origin=origin,
            size=_parse_size(size),
            root_hash=_parse_root(root),
            extensions=tuple(extensions),
        )


class OpenedCheckpoint(NamedTuple):
    checkpoint: Checkpoint
    note: Note


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[Signer]) -> str:
    """The signed-note text of ``checkpoint``, signed by every signer (key rotation, cosigners)."""
    return sign_note(checkpoint.to_body(), signers)


def open_checkpoint(
    text: str | bytes, verifiers: Sequence[NoteVerifier], *, origin: str | None = None
) -> OpenedCheckpoint:
    """Verify a signed checkpoint (see :func:`proveniq.note.open_note`) and parse its body.

    With ``origin``, also refuse a checkpoint from another log (VerificationError).
    """
    note = open_note(text, verifiers)
    checkpoint = Checkpoint.from_body(note.body)
    if origin is not None and checkpoint.origin != origin:
        raise VerificationError(
            f"checkpoint origin {checkpoint.origin!r} is not {origin!r}",
            what="checkpoint origin",
            expected=origin,
            found=checkpoint.origin,
        )
    return OpenedCheckpoint(checkpoint, note)


def with_timestamp(checkpoint: Checkpoint, unix_millis: int) -> Checkpoint:
    """A copy of ``checkpoint`` whose ``timestamp <unix-millis>`` extension is ``unix_millis``."""
    if isinstance(unix_millis, bool) or not 0 <= unix_millis <= MAX_SIZE:
        raise FormatError(f"timestamp {unix_millis!r} is out of range", field="timestamp")
    others = tuple(x for x in checkpoint.extensions if not x.startswith(TIMESTAMP_PREFIX))
    return replace(checkpoint, extensions=(f"{TIMESTAMP_PREFIX}{unix_millis}", *others))


def read_timestamp(checkpoint: Checkpoint) -> int | None:
    """The ``timestamp`` extension in Unix milliseconds, or None if absent."""
    found = [x for x in checkpoint.extensions if x.startswith(TIMESTAMP_PREFIX)]
    if not found:
        return None
    if len(found) > 1:
        raise FormatError("checkpoint has more than one timestamp line", field="timestamp")
    value = found[0][len(TIMESTAMP_PREFIX) :]
    if not _DECIMAL.fullmatch(value):
        raise FormatError(f"checkpoint timestamp {value!r} is not decimal", field="timestamp")
    return int(value)

"""C2SP signed notes (https://c2sp.org/signed-note), Ed25519 signatures only.

A signed note is UTF-8 text with no control characters other than newline: the body (ending in
a newline), a blank line, then one or more signature lines::

    — <key name> <base64(4-byte key ID || signature)>

The body is everything up to and including the newline before the *last* blank line. Parsing is
strict and byte-exact: ``format_note(parse_note(text)) == text``. :func:`open_note` ignores
signatures from unknown keys (no verifier with the same name *and* key ID), refuses a note in
which a known key's signature fails, and refuses a note with no verified signature at all.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from proveniq.errors import FormatError, SignatureError, ValidationError
from proveniq.log.signer import (
    KEY_ID_SIZE,
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    Signer,
    check_key_name,
    note_key_id,
    parse_verifier_key_string,
    verifier_key_string,
)

SIGNATURE_PREFIX = "\u2014 "  # em dash, space
MAX_SIGNATURES = 100  # the spec asks verifiers to accept at least 16


def check_text(text: str, *, what: str = "note") -> str:
    """Return ``text`` if it is valid UTF-8 with no control characters other than newline."""
    for i, ch in enumerate(text):
        if ord(ch) < 0x20 and ch != "\n":
            line = text.count("\n", 0, i) + 1
            raise FormatError(f"{what} contains control character {ch!r} on line {line}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise FormatError(f"{what} is not valid UTF-8") from e
    return text


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID and the raw signature."""

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.key_id) != KEY_ID_SIZE:
            raise FormatError(f"key id of {self.name} must be {KEY_ID_SIZE} bytes")
        if not self.signature:
            raise FormatError(f"signature of {self.name} is empty")

    @property
    def label(self) -> str:
        """``<name>+<hex key id>``, how errors and logs name the key."""
        return f"{self.name}+{self.key_id.hex()}"

    def to_line(self) -> str:
        blob = base64.b64encode(self.key_id + self.signature).decode()
        return f"{SIGNATURE_PREFIX}{self.name} {blob}\n"


@dataclass(frozen=True)
class Note:
    """A parsed signed note. ``verified`` is filled by :func:`open_note` (not compared)."""

    body: str
    signatures: tuple[NoteSignature, ...]
    verified: tuple[NoteSignature, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        check_text(self.body, what="note body")
        if not self.body.endswith("\n"):
            raise FormatError("note body must end with a newline")
        if not self.signatures:
            raise FormatError("note has no signature lines")
        if len(self.signatures) > MAX_SIGNATURES:
            raise FormatError(f"note has more than {MAX_SIGNATURES} signatures")
        seen: set[tuple[str, bytes]] = set()
        for sig in self.signatures:
            if (sig.name, sig.key_id) in seen:
                raise FormatError(f"note has two signatures by key {sig.label}")
            seen.add((sig.name, sig.key_id))

    @property
    def verified_by(self) -> tuple[str, ...]:
        """Names of the keys whose signatures :func:`open_note` verified, in note order."""
        return tuple(dict.fromkeys(sig.name for sig in self.verified))


def _parse_signature_line(line: str, number: int) -> NoteSignature:
    if not line.startswith(SIGNATURE_PREFIX):
        raise FormatError(f"signature line {number} does not start with an em dash and a space")
    name, _, blob = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not blob:
        raise FormatError(f"signature line {number} has no signature after the key name")
    try:
        check_key_name(name)
        raw = base64.b64decode(blob, validate=True)
    except (FormatError, binascii.Error) as e:
        raise FormatError(f"signature line {number} is malformed: {e}") from e
    if base64.b64encode(raw).decode() != blob:
        raise FormatError(f"signature line {number} is not canonical base64")
    if len(raw) <= KEY_ID_SIZE:
        raise FormatError(f"signature line {number} is shorter than a key id and a signature")
    return NoteSignature(name=name, key_id=raw[:KEY_ID_SIZE], signature=raw[KEY_ID_SIZE:])


def parse_note(text: str | bytes) -> Note:
    """Parse signed-note text (``bytes`` must be UTF-8) without verifying anything."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FormatError("note is not valid UTF-8") from e
    check_text(text)
    split = text.rfind("\n\n")
    if split < 0:
        raise FormatError("note has no blank line between body and signatures")
    body, block = text[: split + 1], text[split + 2 :]
    if not block:
        raise FormatError("note has no signature lines after its last blank line")
    if not block.endswith("\n"):
        raise FormatError("note signatures must end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise FormatError(f"note has more than {MAX_SIGNATURES} signatures")
    sigs = tuple(_parse_signature_line(line, n) for n, line in enumerate(lines, 1))
    return Note(body=body, signatures=sigs)


def format_note(note: Note) -> str:
    """The signed-note text of ``note``: body, blank line, signature lines."""
    return note.body + "\n" + "".join(sig.to_line() for sig in note.signatures)


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted Ed25519 key: name, 4-byte key ID and raw 32-byte public key."""

    name: str
    key_id: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.key_id) != KEY_ID_SIZE:
            raise FormatError(f"key id must be {KEY_ID_SIZE} bytes", field="key_id")
        if len(self.public_key) != PUBLIC_KEY_SIZE:
            raise FormatError(f"public key must be {PUBLIC_KEY_SIZE} bytes", field="public_key")

    @classmethod
    def from_key_string(cls, text: str) -> NoteVerifier:
        """From a verifier key string ``<name>+<hex key id>+<base64(0x01 || public key)>``."""
        name, public_key = parse_verifier_key_string(text)
        return cls.from_public_key(name=name, public_key=public_key)

    @classmethod
    def from_public_key(cls, *, name: str, public_key: bytes) -> NoteVerifier:
        """From a name and raw public key; the key ID is the standard C2SP one."""
        return cls(name=name, key_id=note_key_id(name, public_key), public_key=bytes(public_key))

    def key_string(self) -> str:
        return verifier_key_string(self.name, self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def sign_note(body: str, signers: Sequence[Signer]) -> str:
    """Sign ``body`` (which must end with a newline) with every signer, in order."""
    if not signers:
        raise ValidationError("at least one signer is required", field="signers")
    message = check_text(body, what="note body").encode()
    return format_note(Note(body=body, signatures=tuple(_sign(s, message) for s in signers)))


def _sign(signer: Signer, message: bytes) -> NoteSignature:
    """Sign and check the result against the signer's public key (catches a misconfigured KMS)."""
    verifier = NoteVerifier.from_public_key(name=signer.name, public_key=signer.public_key)
    signature = signer.sign(message)
    if len(signature) != SIGNATURE_SIZE or not verifier.verify(message, signature):
        raise SignatureError(
            f"signer {signer.name} returned a signature that its public key does not verify",
            what="signer output",
            expected=verifier.key_string(),
        )
    return NoteSignature(name=signer.name, key_id=verifier.key_id, signature=signature)


def open_note(text: str | bytes, verifiers: Sequence[NoteVerifier]) -> Note:
    """Parse and verify a note; the result's ``verified`` lists the signatures that verified.

    Raises FormatError if the text is malformed and SignatureError if a known key's signature
    fails or no known key signed the note.
    """
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for v in verifiers:
        other = known.setdefault((v.name, v.key_id), v)
        if other.public_key != v.public_key:
            raise ValidationError(
                f"two verifiers share name and key id {v.name}+{v.key_id.hex()}",
                field="verifiers",
            )
    note = parse_note(text)
    message = note.body.encode()
    verified = []
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if not verifier.verify(message, sig.signature):
            raise SignatureError(
                f"signature by known key {sig.label} does not verify",
                what="note signature",
                expected=sig.label,
            )
        verified.append(sig)
    if not verified:
        present = ", ".join(sig.label for sig in note.signatures)
        wanted = ", ".join(f"{v.name}+{v.key_id.hex()}" for v in verifiers) or "none"
        raise SignatureError(
            f"note has no signature from a known key: signed by {present}; known keys: {wanted}",
            what="note signature",
            expected=wanted,
            found=present,
        )
    return replace(note, verified=tuple(verified))

"""The Signer port, and how C2SP signed-note names Ed25519 keys.

A signer has a key name (for a log, its origin), a raw 32-byte Ed25519 public key and
``sign(message) -> 64-byte signature``. The in-memory :class:`Ed25519Signer` wraps a
``cryptography`` private key; a Cloud KMS signer implements the same protocol by calling the
API. Verification needs only ``(name, public_key)``.

Key identities follow https://c2sp.org/signed-note (signature type ``0x01``, Ed25519)::

    key ID       = SHA-256(name || 0x0A || 0x01 || public key)[:4]
    verifier key = <name>+<hex(key ID)>+<base64(0x01 || public key)>
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from proveniq.errors import FormatError

ED25519_TYPE = b"\x01"
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
KEY_ID_SIZE = 4

_KEY_ID_HEX = re.compile(r"[0-9a-fA-F]{8}")


class Signer(Protocol):
    """Signs note text. Implementations: :class:`Ed25519Signer`, a Cloud KMS adapter."""

    @property
    def name(self) -> str:
        """The note key name (for a log: its origin)."""
        ...

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Return the raw 64-byte Ed25519 signature of ``message``."""
        ...


def check_key_name(name: str) -> str:
    """Return ``name`` if it is a valid note key name: non-empty, no spaces, no ``+``."""
    if not name:
        raise FormatError("key name is empty", field="key_name")
    for ch in name:
        if ch.isspace() or ch == "+" or ord(ch) < 0x20:
            raise FormatError(
                f"key name {name!r} contains {ch!r}: spaces, '+' and control characters are "
                "not allowed",
                field="key_name",
            )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as e:
        raise FormatError(f"key name {name!r} is not valid UTF-8", field="key_name") from e
    return name


def _check_public_key(public_key: bytes) -> bytes:
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise FormatError(
            f"Ed25519 public key must be {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}",
            field="public_key",
        )
    return bytes(public_key)


def note_key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte C2SP signed-note key ID of an Ed25519 key."""
    material = check_key_name(name).encode() + b"\n" + ED25519_TYPE + _check_public_key(public_key)
    return hashlib.sha256(material).digest()[:KEY_ID_SIZE]


def verifier_key_string(name: str, public_key: bytes) -> str:
    """The verifier key string ``<name>+<8 hex key id>+<base64(0x01 || public key)>``."""
    key_id = note_key_id(name, public_key).hex()
    return f"{name}+{key_id}+{base64.b64encode(ED25519_TYPE + public_key).decode()}"


def parse_verifier_key_string(text: str) -> tuple[str, bytes]:
    """Parse a verifier key string into ``(name, public_key)``, checking its key ID."""
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise FormatError("verifier key must be <name>+<key id>+<key data>", field="verifier_key")
    name, key_id_hex, data = parts
    check_key_name(name)
    if not _KEY_ID_HEX.fullmatch(key_id_hex):
        raise FormatError(
            f"verifier key id {key_id_hex!r} is not 8 hex digits", field="verifier_key"
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error as e:
        raise FormatError("verifier key data is not valid base64", field="verifier_key") from e
    if base64.b64encode(raw).decode() != data:
        raise FormatError("verifier key data is not canonical base64", field="verifier_key")
    if raw[:1] != ED25519_TYPE:
        raise FormatError(
            f"verifier key type {raw[:1].hex() or 'missing'} is not 01 (Ed25519)",
            field="verifier_key",
        )
    public_key = _check_public_key(raw[1:])
    if note_key_id(name, public_key).hex() != key_id_hex.lower():
        raise FormatError(
            f"verifier key id {key_id_hex} does not match its name and public key",
            field="verifier_key",
        )
    return name, public_key


class Ed25519Signer:
    """An in-memory Ed25519 signer (tests, local development, a key file)."""

    def __init__(self, *, name: str, private_key: Ed25519PrivateKey) -> None:
        self._name = check_key_name(name)
        self._private_key = private_key
        self._public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls, *, name: str) -> Ed25519Signer:
        """A signer with a fresh random key."""
        return cls(name=name, private_key=Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, *, name: str, seed: bytes) -> Ed25519Signer:
        """A signer from a 32-byte RFC 8032 private key seed (deterministic: test vectors)."""
        if len(seed) != 32:
            raise FormatError(f"Ed25519 seed must be 32 bytes, got {len(seed)}", field="seed")
        return cls(name=name, private_key=Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def name(self) -> str:
        return self._name

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def key_id(self) -> bytes:
        return note_key_id(self._name, self._public_key)

    def sign(self, message: bytes) -> bytes:
        return self._private_key.sign(message)

    def __repr__(self) -> str:
        return f"Ed25519Signer(name={self._name!r}, key_id={self.key_id.hex()})"

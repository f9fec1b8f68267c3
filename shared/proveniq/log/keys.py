"""The log's public keys: PEM SubjectPublicKeyInfo or C2SP note verifier key strings, read
from text or a file, and written back as PEM. What an offline verifier needs to trust a log."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from proveniq.errors import FormatError
from proveniq.log.note import NoteVerifier
from proveniq.log.signer import parse_verifier_key_string

_PEM_BEGIN = "-----BEGIN"


@dataclass(frozen=True)
class PublicKey:
    """A raw Ed25519 public key; ``name`` is known only when read from a verifier key string."""

    name: str | None
    public_key: bytes

    def verifier(self, *, name: str | None = None) -> NoteVerifier:
        """A note verifier for this key; ``name`` is required for a PEM key."""
        key_name = name if name is not None else self.name
        if key_name is None:
            raise FormatError("a PEM public key needs a key name to verify notes", field="name")
        return NoteVerifier.from_public_key(name=key_name, public_key=self.public_key)


def public_key_pem(public_key: bytes) -> str:
    """A raw Ed25519 public key as PEM SubjectPublicKeyInfo text."""
    pem = Ed25519PublicKey.from_public_bytes(public_key).public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


def _parse_pem(text: str) -> PublicKey:
    try:
        key = load_pem_public_key(text.encode())
    except (ValueError, TypeError) as e:
        raise FormatError(f"not a PEM SubjectPublicKeyInfo public key: {e}") from e
    if not isinstance(key, Ed25519PublicKey):
        raise FormatError(f"PEM holds a {type(key).__name__}, not an Ed25519 public key")
    return PublicKey(name=None, public_key=key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def load_public_key(text_or_path: str | Path) -> PublicKey:
    """Read an Ed25519 public key from PEM text, a verifier key string, or a file of either.

    A ``Path`` is always read as a file; a ``str`` is read as a file only when it is neither PEM
    text nor multi-line and names an existing file.
    """
    if isinstance(text_or_path, Path):
        text = text_or_path.read_text(encoding="utf-8")
    elif (
        _PEM_BEGIN not in text_or_path
        and "\n" not in text_or_path.strip()
        and os.path.isfile(text_or_path)
    ):
        text = Path(text_or_path).read_text(encoding="utf-8")
    else:
        text = text_or_path
    text = text.strip()
    if text.startswith(_PEM_BEGIN):
        return _parse_pem(text)
    name, public_key = parse_verifier_key_string(text)
    return PublicKey(name=name, public_key=public_key)

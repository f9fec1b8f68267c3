"""A local Ed25519 signing key in a file, and public keys as PEM or C2SP verifier key strings.

The private key is an unencrypted PKCS#8 PEM file with mode 0600. A missing key file is created
atomically (written to a temporary file, then hard-linked into place without overwriting), so
two processes starting at once end up sharing one key.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from proveniq.errors import FormatError
from proveniq.log.note import NoteVerifier
from proveniq.log.signer import Ed25519Signer, Signer, parse_verifier_key_string

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


def _write_new_file(path: Path, data: bytes, mode: int) -> bool:
    """Atomically create ``path`` holding ``data``; False if it already exists."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return True


def _read_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise FormatError(f"{path} is not an unencrypted PKCS#8 PEM private key: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise FormatError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def load_or_create_signer(path: Path, *, name: str) -> Ed25519Signer:
    """The signer whose key is in ``path``; a new key is generated there if the file is missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        if _write_new_file(path, pem, 0o600):
            return Ed25519Signer(name=name, private_key=key)
    return Ed25519Signer(name=name, private_key=_read_private_key(path))


def write_public_key_pem(signer: Signer, path: Path) -> None:
    """Write the signer's public key as a PEM SubjectPublicKeyInfo file (replacing any)."""
    public = Ed25519PublicKey.from_public_bytes(signer.public_key)
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(pem)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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

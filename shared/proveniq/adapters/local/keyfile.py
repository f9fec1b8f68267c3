"""A local Ed25519 signing key in a file (the local stand-in for Cloud KMS).

The private key is an unencrypted PKCS#8 PEM file with mode 0600. A missing key file is created
atomically (written to a temporary file, then hard-linked into place without overwriting), so
two processes starting at once end up sharing one key.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from proveniq.errors import FormatError
from proveniq.log.keys import public_key_pem
from proveniq.log.signer import Ed25519Signer, Signer


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
    pem = public_key_pem(signer.public_key).encode()
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

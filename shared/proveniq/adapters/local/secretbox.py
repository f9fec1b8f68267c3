"""`SecretBox` with a local key-encryption key (KEK) file: envelope encryption, AES-256-GCM.

Each `seal` makes a fresh 256-bit data key, encrypts the plaintext with it, and wraps the data
key with the KEK (both AES-GCM, random 96-bit nonces). The blob names the KEK by an 8-byte id
(SHA-256 prefix), so a blob sealed under another key file is refused clearly::

    b"PVL1" | kek_id(8) | wrap_nonce(12) | wrapped_dek(48) | nonce(12) | ciphertext+tag

The KEK file holds 32 random bytes, mode 0600; a missing file is created atomically (written
to a temporary file, then hard-linked into place without overwriting, as `keyfile` does), so
two processes starting at once share one key.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from proveniq.adapters.local.keyfile import _write_new_file
from proveniq.errors import FormatError, InternalError

MAGIC: Final = b"PVL1"
KEY_BYTES: Final = 32
NONCE: Final = 12
_WRAPPED: Final = KEY_BYTES + 16
_HEADER: Final = len(MAGIC) + 8 + NONCE + _WRAPPED + NONCE


class LocalSecretBox:
    def __init__(self, *, kek: bytes) -> None:
        if len(kek) != KEY_BYTES:
            raise ValueError("the key-encryption key is 32 bytes")
        self._kek = AESGCM(kek)
        self.key_id = hashlib.sha256(b"proveniq secretbox kek\x00" + kek).digest()[:8]

    @classmethod
    def load_or_create(cls, path: Path) -> LocalSecretBox:
        """The box whose KEK is in ``path``; a new KEK is generated there if it is missing."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            kek = os.urandom(KEY_BYTES)
            if _write_new_file(path, kek, 0o600):
                return cls(kek=kek)
        data = path.read_bytes()
        if len(data) != KEY_BYTES:
            raise FormatError(f"{path} is not a {KEY_BYTES}-byte key-encryption key file")
        return cls(kek=data)

    def seal(self, plaintext: bytes) -> bytes:
        dek = AESGCM.generate_key(bit_length=256)
        wrap_nonce, nonce = os.urandom(NONCE), os.urandom(NONCE)
        header = MAGIC + self.key_id
        wrapped = self._kek.encrypt(wrap_nonce, dek, header)
        ciphertext = AESGCM(dek).encrypt(nonce, plaintext, header + wrap_nonce + wrapped)
        return header + wrap_nonce + wrapped + nonce + ciphertext

    def open(self, sealed: bytes) -> bytes:
        if len(sealed) < _HEADER + 16 or not sealed.startswith(MAGIC):
            raise InternalError("not a sealed secret from this box")
        header = sealed[: len(MAGIC) + 8]
        if header[len(MAGIC) :] != self.key_id:
            raise InternalError(
                "the secret was sealed under another key-encryption key (wrong key file?)"
            )
        at = len(header)
        wrap_nonce = sealed[at : at + NONCE]
        wrapped = sealed[at + NONCE : at + NONCE + _WRAPPED]
        nonce = sealed[at + NONCE + _WRAPPED : _HEADER]
        try:
            dek = self._kek.decrypt(wrap_nonce, wrapped, header)
            return AESGCM(dek).decrypt(nonce, sealed[_HEADER:], header + wrap_nonce + wrapped)
        except InvalidTag as e:
            raise InternalError("a sealed secret is damaged (authentication failed)") from e

    def __repr__(self) -> str:
        return f"LocalSecretBox(key_id={self.key_id.hex()})"

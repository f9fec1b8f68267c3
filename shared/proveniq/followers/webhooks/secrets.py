"""The SecretBox port: envelope encryption of webhook signing secrets at rest.

`seal` returns an opaque, self-describing blob (it names the key that wrapped its data key);
`open` returns the plaintext or raises `errors.InternalError` (wrong key, damaged blob) or
`errors.Unavailable` (the key service is unreachable; retry). Adapters: Cloud KMS
(`adapters.gcp.kms_envelope.KmsEnvelope`) and a local key file
(`adapters.local.secretbox.LocalSecretBox`).
"""

from __future__ import annotations

from typing import Protocol


class SecretBox(Protocol):
    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt `plaintext` under a fresh data key wrapped by the key-encryption key."""

    def open(self, sealed: bytes) -> bytes:
        """Decrypt a blob made by `seal`."""

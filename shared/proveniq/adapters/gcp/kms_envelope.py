"""`SecretBox` over a Cloud KMS symmetric key (``ENCRYPT_DECRYPT``): envelope encryption.

`seal` makes a fresh AES-256-GCM data key, encrypts the plaintext locally, and has KMS wrap
the data key (Encrypt); `open` has KMS unwrap it (Decrypt) and decrypts locally. Blob::

    b"PVK1" | len(wrapped) u16 | wrapped data key (KMS ciphertext) | nonce(12) | ciphertext+tag

Every exchange is CRC32C-checked end to end, as Google recommends: Encrypt sends
``plaintext_crc32c`` and requires ``verified_plaintext_crc32c`` and a matching
``ciphertext_crc32c``, and the answering key version must belong to the configured key;
Decrypt sends ``ciphertext_crc32c`` and requires a matching ``plaintext_crc32c``.

Unwrapped data keys are cached in memory (bounded LRU, keyed by the wrapped key), so a
delivery attempt does not cost a KMS call per secret. Errors: transient API failures become
`errors.Unavailable`; anything else, or a failed check, `errors.InternalError`.
The client is built on first use; pass ``client`` to inject one.
"""

from __future__ import annotations

import os
import re
import struct
import threading
from collections import OrderedDict
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry
from google.cloud import kms_v1

from proveniq.adapters.gcp.kms import crc32c
from proveniq.adapters.gcp.retry import bounded_retry
from proveniq.errors import InternalError, Unavailable

MAGIC: Final = b"PVK1"
NONCE: Final = 12
_KEY = re.compile(r"projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+")
_RETRIED = (api_exceptions.ServiceUnavailable, api_exceptions.DeadlineExceeded)
_TRANSIENT = (*_RETRIED, api_exceptions.InternalServerError, api_exceptions.RetryError)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class KmsEnvelope:
    def __init__(
        self,
        *,
        key_name: str,
        client: kms_v1.KeyManagementServiceClient | None = None,
        timeout: float = 10.0,
        cache_size: int = 1024,
    ) -> None:
        if not _KEY.fullmatch(key_name):
            raise ValueError(
                f"key_name {key_name!r} is not projects/*/locations/*/keyRings/*/cryptoKeys/*"
            )
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self._key = key_name
        self._client = client
        self._timeout = timeout
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def seal(self, plaintext: bytes) -> bytes:
        dek = AESGCM.generate_key(bit_length=256)
        wrapped = self._wrap(dek)
        if len(wrapped) > 0xFFFF:
            raise InternalError("KMS returned an oversized ciphertext")
        nonce = os.urandom(NONCE)
        head = MAGIC + struct.pack(">H", len(wrapped)) + wrapped
        self._remember(wrapped, dek)
        return head + nonce + AESGCM(dek).encrypt(nonce, plaintext, head)

    def open(self, sealed: bytes) -> bytes:
        if len(sealed) < len(MAGIC) + 2 or not sealed.startswith(MAGIC):
            raise InternalError("not a KMS-sealed secret")
        (n,) = struct.unpack(">H", sealed[len(MAGIC) : len(MAGIC) + 2])
        at = len(MAGIC) + 2
        wrapped = sealed[at : at + n]
        if len(wrapped) != n or len(sealed) < at + n + NONCE + 16:
            raise InternalError("a KMS-sealed secret is truncated")
        head, nonce, body = (
            sealed[: at + n],
            sealed[at + n : at + n + NONCE],
            sealed[at + n + NONCE :],
        )
        dek = self._cached(wrapped)
        if dek is None:
            dek = self._unwrap(wrapped)
            self._remember(wrapped, dek)
        try:
            return AESGCM(dek).decrypt(nonce, body, head)
        except InvalidTag as e:
            raise InternalError("a KMS-sealed secret is damaged (authentication failed)") from e

    def __repr__(self) -> str:
        return f"KmsEnvelope(key_name={self._key!r})"

    def _wrap(self, dek: bytes) -> bytes:
        request = kms_v1.EncryptRequest(name=self._key, plaintext=dek, plaintext_crc32c=crc32c(dek))
        try:
            response = self._get_client().encrypt(
                request=request, retry=self._retry(), timeout=self._timeout
            )
        except api_exceptions.GoogleAPIError as e:
            raise _translate(e, "Encrypt") from e
        if not response.verified_plaintext_crc32c:
            raise InternalError("KMS did not verify the CRC32C of the data key (corrupted?)")
        wrapped = bytes(response.ciphertext)
        if _int_or_none(response.ciphertext_crc32c) != crc32c(wrapped):
            raise InternalError("the KMS ciphertext's CRC32C does not match (corrupted?)")
        if not response.name.startswith(self._key + "/cryptoKeyVersions/"):
            raise InternalError(
                f"KMS encrypted with {response.name!r}, not a version of {self._key}"
            )
        return wrapped

    def _unwrap(self, wrapped: bytes) -> bytes:
        request = kms_v1.DecryptRequest(
            name=self._key, ciphertext=wrapped, ciphertext_crc32c=crc32c(wrapped)
        )
        try:
            response = self._get_client().decrypt(
                request=request, retry=self._retry(), timeout=self._timeout
            )
        except api_exceptions.GoogleAPIError as e:
            raise _translate(e, "Decrypt") from e
        dek = bytes(response.plaintext)
        if _int_or_none(response.plaintext_crc32c) != crc32c(dek):
            raise InternalError("the KMS plaintext's CRC32C does not match (corrupted?)")
        if len(dek) != 32:
            raise InternalError("KMS returned a data key of the wrong size")
        return dek

    def _cached(self, wrapped: bytes) -> bytes | None:
        with self._lock:
            dek = self._cache.get(wrapped)
            if dek is not None:
                self._cache.move_to_end(wrapped)
            return dek

    def _remember(self, wrapped: bytes, dek: bytes) -> None:
        if self._cache_size <= 0:
            return
        with self._lock:
            self._cache[wrapped] = dek
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _retry(self) -> api_retry.Retry:
        return bounded_retry(_RETRIED, timeout=self._timeout)

    def _get_client(self) -> kms_v1.KeyManagementServiceClient:
        with self._lock:
            if self._client is None:
                self._client = kms_v1.KeyManagementServiceClient()
            return self._client


def _translate(e: api_exceptions.GoogleAPIError, action: str) -> Exception:
    if isinstance(e, _TRANSIENT):
        return Unavailable(f"Cloud KMS {action} failed (transient): {type(e).__name__}: {e}")
    return InternalError(f"Cloud KMS {action} failed: {type(e).__name__}: {e}")

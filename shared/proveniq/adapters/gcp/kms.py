"""`signer.Signer` over a Cloud KMS Ed25519 key (``EC_SIGN_ED25519``).

KMS signs the raw ``data`` (not a digest) with the private key of one CryptoKeyVersion; the
private key never leaves KMS. Every exchange is checked end to end, as Google recommends:

- ``public_key`` is fetched once with GetPublicKey and cached. The response must name the
  configured key version, use ``EC_SIGN_ED25519``, and carry a ``pem_crc32c`` equal to the
  CRC32C of the PEM; the PEM is parsed with ``cryptography`` to the raw 32 bytes.
- ``sign`` sends ``data`` with its CRC32C (``data_crc32c``). It refuses the answer unless KMS
  says it verified that CRC32C, the response names the configured key version, the
  ``signature_crc32c`` matches the returned signature, and the signature verifies against the
  public key locally: a KMS misconfiguration must never publish a checkpoint nobody can verify.

Errors: transient API failures (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, retries exhausted)
become `errors.Unavailable`; any other API failure or failed check becomes
`errors.SignatureError`. Transient failures are retried within ``timeout`` seconds in total.

The client is built on first use (``google.auth.default()`` credentials); pass ``client`` to
inject one (tests use an insecure-channel transport to a local gRPC server).
"""

from __future__ import annotations

import re
import threading
from typing import NoReturn

import google_crc32c
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry
from google.cloud import kms_v1

from proveniq.adapters.gcp.retry import bounded_retry
from proveniq.errors import SignatureError, Unavailable
from proveniq.log.signer import SIGNATURE_SIZE, check_key_name, note_key_id

ED25519 = kms_v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm.EC_SIGN_ED25519

_KEY_VERSION = re.compile(
    r"projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+/cryptoKeyVersions/[^/]+"
)

_RETRIED = (api_exceptions.ServiceUnavailable, api_exceptions.DeadlineExceeded)
_TRANSIENT = (*_RETRIED, api_exceptions.InternalServerError, api_exceptions.RetryError)


def crc32c(data: bytes) -> int:
    """The CRC32C (Castagnoli) of ``data``, as KMS's ``*_crc32c`` fields carry it."""
    return int(google_crc32c.value(data))


def _wrapped_int(value: object) -> int | None:
    """An ``Int64Value`` field as proto-plus returns it: an int, or None when unset."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _translate(e: api_exceptions.GoogleAPIError, action: str) -> Exception:
    if isinstance(e, _TRANSIENT):
        return Unavailable(f"Cloud KMS {action} failed (transient): {type(e).__name__}: {e}")
    return SignatureError(
        f"Cloud KMS {action} failed: {type(e).__name__}: {e}", what=f"kms {action}"
    )


class KmsSigner:
    """A note signer whose Ed25519 private key is a Cloud KMS CryptoKeyVersion."""

    def __init__(
        self,
        *,
        name: str,
        key_version: str,
        client: kms_v1.KeyManagementServiceClient | None = None,
        timeout: float = 30.0,
    ) -> None:
        if not _KEY_VERSION.fullmatch(key_version):
            raise ValueError(
                f"key_version {key_version!r} is not projects/*/locations/*/keyRings/*/"
                "cryptoKeys/*/cryptoKeyVersions/*"
            )
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self._name = check_key_name(name)
        self._key_version = key_version
        self._client = client
        self._timeout = timeout
        self._public_key: bytes | None = None
        self._key_lock = threading.Lock()
        self._client_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_version(self) -> str:
        return self._key_version

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key, fetched from KMS on first use and then cached."""
        with self._key_lock:
            if self._public_key is None:
                self._public_key = self._fetch_public_key()
            return self._public_key

    @property
    def key_id(self) -> bytes:
        return note_key_id(self._name, self.public_key)

    def sign(self, message: bytes) -> bytes:
        public_key = self.public_key
        request = kms_v1.AsymmetricSignRequest(
            name=self._key_version, data=message, data_crc32c=crc32c(message)
        )
        try:
            response = self._get_client().asymmetric_sign(
                request=request, retry=self._retry(), timeout=self._timeout
            )
        except api_exceptions.GoogleAPIError as e:
            raise _translate(e, "AsymmetricSign") from e
        if not response.verified_data_crc32c:
            self._refuse(
                "KMS did not verify the CRC32C of the data it signed (corrupted in transit?)",
                check="kms data_crc32c",
            )
        if response.name != self._key_version:
            self._refuse(
                "KMS signed with another key version",
                check="kms key version",
                expected=self._key_version,
                found=response.name,
            )
        signature = bytes(response.signature)
        self._check_crc(signature, response.signature_crc32c, "signature", "signature_crc32c")
        if len(signature) != SIGNATURE_SIZE:
            self._refuse(
                f"KMS returned a {len(signature)}-byte signature, not {SIGNATURE_SIZE}",
                check="kms signature",
            )
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        except InvalidSignature:
            self._refuse(
                "KMS returned a signature that the key version's public key does not verify",
                check="kms signature",
                expected=public_key.hex(),
            )
        return signature

    def __repr__(self) -> str:
        return f"KmsSigner(name={self._name!r}, key_version={self._key_version!r})"

    def _fetch_public_key(self) -> bytes:
        try:
            response = self._get_client().get_public_key(
                request=kms_v1.GetPublicKeyRequest(name=self._key_version),
                retry=self._retry(),
                timeout=self._timeout,
            )
        except api_exceptions.GoogleAPIError as e:
            raise _translate(e, "GetPublicKey") from e
        if response.name != self._key_version:
            self._refuse(
                "GetPublicKey answered for another key version",
                check="kms public key",
                expected=self._key_version,
                found=response.name,
            )
        if response.algorithm != ED25519:
            self._refuse(
                "the key version is not an Ed25519 signing key",
                check="kms key algorithm",
                expected="EC_SIGN_ED25519",
                found=getattr(response.algorithm, "name", str(response.algorithm)),
            )
        pem = response.pem.encode()
        self._check_crc(pem, response.pem_crc32c, "public key PEM", "pem_crc32c")
        try:
            key = load_pem_public_key(pem)
        except ValueError as e:
            raise SignatureError(
                f"KMS key {self._key_version}: the public key PEM does not parse: {e}",
                what="kms public key",
            ) from e
        if not isinstance(key, Ed25519PublicKey):
            self._refuse(
                f"the public key PEM holds a {type(key).__name__}, not an Ed25519 key",
                check="kms public key",
            )
        return key.public_bytes(Encoding.Raw, PublicFormat.Raw)

    def _check_crc(self, data: bytes, field_value: object, what: str, field: str) -> None:
        """Refuse a response whose CRC32C field does not match the bytes it came with."""
        expected, found = crc32c(data), _wrapped_int(field_value)
        if found != expected:
            self._refuse(
                f"the {what}'s CRC32C does not match (corrupted in transit?)",
                check=f"kms {field}",
                expected=str(expected),
                found=str(found),
            )

    def _refuse(self, reason: str, *, check: str, expected: str = "", found: str = "") -> NoReturn:
        raise SignatureError(
            f"KMS key {self._key_version}: {reason}", what=check, expected=expected, found=found
        )

    def _retry(self) -> api_retry.Retry:
        return bounded_retry(_RETRIED, timeout=self._timeout)

    def _get_client(self) -> kms_v1.KeyManagementServiceClient:
        with self._client_lock:
            if self._client is None:
                self._client = kms_v1.KeyManagementServiceClient()
            return self._client

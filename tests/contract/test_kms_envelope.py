"""KmsEnvelope against a wire-level Cloud KMS server (gRPC Encrypt/Decrypt on 127.0.0.1).

The server wraps data keys with its own AES-GCM key, names the key version it used, fills
the CRC32C fields and checks the request's CRC32C the way KMS does (INVALID_ARGUMENT on a
mismatch). Hooks rewrite responses to show that the adapter checks what comes back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import google_crc32c
import grpc
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.cloud.kms_v1 import (
    DecryptRequest,
    DecryptResponse,
    EncryptRequest,
    EncryptResponse,
    KeyManagementServiceClient,
)
from google.cloud.kms_v1.services.key_management_service.transports import (
    KeyManagementServiceGrpcTransport,
)
from grpc_servers import insecure_channel, serve  # tests/contract (rootdir-relative import)

from proveniq.adapters.gcp.kms_envelope import KmsEnvelope
from proveniq.errors import InternalError, Unavailable

KEY = "projects/demo-proveniq/locations/europe-west1/keyRings/webhooks/cryptoKeys/secrets"
SECRET = b"whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYnl0ZXM="


def crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


EncryptHook = Callable[[EncryptResponse], EncryptResponse]
DecryptHook = Callable[[DecryptResponse], DecryptResponse]


@dataclass
class FakeKms:
    key: bytes = field(default_factory=lambda: AESGCM.generate_key(bit_length=256))
    encrypts: list[EncryptRequest] = field(default_factory=list)
    decrypts: list[DecryptRequest] = field(default_factory=list)
    encrypt_hook: EncryptHook | None = None
    decrypt_hook: DecryptHook | None = None
    abort: grpc.StatusCode | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def encrypt(self, request: EncryptRequest, context: grpc.ServicerContext) -> EncryptResponse:
        with self.lock:
            self.encrypts.append(EncryptRequest(request))
        self._maybe_fail(request.name, context)
        plaintext = bytes(request.plaintext)
        if "plaintext_crc32c" in request and request.plaintext_crc32c != crc(plaintext):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "plaintext_crc32c does not match")
        nonce = os.urandom(12)
        ciphertext = b"\x01" + nonce + AESGCM(self.key).encrypt(nonce, plaintext, None)
        response = EncryptResponse(
            name=f"{KEY}/cryptoKeyVersions/1",
            ciphertext=ciphertext,
            ciphertext_crc32c=crc(ciphertext),
            verified_plaintext_crc32c="plaintext_crc32c" in request,
        )
        return self.encrypt_hook(response) if self.encrypt_hook else response

    def decrypt(self, request: DecryptRequest, context: grpc.ServicerContext) -> DecryptResponse:
        with self.lock:
            self.decrypts.append(DecryptRequest(request))
        self._maybe_fail(request.name, context)
        ciphertext = bytes(request.ciphertext)
        if "ciphertext_crc32c" in request and request.ciphertext_crc32c != crc(ciphertext):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "ciphertext_crc32c does not match")
        try:
            plaintext = AESGCM(self.key).decrypt(ciphertext[1:13], ciphertext[13:], None)
        except InvalidTag:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Decryption failed")
        response = DecryptResponse(plaintext=plaintext, plaintext_crc32c=crc(plaintext))
        return self.decrypt_hook(response) if self.decrypt_hook else response

    def _maybe_fail(self, name: str, context: grpc.ServicerContext) -> None:
        if self.abort is not None:
            context.abort(self.abort, f"injected {self.abort.name}")
        if name != KEY:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{name} not found")


@pytest.fixture
def kms() -> Iterator[tuple[FakeKms, KeyManagementServiceClient]]:
    fake = FakeKms()
    with (
        serve(
            "google.cloud.kms.v1.KeyManagementService",
            {
                "Encrypt": (fake.encrypt, EncryptRequest, EncryptResponse),
                "Decrypt": (fake.decrypt, DecryptRequest, DecryptResponse),
            },
        ) as address,
        insecure_channel(address) as channel,
    ):
        transport = KeyManagementServiceGrpcTransport(channel=channel)
        yield fake, KeyManagementServiceClient(transport=transport)


def box(client: KeyManagementServiceClient, **kw: int) -> KmsEnvelope:
    return KmsEnvelope(key_name=KEY, client=client, timeout=1.0, **kw)


def test_seal_wraps_a_fresh_data_key_with_kms_and_open_unwraps_it(
    kms: tuple[FakeKms, KeyManagementServiceClient],
) -> None:
    fake, client = kms
    sealed = box(client).seal(SECRET)
    assert SECRET not in sealed and sealed.startswith(b"PVK1")
    [enc] = fake.encrypts
    assert enc.name == KEY
    assert len(enc.plaintext) == 32 and enc.plaintext not in sealed  # only the wrapped key
    assert enc.plaintext_crc32c == crc(bytes(enc.plaintext))
    fresh = box(client, cache_size=0)  # another instance: must ask KMS
    assert fresh.open(sealed) == SECRET
    [dec] = fake.decrypts
    assert dec.name == KEY and dec.ciphertext_crc32c == crc(bytes(dec.ciphertext))
    assert bytes(dec.ciphertext) in sealed


def test_unwrapped_keys_are_cached(kms: tuple[FakeKms, KeyManagementServiceClient]) -> None:
    fake, client = kms
    sealed = box(client).seal(SECRET)
    b = box(client)
    for _ in range(3):
        assert b.open(sealed) == SECRET
    assert len(fake.decrypts) == 1


def _unverified(r: EncryptResponse) -> EncryptResponse:
    r.verified_plaintext_crc32c = False
    return r


def _bad_ciphertext_crc(r: EncryptResponse) -> EncryptResponse:
    r.ciphertext_crc32c = (r.ciphertext_crc32c + 1) % 2**32
    return r


def _no_ciphertext_crc(r: EncryptResponse) -> EncryptResponse:
    return EncryptResponse(name=r.name, ciphertext=r.ciphertext, verified_plaintext_crc32c=True)


def _other_key(r: EncryptResponse) -> EncryptResponse:
    r.name = KEY + "-other/cryptoKeyVersions/1"
    return r


@pytest.mark.parametrize(
    ("hook", "why"),
    [
        (_unverified, "did not verify"),
        (_bad_ciphertext_crc, "CRC32C"),
        (_no_ciphertext_crc, "CRC32C"),
        (_other_key, "not a version of"),
    ],
)
def test_a_bad_encrypt_response_is_refused(
    kms: tuple[FakeKms, KeyManagementServiceClient], hook: EncryptHook, why: str
) -> None:
    fake, client = kms
    fake.encrypt_hook = hook
    with pytest.raises(InternalError, match=why):
        box(client).seal(SECRET)


@pytest.mark.parametrize(
    "hook",
    [
        lambda r: DecryptResponse(plaintext=r.plaintext, plaintext_crc32c=r.plaintext_crc32c + 1),
        lambda r: DecryptResponse(plaintext=r.plaintext),
        lambda r: DecryptResponse(plaintext=b"\x00" * 32, plaintext_crc32c=r.plaintext_crc32c),
    ],
    ids=["wrong-crc", "no-crc", "corrupted-plaintext"],
)
def test_a_bad_decrypt_response_is_refused(
    kms: tuple[FakeKms, KeyManagementServiceClient], hook: DecryptHook
) -> None:
    fake, client = kms
    sealed = box(client).seal(SECRET)
    fake.decrypt_hook = hook
    with pytest.raises(InternalError, match="CRC32C"):
        box(client, cache_size=0).open(sealed)


def test_a_damaged_blob_is_refused(kms: tuple[FakeKms, KeyManagementServiceClient]) -> None:
    _, client = kms
    b = box(client)
    sealed = b.seal(SECRET)
    damaged = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(InternalError, match="damaged"):
        b.open(damaged)
    wrapped_damaged = bytearray(sealed)
    wrapped_damaged[10] ^= 1  # inside the wrapped key: KMS refuses it
    with pytest.raises(InternalError, match="Decrypt"):
        box(client, cache_size=0).open(bytes(wrapped_damaged))
    for junk in (b"", b"PVK1", b"PVK1\x00\xff" + b"x" * 10, b"nope" + sealed[4:]):
        with pytest.raises(InternalError):
            b.open(junk)


def test_unavailable_is_transient_and_bounded(
    kms: tuple[FakeKms, KeyManagementServiceClient],
) -> None:
    fake, client = kms
    fake.abort = grpc.StatusCode.UNAVAILABLE
    started = time.monotonic()
    with pytest.raises(Unavailable, match="Encrypt"):
        box(client).seal(SECRET)
    assert time.monotonic() - started < 3
    assert len(fake.encrypts) > 1


def test_permission_denied_is_internal_not_retried(
    kms: tuple[FakeKms, KeyManagementServiceClient],
) -> None:
    fake, client = kms
    fake.abort = grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(InternalError, match="PermissionDenied"):
        box(client).seal(SECRET)
    assert len(fake.encrypts) == 1


def test_key_name_is_validated_and_the_client_is_lazy() -> None:
    with pytest.raises(ValueError, match="key_name"):
        KmsEnvelope(key_name=KEY + "/cryptoKeyVersions/1")
    assert KEY in repr(KmsEnvelope(key_name=KEY))

"""KmsSigner against a wire-level Cloud KMS server (gRPC, on 127.0.0.1).

The server implements ``google.cloud.kms.v1.KeyManagementService`` GetPublicKey and
AsymmetricSign with a real Ed25519 key and real CRC32Cs, checking each request's
``data_crc32c`` the way KMS does. The real `KeyManagementServiceClient` reaches it through an
insecure-channel transport (``client_options`` alone would make the client try TLS).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field

import google_crc32c
import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from google.cloud.kms_v1 import KeyManagementServiceClient
from google.cloud.kms_v1.services.key_management_service.transports import (
    KeyManagementServiceGrpcTransport,
)
from google.cloud.kms_v1.types import (
    AsymmetricSignRequest,
    AsymmetricSignResponse,
    CryptoKeyVersion,
    GetPublicKeyRequest,
    PublicKey,
)

from proveniq.adapters.gcp.kms import KmsSigner
from proveniq.errors import SignatureError, Unavailable
from proveniq.log.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint, with_timestamp
from proveniq.log.note import NoteVerifier

KEY_VERSION = (
    "projects/demo-proveniq/locations/europe-west1/keyRings/ledger/cryptoKeys/checkpoints/"
    "cryptoKeyVersions/1"
)
ORIGIN = "ledger.proveniq.example/log"
ED25519 = CryptoKeyVersion.CryptoKeyVersionAlgorithm.EC_SIGN_ED25519


def crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


def raw_public_key(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


SignHook = Callable[[AsymmetricSignRequest, AsymmetricSignResponse], AsymmetricSignResponse]
KeyHook = Callable[[PublicKey], PublicKey]


@dataclass
class FakeKms:
    """One Ed25519 CryptoKeyVersion. Hooks may rewrite a response; `abort` fails every call.

    Like KMS, a request whose ``data_crc32c`` does not match its data is refused
    (INVALID_ARGUMENT), or, with ``report_crc_mismatch_as_unverified``, answered with
    ``verified_data_crc32c=False``. ``corrupt_in_transit`` flips a bit of the received data
    before that check, as a damaged network path would.
    """

    private_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    signing_key: Ed25519PrivateKey | None = None  # sign with another key (misconfiguration)
    sign_requests: list[AsymmetricSignRequest] = field(default_factory=list)
    key_requests: list[GetPublicKeyRequest] = field(default_factory=list)
    crc_checks: list[bool] = field(default_factory=list)
    sign_hook: SignHook | None = None
    key_hook: KeyHook | None = None
    abort: grpc.StatusCode | None = None
    delay: float = 0.0
    corrupt_in_transit: bool = False
    report_crc_mismatch_as_unverified: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get_public_key(
        self, request: GetPublicKeyRequest, context: grpc.ServicerContext
    ) -> PublicKey:
        with self.lock:
            self.key_requests.append(request)
        self._maybe_fail(context)
        if request.name != KEY_VERSION:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{request.name} not found")
        pem = self.private_key.public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
        )
        response = PublicKey(
            pem=pem.decode(), pem_crc32c=crc(pem), algorithm=ED25519, name=request.name
        )
        return self.key_hook(response) if self.key_hook else response

    def asymmetric_sign(
        self, request: AsymmetricSignRequest, context: grpc.ServicerContext
    ) -> AsymmetricSignResponse:
        with self.lock:
            self.sign_requests.append(AsymmetricSignRequest(request))
        self._maybe_fail(context)
        if request.name != KEY_VERSION:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{request.name} not found")
        data = bytes(request.data)
        if self.corrupt_in_transit:
            data = bytes([data[0] ^ 0x01]) + data[1:]
        has_crc = "data_crc32c" in request
        crc_ok = has_crc and request.data_crc32c == crc(data)
        with self.lock:
            self.crc_checks.append(crc_ok)
        if has_crc and not crc_ok and not self.report_crc_mismatch_as_unverified:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "data_crc32c does not match data")
        signature = (self.signing_key or self.private_key).sign(data)
        response = AsymmetricSignResponse(
            signature=signature,
            signature_crc32c=crc(signature),
            verified_data_crc32c=crc_ok,
            name=request.name,
        )
        return self.sign_hook(request, response) if self.sign_hook else response

    def _maybe_fail(self, context: grpc.ServicerContext) -> None:
        if self.delay:
            time.sleep(self.delay)
        if self.abort is not None:
            context.abort(self.abort, f"injected {self.abort.name}")


@pytest.fixture
def kms() -> Iterator[tuple[FakeKms, str]]:
    fake = FakeKms()
    handler = grpc.method_handlers_generic_handler(
        "google.cloud.kms.v1.KeyManagementService",
        {
            "GetPublicKey": grpc.unary_unary_rpc_method_handler(
                fake.get_public_key,
                request_deserializer=GetPublicKeyRequest.deserialize,
                response_serializer=PublicKey.serialize,
            ),
            "AsymmetricSign": grpc.unary_unary_rpc_method_handler(
                fake.asymmetric_sign,
                request_deserializer=AsymmetricSignRequest.deserialize,
                response_serializer=AsymmetricSignResponse.serialize,
            ),
        },
    )
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    srv.add_generic_rpc_handlers((handler,))
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    yield fake, f"127.0.0.1:{port}"
    srv.stop(grace=None)


@pytest.fixture
def server(kms: tuple[FakeKms, str]) -> FakeKms:
    return kms[0]


@pytest.fixture
def client(kms: tuple[FakeKms, str]) -> Iterator[KeyManagementServiceClient]:
    channel = grpc.insecure_channel(kms[1])
    yield KeyManagementServiceClient(transport=KeyManagementServiceGrpcTransport(channel=channel))
    channel.close()


@pytest.fixture
def signer(client: KeyManagementServiceClient) -> KmsSigner:
    return KmsSigner(name=ORIGIN, key_version=KEY_VERSION, client=client, timeout=2.0)


def checkpoint(size: int = 7) -> Checkpoint:
    return with_timestamp(
        Checkpoint(origin=ORIGIN, size=size, root_hash=bytes(range(32))), 1_790_000_000_000
    )


def test_checkpoint_signed_through_kms_opens_with_the_servers_public_key(
    server: FakeKms, signer: KmsSigner
) -> None:
    cp = checkpoint()
    text = sign_checkpoint(cp, [signer])

    verifier = NoteVerifier.from_public_key(
        name=ORIGIN, public_key=raw_public_key(server.private_key)
    )
    opened = open_checkpoint(text, [verifier], origin=ORIGIN)
    assert opened.checkpoint == cp
    assert opened.note.verified_by == (ORIGIN,)
    assert signer.public_key == raw_public_key(server.private_key)
    assert signer.key_id == verifier.key_id

    body = cp.to_body().encode()
    [request] = server.sign_requests
    assert request.name == KEY_VERSION
    assert bytes(request.data) == body
    assert request.data_crc32c == crc(body)
    assert not request.digest  # Ed25519 signs the raw data, never a digest
    assert server.crc_checks == [True]


def test_public_key_is_fetched_once_and_cached(server: FakeKms, signer: KmsSigner) -> None:
    for size in range(3):
        sign_checkpoint(checkpoint(size), [signer])
    assert len(server.key_requests) == 1
    assert server.key_requests[0].name == KEY_VERSION
    assert len(server.sign_requests) == 3


def test_client_is_built_lazily() -> None:
    # No client, no credentials, no network: constructing the signer must not need any.
    s = KmsSigner(name=ORIGIN, key_version=KEY_VERSION)
    assert s.name == ORIGIN
    assert KEY_VERSION in repr(s)


@pytest.mark.parametrize(
    "key_version", ["", "projects/p/keyRings/r/cryptoKeys/k", KEY_VERSION + "/extra"]
)
def test_rejects_a_malformed_key_version(key_version: str) -> None:
    with pytest.raises(ValueError, match="key_version"):
        KmsSigner(name=ORIGIN, key_version=key_version)


def test_wrong_signature_crc32c_is_refused(server: FakeKms, signer: KmsSigner) -> None:
    def bad_crc(_: AsymmetricSignRequest, r: AsymmetricSignResponse) -> AsymmetricSignResponse:
        r.signature_crc32c = (r.signature_crc32c + 1) % 2**32
        return r

    server.sign_hook = bad_crc
    with pytest.raises(SignatureError, match="CRC32C") as e:
        signer.sign(b"hello\n")
    assert e.value.what == "kms signature_crc32c"


def test_missing_signature_crc32c_is_refused(server: FakeKms, signer: KmsSigner) -> None:
    def no_crc(_: AsymmetricSignRequest, r: AsymmetricSignResponse) -> AsymmetricSignResponse:
        return AsymmetricSignResponse(signature=r.signature, verified_data_crc32c=True, name=r.name)

    server.sign_hook = no_crc
    with pytest.raises(SignatureError, match="CRC32C"):
        signer.sign(b"hello\n")


def test_unverified_data_crc32c_is_refused(server: FakeKms, signer: KmsSigner) -> None:
    def unverified(_: AsymmetricSignRequest, r: AsymmetricSignResponse) -> AsymmetricSignResponse:
        r.verified_data_crc32c = False
        return r

    server.sign_hook = unverified
    with pytest.raises(SignatureError, match="did not verify the CRC32C") as e:
        signer.sign(b"hello\n")
    assert e.value.what == "kms data_crc32c"


def test_the_adapter_sends_a_data_crc32c_that_the_servers_check_accepts(
    server: FakeKms, signer: KmsSigner
) -> None:
    messages = [b"", b"\x00", b"hello\n", bytes(range(256)) * 40]
    for m in messages:
        signer.sign(m)
    assert [bytes(r.data) for r in server.sign_requests] == messages
    assert all("data_crc32c" in r for r in server.sign_requests)
    assert [r.data_crc32c for r in server.sign_requests] == [crc(m) for m in messages]
    assert server.crc_checks == [True] * len(messages)


@pytest.mark.parametrize("as_unverified", [False, True], ids=["invalid-argument", "unverified"])
def test_data_corrupted_in_transit_is_caught_by_the_servers_crc_check(
    server: FakeKms, signer: KmsSigner, as_unverified: bool
) -> None:
    _ = signer.public_key
    server.corrupt_in_transit = True
    server.report_crc_mismatch_as_unverified = as_unverified
    with pytest.raises(SignatureError):
        signer.sign(b"hello\n")
    assert server.crc_checks == [False]  # the server's check saw the corruption
    assert len(server.sign_requests) == 1  # a permanent refusal: not retried


def test_corruption_a_careless_server_signs_anyway_fails_local_verification(
    server: FakeKms, signer: KmsSigner
) -> None:
    server.corrupt_in_transit = True
    server.report_crc_mismatch_as_unverified = True  # do not refuse the request ...

    def careless(_: AsymmetricSignRequest, r: AsymmetricSignResponse) -> AsymmetricSignResponse:
        r.verified_data_crc32c = True  # claims a check it did not make
        return r

    server.sign_hook = careless
    with pytest.raises(SignatureError, match="does not verify") as e:
        signer.sign(b"hello\n")
    assert e.value.what == "kms signature"


def test_response_for_another_key_version_is_refused(server: FakeKms, signer: KmsSigner) -> None:
    def other(_: AsymmetricSignRequest, r: AsymmetricSignResponse) -> AsymmetricSignResponse:
        r.name = KEY_VERSION[:-1] + "2"
        return r

    server.sign_hook = other
    with pytest.raises(SignatureError, match="another key version") as e:
        signer.sign(b"hello\n")
    assert e.value.found == KEY_VERSION[:-1] + "2"


def _wrong_pem_crc(k: PublicKey) -> PublicKey:
    k.pem_crc32c = (k.pem_crc32c + 1) % 2**32
    return k


def _no_pem_crc(k: PublicKey) -> PublicKey:
    return PublicKey(pem=k.pem, algorithm=k.algorithm, name=k.name)


def _wrong_algorithm(k: PublicKey) -> PublicKey:
    k.algorithm = CryptoKeyVersion.CryptoKeyVersionAlgorithm.EC_SIGN_P256_SHA256
    return k


def _wrong_name(k: PublicKey) -> PublicKey:
    k.name = KEY_VERSION[:-1] + "2"
    return k


def _not_ed25519(k: PublicKey) -> PublicKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return PublicKey(pem=pem.decode(), pem_crc32c=crc(pem), algorithm=k.algorithm, name=k.name)


def _garbage_pem(k: PublicKey) -> PublicKey:
    pem = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    return PublicKey(pem=pem.decode(), pem_crc32c=crc(pem), algorithm=k.algorithm, name=k.name)


@pytest.mark.parametrize(
    ("hook", "check"),
    [
        (_wrong_pem_crc, "kms pem_crc32c"),
        (_no_pem_crc, "kms pem_crc32c"),
        (_wrong_algorithm, "kms key algorithm"),
        (_wrong_name, "kms public key"),
        (_not_ed25519, "kms public key"),
        (_garbage_pem, "kms public key"),
    ],
)
def test_a_bad_public_key_response_is_refused_and_nothing_is_signed(
    server: FakeKms, signer: KmsSigner, hook: KeyHook, check: str
) -> None:
    server.key_hook = hook
    with pytest.raises(SignatureError) as e:
        _ = signer.public_key
    assert e.value.what == check
    with pytest.raises(SignatureError):
        sign_checkpoint(checkpoint(), [signer])
    assert server.sign_requests == []


def test_a_server_signing_with_another_key_is_refused(server: FakeKms, signer: KmsSigner) -> None:
    server.signing_key = Ed25519PrivateKey.generate()
    with pytest.raises(SignatureError, match="does not verify") as e:
        signer.sign(checkpoint().to_body().encode())
    assert e.value.what == "kms signature"
    with pytest.raises(SignatureError):
        sign_checkpoint(checkpoint(), [signer])


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL],
)
def test_transient_errors_raise_unavailable_in_bounded_time(
    server: FakeKms, client: KeyManagementServiceClient, code: grpc.StatusCode
) -> None:
    signer = KmsSigner(name=ORIGIN, key_version=KEY_VERSION, client=client, timeout=1.0)
    _ = signer.public_key
    server.abort = code
    started = time.monotonic()
    with pytest.raises(Unavailable) as e:
        signer.sign(b"hello\n")
    assert time.monotonic() - started < 3
    assert e.value.__cause__ is not None
    assert e.value.transient
    if code is not grpc.StatusCode.INTERNAL:  # UNAVAILABLE and DEADLINE_EXCEEDED are retried
        assert len(server.sign_requests) > 1


def test_unavailable_public_key_raises_unavailable(
    server: FakeKms, client: KeyManagementServiceClient
) -> None:
    signer = KmsSigner(name=ORIGIN, key_version=KEY_VERSION, client=client, timeout=1.0)
    server.abort = grpc.StatusCode.UNAVAILABLE
    started = time.monotonic()
    with pytest.raises(Unavailable, match="GetPublicKey"):
        _ = signer.public_key
    assert time.monotonic() - started < 3
    server.abort = None  # a failed fetch is not cached: the next call succeeds
    assert signer.public_key == raw_public_key(server.private_key)


def test_a_slow_server_raises_unavailable_within_the_timeout(
    server: FakeKms, client: KeyManagementServiceClient
) -> None:
    signer = KmsSigner(name=ORIGIN, key_version=KEY_VERSION, client=client, timeout=0.5)
    _ = signer.public_key
    server.delay = 1.0
    started = time.monotonic()
    with pytest.raises(Unavailable):
        signer.sign(b"hello\n")
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION]
)
def test_permanent_errors_raise_signature_error_without_retry(
    server: FakeKms, signer: KmsSigner, code: grpc.StatusCode
) -> None:
    _ = signer.public_key
    server.abort = code
    with pytest.raises(SignatureError, match="AsymmetricSign") as e:
        signer.sign(b"hello\n")
    assert e.value.__cause__ is not None
    assert len(server.sign_requests) == 1


def test_unreachable_server_raises_unavailable_within_the_timeout() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        client = KeyManagementServiceClient(
            transport=KeyManagementServiceGrpcTransport(channel=channel)
        )
        signer = KmsSigner(name=ORIGIN, key_version=KEY_VERSION, client=client, timeout=1.0)
        started = time.monotonic()
        with pytest.raises(Unavailable):
            _ = signer.public_key
        assert time.monotonic() - started < 3
    finally:
        channel.close()

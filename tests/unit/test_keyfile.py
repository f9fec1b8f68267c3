"""Local key files: 0600 PKCS#8 creation, reload, public keys as PEM or verifier key strings."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from proveniq.adapters.local.keyfile import load_or_create_signer, write_public_key_pem
from proveniq.errors import FormatError
from proveniq.log.keys import PublicKey, load_public_key
from proveniq.log.note import open_note, sign_note
from proveniq.log.signer import verifier_key_string

NAME = "ledger.proveniq.example/log"
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"


def test_key_file_is_created_0600_and_reloads_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "nested" / "log.pem"
    signer = load_or_create_signer(path, name=NAME)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")
    assert [p.name for p in path.parent.iterdir()] == ["log.pem"]

    again = load_or_create_signer(path, name=NAME)
    assert again.public_key == signer.public_key
    text = sign_note("hello\n", [again])
    pub = load_public_key(verifier_key_string(signer.name, signer.public_key))
    assert open_note(text, [pub.verifier()]).verified_by == (NAME,)


def test_existing_pkcs8_key_is_loaded(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "existing.pem"
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    signer = load_or_create_signer(path, name=NAME)
    assert signer.public_key == key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_concurrent_creation_yields_one_key(tmp_path: Path) -> None:
    path = tmp_path / "race.pem"
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = set(pool.map(lambda _: load_or_create_signer(path, name=NAME).public_key, range(16)))
    assert len(keys) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["race.pem"]


@pytest.mark.parametrize(
    "pem",
    [
        pytest.param(b"not a key\n", id="garbage"),
        pytest.param(
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
            ),
            id="p256",
        ),
        pytest.param(
            Ed25519PrivateKey.generate().private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"pw")
            ),
            id="encrypted",
        ),
    ],
)
def test_unusable_key_files_are_refused(tmp_path: Path, pem: bytes) -> None:
    path = tmp_path / "bad.pem"
    path.write_bytes(pem)
    with pytest.raises(FormatError):
        load_or_create_signer(path, name=NAME)


def test_public_key_pem_round_trip(tmp_path: Path) -> None:
    signer = load_or_create_signer(tmp_path / "log.pem", name=NAME)
    pem_path = tmp_path / "public" / "log.pub.pem"
    write_public_key_pem(signer, pem_path)
    assert pem_path.read_text().startswith("-----BEGIN PUBLIC KEY-----\n")
    assert stat.S_IMODE(pem_path.stat().st_mode) == 0o644

    from_file = load_public_key(pem_path)
    assert from_file == PublicKey(name=None, public_key=signer.public_key)
    assert load_public_key(pem_path.read_text()) == from_file
    assert load_public_key(str(pem_path)) == from_file

    text = sign_note("hello\n", [signer])
    with pytest.raises(FormatError, match="needs a key name"):
        from_file.verifier()
    assert open_note(text, [from_file.verifier(name=NAME)]).verified_by == (NAME,)


def test_verifier_key_string_loads_from_text_and_file(tmp_path: Path) -> None:
    spec = load_public_key(SPEC_VKEY)
    assert spec.name == "example.com/foo"
    assert verifier_key_string("example.com/foo", spec.public_key) == SPEC_VKEY
    path = tmp_path / "foo.vkey"
    path.write_text(SPEC_VKEY + "\n")
    assert load_public_key(path) == spec
    assert load_public_key(str(path)) == spec
    assert spec.verifier().key_string() == SPEC_VKEY


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("example.com/foo+530d903a", id="truncated-vkey"),
        pytest.param(SPEC_VKEY.replace("530d903a", "530d903b"), id="wrong-key-id"),
        pytest.param("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", id="bad-pem"),
        pytest.param(
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            .decode(),
            id="p256-pem",
        ),
    ],
)
def test_malformed_public_keys_are_refused(text: str) -> None:
    with pytest.raises(FormatError):
        load_public_key(text)

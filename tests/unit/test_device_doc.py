"""docs/DEVICES.md's worked example is real output: recompute it and find it verbatim."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proveniq.intake.devices.message import REASONS, Accepted, build, check_payload, verify
from proveniq.intake.devices.registry import Device, encode_key
from proveniq.log.canonical import canonicalize

DOC = Path(__file__).resolve().parents[2] / "docs" / "DEVICES.md"
SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"  # RFC 8032 test 1
SENT = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text()


def test_the_worked_example_is_recomputed(doc: str) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(SEED))
    public = key.public_key().public_bytes_raw()
    assert public.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    m = build(
        device="locker-7",
        counter=42,
        sent_at=SENT,
        type="custody.deposited",
        subject="asset-0001",
        data={"compartment": 3, "door": "closed", "weight_g": 1250},
        sign=key.sign,
    )
    example = doc[doc.index("<!-- worked-example -->") :]
    assert SEED in example
    assert f"`{encode_key(public)}`" in example
    assert f"```text\n{m.data.decode()}\n```" in example
    assert f"signature={m.attributes['signature']}\n" in example
    assert "device=locker-7\n" in example

    device = Device(
        device_id="locker-7",
        tenant="acme",
        kind="locker",
        public_key=public,
        created_at=SENT,
        updated_at=SENT,
    )
    v = verify(m, device, now=SENT + timedelta(seconds=1))
    assert isinstance(v, Accepted)
    payload = dict(v.event().payload)
    canonical = canonicalize(payload)
    assert f"```text\n{canonical.decode()}\n```" in example
    assert f"`{hashlib.sha256(canonical).hexdigest()}`" in example
    assert check_payload(payload, keys=[public]).raw == m.data


def test_every_dead_letter_reason_is_documented(doc: str) -> None:
    table = doc[doc.index("### Dead-letter reasons") :]
    documented = set(re.findall(r"^\| `([a-z_]+)`(?: / `([a-z_]+)`)?", table, flags=re.M))
    names = {n for pair in documented for n in pair if n}
    assert names == set(REASONS)

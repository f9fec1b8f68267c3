"""Telemetry messages: canonical bytes, schema, signature, counters, skew, and the payload that
lets a bundle holder re-check the device's signature."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from proveniq.errors import FormatError, SignatureError
from proveniq.intake.devices.message import (
    MAX_MESSAGE_BYTES,
    Accepted,
    Duplicate,
    Rejected,
    Telemetry,
    check_payload,
    event_payload,
    parse,
    verify,
)
from proveniq.intake.devices.registry import Device
from proveniq.log.canonical import canonicalize
from proveniq.ports import Message

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
SKEW = timedelta(minutes=15)


def raw_key(k: Ed25519PrivateKey) -> bytes:
    return k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def device(**kw: Any) -> Device:
    base: dict[str, Any] = {
        "device_id": "locker-1",
        "tenant": "acme",
        "kind": "locker",
        "public_key": raw_key(KEY),
        "created_at": T0,
        "updated_at": T0,
    }
    return Device(**{**base, **kw})


def body(**kw: Any) -> dict[str, Any]:
    return {
        "device": "locker-1",
        "counter": 1,
        "sent_at": "2026-11-24T10:00:00.000Z",
        "type": "device.reading",
        "subject": "asset-1",
        "data": {"temp_c": 21.5, "door": "closed"},
        **kw,
    }


def signed(
    data: bytes | dict[str, Any] | None = None, *, key: Ed25519PrivateKey = KEY, **attrs: str
) -> Message:
    raw = data if isinstance(data, bytes) else rfc8785.dumps(data if data is not None else body())
    attributes = {
        "device": "locker-1",
        "signature": base64.b64encode(key.sign(raw)).decode(),
        **attrs,
    }
    return Message(data=raw, attributes=attributes)


def reason(message: Message, d: Device | None = None, **kw: Any) -> str:
    v = verify(message, device() if d is None else d, now=kw.pop("now", T0), max_skew=SKEW, **kw)
    assert isinstance(v, Rejected), v
    return v.reason


def test_a_valid_message_is_accepted_and_becomes_one_event() -> None:
    m = signed()
    v = verify(m, device(), now=T0 + timedelta(seconds=2), max_skew=SKEW)
    assert isinstance(v, Accepted)
    t = v.telemetry
    assert (t.device, t.counter, t.type, t.subject) == ("locker-1", 1, "device.reading", "asset-1")
    assert t.sent_at == T0
    assert t.data == {"temp_c": 21.5, "door": "closed"}
    assert t.digest == hashlib.sha256(m.data).digest()
    assert t.idempotency_key == "device:locker-1:1"
    e = v.event()
    assert (e.type, e.subject, e.occurred_at) == ("device.reading", "asset-1", T0)
    assert e.payload == {
        "device": "locker-1",
        "counter": 1,
        "message": m.data.decode(),
        "signature": m.attributes["signature"],
        "public_key": base64.b64encode(raw_key(KEY)).decode(),
    }


def test_the_payload_survives_ledger_canonicalisation_and_re_verifies() -> None:
    m = signed(body(data={"note": 'quote " and \\ and ünïcode \u2028', "n": [1, 2]}))
    v = verify(m, device(), now=T0, max_skew=SKEW)
    assert isinstance(v, Accepted)
    stored = rfc8785.dumps(v.event().payload)  # what the ledger keeps and a bundle carries
    payload = json.loads(stored)
    t = check_payload(payload, keys=[raw_key(KEY)])
    assert t.raw == m.data
    assert check_payload(payload).counter == 1

    with pytest.raises(SignatureError):  # not one of the device's registered keys
        check_payload(payload, keys=[raw_key(OTHER)])
    tampered = {**payload, "message": payload["message"].replace("quote", "QUOTE")}
    assert tampered != payload
    with pytest.raises(SignatureError):
        check_payload(tampered)
    with pytest.raises(SignatureError):
        check_payload({**payload, "message": signed(body(counter=1, subject="x")).data.decode()})
    with pytest.raises(FormatError):
        check_payload({**payload, "counter": 2})
    with pytest.raises(FormatError):
        check_payload({k: v for k, v in payload.items() if k != "public_key"})


def test_a_forged_signature_is_refused() -> None:
    assert reason(signed(key=OTHER)) == "bad_signature"
    good = signed()
    assert reason(signed(good.data, signature="")) == "bad_signature"
    assert reason(signed(good.data, signature="not base64!")) == "bad_signature"
    short = base64.b64encode(KEY.sign(good.data)[:63]).decode()
    assert reason(signed(good.data, signature=short)) == "bad_signature"
    no_sig = Message(data=good.data, attributes={"device": "locker-1"})
    assert reason(no_sig) == "bad_signature"


def test_unknown_suspended_and_retired_devices_are_refused() -> None:
    v = verify(signed(), None, now=T0, max_skew=SKEW)
    assert isinstance(v, Rejected) and (v.reason, v.device) == ("unknown_device", "locker-1")
    assert reason(signed(), device(device_id="locker-2")) == "unknown_device"
    assert reason(signed(), device(status="suspended")) == "suspended_device"
    assert reason(signed(), device(status="retired")) == "retired_device"


def test_counters_must_increase_and_a_redelivery_is_a_duplicate() -> None:
    seen = device(last_counter=5)
    assert reason(signed(body(counter=5)), seen) == "replayed_counter"
    assert reason(signed(body(counter=4)), seen) == "replayed_counter"  # reordered
    assert isinstance(verify(signed(body(counter=6)), seen, now=T0, max_skew=SKEW), Accepted)

    m = signed(body(counter=5))
    same = verify(m, seen, now=T0, max_skew=SKEW, seen=hashlib.sha256(m.data).digest())
    assert isinstance(same, Duplicate) and same.telemetry.raw == m.data
    other = signed(body(counter=5, data={"temp_c": 99}))
    digest = hashlib.sha256(m.data).digest()
    assert reason(other, seen, seen=digest) == "replayed_counter"
    # A redelivery is acknowledged even once the device was suspended.
    late = verify(m, device(status="suspended"), now=T0, max_skew=SKEW, seen=digest)
    assert isinstance(late, Duplicate)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"counter": 1}',  # whitespace
        rfc8785.dumps(body()).replace(b'"counter":1', b'"counter":1.0'),
        rfc8785.dumps(body()).replace(b'{"counter"', b'{"device":"x","counter"'),  # duplicate
        b"\xff\xfe",
        b"not json",
        b'{"counter":' + b"9" * 5000 + b"}",  # beyond Python's int digit limit
        b'{"a":NaN}',
        rfc8785.dumps(body()) + b"\n",
    ],
)
def test_data_that_is_not_canonical_json_is_refused(raw: bytes) -> None:
    assert reason(signed(raw)) == "non_canonical"


def test_key_order_must_be_canonical() -> None:
    b = body()
    reordered = "{" + ",".join(f'"{k}":{rfc8785.dumps(b[k]).decode()}' for k in reversed(b)) + "}"
    assert reason(signed(reordered.encode())) == "non_canonical"


def test_oversized_data_is_refused_before_parsing() -> None:
    big = signed(body(data={"blob": "x" * MAX_MESSAGE_BYTES}))
    assert len(big.data) > MAX_MESSAGE_BYTES
    assert reason(big) == "oversized"
    fits = signed(body(data={"blob": "x" * (MAX_MESSAGE_BYTES - 200)}))
    assert isinstance(verify(fits, device(), now=T0, max_skew=SKEW), Accepted)


@pytest.mark.parametrize(
    "data",
    [
        {k: v for k, v in body().items() if k != "sent_at"},
        body(extra=1),
        body(counter=0),
        body(counter=True),
        body(counter="1"),
        body(type="asset.created"),
        body(type="custody.Handed"),
        body(type="custody.handed.over"),
        body(subject="has space"),
        body(subject=""),
        body(device="bad:id"),
        body(data=[1]),
        body(data={"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}),
        body(sent_at="2026-11-24T10:00:00+00:00"),
        body(sent_at="2026-11-24 10:00:00Z"),
        body(sent_at="2026-13-24T10:00:00Z"),
        body(sent_at=1732442400),
        [1, 2],
    ],
)
def test_bad_schema_is_refused(data: Any) -> None:
    m = signed(rfc8785.dumps(data))
    assert reason(m) == "bad_schema"


def test_the_device_attribute_must_match_the_data() -> None:
    assert reason(signed(device="locker-2")) == "device_mismatch"
    m = signed()
    assert reason(Message(data=m.data, attributes={"signature": m.attributes["signature"]})) == (
        "device_mismatch"
    )


def test_sent_at_must_be_within_the_skew_of_the_publish_time() -> None:
    m = signed()
    assert reason(m, now=T0 + SKEW + timedelta(seconds=1)) == "stale_sent_at"
    assert reason(m, now=T0 - SKEW - timedelta(seconds=1)) == "future_sent_at"
    for now in (T0 + SKEW, T0 - SKEW):
        assert isinstance(verify(m, device(), now=now, max_skew=SKEW), Accepted)


def test_sent_at_accepts_rfc3339_utc_precisions() -> None:
    for text, micro in [
        ("2026-11-24T10:00:00Z", 0),
        ("2026-11-24T10:00:00.5Z", 500000),
        ("2026-11-24T10:00:00.123456789Z", 123456),
    ]:
        t = parse(signed(body(sent_at=text)))
        assert isinstance(t, Telemetry) and t.sent_at == T0.replace(microsecond=micro)


def test_a_smart_tag_bound_to_an_asset_reports_only_that_asset() -> None:
    tag = device(kind="smart-tag", asset="asset-1")
    assert isinstance(verify(signed(), tag, now=T0, max_skew=SKEW), Accepted)
    assert reason(signed(body(subject="asset-2")), tag) == "subject_mismatch"
    locker = device(asset="asset-1")  # a locker holds many assets
    assert isinstance(
        verify(signed(body(subject="asset-2")), locker, now=T0, max_skew=SKEW), Accepted
    )
    custody = signed(body(type="custody.deposited"))
    assert isinstance(verify(custody, locker, now=T0, max_skew=SKEW), Accepted)


def test_a_rotation_overlap_accepts_both_keys_then_only_the_new_one() -> None:
    until = T0 + timedelta(minutes=10)
    rotated = device(public_key=raw_key(OTHER), previous_key=raw_key(KEY), previous_key_until=until)
    old = signed(body(counter=1))
    new = signed(body(counter=2), key=OTHER)
    during = verify(old, rotated, now=T0, max_skew=SKEW)
    assert isinstance(during, Accepted) and during.public_key == raw_key(KEY)
    assert isinstance(verify(new, rotated, now=T0, max_skew=SKEW), Accepted)
    after = until + timedelta(seconds=1)
    late_old = signed(body(counter=3, sent_at="2026-11-24T10:10:01.000Z"))
    late_new = signed(body(counter=3, sent_at="2026-11-24T10:10:01.000Z"), key=OTHER)
    assert reason(late_old, rotated, now=after) == "bad_signature"
    assert isinstance(verify(late_new, rotated, now=after, max_skew=SKEW), Accepted)


def test_event_payload_is_the_documented_shape() -> None:
    t = parse(signed())
    assert isinstance(t, Telemetry)
    payload = event_payload(t, raw_key(KEY))
    assert sorted(payload) == ["counter", "device", "message", "public_key", "signature"]
    assert canonicalize(payload)  # representable as the ledger's canonical JSON
    assert replace(t, counter=2).idempotency_key == "device:locker-1:2"


def test_a_forgery_reusing_an_accepted_counter_is_a_bad_signature_not_a_replay() -> None:
    """Anyone who can publish must not be able to make a device look like it replays."""
    accepted = signed(body(counter=5))
    digest = hashlib.sha256(accepted.data).digest()
    forged = signed(body(counter=5, data={"temp_c": 99}), key=OTHER)
    assert reason(forged, device(last_counter=5), seen=digest) == "bad_signature"

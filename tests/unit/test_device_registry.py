"""Device registry values: register / patch validation, key rotation, the API view."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proveniq.errors import Conflict, ValidationError
from proveniq.intake.devices.registry import (
    DEFAULT_KEY_OVERLAP,
    apply_patch,
    decode_key,
    parse_patch,
    parse_register,
)

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
KEY = bytes(range(32))
KEY2 = bytes(range(100, 132))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def body(**kw: Any) -> dict[str, Any]:
    return {"device_id": "tag-1", "kind": "smart-tag", "public_key": b64(KEY), **kw}


def test_register_builds_an_active_device_of_the_tenant() -> None:
    d = parse_register(body(asset="asset-7"), tenant="acme", now=T0)
    assert (d.device_id, d.tenant, d.kind, d.public_key, d.asset) == (
        "tag-1",
        "acme",
        "smart-tag",
        KEY,
        "asset-7",
    )
    assert (d.status, d.last_counter, d.accepted, d.rejected) == ("active", 0, 0, {})
    assert d.actor == "device:tag-1"
    assert d.to_json() == {
        "device_id": "tag-1",
        "kind": "smart-tag",
        "public_key": b64(KEY),
        "previous_key": None,
        "previous_key_until": None,
        "asset": "asset-7",
        "status": "active",
        "created_at": "2026-11-24T10:00:00.000000Z",
        "updated_at": "2026-11-24T10:00:00.000000Z",
        "last_counter": 0,
        "last_seen": None,
        "accepted": 0,
        "rejected": {},
    }


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"kind": "locker", "public_key": b64(KEY)}, "device_id"),
        (body(device_id="has space"), "device_id"),
        (body(device_id="a:b"), "device_id"),  # ':' would make actor/keys ambiguous
        (body(device_id="x" * 65), "device_id"),
        (body(device_id="tag-1\n"), "device_id"),
        (body(kind="drone"), "kind"),
        (body(public_key=b64(KEY[:31])), "public_key"),
        (body(public_key=b64(KEY) + "="), "public_key"),
        (body(public_key=b64(KEY).replace("A", "-")), "public_key"),
        (body(public_key=12), "public_key"),
        (body(asset="bad asset"), "asset"),
        (body(colour="red"), "colour"),
    ],
)
def test_register_refuses_bad_fields_naming_them(request_body: Any, field: str) -> None:
    with pytest.raises(ValidationError) as e:
        parse_register(request_body, tenant="acme", now=T0)
    assert e.value.field == field


def test_register_refuses_a_non_object() -> None:
    with pytest.raises(ValidationError) as e:
        parse_register(["tag-1"], tenant="acme", now=T0)
    assert e.value.field == "body"


def test_decode_key_needs_canonical_standard_base64_of_32_bytes() -> None:
    assert decode_key(b64(KEY)) == KEY
    urlsafe = base64.urlsafe_b64encode(bytes([251] * 32)).decode()
    with pytest.raises(ValidationError):
        decode_key(urlsafe)
    with pytest.raises(ValidationError):
        decode_key(b64(KEY)[:-2] + "x=")  # non-zero padding bits: not the canonical encoding


def test_rotation_keeps_the_previous_key_until_the_overlap_ends() -> None:
    d = parse_register(body(), tenant="acme", now=T0)
    later = T0 + timedelta(hours=2)
    rotated = apply_patch(d, parse_patch({"public_key": b64(KEY2)}), now=later)
    assert (rotated.public_key, rotated.previous_key) == (KEY2, KEY)
    assert rotated.previous_key_until == later + DEFAULT_KEY_OVERLAP
    assert rotated.keys_at(later) == (KEY2, KEY)
    assert rotated.keys_at(later + DEFAULT_KEY_OVERLAP) == (KEY2,)
    assert rotated.updated_at == later

    no_overlap = apply_patch(
        d, parse_patch({"public_key": b64(KEY2), "key_overlap_seconds": 0}), now=later
    )
    assert (no_overlap.previous_key, no_overlap.keys_at(later)) == (None, (KEY2,))
    same = apply_patch(d, parse_patch({"public_key": b64(KEY)}), now=later)
    assert same.previous_key is None  # "rotating" to the same key changes nothing


def test_patch_status_and_asset() -> None:
    d = parse_register(body(asset="a-1"), tenant="acme", now=T0)
    suspended = apply_patch(d, parse_patch({"status": "suspended"}), now=T0)
    assert (suspended.status, suspended.asset) == ("suspended", "a-1")
    active = apply_patch(suspended, parse_patch({"status": "active", "asset": "a-2"}), now=T0)
    assert (active.status, active.asset) == ("active", "a-2")
    assert apply_patch(active, parse_patch({"asset": None}), now=T0).asset is None
    retired = apply_patch(active, parse_patch({"status": "retired"}), now=T0)
    with pytest.raises(Conflict):
        apply_patch(retired, parse_patch({"status": "active"}), now=T0)


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({}, "body"),
        ({"status": "deleted"}, "status"),
        ({"asset": 5}, "asset"),
        ({"key_overlap_seconds": 60}, "key_overlap_seconds"),
        ({"public_key": b64(KEY2), "key_overlap_seconds": -1}, "key_overlap_seconds"),
        ({"public_key": b64(KEY2), "key_overlap_seconds": 10**9}, "key_overlap_seconds"),
        ({"public_key": b64(KEY2), "key_overlap_seconds": True}, "key_overlap_seconds"),
        ({"public_key": "AAAA"}, "public_key"),
        ({"kind": "locker"}, "kind"),
    ],
)
def test_patch_refuses_bad_fields_naming_them(request_body: Any, field: str) -> None:
    with pytest.raises(ValidationError) as e:
        parse_patch(request_body)
    assert e.value.field == field

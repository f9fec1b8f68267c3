"""The pure policy tables, without a database: the Core manual's RBAC matrix, the asset
lifecycle, and the submission limits."""

from __future__ import annotations

import json

import pytest

from proveniq.access import rbac
from proveniq.errors import Forbidden, LifecycleConflict, PayloadTooLarge, ValidationError
from proveniq.ledger import lifecycle
from proveniq.ledger.submission import (
    MAX_DEPTH,
    MAX_EVENTS_PER_BATCH,
    MAX_PAYLOAD_BYTES,
    MAX_STRING,
    parse_batch,
    parse_single,
)
from proveniq.ports import Principal

# Core manual §6.4, row by row: permission -> org roles that hold it.
MATRIX = {
    "asset:create": {"OWNER", "ADMIN", "MEMBER"},
    "asset:read": {"OWNER", "ADMIN", "MEMBER", "VIEWER"},
    "asset:update": {"OWNER", "ADMIN", "MEMBER"},
    "asset:delete": {"OWNER", "ADMIN"},
    "org:settings": {"OWNER", "ADMIN"},
    "org:members": {"OWNER", "ADMIN"},
    "org:billing": {"OWNER"},
    "org:delete": {"OWNER"},
    "admin:audit": set(),
    "admin:users": set(),
    "admin:system": set(),
}


def member(role: str | None, global_role: str = "USER") -> Principal:
    return Principal(subject="key:x", tenant="t", org_role=role, global_role=global_role)  # type: ignore[arg-type]


@pytest.mark.parametrize("permission", sorted(MATRIX))
@pytest.mark.parametrize("role", ["OWNER", "ADMIN", "MEMBER", "VIEWER"])
def test_org_roles_follow_the_matrix(permission: str, role: str) -> None:
    assert rbac.allowed(member(role), permission) == (role in MATRIX[permission])


@pytest.mark.parametrize("permission", sorted(MATRIX))
def test_global_roles(permission: str) -> None:
    assert rbac.allowed(member(None, "ADMIN"), permission)
    assert rbac.allowed(member(None, "AUDITOR"), permission) == (
        permission in ("asset:read", "admin:audit")
    )
    assert not rbac.allowed(member(None, "INVESTOR"), permission)
    assert not rbac.allowed(member(None), permission)


def test_org_roles_grant_nothing_in_another_tenant() -> None:
    with pytest.raises(Forbidden):
        rbac.tenant_for(member("OWNER"), "other")
    with pytest.raises(Forbidden):
        rbac.require_in_other_tenant(member("OWNER"), "asset:read")
    rbac.require_in_other_tenant(member(None, "AUDITOR"), "asset:read")
    with pytest.raises(Forbidden):
        rbac.require_in_other_tenant(member(None, "AUDITOR"), "asset:create")
    with pytest.raises(ValidationError):
        rbac.tenant_for(
            Principal(subject="k", tenant=None, org_role=None, global_role="ADMIN"), None
        )


def test_unknown_permission_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        rbac.allowed(member("OWNER"), "asset:fly")


def test_the_lifecycle_walk() -> None:
    path = ["asset.created", "asset.submitted", "asset.verified", "asset.listed", "asset.sold"]
    status = None
    for t in path:
        status = lifecycle.next_status(t, status, subject="a")
    assert status == "SOLD"
    assert lifecycle.next_status("asset.updated", "LISTED", subject="a") == "LISTED"
    for t in ("asset.listed", "asset.submitted", "asset.updated"):
        with pytest.raises(LifecycleConflict):
            lifecycle.next_status(t, "SOLD", subject="a")
    assert lifecycle.next_status("asset.archived", "SOLD", subject="a") == "ARCHIVED"
    assert not lifecycle.governs("claim.created")


def test_every_transition_leads_to_a_known_status() -> None:
    for t, (before, after) in lifecycle.TRANSITIONS.items():
        assert t.startswith("asset.")
        assert after is None or after in lifecycle.STATUSES
        assert before <= lifecycle.STATUSES | {None}


def body(payload: object, **extra: object) -> bytes:
    return json.dumps(
        {"type": "claim.created", "subject": "c", "payload": payload, **extra}
    ).encode()


def test_submission_limits() -> None:
    assert parse_single(body({"a": "x" * MAX_STRING})).type == "claim.created"
    with pytest.raises(ValidationError) as e:
        parse_single(body({"a": "x" * (MAX_STRING + 1)}))
    assert e.value.field == "payload.a"
    deep: object = 1
    for _ in range(MAX_DEPTH):
        deep = {"d": deep}
    with pytest.raises(ValidationError):
        parse_single(body(deep))
    with pytest.raises(PayloadTooLarge):
        parse_single(body({f"k{i}": "x" * 10_000 for i in range(MAX_PAYLOAD_BYTES // 10_000 + 1)}))
    one = {"type": "claim.note", "subject": "c"}
    assert len(parse_batch(json.dumps({"events": [one] * MAX_EVENTS_PER_BATCH}).encode())) == 1000
    with pytest.raises(ValidationError):
        parse_batch(json.dumps({"events": [one] * (MAX_EVENTS_PER_BATCH + 1)}).encode())
    with pytest.raises(ValidationError) as e:
        parse_batch(json.dumps({"events": [one, {"type": "asset.flown", "subject": "a"}]}).encode())
    assert e.value.field == "events[1].type"
    with pytest.raises(ValidationError):
        parse_single(json.dumps({"type": "risk.scored", "subject": "c"}).encode())  # not partners'
    with pytest.raises(ValidationError):
        parse_single(body({}, occurred_at="yesterday"))

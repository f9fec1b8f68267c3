"""Subscriptions: patterns, matching, secrets, rotation with a 24 h overlap, and management."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proveniq.adapters.local.secretbox import LocalSecretBox
from proveniq.adapters.memory.webhooks import MemoryWebhookStore
from proveniq.errors import NotFound, ValidationError
from proveniq.followers.webhooks.guard import Guard, Policy, TargetRefused
from proveniq.followers.webhooks.manage import Subscriptions
from proveniq.followers.webhooks.subscriptions import (
    CORE_EVENT_TYPES,
    ROTATION_OVERLAP,
    Secrets,
    check_patterns,
    delivery_id,
    new_secret,
    pattern_matches,
    secret_key,
    webhook_type,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("pattern", "event_type", "matches"),
    [
        ("*", "asset.verified", True),
        ("*", "risk.scored", True),
        ("asset.verified", "asset.verified", True),
        ("asset.verified", "asset.verified_twice", False),
        ("asset.verified", "asset.created", False),
        ("claim.*", "claim.filed", True),
        ("claim.*", "claim.payout.sent", True),
        ("claim.*", "claims.filed", False),
        ("claim.*", "claim", False),
        ("claim.payout.*", "claim.payout.sent", True),
        ("claim.payout.*", "claim.filed", False),
    ],
)
def test_pattern_matching(pattern: str, event_type: str, matches: bool) -> None:
    assert check_patterns([pattern]) == (pattern,)
    assert pattern_matches(pattern, event_type) is matches


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "asset",
        "Asset.verified",
        "asset.*.verified",
        "*.verified",
        "asset.",
        "asets.*",
        "member.joined",
        "asset.verified ",
        "asset..x",
        "a.b.c.d.e",
    ],
)
def test_malformed_or_unknown_patterns_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError) as e:
        check_patterns([bad])
    assert e.value.field == "events[0]"


def test_patterns_are_deduplicated_and_must_not_be_empty() -> None:
    assert check_patterns(["claim.*", "asset.sold", "claim.*"]) == ("claim.*", "asset.sold")
    with pytest.raises(ValidationError, match="at least one"):
        check_patterns([])
    with pytest.raises(ValidationError, match="list"):
        check_patterns("claim.*")
    with pytest.raises(ValidationError, match="at most"):
        check_patterns([f"claim.e{i}" for i in range(51)])


def test_core_manual_names_are_delivered_under_their_own_names() -> None:
    for name in CORE_EVENT_TYPES:
        if not name.startswith("member."):
            assert webhook_type(name) == name
            assert check_patterns([name]) == (name,)
    with pytest.raises(ValidationError):  # not a ledger event: cannot be subscribed to
        check_patterns(["member.joined"])


def test_secret_is_whsec_base64_of_32_random_bytes() -> None:
    s = new_secret(lambda n: bytes(range(n)))
    assert s == "whsec_" + base64.b64encode(bytes(range(32))).decode()
    assert secret_key(s) == bytes(range(32))
    assert new_secret() != new_secret()
    for bad in ("abc", "whsec_!!!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValidationError):
            secret_key(bad)


def test_rotation_keeps_the_old_secret_signing_for_24_hours_then_stops() -> None:
    old, new = new_secret(), new_secret()
    rotated = Secrets(current=old).rotated(new, now=T0)
    assert rotated.active(T0) == (new, old)
    assert rotated.active(T0 + ROTATION_OVERLAP - timedelta(microseconds=1)) == (new, old)
    assert rotated.active(T0 + ROTATION_OVERLAP) == (new,)
    newest = new_secret()
    again = rotated.rotated(newest, now=T0 + timedelta(hours=1))
    assert again.active(T0 + timedelta(hours=1)) == (newest, new)  # the oldest is dropped
    assert old not in repr(rotated) and new not in repr(rotated)


def test_delivery_id_is_deterministic_per_subscription_and_event() -> None:
    a = delivery_id("wh_" + "0" * 24, "evt_1")
    assert a == delivery_id("wh_" + "0" * 24, "evt_1")
    assert a != delivery_id("wh_" + "1" * 24, "evt_1")
    assert a != delivery_id("wh_" + "0" * 24, "evt_2")
    assert a.startswith("dlv_") and len(a) == 36


@pytest.fixture
def service(tmp_path: Path) -> Subscriptions:
    store = MemoryWebhookStore(box=LocalSecretBox.load_or_create(tmp_path / "kek"))
    resolver = {"hooks.example.com": ["93.184.215.14"], "internal.example.com": ["10.1.2.3"]}
    return Subscriptions(
        store=store, guard=Guard(policy=Policy(), resolver=lambda h: resolver[h]), clock=lambda: T0
    )


def test_create_returns_the_secret_once_and_stores_it_sealed(service: Subscriptions) -> None:
    created = service.create(
        tenant="p1", url="https://hooks.example.com/in", events=["claim.*"], description="ops"
    )
    sub = created.subscription
    assert sub.id.startswith("wh_") and sub.enabled and sub.events == ("claim.*",)
    assert created.secret.startswith("whsec_")
    assert created.secret not in str(sub.to_json())
    store = service.store
    assert isinstance(store, MemoryWebhookStore)
    sealed = store.sealed[sub.id].current
    assert created.secret.encode() not in sealed
    assert store.secrets("p1", sub.id).current == created.secret
    assert service.list(tenant="p1") == [sub]
    assert service.list(tenant="p2") == []
    with pytest.raises(NotFound):
        service.get(tenant="p2", subscription_id=sub.id)


def test_create_and_update_refuse_urls_the_guard_refuses(service: Subscriptions) -> None:
    with pytest.raises(TargetRefused, match="private"):
        service.create(tenant="p1", url="https://internal.example.com/", events=["*"])
    with pytest.raises(TargetRefused, match="https"):
        service.create(tenant="p1", url="http://hooks.example.com/", events=["*"])
    sub = service.create(tenant="p1", url="https://hooks.example.com/", events=["*"]).subscription
    with pytest.raises(TargetRefused, match="link-local"):
        service.update(tenant="p1", subscription_id=sub.id, url="https://169.254.169.254/")
    assert service.get(tenant="p1", subscription_id=sub.id).url == "https://hooks.example.com/"


def test_update_disable_enable_delete_and_rotate(service: Subscriptions) -> None:
    created = service.create(tenant="p1", url="https://hooks.example.com/", events=["*"])
    sid = created.subscription.id
    off = service.update(tenant="p1", subscription_id=sid, enabled=False, events=["asset.sold"])
    assert not off.enabled and off.disabled_reason and off.events == ("asset.sold",)
    on = service.update(tenant="p1", subscription_id=sid, enabled=True)
    assert on.enabled and on.disabled_reason is None
    with pytest.raises(ValidationError):
        service.update(tenant="p1", subscription_id=sid, enabled="yes")  # type: ignore[arg-type]
    rotated = service.rotate_secret(tenant="p1", subscription_id=sid)
    assert rotated.previous_valid_until == T0 + ROTATION_OVERLAP
    assert service.store.secrets("p1", sid).active(T0) == (rotated.secret, created.secret)
    with pytest.raises(NotFound):
        service.rotate_secret(tenant="p2", subscription_id=sid)
    service.delete(tenant="p1", subscription_id=sid)
    assert service.list(tenant="p1") == []
    with pytest.raises(NotFound):
        service.get(tenant="p1", subscription_id=sid)
    with pytest.raises(ValidationError):
        service.get(tenant="p1", subscription_id="../etc")

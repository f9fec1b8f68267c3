"""Subscription management (Core manual §8.1 WEBHOOKS; permission ``org:settings``).

Every method is tenant-scoped: another tenant's subscription is `errors.NotFound`. URLs pass
the SSRF guard when a subscription is created or its URL changes. The signing secret is
returned once, by `create` and `rotate_secret`, and never again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from proveniq.errors import ValidationError
from proveniq.followers.webhooks.guard import Guard
from proveniq.followers.webhooks.ports import SubscriptionStore
from proveniq.followers.webhooks.subscriptions import (
    ROTATION_OVERLAP,
    Secrets,
    Subscription,
    check_description,
    check_patterns,
    check_subscription_id,
    new_secret,
    new_subscription_id,
)


@dataclass(frozen=True, kw_only=True)
class Created:
    subscription: Subscription
    secret: str  # shown once


@dataclass(frozen=True, kw_only=True)
class Rotated:
    secret: str  # the new current secret, shown once
    previous_valid_until: datetime  # the old secret signs beside it until then


class Subscriptions:
    def __init__(
        self,
        *,
        store: SubscriptionStore,
        guard: Guard,
        clock: Callable[[], datetime],
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.store = store
        self.guard = guard
        self.clock = clock
        self._random = random

    def create(
        self,
        *,
        tenant: str,
        url: str,
        events: Sequence[str],
        description: str = "",
        enabled: bool = True,
    ) -> Created:
        self.guard.check(url)
        patterns = check_patterns(events)
        now = self.clock()
        sub = Subscription(
            id=new_subscription_id(self._random),
            tenant=tenant,
            url=url,
            events=patterns,
            description=check_description(description),
            enabled=_bool(enabled, "enabled"),
            created_at=now,
            updated_at=now,
        )
        secret = new_secret(self._random)
        self.store.add_subscription(sub, Secrets(current=secret))
        return Created(subscription=sub, secret=secret)

    def list(self, *, tenant: str) -> list[Subscription]:
        return self.store.subscriptions(tenant)

    def get(self, *, tenant: str, subscription_id: str) -> Subscription:
        return self.store.subscription(tenant, check_subscription_id(subscription_id))

    def update(
        self,
        *,
        tenant: str,
        subscription_id: str,
        url: str | None = None,
        events: Sequence[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> Subscription:
        sub = self.get(tenant=tenant, subscription_id=subscription_id)
        changes: dict[str, object] = {}
        if url is not None:
            self.guard.check(url)
            changes["url"] = url
        if events is not None:
            changes["events"] = check_patterns(events)
        if description is not None:
            changes["description"] = check_description(description)
        if enabled is not None:
            changes["enabled"] = _bool(enabled, "enabled")
            if enabled:
                changes["disabled_reason"] = None
            elif sub.enabled:
                changes["disabled_reason"] = "disabled by the organization"
        if not changes:
            return sub
        updated = replace(sub, **changes, updated_at=self.clock())  # type: ignore[arg-type]
        self.store.save_subscription(updated)
        return updated

    def delete(self, *, tenant: str, subscription_id: str) -> None:
        self.store.delete_subscription(
            tenant, check_subscription_id(subscription_id), now=self.clock()
        )

    def rotate_secret(self, *, tenant: str, subscription_id: str) -> Rotated:
        sub = self.get(tenant=tenant, subscription_id=subscription_id)
        now = self.clock()
        secret = new_secret(self._random)
        rotated = self.store.secrets(tenant, sub.id).rotated(secret, now=now)
        self.store.save_secrets(tenant, sub.id, rotated, now=now)
        return Rotated(secret=secret, previous_valid_until=now + ROTATION_OVERLAP)


def _bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError("must be true or false", field=field)
    return value

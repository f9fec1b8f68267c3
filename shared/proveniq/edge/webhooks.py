"""Webhook subscription handlers (permission `org:settings`): create, list, read, update,
delete, rotate the secret, send a test event, list deliveries and replay one.

Secrets are shown once, on creation and rotation, and never again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proveniq.edge import params
from proveniq.edge.http import Call, Reply
from proveniq.edge.views import NO_STORE
from proveniq.errors import ValidationError
from proveniq.followers.webhooks.deliveries import MAX_PAGE, DeliveryView, Dispatcher
from proveniq.followers.webhooks.manage import Subscriptions
from proveniq.log.timefmt import format_time

_FIELDS = {"url", "events", "description", "enabled"}


class WebhookHandlers:
    def __init__(
        self,
        *,
        subscriptions: Callable[[], Subscriptions],
        dispatcher: Callable[[], Dispatcher],
    ) -> None:
        self._subscriptions = subscriptions
        self._dispatcher = dispatcher

    def create(self, call: Call) -> Reply:
        assert call.tenant is not None
        doc = params.json_object(call.body, _FIELDS)
        if "url" not in doc or "events" not in doc:
            raise ValidationError(
                "url and events are required", field="url" if "url" not in doc else "events"
            )
        created = self._subscriptions().create(
            tenant=call.tenant,
            url=doc["url"],
            events=doc["events"],
            description=doc.get("description", ""),
            enabled=doc.get("enabled", True),
        )
        data = {
            **created.subscription.to_json(),
            "secret": created.secret,
            "note": "the signing secret is shown once: store it now",
        }
        return Reply(status=201, data=data, headers=NO_STORE)

    def list(self, call: Call) -> Reply:
        assert call.tenant is not None
        subs = [s.to_json() for s in self._subscriptions().list(tenant=call.tenant)]
        return Reply(data=subs, meta={"count": len(subs)}, headers=NO_STORE)

    def get(self, call: Call) -> Reply:
        assert call.tenant is not None
        sub = self._subscriptions().get(
            tenant=call.tenant, subscription_id=call.params["webhook_id"]
        )
        return Reply(data=sub.to_json(), headers=NO_STORE)

    def update(self, call: Call) -> Reply:
        assert call.tenant is not None
        doc = params.json_object(call.body, _FIELDS)
        for k, v in doc.items():
            if v is None:
                raise ValidationError("must not be null (leave the field out to keep it)", field=k)
        if not doc:
            raise ValidationError("nothing to change", field="body")
        sub = self._subscriptions().update(
            tenant=call.tenant,
            subscription_id=call.params["webhook_id"],
            url=doc.get("url"),
            events=doc.get("events"),
            description=doc.get("description"),
            enabled=doc.get("enabled"),
        )
        return Reply(data=sub.to_json(), headers=NO_STORE)

    def delete(self, call: Call) -> Reply:
        assert call.tenant is not None
        self._subscriptions().delete(tenant=call.tenant, subscription_id=call.params["webhook_id"])
        return Reply(data={"id": call.params["webhook_id"], "deleted": True}, headers=NO_STORE)

    def rotate_secret(self, call: Call) -> Reply:
        assert call.tenant is not None
        _no_body(call)
        rotated = self._subscriptions().rotate_secret(
            tenant=call.tenant, subscription_id=call.params["webhook_id"]
        )
        data = {
            "id": call.params["webhook_id"],
            "secret": rotated.secret,
            "previous_valid_until": format_time(rotated.previous_valid_until),
            "note": "the new secret is shown once; the old one signs beside it until then",
        }
        return Reply(status=201, data=data, headers=NO_STORE)

    def test(self, call: Call) -> Reply:
        assert call.tenant is not None
        _no_body(call)
        view = self._dispatcher().send_test(
            tenant=call.tenant, subscription_id=call.params["webhook_id"]
        )
        return Reply(data=delivery_view(view), headers=NO_STORE)

    def deliveries(self, call: Call) -> Reply:
        assert call.tenant is not None
        limit = params.page_limit(call, default=50, maximum=MAX_PAGE)
        page = self._dispatcher().deliveries(
            tenant=call.tenant,
            subscription_id=call.params["webhook_id"],
            cursor=call.request.args.get("cursor") or None,
            limit=limit,
        )
        return Reply(
            data=[delivery_view(v) for v in page.items],
            meta={"count": len(page.items), "next_cursor": page.next_cursor},
            headers=NO_STORE,
        )

    def replay(self, call: Call) -> Reply:
        assert call.tenant is not None
        _no_body(call)
        d = self._dispatcher()
        delivery = d.replay(
            tenant=call.tenant,
            subscription_id=call.params["webhook_id"],
            delivery_id=call.params["delivery_id"],
        )
        view = d.delivery(
            tenant=call.tenant, subscription_id=delivery.subscription_id, delivery_id=delivery.id
        )
        return Reply(status=202, data=delivery_view(view), headers=NO_STORE)


def _no_body(call: Call) -> None:
    if call.body.strip() and call.body.strip() != b"{}":
        raise ValidationError("this endpoint takes no request body", field="body")


def delivery_view(v: DeliveryView) -> dict[str, Any]:
    d = v.delivery
    return {
        "id": d.id,
        "subscription_id": d.subscription_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "kind": d.kind,
        "state": d.state,
        "round": d.round,
        "attempts_made": d.attempt,
        "next_attempt_at": _t(d.next_attempt_at),
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": _t(d.created_at),
        "attempts": [
            {
                "round": a.round,
                "number": a.number,
                "at": _t(a.started_at),
                "status_code": a.status,
                "latency_ms": a.latency_ms,
                "error": a.error,
                "outcome": a.outcome,
                "next_attempt_at": _t(a.next_attempt_at),
            }
            for a in v.attempts
        ],
    }


def _t(value: Any) -> str | None:
    return None if value is None else format_time(value)

"""Device registry handlers (permission `org:settings`): register, list, read, patch."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from proveniq.edge import params
from proveniq.edge.http import Call, Reply
from proveniq.edge.views import NO_STORE
from proveniq.intake.devices.registry import apply_patch, parse_patch, parse_register
from proveniq.intake.devices.store import DeviceRegistry
from proveniq.log.canonical import parse_strict


class DeviceHandlers:
    def __init__(
        self, *, registry: Callable[[], DeviceRegistry], clock: Callable[[], datetime]
    ) -> None:
        self._registry = registry
        self._clock = clock

    def register(self, call: Call) -> Reply:
        assert call.tenant is not None
        device = parse_register(parse_strict(call.body), tenant=call.tenant, now=self._clock())
        return Reply(status=201, data=self._registry().register(device).to_json(), headers=NO_STORE)

    def list(self, call: Call) -> Reply:
        assert call.tenant is not None
        limit = params.page_limit(call, default=100, maximum=500)
        after = call.request.args.get("cursor") or None
        devices = self._registry().list(call.tenant, after=after, limit=limit)
        meta = {
            "count": len(devices),
            "next_cursor": devices[-1].device_id if len(devices) == limit else None,
        }
        return Reply(data=[d.to_json() for d in devices], meta=meta, headers=NO_STORE)

    def get(self, call: Call) -> Reply:
        assert call.tenant is not None
        device = self._registry().get(call.tenant, call.params["device_id"])
        return Reply(data=device.to_json(), headers=NO_STORE)

    def patch(self, call: Call) -> Reply:
        assert call.tenant is not None
        patch = parse_patch(parse_strict(call.body))
        now = self._clock()
        device = self._registry().update(
            call.tenant, call.params["device_id"], lambda d: apply_patch(d, patch, now=now)
        )
        return Reply(data=device.to_json(), headers=NO_STORE)

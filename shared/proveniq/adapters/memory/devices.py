"""In-memory twin of the device store (`intake.devices.store.DeviceStore`), for tests."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace

from proveniq.errors import Conflict, NotFound
from proveniq.intake.devices.registry import Device
from proveniq.intake.devices.store import MAX_LIST, AcceptedMessage, Known, Rejection


class MemoryDevices:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._devices: dict[str, Device] = {}
        self._messages: dict[tuple[str, int], bytes] = {}

    def register(self, device: Device) -> Device:
        stored = replace(device, last_counter=0, last_seen=None, accepted=0, rejected={})
        with self._lock:
            if device.device_id in self._devices:
                raise Conflict(f"device id {device.device_id} is already registered")
            self._devices[device.device_id] = stored
        return stored

    def get(self, tenant: str, device_id: str) -> Device:
        with self._lock:
            return self._get(tenant, device_id)

    def list(self, tenant: str, *, after: str | None = None, limit: int = 100) -> list[Device]:
        with self._lock:
            mine = sorted(
                (d for d in self._devices.values() if d.tenant == tenant),
                key=lambda d: d.device_id,
            )
        return [d for d in mine if after is None or d.device_id > after][: min(limit, MAX_LIST)]

    def update(self, tenant: str, device_id: str, change: Callable[[Device], Device]) -> Device:
        with self._lock:
            current = self._get(tenant, device_id)
            new = change(current)
            stored = replace(
                current,
                status=new.status,
                asset=new.asset,
                public_key=new.public_key,
                previous_key=new.previous_key,
                previous_key_until=new.previous_key_until,
                updated_at=new.updated_at,
            )
            self._devices[device_id] = stored
            return stored

    def resolve(self, wanted: Mapping[str, Collection[int]]) -> dict[str, Known]:
        with self._lock:
            return {
                i: Known(
                    device=self._devices[i],
                    seen={c: self._messages[(i, c)] for c in counters if (i, c) in self._messages},
                )
                for i, counters in wanted.items()
                if i in self._devices
            }

    def record(
        self,
        tenant: str,
        *,
        accepted: Sequence[AcceptedMessage] = (),
        rejected: Sequence[Rejection] = (),
    ) -> None:
        with self._lock:
            for a in accepted:
                d = self._devices.get(a.device_id)
                if d is None or d.tenant != tenant or (a.device_id, a.counter) in self._messages:
                    continue
                self._messages[(a.device_id, a.counter)] = a.digest
                newest = a.counter > d.last_counter
                self._devices[a.device_id] = replace(
                    d,
                    accepted=d.accepted + 1,
                    last_counter=max(d.last_counter, a.counter),
                    last_seen=a.sent_at if newest else d.last_seen,
                )
            for r in rejected:
                d = self._devices.get(r.device_id)
                if d is None or d.tenant != tenant:
                    continue
                counts = Counter(d.rejected)
                counts[r.reason] += 1
                self._devices[r.device_id] = replace(d, rejected=dict(counts))

    def _get(self, tenant: str, device_id: str) -> Device:
        d = self._devices.get(device_id)
        if d is None or d.tenant != tenant:
            raise NotFound(f"no device {device_id}")
        return d

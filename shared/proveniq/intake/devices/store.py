"""The device store port: the registry the HTTP routes manage, and the state ingest keeps.

Two narrow protocols, one adapter implements both (`adapters.memory.devices`,
`adapters.postgres.devices`):

    DeviceRegistry  register / get / list / update     tenant-scoped, for `/v1/devices`
    DeviceCounters  resolve / record                   for ingest

`resolve` is the one look-up by device id alone: a message names only its device, and the id
(unique across tenants) determines the tenant. Every other operation names the tenant.
Adapters raise only `errors.NotFound`, `errors.Conflict` and `errors.Unavailable`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from proveniq.intake.devices.message import Reason
from proveniq.intake.devices.registry import Device

MAX_LIST = 500


@dataclass(frozen=True, kw_only=True)
class Known:
    """A registered device and the digests of messages already accepted at the asked counters."""

    device: Device
    seen: Mapping[int, bytes] = field(default_factory=dict)  # counter -> SHA-256 of the bytes


@dataclass(frozen=True, kw_only=True)
class AcceptedMessage:
    """One message now in the ledger, to record against its device."""

    device_id: str
    counter: int
    digest: bytes
    seq: int  # the ledger entry's sequence number
    sent_at: datetime


@dataclass(frozen=True, kw_only=True)
class Rejection:
    device_id: str
    reason: Reason


class DeviceRegistry(Protocol):
    def register(self, device: Device) -> Device:
        """Insert a new device; `Conflict` if its id is taken (in any tenant)."""

    def get(self, tenant: str, device_id: str) -> Device:
        """The device with its counters; `NotFound` if it is not in `tenant`."""

    def list(self, tenant: str, *, after: str | None = None, limit: int = 100) -> list[Device]:
        """Devices of `tenant` ordered by id, those with id > `after` (a page cursor)."""

    def update(self, tenant: str, device_id: str, change: Callable[[Device], Device]) -> Device:
        """Apply `change` (e.g. `registry.apply_patch`) atomically and store the result.
        Only status, asset, keys and updated_at are stored; counters stay ingest's."""


class DeviceCounters(Protocol):
    def resolve(self, wanted: Mapping[str, Collection[int]]) -> dict[str, Known]:
        """The registered devices among `wanted`'s ids, each with the digests of its accepted
        messages at the given counters. Unknown ids are absent from the answer."""

    def record(
        self,
        tenant: str,
        *,
        accepted: Sequence[AcceptedMessage] = (),
        rejected: Sequence[Rejection] = (),
    ) -> None:
        """In one transaction: remember each accepted message (a message already remembered is
        not counted twice), raise `last_counter` / `last_seen` to the highest accepted, and
        count each rejection by reason. Devices not in `tenant` are ignored."""


class DeviceStore(DeviceRegistry, DeviceCounters, Protocol):
    pass

"""The device store (`intake.devices.store.DeviceStore`) in PostgreSQL (tables from 0006).

Every statement names the tenant, except `resolve`, which finds devices by id alone (a message
names only its device; the id, unique across tenants, determines the tenant). `record` locks the
devices it touches in id order first, so concurrent batches cannot deadlock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from proveniq.adapters.postgres.pool import Pool
from proveniq.errors import Conflict, NotFound
from proveniq.intake.devices.registry import Device, Kind, Status
from proveniq.intake.devices.store import MAX_LIST, AcceptedMessage, Known, Rejection

_COLUMNS = """d.device_id, d.tenant, d.kind, d.public_key, d.previous_key, d.previous_key_until,
  d.asset, d.status, d.created_at, d.updated_at, d.last_counter, d.last_seen, d.accepted,
  (SELECT coalesce(json_object_agg(r.reason, r.count), '{}'::json)::text
     FROM device_rejections r WHERE r.device_id = d.device_id AND r.tenant = d.tenant)"""


class PostgresDevices:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def register(self, device: Device) -> Device:
        with self.pool.transaction() as cur:
            cur.execute(
                "INSERT INTO devices (device_id, tenant, kind, public_key, previous_key,"
                " previous_key_until, asset, status, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (device_id) DO NOTHING RETURNING device_id",
                (
                    device.device_id,
                    device.tenant,
                    device.kind,
                    device.public_key,
                    device.previous_key,
                    device.previous_key_until,
                    device.asset,
                    device.status,
                    device.created_at,
                    device.updated_at,
                ),
            )
            if cur.fetchone() is None:
                raise Conflict(f"device id {device.device_id} is already registered")
            return self._one(cur, device.tenant, device.device_id)

    def get(self, tenant: str, device_id: str) -> Device:
        with self.pool.transaction() as cur:
            return self._one(cur, tenant, device_id)

    def list(self, tenant: str, *, after: str | None = None, limit: int = 100) -> list[Device]:
        with self.pool.transaction() as cur:
            cur.execute(
                f"SELECT {_COLUMNS} FROM devices d WHERE d.tenant = %s AND d.device_id > %s"  # noqa: S608
                " ORDER BY d.device_id LIMIT %s",
                (tenant, after or "", max(0, min(limit, MAX_LIST))),
            )
            return [_device(r) for r in cur.fetchall()]

    def update(self, tenant: str, device_id: str, change: Callable[[Device], Device]) -> Device:
        with self.pool.transaction() as cur:
            new = change(self._one(cur, tenant, device_id, lock=True))
            cur.execute(
                "UPDATE devices SET status = %s, asset = %s, public_key = %s, previous_key = %s,"
                " previous_key_until = %s, updated_at = %s WHERE tenant = %s AND device_id = %s",
                (
                    new.status,
                    new.asset,
                    new.public_key,
                    new.previous_key,
                    new.previous_key_until,
                    new.updated_at,
                    tenant,
                    device_id,
                ),
            )
            return self._one(cur, tenant, device_id)

    def resolve(self, wanted: Mapping[str, Collection[int]]) -> dict[str, Known]:
        ids = sorted(wanted)
        pairs = [(i, c) for i in ids for c in sorted(wanted[i])]
        with self.pool.transaction() as cur:
            cur.execute(
                f"SELECT {_COLUMNS} FROM devices d WHERE d.device_id = ANY(%s::text[])",  # noqa: S608
                (ids,),
            )
            devices = {r[0]: _device(r) for r in cur.fetchall()}
            seen: dict[str, dict[int, bytes]] = {}
            if pairs:
                cur.execute(
                    "SELECT m.device_id, m.counter, m.digest FROM device_messages m"
                    " JOIN devices d ON d.device_id = m.device_id AND d.tenant = m.tenant"
                    " JOIN unnest(%s::text[], %s::bigint[]) AS u(id, counter)"
                    " ON m.device_id = u.id AND m.counter = u.counter",
                    ([i for i, _ in pairs], [c for _, c in pairs]),
                )
                for device_id, counter, digest in cur.fetchall():
                    seen.setdefault(device_id, {})[int(counter)] = bytes(digest)
        return {i: Known(device=d, seen=seen.get(i, {})) for i, d in devices.items()}

    def record(
        self,
        tenant: str,
        *,
        accepted: Sequence[AcceptedMessage] = (),
        rejected: Sequence[Rejection] = (),
    ) -> None:
        ids = sorted({a.device_id for a in accepted} | {r.device_id for r in rejected})
        if not ids:
            return
        with self.pool.transaction() as cur:
            cur.execute(
                "SELECT device_id FROM devices WHERE tenant = %s AND device_id = ANY(%s::text[])"
                " ORDER BY device_id FOR UPDATE",
                (tenant, ids),
            )
            mine = {r[0] for r in cur.fetchall()}
            fresh = [a for a in accepted if a.device_id in mine]
            if fresh:
                self._accept(cur, tenant, fresh)
            counts: dict[tuple[str, str], int] = {}
            for r in rejected:
                if r.device_id in mine:
                    counts[(r.device_id, r.reason)] = counts.get((r.device_id, r.reason), 0) + 1
            if counts:
                keys = sorted(counts)
                cur.execute(
                    "INSERT INTO device_rejections (device_id, reason, tenant, count)"
                    " SELECT u.id, u.reason, %s, u.n"
                    " FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS u(id, reason, n)"
                    " ON CONFLICT (device_id, reason)"
                    " DO UPDATE SET count = device_rejections.count + EXCLUDED.count",
                    (tenant, [k[0] for k in keys], [k[1] for k in keys], [counts[k] for k in keys]),
                )

    @staticmethod
    def _accept(cur: Any, tenant: str, accepted: Sequence[AcceptedMessage]) -> None:
        cur.execute(
            "INSERT INTO device_messages (device_id, counter, tenant, digest, seq)"
            " SELECT u.id, u.counter, %s, u.digest, u.seq"
            " FROM unnest(%s::text[], %s::bigint[], %s::bytea[], %s::bigint[])"
            " AS u(id, counter, digest, seq)"
            " ON CONFLICT (device_id, counter) DO NOTHING RETURNING device_id, counter",
            (
                tenant,
                [a.device_id for a in accepted],
                [a.counter for a in accepted],
                [a.digest for a in accepted],
                [a.seq for a in accepted],
            ),
        )
        inserted = {(r[0], int(r[1])) for r in cur.fetchall()}
        per_device: dict[str, tuple[int, int, datetime]] = {}  # id -> (new rows, top, its sent_at)
        for a in accepted:
            if (a.device_id, a.counter) not in inserted:
                continue  # remembered before: counted then
            inserted.discard((a.device_id, a.counter))
            n, top, seen = per_device.get(a.device_id, (0, 0, a.sent_at))
            if a.counter > top:
                top, seen = a.counter, a.sent_at
            per_device[a.device_id] = (n + 1, top, seen)
        if not per_device:
            return
        ids = sorted(per_device)
        cur.execute(
            "UPDATE devices d SET accepted = d.accepted + u.n,"
            " last_seen = CASE WHEN u.top > d.last_counter THEN u.seen ELSE d.last_seen END,"
            " last_counter = GREATEST(d.last_counter, u.top)"
            " FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::timestamptz[])"
            " AS u(id, n, top, seen)"
            " WHERE d.tenant = %s AND d.device_id = u.id",
            (
                ids,
                [per_device[i][0] for i in ids],
                [per_device[i][1] for i in ids],
                [per_device[i][2] for i in ids],
                tenant,
            ),
        )

    @staticmethod
    def _one(cur: Any, tenant: str, device_id: str, *, lock: bool = False) -> Device:
        cur.execute(
            f"SELECT {_COLUMNS} FROM devices d WHERE d.tenant = %s AND d.device_id = %s"  # noqa: S608
            + (" FOR UPDATE" if lock else ""),
            (tenant, device_id),
        )
        row = cur.fetchone()
        if row is None:
            raise NotFound(f"no device {device_id}")
        return _device(row)


def _device(r: Sequence[Any]) -> Device:
    return Device(
        device_id=r[0],
        tenant=r[1],
        kind=cast(Kind, r[2]),
        public_key=bytes(r[3]),
        previous_key=None if r[4] is None else bytes(r[4]),
        previous_key_until=r[5],
        asset=r[6],
        status=cast(Status, r[7]),
        created_at=r[8],
        updated_at=r[9],
        last_counter=int(r[10]),
        last_seen=r[11],
        accepted=int(r[12]),
        rejected={str(k): int(v) for k, v in json.loads(r[13]).items()},
    )

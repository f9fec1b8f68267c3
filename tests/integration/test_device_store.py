"""One conformance body for the device store, run against the memory twin and PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proveniq.adapters.memory.devices import MemoryDevices
from proveniq.errors import Conflict, NotFound
from proveniq.intake.devices.registry import Device, apply_patch, parse_patch
from proveniq.intake.devices.store import AcceptedMessage, DeviceStore, Rejection

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def device(device_id: str, tenant: str = "acme", **kw: Any) -> Device:
    return Device(
        device_id=device_id,
        tenant=tenant,
        kind=kw.pop("kind", "locker"),
        public_key=kw.pop("public_key", KEY_A),
        created_at=T0,
        updated_at=T0,
        **kw,
    )


def accepted(device_id: str, counter: int, seq: int, body: bytes = b"") -> AcceptedMessage:
    return AcceptedMessage(
        device_id=device_id,
        counter=counter,
        digest=hashlib.sha256(body or f"{device_id}:{counter}".encode()).digest(),
        seq=seq,
        sent_at=T0 + timedelta(seconds=counter),
    )


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[DeviceStore]:
    if request.param == "memory":
        yield MemoryDevices()
        return
    from proveniq.adapters.postgres.devices import PostgresDevices
    from proveniq.adapters.postgres.pool import Pool, url_connector

    pg_server = request.getfixturevalue("pg_server")
    database = request.getfixturevalue("database")
    pool = Pool(url_connector(pg_server.url(user="proveniq_app", database=database)), size=2)
    yield PostgresDevices(pool)
    pool.dispose()


def test_register_get_and_list_are_tenant_scoped(store: DeviceStore) -> None:
    d = store.register(device("tag-1", kind="smart-tag", asset="asset-9"))
    assert d == device("tag-1", kind="smart-tag", asset="asset-9")
    store.register(device("locker-2"))
    store.register(device("other-1", tenant="globex"))

    assert store.get("acme", "tag-1") == d
    with pytest.raises(NotFound):
        store.get("globex", "tag-1")
    with pytest.raises(Conflict):  # ids are unique across tenants
        store.register(device("tag-1", tenant="globex"))

    assert [x.device_id for x in store.list("acme")] == ["locker-2", "tag-1"]
    assert [x.device_id for x in store.list("acme", after="locker-2")] == ["tag-1"]
    assert [x.device_id for x in store.list("acme", limit=1)] == ["locker-2"]
    assert [x.device_id for x in store.list("globex")] == ["other-1"]
    assert store.list("nobody") == []


def test_update_applies_a_patch_atomically_and_keeps_counters(store: DeviceStore) -> None:
    store.register(device("d1"))
    store.record("acme", accepted=[accepted("d1", 3, seq=7)])
    later = T0 + timedelta(minutes=5)
    patch = parse_patch({"public_key": _b64(KEY_B), "key_overlap_seconds": 600, "asset": "a-1"})
    new = store.update("acme", "d1", lambda d: apply_patch(d, patch, now=later))
    assert (new.public_key, new.previous_key) == (KEY_B, KEY_A)
    assert new.previous_key_until == later + timedelta(seconds=600)
    assert (new.asset, new.updated_at, new.last_counter, new.accepted) == ("a-1", later, 3, 1)
    assert store.get("acme", "d1") == new

    # A change cannot move counters or identity (only status, asset, keys, updated_at).
    sneaky = store.update(
        "acme", "d1", lambda d: replace(d, status="suspended", last_counter=0, kind="smart-tag")
    )
    assert (sneaky.status, sneaky.last_counter, sneaky.kind) == ("suspended", 3, "locker")
    cleared = store.update(
        "acme", "d1", lambda d: apply_patch(d, parse_patch({"asset": None}), now=later)
    )
    assert cleared.asset is None
    with pytest.raises(NotFound):
        store.update("globex", "d1", lambda d: d)


def test_record_counts_each_accepted_message_once_and_raises_counters(
    store: DeviceStore,
) -> None:
    store.register(device("d1"))
    store.register(device("d2"))
    store.record("acme", accepted=[accepted("d1", 1, 10), accepted("d1", 5, 11)])
    store.record("acme", accepted=[accepted("d1", 5, 11), accepted("d1", 3, 12)])  # 5 again
    d1 = store.get("acme", "d1")
    assert (d1.accepted, d1.last_counter, d1.last_seen) == (3, 5, T0 + timedelta(seconds=5))
    assert store.get("acme", "d2").accepted == 0

    known = store.resolve({"d1": [1, 2, 5], "d2": [], "ghost": [1]})
    assert set(known) == {"d1", "d2"}
    assert known["d1"].device == d1
    assert known["d1"].seen == {
        1: accepted("d1", 1, 10).digest,
        5: accepted("d1", 5, 11).digest,
    }
    assert known["d2"].seen == {}


def test_record_counts_rejections_by_reason_and_ignores_other_tenants(
    store: DeviceStore,
) -> None:
    store.register(device("d1"))
    store.register(device("g1", tenant="globex"))
    store.record(
        "acme",
        rejected=[
            Rejection(device_id="d1", reason="bad_signature"),
            Rejection(device_id="d1", reason="bad_signature"),
            Rejection(device_id="d1", reason="replayed_counter"),
            Rejection(device_id="g1", reason="bad_signature"),  # not acme's
            Rejection(device_id="ghost", reason="bad_schema"),
        ],
    )
    store.record("acme", rejected=[Rejection(device_id="d1", reason="bad_signature")])
    store.record("acme", accepted=[accepted("g1", 1, 1)])  # not acme's: ignored
    assert store.get("acme", "d1").rejected == {"bad_signature": 3, "replayed_counter": 1}
    g1 = store.get("globex", "g1")
    assert (g1.rejected, g1.accepted, g1.last_counter) == ({}, 0, 0)
    assert store.resolve({"g1": [1]})["g1"].seen == {}
    assert store.get("acme", "d1").to_json()["rejected"] == {
        "bad_signature": 3,
        "replayed_counter": 1,
    }


def test_concurrent_records_count_exactly(store: DeviceStore) -> None:
    for i in range(3):
        store.register(device(f"d{i}"))
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            for n in range(10):
                batch = [accepted(f"d{i}", 1 + w * 10 + n, seq=n) for i in (2, 0, 1)[w % 3 :]]
                store.record(
                    "acme",
                    accepted=batch,
                    rejected=[Rejection(device_id="d0", reason="stale_sent_at")],
                )
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    d0 = store.get("acme", "d0")
    assert d0.rejected == {"stale_sent_at": 40}
    expected = sum(1 for w in range(4) for n in range(10) if 0 in (2, 0, 1)[w % 3 :])
    assert d0.accepted == expected
    assert d0.last_counter == max(1 + w * 10 + 9 for w in range(4) if 0 in (2, 0, 1)[w % 3 :])


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode()

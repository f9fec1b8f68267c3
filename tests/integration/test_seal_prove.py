"""Sealing and proving on real PostgreSQL, over real HTTP, verified offline with the CLI."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from proveniq.adapters.postgres.ledger import CursorView
from proveniq.app.cli import main
from proveniq.app.runtime import runtime
from proveniq.log import merkle, proof
from tests.integration.ledger_check import check_log


def append(stack: Any, n: int, key: str, subject: str = "clm_1") -> list[dict[str, Any]]:
    body = {
        "events": [
            {"type": "claim.note", "subject": subject, "payload": {"i": i}} for i in range(n)
        ]
    }
    r = requests.post(
        stack.base + "/v1/events:batch",
        json=body,
        timeout=30,
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 201, r.text
    return list(r.json()["data"]["events"])


def get(stack: Any, path: str, key: str, **headers: str) -> requests.Response:
    return requests.get(
        stack.base + path, timeout=30, headers={"Authorization": f"Bearer {key}", **headers}
    )


def test_stored_node_proofs_equal_reference_over_irregular_seals(stack: Any) -> None:
    rng = random.Random(7)
    key = stack.keys["acme:MEMBER"]
    sizes = []
    for _ in range(12):
        append(stack, rng.choice([1, 2, 3, 5, 8, 13, 31, 64, 100]), key)
        sealed = runtime().integrator.integrate_and_publish()
        assert sealed is not None
        sizes.append(sealed.size)
    assert runtime().integrator.integrate_and_publish() is None  # nothing new: no new checkpoint
    with stack.superuser() as conn:
        leaves = check_log(conn)
        cur = conn.cursor()
        for size in sizes:
            reader = CursorView(cur).nodes
            assert proof.root_at(reader, size) == merkle.root(leaves[:size])
            for index in range(size):
                assert proof.inclusion_proof(reader, index, size) == merkle.inclusion_proof(
                    leaves, index, size
                )
        for old in sizes:
            for new in sizes:
                if old <= new:
                    assert proof.consistency_proof(reader, old, new) == merkle.consistency_proof(
                        leaves, old, new
                    )


def test_bundle_and_consistency_verify_offline(stack: Any, tmp_path: Path) -> None:
    key = stack.keys["acme:MEMBER"]
    first = append(stack, 7, key)
    pending = get(stack, f"/v1/events/{first[3]['id']}/proof", key)
    assert pending.status_code == 202 and pending.headers["Retry-After"] == "1"
    runtime().integrator.integrate_and_publish()
    append(stack, 12, key, subject="clm_2")
    runtime().integrator.integrate_and_publish()

    pem = get(stack, "/v1/log/public-key", key)
    assert pem.status_code == 200 and "BEGIN PUBLIC KEY" in pem.text
    (tmp_path / "log.pem").write_text(pem.text)
    vkey = get(stack, "/v1/log/public-key", key, Accept="text/plain")
    assert vkey.text.startswith(runtime().settings.log_origin + "+")

    r = get(stack, f"/v1/events/{first[3]['id']}/proof", key)
    assert r.status_code == 200, r.text
    bundle = r.json()["data"]
    assert bundle["tree_size"] == 19 and bundle["leaf_index"] == 3
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    out = CliRunner().invoke(
        main, ["verify", str(tmp_path / "bundle.json"), "--key", str(tmp_path / "log.pem")]
    )
    assert out.exit_code == 0, out.output

    pinned = get(stack, f"/v1/events/{first[3]['id']}/proof?tree_size=7", key)
    assert pinned.json()["data"]["tree_size"] == 7
    # a bundle carries the payload: never cached, so an erased payload cannot outlive erasure
    assert pinned.headers["Cache-Control"] == "no-store"

    for size in (7, 19):
        cp = get(stack, f"/v1/checkpoints/{size}", key)
        assert cp.status_code == 200 and "immutable" in cp.headers["Cache-Control"]
        (tmp_path / f"cp{size}.txt").write_text(cp.text)
    latest = get(stack, "/v1/checkpoints/latest", key, Accept="application/json")
    assert latest.json()["data"]["tree_size"] == 19
    cons = get(stack, "/v1/proofs/consistency?from=7&to=19", key)
    assert cons.status_code == 200
    (tmp_path / "cons.json").write_text(json.dumps(cons.json()["data"]))
    out = CliRunner().invoke(
        main,
        [
            "verify-consistency",
            str(tmp_path / "cp7.txt"),
            str(tmp_path / "cp19.txt"),
            "--proof",
            str(tmp_path / "cons.json"),
            "--key",
            str(tmp_path / "log.pem"),
        ],
    )
    assert out.exit_code == 0, out.output
    assert get(stack, "/v1/proofs/consistency?from=5&to=19", key).status_code == 404

    v = requests.post(
        stack.base + "/v1/proofs/verify",
        json=bundle,
        timeout=30,
        headers={"Authorization": f"Bearer {key}"},
    )
    assert v.json()["data"]["valid"] is True
    bundle["payload"]["i"] = 99
    v = requests.post(
        stack.base + "/v1/proofs/verify",
        json=bundle,
        timeout=30,
        headers={"Authorization": f"Bearer {key}"},
    )
    assert v.json()["data"] == {**v.json()["data"], "valid": False, "failed": "payload"}

    batch = requests.post(
        stack.base + "/v1/proofs:batch",
        timeout=30,
        json={"ids": [first[0]["id"], "evt_" + "0" * 32]},
        headers={"Authorization": f"Bearer {key}"},
    )
    statuses = [x["status"] for x in batch.json()["data"]["results"]]
    assert statuses == ["ok", "not_found"]

    claim = requests.post(
        stack.base + "/v1/claims/clm_2/verify",
        timeout=30,
        headers={"Authorization": f"Bearer {key}"},
    )
    assert claim.json()["data"]["verdict"] == "verified"
    assert len(claim.json()["data"]["entries"]) == 12


def test_reads_are_tenant_scoped(stack: Any) -> None:
    acme = append(stack, 3, stack.keys["acme:MEMBER"], subject="clm_secret")
    runtime().integrator.integrate_and_publish()
    globex = stack.keys["globex:MEMBER"]
    eid = acme[0]["id"]
    for path in (
        f"/v1/events/{eid}",
        f"/v1/events/{eid}/proof",
        f"/v1/leaves/{acme[0]['leaf_hash']}",
        "/v1/subjects/clm_secret/history",
    ):
        r = get(stack, path, globex)
        assert r.status_code == 404, (path, r.text)
        assert get(stack, path, stack.keys["acme:VIEWER"]).status_code == 200, path
    listed = get(stack, "/v1/events", globex).json()["data"]
    assert listed == []
    assert (
        get(
            stack, f"/v1/events/{eid}", globex, **{"X-Proveniq-Tenant": stack.partners["acme"]}
        ).status_code
        == 403
    )
    assert (
        get(
            stack,
            f"/v1/events/{eid}",
            stack.admin_key,
            **{"X-Proveniq-Tenant": stack.partners["acme"]},
        ).status_code
        == 200
    )


def test_list_events_pagination_is_stable(stack: Any) -> None:
    key = stack.keys["acme:MEMBER"]
    ids = [e["id"] for e in append(stack, 25, key)]
    seen, cursor = [], None
    while True:
        r = get(stack, "/v1/events?limit=10" + (f"&cursor={cursor}" if cursor else ""), key)
        body = r.json()
        seen += [e["id"] for e in body["data"]]
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert get(stack, "/v1/events?limit=0", key).status_code == 400
    assert get(stack, "/v1/events?since=yesterday", key).status_code == 400


def test_concurrent_seals_make_one_checkpoint(stack: Any) -> None:
    append(stack, 50, stack.keys["acme:MEMBER"])
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def run() -> None:
        barrier.wait()
        results.append(runtime().integrator.integrate_and_publish())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r is None for r in results) == [False, True]
    with stack.superuser() as conn:
        cur = conn.cursor()
        cur.execute("SELECT size FROM checkpoints")
        assert [r[0] for r in cur.fetchall()] == [50]


def test_write_with_wait_proof(stack: Any) -> None:
    stop = threading.Event()

    def sealer() -> None:
        while not stop.wait(0.05):
            runtime().integrator.integrate_and_publish()

    t = threading.Thread(target=sealer)
    t.start()
    try:
        r = requests.post(
            stack.base + "/v1/events?wait=proof&timeout=10",
            timeout=30,
            json={"type": "claim.created", "subject": "clm_w"},
            headers={"Authorization": f"Bearer {stack.keys['acme:MEMBER']}"},
        )
    finally:
        stop.set()
        t.join()
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    assert data["proof_status"] == "sealed"
    assert data["bundle"]["entry"]["id"] == data["id"]


@pytest.mark.parametrize(
    "path",
    ["/v1/proofs/consistency?from=x&to=2", "/v1/events/evt_nothex/proof", "/v1/checkpoints/0"],
)
def test_bad_read_input_is_4xx(stack: Any, path: str) -> None:
    r = get(stack, path, stack.keys["acme:MEMBER"])
    assert 400 <= r.status_code < 500 and r.json()["success"] is False

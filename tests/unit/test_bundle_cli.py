"""Tampering with any part of a bundle makes `proveniq verify` fail, naming what failed."""

import base64
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from proveniq.adapters.local.keyfile import write_public_key_pem
from proveniq.app.cli import main
from proveniq.log import proof
from proveniq.log.bundle import Bundle
from proveniq.log.canonical import sha256_canonical
from proveniq.log.chain import Draft, Tail, link
from proveniq.log.checkpoint import Checkpoint, sign_checkpoint
from proveniq.log.integrate import MemoryNodeStore, integrate
from proveniq.log.signer import Ed25519Signer, verifier_key_string
from proveniq.log.timefmt import utcnow

ORIGIN = "test.proveniq/log"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("bundle")
    signer = Ed25519Signer.generate(name=ORIGIN)
    payloads = [{"claim": f"clm_{i}", "amount_cents": 1000 + i} for i in range(37)]
    drafts = [
        Draft(
            id=f"evt_{i}",
            tenant="prt_a",
            type="claim.created",
            subject=f"clm_{i}",
            payload_hash=sha256_canonical(p),
            occurred_at=utcnow(),
        )
        for i, p in enumerate(payloads)
    ]
    log = link(drafts, tail=Tail.empty(), recorded_at=utcnow())
    store = MemoryNodeStore()
    step = integrate(store.read, 0, [e.leaf_hash() for e in log])
    store.write(step.new_nodes)
    cp_old = sign_checkpoint(
        Checkpoint(origin=ORIGIN, size=20, root_hash=proof.root_at(store.read, 20)), [signer]
    )
    cp = sign_checkpoint(Checkpoint(origin=ORIGIN, size=37, root_hash=step.root), [signer])
    i = 11
    bundle = Bundle(
        entry=log[i],
        payload=payloads[i],
        leaf_index=i,
        tree_size=37,
        leaf_hash=log[i].leaf_hash(),
        inclusion_path=tuple(proof.inclusion_proof(store.read, i, 37)),
        checkpoint=cp,
    )
    pem = d / "key.pem"
    write_public_key_pem(signer, pem)
    vkey = d / "key.vkey"
    vkey.write_text(verifier_key_string(ORIGIN, signer.public_key) + "\n")
    (d / "old.txt").write_text(cp_old)
    (d / "new.txt").write_text(cp)
    (d / "proof.json").write_text(
        json.dumps(
            {
                "from": 20,
                "to": 37,
                "proof": [h.hex() for h in proof.consistency_proof(store.read, 20, 37)],
            }
        )
    )
    return {"dir": d, "bundle": bundle.to_json(), "pem": pem, "vkey": vkey}


def run_verify(world: dict[str, Any], doc: dict[str, Any], key: str = "pem") -> tuple[int, str]:
    path: Path = world["dir"] / "b.json"
    path.write_text(json.dumps(doc))
    r = CliRunner().invoke(main, ["verify", str(path), "--key", str(world[key])])
    return r.exit_code, r.output


@pytest.mark.parametrize("key", ["pem", "vkey"])
def test_untouched_bundle_verifies(world: dict[str, Any], key: str) -> None:
    code, out = run_verify(world, world["bundle"], key)
    assert code == 0, out
    assert out.startswith("OK: entry evt_11 (seq 11, payload checked)")


def flip_hex(h: str) -> str:
    return ("1" if h[0] == "0" else "0") + h[1:]


def edit_checkpoint(doc: dict[str, Any], fn: Callable[[str], str]) -> None:
    doc["checkpoint"] = fn(doc["checkpoint"])


def flip_signature(note: str) -> str:
    body, sigline = note.rsplit("\n— ", 1)
    name, b64 = sigline.strip().split(" ")
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 1
    return f"{body}\n— {name} {base64.b64encode(bytes(raw)).decode()}\n"


TAMPERS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("payload value", lambda d: d["payload"].update(amount_cents=1), "payload"),
    ("payload key added", lambda d: d["payload"].update(x=1), "payload"),
    ("entry id", lambda d: d["entry"].update(id="evt_x"), "leaf_hash"),
    ("entry tenant", lambda d: d["entry"].update(tenant="prt_b"), "leaf_hash"),
    ("entry type", lambda d: d["entry"].update(type="claim.paid"), "leaf_hash"),
    ("entry subject", lambda d: d["entry"].update(subject="clm_9"), "leaf_hash"),
    (
        "entry recorded_at",
        lambda d: d["entry"].update(recorded_at="2020-01-01T00:00:00.000000Z"),
        "leaf_hash",
    ),
    ("entry occurred_at", lambda d: d["entry"].update(occurred_at=None), "leaf_hash"),
    ("entry prev", lambda d: d["entry"].update(prev=flip_hex(d["entry"]["prev"])), "leaf_hash"),
    (
        "entry payload_hash",
        lambda d: d["entry"].update(payload_hash=flip_hex(d["entry"]["payload_hash"])),
        "payload",
    ),
    ("entry seq", lambda d: d["entry"].update(seq=12), "leaf_hash"),
    ("leaf_hash", lambda d: d.update(leaf_hash=flip_hex(d["leaf_hash"])), "leaf_hash"),
    ("leaf_index", lambda d: d.update(leaf_index=12), "leaf_index"),
    ("tree_size", lambda d: d.update(tree_size=36), "tree_size"),
    (
        "path element",
        lambda d: d["inclusion_path"].__setitem__(2, flip_hex(d["inclusion_path"][2])),
        "inclusion",
    ),
    ("path dropped", lambda d: d["inclusion_path"].pop(), "inclusion"),
    (
        "checkpoint root",
        lambda d: edit_checkpoint(
            d, lambda t: t.replace(t.split("\n")[2], base64.b64encode(bytes(32)).decode())
        ),
        "inclusion",
    ),
    (
        "checkpoint size",
        lambda d: edit_checkpoint(d, lambda t: t.replace("\n37\n", "\n38\n")),
        "tree_size",
    ),
    (
        "checkpoint origin",
        lambda d: edit_checkpoint(d, lambda t: t.replace(ORIGIN + "\n", ORIGIN + "x\n", 1)),
        "checkpoint signature",
    ),
    ("signature byte", lambda d: edit_checkpoint(d, flip_signature), "checkpoint signature"),
]


@pytest.mark.parametrize(("name", "tamper", "check"), TAMPERS, ids=[t[0] for t in TAMPERS])
def test_tampering_is_named(
    world: dict[str, Any], name: str, tamper: Callable[[dict[str, Any]], None], check: str
) -> None:
    doc = copy.deepcopy(world["bundle"])
    tamper(doc)
    code, out = run_verify(world, doc)
    assert code == 1, out
    assert out.startswith(f"FAILED: {check}"), out


def test_wrong_key_fails_signature(world: dict[str, Any], tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    write_public_key_pem(Ed25519Signer.generate(name=ORIGIN), other)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(world["bundle"]))
    r = CliRunner().invoke(main, ["verify", str(path), "--key", str(other)])
    assert r.exit_code == 1 and r.output.startswith("FAILED: checkpoint signature"), r.output


def test_malformed_bundle_exit_2(world: dict[str, Any]) -> None:
    doc = copy.deepcopy(world["bundle"])
    doc["leaf_hash"] = "zz"
    code, out = run_verify(world, doc)
    assert code == 2 and "leaf_hash" in out


def test_verify_consistency(world: dict[str, Any]) -> None:
    d = world["dir"]
    args = [
        "verify-consistency",
        str(d / "old.txt"),
        str(d / "new.txt"),
        "--proof",
        str(d / "proof.json"),
        "--key",
        str(world["vkey"]),
    ]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    doc = json.loads((d / "proof.json").read_text())
    doc["proof"][0] = flip_hex(doc["proof"][0])
    bad = d / "bad-proof.json"
    bad.write_text(json.dumps(doc))
    args[4] = str(bad)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "root" in r.output, r.output
    r = CliRunner().invoke(
        main,
        [
            "verify-consistency",
            str(d / "new.txt"),
            str(d / "old.txt"),
            "--proof",
            str(d / "proof.json"),
            "--key",
            str(world["pem"]),
        ],
    )
    assert r.exit_code == 1, r.output

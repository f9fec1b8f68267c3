"""The offline demo behind `make run` (kernel only): build a small log of insurance evidence,
seal two signed checkpoints, write a proof bundle, and verify it the way an auditor would."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from proveniq.adapters.local.keyfile import load_or_create_signer, write_public_key_pem
from proveniq.log import merkle, proof
from proveniq.log.bundle import Bundle, verifiers_for, verify_bundle
from proveniq.log.canonical import sha256_canonical
from proveniq.log.chain import Draft, Tail, link, verify_chain
from proveniq.log.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint, with_timestamp
from proveniq.log.entry import Entry
from proveniq.log.integrate import MemoryNodeStore, integrate
from proveniq.log.signer import verifier_key_string
from proveniq.log.timefmt import utcnow

ORIGIN = "proveniq.local/demo"
_KINDS: list[tuple[str, str, dict[str, object]]] = [
    ("asset.created", "ast_{n}", {"title": "2019 Toyota Camry", "vin": "4T1B11HK5KU{n:06d}"}),
    ("document.uploaded", "ast_{n}", {"filename": "title-deed-{n}.pdf", "sha256": "{h}"}),
    ("claim.created", "clm_{n}", {"asset": "ast_{n}", "amount_cents": 125000, "peril": "hail"}),
    ("custody.transferred", "ast_{n}", {"from": "yard-7", "to": "carrier-2", "seal": "S{n}"}),
]


def _drafts(count: int) -> tuple[list[Draft], list[dict[str, object]]]:
    drafts, payloads = [], []
    for i in range(count):
        etype, subject, template = _KINDS[i % len(_KINDS)]
        n = i // len(_KINDS)
        digest = sha256_canonical({"i": i}).hex()
        payload = {
            k: v.format(n=n, h=digest) if isinstance(v, str) else v for k, v in template.items()
        }
        payloads.append(payload)
        drafts.append(
            Draft(
                id=f"evt_demo_{i:06d}",
                tenant="prt_demo",
                type=etype,
                subject=subject.format(n=n),
                payload_hash=sha256_canonical(payload),
            )
        )
    return drafts, payloads


def run_demo(*, out_dir: Path, entries: int, echo: Callable[[str], None]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    signer = load_or_create_signer(out_dir / "log-signing-key.pem", name=ORIGIN)
    key_pem = out_dir / "log-public-key.pem"
    write_public_key_pem(signer, key_pem)
    (out_dir / "log-public-key.vkey").write_text(
        verifier_key_string(signer.name, signer.public_key) + "\n"
    )
    drafts, payloads = _drafts(entries)
    log = link(drafts, tail=Tail.empty(), recorded_at=utcnow())
    verify_chain(log, start=Tail.empty())
    echo(f"sequenced {len(log)} entries; hash chain verified")

    store = MemoryNodeStore()
    checkpoints: list[str] = []
    size = 0
    for batch_end in (len(log) // 2, len(log)):
        leaves = [e.leaf_hash() for e in log[size:batch_end]]
        step = integrate(store.read, size, leaves)
        store.write(step.new_nodes)
        size = step.new_size
        assert step.root == merkle.root([e.leaf_hash() for e in log[:size]])
        cp = with_timestamp(
            Checkpoint(origin=ORIGIN, size=size, root_hash=step.root),
            int(utcnow().timestamp() * 1000),
        )
        checkpoints.append(sign_checkpoint(cp, [signer]))
        (out_dir / f"checkpoint-{size}.txt").write_text(checkpoints[-1])
        echo(f"integrated to size {size}, root {step.root.hex()}, signed checkpoint written")

    index = len(log) // 3
    bundle = _bundle(
        log[index],
        payloads[index],
        size,
        checkpoints[-1],
        proof.inclusion_proof(store.read, index, size),
    )
    bundle_path = out_dir / f"bundle-{log[index].id}.json"
    bundle_path.write_text(json.dumps(bundle.to_json(), indent=2) + "\n")
    old_size = len(log) // 2
    consistency = proof.consistency_proof(store.read, old_size, size)
    proof_path = out_dir / f"consistency-{old_size}-{size}.json"
    proof_path.write_text(
        json.dumps(
            {"from": old_size, "to": size, "proof": [h.hex() for h in consistency]}, indent=2
        )
        + "\n"
    )

    verdict = verify_bundle(bundle, verifiers_for(bundle.checkpoint, signer.public_key, None))
    old, _ = open_checkpoint(checkpoints[0], verifiers_for(checkpoints[0], signer.public_key, None))
    merkle.verify_consistency(
        old.size, size, old.root_hash, verdict.checkpoint.root_hash, consistency
    )
    echo(f"bundle for {log[index].id} verified in-process against {verdict.signed_by}")
    echo("")
    echo("Verify offline yourself:")
    echo(f"  .venv/bin/proveniq verify {bundle_path} --key {key_pem}")
    echo(
        f"  .venv/bin/proveniq verify-consistency {out_dir}/checkpoint-{old_size}.txt "
        f"{out_dir}/checkpoint-{size}.txt --proof {proof_path} --key {key_pem}"
    )


def _bundle(
    entry: Entry, payload: dict[str, object], size: int, checkpoint: str, path: list[bytes]
) -> Bundle:
    return Bundle(
        entry=entry,
        payload=payload,
        leaf_index=entry.seq,
        tree_size=size,
        leaf_hash=entry.leaf_hash(),
        inclusion_path=tuple(path),
        checkpoint=checkpoint,
    )

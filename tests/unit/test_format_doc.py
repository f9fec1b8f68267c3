"""docs/FORMAT.md's worked example is real kernel output: recompute it and find it verbatim."""

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from proveniq.app.cli import main
from proveniq.log import merkle
from proveniq.log.bundle import Bundle
from proveniq.log.canonical import canonicalize, sha256_canonical
from proveniq.log.chain import Draft, Tail, link, verify_chain
from proveniq.log.checkpoint import Checkpoint, sign_checkpoint, with_timestamp
from proveniq.log.entry import Entry
from proveniq.log.signer import Ed25519Signer, verifier_key_string

DOC = Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md"
ORIGIN = "example.proveniq/log"
RECIPE_MARKER = "<!-- independent-recipe -->"


def _millis(t: datetime) -> int:
    return int(t.timestamp() * 1000)


@dataclass(frozen=True)
class Example:
    signer: Ed25519Signer
    payloads: list[dict[str, object]]
    log: list[Entry]
    leaves: list[bytes]
    checkpoints: dict[int, str]
    bundle: Bundle


@pytest.fixture(scope="module")
def example() -> Example:
    signer = Ed25519Signer.from_seed(name=ORIGIN, seed=bytes(range(32)))
    deed = hashlib.sha256(b"title-deed").hexdigest()
    payloads: list[dict[str, object]] = [
        {"vin": "4T1B11HK5KU000042", "title": "2019 Toyota Camry", "odometer_km": 48213},
        {"filename": "title-deed.pdf", "pages": 2, "sha256": deed},
        {
            "peril": "hail",
            "asset": "ast_42",
            "amount_cents": 125000,
            "notes": "Dent on hood, ~3 cm",
        },
    ]
    kinds = [
        ("asset.created", "ast_42", datetime(2025, 1, 15, 9, 12, 3, 250000, tzinfo=UTC)),
        ("document.uploaded", "ast_42", None),
        ("claim.created", "clm_7", datetime(2025, 1, 16, 14, 0, 0, tzinfo=UTC)),
    ]
    drafts = [
        Draft(
            id=f"evt_{i:06d}",
            tenant="prt_example",
            type=etype,
            subject=subject,
            payload_hash=sha256_canonical(payloads[i]),
            occurred_at=occurred,
        )
        for i, (etype, subject, occurred) in enumerate(kinds)
    ]
    first = link(
        drafts[:2],
        tail=Tail.empty(),
        recorded_at=datetime(2025, 1, 15, 9, 30, 0, 123456, tzinfo=UTC),
    )
    tail = verify_chain(first, start=Tail.empty())
    log = first + link(
        drafts[2:], tail=tail, recorded_at=datetime(2025, 1, 16, 14, 5, 0, 654321, tzinfo=UTC)
    )
    verify_chain(log, start=Tail.empty())
    leaves = [e.leaf_hash() for e in log]
    published = {
        2: datetime(2025, 1, 15, 9, 30, 1, tzinfo=UTC),
        3: datetime(2025, 1, 16, 14, 5, 1, tzinfo=UTC),
    }
    checkpoints = {
        size: sign_checkpoint(
            with_timestamp(
                Checkpoint(origin=ORIGIN, size=size, root_hash=merkle.root(leaves[:size])),
                _millis(at),
            ),
            [signer],
        )
        for size, at in published.items()
    }
    bundle = Bundle(
        entry=log[1],
        payload=payloads[1],
        leaf_index=1,
        tree_size=3,
        leaf_hash=leaves[1],
        inclusion_path=tuple(merkle.inclusion_proof(leaves, 1, 3)),
        checkpoint=checkpoints[3],
    )
    return Example(signer, payloads, log, leaves, checkpoints, bundle)


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _recipe(doc: str) -> str:
    m = re.search(re.escape(RECIPE_MARKER) + r"\n```python\n(.*?)\n```", doc, re.DOTALL)
    assert m, "the independent recipe block is missing from docs/FORMAT.md"
    return m.group(1)


def test_payloads_leaves_and_chain_appear_verbatim(example: Example, doc: str) -> None:
    for p in example.payloads:
        canonical = canonicalize(p)
        assert json.dumps(p) in doc
        assert f"[{len(canonical)} bytes]\n{canonical.decode()}\n" in doc
        assert sha256_canonical(p).hex() in doc
    for e in example.log:
        leaf = e.leaf_bytes()
        assert f"leaf {e.seq}  [{len(leaf)} bytes]\n{leaf.decode()}\n" in doc
        assert f"leaf_hash {e.seq}  {e.leaf_hash().hex()}" in doc
        assert f"| {e.seq} | `{e.prev.hex()}` |" in doc
    jcs = canonicalize({"b": 1.0, "a": "é", "c": [1e21, 0.1, -0.0], "A": None}).decode()
    assert f"```text\n{jcs}\n```" in doc


def test_tree_proofs_and_checkpoints_appear_verbatim(example: Example, doc: str) -> None:
    leaves = example.leaves
    root2, root3 = merkle.root(leaves[:2]), merkle.root(leaves)
    assert f"root(size 2) = SHA-256(0x01 || L0 || L1)\n             = {root2.hex()}" in doc
    assert f"= {root3.hex()}" in doc
    assert merkle.EMPTY_ROOT.hex() in doc
    path = merkle.inclusion_proof(leaves, 1, 3)
    assert all(f"  {h.hex()},   L" in doc for h in path)
    consistency = {
        "from": 2,
        "to": 3,
        "proof": [h.hex() for h in merkle.consistency_proof(leaves, 2, 3)],
    }
    assert f"```json\n{json.dumps(consistency)}\n```" in doc
    for size, text in example.checkpoints.items():
        assert f"```text\n{text}```" in doc, f"signed checkpoint of size {size} drifted"
    assert base64.b64encode(root3).decode() in doc
    signer = example.signer
    assert f"public key       {signer.public_key.hex()}" in doc
    assert f"key ID           {signer.key_id.hex()}" in doc
    assert f"verifier key     {verifier_key_string(signer.name, signer.public_key)}\n" in doc
    signature = base64.b64decode(example.checkpoints[3].rsplit(" ", 1)[1])[4:]
    assert f"`{signature.hex()}`" in doc


def test_bundle_and_cli_output_appear_verbatim(example: Example, doc: str, tmp_path: Path) -> None:
    text = json.dumps(example.bundle.to_json(), indent=2)
    assert f"```json\n{text}\n```" in doc
    (tmp_path / "bundle.json").write_text(text + "\n")
    vkey = verifier_key_string(example.signer.name, example.signer.public_key)
    (tmp_path / "key.vkey").write_text(vkey + "\n")
    result = CliRunner().invoke(
        main, ["verify", str(tmp_path / "bundle.json"), "--key", str(tmp_path / "key.vkey")]
    )
    assert result.exit_code == 0, result.output
    assert f"\n{result.output}```" in doc


def test_independent_recipe_runs_and_matches_the_kernel(
    example: Example, doc: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _recipe(doc)
    assert "import proveniq" not in code and "from proveniq" not in code
    for h in [
        *example.bundle.inclusion_path,
        example.bundle.leaf_hash,
        merkle.root(example.leaves),
    ]:
        assert h.hex() in code
    exec(compile(code, str(DOC), "exec"), {"__name__": "format_doc_recipe"})  # noqa: S102
    assert capsys.readouterr().out == f"OK: root {merkle.root(example.leaves).hex()}\n"

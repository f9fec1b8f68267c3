"""Key rotation: with two configured keys every checkpoint carries both signatures, each key
alone verifies it, and the public-key endpoint lists both verifier keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proveniq.app.runtime import Runtime
from proveniq.ledger.submission import parse_single
from proveniq.log.checkpoint import open_checkpoint
from proveniq.log.note import NoteVerifier, parse_note
from proveniq.settings import Settings


def test_two_keys_both_sign_every_checkpoint(database: str, pg_server: Any, tmp_path: Path) -> None:
    old, new = tmp_path / "old.pem", tmp_path / "new.pem"
    settings = Settings(
        database_url=pg_server.url(user="proveniq_app", database=database),
        signing_key_file=f"{old},{new}",
        state_dir=tmp_path,
    )
    rt = Runtime.build(settings)
    try:
        prepared = [parse_single(b'{"type":"claim.created","subject":"c"}') for _ in range(3)]
        rt.sequencer.sequence(tenant="prt_x", actor="test", prepared=prepared)
        sealed = rt.integrator.integrate_and_publish()
        assert sealed is not None
        note = parse_note(sealed.note)
        assert len(note.signatures) == 2
        assert [s.name for s in rt.publisher.signers] == [settings.log_origin] * 2
        for signer in rt.publisher.signers:  # either key alone is enough for a verifier
            cp, opened = open_checkpoint(
                sealed.note,
                [NoteVerifier.from_public_key(name=signer.name, public_key=signer.public_key)],
            )
            assert cp.size == 3 and len(opened.verified_by) == 1
        assert len(rt.verifiers()) == 2
    finally:
        rt.pool.dispose()

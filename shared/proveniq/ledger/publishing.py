"""Publishing: sign a checkpoint of the integrated tree (C2SP tlog-checkpoint in a signed note)
with every configured key, and the log's public keys that verify it."""

from __future__ import annotations

from collections.abc import Sequence

from proveniq.log.checkpoint import Checkpoint, sign_checkpoint, with_timestamp
from proveniq.log.note import NoteVerifier
from proveniq.log.signer import Signer
from proveniq.log.timefmt import utcnow


class CheckpointPublisher:
    def __init__(self, *, origin: str, signers: Sequence[Signer]) -> None:
        if not signers:
            raise ValueError("at least one signer is needed")
        self.origin = origin
        self.signers = list(signers)

    @property
    def primary(self) -> Signer:
        """The key served as the log's public key."""
        return self.signers[0]

    def sign(self, *, size: int, root: bytes) -> str:
        """The signed note text of a checkpoint of `size` entries with `root`, timestamped."""
        cp = with_timestamp(
            Checkpoint(origin=self.origin, size=size, root_hash=root),
            int(utcnow().timestamp() * 1000),
        )
        return sign_checkpoint(cp, self.signers)

    def verifiers(self) -> list[NoteVerifier]:
        return [
            NoteVerifier.from_public_key(name=s.name, public_key=s.public_key) for s in self.signers
        ]

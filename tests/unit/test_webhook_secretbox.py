"""The local SecretBox: AES-GCM envelope under a key-encryption key file."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from proveniq.adapters.local.secretbox import LocalSecretBox
from proveniq.errors import FormatError, InternalError

SECRET = b"whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYnl0ZXM="


def test_round_trip_and_nothing_plain_in_the_blob(tmp_path: Path) -> None:
    box = LocalSecretBox.load_or_create(tmp_path / "keys" / "webhook-kek")
    sealed = box.seal(SECRET)
    assert SECRET not in sealed and sealed.startswith(b"PVL1")
    assert box.open(sealed) == SECRET
    assert box.seal(SECRET) != sealed  # fresh data key and nonces every time
    assert box.open(box.seal(b"")) == b""


def test_key_file_is_0600_created_once_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "webhook-kek"
    sealed = LocalSecretBox.load_or_create(path).seal(SECRET)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    assert LocalSecretBox.load_or_create(path).open(sealed) == SECRET  # after a "restart"


def test_concurrent_creation_ends_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    boxes: list[LocalSecretBox] = []
    threads = [
        threading.Thread(target=lambda: boxes.append(LocalSecretBox.load_or_create(path)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({b.key_id for b in boxes}) == 1


def test_wrong_key_and_tampering_are_refused(tmp_path: Path) -> None:
    box = LocalSecretBox.load_or_create(tmp_path / "a")
    other = LocalSecretBox.load_or_create(tmp_path / "b")
    sealed = box.seal(SECRET)
    with pytest.raises(InternalError, match="another key"):
        other.open(sealed)
    for i in (len(sealed) - 1, 20, 40, 70):
        damaged = bytearray(sealed)
        damaged[i] ^= 0x01
        with pytest.raises(InternalError, match="damaged"):
            box.open(bytes(damaged))
    for junk in (b"", b"PVL1", b"XXXX" + sealed[4:], sealed[:50]):
        with pytest.raises(InternalError):
            box.open(junk)


def test_a_key_file_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    path.write_bytes(b"short")
    with pytest.raises(FormatError, match="32-byte"):
        LocalSecretBox.load_or_create(path)

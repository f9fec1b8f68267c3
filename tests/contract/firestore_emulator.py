"""The npm Firestore emulator for the projection contract tests, started once per session
(`proveniq.adapters.local.firestore_emulator`). If it cannot be installed or started the tests
fail with its log: they never skip.

Import the fixture into a test module: ``from tests.contract.firestore_emulator import
firestore_emulator``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from proveniq.adapters.local import firestore_emulator as emulator
from proveniq.errors import Unavailable

PROJECT = "demo-proveniq"


@dataclass(frozen=True)
class FirestoreEmulator:
    host: str  # "127.0.0.1:<port>", the value of FIRESTORE_EMULATOR_HOST
    project_id: str


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirestoreEmulator]:
    try:
        running = emulator.start(tmp_path_factory.mktemp("firestore-emulator") / "emulator.log")
    except Unavailable as e:
        pytest.fail(e.message)
    try:
        yield FirestoreEmulator(host=running.host, project_id=PROJECT)
    finally:
        running.stop()

"""The device intake's pure modules import no framework, driver, cloud client or outer layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "shared" / "proveniq" / "intake" / "devices"
FORBIDDEN = (
    "flask",
    "werkzeug",
    "pg8000",
    "sqlalchemy",
    "google",
    "functions_framework",
    "grpc",
    "proveniq.adapters",
    "proveniq.app",
    "proveniq.edge",
    "proveniq.ledger",
)


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "module",
    sorted(p for p in PACKAGE.glob("*.py") if p.name != "__init__.py"),
    ids=lambda p: p.name,
)
def test_pure_module_imports(module: Path) -> None:
    found = imports(module)
    assert found  # the walk saw something
    bad = {n for n in found for f in FORBIDDEN if n == f or n.startswith(f + ".")}
    assert bad == set()


def test_the_package_has_the_expected_modules() -> None:
    names = {p.stem for p in PACKAGE.glob("*.py")}
    assert {"registry", "message", "ingest", "store", "grouping"} <= names

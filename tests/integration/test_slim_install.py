"""What an auditor installs: `pip install .` with no extras gives a working offline verifier
and none of the server's dependencies."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_plain_install_verifies_offline_without_server_packages(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    subprocess.run(
        [sys.executable, "-m", "proveniq.app.cli", "demo", "--dir", str(demo), "--entries", "5"],
        check=True,
        capture_output=True,
    )
    env_dir = tmp_path / "auditor"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py, cli = env_dir / "bin" / "python", env_dir / "bin" / "proveniq"
    done = subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]

    ok = subprocess.run(
        [
            str(cli),
            "verify",
            str(demo / "bundle-evt_demo_000001.json"),
            "--key",
            str(demo / "log-public-key.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK: entry evt_demo_000001")
    consistent = subprocess.run(
        [
            str(cli),
            "verify-consistency",
            str(demo / "checkpoint-2.txt"),
            str(demo / "checkpoint-5.txt"),
            "--proof",
            str(demo / "consistency-2-5.json"),
            "--key",
            str(demo / "log-public-key.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert consistent.returncode == 0, consistent.stderr
    tampered = demo / "tampered.json"
    tampered.write_text(
        (demo / "bundle-evt_demo_000001.json").read_text().replace('"seq": 1', '"seq": 2', 1)
    )
    bad = subprocess.run(
        [str(cli), "verify", str(tampered), "--key", str(demo / "log-public-key.pem")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1, (bad.stdout, bad.stderr)

    for module in ("pg8000", "flask", "functions_framework", "sqlalchemy", "google.cloud"):
        probe = subprocess.run([str(py), "-c", f"import {module}"], capture_output=True)
        assert probe.returncode != 0, f"{module} is installed by a plain `pip install .`"

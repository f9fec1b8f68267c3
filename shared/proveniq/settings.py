"""Typed settings, read once from the environment into a frozen object.

Adapters are chosen here (`backend`), never by "if testing" elsewhere.

    PROVENIQ_BACKEND          local (default) | gcp
    PROVENIQ_STATE_DIR        local state folder (embedded PostgreSQL data, keys)   [.proveniq]
    PROVENIQ_DATABASE_URL     postgresql://user@host:port/db, or unset for the embedded server
    PROVENIQ_LOG_ORIGIN       the log's C2SP origin line       [proveniq.local/ledger]
    PROVENIQ_SIGNING_KEY_FILE local Ed25519 key(s) (PKCS#8 PEM), comma-separated; every key signs
                              each checkpoint, the first is the one served as the log's key
                                                                [<state>/keys/log-signing-key.pem]
    PROVENIQ_KMS_KEY_VERSION  projects/../cryptoKeyVersions/N (gcp), comma-separated for key
                              rotation: all sign, the first is served as the log's key
    PROVENIQ_CLOUDSQL_INSTANCE project:region:instance         (gcp)
    PROVENIQ_DB_USER / PROVENIQ_DB_NAME                         (gcp; IAM database user)
    PROVENIQ_PUBSUB_TOPIC     ledger-events topic id            [ledger-events]
    GOOGLE_CLOUD_PROJECT      project id                        (gcp)
    PROVENIQ_FIREBASE_PROJECT Firebase project whose ID tokens are accepted
    PROVENIQ_MAX_BODY_BYTES   request body limit                [1048576]
    PROVENIQ_POOL_SIZE        database connections per instance [8]
    PROVENIQ_SEAL_INTERVAL_MS local stack's batch_merkle timer   [1000]
    PORT                      local gateway port                [8080]
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from proveniq.errors import ValidationError

Backend = Literal["local", "gcp"]


@dataclass(frozen=True, kw_only=True)
class Settings:
    backend: Backend = "local"
    state_dir: Path = Path(".proveniq")
    database_url: str | None = None
    log_origin: str = "proveniq.local/ledger"
    signing_key_file: Path | None = None
    kms_key_version: str | None = None
    cloudsql_instance: str | None = None
    db_user: str = "proveniq_app"
    db_name: str = "proveniq"
    pubsub_topic: str = "ledger-events"
    gcp_project: str | None = None
    firebase_project: str | None = None
    max_body_bytes: int = 1024 * 1024
    pool_size: int = 8
    seal_interval_ms: int = 1000
    port: int = 8080

    @property
    def signing_key_paths(self) -> tuple[Path, ...]:
        if self.signing_key_file is None:
            return (self.state_dir / "keys" / "log-signing-key.pem",)
        return tuple(Path(p.strip()) for p in str(self.signing_key_file).split(",") if p.strip())

    @property
    def kms_key_versions(self) -> tuple[str, ...]:
        return tuple(v.strip() for v in (self.kms_key_version or "").split(",") if v.strip())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        backend = e.get("PROVENIQ_BACKEND", "local")
        if backend not in ("local", "gcp"):
            raise ValidationError("must be 'local' or 'gcp'", field="PROVENIQ_BACKEND")
        s = cls(
            backend=backend,  # type: ignore[arg-type]
            state_dir=Path(e.get("PROVENIQ_STATE_DIR", ".proveniq")),
            database_url=e.get("PROVENIQ_DATABASE_URL") or None,
            log_origin=e.get("PROVENIQ_LOG_ORIGIN", "proveniq.local/ledger"),
            signing_key_file=Path(e["PROVENIQ_SIGNING_KEY_FILE"])
            if e.get("PROVENIQ_SIGNING_KEY_FILE")
            else None,
            kms_key_version=e.get("PROVENIQ_KMS_KEY_VERSION") or None,
            cloudsql_instance=e.get("PROVENIQ_CLOUDSQL_INSTANCE") or None,
            db_user=e.get("PROVENIQ_DB_USER", "proveniq_app"),
            db_name=e.get("PROVENIQ_DB_NAME", "proveniq"),
            pubsub_topic=e.get("PROVENIQ_PUBSUB_TOPIC", "ledger-events"),
            gcp_project=e.get("GOOGLE_CLOUD_PROJECT") or None,
            firebase_project=e.get("PROVENIQ_FIREBASE_PROJECT") or e.get("GOOGLE_CLOUD_PROJECT"),
            max_body_bytes=_int(e, "PROVENIQ_MAX_BODY_BYTES", 1024 * 1024),
            pool_size=_int(e, "PROVENIQ_POOL_SIZE", 8),
            seal_interval_ms=_int(e, "PROVENIQ_SEAL_INTERVAL_MS", 1000),
            port=_int(e, "PORT", 8080),
        )
        if s.backend == "gcp":
            for name, value in (
                ("PROVENIQ_CLOUDSQL_INSTANCE", s.cloudsql_instance),
                ("GOOGLE_CLOUD_PROJECT", s.gcp_project),
            ):
                if not value:
                    raise ValidationError("required when PROVENIQ_BACKEND=gcp", field=name)
        if not s.log_origin.strip() or "\n" in s.log_origin:
            raise ValidationError("must be a single non-empty line", field="PROVENIQ_LOG_ORIGIN")
        return s


def _int(e: Mapping[str, str], name: str, default: int) -> int:
    raw = e.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as err:
        raise ValidationError(f"expected an integer, got {raw!r}", field=name) from err
    if value <= 0:
        raise ValidationError("must be positive", field=name)
    return value

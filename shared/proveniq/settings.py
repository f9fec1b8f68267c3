"""Typed settings, read once from the environment (pydantic-settings) into a frozen object.

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
    PROVENIQ_FIREBASE_PROJECT Firebase project whose ID tokens are accepted [GOOGLE_CLOUD_PROJECT]
    PROVENIQ_MAX_BODY_BYTES   request body limit                [1048576]
    PROVENIQ_POOL_SIZE        database connections per instance [8]
    PROVENIQ_READ_REPLICA_URL postgresql:// URL of a read replica for get_proof's reads; unset:
                              every read on the primary (local/tests; gcp: the instance below)
    PROVENIQ_CLOUDSQL_REPLICA_INSTANCE  project:region:replica, a Cloud SQL read replica (gcp)
    PROVENIQ_READ_REPLICA_POOL_SIZE  replica connections per instance  [8]
    PROVENIQ_SEAL_INTERVAL_MS one batch_merkle run seals again this long after each seal [500]
    PROVENIQ_SEAL_RUN_SECONDS how long one (scheduled) batch_merkle run keeps sealing; a newer
                              run of the same instance takes over at once; 0: one seal   [70]
    PROVENIQ_SEAL_TICK_SECONDS the local stack's stand-in for Cloud Scheduler: one tick to
                              batch_merkle at start, then every this many seconds (local) [60]
    PROVENIQ_GROUP_COMMIT     sequence concurrent single-event writes of an instance together,
                              one lock and one transaction per group (false: one each) [true]
    PROVENIQ_GROUP_COMMIT_WAIT_MS  how long the first request of a group may wait for company,
                              in milliseconds (>= 0)            [1]
    PROVENIQ_GROUP_COMMIT_MAX requests per group at most        [64]
    PORT                      local gateway port                [8080]
    PROVENIQ_TELEMETRY        metrics and traces on (true) or off, for overhead measurements [true]
    PROVENIQ_PUBLIC_BASE_URL  where partners reach the API (proof URLs in webhooks)
                                                                [http://127.0.0.1:8080]
  risk_score
    PROVENIQ_RISK_REVIEW_THRESHOLD  a score at or above it needs a human review  [50]
    PROVENIQ_RISK_REVIEW_MARGIN     ...as does a Gemini/deterministic gap above it [30]
    PROVENIQ_RISK_MAX_CLOCK_SKEW_SECONDS  occurred_at this far from recorded_at is a timing
                              signal; 0 turns the check off (backfills)   [172800]
    PROVENIQ_GEMINI_MODEL     Gemini model id; unset: deterministic scoring only
    PROVENIQ_GEMINI_LOCATION  Vertex AI location (gcp)         [europe-west1]
    PROVENIQ_GEMINI_ENDPOINT  base URL override (a local generateContent server)
    PROVENIQ_GEMINI_API_KEY   Gemini API key (local only; production uses Vertex AI + the
                              function's service account)
  webhooks
    PROVENIQ_WEBHOOK_RETRY_SCHEDULE  seconds between attempts    [0,60,300,1800,7200,86400]
    PROVENIQ_WEBHOOK_ALLOWED_NETWORKS loopback networks a local receiver may use (local only)
    PROVENIQ_WEBHOOK_ALLOW_HTTP  allow http:// targets (local only)          [false]
    PROVENIQ_WEBHOOK_KMS_KEY  projects/../cryptoKeys/K: envelope key for signing secrets (gcp)
    PROVENIQ_WEBHOOK_QUEUE    projects/../locations/../queues/Q (gcp)
    PROVENIQ_WEBHOOK_DISPATCH_URL  webhook_dispatch's URL, the Cloud Tasks target (gcp)
    PROVENIQ_WEBHOOK_INVOKER  service account Cloud Tasks signs its OIDC token as (gcp)
  devices
    PROVENIQ_DEVICE_TOPIC     device-telemetry topic id         [device-telemetry]
    PROVENIQ_DEVICE_DEAD_LETTER_TOPIC                           [device-telemetry-dead-letter]
    PROVENIQ_DEVICE_MAX_SKEW_SECONDS  sent_at vs publish time    [900]
    PROVENIQ_LOCAL_PUBSUB_PORT  the local stack's Pub/Sub Publisher API port    [8085]
  projection
    PROVENIQ_FIRESTORE_PROJECT  project of the Firestore projection; unset: no projection
                                (the local stack sets it when it starts the emulator)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import AliasChoices, Field, PositiveInt, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from proveniq.errors import ValidationError

Backend = Literal["local", "gcp"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PROVENIQ_", frozen=True, extra="ignore", populate_by_name=True
    )

    backend: Backend = "local"
    state_dir: Path = Path(".proveniq")
    database_url: str | None = None
    log_origin: str = "proveniq.local/ledger"
    signing_key_file: str | None = None
    kms_key_version: str | None = None
    cloudsql_instance: str | None = None
    db_user: str = "proveniq_app"
    db_name: str = "proveniq"
    pubsub_topic: str = "ledger-events"
    gcp_project: str | None = Field(
        default=None, validation_alias=AliasChoices("GOOGLE_CLOUD_PROJECT", "gcp_project")
    )
    firebase_project: str | None = None
    max_body_bytes: PositiveInt = 1024 * 1024
    pool_size: PositiveInt = 8
    read_replica_url: str | None = None
    cloudsql_replica_instance: str | None = None
    read_replica_pool_size: PositiveInt = 8
    seal_interval_ms: PositiveInt = 500
    seal_run_seconds: float = Field(default=70.0, ge=0, le=3600)
    seal_tick_seconds: PositiveInt = 60
    group_commit: bool = True
    group_commit_wait_ms: float = Field(default=1.0, ge=0, le=10_000)
    group_commit_max: PositiveInt = 64
    port: PositiveInt = Field(default=8080, validation_alias=AliasChoices("PORT", "port"))
    public_base_url: str = "http://127.0.0.1:8080"
    telemetry: bool = True
    risk_review_threshold: int = Field(default=50, ge=0, le=100)
    risk_review_margin: int = Field(default=30, ge=0, le=100)
    risk_max_clock_skew_seconds: int = Field(default=2 * 86400, ge=0)
    gemini_model: str | None = None
    gemini_location: str = "europe-west1"
    gemini_endpoint: str | None = None
    gemini_api_key: str | None = None
    webhook_retry_schedule: str = "0,60,300,1800,7200,86400"
    webhook_allowed_networks: str | None = None
    webhook_allow_http: bool = False
    webhook_kms_key: str | None = None
    webhook_queue: str | None = None
    webhook_dispatch_url: str | None = None
    webhook_invoker: str | None = None
    device_topic: str = "device-telemetry"
    device_dead_letter_topic: str = "device-telemetry-dead-letter"
    device_max_skew_seconds: PositiveInt = 900
    local_pubsub_port: PositiveInt = 8085
    firestore_project: str | None = None

    @field_validator(
        "database_url",
        "signing_key_file",
        "kms_key_version",
        "cloudsql_instance",
        "gcp_project",
        "firebase_project",
        "gemini_model",
        "gemini_endpoint",
        "gemini_api_key",
        "webhook_allowed_networks",
        "webhook_kms_key",
        "webhook_queue",
        "webhook_dispatch_url",
        "webhook_invoker",
        "firestore_project",
        "read_replica_url",
        "cloudsql_replica_instance",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, v: Any) -> Any:
        return None if v == "" else v

    @field_validator("log_origin")
    @classmethod
    def _one_line(cls, v: str) -> str:
        if not v.strip() or "\n" in v:
            raise ValueError("must be a single non-empty line")
        return v

    @model_validator(mode="after")
    def _gcp_needs(self) -> Settings:
        if self.firebase_project is None and self.gcp_project:
            object.__setattr__(self, "firebase_project", self.gcp_project)
        if self.backend == "gcp":
            for name, value in (
                ("cloudsql_instance", self.cloudsql_instance),
                ("gcp_project", self.gcp_project),
            ):
                if not value:
                    raise ValueError(f"{name}: required when PROVENIQ_BACKEND=gcp")
        return self

    @property
    def read_replica(self) -> bool:
        """Whether get_proof reads off a replica (`cloudsql_replica_instance` on gcp,
        `read_replica_url` otherwise)."""
        if self.backend == "gcp":
            return bool(self.cloudsql_replica_instance)
        return bool(self.read_replica_url)

    @property
    def signing_key_paths(self) -> tuple[Path, ...]:
        if self.signing_key_file is None:
            return (self.state_dir / "keys" / "log-signing-key.pem",)
        return tuple(Path(p.strip()) for p in self.signing_key_file.split(",") if p.strip())

    @property
    def kms_key_versions(self) -> tuple[str, ...]:
        return tuple(v.strip() for v in (self.kms_key_version or "").split(",") if v.strip())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the environment (or `env`); a bad value is a `ValidationError` naming its
        variable."""
        try:
            if env is None:
                return cls()  # pydantic-settings reads the process environment
            values = {f: env[v] for f, v in variables().items() if env.get(v) is not None}
            return cls.model_validate(values)
        except pydantic.ValidationError as err:
            first = err.errors()[0]
            raise ValidationError(
                _message(first), field=_variable(first, str(first.get("msg", "")))
            ) from None


_UNPREFIXED = {"gcp_project": "GOOGLE_CLOUD_PROJECT", "port": "PORT"}


def variables() -> dict[str, str]:
    """field name -> environment variable."""
    return {f: _UNPREFIXED.get(f, f"PROVENIQ_{f.upper()}") for f in Settings.model_fields}


def _variable(error: Any, message: str) -> str:
    loc = [str(p) for p in error.get("loc", ())]
    name = loc[0] if loc else message.partition(":")[0].removeprefix("Value error, ")
    if name in ("GOOGLE_CLOUD_PROJECT", "PORT"):
        return name
    return _UNPREFIXED.get(name, f"PROVENIQ_{name.upper()}")


def _message(error: Any) -> str:
    msg = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if not error.get("loc"):
        msg = msg.partition(": ")[2] or msg
    if error.get("type") in ("int_parsing", "greater_than"):
        raw = error.get("input")
        return (
            "must be positive"
            if error["type"] == "greater_than"
            else f"expected an integer, got {raw!r}"
        )
    return msg

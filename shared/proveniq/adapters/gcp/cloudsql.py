"""Cloud SQL for PostgreSQL through the Cloud SQL Python Connector (pg8000, IAM auth, lazy
refresh for serverless). The connector calls google.auth.default() when built, so it is built
only here, on first connection, in the GCP backend."""

from __future__ import annotations

import threading
from typing import Any

from proveniq.adapters.postgres.pool import Connect, prepare_connection
from proveniq.settings import Settings

_lock = threading.Lock()
_connector: Any = None


def cloudsql_connector(settings: Settings, *, replica: bool = False) -> Connect:
    """Connections to the primary, or (`replica`) to the read replica
    `PROVENIQ_CLOUDSQL_REPLICA_INSTANCE` (same database, same IAM user)."""
    instance = settings.cloudsql_replica_instance if replica else settings.cloudsql_instance
    if not instance:
        name = "CLOUDSQL_REPLICA_INSTANCE" if replica else "CLOUDSQL_INSTANCE"
        raise ValueError(f"PROVENIQ_{name} is required for the gcp backend")

    def connect() -> Any:
        global _connector
        with _lock:
            if _connector is None:
                from google.cloud.sql.connector import Connector

                _connector = Connector(refresh_strategy="lazy", enable_iam_auth=True)
        conn = _connector.connect(instance, "pg8000", user=settings.db_user, db=settings.db_name)
        return prepare_connection(conn)

    return connect

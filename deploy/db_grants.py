"""Grant the application role to the functions' IAM database users (run after `proveniq migrate`).

    PROVENIQ_DATABASE_URL=postgresql://... python deploy/db_grants.py USER [USER ...]

The migrations create the `proveniq_app` role and grant it exactly the table privileges the
functions need (events: SELECT and INSERT only). Terraform creates one Cloud SQL IAM database user
per function service account (`<account>@<project>.iam`) but has no SQL connection, so membership
is granted here, by the schema owner, idempotently. A user that does not exist is an error:
Terraform has not been applied for it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from typing import Any

ROLE = "proveniq_app"
_NAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,62}")


def quote_ident(name: str) -> str:
    """A PostgreSQL identifier for a role name we accept (IAM users and plain role names)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"unexpected database role name: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def grant_statements(role: str, users: list[str]) -> list[str]:
    return [f"GRANT {quote_ident(role)} TO {quote_ident(user)}" for user in users]


def grant(connect: Callable[[], Any], role: str, users: list[str]) -> None:
    conn = connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", ([role, *users],))
        present = {row[0] for row in cur.fetchall()}
        missing = [name for name in [role, *users] if name not in present]
        if missing:
            raise SystemExit(
                f"missing database roles: {', '.join(missing)} "
                f"(run `proveniq migrate` and `terraform apply` first)"
            )
        for statement in grant_statements(role, users):
            cur.execute(statement)
        conn.commit()
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("users", nargs="+", help="IAM database users, e.g. sa-name@project.iam")
    parser.add_argument("--role", default=ROLE, help=f"role to grant (default {ROLE})")
    args = parser.parse_args(argv)
    url = os.environ.get("PROVENIQ_DATABASE_URL")
    if not url:
        print("PROVENIQ_DATABASE_URL is required", file=sys.stderr)
        return 2
    for name in [args.role, *args.users]:
        quote_ident(name)  # refuse anything odd before connecting

    from proveniq.adapters.postgres.pool import url_connector

    grant(url_connector(url), args.role, args.users)
    print(f"granted {args.role} to {', '.join(args.users)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

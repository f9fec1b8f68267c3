"""recorded_at comes from the database clock, read under the write lock, so it is monotonic
with seq whichever instance sequenced the entry.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = r"""
DROP FUNCTION ledger_lock_tail(bigint);

CREATE FUNCTION ledger_lock_tail(p_key bigint, OUT size bigint, OUT leaf_hash bytea,
                                 OUT recorded_at timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(p_key);
  SELECT e.seq + 1, e.leaf_hash INTO size, leaf_hash FROM events e ORDER BY e.seq DESC LIMIT 1;
  IF size IS NULL THEN
    size := 0;
    leaf_hash := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
  END IF;
  recorded_at := date_trunc('microseconds', clock_timestamp());
END $$;

GRANT EXECUTE ON FUNCTION ledger_lock_tail(bigint) TO proveniq_app;
"""


def upgrade() -> None:
    op.execute(SCHEMA)

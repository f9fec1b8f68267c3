"""Group commit: the sequencing transaction of a whole group in two statements.

`ledger_lock_group` takes the ledger's write lock, then (later statements of a PL/pgSQL
function, so with snapshots taken after the lock was granted - see FIELD-NOTES) reads the tail,
the database clock and the lifecycle status of every governed subject of the group.
`ledger_append_group` writes the group: events, their outbox rows, the subjects' statuses and
the idempotency records; if another transaction recorded one of those idempotency keys in the
meantime it raises SQLSTATE PQ001 with the positions of the keys that lost in DETAIL, so the
caller's COMMIT (sent in the same round trip) rolls the whole group back.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SCHEMA = r"""
CREATE FUNCTION ledger_lock_group(p_key bigint, p_tenants text[], p_subjects text[],
                                  OUT size bigint, OUT leaf_hash bytea,
                                  OUT recorded_at timestamptz, OUT statuses text[])
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(p_key);
  SELECT e.seq + 1, e.leaf_hash INTO size, leaf_hash FROM events e ORDER BY e.seq DESC LIMIT 1;
  IF size IS NULL THEN
    size := 0;
    leaf_hash := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
  END IF;
  recorded_at := date_trunc('microseconds', clock_timestamp());
  statuses := '{}';
  IF cardinality(p_subjects) > 0 THEN
    SELECT array_agg(s.status ORDER BY w.ord) INTO statuses
      FROM unnest(p_tenants, p_subjects) WITH ORDINALITY AS w(tenant, subject, ord)
      LEFT JOIN subject_state s ON s.tenant = w.tenant AND s.subject = w.subject;
  END IF;
END $$;

CREATE FUNCTION ledger_append_group(
  p_seq bigint[], p_id text[], p_tenant text[], p_type text[], p_subject text[],
  p_payload_hash bytea[], p_payload bytea[], p_occurred_at timestamptz[],
  p_recorded_at timestamptz, p_prev bytea[], p_leaf_hash bytea[], p_actor text[],
  p_state_tenant text[], p_state_subject text[], p_state_status text[], p_state_seq bigint[],
  p_key_tenant text[], p_key text[], p_key_hash bytea[], p_key_status int[],
  p_key_response bytea[]
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  lost text;
BEGIN
  INSERT INTO events (seq, id, tenant, type, subject, payload_hash, payload, occurred_at,
                      recorded_at, prev, leaf_hash, actor)
    SELECT u.seq, u.id, u.tenant, u.type, u.subject, u.payload_hash, u.payload, u.occurred_at,
           p_recorded_at, u.prev, u.leaf_hash, u.actor
      FROM unnest(p_seq, p_id, p_tenant, p_type, p_subject, p_payload_hash, p_payload,
                  p_occurred_at, p_prev, p_leaf_hash, p_actor)
        AS u(seq, id, tenant, type, subject, payload_hash, payload, occurred_at, prev,
             leaf_hash, actor);
  INSERT INTO outbox (seq) SELECT unnest(p_seq);
  IF cardinality(p_state_subject) > 0 THEN
    INSERT INTO subject_state (tenant, subject, status, last_seq)
      SELECT * FROM unnest(p_state_tenant, p_state_subject, p_state_status, p_state_seq)
      ON CONFLICT (tenant, subject) DO UPDATE
        SET status = EXCLUDED.status, last_seq = EXCLUDED.last_seq;
  END IF;
  IF cardinality(p_key) > 0 THEN
    WITH recorded AS (
      INSERT INTO idempotency_keys (tenant, key, request_hash, status, response)
        SELECT * FROM unnest(p_key_tenant, p_key, p_key_hash, p_key_status, p_key_response)
        ON CONFLICT DO NOTHING
        RETURNING tenant, key
    )
    SELECT string_agg((w.ord - 1)::text, ',' ORDER BY w.ord) INTO lost
      FROM unnest(p_key_tenant, p_key) WITH ORDINALITY AS w(tenant, key, ord)
      WHERE NOT EXISTS (SELECT 1 FROM recorded r WHERE r.tenant = w.tenant AND r.key = w.key);
    IF lost IS NOT NULL THEN
      RAISE EXCEPTION 'idempotency keys were recorded by another transaction'
        USING ERRCODE = 'PQ001', DETAIL = lost;
    END IF;
  END IF;
  RETURN cardinality(p_seq);
END $$;

GRANT EXECUTE ON FUNCTION ledger_lock_group(bigint, text[], text[]) TO proveniq_app;
GRANT EXECUTE ON FUNCTION ledger_append_group(
  bigint[], text[], text[], text[], text[], bytea[], bytea[], timestamptz[], timestamptz,
  bytea[], bytea[], text[], text[], text[], text[], bigint[], text[], text[], bytea[], int[],
  bytea[]
) TO proveniq_app;
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute("DROP FUNCTION ledger_append_group")
    op.execute("DROP FUNCTION ledger_lock_group")

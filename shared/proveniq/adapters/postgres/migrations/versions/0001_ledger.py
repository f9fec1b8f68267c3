"""The ledger: partners, API keys, append-only events, outbox, idempotency, subject state.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = r"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'proveniq_app') THEN
    CREATE ROLE proveniq_app LOGIN;
  END IF;
END $$;

CREATE TABLE partners (
  id          text PRIMARY KEY,
  name        text NOT NULL,
  tier        text NOT NULL CHECK (tier IN ('free', 'pro', 'enterprise', 'internal')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  disabled_at timestamptz
);

CREATE TABLE api_keys (
  id           text PRIMARY KEY,
  prefix       text NOT NULL UNIQUE,
  key_hash     bytea NOT NULL,
  partner_id   text REFERENCES partners(id),
  org_role     text CHECK (org_role IN ('OWNER', 'ADMIN', 'MEMBER', 'VIEWER')),
  global_role  text NOT NULL DEFAULT 'USER'
               CHECK (global_role IN ('ADMIN', 'AUDITOR', 'INVESTOR', 'USER')),
  label        text NOT NULL DEFAULT '',
  created_at   timestamptz NOT NULL DEFAULT now(),
  revoked_at   timestamptz,
  CHECK (partner_id IS NOT NULL OR global_role <> 'USER')
);

-- The log. seq is the RFC 6962 leaf index; leaf_hash = SHA-256(0x00 || JCS(entry)).
-- payload holds the RFC 8785 canonical bytes of the payload (NULL once erased).
CREATE TABLE events (
  seq          bigint PRIMARY KEY CHECK (seq >= 0),
  id           text NOT NULL UNIQUE,
  tenant       text NOT NULL,
  type         text NOT NULL,
  subject      text NOT NULL,
  payload_hash bytea NOT NULL CHECK (length(payload_hash) = 32),
  payload      bytea,
  occurred_at  timestamptz,
  recorded_at  timestamptz NOT NULL,
  prev         bytea NOT NULL CHECK (length(prev) = 32),
  leaf_hash    bytea NOT NULL UNIQUE CHECK (length(leaf_hash) = 32),
  actor        text NOT NULL
);
CREATE INDEX events_tenant_seq ON events (tenant, seq);
CREATE INDEX events_tenant_subject_seq ON events (tenant, subject, seq);
CREATE INDEX events_tenant_type_seq ON events (tenant, type, seq);

CREATE TABLE erasures (
  seq        bigint PRIMARY KEY REFERENCES events(seq),
  erased_at  timestamptz NOT NULL DEFAULT now(),
  erased_by  text NOT NULL,
  reason     text NOT NULL
);

-- Append-only, enforced by the database: no UPDATE/DELETE/TRUNCATE, except the one erasure
-- operation, which may only turn a payload into NULL (nothing in the leaf changes).
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  allowed events;
BEGIN
  IF TG_OP = 'UPDATE' AND current_setting('proveniq.erasure', true) = 'on' THEN
    allowed := OLD;
    allowed.payload := NULL;
    IF NEW IS NOT DISTINCT FROM allowed THEN
      RETURN NEW;
    END IF;
  END IF;
  RAISE EXCEPTION 'events is append-only: % refused', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
  FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
  FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
  FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

-- The documented payload-erasure operation (GDPR): nulls the payload, keeps the proof intact.
CREATE FUNCTION erase_payload(p_event_id text, p_by text, p_reason text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
  v_seq bigint;
BEGIN
  PERFORM set_config('proveniq.erasure', 'on', true);
  UPDATE events SET payload = NULL WHERE id = p_event_id AND payload IS NOT NULL
    RETURNING seq INTO v_seq;
  PERFORM set_config('proveniq.erasure', 'off', true);
  IF v_seq IS NOT NULL THEN
    INSERT INTO erasures (seq, erased_by, reason) VALUES (v_seq, p_by, p_reason);
  END IF;
  RETURN v_seq;
END $$;

-- Takes the ledger's write lock, then reads the tail with a fresh snapshot (a separate
-- statement: see FIELD-NOTES on stale tails when both are in one statement).
CREATE FUNCTION ledger_lock_tail(p_key bigint, OUT size bigint, OUT leaf_hash bytea)
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(p_key);
  SELECT e.seq + 1, e.leaf_hash INTO size, leaf_hash FROM events e ORDER BY e.seq DESC LIMIT 1;
  IF size IS NULL THEN
    size := 0;
    leaf_hash := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
  END IF;
END $$;

-- Transactional outbox: one row per event, marked when published to Pub/Sub.
CREATE TABLE outbox (
  seq          bigint PRIMARY KEY REFERENCES events(seq),
  published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;

CREATE TABLE idempotency_keys (
  tenant       text NOT NULL,
  key          text NOT NULL,
  request_hash bytea NOT NULL,
  status       int NOT NULL,
  response     bytea NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, key)
);

-- Current lifecycle status per subject, maintained in the same transaction as the append.
CREATE TABLE subject_state (
  tenant   text NOT NULL,
  subject  text NOT NULL,
  status   text NOT NULL,
  last_seq bigint NOT NULL REFERENCES events(seq),
  PRIMARY KEY (tenant, subject)
);

-- Token buckets for rate limits, shared by every instance.
CREATE TABLE rate_buckets (
  bucket     text PRIMARY KEY,
  tokens     double precision NOT NULL,
  updated_at timestamptz NOT NULL
);

REVOKE ALL ON events FROM PUBLIC;
GRANT SELECT, INSERT ON events TO proveniq_app;
GRANT SELECT, INSERT, UPDATE ON outbox, subject_state, rate_buckets TO proveniq_app;
GRANT SELECT, INSERT, DELETE ON idempotency_keys TO proveniq_app;
GRANT SELECT, INSERT, UPDATE ON partners, api_keys TO proveniq_app;
GRANT SELECT ON erasures TO proveniq_app;
GRANT EXECUTE ON FUNCTION ledger_lock_tail(bigint) TO proveniq_app;
REVOKE EXECUTE ON FUNCTION erase_payload(text, text, text) FROM PUBLIC;
"""


def upgrade() -> None:
    op.execute(SCHEMA)

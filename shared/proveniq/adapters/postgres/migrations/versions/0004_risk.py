"""risk scoring (risk_score follower): the derived evidence index and the results projection.

Every table is derived from ledger entries (it can be rebuilt by replaying them) and keyed by
tenant. `risk_folded` makes folding idempotent: an event's seq is inserted once.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = r"""
-- The events already folded into the index (idempotency under redelivery).
CREATE TABLE risk_folded (
  tenant  text NOT NULL,
  seq     bigint NOT NULL CHECK (seq >= 0),
  PRIMARY KEY (tenant, seq)
);

-- One row per claim: the fold of its claim.* events in seq order (latest_*: the highest-seq
-- claim.* event folded, created_*: the lowest).
CREATE TABLE risk_claims (
  tenant               text NOT NULL,
  claim_id             text NOT NULL,
  claimant             text,
  asset                text,
  amount_cents         bigint CHECK (amount_cents >= 0),
  currency             text CHECK (currency ~ '^[A-Z]{3}$'),
  incident_at          timestamptz,
  policy_id            text,
  policy_start         timestamptz,
  filed_at             timestamptz NOT NULL,
  created_event_id     text NOT NULL,
  created_seq          bigint NOT NULL,
  created_leaf_hash    bytea NOT NULL CHECK (length(created_leaf_hash) = 32),
  created_type         text NOT NULL,
  created_occurred_at  timestamptz,
  created_recorded_at  timestamptz NOT NULL,
  latest_event_id      text NOT NULL,
  latest_seq           bigint NOT NULL,
  latest_leaf_hash     bytea NOT NULL CHECK (length(latest_leaf_hash) = 32),
  latest_type          text NOT NULL,
  latest_occurred_at   timestamptz,
  latest_recorded_at   timestamptz NOT NULL,
  PRIMARY KEY (tenant, claim_id)
);
CREATE INDEX risk_claims_claimant ON risk_claims (tenant, claimant, filed_at);
CREATE INDEX risk_claims_asset ON risk_claims (tenant, asset, filed_at);
CREATE INDEX risk_claims_currency ON risk_claims (tenant, currency, created_seq DESC);

-- Documents attached to claims (document.uploaded with a sha256).
CREATE TABLE risk_documents (
  tenant     text NOT NULL,
  seq        bigint NOT NULL,
  claim_id   text NOT NULL,
  sha256     text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  kind       text,
  taken_at     timestamptz,
  at           timestamptz NOT NULL,
  occurred_at  timestamptz,
  recorded_at  timestamptz NOT NULL,
  event_id   text NOT NULL,
  leaf_hash  bytea NOT NULL CHECK (length(leaf_hash) = 32),
  type       text NOT NULL,
  PRIMARY KEY (tenant, seq)
);
CREATE INDEX risk_documents_hash ON risk_documents (tenant, sha256, seq);
CREATE INDEX risk_documents_claim ON risk_documents (tenant, claim_id, seq);

-- Where custody events put an asset (a locker, or a custodian), and its lifecycle statuses.
CREATE TABLE risk_custody (
  tenant     text NOT NULL,
  seq        bigint NOT NULL,
  asset      text NOT NULL,
  placement  text NOT NULL CHECK (placement IN ('locker', 'custodian')),
  holder     text NOT NULL,
  at         timestamptz NOT NULL,
  event_id   text NOT NULL,
  leaf_hash  bytea NOT NULL CHECK (length(leaf_hash) = 32),
  type       text NOT NULL,
  PRIMARY KEY (tenant, seq)
);
CREATE INDEX risk_custody_asset ON risk_custody (tenant, asset, at, seq);

CREATE TABLE risk_asset_status (
  tenant     text NOT NULL,
  seq        bigint NOT NULL,
  asset      text NOT NULL,
  status     text NOT NULL,
  at         timestamptz NOT NULL,
  event_id   text NOT NULL,
  leaf_hash  bytea NOT NULL CHECK (length(leaf_hash) = 32),
  type       text NOT NULL,
  PRIMARY KEY (tenant, seq)
);
CREATE INDEX risk_asset_status_asset ON risk_asset_status (tenant, asset, at, seq);

-- The results projection: every risk.scored / risk.reviewed entry, and per claim its state.
CREATE TABLE risk_scores (
  tenant           text NOT NULL,
  seq              bigint NOT NULL,
  claim_id         text NOT NULL,
  event_id         text NOT NULL,
  leaf_hash        bytea NOT NULL CHECK (length(leaf_hash) = 32),
  scored_event_id  text NOT NULL,
  score            int NOT NULL CHECK (score BETWEEN 0 AND 100),
  level            text NOT NULL,
  review_required  boolean NOT NULL,
  recorded_at      timestamptz NOT NULL,
  result           jsonb NOT NULL,
  PRIMARY KEY (tenant, seq)
);
CREATE INDEX risk_scores_event ON risk_scores (tenant, scored_event_id, seq);
CREATE INDEX risk_scores_claim ON risk_scores (tenant, claim_id, seq);

CREATE TABLE risk_reviews (
  tenant       text NOT NULL,
  seq          bigint NOT NULL,
  claim_id     text NOT NULL,
  event_id     text NOT NULL,
  leaf_hash    bytea NOT NULL CHECK (length(leaf_hash) = 32),
  decision     text NOT NULL CHECK (decision IN ('approve', 'reject', 'escalate')),
  reviewer     text NOT NULL,
  note         text NOT NULL,
  score_seq    bigint NOT NULL,
  recorded_at  timestamptz NOT NULL,
  PRIMARY KEY (tenant, seq)
);
CREATE INDEX risk_reviews_claim ON risk_reviews (tenant, claim_id, seq);

CREATE TABLE risk_review_state (
  tenant      text NOT NULL,
  claim_id    text NOT NULL,
  score_seq   bigint NOT NULL,
  review_seq  bigint,
  score       int NOT NULL,
  state       text NOT NULL
              CHECK (state IN ('pending', 'not_required', 'approved', 'rejected', 'escalated')),
  PRIMARY KEY (tenant, claim_id)
);
CREATE INDEX risk_review_queue ON risk_review_state (tenant, score DESC, claim_id)
  WHERE state IN ('pending', 'escalated');

REVOKE ALL ON risk_folded, risk_claims, risk_documents, risk_custody, risk_asset_status,
  risk_scores, risk_reviews, risk_review_state FROM PUBLIC;
-- Derived projections: the app inserts and updates them, never deletes.
GRANT SELECT, INSERT ON risk_folded, risk_documents, risk_custody, risk_asset_status,
  risk_scores, risk_reviews TO proveniq_app;
GRANT SELECT, INSERT, UPDATE ON risk_claims, risk_review_state TO proveniq_app;
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute(
        "DROP TABLE risk_review_state, risk_reviews, risk_scores, risk_asset_status, "
        "risk_custody, risk_documents, risk_claims, risk_folded"
    )

"""webhooks (subscriptions, messages, deliveries, attempts, the local task queue).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = r"""
-- One row per webhook endpoint of a tenant. Secrets are stored only sealed (envelope
-- encryption: Cloud KMS in production, a local key file locally). Deleting is a soft delete,
-- so the deliveries' history stays.
CREATE TABLE webhook_subscriptions (
  id                     text PRIMARY KEY CHECK (id ~ '^wh_[0-9a-f]{24}$'),
  tenant                 text NOT NULL,
  url                    text NOT NULL CHECK (length(url) <= 2048),
  events                 text[] NOT NULL CHECK (cardinality(events) BETWEEN 1 AND 50),
  description            text NOT NULL DEFAULT '',
  enabled                boolean NOT NULL,
  disabled_reason        text,
  secret_sealed          bytea NOT NULL,
  previous_secret_sealed bytea,
  previous_until         timestamptz,
  created_at             timestamptz NOT NULL,
  updated_at             timestamptz NOT NULL,
  deleted_at             timestamptz,
  UNIQUE (tenant, id)
);
CREATE INDEX webhook_subscriptions_tenant ON webhook_subscriptions (tenant, created_at)
  WHERE deleted_at IS NULL;

-- The signed body of one event, stored once however many subscriptions receive it.
CREATE TABLE webhook_messages (
  tenant     text NOT NULL,
  event_id   text NOT NULL,
  type       text NOT NULL,
  body       bytea NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (tenant, event_id)
);

-- One event to one subscription. (round, attempt) fence the tasks: only the task for the next
-- attempt of the current round may claim the row.
CREATE TABLE webhook_deliveries (
  seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  id              text PRIMARY KEY,
  tenant          text NOT NULL,
  subscription_id text NOT NULL,
  event_id        text NOT NULL,
  event_type      text NOT NULL,
  kind            text NOT NULL CHECK (kind IN ('event', 'test')),
  state           text NOT NULL CHECK (state IN ('pending', 'delivered', 'dead', 'cancelled')),
  round           integer NOT NULL CHECK (round >= 0),
  attempt         integer NOT NULL CHECK (attempt >= 0),
  next_attempt_at timestamptz,
  lease_until     timestamptz,
  last_status     integer,
  last_error      text,
  created_at      timestamptz NOT NULL,
  updated_at      timestamptz NOT NULL,
  UNIQUE (subscription_id, event_id),
  FOREIGN KEY (tenant, subscription_id) REFERENCES webhook_subscriptions (tenant, id),
  FOREIGN KEY (tenant, event_id) REFERENCES webhook_messages (tenant, event_id)
);
CREATE INDEX webhook_deliveries_listing
  ON webhook_deliveries (tenant, subscription_id, seq DESC);
CREATE INDEX webhook_deliveries_overdue
  ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';

-- Every HTTP attempt, append-only (the app role may not change or delete one).
CREATE TABLE webhook_attempts (
  delivery_id     text NOT NULL REFERENCES webhook_deliveries (id),
  round           integer NOT NULL,
  number          integer NOT NULL CHECK (number >= 1),
  started_at      timestamptz NOT NULL,
  latency_ms      integer NOT NULL CHECK (latency_ms >= 0),
  status          integer,
  error           text,
  outcome         text NOT NULL CHECK (outcome IN ('delivered', 'gone', 'retry')),
  next_attempt_at timestamptz,
  PRIMARY KEY (delivery_id, round, number)
);

-- The local stack's durable task queue (Cloud Tasks' twin): scheduled attempts that survive
-- a restart, claimed by a polling worker with a lease, deleted when handled.
CREATE TABLE webhook_tasks (
  name          text PRIMARY KEY,
  tenant        text NOT NULL,
  delivery_id   text NOT NULL,
  round         integer NOT NULL,
  attempt       integer NOT NULL,
  not_before    timestamptz NOT NULL,
  claimed_until timestamptz,
  tries         integer NOT NULL DEFAULT 0,
  traceparent   text NOT NULL DEFAULT '',
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_tasks_due ON webhook_tasks (not_before);

REVOKE ALL ON webhook_subscriptions, webhook_messages, webhook_deliveries, webhook_attempts,
  webhook_tasks FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON webhook_subscriptions, webhook_deliveries TO proveniq_app;
GRANT SELECT, INSERT ON webhook_messages, webhook_attempts TO proveniq_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_tasks TO proveniq_app;
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute(
        "DROP TABLE webhook_tasks, webhook_attempts, webhook_deliveries, webhook_messages, "
        "webhook_subscriptions"
    )

"""devices (registry, telemetry counters).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SCHEMA = r"""
-- The device registry. device_id is unique across tenants: a Pub/Sub message names only its
-- device, and the id determines the tenant. Keys are raw 32-byte Ed25519 public keys; during a
-- rotation the previous key stays valid until previous_key_until.
CREATE TABLE devices (
  device_id          text PRIMARY KEY,
  tenant             text NOT NULL,
  kind               text NOT NULL CHECK (kind IN ('smart-tag', 'locker')),
  public_key         bytea NOT NULL CHECK (length(public_key) = 32),
  previous_key       bytea CHECK (length(previous_key) = 32),
  previous_key_until timestamptz,
  asset              text,
  status             text NOT NULL DEFAULT 'active'
                     CHECK (status IN ('active', 'suspended', 'retired')),
  created_at         timestamptz NOT NULL,
  updated_at         timestamptz NOT NULL,
  last_counter       bigint NOT NULL DEFAULT 0 CHECK (last_counter >= 0),
  last_seen          timestamptz,
  accepted           bigint NOT NULL DEFAULT 0 CHECK (accepted >= 0),
  UNIQUE (tenant, device_id),
  CHECK ((previous_key IS NULL) = (previous_key_until IS NULL))
);

-- One row per message in the ledger: (device, counter) -> SHA-256 of the signed bytes and the
-- entry's seq. Tells a redelivery (same bytes: acknowledged) from a replay (other bytes).
CREATE TABLE device_messages (
  device_id   text NOT NULL,
  counter     bigint NOT NULL CHECK (counter >= 1),
  tenant      text NOT NULL,
  digest      bytea NOT NULL CHECK (length(digest) = 32),
  seq         bigint NOT NULL CHECK (seq >= 0),
  recorded_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (device_id, counter),
  FOREIGN KEY (tenant, device_id) REFERENCES devices (tenant, device_id)
);

CREATE TRIGGER device_messages_append_only BEFORE UPDATE OR DELETE ON device_messages
  FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER device_messages_no_truncate BEFORE TRUNCATE ON device_messages
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- Dead-lettered messages per device and reason.
CREATE TABLE device_rejections (
  device_id text NOT NULL,
  reason    text NOT NULL,
  tenant    text NOT NULL,
  count     bigint NOT NULL CHECK (count > 0),
  PRIMARY KEY (device_id, reason),
  FOREIGN KEY (tenant, device_id) REFERENCES devices (tenant, device_id)
);

REVOKE ALL ON devices, device_messages, device_rejections FROM PUBLIC;
GRANT SELECT, INSERT ON devices, device_messages, device_rejections TO proveniq_app;
-- Never a device's id, tenant, kind or creation time; counters only upwards (checks above).
GRANT UPDATE (public_key, previous_key, previous_key_until, asset, status, updated_at,
              last_counter, last_seen, accepted) ON devices TO proveniq_app;
GRANT UPDATE (count) ON device_rejections TO proveniq_app;
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute("DROP TABLE device_rejections, device_messages, devices")

"""The application role may no longer UPDATE partners or api_keys (it could un-revoke a key or
change a tier). Revocation, tier changes and suspension go through narrow SECURITY DEFINER
functions.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SCHEMA = r"""
REVOKE UPDATE ON partners, api_keys FROM proveniq_app;

CREATE FUNCTION revoke_api_key(p_id text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
  UPDATE api_keys SET revoked_at = now() WHERE id = p_id AND revoked_at IS NULL;
  IF FOUND THEN
    RETURN 'revoked';
  END IF;
  IF EXISTS (SELECT 1 FROM api_keys WHERE id = p_id) THEN
    RETURN 'already';
  END IF;
  RETURN 'missing';
END $$;
REVOKE ALL ON FUNCTION revoke_api_key(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION revoke_api_key(text) TO proveniq_app;

-- tier and suspension of a partner (NULL: unchanged); false if there is no such partner
CREATE FUNCTION update_partner(p_id text, p_tier text, p_suspended boolean) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
  UPDATE partners SET
    tier = coalesce(p_tier, tier),
    disabled_at = CASE WHEN p_suspended IS NULL THEN disabled_at
                       WHEN p_suspended THEN coalesce(disabled_at, now())
                       ELSE NULL END
  WHERE id = p_id;
  RETURN FOUND;
END $$;
REVOKE ALL ON FUNCTION update_partner(text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION update_partner(text, text, boolean) TO proveniq_app;
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute("DROP FUNCTION update_partner(text, text, boolean)")
    op.execute("DROP FUNCTION revoke_api_key(text)")
    op.execute("GRANT UPDATE ON partners, api_keys TO proveniq_app")

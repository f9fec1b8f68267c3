# Two keys in one ring: the checkpoint signer (Ed25519, PureEdDSA over the checkpoint note body)
# and the envelope key of the webhook signing secrets.
#
# Asymmetric keys have no automatic rotation: a new version is created by hand and both sign
# for a while (docs/DEPLOY.md, "Rotating the checkpoint signer"). Key rings and keys cannot be
# deleted in Cloud KMS, hence prevent_destroy.

resource "google_kms_key_ring" "ledger" {
  name       = var.kms_key_ring_name
  location   = local.kms_location
  depends_on = [google_project_service.apis]
}

resource "google_kms_crypto_key" "checkpoint_signer" {
  name     = "checkpoint-signer"
  key_ring = google_kms_key_ring.ledger.id
  purpose  = "ASYMMETRIC_SIGN"

  version_template {
    algorithm = "EC_SIGN_ED25519"
    # Ed25519 is offered at the SOFTWARE protection level (not in Cloud HSM).
    protection_level = "SOFTWARE"
  }

  lifecycle {
    prevent_destroy = true
  }
}

data "google_kms_crypto_key_version" "checkpoint_signer" {
  crypto_key = google_kms_crypto_key.checkpoint_signer.id
  version    = var.kms_signing_key_version
}

# batch_merkle signs checkpoints.
resource "google_kms_crypto_key_iam_member" "batch_merkle_signer" {
  crypto_key_id = google_kms_crypto_key.checkpoint_signer.id
  role          = "roles/cloudkms.signerVerifier"
  member        = google_service_account.function["batch_merkle"].member
}

# get_proof serves the public key(s) (GET /v1/log/public-key) and verifies proofs.
resource "google_kms_crypto_key_iam_member" "get_proof_public_key" {
  crypto_key_id = google_kms_crypto_key.checkpoint_signer.id
  role          = "roles/cloudkms.publicKeyViewer"
  member        = google_service_account.function["get_proof"].member
}

# --- Webhook signing secrets: envelope encryption (proveniq.adapters.gcp.kms_envelope) ---------
#
# Each subscription's secret is encrypted locally with a fresh AES-256-GCM data key that this key
# wraps (Encrypt) and unwraps (Decrypt). Symmetric keys rotate automatically: a new primary
# version wraps new data keys, older versions keep unwrapping the ones they wrapped (never
# destroy a version while a secret it wrapped is still stored; rotating every webhook's secret
# re-wraps them all under the primary).

resource "google_kms_crypto_key" "webhook_secrets" {
  name            = "webhook-secrets"
  key_ring        = google_kms_key_ring.ledger.id
  purpose         = "ENCRYPT_DECRYPT"
  rotation_period = var.webhook_key_rotation_period

  version_template {
    algorithm        = "GOOGLE_SYMMETRIC_ENCRYPTION"
    protection_level = "SOFTWARE"
  }

  lifecycle {
    prevent_destroy = true
  }
}

# admin creates subscriptions and rotates their secrets (Encrypt), and sends the test event
# inline (POST /v1/webhooks/{id}/test signs it: Decrypt).
resource "google_kms_crypto_key_iam_member" "admin_webhook_secrets" {
  crypto_key_id = google_kms_crypto_key.webhook_secrets.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = google_service_account.function["admin"].member
}

# webhook_dispatch signs each delivery attempt with the subscription's secret(s): Decrypt only.
# risk_score's fan-out never reads a secret, so it has no role on this key.
resource "google_kms_crypto_key_iam_member" "dispatch_webhook_secrets" {
  crypto_key_id = google_kms_crypto_key.webhook_secrets.id
  role          = "roles/cloudkms.cryptoKeyDecrypter"
  member        = google_service_account.function["webhook_dispatch"].member
}

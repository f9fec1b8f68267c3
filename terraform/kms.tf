# The checkpoint signer: Ed25519 in Cloud KMS (PureEdDSA over the checkpoint note body).
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

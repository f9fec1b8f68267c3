output "gateway_url" {
  description = "Base URL partners and apps call."
  value       = "https://${google_api_gateway_gateway.ledger.default_hostname}"
}

output "kms_key_version_name" {
  description = "PROVENIQ_KMS_KEY_VERSION: the checkpoint signer version batch_merkle signs with."
  value       = data.google_kms_crypto_key_version.checkpoint_signer.name
}

output "sql_connection_name" {
  description = "PROVENIQ_CLOUDSQL_INSTANCE (project:region:instance)."
  value       = google_sql_database_instance.ledger.connection_name
}

output "sql_replica_connection_name" {
  description = "PROVENIQ_CLOUDSQL_REPLICA_INSTANCE of get_proof (empty unless sql_read_replica)."
  value       = join("", google_sql_database_instance.ledger_replica[*].connection_name)
}

output "function_urls" {
  description = "Backend URLs the gateway calls (functions are deployed by cloudbuild.yaml)."
  value       = local.function_urls
}

output "webhook_dispatch_url" {
  description = "PROVENIQ_WEBHOOK_DISPATCH_URL: the run.app URL Cloud Tasks calls (and the OIDC audience)."
  value       = local.webhook_dispatch_url
}

output "webhook_secrets_key" {
  description = "PROVENIQ_WEBHOOK_KMS_KEY: the envelope key of the webhook signing secrets."
  value       = google_kms_crypto_key.webhook_secrets.id
}

output "service_accounts" {
  description = "Runtime service account of each function."
  value       = { for dir, sa in google_service_account.function : dir => sa.email }
}

output "migrator_db_user" {
  description = "IAM database user that owns the schema (used by the migrate step)."
  value       = local.migrator_db_user
}

output "deployer_service_account" {
  description = "Service account cloudbuild.yaml runs as."
  value       = google_service_account.deployer.email
}

output "cloudbuild_substitutions" {
  description = "Pass to: gcloud builds submit --config cloudbuild.yaml --substitutions=..."
  value = join(",", [
    "_REGION=${var.region}",
    "_PROJECT=${var.project_id}",
    "_SQL_INSTANCE=${google_sql_database_instance.ledger.connection_name}",
    "_SQL_REPLICA_INSTANCE=${join("", google_sql_database_instance.ledger_replica[*].connection_name)}",
    "_DB_NAME=${google_sql_database.ledger.name}",
    "_KMS_KEY_VERSION=${data.google_kms_crypto_key_version.checkpoint_signer.name}",
    "_LOG_ORIGIN=${var.log_origin}",
    "_FIREBASE_PROJECT=${local.firebase_project}",
    "_FIRESTORE_PROJECT=${google_firestore_database.projection.project}",
    "_PUBLIC_BASE_URL=${local.public_base_url}",
    "_WEBHOOK_KMS_KEY=${google_kms_crypto_key.webhook_secrets.id}",
    "_WEBHOOK_QUEUE=${google_cloud_tasks_queue.webhooks.id}",
    "_WEBHOOK_DISPATCH_URL=${local.webhook_dispatch_url}",
    "_WEBHOOK_INVOKER=${google_service_account.tasks_invoker.email}",
    "_GEMINI_MODEL=${var.gemini_model}",
    "_GEMINI_LOCATION=${local.gemini_location}",
  ])
}

output "db_bootstrap_sql" {
  description = "Run once as the built-in postgres user before the first migration (docs/DEPLOY.md)."
  value       = <<-SQL
    ALTER ROLE "${local.migrator_db_user}" CREATEROLE;
    GRANT USAGE, CREATE ON SCHEMA public TO "${local.migrator_db_user}";
  SQL
}

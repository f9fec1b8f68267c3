# Cloud SQL for PostgreSQL 15: the ledger's only system of record.

resource "google_sql_database_instance" "ledger" {
  name                = var.sql_instance_name
  database_version    = "POSTGRES_15"
  region              = var.region
  deletion_protection = var.deletion_protection

  settings {
    edition                     = "ENTERPRISE"
    tier                        = var.sql_tier
    availability_type           = var.sql_availability_type
    disk_type                   = "PD_SSD"
    disk_size                   = var.sql_disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    connector_enforcement       = var.sql_connector_enforcement

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "02:00"
      transaction_log_retention_days = var.sql_log_retention_days

      backup_retention_settings {
        retained_backups = var.sql_retained_backups
        retention_unit   = "COUNT"
      }
    }

    ip_configuration {
      ipv4_enabled    = var.sql_public_ip
      private_network = var.sql_private_network
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    # The functions and the migrator log in as IAM database users (no passwords anywhere).
    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }

    maintenance_window {
      day          = 7
      hour         = 3
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = true
    }
  }

  depends_on = [google_project_service.apis]
}

# A read replica for get_proof's reads (sql_read_replica; off by default). It streams from the
# primary; the IAM database users and their grants replicate with it. The functions fall back to
# the primary for whatever it has not replayed yet (docs/DECISIONS.md, reads off a replica).
resource "google_sql_database_instance" "ledger_replica" {
  count                = var.sql_read_replica ? 1 : 0
  name                 = "${var.sql_instance_name}-replica"
  master_instance_name = google_sql_database_instance.ledger.name
  database_version     = "POSTGRES_15"
  region               = var.region
  deletion_protection  = var.deletion_protection

  replica_configuration {
    failover_target = false
  }

  settings {
    edition               = "ENTERPRISE"
    tier                  = var.sql_replica_tier
    availability_type     = "ZONAL"
    disk_type             = "PD_SSD"
    disk_autoresize       = true
    connector_enforcement = var.sql_connector_enforcement

    ip_configuration {
      ipv4_enabled    = var.sql_public_ip
      private_network = var.sql_private_network
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = true
    }
  }
}

resource "google_sql_database" "ledger" {
  name            = "proveniq"
  instance        = google_sql_database_instance.ledger.name
  deletion_policy = "ABANDON"
}

# One IAM database user per function service account. Membership of the `proveniq_app` role
# (created and granted table privileges by the migrations) is granted by the migrate step of
# cloudbuild.yaml (deploy/db_grants.py), since Terraform has no SQL connection.
resource "google_sql_user" "function" {
  for_each = local.function_db_users

  name     = each.value
  instance = google_sql_database_instance.ledger.name
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

# The schema owner. ABANDON: a role that owns tables cannot be dropped.
resource "google_sql_user" "migrator" {
  name            = local.migrator_db_user
  instance        = google_sql_database_instance.ledger.name
  type            = "CLOUD_IAM_SERVICE_ACCOUNT"
  deletion_policy = "ABANDON"
}

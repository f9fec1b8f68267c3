# Firestore: the apps' read-only projection of the ledger (docs/PROJECTIONS.md) and its
# security rules (../firestore.rules). Nothing in it is a source of truth: `proveniq project
# --rebuild` recreates every document from the ledger.

variable "firestore_location" {
  description = "Location of the Firestore database (null: the region). Cannot change after creation."
  type        = string
  default     = null
}

variable "firestore_delete_protection" {
  description = "Protect the Firestore database from deletion."
  type        = bool
  default     = true
}

locals {
  firestore_location = coalesce(var.firestore_location, var.region)
  # Collections whose documents carry `sealed` and `last_seq` (the seal's query).
  firestore_sealable = toset(["assets", "claims"])
}

resource "google_project_service" "firebaserules" {
  project            = var.project_id
  service            = "firebaserules.googleapis.com"
  disable_on_destroy = false
}

resource "google_firestore_database" "projection" {
  project                           = var.project_id
  name                              = "(default)"
  location_id                       = local.firestore_location
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "OPTIMISTIC" # the follower writes with update-time preconditions
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_DISABLED" # rebuilt from the ledger
  delete_protection_state           = var.firestore_delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = "ABANDON"

  depends_on = [google_project_service.apis]
}

# --- Security rules: apps read their own organization's documents, nobody writes ---------------

resource "google_firebaserules_ruleset" "firestore" {
  project = var.project_id

  source {
    files {
      name    = "firestore.rules"
      content = file("${path.module}/../firestore.rules")
    }
  }

  lifecycle {
    create_before_destroy = true
  }

  depends_on = [google_project_service.firebaserules, google_firestore_database.projection]
}

resource "google_firebaserules_release" "firestore" {
  project      = var.project_id
  name         = "cloud.firestore" # the (default) database's release
  ruleset_name = "projects/${var.project_id}/rulesets/${google_firebaserules_ruleset.firestore.name}"

  lifecycle {
    replace_triggered_by = [google_firebaserules_ruleset.firestore]
  }
}

# --- Indexes and TTL ------------------------------------------------------------------------

# FirestoreSink.seal: where sealed == false and last_seq < tree size.
resource "google_firestore_index" "unsealed" {
  for_each = local.firestore_sealable

  project     = var.project_id
  database    = google_firestore_database.projection.name
  collection  = each.value
  query_scope = "COLLECTION"

  fields {
    field_path = "sealed"
    order      = "ASCENDING"
  }

  fields {
    field_path = "last_seq"
    order      = "ASCENDING"
  }
}

# The follower's per-event markers (projection_state/{tenant}/applied/{leaf hash}) expire after
# their `expire_at`, longer than any redelivery window; they are not indexed.
resource "google_firestore_field" "marker_ttl" {
  project    = var.project_id
  database   = google_firestore_database.projection.name
  collection = "applied"
  field      = "expire_at"

  ttl_config {}

  index_config {}
}

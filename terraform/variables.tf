variable "project_id" {
  description = "GCP project that hosts the ledger."
  type        = string
}

variable "region" {
  description = "Region of the functions, Cloud SQL, Cloud Tasks and the scheduler. Must equal the _REGION substitution of cloudbuild.yaml."
  type        = string
  default     = "europe-west1"
}

variable "firebase_project" {
  description = "Firebase project whose ID tokens the HTTP functions accept (null: the same project)."
  type        = string
  default     = null
}

variable "log_origin" {
  description = "The log's C2SP origin line, e.g. \"ledger.example.com/proveniq\". It names the log in every checkpoint: never change it after the first checkpoint is signed."
  type        = string

  validation {
    condition     = length(trimspace(var.log_origin)) > 0 && !can(regex("[\\n,;]", var.log_origin))
    error_message = "log_origin must be one non-empty line without commas or semicolons."
  }
}

# --- Cloud SQL -------------------------------------------------------------------------------

variable "sql_instance_name" {
  description = "Cloud SQL instance name (instance names cannot be reused for a week after deletion)."
  type        = string
  default     = "proveniq-ledger"
}

variable "sql_tier" {
  description = "Machine type of the Cloud SQL instance (Enterprise edition)."
  type        = string
  default     = "db-custom-2-7680"
}

variable "sql_availability_type" {
  description = "REGIONAL (high availability, failover replica in another zone) or ZONAL."
  type        = string
  default     = "REGIONAL"

  validation {
    condition     = contains(["REGIONAL", "ZONAL"], var.sql_availability_type)
    error_message = "sql_availability_type must be REGIONAL or ZONAL."
  }
}

variable "sql_read_replica" {
  description = "A Cloud SQL read replica for get_proof's reads (docs/DEPLOY.md, reads off a replica)."
  type        = bool
  default     = false
}

variable "sql_replica_tier" {
  description = "Machine type of the read replica (when sql_read_replica)."
  type        = string
  default     = "db-custom-2-7680"
}

variable "sql_disk_size_gb" {
  description = "Initial SSD size; storage auto-increase is on."
  type        = number
  default     = 20
}

variable "sql_retained_backups" {
  description = "Number of automated daily backups kept."
  type        = number
  default     = 14
}

variable "sql_log_retention_days" {
  description = "Days of write-ahead log kept for point-in-time recovery (1-7)."
  type        = number
  default     = 7
}

variable "sql_private_network" {
  description = "Optional VPC self link for a private IP (Private Services Access must already be set up on it). The functions reach the instance through the Cloud SQL connector on its public IP unless the connector is told to use the private one; see docs/DEPLOY.md."
  type        = string
  default     = null
}

variable "sql_public_ip" {
  description = "Whether the instance has a public IP. No authorized networks are configured: only the Cloud SQL connectors / Auth Proxy (IAM-authorised, TLS) can use it."
  type        = bool
  default     = true
}

variable "sql_connector_enforcement" {
  description = "REQUIRED: only Cloud SQL connectors and the Auth Proxy may connect. NOT_REQUIRED also allows direct TLS connections."
  type        = string
  default     = "REQUIRED"
}

variable "deletion_protection" {
  description = "Protect the Cloud SQL instance from deletion (both Terraform's guard and the API-level flag)."
  type        = bool
  default     = true
}

# --- Signing key ---------------------------------------------------------------------------

variable "kms_location" {
  description = "Location of the key ring (null: the region)."
  type        = string
  default     = null
}

variable "kms_key_ring_name" {
  description = "Key ring name (key rings and keys cannot be deleted: pick a name once)."
  type        = string
  default     = "proveniq-ledger"
}

variable "kms_signing_key_version" {
  description = "Version number of the checkpoint signer that batch_merkle signs with (bump after creating a new version, see docs/DEPLOY.md)."
  type        = number
  default     = 1
}

# --- Pub/Sub, scheduler, tasks -------------------------------------------------------------

variable "ledger_events_retention" {
  description = "How long ledger-events keeps published messages (replay window), e.g. \"604800s\" (7 days, max 31 days)."
  type        = string
  default     = "604800s"
}

variable "seal_schedule" {
  description = "Cron schedule of the seal tick (Cloud Scheduler's minimum period is one minute)."
  type        = string
  default     = "* * * * *"
}

variable "device_publishers" {
  description = "IAM principals allowed to publish to device-telemetry: device fleets through Workload Identity Federation (\"principalSet://iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/attribute.fleet/FLEET\", \"principal://.../subject/DEVICE\") or a bridge's service account (\"serviceAccount:iot-bridge@PROJECT.iam.gserviceaccount.com\"). Publishing only lets a message reach device_ingest: each reading is also signed by the device's own Ed25519 key (docs/DEPLOY.md, \"How devices authenticate\")."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for m in var.device_publishers :
      can(regex("^(serviceAccount:[^@\\s]+@[^@\\s]+\\.iam\\.gserviceaccount\\.com|principal://iam\\.googleapis\\.com/\\S+|principalSet://iam\\.googleapis\\.com/\\S+)$", m))
    ])
    error_message = "device_publishers takes service accounts (serviceAccount:...) or Workload Identity Federation principals (principal://, principalSet://), never allUsers, allAuthenticatedUsers, users or domains."
  }
}

variable "webhook_max_dispatches_per_second" {
  description = "Rate limit of the webhooks Cloud Tasks queue."
  type        = number
  default     = 50
}

variable "webhook_max_concurrent_dispatches" {
  description = "Concurrency limit of the webhooks Cloud Tasks queue."
  type        = number
  default     = 100
}

variable "webhook_key_rotation_period" {
  description = "Automatic rotation of the webhook-secrets KMS key (envelope encryption: older versions keep decrypting the secrets they wrapped)."
  type        = string
  default     = "7776000s" # 90 days
}

# --- Risk scoring -------------------------------------------------------------------------

variable "gemini_model" {
  description = "Gemini model risk_score and POST /v1/risk/analyze call on Vertex AI (PROVENIQ_GEMINI_MODEL); \"\" for deterministic scoring only."
  type        = string
  default     = "gemini-2.5-flash"

  validation {
    condition     = can(regex("^[A-Za-z0-9._@/-]*$", var.gemini_model))
    error_message = "gemini_model is a model id such as gemini-2.5-flash, or \"\"."
  }
}

variable "gemini_location" {
  description = "Vertex AI location of the Gemini calls (null: the region). Pick one where the model is offered."
  type        = string
  default     = null
}

# --- API Gateway ---------------------------------------------------------------------------

variable "gateway_region" {
  description = "Region of the API Gateway (API Gateway is offered in a subset of regions; null: the region)."
  type        = string
  default     = null
}

variable "function_url_overrides" {
  description = "Function URLs to use instead of the computed https://REGION-PROJECT.cloudfunctions.net/NAME, keyed by function directory (e.g. the run.app URLs)."
  type        = map(string)
  default     = {}
}

variable "public_base_url" {
  description = "Base URL partners use, put in webhook payloads' proof URLs (null: the gateway's URL). Set it when a custom domain fronts the gateway."
  type        = string
  default     = null

  validation {
    condition     = var.public_base_url == null || can(regex("^https://[^,;\\s]+$", var.public_base_url))
    error_message = "public_base_url must be an https:// URL without commas, semicolons or spaces."
  }
}

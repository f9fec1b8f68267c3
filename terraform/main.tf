# Proveniq Ledger on GCP: the infrastructure.
#
# Terraform owns everything except the function revisions themselves: cloudbuild.yaml tests,
# packages (deploy/package.py), migrates and deploys each function with `gcloud functions deploy`
# and grants the invoker bindings on them. The functions' names, service accounts and URLs are
# fixed here so both sides agree; docs/DEPLOY.md explains the choice.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  firebase_project = coalesce(var.firebase_project, var.project_id)
  kms_location     = coalesce(var.kms_location, var.region)
  gateway_region   = coalesce(var.gateway_region, var.region)

  # Directory under functions/ => how it is deployed. A `planned` function is not written yet:
  # its infrastructure exists so the configuration is complete when it lands (the packaging
  # script and the Cloud Build steps skip directories that do not exist).
  functions = {
    write_event = {
      name    = "write-event"
      trigger = "http"
      gateway = true
      planned = false
    }
    admin = {
      name    = "admin"
      trigger = "http"
      gateway = true
      planned = false
    }
    get_proof = {
      name    = "get-proof"
      trigger = "http"
      gateway = true
      planned = false
    }
    batch_merkle = {
      name    = "batch-merkle"
      trigger = "seal-tick" # Pub/Sub topic, published by Cloud Scheduler
      gateway = false
      planned = false
    }
    risk_score = {
      name    = "risk-score"
      trigger = "ledger-events" # the follower: risk scoring, webhook fan-out, Firestore projection
      gateway = false
      planned = false
    }
    webhook_dispatch = {
      name    = "webhook-dispatch"
      trigger = "http" # invoked by Cloud Tasks (OIDC), not routed by the gateway
      gateway = false
      planned = false
    }
    device_ingest = {
      name    = "device-ingest"
      trigger = "device-telemetry" # Pub/Sub, published by devices
      gateway = false
      planned = false
    }
  }

  # 2nd gen functions also answer on https://REGION-PROJECT.cloudfunctions.net/NAME, which is
  # known before the first deployment (the gateway config can be created first).
  function_urls = {
    for dir, f in local.functions :
    dir => lookup(var.function_url_overrides, dir, "https://${var.region}-${var.project_id}.cloudfunctions.net/${f.name}")
  }

  # Cloud Tasks counts as internal traffic for an internal-only function only on its run.app URL
  # (not on cloudfunctions.net), so webhook tasks target Cloud Run's deterministic URL
  # https://SERVICE-PROJECT_NUMBER.REGION.run.app, also known before the first deployment. The
  # tasks' OIDC audience is that same URL (proveniq.adapters.gcp.tasks).
  webhook_dispatch_url = lookup(
    var.function_url_overrides, "webhook_dispatch",
    "https://${local.functions.webhook_dispatch.name}-${data.google_project.this.number}.${var.region}.run.app"
  )

  # Where partners reach the API: proof URLs in webhook payloads (PROVENIQ_PUBLIC_BASE_URL).
  public_base_url = coalesce(var.public_base_url, "https://${google_api_gateway_gateway.ledger.default_hostname}")
  gemini_location = coalesce(var.gemini_location, var.region)

  # Cloud SQL IAM database user names: the service account email without ".gserviceaccount.com".
  function_db_users = {
    for dir, sa in google_service_account.function :
    dir => trimsuffix(sa.email, ".gserviceaccount.com")
  }
  migrator_db_user = trimsuffix(google_service_account.migrator.email, ".gserviceaccount.com")
}

# --- APIs ----------------------------------------------------------------------------------

resource "google_project_service" "apis" {
  for_each = toset([
    "aiplatform.googleapis.com", # Gemini on Vertex AI (risk_score, POST /v1/risk/analyze)
    "apigateway.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudkms.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "cloudtasks.googleapis.com",
    "cloudtrace.googleapis.com",
    "eventarc.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "identitytoolkit.googleapis.com",
    "logging.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "servicecontrol.googleapis.com",
    "servicemanagement.googleapis.com",
    "sqladmin.googleapis.com",
  ])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

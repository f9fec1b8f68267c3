# One runtime service account per function, plus the identities around them. Every binding
# below is the least one the function needs; resource-level bindings (topic, key, queue) live
# next to their resource in the other files.

resource "google_service_account" "function" {
  for_each = local.functions

  account_id   = "proveniq-${replace(each.key, "_", "-")}"
  display_name = "Proveniq ${each.key} function${each.value.planned ? " (planned)" : ""}"
  depends_on   = [google_project_service.apis]
}

# API Gateway calls the HTTP functions with an ID token of this account (run.invoker on each
# function is granted by cloudbuild.yaml right after it deploys the function).
resource "google_service_account" "gateway" {
  account_id   = "proveniq-gateway"
  display_name = "Proveniq API Gateway backend caller"
  depends_on   = [google_project_service.apis]
}

# Cloud Tasks signs its webhook_dispatch calls (OIDC) as this account. It holds no role itself:
# cloudbuild.yaml grants it run.invoker on webhook_dispatch, and nothing else.
resource "google_service_account" "tasks_invoker" {
  account_id   = "proveniq-tasks-invoker"
  display_name = "Proveniq Cloud Tasks caller of webhook_dispatch"
  depends_on   = [google_project_service.apis]
}

# The schema owner: `proveniq migrate` runs as this IAM database user (Cloud Build impersonates
# it through the Cloud SQL Auth Proxy). Nothing else logs in as it.
resource "google_service_account" "migrator" {
  account_id   = "proveniq-migrator"
  display_name = "Proveniq schema owner (migrations)"
  depends_on   = [google_project_service.apis]
}

# Cloud Build runs cloudbuild.yaml as this account.
resource "google_service_account" "deployer" {
  account_id   = "proveniq-deployer"
  display_name = "Proveniq Cloud Build deployer"
  depends_on   = [google_project_service.apis]
}

# Builds the function containers (gcloud functions deploy --build-service-account).
resource "google_service_account" "fn_builder" {
  account_id   = "proveniq-fn-builder"
  display_name = "Proveniq function image builder"
  depends_on   = [google_project_service.apis]
}

# --- Cloud SQL: every function and the migrator log in with IAM database authentication ------

resource "google_project_iam_member" "function_sql_client" {
  for_each = google_service_account.function
  project  = var.project_id
  role     = "roles/cloudsql.client"
  member   = each.value.member
}

resource "google_project_iam_member" "function_sql_instance_user" {
  for_each = google_service_account.function
  project  = var.project_id
  role     = "roles/cloudsql.instanceUser"
  member   = each.value.member
}

# --- Cloud Trace: every function exports its spans (proveniq.app.tracing, on GCP) ----------------

resource "google_project_iam_member" "function_trace_agent" {
  for_each = google_service_account.function
  project  = var.project_id
  role     = "roles/cloudtrace.agent"
  member   = each.value.member
}

resource "google_project_iam_member" "migrator_sql" {
  for_each = toset(["roles/cloudsql.client", "roles/cloudsql.instanceUser"])
  project  = var.project_id
  role     = each.value
  member   = google_service_account.migrator.member
}

# --- Firebase Auth: verify_id_token(check_revoked=True) reads the user record ----------------

resource "google_project_iam_member" "firebase_auth_viewer" {
  for_each = toset(["write_event", "admin", "get_proof"])
  project  = local.firebase_project
  role     = "roles/firebaseauth.viewer"
  member   = google_service_account.function[each.value].member
}

# --- Firestore: risk_score keeps the apps' projection -----------------------------------------

resource "google_project_iam_member" "risk_score_firestore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.function["risk_score"].member
}

# --- Vertex AI: Gemini assessments of risk_score and of POST /v1/risk/analyze (write_event) ----

resource "google_project_iam_member" "gemini_user" {
  for_each = toset(["risk_score", "write_event"])
  project  = var.project_id
  role     = "roles/aiplatform.user"
  member   = google_service_account.function[each.value].member
}

# --- Cloud Tasks: the functions that enqueue webhook deliveries may sign them as tasks_invoker -

locals {
  # risk_score fans events out, admin replays deliveries, webhook_dispatch schedules the next
  # attempt. Creating a task with an OIDC token needs iam.serviceAccounts.actAs on its account.
  webhook_enqueuers = toset(["risk_score", "admin", "webhook_dispatch"])
}

resource "google_service_account_iam_member" "tasks_invoker_act_as" {
  for_each           = local.webhook_enqueuers
  service_account_id = google_service_account.tasks_invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.function[each.value].member
}

# --- Pub/Sub service agent: push auth tokens and dead-letter forwarding -----------------------

locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_project_iam_member" "pubsub_agent_token_creator" {
  project    = var.project_id
  role       = "roles/iam.serviceAccountTokenCreator"
  member     = local.pubsub_agent
  depends_on = [google_project_service.apis]
}

# Dead-letter forwarding needs subscriber on the source subscriptions, which Eventarc creates
# when cloudbuild.yaml deploys the Pub/Sub-triggered functions (their names are not known here).
resource "google_project_iam_member" "pubsub_agent_subscriber" {
  project    = var.project_id
  role       = "roles/pubsub.subscriber"
  member     = local.pubsub_agent
  depends_on = [google_project_service.apis]
}

# --- The deployer (Cloud Build) ---------------------------------------------------------------

resource "google_project_iam_member" "deployer" {
  for_each = toset([
    "roles/cloudfunctions.developer", # gcloud functions deploy
    "roles/run.admin",                # add-invoker-policy-binding on the 2nd gen services
    "roles/eventarc.viewer",          # find the subscription behind a Pub/Sub trigger
    "roles/pubsub.editor",            # attach dead-letter topics to those subscriptions
    "roles/logging.logWriter",        # build logs (CLOUD_LOGGING_ONLY)
    "roles/storage.objectViewer",     # read the submitted source from the Cloud Build bucket
  ])
  project = var.project_id
  role    = each.value
  member  = google_service_account.deployer.member
}

resource "google_service_account_iam_member" "deployer_act_as_functions" {
  for_each           = google_service_account.function
  service_account_id = each.value.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.deployer.member
}

resource "google_service_account_iam_member" "deployer_act_as_builder" {
  service_account_id = google_service_account.fn_builder.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.deployer.member
}

# The migrate step's Auth Proxy mints the migrator's tokens (--impersonate-service-account).
resource "google_service_account_iam_member" "deployer_impersonates_migrator" {
  service_account_id = google_service_account.migrator.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = google_service_account.deployer.member
}

resource "google_project_iam_member" "fn_builder" {
  project = var.project_id
  role    = "roles/cloudbuild.builds.builder"
  member  = google_service_account.fn_builder.member
}

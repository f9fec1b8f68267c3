# Pub/Sub topics, their dead-letter topics, and the seal tick.

# Every committed event is published here from the outbox (ordering key: the subject).
resource "google_pubsub_topic" "ledger_events" {
  name                       = "ledger-events"
  message_retention_duration = var.ledger_events_retention
  depends_on                 = [google_project_service.apis]
}

# Messages a ledger-events subscriber (risk_score's Eventarc subscription) failed to process
# after its delivery attempts (cloudbuild.yaml attaches it to the subscription).
resource "google_pubsub_topic" "ledger_events_dead_letter" {
  name                       = "ledger-events-dead-letter"
  message_retention_duration = "2678400s" # 31 days
  depends_on                 = [google_project_service.apis]
}

# Devices publish signed telemetry here; device_ingest appends custody events.
resource "google_pubsub_topic" "device_telemetry" {
  name                       = "device-telemetry"
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.apis]
}

# Bad device messages (signature, replay, schema) and undeliverable ones.
resource "google_pubsub_topic" "device_telemetry_dead_letter" {
  name                       = "device-telemetry-dead-letter"
  message_retention_duration = "2678400s"
  depends_on                 = [google_project_service.apis]
}

# Cloud Scheduler -> batch_merkle. A tick that is not processed is worthless a minute later.
resource "google_pubsub_topic" "seal_tick" {
  name                       = "seal-tick"
  message_retention_duration = "600s"
  depends_on                 = [google_project_service.apis]
}

# Dead letters are kept in pull subscriptions that never expire, for inspection and replay.
resource "google_pubsub_subscription" "dead_letter" {
  for_each = {
    "ledger-events-dead-letter"    = google_pubsub_topic.ledger_events_dead_letter.id
    "device-telemetry-dead-letter" = google_pubsub_topic.device_telemetry_dead_letter.id
  }

  name                       = "${each.key}-hold"
  topic                      = each.value
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = true

  expiration_policy {
    ttl = ""
  }
}

# --- Who may publish ------------------------------------------------------------------------

resource "google_pubsub_topic_iam_member" "ledger_events_publisher" {
  # Every function that appends publishes its entries after the commit (outbox relay):
  # write_event (partner events, risk.reviewed, POST /v1/risk/analyze), device_ingest (device
  # readings), risk_score (risk.scored); batch_merkle sweeps the outbox on each seal tick so
  # nothing committed stays unpublished.
  for_each = toset(["write_event", "device_ingest", "risk_score", "batch_merkle"])
  topic    = google_pubsub_topic.ledger_events.name
  role     = "roles/pubsub.publisher"
  member   = google_service_account.function[each.value].member
}

# device_ingest dead-letters rejected messages itself (attributes reason, device).
resource "google_pubsub_topic_iam_member" "device_dead_letter_publisher" {
  topic  = google_pubsub_topic.device_telemetry_dead_letter.name
  role   = "roles/pubsub.publisher"
  member = google_service_account.function["device_ingest"].member
}

# Devices (or their fleet's bridge) publish telemetry: Workload Identity Federation principals or
# service accounts listed in var.device_publishers (docs/DEPLOY.md, "How devices authenticate").
# The binding only lets a message in; device_ingest accepts a reading only with a valid Ed25519
# signature of a registered, active device and a fresh counter, and dead-letters anything else.
resource "google_pubsub_topic_iam_member" "device_publishers" {
  for_each = toset(var.device_publishers)
  topic    = google_pubsub_topic.device_telemetry.name
  role     = "roles/pubsub.publisher"
  member   = each.value
}

# The Pub/Sub service agent forwards dead letters.
resource "google_pubsub_topic_iam_member" "dead_letter_agent" {
  for_each = {
    ledger = google_pubsub_topic.ledger_events_dead_letter.name
    device = google_pubsub_topic.device_telemetry_dead_letter.name
  }
  topic  = each.value
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

# --- Seal tick --------------------------------------------------------------------------------

resource "google_cloud_scheduler_job" "seal_tick" {
  name        = "proveniq-seal-tick"
  description = "Publishes a tick to seal-tick; batch_merkle seals new leaves into a signed checkpoint."
  region      = var.region
  schedule    = var.seal_schedule
  time_zone   = "Etc/UTC"

  retry_config {
    retry_count = 0 # the next tick comes within a minute
  }

  pubsub_target {
    topic_name = google_pubsub_topic.seal_tick.id
    data       = base64encode(jsonencode({ reason = "scheduled" }))
    attributes = {
      source = "cloud-scheduler"
    }
  }

  depends_on = [google_project_service.apis]
}

# Cloud Monitoring: log-based metrics, alert policies, SLOs and the dashboard.
#
# Requests and latencies come from Cloud Run's built-in metrics of each 2nd gen function
# (resource cloud_run_revision, service_name = the function's name). The ledger's own figures
# come from log-based metrics over the structured lines `proveniq.app.metrics` writes
# (jsonPayload.logger = "proveniq.metrics", jsonPayload.metric = <name>, jsonPayload.value)
# and over the seal's ALERT line. docs/OPERATIONS.md is the runbook of every policy below.

variable "alert_page_channels" {
  description = "Notification channel ids (projects/P/notificationChannels/N) paged for CRITICAL alerts."
  type        = list(string)
  default     = []
}

variable "alert_notify_channels" {
  description = "Notification channel ids told of WARNING alerts (business hours)."
  type        = list(string)
  default     = []
}

variable "outbox_backlog_threshold" {
  description = "Outbox rows left unpublished above which the backlog alert fires (Core manual: queue depth > 1000)."
  type        = number
  default     = 1000
}

variable "uptime_check_host" {
  description = "Public host of the API (the gateway's, or a custom domain) for the availability uptime check; null: no uptime check."
  type        = string
  default     = null
}

locals {
  api_services   = sort([for dir, f in local.functions : f.name if f.gateway])
  api_filter     = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = one_of(${join(", ", [for s in local.api_services : "\"${s}\""])})"
  requests       = "metric.type = \"run.googleapis.com/request_count\" AND ${local.api_filter}"
  requests_5xx   = "${local.requests} AND metric.labels.response_code_class = \"5xx\""
  latencies      = "metric.type = \"run.googleapis.com/request_latencies\" AND ${local.api_filter}"
  write_latency  = "metric.type = \"run.googleapis.com/request_latencies\" AND resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"${local.functions.write_event.name}\""
  proof_latency  = "metric.type = \"run.googleapis.com/request_latencies\" AND resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"${local.functions.get_proof.name}\""
  metric_line    = "jsonPayload.logger = \"proveniq.metrics\""
  log_metric     = "logging.googleapis.com/user"
  severity_pages = { CRITICAL = var.alert_page_channels, WARNING = var.alert_notify_channels }

  # Log-based counters: one per line that matches.
  log_counters = {
    proveniq_checkpoints_published = {
      description = "Checkpoints signed and published by batch_merkle."
      filter      = "${local.metric_line} AND jsonPayload.metric = \"checkpoint_published\""
      labels      = {}
    }
    proveniq_seal_refused = {
      description = "Seals refused: the new tree was inconsistent with the last checkpoint (the seal's ALERT line)."
      filter      = "jsonPayload.message =~ \"^ALERT: refusing to publish an inconsistent checkpoint\""
      labels      = {}
    }
    proveniq_db_connection_failures = {
      description = "Failed attempts to connect to Cloud SQL."
      filter      = "${local.metric_line} AND jsonPayload.metric = \"db_connection_failure\""
      labels      = {}
    }
    proveniq_webhook_deliveries = {
      description = "Webhook delivery attempts by outcome."
      filter      = "${local.metric_line} AND jsonPayload.metric = \"webhook_delivery\""
      labels      = { outcome = "EXTRACT(jsonPayload.outcome)" }
    }
    proveniq_webhook_dead_letters = {
      description = "Webhook deliveries given up after the last attempt."
      filter      = "${local.metric_line} AND jsonPayload.metric = \"webhook_dead_letter\""
      labels      = {}
    }
    proveniq_device_messages_rejected = {
      description = "Device messages refused, by reason."
      filter      = "${local.metric_line} AND jsonPayload.metric = \"device_message_rejected\""
      labels      = { reason = "EXTRACT(jsonPayload.reason)" }
    }
  }

  # Log-based distributions of jsonPayload.value.
  log_values = {
    proveniq_seal_lag_seconds = {
      description = "Per seal tick: age of the oldest entry no checkpoint covers (0 when all sealed)."
      metric      = "seal_tick"
      unit        = "s"
      bounds      = [0, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600]
    }
    proveniq_time_to_integrate_seconds = {
      description = "Per checkpoint: the longest wait of a newly covered entry since its recorded_at."
      metric      = "time_to_integrate"
      unit        = "s"
      bounds      = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]
    }
    proveniq_checkpoint_size = {
      description = "Tree size of each published checkpoint."
      metric      = "checkpoint_published"
      unit        = "1"
      bounds      = [0, 1000, 10000, 100000, 1000000, 10000000, 100000000]
    }
    proveniq_outbox_backlog = {
      description = "Committed events not yet published to ledger-events (reported each seal tick)."
      metric      = "outbox_backlog"
      unit        = "1"
      bounds      = [0, 1, 10, 100, 500, 1000, 5000, 10000, 100000]
    }
    proveniq_risk_reviews_pending = {
      description = "Risk scores waiting for a human review."
      metric      = "risk_reviews_pending"
      unit        = "1"
      bounds      = [0, 1, 5, 10, 25, 50, 100, 500, 1000]
    }
  }
}

resource "google_project_service" "monitoring" {
  project            = var.project_id
  service            = "monitoring.googleapis.com"
  disable_on_destroy = false
}

# --- Log-based metrics (the production path of the ledger's own figures) ---------------------

resource "google_logging_metric" "counter" {
  for_each = local.log_counters

  project     = var.project_id
  name        = each.key
  description = each.value.description
  filter      = each.value.filter

  label_extractors = each.value.labels

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }
}

resource "google_logging_metric" "value" {
  for_each = local.log_values

  project         = var.project_id
  name            = each.key
  description     = each.value.description
  filter          = "${local.metric_line} AND jsonPayload.metric = \"${each.value.metric}\""
  value_extractor = "EXTRACT(jsonPayload.value)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = each.value.unit
  }

  bucket_options {
    explicit_buckets {
      bounds = each.value.bounds
    }
  }
}

# --- Core manual §12.3: critical (page) and warning rules -------------------------------------

resource "google_monitoring_alert_policy" "error_rate" {
  for_each = {
    critical = { severity = "CRITICAL", ratio = 0.05, duration = "300s", label = "> 5 % for 5 min" }
    warning  = { severity = "WARNING", ratio = 0.01, duration = "900s", label = "> 1 % for 15 min" }
  }

  project               = var.project_id
  display_name          = "Proveniq API error rate ${each.value.label} (${each.key})"
  severity              = each.value.severity
  combiner              = "OR"
  notification_channels = local.severity_pages[each.value.severity]

  conditions {
    display_name = "5xx / all requests ${each.value.label}"
    condition_threshold {
      filter             = local.requests_5xx
      denominator_filter = local.requests
      comparison         = "COMPARISON_GT"
      threshold_value    = each.value.ratio
      duration           = each.value.duration

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
      }

      denominator_aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = "Runbook: docs/OPERATIONS.md#error-rate"
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.monitoring]
}

resource "google_monitoring_alert_policy" "latency_p99" {
  for_each = {
    critical = { severity = "CRITICAL", ms = 5000, duration = "300s", label = "> 5 s for 5 min" }
    warning  = { severity = "WARNING", ms = 2000, duration = "900s", label = "> 2 s for 15 min" }
  }

  project               = var.project_id
  display_name          = "Proveniq API p99 latency ${each.value.label} (${each.key})"
  severity              = each.value.severity
  combiner              = "OR"
  notification_channels = local.severity_pages[each.value.severity]

  conditions {
    display_name = "p99 request latency ${each.value.label}"
    condition_threshold {
      filter          = local.latencies
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.ms
      duration        = each.value.duration

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_99"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = "Runbook: docs/OPERATIONS.md#latency"
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.monitoring]
}

resource "google_monitoring_alert_policy" "database" {
  project               = var.project_id
  display_name          = "Proveniq database connection failures (critical)"
  severity              = "CRITICAL"
  combiner              = "OR"
  notification_channels = var.alert_page_channels

  conditions {
    display_name = "Connection failures logged by the functions"
    condition_threshold {
      filter          = "metric.type = \"${local.log_metric}/${google_logging_metric.counter["proveniq_db_connection_failures"].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "60s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  conditions {
    display_name = "Cloud SQL instance down"
    condition_threshold {
      filter          = "metric.type = \"cloudsql.googleapis.com/database/up\" AND resource.type = \"cloudsql_database\" AND resource.labels.database_id = \"${var.project_id}:${google_sql_database_instance.ledger.name}\""
      comparison      = "COMPARISON_LT"
      threshold_value = 1
      duration        = "120s"

      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MIN"
      }
    }
  }

  documentation {
    content   = "Runbook: docs/OPERATIONS.md#database-connection-failures"
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.monitoring]
}

resource "google_monitoring_alert_policy" "sql_disk" {
  project               = var.project_id
  display_name          = "Proveniq Cloud SQL disk usage > 80 % (warning)"
  severity              = "WARNING"
  combiner              = "OR"
  notification_channels = var.alert_notify_channels

  conditions {
    display_name = "disk utilization > 0.8 for 15 min"
    condition_threshold {
      filter          = "metric.type = \"cloudsql.googleapis.com/database/disk/utilization\" AND resource.type = \"cloudsql_database\" AND resource.labels.database_id = \"${var.project_id}:${google_sql_database_instance.ledger.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0.8
      duration        = "900s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MEAN"
      }
    }
  }

  documentation {
    content   = "Runbook: docs/OPERATIONS.md#cloud-sql-disk"
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.monitoring]
}

# --- The ledger's own alarms ------------------------------------------------------------------

resource "google_monitoring_alert_policy" "checkpoint_stale" {
  project               = var.project_id
  display_name          = "Proveniq no checkpoint published for 5 min (critical)"
  severity              = "CRITICAL"
  combiner              = "OR"
  notification_channels = var.alert_page_channels

  conditions {
    display_name = "An entry has waited more than 5 min for a checkpoint"
    condition_threshold {
      filter          = "metric.type = \"${local.log_metric}/${google_logging_metric.value["proveniq_seal_lag_seconds"].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 300
      duration        = "0s"

      aggregations {
        alignment_period     = "120s"
        per_series_aligner   = "ALIGN_PERCENTILE_99"
        cross_series_reducer = "REDUCE_MAX"
      }
    }
  }

  conditions {
    display_name = "No seal tick reported for 5 min (scheduler or batch_merkle down)"
    condition_absent {
      filter   = "metric.type = \"${local.log_metric}/${google_logging_metric.value["proveniq_seal_lag_seconds"].name}\""
      duration = "300s"
    }
  }

  documentation {
    content   = "Runbook: docs/OPERATIONS.md#no-checkpoint-published"
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.monitoring]
}

resource "google_monitoring_alert_policy" "seal_refused" {
  project               = var.project_id
  display_name          = "Proveniq consistency check refused a checkpoint (critical)"
  severity              = "CRITICAL"
  combiner              = "OR"
  notification_channels = var.alert_page_channels

  conditions {
    display_name = "ALERT: refusing to publish an inconsistent checkpoint"
    condition_threshold {
      filter          = "metric.type = \"${local.log_metric}/${google_logging_metric.counter["proveniq_seal_refused"].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    content   = "Runbook: docs/OPERATIONS.md#consistency-check-refused"
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.monitoring]
}

resource "google_monitoring_alert_policy" "outbox_backlog" {
  project               = var.project_id
  display_name          = "Proveniq outbox backlog growing (warning)"
  severity              = "WARNING"
  combiner              = "OR"
  notification_channels = var.alert_notify_channels

  conditions {
    display_name = "Unpublished outbox rows > ${var.outbox_backlog_threshold} for 10 min"
    condition_threshold {
      filter          = "metric.type = \"${local.log_metric}/${google_logging_metric.value["proveniq_outbox_backlog"].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.outbox_backlog_threshold
      duration        = "600s"

      aggregations {
        alignment_period     = "120s"
        per_series_aligner   = "ALIGN_PERCENTILE_50"
        cross_series_reducer = "REDUCE_MAX"
      }
    }
  }

  conditions {
    display_name = "ledger-events subscriptions: undelivered messages > 1000 for 10 min"
    condition_threshold {
      filter          = "metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type = \"pubsub_subscription\" AND metadata.system_labels.topic_id = \"${google_pubsub_topic.ledger_events.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 1000
      duration        = "600s"

      aggregations {
        alignment_period   = "120s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "Runbook: docs/OPERATIONS.md#outbox-backlog-growing"
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.monitoring]
}

resource "google_monitoring_alert_policy" "dead_letters" {
  project               = var.project_id
  display_name          = "Proveniq dead letters appearing (warning)"
  severity              = "WARNING"
  combiner              = "OR"
  notification_channels = var.alert_notify_channels

  conditions {
    display_name = "Webhook deliveries dead-lettered"
    condition_threshold {
      filter          = "metric.type = \"${local.log_metric}/${google_logging_metric.counter["proveniq_webhook_dead_letters"].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  dynamic "conditions" {
    for_each = google_pubsub_subscription.dead_letter
    content {
      display_name = "Messages waiting in ${conditions.value.name}"
      condition_threshold {
        filter          = "metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${conditions.value.name}\""
        comparison      = "COMPARISON_GT"
        threshold_value = 0
        duration        = "0s"

        aggregations {
          alignment_period   = "300s"
          per_series_aligner = "ALIGN_MAX"
        }
      }
    }
  }

  documentation {
    content   = "Runbook: docs/OPERATIONS.md#dead-letters-appearing"
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.monitoring]
}

# --- Reference architecture §8.3: SLOs ---------------------------------------------------------

resource "google_monitoring_custom_service" "ledger" {
  project      = var.project_id
  service_id   = "proveniq-ledger"
  display_name = "Proveniq Ledger API"

  depends_on = [google_project_service.monitoring]
}

resource "google_monitoring_slo" "availability" {
  project             = var.project_id
  service             = google_monitoring_custom_service.ledger.service_id
  slo_id              = "availability"
  display_name        = "Availability 99.9 % (non-5xx answers, 28 days)"
  goal                = 0.999
  rolling_period_days = 28

  request_based_sli {
    good_total_ratio {
      bad_service_filter   = local.requests_5xx
      total_service_filter = local.requests
    }
  }
}

resource "google_monitoring_slo" "write_latency" {
  project             = var.project_id
  service             = google_monitoring_custom_service.ledger.service_id
  slo_id              = "write-latency-p99"
  display_name        = "Write latency p99 < 500 ms"
  goal                = 0.99
  rolling_period_days = 28

  request_based_sli {
    distribution_cut {
      distribution_filter = local.write_latency
      range {
        max = 500
      }
    }
  }
}

resource "google_monitoring_slo" "proof_latency" {
  project             = var.project_id
  service             = google_monitoring_custom_service.ledger.service_id
  slo_id              = "proof-latency-p99"
  display_name        = "Proof generation p99 < 200 ms"
  goal                = 0.99
  rolling_period_days = 28

  request_based_sli {
    distribution_cut {
      distribution_filter = local.proof_latency
      range {
        max = 200
      }
    }
  }
}

# Error-rate SLO (< 0.1 %) and the SLOs' fast burn: alert policies over the same ratio.
resource "google_monitoring_alert_policy" "slo" {
  project               = var.project_id
  display_name          = "Proveniq SLO at risk (warning)"
  severity              = "WARNING"
  combiner              = "OR"
  notification_channels = var.alert_notify_channels

  conditions {
    display_name = "Error rate > 0.1 % over 1 h"
    condition_threshold {
      filter             = local.requests_5xx
      denominator_filter = local.requests
      comparison         = "COMPARISON_GT"
      threshold_value    = 0.001
      duration           = "3600s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
      }

      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  dynamic "conditions" {
    for_each = {
      availability  = google_monitoring_slo.availability.id
      write_latency = google_monitoring_slo.write_latency.id
      proof_latency = google_monitoring_slo.proof_latency.id
    }
    content {
      display_name = "${conditions.key} error budget burning 10x over 1 h"
      condition_threshold {
        filter          = "select_slo_burn_rate(\"${conditions.value}\", \"3600s\")"
        comparison      = "COMPARISON_GT"
        threshold_value = 10
        duration        = "0s"
      }
    }
  }

  documentation {
    content   = "Runbook: docs/OPERATIONS.md#slo-at-risk"
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_uptime_check_config" "api" {
  count = var.uptime_check_host == null ? 0 : 1

  project      = var.project_id
  display_name = "Proveniq API health"
  timeout      = "10s"
  period       = "60s"

  http_check {
    path         = "/health"
    port         = 443
    use_ssl      = true
    validate_ssl = true
  }

  monitored_resource {
    type = "uptime_url"
    labels = {
      project_id = var.project_id
      host       = var.uptime_check_host
    }
  }

  depends_on = [google_project_service.monitoring]
}

# --- Dashboard ----------------------------------------------------------------------------------

resource "google_monitoring_dashboard" "ledger" {
  project        = var.project_id
  dashboard_json = file("${path.module}/dashboard.json")

  depends_on = [google_logging_metric.counter, google_logging_metric.value]
}

# Webhook deliveries: risk_score (and the dispatcher itself) enqueue tasks that Cloud Tasks
# delivers to webhook_dispatch with an OIDC token of the tasks_invoker account.
#
# The Core manual's schedule is: immediate, 1 min, 5 min, 30 min, 2 h, 24 h (6 attempts), then
# dead letter. Cloud Tasks can only approximate it with exponential backoff (60 s doubling,
# capped at 24 h). The exact schedule is enforced by the dispatcher: each attempt is its own task
# scheduled at the next step of the schedule (schedule_time), and after the last attempt the
# dispatcher records the dead letter. This queue-level retry only covers transport failures of
# a single attempt (webhook_dispatch unreachable or answering 5xx).

resource "google_cloud_tasks_queue" "webhooks" {
  name     = "webhooks"
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.webhook_max_dispatches_per_second
    max_concurrent_dispatches = var.webhook_max_concurrent_dispatches
  }

  retry_config {
    max_attempts  = 6
    min_backoff   = "60s"
    max_backoff   = "86400s"
    max_doublings = 5
  }

  stackdriver_logging_config {
    sampling_ratio = 1.0
  }

  depends_on = [google_project_service.apis]
}

resource "google_cloud_tasks_queue_iam_member" "enqueuers" {
  for_each = toset(["risk_score", "webhook_dispatch"])
  name     = google_cloud_tasks_queue.webhooks.name
  location = google_cloud_tasks_queue.webhooks.location
  role     = "roles/cloudtasks.enqueuer"
  member   = google_service_account.function[each.value].member
}

# Webhook deliveries: risk_score (fan-out), admin (replay) and webhook_dispatch (the next
# attempt) enqueue tasks that Cloud Tasks delivers to webhook_dispatch with an OIDC token of the
# tasks_invoker account.
#
# The Core manual's schedule is: immediate, 1 min, 5 min, 30 min, 2 h, 24 h (6 attempts), then
# dead letter. It is enforced by the dispatcher, not by this queue: each attempt is its own task
# (named after delivery, round and attempt, so enqueueing twice is a no-op) scheduled at the
# schedule's next step (schedule_time), and after the last attempt the dispatcher records the
# dead letter. A partner's failure (any answer but 2xx, a timeout) is recorded and answered
# 200, so Cloud Tasks never retries it.
#
# The queue's retry is a safety net only, for webhook_dispatch itself failing one task (503 while
# the database is away, a cold-start 429, an instance crash): short backoff, bounded to an hour,
# so a transient fault delays one attempt by minutes instead of shifting the whole schedule.
# A task that exhausts it leaves its delivery pending and overdue in the database, where
# Dispatcher.sweep finds it (nothing schedules the sweep on GCP yet: docs/DEPLOY.md, Follow-ups).

resource "google_cloud_tasks_queue" "webhooks" {
  name     = "webhooks"
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.webhook_max_dispatches_per_second
    max_concurrent_dispatches = var.webhook_max_concurrent_dispatches
  }

  retry_config {
    max_attempts       = 20
    max_retry_duration = "3600s"
    min_backoff        = "10s"
    max_backoff        = "300s"
    max_doublings      = 5
  }

  stackdriver_logging_config {
    sampling_ratio = 1.0
  }

  depends_on = [google_project_service.apis]
}

# Who enqueues: the fan-out (risk_score), replays (admin), the next attempt (webhook_dispatch).
# Each of them also acts as tasks_invoker to sign the task's OIDC token (iam.tf).
resource "google_cloud_tasks_queue_iam_member" "enqueuers" {
  for_each = local.webhook_enqueuers
  name     = google_cloud_tasks_queue.webhooks.name
  location = google_cloud_tasks_queue.webhooks.location
  role     = "roles/cloudtasks.enqueuer"
  member   = google_service_account.function[each.value].member
}

"""`TaskQueue` over Cloud Tasks: one HTTP task per delivery attempt.

Each `AttemptTask` becomes a task named ``<queue>/tasks/<delivery id>-r<round>-a<attempt>``
(deterministic, so enqueueing twice is a no-op: ``AlreadyExists`` means done), scheduled at
``not_before``, that POSTs the task's JSON to the ``webhook_dispatch`` function with an OIDC
token for the invoker service account (audience: the function's URL unless given).

Cloud Tasks keeps a name reserved for about an hour after its task ran or was deleted; the
dispatcher's (round, attempt) fencing makes that harmless. The queue's own retry config is
only a safety net for `webhook_dispatch` answering 5xx; the webhook schedule is ours.

Errors: transient API failures become `errors.Unavailable`; anything else (permission, a
missing queue, a bad argument) `errors.InternalError`. The client is built on first use.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC

from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry
from google.cloud import tasks_v2
from google.protobuf import duration_pb2, timestamp_pb2
from opentelemetry import propagate

from proveniq.adapters.gcp.retry import bounded_retry
from proveniq.errors import InternalError, Unavailable
from proveniq.followers.webhooks.ports import AttemptTask

_QUEUE = re.compile(r"projects/[^/]+/locations/[^/]+/queues/[A-Za-z0-9-]{1,100}")
_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")
_RETRIED = (api_exceptions.ServiceUnavailable, api_exceptions.DeadlineExceeded)
_TRANSIENT = (*_RETRIED, api_exceptions.InternalServerError, api_exceptions.RetryError)


def _with_trace(headers: dict[str, str]) -> dict[str, str]:
    """The current trace context as `traceparent`, so webhook_dispatch continues the trace."""
    propagate.inject(headers)
    return headers


class CloudTasksQueue:
    def __init__(
        self,
        *,
        queue: str,
        target_url: str,
        service_account_email: str,
        audience: str | None = None,
        dispatch_deadline_seconds: int = 60,
        client: tasks_v2.CloudTasksClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not _QUEUE.fullmatch(queue):
            raise ValueError(f"queue {queue!r} is not projects/*/locations/*/queues/*")
        if not target_url.startswith("https://") and not target_url.startswith("http://"):
            raise ValueError("target_url must be the webhook_dispatch function's URL")
        if "@" not in service_account_email:
            raise ValueError("service_account_email must be a service account's email")
        if not 15 <= dispatch_deadline_seconds <= 1800:
            raise ValueError("dispatch_deadline_seconds is 15 to 1800 (Cloud Tasks' bounds)")
        self.queue = queue
        self.target_url = target_url
        self.service_account_email = service_account_email
        self.audience = audience or target_url
        self._deadline = dispatch_deadline_seconds
        self._client = client
        self._timeout = timeout
        self._lock = threading.Lock()

    def task_name(self, task: AttemptTask) -> str:
        if not _TASK_ID.fullmatch(task.name):
            raise InternalError(f"task id {task.name!r} is not valid for Cloud Tasks")
        return f"{self.queue}/tasks/{task.name}"

    def build(self, task: AttemptTask) -> tasks_v2.Task:
        schedule = timestamp_pb2.Timestamp()
        schedule.FromDatetime(task.not_before.astimezone(UTC))
        return tasks_v2.Task(
            name=self.task_name(task),
            schedule_time=schedule,
            dispatch_deadline=duration_pb2.Duration(seconds=self._deadline),
            http_request=tasks_v2.HttpRequest(
                url=self.target_url,
                http_method=tasks_v2.HttpMethod.POST,
                headers=_with_trace({"Content-Type": "application/json"}),
                body=task.to_json(),
                oidc_token=tasks_v2.OidcToken(
                    service_account_email=self.service_account_email, audience=self.audience
                ),
            ),
        )

    def enqueue(self, task: AttemptTask) -> None:
        request = tasks_v2.CreateTaskRequest(parent=self.queue, task=self.build(task))
        try:
            self._get_client().create_task(
                request=request, retry=self._retry(), timeout=self._timeout
            )
        except api_exceptions.AlreadyExists:
            return  # enqueued before: the name is the dedupe key
        except api_exceptions.GoogleAPIError as e:
            if isinstance(e, _TRANSIENT):
                raise Unavailable(f"Cloud Tasks CreateTask failed (transient): {e}") from e
            raise InternalError(f"Cloud Tasks CreateTask failed: {type(e).__name__}: {e}") from e

    def __repr__(self) -> str:
        return f"CloudTasksQueue(queue={self.queue!r}, target_url={self.target_url!r})"

    def _retry(self) -> api_retry.Retry:
        return bounded_retry(_RETRIED, timeout=self._timeout)

    def _get_client(self) -> tasks_v2.CloudTasksClient:
        with self._lock:
            if self._client is None:
                self._client = tasks_v2.CloudTasksClient()
            return self._client

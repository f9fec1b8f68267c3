"""CloudTasksQueue against a wire-level Cloud Tasks server (gRPC CreateTask on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
import pytest
from google.cloud.tasks_v2 import CloudTasksClient, CreateTaskRequest, HttpMethod, Task
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport
from grpc_servers import insecure_channel, serve  # tests/contract (rootdir-relative import)

from proveniq.adapters.gcp.tasks import CloudTasksQueue
from proveniq.errors import InternalError, Unavailable
from proveniq.followers.webhooks.ports import AttemptTask

QUEUE = "projects/demo-proveniq/locations/europe-west1/queues/webhooks"
TARGET = "https://europe-west1-demo-proveniq.cloudfunctions.net/webhook_dispatch"
INVOKER = "webhook-invoker@demo-proveniq.iam.gserviceaccount.com"
WHEN = datetime(2026, 12, 1, 12, 30, 15, 250000, tzinfo=UTC)


@dataclass
class FakeCloudTasks:
    """CreateTask like the service: names are unique (ALREADY_EXISTS), parents must exist."""

    requests: list[CreateTaskRequest] = field(default_factory=list)
    tasks: dict[str, Task] = field(default_factory=dict)
    abort: grpc.StatusCode | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create_task(self, request: CreateTaskRequest, context: grpc.ServicerContext) -> Task:
        with self.lock:
            self.requests.append(CreateTaskRequest(request))
        if self.abort is not None:
            context.abort(self.abort, f"injected {self.abort.name}")
        if request.parent != QUEUE:
            context.abort(grpc.StatusCode.NOT_FOUND, f"queue {request.parent} not found")
        with self.lock:
            if request.task.name in self.tasks:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "task already exists")
            self.tasks[request.task.name] = request.task
        return request.task


@pytest.fixture
def cloud_tasks() -> Iterator[tuple[FakeCloudTasks, CloudTasksClient]]:
    fake = FakeCloudTasks()
    with (
        serve(
            "google.cloud.tasks.v2.CloudTasks",
            {"CreateTask": (fake.create_task, CreateTaskRequest, Task)},
        ) as address,
        insecure_channel(address) as channel,
    ):
        yield fake, CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))


def queue_for(client: CloudTasksClient, **kw: object) -> CloudTasksQueue:
    args: dict[str, object] = {
        "queue": QUEUE,
        "target_url": TARGET,
        "service_account_email": INVOKER,
        "client": client,
        "timeout": 1.0,
        **kw,
    }
    return CloudTasksQueue(**args)  # type: ignore[arg-type]


TASK = AttemptTask(tenant="p1", delivery_id="dlv_" + "ab" * 16, round=1, attempt=3, not_before=WHEN)


def test_create_task_carries_queue_name_schedule_http_target_and_oidc_token(
    cloud_tasks: tuple[FakeCloudTasks, CloudTasksClient],
) -> None:
    fake, client = cloud_tasks
    queue_for(client).enqueue(TASK)
    [req] = fake.requests
    assert req.parent == QUEUE
    task = req.task
    assert task.name == f"{QUEUE}/tasks/dlv_{'ab' * 16}-r1-a3"
    assert task.schedule_time == WHEN  # proto-plus gives a DatetimeWithNanoseconds
    assert task.schedule_time.microsecond == 250000
    assert task.dispatch_deadline.total_seconds() == 60
    http = task.http_request
    assert http.url == TARGET
    assert http.http_method == HttpMethod.POST
    assert http.headers["Content-Type"] == "application/json"
    assert AttemptTask.from_json(http.body) == TASK
    assert json.loads(http.body)["delivery_id"] == TASK.delivery_id
    assert http.oidc_token.service_account_email == INVOKER
    assert http.oidc_token.audience == TARGET  # defaults to the function URL


def test_explicit_audience(cloud_tasks: tuple[FakeCloudTasks, CloudTasksClient]) -> None:
    fake, client = cloud_tasks
    queue_for(client, audience="https://dispatch.proveniq.example").enqueue(TASK)
    assert fake.requests[0].task.http_request.oidc_token.audience == (
        "https://dispatch.proveniq.example"
    )


def test_already_exists_is_success_and_the_name_dedupes(
    cloud_tasks: tuple[FakeCloudTasks, CloudTasksClient],
) -> None:
    fake, client = cloud_tasks
    q = queue_for(client)
    q.enqueue(TASK)
    q.enqueue(TASK)  # the second CreateTask is refused by name: that is done, not an error
    assert len(fake.requests) == 2 and len(fake.tasks) == 1
    q.enqueue(AttemptTask(**{**TASK.__dict__, "attempt": 4}))
    assert len(fake.tasks) == 2


def test_unavailable_becomes_unavailable_in_bounded_time(
    cloud_tasks: tuple[FakeCloudTasks, CloudTasksClient],
) -> None:
    fake, client = cloud_tasks
    fake.abort = grpc.StatusCode.UNAVAILABLE
    started = time.monotonic()
    with pytest.raises(Unavailable) as e:
        queue_for(client).enqueue(TASK)
    assert time.monotonic() - started < 3
    assert e.value.transient and e.value.__cause__ is not None
    assert len(fake.requests) > 1  # retried within the timeout


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT]
)
def test_permanent_errors_are_internal_and_not_retried(
    cloud_tasks: tuple[FakeCloudTasks, CloudTasksClient], code: grpc.StatusCode
) -> None:
    fake, client = cloud_tasks
    fake.abort = code
    with pytest.raises(InternalError, match="CreateTask"):
        queue_for(client).enqueue(TASK)
    assert len(fake.requests) == 1


def test_a_missing_queue_is_an_internal_error(
    cloud_tasks: tuple[FakeCloudTasks, CloudTasksClient],
) -> None:
    _, client = cloud_tasks
    q = queue_for(client, queue="projects/demo-proveniq/locations/europe-west1/queues/other")
    with pytest.raises(InternalError, match="NotFound"):
        q.enqueue(TASK)


@pytest.mark.parametrize(
    "kw",
    [
        {"queue": "projects/p/queues/q"},
        {"target_url": "ftp://x"},
        {"service_account_email": "nobody"},
        {"dispatch_deadline_seconds": 5},
    ],
)
def test_constructor_validates_its_configuration(kw: dict[str, object]) -> None:
    args: dict[str, object] = {
        "queue": QUEUE,
        "target_url": TARGET,
        "service_account_email": INVOKER,
        **kw,
    }
    with pytest.raises(ValueError):
        CloudTasksQueue(**args)  # type: ignore[arg-type]


def test_client_is_built_lazily() -> None:
    q = CloudTasksQueue(queue=QUEUE, target_url=TARGET, service_account_email=INVOKER)
    assert QUEUE in repr(q)

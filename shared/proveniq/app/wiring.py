"""Composition of the followers (risk scoring, webhooks, projection) and the device intake:
which adapters each gets from the settings. Called lazily by `Runtime`, so a function that
never scores or sends a webhook never builds those clients."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from proveniq.followers.risk.assessment import Assessor, ReviewPolicy
from proveniq.followers.risk.features import FeatureConfig
from proveniq.followers.risk.scoring import RiskScorer
from proveniq.followers.webhooks.deliveries import Dispatcher
from proveniq.followers.webhooks.guard import Guard, Policy
from proveniq.followers.webhooks.manage import Subscriptions
from proveniq.followers.webhooks.schedule import RetrySchedule
from proveniq.followers.webhooks.sender import HttpSender
from proveniq.intake.devices.grouping import GroupedIngest, grouped
from proveniq.intake.devices.ingest import DeviceIngest
from proveniq.intake.devices.store import DeviceStore

Runtime = Any  # proveniq.app.runtime.Runtime (not imported: it imports this module)


def _now() -> datetime:
    return datetime.now(UTC)


def risk_scorer(rt: Runtime) -> RiskScorer:
    from proveniq.adapters.postgres.risk import PostgresRiskFacts, PostgresRiskResults

    s = rt.settings
    return RiskScorer(
        facts=PostgresRiskFacts(pool=rt.pool),
        results=PostgresRiskResults(pool=rt.pool),
        ledger=rt.sequencer,
        assessor=_assessor(rt),
        features=FeatureConfig(
            max_clock_skew=timedelta(seconds=s.risk_max_clock_skew_seconds)
            if s.risk_max_clock_skew_seconds
            else None
        ),
        policy=ReviewPolicy(threshold=s.risk_review_threshold, margin=s.risk_review_margin),
    )


def _assessor(rt: Runtime) -> Assessor | None:
    s = rt.settings
    if not s.gemini_model:
        return None  # deterministic scoring only; explanations say Gemini was off
    from proveniq.adapters.gcp.gemini import GeminiAssessor

    if s.gemini_api_key:
        return GeminiAssessor.api_key(
            api_key=s.gemini_api_key, model=s.gemini_model, base_url=s.gemini_endpoint
        )
    assert s.gcp_project is not None, "Vertex AI needs GOOGLE_CLOUD_PROJECT"
    return GeminiAssessor.vertex(
        project=s.gcp_project,
        location=s.gemini_location,
        model=s.gemini_model,
        base_url=s.gemini_endpoint,
    )


@dataclass(frozen=True)
class Webhooks:
    subscriptions: Subscriptions
    dispatcher: Dispatcher
    queue: Any  # a TaskQueue; the local one is also polled (PgTaskQueue)


def webhooks(rt: Runtime) -> Webhooks:
    from proveniq.adapters.postgres.webhooks import PgTaskQueue, PgWebhookStore

    s = rt.settings
    if s.backend == "gcp":
        from proveniq.adapters.gcp.kms_envelope import KmsEnvelope
        from proveniq.adapters.gcp.tasks import CloudTasksQueue

        for name, value in (
            ("PROVENIQ_WEBHOOK_KMS_KEY", s.webhook_kms_key),
            ("PROVENIQ_WEBHOOK_QUEUE", s.webhook_queue),
            ("PROVENIQ_WEBHOOK_DISPATCH_URL", s.webhook_dispatch_url),
            ("PROVENIQ_WEBHOOK_INVOKER", s.webhook_invoker),
        ):
            if not value:
                from proveniq.errors import ValidationError

                raise ValidationError("required for webhooks on GCP", field=name)
        assert s.webhook_kms_key and s.webhook_queue and s.webhook_dispatch_url
        assert s.webhook_invoker
        box: Any = KmsEnvelope(key_name=s.webhook_kms_key)
        queue: Any = CloudTasksQueue(
            queue=s.webhook_queue,
            target_url=s.webhook_dispatch_url,
            service_account_email=s.webhook_invoker,
        )
        policy = Policy()  # https only, public addresses only
    else:
        from proveniq.adapters.local.secretbox import LocalSecretBox

        box = LocalSecretBox.load_or_create(s.state_dir / "keys" / "webhook-kek")
        queue = PgTaskQueue(pool=rt.pool)
        policy = Policy.parse(
            allowed_networks=s.webhook_allowed_networks or "", allow_http=s.webhook_allow_http
        )
    store = PgWebhookStore(pool=rt.pool, box=box)
    guard = Guard(policy=policy)
    dispatcher = Dispatcher(
        store=store,
        queue=queue,
        sender=HttpSender(guard=guard),
        clock=_now,
        proof_base_url=s.public_base_url,
        schedule=RetrySchedule.parse(s.webhook_retry_schedule),
    )
    return Webhooks(
        subscriptions=Subscriptions(store=store, guard=guard, clock=_now),
        dispatcher=dispatcher,
        queue=queue,
    )


@dataclass(frozen=True)
class Devices:
    store: DeviceStore
    ingest: DeviceIngest
    grouped: GroupedIngest  # concurrent deliveries in one instance share one lock acquisition


def devices(rt: Runtime) -> Devices:
    from proveniq.adapters.postgres.devices import PostgresDevices

    s = rt.settings
    store = PostgresDevices(rt.pool)
    ingest = DeviceIngest(
        store=store,
        appender=rt.sequencer,
        dead_letters=rt.bus,
        clock=_now,
        max_skew=timedelta(seconds=s.device_max_skew_seconds),
        dead_letter_topic=s.device_dead_letter_topic,
    )
    return Devices(store=store, ingest=ingest, grouped=grouped(ingest))


def projection_sink(rt: Runtime) -> Any:
    s = rt.settings
    if not s.firestore_project:
        return None
    from proveniq.adapters.gcp.firestore import FirestoreSink

    return FirestoreSink(project=s.firestore_project)

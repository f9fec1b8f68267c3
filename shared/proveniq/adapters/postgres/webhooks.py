"""The webhook ports on PostgreSQL (tables of migration 0005).

`PgWebhookStore` implements `followers.webhooks.ports.WebhookStore`: every query is scoped by
tenant; subscription secrets are written only as sealed by the given `SecretBox`. Claims and
finishes are single compare-and-set UPDATEs on (state, round, attempt, lease), so concurrent
copies of one task send once.

`PgTaskQueue` is the local stack's durable Cloud Tasks twin (a `PolledQueue`): scheduled
attempts in ``webhook_tasks`` that survive a restart; ``due`` claims ready rows with
``FOR UPDATE SKIP LOCKED`` and a lease, so several workers may poll one table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from opentelemetry import propagate

from proveniq.adapters.postgres.pool import Pool
from proveniq.errors import NotFound
from proveniq.followers.webhooks.ports import (
    Attempt,
    AttemptTask,
    Claim,
    Delivery,
    WebhookMessage,
)
from proveniq.followers.webhooks.schedule import Outcome
from proveniq.followers.webhooks.secrets import SecretBox
from proveniq.followers.webhooks.subscriptions import Secrets, Subscription

_SUB_COLS = "id, tenant, url, events, description, enabled, disabled_reason, created_at, updated_at"
_DEL_COLS = (
    "seq, id, tenant, subscription_id, event_id, event_type, kind, state, round, attempt, "
    "next_attempt_at, last_status, last_error, created_at, updated_at"
)
_ATT_COLS = (
    "a.delivery_id, a.round, a.number, a.started_at, a.latency_ms, a.status, a.error, "
    "a.outcome, a.next_attempt_at"
)


def _sub(row: Sequence[Any]) -> Subscription:
    return Subscription(
        id=row[0],
        tenant=row[1],
        url=row[2],
        events=tuple(row[3]),
        description=row[4],
        enabled=row[5],
        disabled_reason=row[6],
        created_at=row[7],
        updated_at=row[8],
    )


def _delivery(row: Sequence[Any]) -> Delivery:
    return Delivery(
        seq=row[0],
        id=row[1],
        tenant=row[2],
        subscription_id=row[3],
        event_id=row[4],
        event_type=row[5],
        kind=row[6],
        state=row[7],
        round=row[8],
        attempt=row[9],
        next_attempt_at=row[10],
        last_status=row[11],
        last_error=row[12],
        created_at=row[13],
        updated_at=row[14],
    )


def _attempt(row: Sequence[Any]) -> Attempt:
    return Attempt(
        delivery_id=row[0],
        round=row[1],
        number=row[2],
        started_at=row[3],
        latency_ms=row[4],
        status=row[5],
        error=row[6],
        outcome=Outcome(row[7]),
        next_attempt_at=row[8],
    )


class PgWebhookStore:
    def __init__(self, *, pool: Pool, box: SecretBox) -> None:
        self._pool = pool
        self._box = box

    # -- subscriptions -------------------------------------------------------------------

    def add_subscription(self, subscription: Subscription, secrets: Secrets) -> None:
        s = subscription
        current, previous = self._seal(secrets)
        with self._pool.transaction() as cur:
            cur.execute(
                "INSERT INTO webhook_subscriptions (id, tenant, url, events, description, "
                "enabled, disabled_reason, secret_sealed, previous_secret_sealed, "
                "previous_until, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s::text[], %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    s.id,
                    s.tenant,
                    s.url,
                    list(s.events),
                    s.description,
                    s.enabled,
                    s.disabled_reason,
                    current,
                    previous,
                    secrets.previous_until,
                    s.created_at,
                    s.updated_at,
                ),
            )

    def subscription(self, tenant: str, subscription_id: str) -> Subscription:
        with self._pool.transaction() as cur:
            cur.execute(
                f"SELECT {_SUB_COLS} FROM webhook_subscriptions "  # noqa: S608
                "WHERE tenant = %s AND id = %s AND deleted_at IS NULL",
                (tenant, subscription_id),
            )
            row = cur.fetchone()
        if row is None:
            raise NotFound(f"webhook {subscription_id} not found")
        return _sub(row)

    def subscriptions(self, tenant: str) -> list[Subscription]:
        with self._pool.transaction() as cur:
            cur.execute(
                f"SELECT {_SUB_COLS} FROM webhook_subscriptions "  # noqa: S608
                "WHERE tenant = %s AND deleted_at IS NULL ORDER BY created_at, id",
                (tenant,),
            )
            return [_sub(r) for r in cur.fetchall()]

    def save_subscription(self, subscription: Subscription) -> None:
        s = subscription
        with self._pool.transaction() as cur:
            cur.execute(
                "UPDATE webhook_subscriptions SET url = %s, events = %s::text[], "
                "description = %s, enabled = %s, disabled_reason = %s, updated_at = %s "
                "WHERE tenant = %s AND id = %s AND deleted_at IS NULL",
                (
                    s.url,
                    list(s.events),
                    s.description,
                    s.enabled,
                    s.disabled_reason,
                    s.updated_at,
                    s.tenant,
                    s.id,
                ),
            )
            if cur.rowcount != 1:
                raise NotFound(f"webhook {s.id} not found")

    def delete_subscription(self, tenant: str, subscription_id: str, *, now: datetime) -> None:
        with self._pool.transaction() as cur:
            cur.execute(
                "UPDATE webhook_subscriptions SET deleted_at = %s, enabled = false, "
                "updated_at = %s WHERE tenant = %s AND id = %s AND deleted_at IS NULL",
                (now, now, tenant, subscription_id),
            )
            if cur.rowcount != 1:
                raise NotFound(f"webhook {subscription_id} not found")

    def secrets(self, tenant: str, subscription_id: str) -> Secrets:
        with self._pool.transaction() as cur:
            cur.execute(
                "SELECT secret_sealed, previous_secret_sealed, previous_until "
                "FROM webhook_subscriptions WHERE tenant = %s AND id = %s AND deleted_at IS NULL",
                (tenant, subscription_id),
            )
            row = cur.fetchone()
        if row is None:
            raise NotFound(f"webhook {subscription_id} not found")
        return Secrets(
            current=self._box.open(bytes(row[0])).decode(),
            previous=None if row[1] is None else self._box.open(bytes(row[1])).decode(),
            previous_until=row[2],
        )

    def save_secrets(
        self, tenant: str, subscription_id: str, secrets: Secrets, *, now: datetime
    ) -> None:
        current, previous = self._seal(secrets)
        with self._pool.transaction() as cur:
            cur.execute(
                "UPDATE webhook_subscriptions SET secret_sealed = %s, "
                "previous_secret_sealed = %s, previous_until = %s, updated_at = %s "
                "WHERE tenant = %s AND id = %s AND deleted_at IS NULL",
                (current, previous, secrets.previous_until, now, tenant, subscription_id),
            )
            if cur.rowcount != 1:
                raise NotFound(f"webhook {subscription_id} not found")

    def _seal(self, secrets: Secrets) -> tuple[bytes, bytes | None]:
        current = self._box.seal(secrets.current.encode())
        previous = None if secrets.previous is None else self._box.seal(secrets.previous.encode())
        return current, previous

    # -- deliveries ----------------------------------------------------------------------

    def add_deliveries(
        self, message: WebhookMessage, deliveries: Sequence[Delivery]
    ) -> list[Delivery]:
        if not deliveries:
            return []
        m = message
        rows = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(deliveries))
        params: list[Any] = []
        for d in deliveries:
            params += [
                d.id,
                d.tenant,
                d.subscription_id,
                d.event_id,
                d.event_type,
                d.kind,
                d.state,
                d.round,
                d.attempt,
                d.next_attempt_at,
                d.created_at,
                d.updated_at,
            ]
        with self._pool.transaction() as cur:
            cur.execute(
                "INSERT INTO webhook_messages (tenant, event_id, type, body, created_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (m.tenant, m.event_id, m.type, m.body, m.created_at),
            )
            cur.execute(
                "INSERT INTO webhook_deliveries (id, tenant, subscription_id, event_id, "  # noqa: S608
                "event_type, kind, state, round, attempt, next_attempt_at, created_at, "
                f"updated_at) VALUES {rows} ON CONFLICT DO NOTHING",
                params,
            )
            cur.execute(
                f"SELECT {_DEL_COLS} FROM webhook_deliveries "  # noqa: S608
                "WHERE tenant = %s AND id = ANY(%s::text[])",
                (m.tenant, [d.id for d in deliveries]),
            )
            found = {r[1]: _delivery(r) for r in cur.fetchall()}
        return [found[d.id] for d in deliveries if d.id in found]

    def delivery(self, tenant: str, delivery_id: str) -> Delivery:
        with self._pool.transaction() as cur:
            cur.execute(
                f"SELECT {_DEL_COLS} FROM webhook_deliveries "  # noqa: S608
                "WHERE tenant = %s AND id = %s",
                (tenant, delivery_id),
            )
            row = cur.fetchone()
        if row is None:
            raise NotFound(f"delivery {delivery_id} not found")
        return _delivery(row)

    def message(self, tenant: str, event_id: str) -> WebhookMessage:
        with self._pool.transaction() as cur:
            cur.execute(
                "SELECT type, body, created_at FROM webhook_messages "
                "WHERE tenant = %s AND event_id = %s",
                (tenant, event_id),
            )
            row = cur.fetchone()
        if row is None:
            raise NotFound(f"webhook message {event_id} not found")
        return WebhookMessage(
            tenant=tenant, event_id=event_id, type=row[0], body=bytes(row[1]), created_at=row[2]
        )

    def claim(self, task: AttemptTask, *, now: datetime, lease_until: datetime) -> Claim:
        with self._pool.transaction() as cur:
            cur.execute(
                "UPDATE webhook_deliveries SET lease_until = %s "  # noqa: S608
                "WHERE tenant = %s AND id = %s AND state = 'pending' AND round = %s "
                "AND attempt = %s AND (lease_until IS NULL OR lease_until <= %s) "
                f"RETURNING {_DEL_COLS}",
                (lease_until, task.tenant, task.delivery_id, task.round, task.attempt - 1, now),
            )
            row = cur.fetchone()
            if row is not None:
                return Claim(status="claimed", delivery=_delivery(row))
            cur.execute(
                f"SELECT {_DEL_COLS}, lease_until FROM webhook_deliveries "  # noqa: S608
                "WHERE tenant = %s AND id = %s",
                (task.tenant, task.delivery_id),
            )
            found = cur.fetchone()
        if found is None:
            return Claim(status="stale", delivery=None)
        d = _delivery(found)
        lease = found[15]
        busy = (
            d.state == "pending"
            and d.round == task.round
            and d.attempt == task.attempt - 1
            and lease is not None
            and lease > now
        )
        return Claim(status="busy" if busy else "stale", delivery=d)

    def finish(self, claimed: Delivery, updated: Delivery, attempt: Attempt | None) -> bool:
        u = updated
        with self._pool.transaction() as cur:
            if attempt is not None:
                a = attempt
                cur.execute(
                    "INSERT INTO webhook_attempts (delivery_id, round, number, started_at, "
                    "latency_ms, status, error, outcome, next_attempt_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (
                        a.delivery_id,
                        a.round,
                        a.number,
                        a.started_at,
                        a.latency_ms,
                        a.status,
                        a.error,
                        a.outcome.value,
                        a.next_attempt_at,
                    ),
                )
            cur.execute(
                "UPDATE webhook_deliveries SET state = %s, attempt = %s, next_attempt_at = %s, "
                "last_status = %s, last_error = %s, updated_at = %s, lease_until = NULL "
                "WHERE tenant = %s AND id = %s AND state = 'pending' AND round = %s "
                "AND attempt = %s",
                (
                    u.state,
                    u.attempt,
                    u.next_attempt_at,
                    u.last_status,
                    u.last_error,
                    u.updated_at,
                    claimed.tenant,
                    claimed.id,
                    claimed.round,
                    claimed.attempt,
                ),
            )
            return bool(cur.rowcount == 1)

    def replay(self, tenant: str, delivery_id: str, *, now: datetime) -> Delivery:
        with self._pool.transaction() as cur:
            cur.execute(
                "UPDATE webhook_deliveries SET state = 'pending', round = round + 1, "  # noqa: S608
                "attempt = 0, next_attempt_at = %s, lease_until = NULL, updated_at = %s "
                f"WHERE tenant = %s AND id = %s RETURNING {_DEL_COLS}",
                (now, now, tenant, delivery_id),
            )
            row = cur.fetchone()
        if row is None:
            raise NotFound(f"delivery {delivery_id} not found")
        return _delivery(row)

    def deliveries(
        self, tenant: str, subscription_id: str, *, before_seq: int | None, limit: int
    ) -> list[Delivery]:
        with self._pool.transaction() as cur:
            cur.execute(
                f"SELECT {_DEL_COLS} FROM webhook_deliveries "  # noqa: S608
                "WHERE tenant = %s AND subscription_id = %s "
                "AND (%s::bigint IS NULL OR seq < %s::bigint) ORDER BY seq DESC LIMIT %s",
                (tenant, subscription_id, before_seq, before_seq, limit),
            )
            return [_delivery(r) for r in cur.fetchall()]

    def attempts(self, tenant: str, delivery_ids: Sequence[str]) -> dict[str, list[Attempt]]:
        if not delivery_ids:
            return {}
        out: dict[str, list[Attempt]] = {}
        with self._pool.transaction() as cur:
            cur.execute(
                f"SELECT {_ATT_COLS} FROM webhook_attempts a "  # noqa: S608
                "JOIN webhook_deliveries d ON d.id = a.delivery_id "
                "WHERE d.tenant = %s AND a.delivery_id = ANY(%s::text[]) "
                "ORDER BY a.delivery_id, a.round, a.number",
                (tenant, list(delivery_ids)),
            )
            for r in cur.fetchall():
                out.setdefault(r[0], []).append(_attempt(r))
        return out

    def overdue(self, *, before: datetime, limit: int) -> list[Delivery]:
        with self._pool.transaction() as cur:
            cur.execute(
                f"SELECT {_DEL_COLS} FROM webhook_deliveries "  # noqa: S608
                "WHERE state = 'pending' AND next_attempt_at < %s "
                "AND (lease_until IS NULL OR lease_until <= %s) "
                "ORDER BY next_attempt_at, seq LIMIT %s",
                (before, before, limit),
            )
            return [_delivery(r) for r in cur.fetchall()]

    def counts(self, tenant: str, subscription_id: str) -> dict[str, int]:
        with self._pool.transaction() as cur:
            cur.execute(
                "SELECT state, count(*) FROM webhook_deliveries "
                "WHERE tenant = %s AND subscription_id = %s GROUP BY state",
                (tenant, subscription_id),
            )
            return {r[0]: int(r[1]) for r in cur.fetchall()}


def current_traceparent() -> str:
    """The W3C traceparent of the current span ("" outside one)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


class PgTaskQueue:
    """Scheduled attempts in ``webhook_tasks``; `due` leases what is ready."""

    def __init__(self, *, pool: Pool, lease: timedelta = timedelta(minutes=2)) -> None:
        self._pool = pool
        self._lease = lease

    def enqueue(self, task: AttemptTask) -> None:
        with self._pool.transaction() as cur:
            cur.execute(
                "INSERT INTO webhook_tasks (name, tenant, delivery_id, round, attempt, "
                "not_before, traceparent) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (name) DO NOTHING",
                (
                    task.name,
                    task.tenant,
                    task.delivery_id,
                    task.round,
                    task.attempt,
                    task.not_before,
                    task.traceparent or current_traceparent(),
                ),
            )

    def due(self, *, now: datetime, limit: int) -> list[AttemptTask]:
        with self._pool.transaction() as cur:
            cur.execute(
                "UPDATE webhook_tasks SET claimed_until = %s, tries = tries + 1 "
                "WHERE name IN (SELECT name FROM webhook_tasks WHERE not_before <= %s "
                "AND (claimed_until IS NULL OR claimed_until <= %s) "
                "ORDER BY not_before, name LIMIT %s FOR UPDATE SKIP LOCKED) "
                "RETURNING tenant, delivery_id, round, attempt, not_before, traceparent",
                (now + self._lease, now, now, limit),
            )
            rows = cur.fetchall()
        tasks = [
            AttemptTask(
                tenant=r[0],
                delivery_id=r[1],
                round=r[2],
                attempt=r[3],
                not_before=r[4],
                traceparent=r[5],
            )
            for r in rows
        ]
        return sorted(tasks, key=lambda t: (t.not_before, t.name))

    def complete(self, task: AttemptTask) -> None:
        with self._pool.transaction() as cur:
            cur.execute("DELETE FROM webhook_tasks WHERE name = %s", (task.name,))

    def retry_later(self, task: AttemptTask, *, at: datetime) -> None:
        with self._pool.transaction() as cur:
            cur.execute(
                "UPDATE webhook_tasks SET not_before = %s, claimed_until = NULL WHERE name = %s",
                (at, task.name),
            )

    def pending(self) -> list[AttemptTask]:
        """Every queued task, soonest first (operations, tests)."""
        with self._pool.transaction() as cur:
            cur.execute(
                "SELECT tenant, delivery_id, round, attempt, not_before, traceparent "
                "FROM webhook_tasks "
                "ORDER BY not_before, name"
            )
            rows = cur.fetchall()
        return [
            AttemptTask(
                tenant=r[0],
                delivery_id=r[1],
                round=r[2],
                attempt=r[3],
                not_before=r[4],
                traceparent=r[5],
            )
            for r in rows
        ]

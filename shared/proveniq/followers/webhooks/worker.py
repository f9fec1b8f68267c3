"""Draining a polled task queue: the local stack's stand-in for Cloud Tasks' HTTP push.

The local worker loops ``drain(queue, dispatcher.attempt, now=clock())`` every few hundred
milliseconds. A task whose handler raises `errors.Unavailable` is put back ``backoff`` later
(the platform retry Cloud Tasks would do); any other exception is logged and the task put back
too, so a bug never loses a delivery; a handled task is completed (deleted).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from proveniq.errors import Unavailable
from proveniq.followers.webhooks.ports import AttemptTask, PolledQueue

log = logging.getLogger("proveniq.webhooks.worker")


def drain(
    queue: PolledQueue,
    handle: Callable[[AttemptTask], object],
    *,
    now: datetime,
    limit: int = 50,
    backoff: timedelta = timedelta(seconds=5),
) -> int:
    """Handle the tasks due at ``now``; returns how many were handled (completed)."""
    done = 0
    for task in queue.due(now=now, limit=limit):
        try:
            handle(task)
        except Unavailable as e:
            log.info("webhook task %s deferred: %s", task.name, e.message)
            queue.retry_later(task, at=now + backoff)
            continue
        except Exception:
            log.exception("webhook task %s failed; retrying later", task.name)
            queue.retry_later(task, at=now + backoff)
            continue
        queue.complete(task)
        done += 1
    return done

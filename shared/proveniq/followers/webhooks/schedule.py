"""The retry schedule (Core manual §10.4) and how an attempt's outcome is classified.

    attempt   1          2       3       4        5      6
    delay     immediate  1 min   5 min   30 min   2 h    24 h (final)

Each delay is counted from the end of the previous attempt (the first from when the delivery
was created). A ``Retry-After`` answer (seconds or an HTTP date) that asks for a *later* time
wins, capped at `RetrySchedule.retry_after_cap`; an earlier one is ignored. After the last
attempt of the schedule a failed delivery is dead-lettered (kept, visible, replayable).

`classify`: 2xx delivered; 410 Gone disables the subscription; any other status (3xx included:
redirects are never followed), a timeout, a connection error or a refused target: retry.

`PROVENIQ_WEBHOOK_RETRY_SCHEDULE` (comma-separated seconds, default ``0,60,300,1800,7200,86400``)
shortens the schedule for demos and tests; `RetrySchedule.parse` reads it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Final

from proveniq.errors import ValidationError

SETTING: Final = "PROVENIQ_WEBHOOK_RETRY_SCHEDULE"
DEFAULT_DELAYS: Final = (0, 60, 300, 1800, 7200, 86400)
MAX_DELAY: Final = 7 * 86400
MAX_ATTEMPTS: Final = 20
_DELAY = re.compile(r"^\d{1,7}$")


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    GONE = "gone"
    RETRY = "retry"


def classify(status: int | None) -> Outcome:
    if status is not None and 200 <= status <= 299:
        return Outcome.DELIVERED
    if status == 410:
        return Outcome.GONE
    return Outcome.RETRY


def parse_retry_after(value: str | None, *, now: datetime) -> datetime | None:
    """The time a ``Retry-After`` header asks for, or None if absent or malformed."""
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64:  # never int() an unbounded string
        return None
    if text.isdigit():
        return now + timedelta(seconds=int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


@dataclass(frozen=True, kw_only=True)
class RetrySchedule:
    delays: tuple[int, ...] = DEFAULT_DELAYS  # seconds before attempt 1, 2, ...
    retry_after_cap: int = 86400

    def __post_init__(self) -> None:
        if not 1 <= len(self.delays) <= MAX_ATTEMPTS:
            raise ValidationError(f"1 to {MAX_ATTEMPTS} delays", field=SETTING)
        if any(d < 0 or d > MAX_DELAY for d in self.delays):
            raise ValidationError(f"delays are 0 to {MAX_DELAY} seconds", field=SETTING)

    @classmethod
    def parse(cls, text: str | None) -> RetrySchedule:
        """From the setting's text; None or blank gives the Core manual's schedule."""
        if text is None or not text.strip():
            return cls()
        parts = [p.strip() for p in text.split(",")]
        if not all(_DELAY.match(p) for p in parts):
            raise ValidationError(
                f"expected comma-separated whole seconds like '0,60,300', got {text!r}",
                field=SETTING,
            )
        return cls(delays=tuple(int(p) for p in parts))

    @property
    def max_attempts(self) -> int:
        return len(self.delays)

    def first_at(self, created_at: datetime) -> datetime:
        return created_at + timedelta(seconds=self.delays[0])

    def next_at(
        self, attempt: int, *, finished_at: datetime, retry_after: datetime | None = None
    ) -> datetime | None:
        """When attempt ``attempt + 1`` is due after attempt ``attempt`` (1-based) failed at
        ``finished_at``; None when ``attempt`` was the last one (dead letter)."""
        if attempt < 1:
            raise ValueError("attempts are numbered from 1")
        if attempt >= self.max_attempts:
            return None
        due = finished_at + timedelta(seconds=self.delays[attempt])
        if retry_after is not None:
            capped = min(retry_after, finished_at + timedelta(seconds=self.retry_after_cap))
            due = max(due, capped)
        return due

"""The retry schedule, Retry-After and outcome classification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from proveniq.errors import ValidationError
from proveniq.followers.webhooks.schedule import (
    SETTING,
    Outcome,
    RetrySchedule,
    classify,
    parse_retry_after,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_default_is_the_core_manuals_schedule() -> None:
    s = RetrySchedule.parse(None)
    assert s.delays == (0, 60, 300, 1800, 7200, 86400)
    assert s.max_attempts == 6
    assert s.first_at(T0) == T0
    got = [s.next_at(n, finished_at=T0) for n in range(1, 7)]
    assert got == [
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=5),
        T0 + timedelta(minutes=30),
        T0 + timedelta(hours=2),
        T0 + timedelta(hours=24),
        None,  # after the sixth: dead letter
    ]


def test_setting_overrides_the_schedule() -> None:
    s = RetrySchedule.parse(" 0, 1 ,2")
    assert s.delays == (0, 1, 2) and s.max_attempts == 3
    assert s.next_at(2, finished_at=T0) == T0 + timedelta(seconds=2)
    assert s.next_at(3, finished_at=T0) is None
    assert RetrySchedule.parse("") == RetrySchedule()


@pytest.mark.parametrize(
    "bad", ["a", "1,,2", "-1", "1.5", "9" * 5000, ",", "0," * 21 + "0", "604801"]
)
def test_bad_settings_are_refused_naming_the_setting(bad: str) -> None:
    with pytest.raises(ValidationError) as e:
        RetrySchedule.parse(bad)
    assert e.value.field == SETTING


def test_a_later_retry_after_wins_an_earlier_one_does_not() -> None:
    s = RetrySchedule()
    later = T0 + timedelta(minutes=10)
    assert s.next_at(1, finished_at=T0, retry_after=later) == later
    assert s.next_at(1, finished_at=T0, retry_after=T0 + timedelta(seconds=5)) == T0 + timedelta(
        minutes=1
    )
    # capped: a receiver cannot park a delivery for a year
    far = T0 + timedelta(days=365)
    assert s.next_at(1, finished_at=T0, retry_after=far) == T0 + timedelta(days=1)
    assert s.next_at(6, finished_at=T0, retry_after=later) is None


def test_parse_retry_after() -> None:
    assert parse_retry_after("120", now=T0) == T0 + timedelta(seconds=120)
    assert parse_retry_after("Tue, 01 Dec 2026 13:00:00 GMT", now=T0) == T0 + timedelta(hours=1)
    for junk in (None, "", "soon", "-5", "1" * 5000, "Tue, 99 Foo"):
        assert parse_retry_after(junk, now=T0) is None


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (299, Outcome.DELIVERED),
        (410, Outcome.GONE),
        (301, Outcome.RETRY),
        (302, Outcome.RETRY),
        (307, Outcome.RETRY),
        (400, Outcome.RETRY),
        (404, Outcome.RETRY),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
        (None, Outcome.RETRY),
        (199, Outcome.RETRY),
    ],
)
def test_classify(status: int | None, outcome: Outcome) -> None:
    assert classify(status) is outcome


def test_attempts_are_numbered_from_one() -> None:
    with pytest.raises(ValueError):
        RetrySchedule().next_at(0, finished_at=T0)

"""The group committer's leader/follower rules, with a recording `run` instead of a ledger."""

from __future__ import annotations

import threading
import time

import pytest

from proveniq.errors import Unavailable
from proveniq.grouping import GroupCommitter


class Recorder:
    def __init__(self, *, hold: threading.Event | None = None) -> None:
        self.groups: list[list[int]] = []
        self.hold = hold  # the first group waits for it (a group "committing")
        self.started = threading.Event()

    def __call__(self, group: list[int]) -> list[int]:
        self.groups.append(list(group))
        self.started.set()
        if self.hold is not None and len(self.groups) == 1:
            self.hold.wait(5)
        return [x * 10 for x in group]


def submit_all(c: GroupCommitter[int, int], values: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    barrier = threading.Barrier(len(values))

    def one(v: int) -> None:
        barrier.wait()
        out[v] = c.submit(v)

    threads = [threading.Thread(target=one, args=(v,)) for v in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return out


def test_a_lone_request_commits_alone_after_the_wait() -> None:
    run = Recorder()
    c = GroupCommitter(run, wait=0.02, max_size=8, adaptive=False)
    started = time.monotonic()
    assert c.submit(7) == 70
    assert time.monotonic() - started >= 0.02
    assert run.groups == [[7]] and (c.groups, c.requests, c.largest) == (1, 1, 1)


def test_adaptive_a_lone_writer_is_not_delayed_a_busy_one_lingers() -> None:
    hold = threading.Event()
    run = Recorder(hold=hold)  # the first group commits only once `hold` is set
    c = GroupCommitter(run, wait=0.3, max_size=8)
    first = threading.Thread(target=c.submit, args=(1,))
    first.start()  # the first request ever: no linger (no group before it had company)
    assert run.started.wait(1)
    queued = [threading.Thread(target=c.submit, args=(v,)) for v in (2, 3)]
    for t in queued:
        t.start()
    time.sleep(0.05)
    hold.set()  # 2 and 3 queued behind the commit: the next group has company
    for t in (first, *queued):
        t.join(5)
    assert run.groups == [[1], [2, 3]]
    started = time.monotonic()
    assert c.submit(4) == 40  # after a group with company, a lone arrival lingers
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert c.submit(5) == 50  # after a lone group: no linger
    assert time.monotonic() - started < 0.25


def test_the_leader_waits_until_max_size_requests_are_pending() -> None:
    run = Recorder()
    c = GroupCommitter(run, wait=5.0, max_size=6, adaptive=False)  # the 6th request ends it
    started = time.monotonic()
    out = submit_all(c, list(range(6)))
    assert time.monotonic() - started < 2
    assert out == {v: v * 10 for v in range(6)}
    assert [sorted(g) for g in run.groups] == [list(range(6))] and c.largest == 6


def test_requests_arriving_during_a_commit_form_the_next_group_without_waiting() -> None:
    hold = threading.Event()
    run = Recorder(hold=hold)
    c = GroupCommitter(run, wait=0.0, max_size=100)
    first = threading.Thread(target=c.submit, args=(0,))
    first.start()
    assert run.started.wait(5)  # group 1 = [0] is committing
    later: dict[int, int] = {}
    threads = [
        threading.Thread(target=lambda v=v: later.__setitem__(v, c.submit(v))) for v in (1, 2, 3)
    ]
    for t in threads:
        t.start()
    time.sleep(0.05)  # they queue behind the commit
    assert len(run.groups) == 1
    hold.set()
    first.join(5)
    for t in threads:
        t.join(5)
    assert run.groups[0] == [0] and sorted(run.groups[1]) == [1, 2, 3]  # one group, no waiting
    assert later == {1: 10, 2: 20, 3: 30}


def test_groups_never_exceed_max_size_and_keep_arrival_order() -> None:
    run = Recorder()
    c = GroupCommitter(run, wait=0.05, max_size=4, adaptive=False)
    out = submit_all(c, list(range(10)))
    assert out == {v: v * 10 for v in range(10)}
    assert all(len(g) <= 4 for g in run.groups)
    assert sorted(v for g in run.groups for v in g) == list(range(10))


def test_a_group_failure_reaches_each_of_its_requests_and_the_next_group_runs() -> None:
    calls = []

    def run(group: list[int]) -> list[int]:
        calls.append(group)
        if len(calls) == 1:
            raise Unavailable("database down")
        return group

    c = GroupCommitter(run, wait=5.0, max_size=3, adaptive=False)  # the third ends the wait
    errors: list[BaseException] = []

    def one(v: int) -> None:
        try:
            c.submit(v)
        except Unavailable as e:
            errors.append(e)

    threads = [threading.Thread(target=one, args=(v,)) for v in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(errors) == 3 and len(calls) == 1
    c.wait = 0
    assert c.submit(9) == 9


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        GroupCommitter(lambda g: g, wait=-1, max_size=1)
    with pytest.raises(ValueError):
        GroupCommitter(lambda g: g, wait=0, max_size=0)

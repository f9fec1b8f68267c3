"""Group commit: concurrent requests of one process handled together, in groups.

Leader/follower, with no thread of its own (the work is done by the requests' threads, which a
Cloud Function instance keeps running while its requests are open):

- a request that arrives while no group is forming or committing becomes the LEADER: it
  lingers at most `wait` seconds for company (less if `max_size` requests are pending), takes
  every pending request (at most `max_size`) and runs them as ONE group. With `adaptive` (the
  default) it lingers only if the previous group had company: a lone writer is not delayed
  (but for the first request after a group of several, which lingers once), and under load
  (groups of several) the linger gathers larger groups;
- a request that arrives while a group is forming joins it; one that arrives while a group is
  committing waits for the next group, which starts as soon as the current one has committed
  (its oldest request leads it, without lingering: it has waited already);
- every request gets its own result once its group has run; an exception raised by the group
  as a whole reaches each of its requests.

`GroupCommitter` knows nothing of the ledger: `Sequencer` gives it the group transaction
(`Sequencer.commit_group`); the device intake gives it `DeviceIngest.ingest`
(`intake/devices/grouping.py`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    __slots__ = ("done", "error", "request", "result", "wake")

    def __init__(self, request: T) -> None:
        self.request = request
        self.result: R | None = None
        self.error: BaseException | None = None
        self.done = False  # False when woken: this request leads the next group
        self.wake = threading.Event()


class GroupCommitter(Generic[T, R]):
    """`submit(request)` runs `run([request, ...])` for a group of concurrent requests and
    returns this request's item of the result (a list in request order)."""

    def __init__(
        self,
        run: Callable[[list[T]], Sequence[R]],
        *,
        wait: float,
        max_size: int,
        adaptive: bool = True,
    ) -> None:
        if wait < 0 or max_size < 1:
            raise ValueError("wait must be >= 0 and max_size >= 1")
        self._run = run
        self.wait = wait
        self.max_size = max_size
        self.adaptive = adaptive
        self._last = 1  # size of the latest group
        self._lock = threading.Lock()
        self._full = threading.Condition(self._lock)  # a lingering leader: enough are pending
        self._pending: list[_Slot[T, R]] = []
        self._leading = False  # a group is forming or committing (then pending may fill up)
        # figures for tests, benchmarks and logs
        self.groups = 0
        self.requests = 0
        self.largest = 0

    def submit(self, request: T) -> R:
        slot: _Slot[T, R] = _Slot(request)
        with self._lock:
            self._pending.append(slot)
            lead = not self._leading
            if lead:
                self._leading = True
            elif len(self._pending) >= self.max_size:
                self._full.notify()
        if not lead:
            slot.wake.wait()
            if slot.done:
                return self._result(slot)
        self._lead(linger=lead)
        return self._result(slot)

    def _lead(self, *, linger: bool) -> None:
        with self._lock:
            if linger and self.wait > 0 and (self._last > 1 or not self.adaptive):
                deadline = time.monotonic() + self.wait
                while len(self._pending) < self.max_size:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._full.wait(left)
            group = self._pending[: self.max_size]
            del self._pending[: self.max_size]
            self._last = len(group)
            self.groups += 1
            self.requests += len(group)
            self.largest = max(self.largest, len(group))
        try:
            results = self._run([s.request for s in group])
            if len(results) != len(group):
                raise RuntimeError("a group's run answered a different number of results")
            for s, r in zip(group, results, strict=True):
                s.result = r
        except BaseException as e:  # every request of the group sees it
            for s in group:
                s.error = e
        with self._lock:  # hand over to the oldest waiting request, or go idle
            if self._pending:
                self._pending[0].wake.set()
            else:
                self._leading = False
        for s in group:
            s.done = True
            s.wake.set()

    @staticmethod
    def _result(slot: _Slot[T, R]) -> R:
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

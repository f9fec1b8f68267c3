"""Health (liveness) and readiness, served by every HTTP function without credentials."""

from __future__ import annotations

from collections.abc import Callable

from proveniq.edge.http import Call, Reply


class HealthHandlers:
    def __init__(self, *, ready: Callable[[], None]) -> None:
        self._ready = ready

    def health(self, _: Call) -> Reply:
        return Reply(data={"status": "ok"})

    def ready(self, _: Call) -> Reply:
        self._ready()  # raises Unavailable when the database cannot be reached
        return Reply(data={"status": "ready"})

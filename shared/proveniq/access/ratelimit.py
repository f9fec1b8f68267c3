"""Rate limits per tier (Core manual §8.3) as token buckets: capacity = burst, refill =
requests-per-minute / 60 per second. The `internal` tier (the operator's own devices and
benchmarks) is not limited; an unknown tier is treated as `free`, never as unlimited."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from proveniq.errors import RateLimited
from proveniq.ports import RateBuckets

UNLIMITED = "internal"
TIERS: dict[str, tuple[int, int]] = {  # tier -> (requests per minute, burst)
    "free": (60, 10),
    "pro": (600, 100),
    "enterprise": (6000, 1000),
}


@dataclass(frozen=True)
class Budget:
    limit: int
    remaining: int
    reset: int  # unix seconds when the bucket is full again

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


class RateLimiter:
    def __init__(self, buckets: RateBuckets) -> None:
        self.buckets = buckets

    def take(self, *, bucket: str, tier: str) -> Budget | None:
        """Spend one token or raise RateLimited; None for the unlimited `internal` tier."""
        if tier == UNLIMITED:
            return None
        rpm, burst = TIERS.get(tier, TIERS["free"])
        rate = rpm / 60.0
        tokens = self.buckets.take(bucket=bucket, capacity=burst, refill_per_second=rate)
        now = time.time()
        reset = math.ceil(now + (burst - tokens) / rate)
        if tokens < 0:
            # The next request succeeds once a whole token is back (refused requests keep the
            # bucket at -1): wait for 1 - tokens of refill, rounded up.
            wait = max(1, math.ceil((1 - tokens) / rate))
            raise RateLimited(
                f"rate limit of {rpm} requests/minute exceeded",
                retry_after=wait,
                limit=rpm,
                reset=reset,
            )
        return Budget(limit=rpm, remaining=int(tokens), reset=reset)

"""Token buckets in PostgreSQL, so every instance spends from the same budget."""

from __future__ import annotations

from proveniq.adapters.postgres import statements
from proveniq.adapters.postgres.pool import Pool


class PostgresRateBuckets:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def take(self, *, bucket: str, capacity: float, refill_per_second: float) -> float:
        # One statement, committed on its own: one round trip (no BEGIN/COMMIT around it).
        with self.pool.connection() as conn:
            ((tokens,),) = statements.rows(
                conn,
                "INSERT INTO rate_buckets AS b (bucket, tokens, updated_at) "
                "VALUES (%s, %s::float8 - 1, clock_timestamp()) ON CONFLICT (bucket) DO UPDATE SET "
                "tokens = GREATEST(-1, LEAST(%s::float8, b.tokens + %s::float8 * EXTRACT(EPOCH "
                "FROM (clock_timestamp() - b.updated_at))::float8) - 1), "
                "updated_at = clock_timestamp() RETURNING tokens",
                (bucket, float(capacity), float(capacity), float(refill_per_second)),
            )
        return float(tokens)

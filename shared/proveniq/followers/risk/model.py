"""The deterministic model: the sum of the features' contributions, capped at 100.

Every point of the score is explained by a feature's reason and evidence; `reasons` lists the
contributing features, largest contribution first. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from proveniq.followers.risk.features import Feature

MODEL_VERSION = "proveniq-risk-det/1.0"
Level = Literal["low", "medium", "high", "critical"]
LEVELS: tuple[tuple[int, Level], ...] = ((75, "critical"), (50, "high"), (25, "medium"), (0, "low"))
LEVEL_MIDPOINT: dict[str, int] = {"low": 12, "medium": 37, "high": 62, "critical": 87}


def level_for(score: int) -> Level:
    for floor, level in LEVELS:
        if score >= floor:
            return level
    return "low"


@dataclass(frozen=True, kw_only=True)
class DeterministicResult:
    score: int
    level: Level
    features: tuple[Feature, ...]  # all five, in model order

    @property
    def reasons(self) -> list[Feature]:
        contributing = [f for f in self.features if f.contribution > 0]
        return sorted(contributing, key=lambda f: (-f.contribution, f.name))

    def reasons_json(self) -> list[dict[str, Any]]:
        return [
            {
                "feature": f.name,
                "contribution": f.contribution,
                "reason": f.reason,
                "evidence": f.as_json()["evidence"],
            }
            for f in self.reasons
        ]


def clamp_score(x: float) -> int:
    return max(0, min(100, round(x)))


def evaluate(features: Sequence[Feature]) -> DeterministicResult:
    score = clamp_score(sum(f.contribution for f in features))
    return DeterministicResult(score=score, level=level_for(score), features=tuple(features))

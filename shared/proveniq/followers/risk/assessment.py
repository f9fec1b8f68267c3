"""The model assessment (Gemini) as a port, the prompt it is shown, and the review policy.

Data minimisation: `build_prompt` sends only each feature's name, weight, value, contribution,
its identity-free `facts` (numbers and flags) and the ids of the ledger entries it rests on.
Never a payload, a claimant or asset id, a claim id, a description or a reason text (reasons
may name other claims). `Prompt.sha256` is the SHA-256 of the RFC 8785 canonical JSON of
``{"system": ..., "user": ...}`` and is recorded in the `risk.scored` entry.

`combine` applies the assessor's bounded adjustment to the deterministic score and decides
`review_required`: final score >= `threshold`, or the assessor's level is more than `margin`
points from the deterministic score. Without an assessment the deterministic result stands and
the explanation says why.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from proveniq.followers.risk.model import (
    LEVEL_MIDPOINT,
    DeterministicResult,
    clamp_score,
    level_for,
)
from proveniq.log.canonical import canonicalize

MAX_ADJUSTMENT = 20
PROMPT_VERSION = "risk-prompt/1"

SYSTEM_INSTRUCTION = (
    "You review insurance-claim fraud signals computed by a deterministic model. You see only "
    "feature values and the ids of the ledger entries they rest on; you never see personal "
    "data. Assess the overall risk, propose an adjustment of the deterministic score between "
    f"-{MAX_ADJUSTMENT} and +{MAX_ADJUSTMENT} points, explain your rationale in two or three "
    "sentences, cite only evidence ids given to you, and write a short narrative a claims "
    "handler can read. Answer with JSON matching the schema."
)


class GeminiAssessment(BaseModel):
    """The structured output the assessor must return (also its response schema)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    risk_level: Literal["low", "medium", "high", "critical"]
    adjustment: int = Field(ge=-MAX_ADJUSTMENT, le=MAX_ADJUSTMENT)
    rationale: str = Field(max_length=2000)
    cited_evidence: list[str] = Field(default_factory=list, max_length=20)
    narrative: str = Field(max_length=4000)


@dataclass(frozen=True, kw_only=True)
class Prompt:
    system: str
    user: str
    evidence_ids: frozenset[str]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(canonicalize({"system": self.system, "user": self.user})).hexdigest()


class Assessor(Protocol):
    @property
    def model(self) -> str:
        """The model id recorded with each score (e.g. ``gemini-2.5-flash``)."""

    def assess(self, prompt: Prompt) -> GeminiAssessment:
        """The model's assessment, or `errors.Unavailable` (timeout, 5xx, unparsable answer):
        the caller then keeps the deterministic result."""


def build_prompt(result: DeterministicResult) -> Prompt:
    features = [
        {
            "feature": f.name,
            "weight": f.weight,
            "value": round(f.value, 4),
            "contribution": f.contribution,
            "facts": dict(f.facts),
            "evidence_ids": [e.event_id for e in f.evidence],
        }
        for f in result.features
    ]
    user = json.dumps(
        {
            "prompt_version": PROMPT_VERSION,
            "deterministic_score": result.score,
            "deterministic_level": result.level,
            "features": features,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    ids = frozenset(e.event_id for f in result.features for e in f.evidence)
    return Prompt(system=SYSTEM_INSTRUCTION, user=user, evidence_ids=ids)


@dataclass(frozen=True, kw_only=True)
class ReviewPolicy:
    threshold: int = 50  # final score at or above: a human reviews
    margin: int = 30  # assessor level vs deterministic score further apart: a human reviews


@dataclass(frozen=True, kw_only=True)
class Combined:
    score: int
    level: str
    review_required: bool
    review_reasons: tuple[str, ...]
    adjustment: int
    assessment: GeminiAssessment | None
    cited_evidence: tuple[str, ...]
    assessor_status: str  # "ok" | "off" | "unavailable"
    explanation: str


def combine(
    result: DeterministicResult,
    assessment: GeminiAssessment | None,
    *,
    policy: ReviewPolicy,
    prompt: Prompt | None = None,
    status: str = "ok",
    failure: str = "",
) -> Combined:
    """The final score and review decision from the deterministic result and the assessment."""
    if assessment is None:
        why = "Gemini assessment off" if status == "off" else f"Gemini unavailable ({failure})"
        required = result.score >= policy.threshold
        return Combined(
            score=result.score,
            level=result.level,
            review_required=required,
            review_reasons=("score at or above threshold",) if required else (),
            adjustment=0,
            assessment=None,
            cited_evidence=(),
            assessor_status="off" if status == "off" else "unavailable",
            explanation=f"{why}: the deterministic score stands. {_summary(result)}",
        )
    adjustment = max(-MAX_ADJUSTMENT, min(MAX_ADJUSTMENT, assessment.adjustment))
    score = clamp_score(result.score + adjustment)
    reasons: list[str] = []
    if score >= policy.threshold:
        reasons.append("score at or above threshold")
    if abs(LEVEL_MIDPOINT[assessment.risk_level] - result.score) > policy.margin:
        reasons.append("Gemini and the deterministic model disagree")
    known = prompt.evidence_ids if prompt is not None else frozenset()
    cited = tuple(e for e in assessment.cited_evidence if e in known)
    return Combined(
        score=score,
        level=level_for(score),
        review_required=bool(reasons),
        review_reasons=tuple(reasons),
        adjustment=adjustment,
        assessment=assessment,
        cited_evidence=cited,
        assessor_status="ok",
        explanation=assessment.narrative,
    )


def _summary(result: DeterministicResult) -> str:
    reasons: Sequence[str] = [f"{f.name}: {f.reason}" for f in result.reasons]
    return "; ".join(reasons) if reasons else "No risk signal found."

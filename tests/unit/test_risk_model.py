"""Pure parts of the model: robust statistics, levels, the combine/review policy, the prompt."""

from __future__ import annotations

import json

import pydantic
import pytest

from proveniq.followers.risk.assessment import (
    GeminiAssessment,
    ReviewPolicy,
    build_prompt,
    combine,
)
from proveniq.followers.risk.facts import EvidenceRef
from proveniq.followers.risk.features import Feature, robust_z
from proveniq.followers.risk.model import evaluate, level_for

REF = EvidenceRef(event_id="evt_1", seq=3, leaf_hash="00" * 32, type="claim.created")


def _features(*values: float) -> list[Feature]:
    names = ["duplicate_document", "velocity", "amount_outlier", "timing", "custody_contradiction"]
    return [
        Feature(name=n, weight=50.0, value=v, reason=f"{n} reason", evidence=(REF,), facts={"k": v})
        for n, v in zip(names, values, strict=False)
    ]


def test_robust_z_ignores_outliers_in_the_sample() -> None:
    sample = [10.0, 11.0, 9.0, 10.0, 10.5, 9.5, 1000.0]
    assert abs(robust_z(10.0, sample)) < 0.1
    assert robust_z(20.0, sample) > 5
    assert robust_z(10.1, [10.0] * 9) == pytest.approx(2.0)  # MAD floor, no division by zero


def test_score_is_the_capped_sum_and_reasons_are_sorted() -> None:
    r = evaluate(_features(0.2, 1.0, 0.0, 0.6, 1.0))
    assert r.score == 100 and r.level == "critical"
    assert [f.name for f in r.reasons] == [
        "custody_contradiction",
        "velocity",
        "timing",
        "duplicate_document",
    ]
    assert evaluate(_features(0.3)).score == 15
    assert [level_for(s) for s in (0, 24, 25, 50, 75, 100)] == [
        "low",
        "low",
        "medium",
        "high",
        "critical",
        "critical",
    ]


def _assessment(level: str, adjustment: int) -> GeminiAssessment:
    return GeminiAssessment(
        risk_level=level,  # type: ignore[arg-type]
        adjustment=adjustment,
        rationale="r",
        cited_evidence=["evt_1", "evt_made_up"],
        narrative="n",
    )


def test_combine_threshold_margin_and_fallback() -> None:
    r = evaluate(_features(0.5))  # 25
    policy = ReviewPolicy(threshold=50, margin=30)
    prompt = build_prompt(r)
    agree = combine(r, _assessment("medium", 5), policy=policy, prompt=prompt)
    assert (agree.score, agree.review_required, agree.cited_evidence) == (30, False, ("evt_1",))
    disagree = combine(r, _assessment("critical", 0), policy=policy, prompt=prompt)
    assert disagree.review_required and disagree.score == 25
    over = combine(r, _assessment("high", 20), policy=ReviewPolicy(threshold=45), prompt=prompt)
    assert over.review_required and over.score == 45
    off = combine(r, None, policy=policy, status="off")
    assert off.assessor_status == "off" and off.explanation.startswith("Gemini assessment off")
    failed = combine(r, None, policy=ReviewPolicy(threshold=20), status="unavailable", failure="t")
    assert failed.review_required and "Gemini unavailable (t)" in failed.explanation


def test_the_schema_bounds_the_adjustment() -> None:
    with pytest.raises(pydantic.ValidationError):
        _assessment("low", 21)
    with pytest.raises(pydantic.ValidationError):
        _assessment("unknown", 0)


def test_the_prompt_carries_features_and_ids_only_and_its_hash_is_stable() -> None:
    r = evaluate(_features(0.5, 0.0, 1.0))
    p1, p2 = build_prompt(r), build_prompt(r)
    assert p1.sha256 == p2.sha256 and len(p1.sha256) == 64
    body = json.loads(p1.user)
    assert body["deterministic_score"] == r.score
    assert {f["feature"] for f in body["features"]} == {f.name for f in r.features}
    assert all(
        set(f) == {"feature", "weight", "value", "contribution", "facts", "evidence_ids"}
        for f in body["features"]
    )
    assert "reason" not in p1.user and p1.evidence_ids == {"evt_1"}
    assert build_prompt(evaluate(_features(0.6))).sha256 != p1.sha256

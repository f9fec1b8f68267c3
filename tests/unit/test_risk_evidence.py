"""The evidence vocabulary: known fields validated when present, named as payload.<field>."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from proveniq.errors import ValidationError
from proveniq.ledger.evidence import (
    check_evidence,
    claim_evidence,
    custody_evidence,
    is_scorable,
    parse_rfc3339,
)

GOOD_CLAIM: dict[str, Any] = {
    "amount_cents": 125000,
    "currency": "EUR",
    "claimant": "cl_1",
    "asset": "ast_1",
    "incident_at": "2025-03-01T10:00:00Z",
    "policy_id": "pol_1",
    "policy_start": "2024-01-01T00:00:00+01:00",
    "description": "hail",
}


def test_a_complete_claim_and_unknown_or_absent_fields_pass() -> None:
    check_evidence("claim.created", GOOD_CLAIM)
    check_evidence("claim.updated", {"amount_cents": 0, "peril": "hail", "nested": {"x": 1}})
    check_evidence("document.uploaded", {"sha256": "a" * 64, "kind": "photo"})
    check_evidence("custody.transferred", {"from": "yard-7", "to": "carrier-2"})
    check_evidence("device.reading", {"sha256": "not checked here"})


@pytest.mark.parametrize(
    ("event_type", "field", "value"),
    [
        ("claim.created", "amount_cents", -1),
        ("claim.created", "amount_cents", 12.5),
        ("claim.created", "amount_cents", True),
        ("claim.created", "amount_cents", "100"),
        ("claim.updated", "currency", "eur"),
        ("claim.updated", "currency", "EURO"),
        ("claim.created", "claimant", ""),
        ("claim.created", "claimant", 7),
        ("claim.created", "asset", None),
        ("claim.created", "incident_at", "2025-03-01 10:00:00"),
        ("claim.created", "incident_at", "2025-03-01T10:00:00"),
        ("claim.created", "incident_at", "2025-13-01T10:00:00Z"),
        ("claim.created", "policy_start", 20250101),
        ("claim.created", "policy_id", ["p"]),
        ("claim.created", "description", 5),
        ("document.uploaded", "sha256", "A" * 64),
        ("document.uploaded", "sha256", "a" * 63),
        ("document.uploaded", "kind", ""),
        ("document.uploaded", "taken_at", "yesterday"),
        ("custody.locked", "locker", ""),
    ],
)
def test_a_malformed_known_field_is_named(event_type: str, field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as e:
        check_evidence(event_type, {**GOOD_CLAIM, field: value})
    assert e.value.field == f"payload.{field}"
    assert e.value.details() == [{"field": f"payload.{field}", "message": e.value.message}]


def test_timestamps_with_offsets_are_read_in_utc() -> None:
    assert parse_rfc3339("2024-01-01T00:00:00+01:00", field="f") == datetime(
        2023, 12, 31, 23, tzinfo=UTC
    )
    assert parse_rfc3339("2024-01-01t00:00:00.5z", field="f").microsecond == 500000
    c = claim_evidence(GOOD_CLAIM)
    assert c.amount_cents == 125000 and c.incident_at == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert claim_evidence({"currency": "USD"}).claimant is None


def test_custody_placement() -> None:
    locked = custody_evidence("custody.locked", {"locker": "L-12"})
    assert locked is not None and (locked.placement, locked.holder) == ("locker", "L-12")
    moved = custody_evidence("custody.transferred", {"from": "a", "to": "carrier-2"})
    assert moved is not None and (moved.placement, moved.holder) == ("custodian", "carrier-2")
    assert custody_evidence("custody.scanned", {"writer": 1}) is None


def test_only_claims_and_documents_are_scorable() -> None:
    assert is_scorable("claim.created") and is_scorable("document.uploaded")
    assert not is_scorable("risk.scored") and not is_scorable("claim.paid")
    assert not is_scorable("custody.locked")

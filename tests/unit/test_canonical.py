import pytest

from proveniq.errors import ValidationError
from proveniq.log.canonical import canonicalize, parse_strict


def test_rfc8785_key_order_and_number_forms() -> None:
    assert canonicalize({"b": 1, "a": [1.0, 1e21, "é", None, True]}) == (
        '{"a":[1,1e+21,"é",null,true],"b":1}'.encode()
    )


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"a": 1, "a": 2}', "a"),
        (b'{"x": NaN}', "$"),
        (b'{"x": Infinity}', "$"),
        (b'{"x": {"y": 9007199254740993}}', "$.x.y"),
        (b'{"x": ["\\ud800"]}', "$.x[0]"),
        (b"\xff\xfe", "$"),
        (b'{"x": ', "$"),
    ],
)
def test_parse_strict_rejects_what_jcs_cannot_represent(raw: bytes, field: str) -> None:
    with pytest.raises(ValidationError) as e:
        parse_strict(raw)
    assert e.value.field == field


def test_canonicalize_names_nested_field() -> None:
    with pytest.raises(ValidationError) as e:
        canonicalize({"claim": {"amount": float("nan")}}, field="payload")
    assert e.value.field == "payload.claim.amount"


def test_safe_integer_boundary_accepted() -> None:
    assert parse_strict(b'{"n": 9007199254740991}') == {"n": 2**53 - 1}

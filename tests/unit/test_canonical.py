import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from proveniq.errors import ValidationError
from proveniq.log.canonical import canonicalize, check_representable, parse_strict


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


# ---- the C-encoder fast path agrees with the rfc8785 package byte for byte -----------------


_TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", "\x00\x1f\x7f", '"\\/\b\f\n\r\t', "é€😀", "\ue000", "\U0001f600\uffff"]
)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(_JSON)
def test_canonicalize_equals_rfc8785(value: object) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)
    assert canonicalize(value, checked=True) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value",
    [
        {"\ue000": 1, "\U0001f600": 2},  # UTF-16 order differs from code-point order
        {"b": 1, "a": {"d": [1, "x\ny"], "c": None}},
        {"k": (1, 2)},
        [2**53 - 1, -(2**53) + 1, True, False],
    ],
)
def test_canonicalize_fast_and_slow_paths_agree(value: object) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"a": [1, {"b": 2**53}]}, "$.a[1].b"),
        ({"a": "\ud800"}, "$.a"),
        ({"\udc00": 1}, "$.'\\udc00'"),
        ({1: 2}, "$"),
        ({"a": float("inf")}, "$.a"),
        ({"a": object()}, "$.a"),
        ({"a": True, "b": [None, 1.5, "x"]}, None),
    ],
)
def test_check_representable_names_the_field(value: object, field: str | None) -> None:
    if field is None:
        check_representable(value)
        return
    with pytest.raises(ValidationError) as e:
        check_representable(value)
    assert e.value.field == field


def test_deep_values_still_checked() -> None:
    deep: object = 1
    for _ in range(5000):
        deep = [deep]
    check_representable(deep)  # the iterative walk takes over from the recursive one

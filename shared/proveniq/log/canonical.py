"""RFC 8785 (JCS) canonical JSON, with strict parsing.

Canonicalisation is done by the `rfc8785` package, except for the common case it agrees with
byte for byte: a value of only dicts with ASCII keys, lists, strings, safe integers, booleans and
null (no floats) is written by the standard library's C JSON encoder with sorted keys (for ASCII
keys code-point order is RFC 8785's UTF-16 order, and its string escapes are RFC 8785's). What
JCS cannot represent (NaN, Infinity, integers outside the IEEE-754 safe range, lone surrogates,
non-string keys) is rejected with a ValidationError naming the offending field (a
JSON-pointer-like path), never silently altered. Raw JSON bodies are parsed with duplicate keys
and non-standard constants refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import rfc8785

from proveniq.errors import ValidationError

MAX_SAFE_INTEGER = 2**53 - 1


def canonicalize(value: Any, *, field: str = "", checked: bool = False) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of `value` or raise ValidationError.

    `checked=True` skips the field-naming walk for values already walked (a body that went
    through `parse_strict`); `rfc8785` itself still refuses anything it cannot represent.
    """
    if not checked:
        check_representable(value, field=field)
    if _plain(value):
        try:
            return _JSON.encode(value).encode("utf-8")
        except (UnicodeEncodeError, RecursionError):
            pass  # a lone surrogate or a deep value: rfc8785 below decides, as it always did
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as e:  # pragma: no cover - the walk above is stricter
        raise ValidationError(f"not representable in RFC 8785: {e}", field=field or "$") from e


_JSON = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False, check_circular=False
)


def _plain(value: Any) -> bool:
    """Only dicts with ASCII string keys, lists, tuples, strings, safe integers, booleans and
    None: the values the C encoder writes exactly as RFC 8785 does."""
    try:
        return _plain_walk(value)
    except RecursionError:
        return False


def _plain_walk(v: Any) -> bool:
    t = type(v)
    if t is str or t is bool or v is None:
        return True
    if t is int:
        return bool(-MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER)
    if t is dict:
        for k, item in v.items():
            if type(k) is not str or not k.isascii() or not _plain_walk(item):
                return False
        return True
    if t is list or t is tuple:
        return all(map(_plain_walk, v))
    return False


def sha256_canonical(value: Any, *, field: str = "") -> bytes:
    return hashlib.sha256(canonicalize(value, field=field)).digest()


def parse_strict(raw: bytes | str, *, field: str = "") -> Any:
    """Parse JSON, refusing duplicate keys, NaN/Infinity and anything JCS cannot represent."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as e:
        raise ValidationError("body is not valid UTF-8", field=field or "$") from e
    suspect: list[str] = []  # numbers JCS cannot represent, seen while parsing

    def parse_int(digits: str) -> int | _HugeInt:
        if len(digits) < 16:  # |n| < 10^15 < 2^53
            return int(digits)
        n = _bounded_int(digits)
        if isinstance(n, _HugeInt) or abs(n) > MAX_SAFE_INTEGER:
            suspect.append(digits)
        return n

    def parse_float(digits: str) -> float:
        f = float(digits)
        if not math.isfinite(f):  # 1e400
            suspect.append(digits)
        return f

    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
            parse_int=parse_int,
            parse_float=parse_float,
        )
    except _DuplicateKey as e:
        raise ValidationError(f"duplicate key {e.key!r} in JSON object", field=e.key) from e
    except _BadConstant as e:
        raise ValidationError(f"{e.constant} is not valid JSON", field=field or "$") from e
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValidationError(f"malformed JSON: {e}", field=field or "$") from e
    # Parsed JSON holds only dicts, lists, strings, numbers, booleans and null; what JCS cannot
    # represent is a number flagged above or a lone surrogate, which only a \uD800-\uDFFF
    # escape can produce (the text is valid UTF-8). Without either, there is nothing to walk.
    if suspect or _SURROGATE_ESCAPE.search(text):
        check_representable(value, field=field)
    return value


# A \u escape of a surrogate (or a literal backslash before "ud8".., which only costs a walk).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _HugeInt:
    """An integer literal too long to be safe (or even converted: Python refuses int() of more
    than 4,300 digits); `check_representable` reports it with its field."""

    def __init__(self, digits: str) -> None:
        self.digits = digits


def _bounded_int(text: str) -> int | _HugeInt:
    return int(text) if len(text) <= 20 else _HugeInt(text)


def check_representable(value: Any, *, field: str = "") -> None:
    """Walk `value` and raise ValidationError at the first thing RFC 8785 cannot represent."""
    try:
        if _representable(value):
            return
    except RecursionError:
        pass
    _explain(value, field=field)  # the path-naming walk: raises with the offending field


def _representable(v: Any) -> bool:
    """The check without paths (no string built per node); False when unsure, and then the
    path-naming walk decides (never True for something `_explain` would refuse)."""
    t = type(v)
    if t is str:
        return v.isascii() or _utf8(v)
    if t is int:
        return bool(-MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER)
    if t is bool or v is None:
        return True
    if t is dict:
        for k, item in v.items():
            if type(k) is not str or not (k.isascii() or _utf8(k)) or not _representable(item):
                return False
        return True
    if t is list or t is tuple:
        return all(map(_representable, v))
    if t is float:
        return math.isfinite(v)
    return False


def _utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _explain(value: Any, *, field: str = "") -> None:
    stack: list[tuple[str, Any]] = [(field or "$", value)]
    while stack:
        path, v = stack.pop()
        if v is None or isinstance(v, bool):
            continue
        if isinstance(v, _HugeInt) or (isinstance(v, int) and abs(v) > MAX_SAFE_INTEGER):
            raise ValidationError(
                "integer outside the IEEE-754 safe range (|n| <= 2^53-1); send it as a string",
                field=path,
            )
        if isinstance(v, int):
            if abs(v) > MAX_SAFE_INTEGER:
                raise ValidationError(
                    "integer outside the IEEE-754 safe range (|n| <= 2^53-1); send it as a string",
                    field=path,
                )
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise ValidationError("NaN and Infinity are not representable", field=path)
        elif isinstance(v, str):
            _check_string(v, path)
        elif isinstance(v, list | tuple):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(v))
        elif isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    raise ValidationError("object keys must be strings", field=path)
                _check_string(k, f"{path}.{k!r}")
                stack.append((f"{path}.{k}", item))
        else:
            raise ValidationError(f"unsupported JSON type {type(v).__name__}", field=path)


def _check_string(s: str, path: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValidationError("string contains a lone surrogate", field=path) from e


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


class _BadConstant(Exception):
    def __init__(self, constant: str) -> None:
        self.constant = constant


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise _BadConstant(name)

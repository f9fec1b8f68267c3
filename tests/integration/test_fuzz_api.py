"""Arbitrary request bodies never get a 5xx (the stack fixture fails on any 5xx) and never
write a half record: each is either 201 or a 4xx with the error envelope."""

from __future__ import annotations

import json
from typing import Any

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["claim.created", "asset.created", "asset.sold", "x", ""]),
            "subject": st.text(max_size=10),
        },
        optional={
            "payload": json_values,
            "occurred_at": st.text(max_size=30),
            "extra": st.integers(),
        },
    ).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "events": st.lists(
                st.fixed_dictionaries(
                    {"type": st.just("claim.note"), "subject": st.just("clm_f")},
                    optional={"payload": json_values},
                ),
                max_size=3,
            )
        },
    ).map(lambda v: json.dumps(v).encode()),
)


def test_random_bodies_get_201_or_4xx_envelope(stack: Any) -> None:
    session = requests.Session()
    headers = {
        "Authorization": f"Bearer {stack.keys['acme:MEMBER']}",
        "Content-Type": "application/json",
    }

    @settings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(body=bodies, path=st.sampled_from(["/v1/events", "/v1/events:batch"]))
    def check(body: bytes, path: str) -> None:
        r = session.post(stack.base + path, data=body, headers=headers, timeout=30)
        assert r.status_code == 201 or 400 <= r.status_code < 500, (r.status_code, r.text)
        doc = r.json()
        if r.status_code == 201:
            assert doc["success"] is True
        else:
            assert doc["success"] is False and doc["error"]["code"]

    check()

"""Every EGPSource spec the CRD admits is either held by the operator or refused as an
InvalidSpec: reading a spec never raises, whatever a tenant writes (or wrote before a CRD
rule existed)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egp_operator.resources.crds import DURATION_PATTERN
from egp_operator.resources.models import (
    MAX_MISSING_GRACE_PERIOD,
    MAX_REFRESH_INTERVAL,
    MIN_REFRESH_INTERVAL,
    EGPSourceSpec,
)
from egp_operator.sync.spec import InvalidSpec, read_spec

#: What the CRD's pattern and maxLength admit: up to 32 characters of `<n>h<n>m<n>s`.
admitted_durations = st.from_regex(DURATION_PATTERN, fullmatch=True).filter(
    lambda text: 2 <= len(text) <= 32
)


def _source(**spec: Any) -> dict[str, Any]:
    return {"spec": {"credentialsSecretRef": {"name": "egp"}, **spec}}


@settings(max_examples=300, derandomize=True)
@given(refresh=admitted_durations, grace=admitted_durations)
def test_any_duration_the_crd_pattern_admits_is_held_or_refused(refresh: str, grace: str) -> None:
    spec = read_spec(_source(refreshInterval=refresh, missingGracePeriod=grace))

    if isinstance(spec, EGPSourceSpec):
        assert MIN_REFRESH_INTERVAL <= spec.refresh <= MAX_REFRESH_INTERVAL
        assert timedelta(0) <= spec.grace <= MAX_MISSING_GRACE_PERIOD
    else:
        assert isinstance(spec, InvalidSpec)


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("refreshInterval", "1000000000000h", "too long to hold"),
        ("refreshInterval", "99999999999999999999999999999s", "too long to hold"),
        ("refreshInterval", "25h", "must be at most 24h"),
        ("missingGracePeriod", "1000000000000h", "too long to hold"),
        ("missingGracePeriod", "8761h", "must be at most 8760h"),
    ],
)
def test_an_interval_of_centuries_is_an_invalid_spec_naming_the_field(
    field: str, value: str, why: str
) -> None:
    spec = read_spec(_source(**{field: value}))

    assert isinstance(spec, InvalidSpec)
    assert f"{field}: " in spec.message
    assert why in spec.message


@pytest.mark.parametrize(
    ("field", "value"), [("refreshInterval", "24h"), ("missingGracePeriod", "8760h")]
)
def test_the_longest_durations_allowed_are_held(field: str, value: str) -> None:
    assert isinstance(read_spec(_source(**{field: value})), EGPSourceSpec)


def test_a_refresh_interval_below_the_minimum_is_raised_to_it() -> None:
    spec = read_spec(_source(refreshInterval="1s"))

    assert isinstance(spec, EGPSourceSpec)
    assert spec.refresh == MIN_REFRESH_INTERVAL

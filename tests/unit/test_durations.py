"""Durations parse to timedeltas, and anything past the bound is a clear ValueError."""

from __future__ import annotations

import random
import re
from datetime import timedelta

import pytest
from pydantic import ValidationError

from slipway.api.durations import (
    MAX_DURATION,
    TOO_LONG_PART,
    format_duration,
    parse_duration,
)
from slipway.api.models import AnalysisSettings, CanaryStep, ModelDeploymentSpec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("250ms", timedelta(milliseconds=250)),
        ("1m500ms", timedelta(seconds=60.5)),
        ("168h", MAX_DURATION),
        ("604800000ms", MAX_DURATION),
    ],
)
def test_parses(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["168h1ms", "169h", "10081m", "99999999999999h", "9" * 31 + "h"])
def test_too_long_is_a_value_error_naming_the_bound(text: str) -> None:
    with pytest.raises(ValueError, match=r"at most 168h") as raised:
        parse_duration(text)
    assert not isinstance(raised.value, OverflowError)
    assert repr(text) in str(raised.value)


@pytest.mark.parametrize("text", ["", "1d", "5 minutes", "1.5h", "-1s", "h"])
def test_malformed_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_models_refuse_what_parse_refuses() -> None:
    """The operator parses objects through the models: a huge duration stops there."""
    with pytest.raises(ValidationError, match="at most 168h"):
        CanaryStep(weight=10, pause="99999999999999h")
    with pytest.raises(ValidationError, match="at most 168h"):
        AnalysisSettings(interval="200h")
    with pytest.raises(ValidationError, match="progressDeadline"):
        ModelDeploymentSpec.model_validate(
            {
                "owner": {"name": "team"},
                "template": {"spec": {"containers": [{"name": "s", "image": "i"}]}},
                "progressDeadline": "1000h",
            }
        )
    assert CanaryStep(weight=10, pause="168h").pause == "168h"


def test_format_round_trips() -> None:
    for text in ("30s", "5m", "1h30m", "168h"):
        assert format_duration(parse_duration(text)) == text


def test_cel_guard_never_refuses_a_duration_within_the_bound() -> None:
    """The CRD's rule refuses a part that alone is too long before Go parses it;
    that must only ever hit values parse_duration refuses too."""
    guard = re.compile(TOO_LONG_PART)
    rng = random.Random(6)
    texts = ["1000000ms", "604800000ms", "10080m", "604800s", "168h", "0000168h", "1m999999ms"]
    for _ in range(5000):
        parts = rng.randint(1, 3)
        texts.append(
            "".join(
                f"{rng.randint(0, 10 ** rng.randint(1, 11))}{rng.choice(['ms', 's', 'm', 'h'])}"
                for _ in range(parts)
            )
        )
    guarded = 0
    for text in texts:
        if guard.search(text):
            guarded += 1
            with pytest.raises(ValueError, match="at most"):
                parse_duration(text)
    assert guarded > 100  # the guard is exercised, not vacuous
    assert not guard.search("1000000ms") and guard.search("1000h") and guard.search("100000m")

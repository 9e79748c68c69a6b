"""The one duration format of the Slipway API, shared by the schema and the code.

A duration is a sequence of ``<number><unit>`` with units ``ms``, ``s``, ``m``,
``h`` (as in Go and Prometheus): ``30s``, ``5m``, ``1h30m``, ``250ms``. The same
regular expression goes into the CRD, so the API server refuses a bad value
before the operator ever sees it.

Every duration is also bounded by ``MAX_DURATION``: a wait longer than a week
inside a rollout is a typo, and an unbounded one (``99999999999999h``) cannot
even become a ``timedelta``. The bound is checked twice with the same meaning:
by a CEL rule in the CRD (Go's ``duration()``, whose syntax ours is a subset
of) and by ``parse_duration``, which counts in whole milliseconds (Python ints
never overflow) before it builds a ``timedelta``.
"""

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
MAX_DURATION = timedelta(days=7)
MAX_DURATION_TEXT = "168h"
_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}
_MAX_MS = int(MAX_DURATION.total_seconds()) * 1000
_TOO_LONG = f"must be at most {MAX_DURATION_TEXT} (7 days)"


def parse_duration(text: str) -> timedelta:
    """Turn ``1h30m`` into a timedelta; raise ValueError naming the bad text."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 30s, 5m, 1h30m, 250ms")
    total_ms = sum(int(n) * _UNIT_MS[unit] for n, unit in _PART.findall(text))
    if total_ms > _MAX_MS:
        raise ValueError(f"duration {text!r} is too long: {_TOO_LONG}")
    return timedelta(milliseconds=total_ms)


def _bounded(text: str) -> str:
    parse_duration(text)
    return text


# A part that alone exceeds the bound (leading zeros aside): 4+ digits of hours,
# 6+ of minutes, 7+ of seconds, 10+ of milliseconds. Refusing these first keeps
# Go's duration() from ever overflowing, so the API server says "at most 168h"
# instead of a conversion error; a value the pattern refuses gets that error only.
TOO_LONG_PART = r"[1-9][0-9]{3,}h|[1-9][0-9]{5,}m([0-9]|$)|[1-9][0-9]{6,}s|[1-9][0-9]{9,}ms"
DURATION_RULE = (
    f"!self.matches('{DURATION_PATTERN}') || (!self.matches('{TOO_LONG_PART}')"
    f" && duration(self) <= duration('{MAX_DURATION_TEXT}'))"
)

Duration = Annotated[
    str,
    StringConstraints(pattern=DURATION_PATTERN, max_length=32),
    AfterValidator(_bounded),
    Field(
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": DURATION_RULE, "message": _TOO_LONG}]
        }
    ),
]


def format_duration(delta: timedelta) -> str:
    """The shortest duration string for a whole number of seconds (``90s`` -> ``1m30s``)."""
    total = int(delta.total_seconds())
    if total <= 0:
        return "0s"
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (seconds, "s")) if v]
    return "".join(parts)

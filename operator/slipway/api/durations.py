"""The one duration format of the Slipway API, shared by the schema and the code.

A duration is a sequence of ``<number><unit>`` with units ``ms``, ``s``, ``m``,
``h`` (as in Go and Prometheus): ``30s``, ``5m``, ``1h30m``, ``250ms``. The same
regular expression goes into the CRD, so the API server refuses a bad value
before the operator ever sees it.
"""

import re
from datetime import timedelta
from typing import Annotated

from pydantic import StringConstraints

DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN, max_length=32)]


def parse_duration(text: str) -> timedelta:
    """Turn ``1h30m`` into a timedelta; raise ValueError naming the bad text."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 30s, 5m, 1h30m, 250ms")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest duration string for a whole number of seconds (``90s`` -> ``1m30s``)."""
    total = int(delta.total_seconds())
    if total <= 0:
        return "0s"
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (seconds, "s")) if v]
    return "".join(parts)

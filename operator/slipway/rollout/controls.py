"""Manual controls read from annotations, so kubectl, GitOps and the CLI act alike.

``slipway.dev/action: promote|abort`` and ``slipway.dev/paused: "true"`` on a
ModelRelease. Unknown values are reported, never guessed at.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from slipway.api import constants as c

ACTIONS = ("promote", "abort")


@dataclass(frozen=True)
class Controls:
    """What a person asked of one release."""

    promote: bool = False
    abort: bool = False
    paused: bool = False
    problem: str | None = None
    """An annotation value that was not understood."""


def read_controls(annotations: Mapping[str, str] | None) -> Controls:
    """The controls set on a release's annotations."""
    values = annotations or {}
    action = values.get(c.ANNOTATION_ACTION, "").strip().lower()
    paused = values.get(c.ANNOTATION_PAUSED, "").strip().lower()
    problems = []
    if action and action not in ACTIONS:
        problems.append(
            f"annotation {c.ANNOTATION_ACTION}={action!r} is not one of {', '.join(ACTIONS)}"
        )
    if paused and paused not in ("true", "false"):
        problems.append(f"annotation {c.ANNOTATION_PAUSED}={paused!r} is not 'true' or 'false'")
    return Controls(
        promote=action == "promote",
        abort=action == "abort",
        paused=paused == "true",
        problem="; ".join(problems) or None,
    )

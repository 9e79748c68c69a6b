"""Setting Kubernetes-style conditions without losing their transition times."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from slipway.api.models import Condition

Status = Literal["True", "False", "Unknown"]


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: Status,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Conditions with one set; lastTransitionTime moves only when the status changes."""
    previous = next((cond for cond in conditions if cond.type == type_), None)
    since = previous.last_transition_time if previous and previous.status == status else now
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    return [cond for cond in conditions if cond.type != type_] + [updated]


def find_condition(conditions: list[Condition], type_: str) -> Condition | None:
    """The condition of that type, if set."""
    return next((cond for cond in conditions if cond.type == type_), None)

"""What a traffic router can do, and the one call a strategy makes to move live traffic.

A strategy says *what share* the candidate should have; the router says how
(pod counts behind one Service, route weights, ...), what that takes, and
what share the candidate actually has now, read back from what is live.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from slipway.api.models import ModelDeployment
from slipway.rollout.core import Action, Situation


class Capability(StrEnum):
    """One thing a router can do with live traffic."""

    WEIGHTS = "weights"
    """Give the candidate a share of live requests (canary steps)."""
    MIRROR = "mirror"
    """Copy a share of live requests to the candidate, discarding its answers (shadow)."""
    SWITCH = "switch"
    """Move all live requests from one release to another in one change (blue-green)."""


@dataclass(frozen=True)
class Placement:
    """What giving the candidate a share takes, and where live traffic is now."""

    actions: list[Action] = field(default_factory=list)
    achieved: int = 0
    """The candidate's share of live requests now, in percent (read back from what is live)."""
    reached: bool = False
    """The share asked for is live (and the pods behind it are ready)."""


class Place(Protocol):
    """A router's ``place``: give the release ``weight`` percent of live requests."""

    def __call__(self, situation: Situation, model: ModelDeployment, weight: int) -> Placement: ...

"""What a traffic router can do, and the calls strategies make to move live traffic.

A strategy says *what* it wants (a share for the candidate, a copy of a share
of requests, every request to one release); the router says how (pod counts
behind one Service, route weights, a mirror filter), what that takes, and
what is live now, read back from the cluster. Each router is one module that
fills in a ``RouterOps``; ``traffic.ROUTERS`` registers it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from slipway.api.models import ModelDeployment
from slipway.kube.observe import LiveRoute
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
    """The candidate's share (or mirrored share) of live requests now, in percent, read
    back from what is live."""
    reached: bool = False
    """What was asked for is live (and the pods behind it are ready)."""
    note: str = ""
    """Why it is not live yet when the data plane says so (a route not accepted, ...)."""
    route: str | None = None
    """The live route in words, for status (routers that own a route object)."""


class Place(Protocol):
    """Give the release ``weight`` percent of live requests (100: all, when promoting)."""

    def __call__(self, situation: Situation, model: ModelDeployment, weight: int) -> Placement: ...


class Mirror(Protocol):
    """Copy ``percent`` of live requests to the release; users see only the stable's answers."""

    def __call__(self, situation: Situation, model: ModelDeployment, percent: int) -> Placement: ...


class Serve(Protocol):
    """Every live request to ``release`` in one change, starting no pod: the actions, and
    whether the data plane has taken it (``reached``; ``note`` says why not yet). Until it
    has, the route it replaces may still be live: nothing it sends requests to may shrink,
    and status may not claim the change."""

    def __call__(self, situation: Situation, model: ModelDeployment, release: str) -> Placement: ...


class AtRest(Protocol):
    """What keeps the stable serving everything while no release is in flight."""

    def __call__(
        self, model: ModelDeployment, route: LiveRoute | None, services: Mapping[str, str]
    ) -> list[Action]: ...


class Routed(Protocol):
    """Which of ``releases`` the live route may still send requests (or copies) to."""

    def __call__(
        self, model: ModelDeployment, route: LiveRoute | None, releases: Iterable[str]
    ) -> frozenset[str]: ...


class Describe(Protocol):
    def __call__(self, situation: Situation, model: ModelDeployment) -> str | None: ...


@dataclass(frozen=True)
class RouterOps:
    """One router: what it can do, and how."""

    capabilities: frozenset[Capability]
    place: Place
    switch: Serve
    """Blue-green's switch (and the pin to the stable before it); ``reached`` once the data
    plane took it (the Service read back, every Gateway accepted the route's generation)."""
    restore: Serve
    """After a promotion or a rollback (and ``slipway rollback --to``): ``release`` gets
    everything, no mirror; what it replaces shrinks only once this is ``reached``."""
    at_rest: AtRest
    describe: Describe
    """The live route in words for status (None for routers without a route object)."""
    routed: Routed
    """A release still routed keeps its pods until the route no longer names it."""
    mirror: Mirror | None = None
    route_kind: str | None = None
    """The route object's kind (HTTPRoute, VirtualService) for routers that own one."""

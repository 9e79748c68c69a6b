"""Traffic routers, one module each, and what each strategy needs of them.

A strategy that a router cannot carry out is refused before the release
starts, with the reason, instead of waiting for something that never comes
(shadow needs mirroring, which the ``replicas`` router cannot do). Adding a
router is its module, one entry in ``ROUTERS`` and the schema enum.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from slipway.api.phases import Router, Strategy
from slipway.traffic import replicas
from slipway.traffic.base import Capability, Place, Placement

__all__ = ["NEEDS", "PLACERS", "ROUTERS", "Capability", "Place", "Placement", "refusal"]

ROUTERS: Final[Mapping[Router, frozenset[Capability]]] = {
    Router.REPLICAS: replicas.CAPABILITIES,
}
"""The routers this version carries, with what each can do."""

PLACERS: Final[Mapping[Router, Place]] = {
    Router.REPLICAS: replicas.place,
}
"""How each router gives a candidate its share of live requests."""

NEEDS: Final[Mapping[Strategy, frozenset[Capability]]] = {
    Strategy.DIRECT: frozenset(),
    Strategy.CANARY: frozenset({Capability.WEIGHTS}),
    Strategy.BLUE_GREEN: frozenset({Capability.SWITCH}),
    Strategy.SHADOW: frozenset({Capability.MIRROR}),
}
"""What each strategy needs of the router."""


def refusal(strategy: Strategy, router: Router) -> str | None:
    """Why ``router`` cannot carry out ``strategy``, or None if it can."""
    if router not in ROUTERS:
        known = ", ".join(r.value for r in ROUTERS)
        return (
            f"router {router.value!r} is not available in this version of Slipway"
            f" (available: {known})"
        )
    missing = NEEDS[strategy] - ROUTERS[router]
    if missing:
        needs = ", ".join(sorted(c.value for c in missing))
        return f"strategy {strategy.value!r} needs {needs}, which router {router.value!r} cannot do"
    return None

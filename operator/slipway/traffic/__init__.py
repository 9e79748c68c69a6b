"""Traffic routers, one module each, and what each strategy needs of them.

A strategy that a router cannot carry out is refused before the release
starts, with the reason, instead of waiting for something that never comes
(shadow needs mirroring, which the ``replicas`` router cannot do). Adding a
router is its module, one entry in ``ROUTERS`` and the schema enum (a router
that owns a route object also names it in ``ROUTE_KINDS`` so the operator
watches it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from slipway.api.phases import Router, Strategy
from slipway.traffic import gatewayapi, istio, replicas
from slipway.traffic.base import Capability, Placement, RouterOps

__all__ = ["NEEDS", "ROUTERS", "ROUTE_KINDS", "Capability", "Placement", "RouterOps", "refusal"]

ROUTERS: Final[Mapping[Router, RouterOps]] = {
    Router.REPLICAS: replicas.OPS,
    Router.GATEWAY_API: gatewayapi.OPS,
    Router.ISTIO: istio.OPS,
}
"""The routers this version carries: what each can do, and how."""

ROUTE_KINDS = {
    gatewayapi.KIND: (gatewayapi.GROUP, gatewayapi.VERSION, gatewayapi.PLURAL, gatewayapi.observe),
    istio.KIND: (istio.GROUP, istio.VERSION, istio.PLURAL, istio.observe),
}
"""The route objects routers own: (group, version, plural, read-back) by kind."""

NEEDS: Final[Mapping[Strategy, frozenset[Capability]]] = {
    Strategy.DIRECT: frozenset(),
    Strategy.CANARY: frozenset({Capability.WEIGHTS}),
    Strategy.BLUE_GREEN: frozenset({Capability.SWITCH}),
    Strategy.SHADOW: frozenset({Capability.MIRROR}),
}
"""What each strategy needs of the router."""


def refusal(strategy: Strategy, router: Router, shadow: bool = False) -> str | None:
    """Why ``router`` cannot carry out ``strategy`` (after a shadow phase when ``shadow``),
    or None if it can."""
    if router not in ROUTERS:
        known = ", ".join(r.value for r in ROUTERS)
        return (
            f"router {router.value!r} is not available in this version of Slipway"
            f" (available: {known})"
        )
    missing = NEEDS[strategy] - ROUTERS[router].capabilities
    if missing:
        needs = ", ".join(sorted(c.value for c in missing))
        return f"strategy {strategy.value!r} needs {needs}, which router {router.value!r} cannot do"
    if shadow and Capability.MIRROR not in ROUTERS[router].capabilities:
        return (
            f"a shadow phase needs mirror, which router {router.value!r} cannot do (use router"
            " gatewayAPI or istio, or a tier without requireShadow and no spec.shadow)"
        )
    return None

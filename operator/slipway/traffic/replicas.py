"""The ``replicas`` router: no mesh, traffic follows the ready pods behind one Service.

The ModelDeployment's Service selects every serving pod of the model, so a
candidate's share is its share of the ready pods: for weight w of N replicas
it gets round(N*w/100) and the stable the rest (at least one until
promotion, so a rollback never starts the stable cold). It works on any
cluster; it cannot mirror requests. Blue-green pins the same Service to one
release (``status.serving``): the switch is one change of its selector.
"""

from __future__ import annotations

from typing import Any, Final

from slipway.api.models import ModelDeployment
from slipway.kube.children import build_service
from slipway.kube.observe import DeploymentState
from slipway.traffic.base import Capability

NAME: Final = "replicas"
CAPABILITIES: Final = frozenset({Capability.WEIGHTS, Capability.SWITCH})


def objects(model: ModelDeployment) -> list[dict[str, Any]]:
    """What the router keeps for a model whatever the rollout: its Service."""
    return [build_service(model)]


def split_replicas(total: int, weight: int) -> tuple[int, int]:
    """(candidate, stable) pod counts that come closest to ``weight`` percent.

    The stable keeps at least one pod in every step, so a rollback never starts it cold.
    """
    candidate = min(total, max(1, round(total * weight / 100)))
    return candidate, max(total - candidate, 1)


def achieved_weight(own: DeploymentState | None, stable: DeploymentState | None) -> int:
    """The candidate's share of ready pods behind the shared Service, in percent."""
    mine = own.ready_replicas if own else 0
    theirs = stable.ready_replicas if stable else 0
    total = mine + theirs
    return round(100 * mine / total) if total else 0

"""What the operator reads back from the cluster, reduced to what decisions need.

Kopf indexes keep these small records in memory (fed by watches), so a tick of
the reconcile loop reads no API at all and a steady state costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slipway.api import constants as c


@dataclass(frozen=True)
class DeploymentState:
    """The observed state of one release's Deployment."""

    name: str
    namespace: str
    model: str
    release: str
    replicas: int
    ready_replicas: int
    available_replicas: int
    updated_replicas: int
    generation: int
    observed_generation: int
    uid: str | None = None
    owner_uid: str | None = None
    """The uid of the ModelDeployment that controls it (its ownerReference)."""

    @property
    def rolled_out(self) -> bool:
        """The controller has seen the latest spec and all pods run it."""
        return (
            self.observed_generation >= self.generation and self.updated_replicas >= self.replicas
        )

    @property
    def available(self) -> bool:
        """Every desired pod is available on the latest spec (and there is at least one)."""
        return self.rolled_out and self.replicas > 0 and self.available_replicas >= self.replicas


def deployment_state(body: Mapping[str, Any]) -> DeploymentState | None:
    """Reduce a Deployment to its state; None when it is not a Slipway child."""
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    model, release = labels.get(c.LABEL_MODEL), labels.get(c.LABEL_RELEASE)
    if not model or not release:
        return None
    spec, status = body.get("spec") or {}, body.get("status") or {}
    return DeploymentState(
        name=meta["name"],
        namespace=meta.get("namespace", ""),
        model=model,
        release=release,
        replicas=int(spec.get("replicas", 1)),
        ready_replicas=int(status.get("readyReplicas", 0) or 0),
        available_replicas=int(status.get("availableReplicas", 0) or 0),
        updated_replicas=int(status.get("updatedReplicas", 0) or 0),
        generation=int(meta.get("generation", 0) or 0),
        observed_generation=int(status.get("observedGeneration", 0) or 0),
        uid=meta.get("uid"),
        owner_uid=controller_uid(meta),
    )


def controller_uid(meta: Mapping[str, Any]) -> str | None:
    """The uid of the object's controlling owner, if it has one."""
    for owner in meta.get("ownerReferences") or []:
        if owner.get("controller"):
            return str(owner.get("uid"))
    return None


@dataclass(frozen=True)
class ReleaseSummary:
    """A sibling release as the decision core needs to see it."""

    name: str
    phase: str
    created: datetime
    deleting: bool = False
    completed: datetime | None = None
    reason: str | None = None
    """The reason of its Ready condition (why it waits, when Pending)."""


def release_summary(body: Mapping[str, Any]) -> ReleaseSummary:
    """Reduce a ModelRelease body to a sibling summary."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    created = meta.get("creationTimestamp") or "1970-01-01T00:00:00Z"
    completed = status.get("completedAt")
    return ReleaseSummary(
        name=meta["name"],
        phase=str(status.get("phase") or "Pending"),
        created=_timestamp(created),
        deleting=bool(meta.get("deletionTimestamp")),
        completed=_timestamp(completed) if completed else None,
        reason=next(
            (
                str(c.get("reason"))
                for c in status.get("conditions") or []
                if c.get("type") == "Ready"
            ),
            None,
        ),
    )


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


@dataclass(frozen=True)
class LiveRoute:
    """A route object Slipway owns (HTTPRoute, VirtualService), as it is live.

    Backends are named by Service; the router maps them back to releases.
    ``accepted`` is what the data plane says of its current ``generation``: None
    when nothing reports (Istio writes no status by default) or not yet, False
    with ``why`` when refused.
    """

    kind: str
    name: str
    backends: tuple[tuple[str, int], ...]
    """(Service name, weight) in route order."""
    mirror: tuple[str, int] | None
    """(Service name, percent) of the request mirror, if any."""
    fingerprint: str | None
    """The fingerprint annotation Slipway wrote with the spec it applied."""
    owner_uid: str | None
    accepted: bool | None = None
    why: str = ""
    """Why it is refused, or which parent has not answered its generation yet."""
    generation: int | None = None
    """The spec's generation (``metadata.generation``) the data plane answers for."""

    @property
    def named(self) -> str:
        """The route and its generation in words, e.g. "HTTPRoute 'fraud' generation 5"."""
        suffix = f" generation {self.generation}" if self.generation is not None else ""
        return f"{self.kind} {self.name!r}{suffix}"

    def share(self, service: str) -> int:
        """``service``'s share of live requests in percent (weights are proportional)."""
        total = sum(w for _, w in self.backends)
        mine = sum(w for name, w in self.backends if name == service)
        return round(100 * mine / total) if total else 0

    def mirrored(self, service: str) -> int:
        """Percent of live requests copied to ``service``."""
        return self.mirror[1] if self.mirror and self.mirror[0] == service else 0

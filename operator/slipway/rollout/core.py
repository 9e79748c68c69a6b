"""Types shared by the decision core: the situation it judges and what it decides.

Actions are plain data; ``handlers`` carries them out in order. Keeping them
declarative is what makes every rollout decision testable without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from slipway.api.models import (
    ModelDeployment,
    ModelRelease,
    ModelReleaseStatus,
    ReleaseRecord,
    RolloutPolicy,
    SLOResult,
)
from slipway.kube.observe import DeploymentState, LiveRoute, ReleaseSummary

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Situation:
    """Everything one decision about one release may look at."""

    release: ModelRelease
    model: ModelDeployment | None
    siblings: tuple[ReleaseSummary, ...]
    deployments: Mapping[str, DeploymentState]
    """This model's Deployments, keyed by release name."""
    now: datetime
    model_error: str | None = None
    """Why the ModelDeployment could not be parsed, when it exists but is invalid."""
    policy: RolloutPolicy | None = None
    """The RolloutPolicy of the model's tier, if one exists."""
    analysis: list[SLOResult] | None = None
    """This tick's SLO results, when the handler ran an analysis (see ``analysis_due``)."""
    route: LiveRoute | None = None
    """The model's route object as it is live (routers gatewayAPI and istio)."""
    services: Mapping[str, str] = field(default_factory=dict)
    """The model's Services that it controls: name -> fingerprint of what Slipway sets."""

    @property
    def release_created(self) -> datetime:
        """When the release was created (the epoch if unknown)."""
        return self.release.metadata.creation_timestamp or EPOCH


def stable_deployment(situation: Situation, model: ModelDeployment) -> DeploymentState | None:
    """The stable release's Deployment, if it exists."""
    stable = model.status.stable_release
    return situation.deployments.get(stable) if stable else None


@dataclass(frozen=True)
class ApplyObject:
    """Server-side apply this object (under Slipway's field manager)."""

    body: dict[str, Any]


@dataclass(frozen=True)
class DeleteDeployment:
    """Delete one Deployment (a release that no longer serves)."""

    name: str
    reason: str


@dataclass(frozen=True)
class ScaleDeployment:
    """Set a Deployment's replicas through its scale subresource (its pods are not restarted)."""

    name: str
    replicas: int


@dataclass(frozen=True)
class RecordStable:
    """Make a release the ModelDeployment's stable and prepend it to the history."""

    record: ReleaseRecord
    history_limit: int
    handled_rollback: str | None = None
    """The rollback request this carries out, if any."""


@dataclass(frozen=True)
class SetActive:
    """Claim (a name) or release (None) the ModelDeployment's one rollout slot."""

    release: str | None


@dataclass(frozen=True)
class SetServing:
    """Pin the model's Service to one release (blue-green), or unpin it (None)."""

    release: str | None


Action = ApplyObject | ScaleDeployment | DeleteDeployment | RecordStable | SetActive | SetServing
MODEL_WRITES = (SetActive, RecordStable, SetServing)
"""Actions that are writes to the ModelDeployment's status."""


@dataclass(frozen=True)
class Decision:
    """The new status of the release and the actions that get it there."""

    status: ModelReleaseStatus
    actions: list[Action] = field(default_factory=list)
    look_again_at: datetime | None = None
    """When the release must be looked at again even if nothing in the cluster changes
    (a pause ending, an analysis due, a deadline); None: only when something changes."""


def merge(first: list[Action], second: list[Action]) -> list[Action]:
    """Both action lists without repeats, a later scale of the same Deployment or apply of
    the same object (kind and name: a release's Deployment and Service share a name)
    replacing the earlier."""
    merged: list[Action] = []
    for action in [*first, *second]:
        if action in merged:
            continue
        if isinstance(action, ScaleDeployment):
            merged = [
                a for a in merged if not (isinstance(a, ScaleDeployment) and a.name == action.name)
            ]
        if isinstance(action, ApplyObject):
            key = _object_key(action)
            merged = [
                a for a in merged if not (isinstance(a, ApplyObject) and _object_key(a) == key)
            ]
        merged.append(action)
    return merged


def _object_key(action: ApplyObject) -> tuple[str, str]:
    return action.body["kind"], action.body["metadata"]["name"]

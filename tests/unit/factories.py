"""Small builders of API objects for the unit tests of the pure core."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from slipway.api.models import ModelDeployment, ModelRelease
from slipway.kube.observe import DeploymentState, ReleaseSummary

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def model(
    name: str = "fraud",
    stable: str | None = None,
    active: str | None = None,
    replicas: int = 2,
    **spec: Any,
) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "metadata": {"name": name, "namespace": "ns", "uid": "uid-1", "generation": 1},
            "spec": {
                "owner": {"name": "risk-team"},
                "replicas": replicas,
                "template": {"spec": {"containers": [{"name": "server", "image": "srv:1"}]}},
                **spec,
            },
            "status": {"stableRelease": stable, "activeRelease": active},
        }
    )


def release(
    name: str = "fraud-v2",
    deployment: str = "fraud",
    created: datetime = T0,
    status: dict[str, Any] | None = None,
    **spec: Any,
) -> ModelRelease:
    return ModelRelease.model_validate(
        {
            "metadata": {
                "name": name,
                "namespace": "ns",
                "generation": 1,
                "creationTimestamp": created.isoformat(),
            },
            "spec": {
                "deployment": deployment,
                "model": {"uri": f"s3://models/{name}", "version": name.rsplit("-", 1)[-1]},
                **spec,
            },
            "status": status or {},
        }
    )


def deployment(
    release: str, ready: int = 0, replicas: int = 2, model: str = "fraud"
) -> DeploymentState:
    return DeploymentState(
        name=f"{model}-{release}",
        namespace="ns",
        model=model,
        release=release,
        replicas=replicas,
        ready_replicas=ready,
        available_replicas=ready,
        updated_replicas=replicas,
        generation=1,
        observed_generation=1,
    )


def sibling(name: str, phase: str = "Pending", minutes: int = 0) -> ReleaseSummary:
    return ReleaseSummary(name=name, phase=phase, created=T0 + timedelta(minutes=minutes))

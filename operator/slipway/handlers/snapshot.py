"""What the indexes hold per object, and the snapshot one reconcile pass works from.

A pass never reads the API: everything it may decide on is copied here from
kopf's indexes first. Bodies are kept as plain dicts so a pass can write
status with the resourceVersion it decided on, and name the object in Events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slipway.api import constants as c
from slipway.api.models import ModelDeployment, RolloutPolicy
from slipway.kube.observe import DeploymentState, LiveRoute, ReleaseSummary, controller_uid

ModelKey = tuple[str, str]
"""(namespace, ModelDeployment name): the unit of work of the reconcile queue."""


@dataclass(frozen=True)
class ModelEntry:
    """A ModelDeployment as the index holds it: parsed, or why it could not be."""

    model: ModelDeployment | None
    error: str | None
    body: Mapping[str, Any]

    @property
    def uid(self) -> str | None:
        return (self.body.get("metadata") or {}).get("uid")

    @property
    def deleting(self) -> bool:
        """Deletion has begun (e.g. foreground, waiting for its children): hands off."""
        return bool((self.body.get("metadata") or {}).get("deletionTimestamp"))

    @property
    def resource_version(self) -> str | None:
        return (self.body.get("metadata") or {}).get("resourceVersion")


@dataclass(frozen=True)
class ReleaseEntry:
    """A ModelRelease: its summary for siblings, and its body for its own pass."""

    summary: ReleaseSummary
    body: Mapping[str, Any]


@dataclass(frozen=True)
class ServiceState:
    """A Slipway Service: a fingerprint of what Slipway sets, and its controlling owner."""

    fingerprint: str
    owner_uid: str | None
    name: str = ""
    uid: str | None = None
    release: str | None = None
    """The one release it selects (a release's own Service, the preview, a pinned one)."""


def service_state(body: Mapping[str, Any], fingerprint: str) -> ServiceState:
    meta = body.get("metadata") or {}
    selector = (body.get("spec") or {}).get("selector") or {}
    return ServiceState(
        fingerprint,
        controller_uid(meta),
        str(meta.get("name", "")),
        meta.get("uid"),
        selector.get(c.LABEL_RELEASE),
    )


@dataclass(frozen=True)
class ModelSnapshot:
    """Everything one pass over one ModelDeployment may look at."""

    namespace: str
    name: str
    model: ModelEntry | None
    releases: tuple[ReleaseEntry, ...]
    deployments: tuple[DeploymentState, ...]
    services: tuple[ServiceState, ...]
    """Every Slipway Service of the model: its own and its releases' (route backends)."""
    policy: RolloutPolicy | None
    routes: tuple[LiveRoute, ...] = ()
    """The model's route objects (HTTPRoute, VirtualService) as they are live."""

    @property
    def service(self) -> ServiceState | None:
        """The model's own Service (named after it)."""
        return next((s for s in self.services if s.name == self.name), None)

    def owned_services(self, uid: str | None) -> dict[str, str]:
        """The model's Services controlled by ``uid``: name -> fingerprint."""
        return {s.name: s.fingerprint for s in self.services if uid is None or s.owner_uid == uid}

    def route(self, kind: str | None) -> LiveRoute | None:
        """The model's route object of ``kind`` (its router's), if it exists."""
        return next((r for r in self.routes if r.kind == kind), None) if kind else None

    def owned_deployments(self, uid: str | None) -> dict[str, DeploymentState]:
        """This model's Deployments keyed by release; only those controlled by ``uid``, so a
        re-created ModelDeployment never acts on its predecessor's children."""
        return {d.release: d for d in self.deployments if uid is None or d.owner_uid == uid}

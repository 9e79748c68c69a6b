"""Desired child objects of a ModelDeployment, built as plain dicts.

Pure functions: the same inputs give the same objects, so they are unit
tested without a cluster and applied with server-side apply by ``kube.client``.
Every child is owned by the ModelDeployment (deleting a release never takes
serving down) and carries no GitOps tracking keys of its parents. Pod-template
labels name the model and release but never a role: promotion changes no pod.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from slipway.api import constants as c
from slipway.api.models import ModelDeployment, ModelRelease

MAX_NAME = 52  # leaves room for ReplicaSet and pod suffixes within 63 characters


def deployment_name(model: str, release: str) -> str:
    """Name of a release's Deployment: ``<model>-<release>``, hashed when too long."""
    name = f"{model}-{release}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9].rstrip('-')}-{digest}"


def owner_reference(md: ModelDeployment) -> dict[str, Any]:
    """The controller reference every child carries."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_DEPLOYMENT,
        "name": md.metadata.name,
        "uid": md.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def model_selector(md: ModelDeployment) -> dict[str, str]:
    """Labels selecting every serving pod of the model, whatever its release."""
    return {c.LABEL_MODEL: md.metadata.name}


def _without_tracking(values: dict[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (values or {}).items() if k not in c.GITOPS_TRACKING_KEYS}


def build_service(md: ModelDeployment) -> dict[str, Any]:
    """The stable Service clients call; it selects all ready pods of the model."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": md.metadata.name,
            "namespace": md.metadata.namespace,
            "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE, **model_selector(md)},
            "ownerReferences": [owner_reference(md)],
        },
        "spec": {
            "selector": model_selector(md),
            "ports": [
                {
                    "name": "http",
                    "port": md.spec.port,
                    "targetPort": md.spec.port,
                    "protocol": "TCP",
                }
            ],
        },
    }


def release_labels(md: ModelDeployment, release: ModelRelease) -> dict[str, str]:
    """Identity labels of a release's Deployment and pods (no role)."""
    return {
        **model_selector(md),
        c.LABEL_RELEASE: release.metadata.name,
        c.LABEL_VERSION: _label_value(release.spec.model.version),
    }


def _label_value(text: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text)[:63]
    return cleaned.strip("-_.") or "unknown"


def build_deployment(md: ModelDeployment, release: ModelRelease, replicas: int) -> dict[str, Any]:
    """The Deployment serving one release, from the ModelDeployment's pod template."""
    template = md.spec.template.model_dump(by_alias=True, exclude_none=True, mode="json")
    template = copy.deepcopy(template)
    meta = template.setdefault("metadata", {})
    labels = release_labels(md, release)
    meta["labels"] = {**_without_tracking(meta.get("labels")), **labels}
    annotations = _without_tracking(meta.get("annotations"))
    annotations[c.ANNOTATION_MODEL_URI] = release.spec.model.uri
    if release.spec.model.digest:
        annotations[c.ANNOTATION_MODEL_DIGEST] = release.spec.model.digest
    meta["annotations"] = annotations
    containers: list[dict[str, Any]] = template["spec"]["containers"]
    target = _model_container(md, containers)
    if release.spec.image:
        target["image"] = release.spec.image
    target["env"] = _with_model_env(target.get("env", []), release)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(md.metadata.name, release.metadata.name),
            "namespace": md.metadata.namespace,
            "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE, **labels},
            "ownerReferences": [owner_reference(md)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {
                "matchLabels": {**model_selector(md), c.LABEL_RELEASE: release.metadata.name}
            },
            "template": template,
        },
    }


def _model_container(md: ModelDeployment, containers: list[dict[str, Any]]) -> dict[str, Any]:
    if md.spec.container is None:
        return containers[0]
    for container in containers:
        if container.get("name") == md.spec.container:
            return container
    names = ", ".join(str(ct.get("name")) for ct in containers)
    raise ValueError(
        f"spec.container {md.spec.container!r} is not in spec.template.spec.containers ({names})"
    )


def _with_model_env(env: list[dict[str, Any]], release: ModelRelease) -> list[dict[str, Any]]:
    injected = {
        c.ENV_MODEL_URI: release.spec.model.uri,
        c.ENV_MODEL_VERSION: release.spec.model.version,
        c.ENV_RELEASE: release.metadata.name,
    }
    if release.spec.model.digest:
        injected[c.ENV_MODEL_DIGEST] = release.spec.model.digest
    kept = [item for item in env if item.get("name") not in injected]
    return kept + [{"name": name, "value": value} for name, value in injected.items()]

"""Desired child objects of a ModelDeployment, built as plain dicts.

Pure functions: the same inputs give the same objects, so they are unit
tested without a cluster and applied with server-side apply by ``kube.client``.
Every child is owned by the ModelDeployment (deleting a release never takes
serving down) and carries no GitOps tracking keys of its parents. Pod-template
labels name the model and release but never a role: promotion changes no pod.

Names and label values are valid by construction: the CRDs (and the models)
only admit parent names that are valid label values and Service names, a
Deployment name is hashed when too long, and free text such as the model
version is cleaned into a label value. ``child_problems`` says in words what
would still make the API server refuse a child, so it can be reported in
status instead of failing an apply in the log.
"""

from __future__ import annotations

import copy
import hashlib
import re
from typing import Any

from slipway.api import constants as c
from slipway.api.models import (
    ModelDeployment,
    ModelRelease,
    model_name_problem,
    release_name_problem,
)

MAX_NAME = 52  # leaves room for ReplicaSet and pod suffixes within 63 characters
MAX_LABEL_VALUE = 63
# The API server's own rules (k8s.io/apimachinery/pkg/util/validation).
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


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


def build_service(md: ModelDeployment, serving: str | None = None) -> dict[str, Any]:
    """The Service clients call: every ready pod of the model, or only ``serving``'s
    (blue-green pins it to one release; the switch is a change of this selector)."""
    return _service(md, md.metadata.name, serving)


def preview_service_name(model: str) -> str:
    """``<model>-preview``, hashed when too long for a Service name."""
    name = f"{model}-preview"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{model[:45].rstrip('-')}-preview-{digest}"


def build_preview_service(md: ModelDeployment, release: str) -> dict[str, Any]:
    """The blue-green preview: reaches only the candidate, whatever live traffic does."""
    return _service(md, preview_service_name(md.metadata.name), release)


def build_release_service(md: ModelDeployment, release: str) -> dict[str, Any]:
    """One release's own Service (``<model>-<release>``): a backend of the model's route
    for the routers that weigh Services (gatewayAPI, istio)."""
    return _service(md, deployment_name(md.metadata.name, release), release)


def _service(md: ModelDeployment, name: str, release: str | None) -> dict[str, Any]:
    selector = model_selector(md)
    if release is not None:
        selector = {**selector, c.LABEL_RELEASE: release}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": md.metadata.namespace,
            "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE, **model_selector(md)},
            "ownerReferences": [owner_reference(md)],
        },
        "spec": {
            "selector": selector,
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
    """Free text as a label value: other characters become '-', at most 63 of them."""
    cleaned = "".join(ch if _is_label_char(ch) else "-" for ch in text)[:MAX_LABEL_VALUE]
    return cleaned.strip("-_.") or "unknown"


def _is_label_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch in "-_.")


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


# ---------------------------------------------------------------- problems


def is_label_value(text: str) -> bool:
    """Whether the API server accepts ``text`` as a label value."""
    return len(text) <= MAX_LABEL_VALUE and _LABEL_VALUE.fullmatch(text) is not None


def is_qualified_name(key: str) -> bool:
    """Whether the API server accepts ``key`` as a label or annotation key."""
    prefix, slash, name = key.rpartition("/")
    if slash and not (
        0 < len(prefix) <= 253 and all(_DNS_LABEL.fullmatch(p) for p in prefix.split("."))
    ):
        return False
    return 0 < len(name) <= 63 and _QUALIFIED_NAME.fullmatch(name) is not None


def child_problems(md: ModelDeployment, release: ModelRelease | None = None) -> list[str]:
    """What would make the API server refuse a child of ``md`` (and of ``release``),
    one sentence each naming the field to fix; empty when every child is valid."""
    problems = [p for p in (model_name_problem(md.metadata.name),) if p]
    template = md.spec.template.model_dump(by_alias=True, exclude_none=True, mode="json")
    try:
        _model_container(md, template["spec"]["containers"])
    except ValueError as error:
        problems.append(str(error))
    children = [("Service", build_service(md))]
    if release is not None:
        problems += [p for p in (release_name_problem(release.metadata.name),) if p]
        try:
            children.append(("Deployment", build_deployment(md, release, md.spec.replicas)))
        except ValueError as error:
            problems.append(str(error))
    for kind, child in children:
        problems += _object_problems(kind, child)
    return list(dict.fromkeys(problems))  # one sentence per problem, in order


def _object_problems(kind: str, body: dict[str, Any]) -> list[str]:
    name = body["metadata"]["name"]
    fits = _DNS_1035_LABEL if kind == "Service" else _DNS_LABEL
    problems = []
    if len(name) > 63 or not fits.fullmatch(name):
        problems.append(f"{kind} name {name!r} is not a valid {kind} name")
    places = [(f"{kind} metadata", body["metadata"])]
    template = body.get("spec", {}).get("template")
    if template is not None:  # from the ModelDeployment's own spec.template
        places.append(("spec.template.metadata", template.get("metadata") or {}))
    for where, meta in places:
        for key, value in (meta.get("labels") or {}).items():
            if not is_qualified_name(key):
                problems.append(f"{where}.labels: {key!r} is not a valid label key")
            if not isinstance(value, str) or not is_label_value(value):
                problems.append(
                    f"{where}.labels: {key}={value!r} is not a valid label value (at most"
                    " 63 letters, digits, '-', '_' or '.', starting and ending with a letter"
                    " or digit)"
                )
        for key in meta.get("annotations") or {}:
            if not is_qualified_name(key):
                problems.append(f"{where}.annotations: {key!r} is not a valid annotation key")
    return problems

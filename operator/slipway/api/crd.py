"""Generate the CustomResourceDefinitions from the pydantic models.

Pydantic emits JSON Schema with ``$ref``, ``anyOf: [X, null]`` and titles; the
API server wants a structural schema. This module inlines references, turns
optionals into plain (not required) fields, drops what Kubernetes forbids and
maps "keep unknown fields" to ``x-kubernetes-preserve-unknown-fields``. The
printer columns, short names and category are declared beside each kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from slipway.api import constants as c
from slipway.api.models import (
    MAX_NAME_LENGTH,
    MODEL_NAME_RULE,
    RELEASE_NAME_RULE,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ModelReleaseSpec,
    ModelReleaseStatus,
    RolloutPolicySpec,
)

JsonSchema = dict[str, Any]
_DROPPED_KEYS = {"title", "default", "examples"}


@dataclass(frozen=True)
class Column:
    """A printer column for ``kubectl get``."""

    name: str
    json_path: str
    type: str = "string"
    priority: int = 0

    def to_crd(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.priority:
            column["priority"] = self.priority
        return column


@dataclass(frozen=True)
class Kind:
    """Everything the CRD of one kind is generated from."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    namespaced: bool
    spec: type[BaseModel]
    status: type[BaseModel] | None
    columns: tuple[Column, ...]
    name_rule: tuple[str, str] | None = None  # (pattern, why) the object's name must meet


AGE = Column("Age", ".metadata.creationTimestamp", "date")

KINDS: tuple[Kind, ...] = (
    Kind(
        c.KIND_POLICY,
        c.PLURAL_POLICY,
        ("rp", "rpolicy"),
        namespaced=False,
        spec=RolloutPolicySpec,
        status=None,
        columns=(
            Column("Strategies", ".spec.allowedStrategies"),
            Column("Shadow", ".spec.requireShadow", "boolean"),
            Column("Approval", ".spec.approval.required", "boolean"),
            AGE,
        ),
    ),
    Kind(
        c.KIND_DEPLOYMENT,
        c.PLURAL_DEPLOYMENT,
        ("md", "mdep"),
        namespaced=True,
        spec=ModelDeploymentSpec,
        status=ModelDeploymentStatus,
        columns=(
            Column("Tier", ".spec.tier"),
            Column("Stable", ".status.stableRelease"),
            Column("Ready", ".status.ready"),
            Column("Serving", '.status.conditions[?(@.type=="StableServing")].status'),
            Column("Active", ".status.activeRelease", priority=1),
            Column("Owner", ".spec.owner.name", priority=1),
            AGE,
            Column("Message", ".status.message"),
        ),
        name_rule=MODEL_NAME_RULE,
    ),
    Kind(
        c.KIND_RELEASE,
        c.PLURAL_RELEASE,
        ("mr", "mrel"),
        namespaced=True,
        spec=ModelReleaseSpec,
        status=ModelReleaseStatus,
        columns=(
            Column("Deployment", ".spec.deployment"),
            Column("Version", ".spec.model.version"),
            Column("Phase", ".status.phase"),
            Column("Weight", ".status.weight", "integer"),
            Column("Step", ".status.stepLabel"),
            Column("Verdict", ".status.verdict"),
            Column("Message", ".status.message"),
            AGE,
        ),
        name_rule=RELEASE_NAME_RULE,
    ),
)


def structural_schema(model: type[BaseModel]) -> JsonSchema:
    """The Kubernetes structural schema of one pydantic model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs: dict[str, JsonSchema] = raw.pop("$defs", {})
    return _clean(raw, defs)


def _clean(node: JsonSchema, defs: dict[str, JsonSchema]) -> JsonSchema:
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is not None:
        target = _clean(defs[ref.rsplit("/", 1)[-1]], defs)
        node = {**target, **{k: v for k, v in node.items() if k not in _DROPPED_KEYS}}
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        options = [option for option in any_of if option.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express union {any_of!r} in a structural schema")
        node = {**_clean(options[0], defs), **node}
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), (int, float)) and not isinstance(node[bound], bool):
            # JSON Schema 2020 gives the bound; OpenAPI v3.0 wants a flag beside it.
            node[inclusive] = node.pop(bound)
            node[bound] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
        node.setdefault("type", "string")
    out: JsonSchema = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            out[key] = {name: _clean(prop, defs) for name, prop in value.items()}
        elif key == "items":
            out[key] = _clean(value, defs)
        elif key == "additionalProperties":
            if value is False:
                continue  # structural schemas refuse unknown fields by pruning
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            else:
                out[key] = _clean(value, defs)
        else:
            out[key] = value
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("type", "object")
    return out


def metadata_schema(kind: Kind) -> JsonSchema:
    """The root ``metadata`` schema: the API server allows rules on the name only."""
    if kind.name_rule is None:
        return {"type": "object"}
    pattern, _ = kind.name_rule
    name = {"type": "string", "maxLength": MAX_NAME_LENGTH, "pattern": pattern}
    return {"type": "object", "properties": {"name": name}}


def crd_for(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": metadata_schema(kind),
        "spec": structural_schema(kind.spec),
    }
    version: dict[str, Any] = {
        "name": c.VERSION,
        "served": True,
        "storage": True,
        "additionalPrinterColumns": [column.to_crd() for column in kind.columns],
    }
    if kind.status is not None:
        properties["status"] = structural_schema(kind.status)
        version["subresources"] = {"status": {}}
    version["schema"] = {
        "openAPIV3Schema": {
            "type": "object",
            "description": (kind.spec.__doc__ or kind.kind).strip(),
            "required": ["spec"],
            "properties": properties,
        }
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{c.GROUP}"},
        "spec": {
            "group": c.GROUP,
            "scope": "Namespaced" if kind.namespaced else "Cluster",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": list(kind.short_names),
                "categories": [c.CATEGORY],
            },
            "versions": [version],
        },
    }


def all_crds() -> list[dict[str, Any]]:
    """Every Slipway CRD, in install order."""
    return [crd_for(kind) for kind in KINDS]


def crd_file_name(crd: dict[str, Any]) -> str:
    """The file name of one CRD inside ``crds/``."""
    return f"{crd['metadata']['name']}.yaml"


def render(crd: dict[str, Any]) -> str:
    """YAML text of one CRD, stable across runs."""
    header = "# Generated by `slipway crds` from operator/slipway/api/models.py. Do not edit.\n"
    return header + yaml.safe_dump(crd, sort_keys=False, width=100)

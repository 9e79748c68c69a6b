"""Manual controls from the command line: they only write the documented annotations.

So ``slipway promote fraud-v2`` and ``kubectl annotate modelrelease fraud-v2
slipway.dev/action=promote`` are the same act, and a GitOps user can do it in
Git. The operator does the rest on its next tick.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config

from slipway.api import constants as c


def _namespace(given: str | None) -> str:
    if given:
        return given
    try:
        _, active = config.list_kube_config_contexts()
        return str(active.get("context", {}).get("namespace") or "default")
    except config.ConfigException:
        return "default"


def _custom() -> client.CustomObjectsApi:
    from slipway.kube.client import make_api_client

    return client.CustomObjectsApi(make_api_client())


def annotate(plural: str, name: str, namespace: str | None, values: dict[str, str | None]) -> str:
    """Merge-patch annotations onto one Slipway object; returns its namespace."""
    ns = _namespace(namespace)
    body: dict[str, Any] = {"metadata": {"annotations": values}}
    _custom().patch_namespaced_custom_object(c.GROUP, c.VERSION, ns, plural, name, body)
    return ns


def release_action(name: str, namespace: str | None, action: str) -> str:
    """promote | abort | pause | resume one release."""
    values: dict[str, str | None]
    if action in ("promote", "abort"):
        values = {c.ANNOTATION_ACTION: action}
    elif action == "pause":
        values = {c.ANNOTATION_PAUSED: "true"}
    elif action == "resume":
        values = {c.ANNOTATION_PAUSED: None}
    else:
        raise ValueError(f"unknown action {action!r}")
    ns = annotate(c.PLURAL_RELEASE, name, namespace, values)
    return f"modelrelease {ns}/{name}: {action} requested"


def rollback(model: str, namespace: str | None, to: str | None) -> str:
    """Ask for a fast rollback of a ModelDeployment (to the previous stable by default)."""
    request = f"{to or ''}@{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"
    ns = annotate(c.PLURAL_DEPLOYMENT, model, namespace, {c.ANNOTATION_ROLLBACK_TO: request})
    target = to or "the previous stable release"
    return f"modeldeployment {ns}/{model}: rollback to {target} requested ({request})"


def describe_release(name: str, namespace: str | None) -> str:
    """A readable account of one release: phase, weight, and every analysis."""
    ns = _namespace(namespace)
    found: Any = _custom().get_namespaced_custom_object(
        c.GROUP, c.VERSION, ns, c.PLURAL_RELEASE, name
    )
    obj: dict[str, Any] = found
    status = obj.get("status") or {}
    lines = [
        f"{ns}/{name}  model {obj['spec']['model']['version']}  phase {status.get('phase', '-')}"
        f"  step {status.get('stepLabel', '-')}  weight {status.get('weight', '-')}%"
        f"  verdict {status.get('verdict', '-')}",
        f"  {status.get('message', '')}",
    ]
    for record in status.get("analysis") or []:
        lines.append(f"  {record['at']}  step {record['step']}  {record['verdict']}")
        for slo in record.get("slos") or []:
            lines.append(f"      {slo['verdict']:<12} {slo.get('reason', '')}")
            evidence = evidence_line(slo)
            if evidence:
                lines.append(f"      {'':<12} {evidence}")
    return "\n".join(lines)


def evidence_line(slo: dict[str, Any]) -> str:
    """The numbers behind a typed SLO's verdict: estimates, bound vs limit, samples, time."""
    if not slo.get("judge"):
        return ""

    def num(key: str) -> str:
        value = slo.get(key)
        return "n/a" if value is None else f"{value:.4g}"

    parts = [
        f"{slo['judge']}: {slo.get('metric') or 'value'} {num('value')}"
        f" (bounds {num('lower')}..{num('upper')})"
        f" vs stable {num('baseline')}, limit {num('limit')}"
    ]
    if slo.get("samples") is not None:
        have = f"samples {slo['samples']:,.0f}"
        if slo.get("samplesNeeded") is not None:
            have += f" of ~{slo['samplesNeeded']:,.0f} needed"
        if slo.get("etaSeconds") is not None:
            have += f" (about {slo['etaSeconds']:.0f}s more at the current traffic)"
        parts.append(have)
    return "; ".join(parts)

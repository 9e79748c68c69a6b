"""The ``gatewayAPI`` router: an HTTPRoute per model, its backends the releases' Services.

Canary weights are backendRef weights (proportional integers; Slipway writes
percentages), shadow is a ``RequestMirror`` filter with ``percent`` (standard
channel since Gateway API v1.3), blue-green is one change of the weights. The
Gateway named in ``spec.gatewayAPI.parentRefs`` says in the route's status
whether it accepted it; a weight counts as reached only once the current
generation is Accepted with its references resolved, so status never claims
a split the data plane has not taken.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

from slipway.api.models import ModelDeployment
from slipway.kube.observe import LiveRoute, controller_uid
from slipway.traffic import routes
from slipway.traffic.routes import FINGERPRINT, RoutePlan

KIND: Final = "HTTPRoute"
GROUP: Final = "gateway.networking.k8s.io"
VERSION: Final = "v1"
PLURAL: Final = "httproutes"


def build(model: ModelDeployment, plan: RoutePlan, metadata: dict[str, Any]) -> dict[str, Any]:
    """The model's HTTPRoute for ``plan``."""
    spec = model.spec.gateway_api
    if spec is None:  # refused at admission (CEL) and when parsed; kept for the type checker
        raise ValueError("router gatewayAPI needs spec.gatewayAPI")
    port = model.spec.port
    parents = [
        {
            key: value
            for key, value in (
                ("name", ref.name),
                ("namespace", ref.namespace),
                ("sectionName", ref.section_name),
            )
            if value is not None
        }
        for ref in spec.parent_refs
    ]
    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": spec.path}}],
        "backendRefs": [
            {"name": routes.service_name(model, release), "port": port, "weight": weight}
            for release, weight in plan.weights
        ],
    }
    if plan.mirror is not None:
        release, percent = plan.mirror
        rule["filters"] = [
            {
                "type": "RequestMirror",
                "requestMirror": {
                    "backendRef": {"name": routes.service_name(model, release), "port": port},
                    "percent": percent,
                },
            }
        ]
    route: dict[str, Any] = {"parentRefs": parents, "rules": [rule]}
    if spec.hostnames:
        route["hostnames"] = list(spec.hostnames)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": metadata, "spec": route}


def observe(body: Mapping[str, Any]) -> LiveRoute:
    """An HTTPRoute as it is live: weights, mirror, and whether its Gateways accepted it."""
    meta = body.get("metadata") or {}
    rules = (body.get("spec") or {}).get("rules") or [{}]
    rule = rules[0]
    backends = tuple(
        (str(ref.get("name")), int(ref.get("weight", 1))) for ref in rule.get("backendRefs") or []
    )
    mirror = None
    for item in rule.get("filters") or []:
        if item.get("type") == "RequestMirror":
            spec = item.get("requestMirror") or {}
            percent = spec.get("percent")
            if percent is None and spec.get("fraction"):
                fraction = spec["fraction"]
                percent = round(100 * fraction["numerator"] / fraction.get("denominator", 100))
            share = int(percent) if percent is not None else 100  # unset: every request
            mirror = (str((spec.get("backendRef") or {}).get("name")), share)
    accepted, why = _accepted(body)
    return LiveRoute(
        kind=KIND,
        name=str(meta.get("name")),
        backends=backends,
        mirror=mirror,
        fingerprint=(meta.get("annotations") or {}).get(FINGERPRINT),
        owner_uid=controller_uid(meta),
        accepted=accepted,
        why=why,
        generation=meta.get("generation"),
    )


def _accepted(body: Mapping[str, Any]) -> tuple[bool | None, str]:
    """True when every parent accepted the current generation with its references
    resolved; False (and why) when one refused it; None (and what each parent that has
    not accepted it last said) while one has not answered for this generation yet."""
    generation = (body.get("metadata") or {}).get("generation")
    parents = (body.get("status") or {}).get("parents") or []
    refs = (body.get("spec") or {}).get("parentRefs") or []
    said: dict[str, str] = {}
    taken: Counter[str] = Counter()
    for parent in parents:
        name = str((parent.get("parentRef") or {}).get("name", "?"))
        conditions = {cond.get("type"): cond for cond in parent.get("conditions") or []}
        fresh = [
            cond
            for cond in conditions.values()
            if generation is None or cond.get("observedGeneration", generation) >= generation
        ]
        if not fresh:
            seen = [cond.get("observedGeneration") for cond in conditions.values()]
            last = max((g for g in seen if isinstance(g, int)), default=None)
            if last is not None:
                said.setdefault(name, f"Gateway {name} last answered generation {last}")
            continue
        for kind in ("Accepted", "ResolvedRefs"):
            cond = conditions.get(kind)
            if cond is not None and cond in fresh and cond.get("status") == "False":
                reason, message = cond.get("reason", ""), cond.get("message", "")
                return False, f"Gateway {name}: {kind}=False {reason}: {message}".strip()
        accepted = conditions.get("Accepted")
        if accepted is not None and accepted in fresh and accepted.get("status") == "True":
            taken[name] += 1
        else:
            state = (
                f"{accepted.get('status')} {accepted.get('reason', '')}" if accepted else "unset"
            )
            said[name] = f"Gateway {name}: Accepted={state.strip()}"
    # Every parentRef needs its own answer (one Gateway may be named twice, per listener).
    wanted = Counter(str(ref.get("name", "?")) for ref in refs)
    silent = [
        said.get(name, f"Gateway {name} has not answered")
        for name, count in wanted.items()
        if taken[name] < count
    ]
    if wanted and not silent:
        return True, ""
    return None, "; ".join(silent)


OPS: Final = routes.make_ops(build, observe, KIND, reports=True)

"""The ``istio`` router: a VirtualService per model, its destinations the releases' Services.

Canary weights are route destination weights (0..100), shadow is ``mirror``
with ``mirrorPercentage``, blue-green is one change of the weights.
Destinations are per-release Services rather than DestinationRule subsets:
the same Services the gatewayAPI router weighs, no second object per model to
keep in step, and no version label on pods (a pod-template label change
would restart them). Istio writes no status to a VirtualService by default,
so what is live is its spec as read back: a change counts as taken once the
API server returns it (a switch is claimed on the pass that reads it back).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from slipway.api.models import ModelDeployment
from slipway.kube.observe import LiveRoute, controller_uid
from slipway.traffic import routes
from slipway.traffic.routes import FINGERPRINT, RoutePlan

KIND: Final = "VirtualService"
GROUP: Final = "networking.istio.io"
VERSION: Final = "v1"
PLURAL: Final = "virtualservices"


def _host(model: ModelDeployment, release: str) -> str:
    """A destination host: the release's Service in the model's namespace."""
    return f"{routes.service_name(model, release)}.{model.metadata.namespace}.svc.cluster.local"


def build(model: ModelDeployment, plan: RoutePlan, metadata: dict[str, Any]) -> dict[str, Any]:
    """The model's VirtualService for ``plan``."""
    spec = model.spec.istio
    port = {"number": model.spec.port}
    http: dict[str, Any] = {
        "name": "slipway",
        "route": [
            {"destination": {"host": _host(model, release), "port": port}, "weight": weight}
            for release, weight in plan.weights
        ],
    }
    if plan.mirror is not None:
        release, percent = plan.mirror
        http["mirror"] = {"host": _host(model, release), "port": port}
        http["mirrorPercentage"] = {"value": float(percent)}
    hosts = list(spec.hosts) if spec and spec.hosts else [model.metadata.name]
    service: dict[str, Any] = {"hosts": hosts, "http": [http]}
    if spec and spec.gateways:
        service["gateways"] = list(spec.gateways)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": metadata,
        "spec": service,
    }


def _service(host: str) -> str:
    return host.split(".", 1)[0]


def observe(body: Mapping[str, Any]) -> LiveRoute:
    """A VirtualService as it is live (its first HTTP route)."""
    meta = body.get("metadata") or {}
    http = ((body.get("spec") or {}).get("http") or [{}])[0]
    backends = tuple(
        (_service(str((d.get("destination") or {}).get("host", ""))), int(d.get("weight", 100)))
        for d in http.get("route") or []
    )
    mirror = None
    if http.get("mirror"):
        percent = (http.get("mirrorPercentage") or {}).get("value", 100)
        mirror = (_service(str(http["mirror"].get("host", ""))), round(float(percent)))
    return LiveRoute(
        kind=KIND,
        name=str(meta.get("name")),
        backends=backends,
        mirror=mirror,
        fingerprint=(meta.get("annotations") or {}).get(FINGERPRINT),
        owner_uid=controller_uid(meta),
        generation=meta.get("generation"),
    )


OPS: Final = routes.make_ops(build, observe, KIND, reports=False)

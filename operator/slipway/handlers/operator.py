"""The kopf registrations: indexes that mirror the cluster, and events that queue work.

There are no timers and no finalizers. kopf keeps five indexes current from
its watches and, once all of them are filled, calls the event handlers here
for every change; each only adds the affected ModelDeployment's key to the
controller's queue (``controller.py``), which runs one pass per key and
queues it again when the decision core says time alone will change
something. Deleting any object therefore never waits for the operator, and
a deleted object gets no more work: it is gone from the indexes.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from slipway.analysis.agreement import KubePredictionSource
from slipway.api import constants as c
from slipway.api.models import RolloutPolicy
from slipway.handlers.controller import WORKERS, Controller, Indexes, Providers
from slipway.handlers.reconcile import describe, parse_model, reconcile
from slipway.handlers.snapshot import ModelEntry, ReleaseEntry, ServiceState, service_state
from slipway.kube.client import KubeWriter, make_api_client
from slipway.kube.fingerprint import service_fingerprint
from slipway.kube.observe import DeploymentState, deployment_state, release_summary
from slipway.traffic import ROUTE_KINDS

log = logging.getLogger("slipway")

SLIPWAY_CHILDREN = {c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE}


# ---------------------------------------------------------------- lifecycle


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: Any, **kwargs: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = c.FINALIZER
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    # kopf passes every index to every handler by its function's name (live views).
    routes = tuple(kwargs[_route_index_id(kind)] for kind in ROUTE_KINDS)
    indexes = Indexes(**{field: kwargs[name] for field, name in INDEXES.items()}, routes=routes)
    api = make_api_client()
    providers = Providers(memo.get("prometheus_url"), KubePredictionSource(api))
    workers = int(os.environ.get("SLIPWAY_WORKERS") or WORKERS)
    controller = Controller(KubeWriter(api), indexes, reconcile, providers, workers=workers)
    memo["controller"] = controller
    memo["controller_task"] = asyncio.create_task(controller.run(), name="slipway-reconcile")
    log.info("slipway operator started: handlers registered, indexes warming up")


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    task: asyncio.Task[None] | None = memo.get("controller_task")
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _controller(memo: Any) -> Controller:
    controller: Controller = memo["controller"]
    return controller


# ---------------------------------------------------------------- indexes


@kopf.index(c.GROUP, c.VERSION, c.PLURAL_DEPLOYMENT)
def model_index(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[Any, ModelEntry]:
    return {(namespace, name): parse_model(dict(body))}


@kopf.index(c.GROUP, c.VERSION, c.PLURAL_RELEASE)
def release_index(
    namespace: str | None, spec: kopf.Spec, body: kopf.Body, **_: Any
) -> dict[Any, ReleaseEntry]:
    return {(namespace, spec.get("deployment")): ReleaseEntry(release_summary(body), dict(body))}


@kopf.index(c.GROUP, c.VERSION, c.PLURAL_POLICY)
def policy_index(name: str, body: kopf.Body, **_: Any) -> dict[Any, RolloutPolicy | None]:
    try:
        return {name: RolloutPolicy.model_validate(dict(body))}
    except ValidationError as error:
        log.warning("RolloutPolicy %s is invalid and ignored: %s", name, describe(error, name))
        return {name: None}


@kopf.index("apps", "v1", "deployments", labels=SLIPWAY_CHILDREN)
def deployment_index(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[Any, DeploymentState]:
    state = deployment_state(body)
    return {(namespace, state.model): state} if state else {}


@kopf.index("v1", "services", labels=SLIPWAY_CHILDREN)
def service_index(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[Any, ServiceState]:
    model = labels.get(c.LABEL_MODEL)
    return {(namespace, model): service_state(body, service_fingerprint(body))} if model else {}


def _route_index_id(kind: str) -> str:
    return f"route_index_{kind.lower()}"


def _register_route_kind(kind: str, group: str, version: str, plural: str, observe: Any) -> None:
    """Index and watch one route kind a router owns. Without its CRD in the cluster kopf
    says so once at start-up and the index stays empty; nothing waits on it."""

    def index(namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> Any:
        model = labels.get(c.LABEL_MODEL)
        return {(namespace, model): observe(dict(body))} if model else {}

    async def changed(
        namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any
    ) -> None:
        model = labels.get(c.LABEL_MODEL)
        if model:
            _controller(memo).enqueue((namespace or "", model))

    kopf.index(group, version, plural, labels=SLIPWAY_CHILDREN, id=_route_index_id(kind))(index)
    kopf.on.event(group, version, plural, labels=SLIPWAY_CHILDREN, id=f"{kind.lower()}_changed")(
        changed
    )


for _kind, (_group, _version, _plural, _observe) in ROUTE_KINDS.items():
    _register_route_kind(_kind, _group, _version, _plural, _observe)


# ---------------------------------------------------------------- events -> work
# kopf calls these only after every index above is filled, with the indexes
# already updated for the event: a pass never sees a half-listed cluster. They
# are async so they run on the event loop, where the queue lives.


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL_DEPLOYMENT)
async def model_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    _controller(memo).enqueue((namespace or "", name))


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL_RELEASE)
async def release_changed(namespace: str | None, spec: kopf.Spec, memo: Any, **_: Any) -> None:
    _controller(memo).enqueue((namespace or "", str(spec.get("deployment") or "")))


@kopf.on.event("apps", "v1", "deployments", labels=SLIPWAY_CHILDREN)
async def deployment_changed(
    namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    model = labels.get(c.LABEL_MODEL)
    if model:
        _controller(memo).enqueue((namespace or "", model))


@kopf.on.event("v1", "services", labels=SLIPWAY_CHILDREN)
async def service_changed(
    namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    model = labels.get(c.LABEL_MODEL)
    if model:
        _controller(memo).enqueue((namespace or "", model))


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL_POLICY)
async def policy_changed(name: str, memo: Any, **kwargs: Any) -> None:
    controller = _controller(memo)
    models: kopf.Index[Any, ModelEntry] = kwargs["model_index"]
    for key, entries in models.items():
        if any(e.model is not None and e.model.spec.tier == name for e in entries):
            controller.enqueue(key)


INDEXES = {
    "models": "model_index",
    "releases": "release_index",
    "deployments": "deployment_index",
    "services": "service_index",
    "policies": "policy_index",
}
"""``Indexes``' fields and the index functions' names (kopf's kwargs)."""

"""The kopf registrations: indexes that mirror the cluster, and two reconcile timers.

Each timer re-derives everything from the indexes (no API reads) and the
clock, asks the pure core what to do, carries out the actions, and writes
status once, only when it changed. A restarted operator therefore resumes
exactly where the stored status says it was.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import kopf
from kopf._core.intents import handlers as kopf_handlers
from pydantic import ValidationError

from slipway import metrics
from slipway.analysis.analyze import analyze
from slipway.analysis.provider import MetricProvider, QueryResult, make_provider
from slipway.analysis.templates import release_variables
from slipway.analysis.verdicts import combine, inconclusive
from slipway.api import conditions as cond
from slipway.api import constants as c
from slipway.api.models import (
    ModelDeployment,
    ModelDeploymentStatus,
    ModelRelease,
    ModelReleaseStatus,
    RolloutPolicy,
    SLOResult,
)
from slipway.api.phases import Phase
from slipway.handlers.status import dump_status, owned_keys, status_patch
from slipway.kube.children import build_service
from slipway.kube.client import KubeWriter, make_api_client
from slipway.kube.observe import (
    DeploymentState,
    ReleaseSummary,
    deployment_state,
    release_summary,
)
from slipway.rollout.canary import analysis_due, analysis_settings
from slipway.rollout.conditions import set_condition
from slipway.rollout.core import (
    Action,
    ApplyObject,
    DeleteDeployment,
    RecordStable,
    ScaleDeployment,
    SetActive,
    Situation,
)
from slipway.rollout.model import decide_model
from slipway.rollout.release import decide

log = logging.getLogger("slipway")

RELEASE_TICK_SECONDS = 1.0
MODEL_TICK_SECONDS = 3.0
RELEASE_KEYS = owned_keys(ModelReleaseStatus)
MODEL_KEYS = owned_keys(ModelDeploymentStatus)


@dataclass(frozen=True)
class ModelEntry:
    """A ModelDeployment as the index holds it: parsed, or why it could not be."""

    model: ModelDeployment | None
    error: str | None


class CountingProvider:
    """A metric provider that counts its queries (the benchmark's figure)."""

    def __init__(self, name: str, inner: MetricProvider) -> None:
        self.name, self.inner = name, inner
        self.queries = 0

    def query(self, promql: str) -> QueryResult:
        result = self.inner.query(promql)
        self.queries += 1
        outcome = "ok" if result.ok else ("unreachable" if result.unreachable else "error")
        metrics.METRIC_QUERIES.labels(self.name, outcome).inc()
        return result

    def is_online(self) -> bool:
        return self.inner.is_online()


class Runtime:
    """Process-wide collaborators, created once at startup."""

    writer: KubeWriter | None = None
    providers: dict[tuple[str, str, float], CountingProvider] = {}

    @classmethod
    def kube(cls) -> KubeWriter:
        if cls.writer is None:
            cls.writer = KubeWriter(make_api_client())
        return cls.writer

    @classmethod
    def provider(cls, model: ModelDeployment) -> CountingProvider | None:
        """The model's metric provider, else the operator's default Prometheus."""
        source = model.spec.metrics
        name = source.provider if source else "prometheus"
        url = source.url if source else os.environ.get("SLIPWAY_PROMETHEUS_URL", "")
        timeout = source.timeout_seconds if source else 5.0
        if not url:
            return None
        key = (name, url, timeout)
        if key not in cls.providers:
            cls.providers[key] = CountingProvider(name, make_provider(name, url, timeout))
        return cls.providers[key]


def now() -> datetime:
    return datetime.now(UTC)


def describe(error: ValidationError, prefix: str) -> str:
    """A pydantic error as 'field: problem' lines with the field's path."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in (prefix, *item["loc"]))
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


# ---------------------------------------------------------------- startup


def drop_timer_finalizers(registry: Any = None) -> int:
    """Register Slipway's timers without kopf's finalizer; returns how many were changed.

    kopf adds a finalizer for every object a timer serves, so that deleting it
    waits for the operator. Slipway needs none: children are garbage-collected
    through owner references and an in-flight release that disappears is pruned
    by level. Without it, deleting a release, a ModelDeployment or a namespace
    (an Argo CD prune, say) never hangs while the operator is down.
    """
    registry = registry or kopf.get_default_registry()
    changed = 0
    spawning = registry._spawning  # kopf has no public switch for this (pinned version)
    for index, handler in enumerate(spawning._handlers):
        if isinstance(handler, kopf_handlers.TimerHandler) and handler.requires_finalizer:
            spawning._handlers[index] = dataclasses.replace(handler, requires_finalizer=False)
            changed += 1
    return changed


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = c.FINALIZER
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 16
    Runtime.kube()
    log.info("slipway operator started: handlers registered, indexes warming up")


# ---------------------------------------------------------------- indexes


@kopf.index(c.GROUP, c.VERSION, c.PLURAL_DEPLOYMENT)
def model_index(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[Any, ModelEntry]:
    try:
        return {(namespace, name): ModelEntry(ModelDeployment.model_validate(dict(body)), None)}
    except ValidationError as error:
        return {(namespace, name): ModelEntry(None, describe(error, "ModelDeployment"))}


@kopf.index(c.GROUP, c.VERSION, c.PLURAL_RELEASE)
def release_index(
    namespace: str | None, spec: kopf.Spec, body: kopf.Body, **_: Any
) -> dict[Any, ReleaseSummary]:
    return {(namespace, spec.get("deployment")): release_summary(body)}


@kopf.index(c.GROUP, c.VERSION, c.PLURAL_POLICY)
def policy_index(name: str, body: kopf.Body, **_: Any) -> dict[Any, RolloutPolicy | None]:
    try:
        return {name: RolloutPolicy.model_validate(dict(body))}
    except ValidationError as error:
        log.warning("RolloutPolicy %s is invalid and ignored: %s", name, describe(error, name))
        return {name: None}


@kopf.index("apps", "v1", "deployments", labels={c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE})
def deployment_index(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[Any, DeploymentState]:
    state = deployment_state(body)
    return {(namespace, state.model): state} if state else {}


@kopf.index("v1", "services", labels={c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE})
def service_index(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Any, str]:
    return {(namespace, name): _fingerprint(body.get("spec", {}).get("ports"))}


def _entries(index: kopf.Index[Any, Any], key: Any) -> list[Any]:
    return list(index.get(key, []))


def _fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- ModelRelease


def _release_active(status: Mapping[str, Any], **_: Any) -> bool:
    return not Phase(status.get("phase") or Phase.PENDING).is_terminal


# kopf's TimerFn protocol does not list index kwargs, hence the ignores below.
@kopf.timer(  # type: ignore[arg-type]
    c.GROUP, c.VERSION, c.PLURAL_RELEASE, interval=RELEASE_TICK_SECONDS, when=_release_active
)
def reconcile_release(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    patch: kopf.Patch,
    model_index: kopf.Index[Any, ModelEntry],
    release_index: kopf.Index[Any, ReleaseSummary],
    deployment_index: kopf.Index[Any, DeploymentState],
    policy_index: kopf.Index[Any, RolloutPolicy | None],
    **_: Any,
) -> None:
    old_status = dict(body.get("status") or {})
    try:
        release = ModelRelease.model_validate(dict(body))
    except ValidationError as error:
        _write_release_status(body, patch, old_status, _invalid_release(body, error))
        return
    key = (namespace, release.spec.deployment)
    entries = _entries(model_index, key)
    entry = entries[0] if entries else None
    tier = entry.model.spec.tier if entry and entry.model else None
    policies = _entries(policy_index, tier) if tier else []
    situation = Situation(
        release=release,
        model=entry.model if entry else None,
        siblings=tuple(s for s in _entries(release_index, key) if s.name != name),
        deployments={d.release: d for d in _entries(deployment_index, key)},
        now=now(),
        model_error=entry.error if entry else None,
        policy=policies[0] if policies else None,
    )
    if analysis_due(situation):
        situation = replace(situation, analysis=run_analysis(situation))
    decision = decide(situation)
    if decision.status.phase is Phase.SUCCEEDED:
        # A promotion is recorded on the model before the release says Succeeded.
        if decision.actions and situation.model is not None:
            _carry_out(situation.model, decision.actions)
        _write_release_status(body, patch, old_status, decision.status)
        return
    # Anything else is decided in status first (a rollback, a new step), so a crash
    # before the actions finish can never undo the decision: the next tick redoes them,
    # and a finished release's leftovers are put back by the model's timer.
    _write_release_status(body, None, old_status, decision.status)
    if decision.actions and situation.model is not None:
        _carry_out(situation.model, decision.actions)


def run_analysis(situation: Situation) -> list[SLOResult]:
    """Query every SLO of the model for the candidate (and the stable for relative ones)."""
    model, release = situation.model, situation.release
    assert model is not None
    namespace = release.metadata.namespace or ""
    candidate = release_variables(
        namespace, model.metadata.name, release.metadata.name, release.spec.model.version
    )
    stable = None
    if model.status.stable_release:
        stable = release_variables(
            namespace,
            model.metadata.name,
            model.status.stable_release,
            model.status.stable_version or "",
        )
    provider = Runtime.provider(model)
    if provider is None and model.spec.slos:
        reason = (
            "no metrics backend: set spec.metrics.url or run the operator with --prometheus-url"
        )
        results = [inconclusive(slo, reason) for slo in model.spec.slos]
    elif provider is None:
        results = []
    else:
        settings = analysis_settings(model, situation.policy)
        results = analyze(model.spec.slos, provider, candidate, stable, settings)
    labels = (namespace, model.metadata.name, release.metadata.name)
    for result in results:
        metrics.SLO_VERDICTS.labels(*labels, result.slo, result.verdict.value).inc()
        if result.value is not None:
            metrics.SLO_VALUE.labels(*labels, result.slo).set(result.value)
        if result.baseline is not None:
            metrics.SLO_BASELINE.labels(*labels, result.slo).set(result.baseline)
    metrics.ANALYSES.labels(*labels, combine(results).value).inc()
    return results


def _invalid_release(body: kopf.Body, error: ValidationError) -> ModelReleaseStatus:
    message = f"invalid release: {describe(error, 'ModelRelease')}"
    status = ModelReleaseStatus(
        phase=Phase.FAILED, message=message, observed_generation=body.meta.get("generation")
    )
    status.conditions = set_condition(
        [], cond.READY, "False", cond.INVALID_SPEC, message, now(), status.observed_generation
    )
    return status


def _carry_out(model: ModelDeployment, actions: list[Action]) -> None:
    """The model's status first (claim the slot, record a stable), then apply and scale,
    then delete: a crash between any two steps leaves a state the next tick can finish."""
    kube = Runtime.kube()
    namespace = model.metadata.namespace or ""
    model_patch: dict[str, Any] = {}
    for action in actions:
        if isinstance(action, SetActive):
            model_patch["activeRelease"] = action.release
        elif isinstance(action, RecordStable):
            record = action.record
            if action.handled_rollback:
                model_patch["handledRollback"] = action.handled_rollback
            kept = [h for h in model.status.history if h.release != record.release]
            history = [record, *kept][: action.history_limit]
            model_patch.update(
                stableRelease=record.release,
                stableVersion=record.version,
                activeRelease=None,
                history=[
                    h.model_dump(by_alias=True, exclude_none=True, mode="json") for h in history
                ],
            )
    if model_patch:
        kube.patch_model_status(namespace, model.metadata.name, model_patch)
    for action in actions:
        if isinstance(action, ApplyObject):
            kube.apply(action.body)
        elif isinstance(action, ScaleDeployment):
            kube.scale_deployment(namespace, action.name, action.replicas)
    for action in actions:
        if isinstance(action, DeleteDeployment) and kube.delete_deployment(namespace, action.name):
            log.info("deleted Deployment %s/%s: %s", namespace, action.name, action.reason)


def _write_release_status(
    body: kopf.Body, patch: kopf.Patch | None, old: dict[str, Any], new_status: ModelReleaseStatus
) -> None:
    """Write what changed: through kopf's patch after the handler, or now (patch None)."""
    new = dump_status(new_status)
    changes = status_patch(old, new, RELEASE_KEYS)
    if not changes:
        return
    meta = body.get("metadata", {})
    if patch is None:
        Runtime.kube().patch_release_status(
            meta.get("namespace", ""), meta.get("name", ""), changes
        )
    else:
        patch.setdefault("status", {}).update(changes)
        metrics.KUBE_WRITES.labels("status/ModelRelease").inc()
    if new_status.weight is not None:
        metrics.RELEASE_WEIGHT.labels(
            meta.get("namespace", ""),
            body.get("spec", {}).get("deployment", ""),
            meta.get("name", ""),
        ).set(new_status.weight)
    old_phase = old.get("phase")
    if old_phase != new.get("phase"):
        metrics.PHASE_TRANSITIONS.labels(new_status.phase.value).inc()
        bad = new_status.phase in (Phase.FAILED, Phase.ROLLED_BACK)
        kopf.event(
            body,
            type="Warning" if bad else "Normal",
            reason=new_status.phase.value,
            message=f"{old_phase or 'New'} -> {new_status.phase.value}: {new_status.message or ''}",
        )
    elif _ready_reason(old) != _ready_reason(new):
        kopf.event(
            body,
            type="Normal",
            reason=_ready_reason(new) or "Updated",
            message=new.get("message", ""),
        )


def _ready_reason(status: Mapping[str, Any]) -> str | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == cond.READY:
            return str(condition.get("reason"))
    return None


# ---------------------------------------------------------------- ModelDeployment


@kopf.timer(c.GROUP, c.VERSION, c.PLURAL_DEPLOYMENT, interval=MODEL_TICK_SECONDS)  # type: ignore[arg-type]
def reconcile_model(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    patch: kopf.Patch,
    memo: kopf.Memo,
    release_index: kopf.Index[Any, ReleaseSummary],
    deployment_index: kopf.Index[Any, DeploymentState],
    service_index: kopf.Index[Any, str],
    **_: Any,
) -> None:
    namespace = namespace or ""
    old_status = dict(body.get("status") or {})
    try:
        model = ModelDeployment.model_validate(dict(body))
    except ValidationError as error:
        message = describe(error, "ModelDeployment")
        if old_status.get("message") != message:
            kopf.event(body, type="Warning", reason=cond.INVALID_SPEC, message=message)
            patch.setdefault("status", {})["message"] = message
        return
    kube = Runtime.kube()
    service = build_service(model)
    wanted = _fingerprint(service)
    present = _entries(service_index, (namespace, name))
    if memo.get("service") != wanted or not present:
        kube.apply(service)
        memo["service"] = wanted
    key = (namespace, name)
    decision = decide_model(
        model,
        {d.release: d for d in _entries(deployment_index, key)},
        {s.name: s for s in _entries(release_index, key)},
        now(),
    )
    if decision.actions:
        _carry_out(model.model_copy(update={"status": decision.status}), decision.actions)
    if decision.rollback_message and memo.get("rollback") != decision.rollback_message:
        memo["rollback"] = decision.rollback_message
        kopf.event(body, type="Normal", reason="Rollback", message=decision.rollback_message)
    for deployment, reason in decision.prune:
        if kube.delete_deployment(namespace, deployment):
            kopf.event(
                body, type="Normal", reason=cond.EVENT_PRUNED, message=f"{deployment}: {reason}"
            )
    new = dump_status(decision.status)
    # Keys the release reconciler owns are only ever written there.
    for foreign in ("stableRelease", "stableVersion", "history"):
        new.pop(foreign, None)
        old_status.pop(foreign, None)
    changes = status_patch(
        old_status, new, MODEL_KEYS - {"stableRelease", "stableVersion", "history"}
    )
    if "activeRelease" in old_status and "activeRelease" not in new:
        changes["activeRelease"] = None
    if changes:
        patch.setdefault("status", {}).update(changes)
        metrics.KUBE_WRITES.labels("status/ModelDeployment").inc()


drop_timer_finalizers()

"""One reconcile pass over one ModelDeployment: its releases first, then the model itself.

Everything is re-derived from the snapshot and the clock, so a restarted
operator resumes exactly where the stored status says it was. Each write
carries the resourceVersion it was decided on: a decision made on a stale
view, or aimed at an object that was deleted and re-created under the same
name, fails with a conflict and is simply made again on a fresh view. The
pass keeps the ModelDeployment it wrote last, so the releases decided after
a claim in the same pass see that claim.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from pydantic import ValidationError

from slipway import metrics
from slipway.analysis.agreement import SLO_NAME as AGREEMENT
from slipway.analysis.agreement import measure_agreement
from slipway.analysis.analyze import Evidence, analyze
from slipway.analysis.templates import release_variables
from slipway.analysis.verdicts import combine, inconclusive
from slipway.api import conditions as cond
from slipway.api.models import (
    ModelDeployment,
    ModelDeploymentStatus,
    ModelRelease,
    ModelReleaseStatus,
    SLOResult,
)
from slipway.api.phases import Phase, Verdict
from slipway.handlers.controller import Memory, Providers
from slipway.handlers.measure import MeasureKey
from slipway.handlers.snapshot import ModelEntry, ModelSnapshot, ReleaseEntry
from slipway.handlers.status import dump_status, owned_keys, status_patch
from slipway.kube.children import build_service, child_problems, deployment_name
from slipway.kube.client import KubeError, KubeWriter
from slipway.kube.fingerprint import service_fingerprint
from slipway.kube.observe import DeploymentState, LiveRoute
from slipway.rollout.conditions import set_condition
from slipway.rollout.core import (
    MODEL_WRITES,
    Action,
    ApplyObject,
    DeleteDeployment,
    RecordStable,
    ScaleDeployment,
    SetActive,
    SetServing,
    Situation,
)
from slipway.rollout.gate import (
    agreement_checked,
    analysis_due,
    analysis_settings,
    error_budget,
    shadow_for,
)
from slipway.rollout.model import decide_model, strays
from slipway.rollout.outcomes import child_refused
from slipway.rollout.release import decide
from slipway.rollout.rollback import pending_request
from slipway.traffic import ROUTERS

log = logging.getLogger("slipway")

RELEASE_KEYS = owned_keys(ModelReleaseStatus)
RELEASE_OWNED_MODEL_KEYS = {"stableRelease", "stableVersion", "history"}
"""ModelDeployment status keys only a release's promotion (or a rollback) writes."""
MODEL_KEYS = owned_keys(ModelDeploymentStatus) - RELEASE_OWNED_MODEL_KEYS


def now() -> datetime:
    return datetime.now(UTC)


def describe(error: ValidationError, prefix: str) -> str:
    """A pydantic error as 'field: problem' lines with the field's path."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in (prefix, *item["loc"]))
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_model(body: Mapping[str, Any]) -> ModelEntry:
    """A ModelDeployment body as the index keeps it: parsed, or why not."""
    try:
        model = ModelDeployment.model_validate(dict(body))
    except ValidationError as error:
        return ModelEntry(None, describe(error, "ModelDeployment"), body)
    problems = child_problems(model)
    if problems:  # its Service or pod labels would be refused: say so instead of trying
        return ModelEntry(None, "; ".join(problems), body)
    return ModelEntry(model, None, body)


@dataclass
class Pass:
    """One pass: its snapshot, its collaborators, and the freshest ModelDeployment."""

    snap: ModelSnapshot
    kube: KubeWriter
    providers: Providers
    memory: Memory
    entry: ModelEntry | None
    scaled: dict[str, int] = field(default_factory=dict)
    """Deployments this pass scaled, and to what (a scale is not written twice)."""

    @property
    def model(self) -> ModelDeployment | None:
        return self.entry.model if self.entry else None

    @property
    def deployments(self) -> dict[str, DeploymentState]:
        return self.snap.owned_deployments(self.entry.uid if self.entry else None)

    @property
    def services(self) -> dict[str, str]:
        return self.snap.owned_services(self.entry.uid if self.entry else None)

    @property
    def route(self) -> LiveRoute | None:
        """The live route object of the model's router (None for ``replicas``)."""
        model = self.model
        kind = ROUTERS[model.spec.router].route_kind if model else None
        return self.snap.route(kind)


def reconcile(
    snap: ModelSnapshot, kube: KubeWriter, providers: Providers, memory: Memory
) -> datetime | None:
    """Reconcile every release of one ModelDeployment, then the model; when to look again."""
    # A ModelDeployment being deleted is treated as gone: re-creating its children or
    # writing its status would only fight the garbage collector.
    model = snap.model if snap.model is not None and not snap.model.deleting else None
    run = Pass(snap, kube, providers, memory, model)
    if run.model is not None and pending_request(run.model) is None:
        # Before any release acts: what a cut-short promotion left scaled up goes to zero
        # first, so a candidate never starts beside it (three releases with pods).
        releases = {r.summary.name: r.summary for r in snap.releases}
        carry_out(run, strays(run.model.status, run.deployments, releases, _routed(run)))
    looks: list[datetime] = []
    in_flight = sorted(
        (r for r in snap.releases if _needs_work(r)),
        key=lambda r: (r.summary.created, r.summary.name),
    )
    for entry in in_flight:
        look = reconcile_release(run, entry)
        if look is not None:
            looks.append(look)
    if memory.measurements is not None:  # a finished or deleted release measures nothing more
        names = {entry.summary.name for entry in in_flight}
        memory.measurements.keep_only(snap.namespace, snap.name, names)
    if run.entry is not None:
        look = reconcile_model(run)
        if look is not None:
            looks.append(look)
    return min(looks) if looks else None


def _needs_work(entry: ReleaseEntry) -> bool:
    return not entry.summary.deleting and not Phase(entry.summary.phase).is_terminal


# ---------------------------------------------------------------- ModelRelease


def reconcile_release(run: Pass, entry: ReleaseEntry) -> datetime | None:
    body = entry.body
    old_status = dict(body.get("status") or {})
    name = entry.summary.name
    try:
        release = ModelRelease.model_validate(dict(body))
    except ValidationError as error:
        _write_release_status(
            run, body, old_status, _invalid_release(body, describe(error, "ModelRelease"))
        )
        return None
    model, model_error = run.model, run.entry.error if run.entry else None
    if model is not None and release.status.started_at is None:
        problems = child_problems(model, release)  # e.g. spec.container names no container
        if problems:
            model, model_error = None, "; ".join(problems)
    situation = Situation(
        release=release,
        model=model,
        siblings=tuple(r.summary for r in run.snap.releases if r.summary.name != name),
        deployments=run.deployments,
        now=now(),
        model_error=model_error,
        policy=run.snap.policy,
        route=run.route,
        services=run.services,
    )
    if analysis_due(situation):
        situation = replace(situation, analysis=take_analysis(run, situation))
    decision = decide(situation)
    first = [a for a in decision.actions if _before_status(a, name)]
    then = [a for a in decision.actions if not _before_status(a, name)]
    # A claim of the rollout slot and a promotion are recorded on the model first
    # (conditionally: a concurrent claim makes this one fail and the pass start over);
    # anything else is decided in the release's status first, so a crash before the
    # actions finish can never undo the decision: the next pass redoes them.
    carry_out(run, first)
    body = _write_release_status(run, body, old_status, decision.status)
    try:
        carry_out(run, then)
    except KubeError as error:
        if not error.invalid:
            raise
        # The API server will never take this child as it is (an invalid pod template, say):
        # fail the release with its words, and put the stable back.
        refused = child_refused(situation, f"the API server refused {error}")
        _write_release_status(run, body, dict(body.get("status") or {}), refused.status)
        carry_out(run, refused.actions)
        return None
    return decision.look_again_at


def _before_status(action: Action, release: str) -> bool:
    """Model writes that must land before the release's status says it acted on them."""
    return isinstance(action, RecordStable) or (
        isinstance(action, SetActive) and action.release == release
    )


def take_analysis(run: Pass, situation: Situation) -> list[SLOResult] | None:
    """This tick's analysis of the release, or None while it is being measured.

    The measuring runs off the pass (``measure.py``): a pass waits for it only briefly, so a
    slow Prometheus or pod never holds up this model's controls or other models' passes.
    """
    release = situation.release
    measure = partial(measure_release, run.providers, situation)
    measurements = run.memory.measurements
    if measurements is None:
        results: list[SLOResult] | None = measure()
    else:
        key = MeasureKey(
            namespace=release.metadata.namespace or "",
            model=run.snap.name,
            release=release.metadata.name,
            uid=release.metadata.uid,
            started=release.status.started_at,
            step=release.status.step,
            since=release.status.weight_reached_at or release.status.step_started_at,
        )
        last = release.status.analysis[-1].at if release.status.analysis else None
        results = measurements.take(key, situation.now, last, measure)
    if results is None:
        return None
    labels = (release.metadata.namespace or "", run.snap.name, release.metadata.name)
    for result in results:
        metrics.SLO_VERDICTS.labels(*labels, result.slo, result.verdict.value).inc()
        if result.value is not None:
            metrics.SLO_VALUE.labels(*labels, result.slo).set(result.value)
        if result.baseline is not None:
            metrics.SLO_BASELINE.labels(*labels, result.slo).set(result.baseline)
    metrics.ANALYSES.labels(*labels, combine(results).value).inc()
    return results


def measure_release(providers: Providers, situation: Situation) -> list[SLOResult]:
    """Query every SLO of the model for the candidate (and the stable for relative ones),
    and read both releases' predictions in a shadow phase. Never raises for what a backend
    or a pod answers: that is an Inconclusive with its reason."""
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
    provider = providers.for_model(model)
    if provider is None:
        reason = (
            "no metrics backend: set spec.metrics.url or run the operator with --prometheus-url"
        )
        results = [inconclusive(slo, reason) for slo in model.spec.slos]
    else:
        settings = analysis_settings(model, situation.policy)
        evidence = Evidence(
            started=release.status.started_at or situation.now,
            now=situation.now,
            budget=error_budget(model, situation.policy),
        )
        results = analyze(model.spec.slos, provider, candidate, stable, settings, evidence)
    if agreement_checked(situation, model):
        results = [*results, _agreement(providers, situation, model)]
    return results


def _agreement(providers: Providers, situation: Situation, model: ModelDeployment) -> SLOResult:
    """How often the candidate predicted what the stable did on the same mirrored
    requests (joined per request id), judged against ``minAgreement``."""
    spec = shadow_for(situation, model)
    assert spec is not None and spec.min_agreement is not None
    release = situation.release
    since = release.status.weight_reached_at or release.status.step_started_at or situation.now
    source = providers.predictions
    if source is None or model.status.stable_release is None:
        return SLOResult(
            slo=AGREEMENT,
            verdict=Verdict.INCONCLUSIVE,
            threshold=f">= {spec.min_agreement:g}",
            reason=f"SLO {AGREEMENT}: no prediction source (the operator reads predictions"
            " through the API server's pod proxy)",
        )
    budget = error_budget(model, situation.policy)
    return measure_agreement(
        source,
        release.metadata.namespace or "",
        model.metadata.name,
        model.status.stable_release,
        release.metadata.name,
        since.timestamp(),
        spec.min_agreement,
        budget.false_rollback,
        now=situation.now.timestamp(),
    )


def _invalid_release(body: Mapping[str, Any], why: str) -> ModelReleaseStatus:
    message = f"invalid release: {why}"
    generation = (body.get("metadata") or {}).get("generation")
    status = ModelReleaseStatus(phase=Phase.FAILED, message=message, observed_generation=generation)
    status.conditions = set_condition(
        [], cond.READY, "False", cond.INVALID_SPEC, message, now(), generation
    )
    return status


def _write_release_status(
    run: Pass, body: Mapping[str, Any], old: dict[str, Any], new_status: ModelReleaseStatus
) -> Mapping[str, Any]:
    """Write what changed, conditional on the version decided on; the body as it now is."""
    new = dump_status(new_status)
    changes = status_patch(old, new, RELEASE_KEYS)
    if not changes:
        return body
    meta = body.get("metadata") or {}
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    written = run.kube.patch_release_status(
        namespace, name, changes, resource_version=meta.get("resourceVersion")
    )
    if new_status.weight is not None:
        deployment = (body.get("spec") or {}).get("deployment", "")
        metrics.RELEASE_WEIGHT.labels(namespace, deployment, name).set(new_status.weight)
    old_phase = old.get("phase")
    if old_phase != new.get("phase"):
        metrics.PHASE_TRANSITIONS.labels(new_status.phase.value).inc()
        bad = new_status.phase in (Phase.FAILED, Phase.ROLLED_BACK)
        run.kube.post_event(
            body,
            "Warning" if bad else "Normal",
            new_status.phase.value,
            f"{old_phase or 'New'} -> {new_status.phase.value}: {new_status.message or ''}",
        )
    elif _ready_reason(old) != _ready_reason(new):
        run.kube.post_event(
            body,
            "Normal",
            _ready_reason(new) or "Updated",
            new.get("message", ""),
        )
    return written


def _ready_reason(status: Mapping[str, Any]) -> str | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == cond.READY:
            return str(condition.get("reason"))
    return None


# ---------------------------------------------------------------- actions


def carry_out(run: Pass, actions: list[Action]) -> None:
    """The model's status first (claim the slot, record a stable), then apply and scale,
    then delete: a crash between any two steps leaves a state the next pass can finish."""
    if not actions:
        return
    _write_model_actions(run, [a for a in actions if isinstance(a, MODEL_WRITES)])
    namespace = run.snap.namespace
    for action in actions:
        if isinstance(action, ApplyObject):
            run.kube.apply(action.body)
        elif isinstance(action, ScaleDeployment) and run.scaled.get(action.name) != action.replicas:
            run.kube.scale_deployment(namespace, action.name, action.replicas)
            run.scaled[action.name] = action.replicas
    uids = {d.name: d.uid for d in run.snap.deployments}
    for action in actions:
        if not isinstance(action, DeleteDeployment):
            continue
        if run.kube.delete_deployment(namespace, action.name, uids.get(action.name)):
            log.info("deleted Deployment %s/%s: %s", namespace, action.name, action.reason)


def _write_model_actions(run: Pass, actions: list[Action]) -> None:
    if not actions or run.entry is None or run.model is None:
        return
    model = run.model
    patch: dict[str, Any] = {}
    for action in actions:
        if isinstance(action, SetActive):
            patch["activeRelease"] = action.release
        elif isinstance(action, SetServing):
            patch["serving"] = action.release
        elif isinstance(action, RecordStable):
            record = action.record
            if action.handled_rollback:
                patch["handledRollback"] = action.handled_rollback
            kept = [h for h in model.status.history if h.release != record.release]
            history = [record, *kept][: action.history_limit]
            patch.update(
                stableRelease=record.release,
                stableVersion=record.version,
                activeRelease=None,
                history=[
                    h.model_dump(by_alias=True, exclude_none=True, mode="json") for h in history
                ],
            )
    _patch_model_status(run, patch)


def _patch_model_status(run: Pass, patch: dict[str, Any]) -> None:
    """Conditional on the version this pass holds; the pass then holds the new one."""
    assert run.entry is not None
    written = run.kube.patch_model_status(
        run.snap.namespace, run.snap.name, patch, resource_version=run.entry.resource_version
    )
    run.entry = parse_model(written)


# ---------------------------------------------------------------- ModelDeployment


def reconcile_model(run: Pass) -> datetime | None:
    assert run.entry is not None
    body = run.entry.body
    old_status = dict(body.get("status") or {})
    model = run.model
    if model is None:
        message = run.entry.error or "invalid ModelDeployment"
        if old_status.get("message") != message:
            run.kube.post_event(body, "Warning", cond.INVALID_SPEC, message)
            _patch_model_status(run, {"message": message})
        return None
    deployments = run.deployments
    routed = _routed(run)
    decision = decide_model(
        model,
        deployments,
        {r.summary.name: r.summary for r in run.snap.releases},
        now(),
        routed,
        run.route,
        run.services,
    )
    # Behind a route, the model's own Service reaches the stable only: the route is
    # where live traffic is split, and a caller of the Service never meets a candidate.
    behind_route = ROUTERS[model.spec.router].route_kind is not None
    problem = _ensure_service(
        run, model, model.status.stable_release if behind_route else decision.status.serving
    )
    rest: list[Action] = []
    if decision.rollback_message is None:
        # While a rollback runs, the route is its to move (to the target, before the stable
        # changes): the at-rest route to the stable would undo it.
        rest = ROUTERS[model.spec.router].at_rest(model, run.route, run.services)
    if decision.actions or rest:
        carry_out(run, [*rest, *decision.actions])
    key = ("rollback", run.snap.namespace, run.snap.name)
    if decision.rollback_message and run.memory.said.get(key) != decision.rollback_message:
        run.memory.said[key] = decision.rollback_message
        run.kube.post_event(body, "Normal", "Rollback", decision.rollback_message)
    uids = {d.name: d.uid for d in run.snap.deployments}
    for deployment, reason in decision.prune:
        if run.kube.delete_deployment(run.snap.namespace, deployment, uids.get(deployment)):
            run.kube.post_event(
                body,
                "Normal",
                cond.EVENT_PRUNED,
                f"{deployment}: {reason}",
            )
    _prune_services(run, model, routed)
    status = decision.status
    status.message = problem or decision.rollback_message  # what a rollback waits for
    new = dump_status(status)
    # Against the status this decision was made from: what carry_out wrote meanwhile (a
    # rollback's record) is not the decision's to undo; the write is still conditional.
    stored = old_status
    for foreign in RELEASE_OWNED_MODEL_KEYS:
        new.pop(foreign, None)
        stored.pop(foreign, None)
    changes = status_patch(stored, new, MODEL_KEYS)
    if "activeRelease" in stored and "activeRelease" not in new:
        changes["activeRelease"] = None
    if changes:
        _patch_model_status(run, changes)
    return None


def _routed(run: Pass) -> frozenset[str]:
    """The model's releases its live route may still send requests to (the router's word)."""
    model = run.model
    assert model is not None
    releases = set(run.deployments) | {s.release for s in run.snap.services if s.release}
    return ROUTERS[model.spec.router].routed(model, run.route, releases)


def _prune_services(run: Pass, model: ModelDeployment, routed: frozenset[str]) -> None:
    """Delete the own Services of releases that are finished and serve nothing: not the
    stable, not in flight, not one the live route may still send requests to (``routed``,
    the router's own answer, as for pruning Deployments)."""
    assert run.entry is not None
    phases = {r.summary.name: Phase(r.summary.phase) for r in run.snap.releases}
    keep = {model.status.stable_release, model.status.active_release, *routed}
    for service in run.snap.services:
        release = service.release
        if (
            release is None
            or service.owner_uid != run.entry.uid
            or service.name != deployment_name(model.metadata.name, release)
            or release in keep
            or (release in phases and not phases[release].is_terminal)
        ):
            continue
        if run.kube.delete_service(run.snap.namespace, service.name, service.uid):
            log.info(
                "deleted Service %s/%s: release %r is done",
                run.snap.namespace,
                service.name,
                release,
            )


def _ensure_service(run: Pass, model: ModelDeployment, serving: str | None) -> str | None:
    """Apply the model's Service when it is missing, changed or not ours; why it cannot be."""
    assert run.entry is not None
    entry = run.entry
    desired = build_service(model, serving)
    present = run.snap.service
    if (
        present is not None
        and present.fingerprint == service_fingerprint(desired)
        and present.owner_uid == entry.uid
    ):
        return None
    try:
        run.kube.apply(desired)
    except KubeError as error:
        if not error.invalid:
            raise
        message = f"the API server refused {error}"
        key = ("service", run.snap.namespace, run.snap.name)
        if run.memory.said.get(key) != message:
            run.memory.said[key] = message
            run.kube.post_event(entry.body, "Warning", cond.CHILD_REFUSED, message)
        return message
    return None

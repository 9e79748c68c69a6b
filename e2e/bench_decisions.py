"""`make bench-decisions`: what the shipped settings promise, printed (not asserted).

A release's settings make promises: rolling back a version within every
tolerance at most ``falseRollback`` of the time, catching a regression past a
tolerance, deciding in a time people can plan with (``etaSeconds``), and not
exposing users to a likely regression for long. Those promises can only be
checked where the truth is known, so this replays synthetic canaries with
known effects through the very code the operator runs, and counts.

What runs is the operator's own decision path, not a model of it:
``rollout.release.decide`` (the canary strategy, the shared analysis gate,
``undecidedWeight`` / ``maxUndecided``, the router's placement), fed by
``analysis.analyze`` with the ModelDeployment's SLOs, whose PromQL is answered
by a small in-memory Prometheus (``SimPrometheus``) over per-pod, per-5 s
counters (the stable serves alone for 10 minutes first: the history the
per-pod queries reach back to). The world applies the decisions' actions
(Deployments scale with their pods ready at once, routes change and are
live); a change brings the next reconcile one 5 s slot later (the watch),
otherwise it comes at the decision's ``lookAgainAt``. Two shortcuts keep it
fast and change no decision (``--exact`` turns both off; checked equal on
seeded rollouts): analysis records in status are shared rather than deep-copied
each reconcile, and the 10 s safety-net reconciles between ``timing.next_look``
moments are skipped.

What is judged is read from the files that ship:

- ``examples/manifests/fraud-model.yaml`` as it is (its SLOs, canary steps,
  analysis settings, progressDeadline, router ``replicas`` with 4 pods), under
  its tier ``medium`` (whose budgets are ceilings and whose undecided limits
  apply);
- each tier of ``charts/slipway/values.yaml``: the example's ModelDeployment
  (its SLOs and progressDeadline) with the tier's steps, pauses, interval,
  budgets, onInconclusive, undecidedWeight and maxUndecided. Tiers run on the
  ``istio`` router, whose weights are exact and which can mirror (with
  ``replicas`` and 4 pods every step under 25 % is 25 %, and a required shadow
  phase is refused); high and critical run their required shadow phase (the
  candidate gets a copy of every request, nobody sees its answers). The
  critical tier's manual approval cannot be given in this version, so it is
  left out here.

The world (stated, so the figures can be argued with): requests arrive as a
Poisson stream at 5, 20, 100 (and 500) req/s, split over the ready pods as
the router says; the stable has 1 % errors, 90 % accuracy (every request
labelled) and lognormal latency (p50 50 ms, p95 134 ms) observed into the
example model server's buckets. Errors are independent per request, or come
in bursts: each pod's error rate is redrawn every 30 s (10 s) from a gamma
distribution with the same mean and a coefficient of variation of 3 (2), for
both versions. A candidate is identical, or just past one tolerance of the
example's SLOs (1.2x the tolerance: errors +2.4 points, accuracy -6 points,
every latency x1.6 against p95 <= x1.5).

Beside the example runs ``ex-nolim``: the same, with the tier's undecidedWeight
and maxUndecided removed (Slipway before they existed), to show what they
change in exposure and in false rollbacks. A rollback of an identical
candidate is counted apart by cause: an SLO failure (the judge's error, held
to ``falseRollback``) or the settings (``onInconclusive: rollback`` past a
step's progressDeadline, or maxUndecided), which the settings chose.

The naive baseline is the ``threshold`` judge (one window's point estimate,
failures counted against failureLimit) in the same settings, through the same
gate. The fixed-sample optimum is the candidate samples a one-shot test with
the same error rates (falseRollback per SLO, falsePromotion) needs on the
true rates, turned into time at the first canary step's share.
"""

from __future__ import annotations

import argparse
import ast
import copy
import functools
import math
import multiprocessing
import os
import re
import statistics
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from slipway.analysis.analyze import Evidence, analyze
from slipway.analysis.judges import histograms
from slipway.analysis.judges.base import Histogram
from slipway.analysis.judges.sequential import tail_bucket
from slipway.analysis.provider import QueryResult
from slipway.analysis.templates import release_variables
from slipway.analysis.verdicts import combine
from slipway.api import conditions as cond
from slipway.api import constants as c
from slipway.api.durations import parse_duration
from slipway.api.models import (
    SLO,
    AnalysisRecord,
    ModelDeployment,
    ModelRelease,
    RolloutPolicy,
    SLOResult,
)
from slipway.api.phases import Phase, Router, Verdict
from slipway.kube.fingerprint import service_fingerprint
from slipway.kube.observe import DeploymentState, LiveRoute
from slipway.rollout import timing
from slipway.rollout.core import (
    Action,
    ApplyObject,
    DeleteDeployment,
    RecordStable,
    ScaleDeployment,
    SetActive,
    SetServing,
    Situation,
)
from slipway.rollout.gate import analysis_due, analysis_settings, error_budget
from slipway.rollout.release import decide
from slipway.traffic import gatewayapi, istio
from slipway.traffic.routes import service_name

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "manifests" / "fraud-model.yaml"
VALUES = ROOT / "charts" / "slipway" / "values.yaml"
MODEL_SERVER = ROOT / "examples" / "model-server" / "model_server.py"

SLOT = 5  # seconds: the world's resolution (every count is per pod per slot)
RATES = (5, 20, 100)
BURST_RATES = (5, 20, 100, 500)
STABLE_ERRORS, STABLE_ACCURACY = 0.01, 0.90
LATENCY_MEDIAN, LATENCY_SIGMA = 0.05, 0.6  # p50 50 ms, p95 134 ms, p99 202 ms
PAST = 1.2  # "just past a tolerance": 1.2x it
EXPOSED_AT = timedelta(minutes=30)
AFTER_PAUSES = timedelta(minutes=40)  # the horizon: every pause, then this long
WARMUP = timedelta(minutes=10)  # the stable serves alone first (the per-pod history)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
NAMESPACE, STABLE, CANDIDATE = "slipway-demo", "fraud-v1", "fraud-v2"
FloatArray = npt.NDArray[np.float64]


def latency_buckets() -> tuple[float, ...]:
    """The example model server's histogram buckets, read from its source, and +Inf."""
    tree = ast.parse(MODEL_SERVER.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "LATENCY_BUCKETS" for t in node.targets
        ):
            return (*ast.literal_eval(node.value), math.inf)
    raise ValueError(f"{MODEL_SERVER}: no LATENCY_BUCKETS")


BUCKETS = latency_buckets()


# ---------------------------------------------------------------- what ships


@dataclass(frozen=True)
class Config:
    """One set of shipped settings: the ModelDeployment and its tier's policy."""

    name: str
    model: ModelDeployment
    policy: RolloutPolicy | None
    note: str
    baseline_of: str | None = None
    """Set on a variant without the undecided limits: the config it is compared with."""


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def load_configs() -> list[Config]:
    """The example as shipped (under its tier), then every chart tier on the example."""
    example_doc = next(d for d in _documents(EXAMPLE) if d.get("kind") == "ModelDeployment")
    policies = {
        tier: RolloutPolicy.model_validate({"metadata": {"name": tier}, "spec": spec})
        for tier, spec in (yaml.safe_load(VALUES.read_text()).get("policies") or {}).items()
    }
    status = {"stableRelease": STABLE, "stableVersion": "v1"}
    # What the API server adds: a uid (owner references of the children name it).
    metadata = {**example_doc["metadata"], "uid": "uid-fraud", "generation": 1}
    example_doc = {**example_doc, "metadata": metadata, "status": status}
    example = ModelDeployment.model_validate(example_doc)
    configs = [
        Config(
            "example",
            example,
            policies.get(example.spec.tier),
            f"{EXAMPLE.relative_to(ROOT)} (router {example.spec.router.value},"
            f" {example.spec.replicas} pods, tier {example.spec.tier})",
        )
    ]
    tier_policy = policies.get(example.spec.tier)
    if tier_policy is not None and tier_policy.spec.analysis is not None:
        loose = tier_policy.spec.analysis.model_copy(
            update={"undecided_weight": None, "max_undecided": None}
        )
        configs.append(
            Config(
                "ex-nolim",
                example,
                tier_policy.model_copy(
                    update={"spec": tier_policy.spec.model_copy(update={"analysis": loose})}
                ),
                "the example with its tier's undecidedWeight / maxUndecided removed (as"
                " before they existed), to show what they change",
                baseline_of="example",
            )
        )
    for tier, policy in policies.items():
        spec = {k: v for k, v in example_doc["spec"].items() if k not in ("canary", "analysis")}
        spec |= {"tier": tier, "router": Router.ISTIO.value}
        model = ModelDeployment.model_validate({**example_doc, "spec": spec})
        dropped = ""
        if policy.spec.approval is not None and policy.spec.approval.required:
            policy = policy.model_copy(
                update={"spec": policy.spec.model_copy(update={"approval": None})}
            )
            dropped = ", its manual approval left out"
        shadow = ", with its shadow phase" if policy.spec.require_shadow else ""
        configs.append(
            Config(
                tier, model, policy, f"tier {tier} on the example (router istio{shadow}{dropped})"
            )
        )
    return configs


def with_judge(model: ModelDeployment, policy: RolloutPolicy | None, judge: str) -> ModelDeployment:
    """The ModelDeployment with its (else its tier's) analysis settings judged by ``judge``."""
    settings = analysis_settings(model, policy)
    if settings.judge == judge:
        return model
    spec = model.spec.model_copy(update={"analysis": settings.model_copy(update={"judge": judge})})
    return model.model_copy(update={"spec": spec})


def release() -> ModelRelease:
    """The candidate, carrying every provenance field a tier may require."""
    return ModelRelease.model_validate(
        {
            "metadata": {
                "name": CANDIDATE,
                "namespace": NAMESPACE,
                "generation": 1,
                "creationTimestamp": T0.isoformat(),
            },
            "spec": {
                "deployment": "fraud",
                "model": {
                    "uri": "s3://models/fraud/v2",
                    "version": "v2",
                    "digest": "sha256:" + "ab" * 16,
                },
                "provenance": {
                    "datasetVersion": "d",
                    "codeVersion": "c",
                    "framework": "f",
                    "hyperparameters": {"a": "1"},
                },
            },
        }
    )


# ---------------------------------------------------------------- the truth


@dataclass(frozen=True)
class World:
    """One candidate against the stable, and how errors arrive."""

    name: str
    errors: float = STABLE_ERRORS
    accuracy: float = STABLE_ACCURACY
    slower: float = 1.0  # every candidate latency times this
    cv: float = 0.0  # per-pod error rate: gamma with this coefficient of variation
    period: int = 30  # seconds each pod's error rate holds
    regression: bool = False

    @property
    def bursty(self) -> bool:
        return self.cv > 0


def threshold_of(model: ModelDeployment, kind: str) -> SLO:
    return next(s for s in model.spec.slos if getattr(s, kind) is not None)


def worlds(model: ModelDeployment) -> list[World]:
    """Identical (independent, and bursty errors), and just past each tolerance of the SLOs."""
    err = threshold_of(model, "error_rate").threshold
    acc = threshold_of(model, "ratio").threshold
    lat = threshold_of(model, "latency").threshold

    def past(value: float, amount: float | None, relative: str, sign: float) -> float:
        assert amount is not None
        step = value * amount if relative == "ratio" else amount
        return value + sign * PAST * step

    errors = past(STABLE_ERRORS, err.max_increase, err.relative, +1)
    accuracy = past(STABLE_ACCURACY, acc.max_decrease, acc.relative, -1)
    assert lat.max_increase is not None and lat.relative == "ratio"
    slower = 1.0 + PAST * lat.max_increase
    return [
        World("identical"),
        World("identical, bursts CV3/30s", cv=3.0, period=30),
        World("identical, bursts CV2/10s", cv=2.0, period=10),
        World(f"errors {errors:.1%} (past)", errors=errors, regression=True),
        World(f"accuracy {accuracy:.0%} (past)", accuracy=accuracy, regression=True),
        World(f"latency x{slower:g} (past)", slower=slower, regression=True),
    ]


def _cdf(seconds: float, slower: float) -> float:
    if seconds <= 0:
        return 0.0
    if math.isinf(seconds):
        return 1.0
    z = math.log(seconds / (LATENCY_MEDIAN * slower)) / LATENCY_SIGMA
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


@functools.cache
def bucket_shares(slower: float) -> FloatArray:
    """Probability of each bucket (non-cumulative)."""
    cdf = np.array([_cdf(b, slower) for b in BUCKETS])
    return np.diff(cdf, prepend=0.0)


# ---------------------------------------------------------------- the metrics


FIELDS = 4 + len(BUCKETS)  # ok, 5xx, correct, labelled, then one per bucket
OK, FAILED, CORRECT, LABELLED = range(4)


class Store:
    """Every pod's counters per slot, cumulative, for both releases (what Prometheus scrapes).

    Slot 0 starts ``WARMUP`` before the release: the stable served alone then,
    which is the history the per-pod queries reach back to.
    """

    def __init__(self, slots: int, pods: int) -> None:
        self.pods = pods
        self.cum = {r: np.zeros((slots + 1, pods, FIELDS)) for r in (STABLE, CANDIDATE)}
        self.alive = {r: np.zeros((slots + 1, pods), dtype=bool) for r in (STABLE, CANDIDATE)}
        self.filled = 0  # slots recorded

    def add(self, counts: Mapping[str, FloatArray], pods: Mapping[str, int]) -> None:
        """One slot's counts per release, shape (pods, FIELDS), and each release's pods."""
        k = self.filled
        for name, cum in self.cum.items():
            cum[k + 1] = cum[k] + counts.get(name, 0.0)
            self.alive[name][k + 1, : pods.get(name, 0)] = True
        self.filled += 1

    def grown(self, release: str, seconds: int) -> FloatArray:
        """Per pod, what each counter grew by over the last ``seconds``."""
        back = min(self.filled, math.ceil(seconds / SLOT))
        cum = self.cum[release]
        grown: FloatArray = cum[self.filled] - cum[self.filled - back]
        return grown

    def points(
        self, release: str, seconds: int, step: int
    ) -> tuple[list[float], FloatArray, npt.NDArray[np.bool_]]:
        """A subquery's grid over the last ``seconds``: epoch times at multiples of ``step``,
        every pod's cumulative counters then (times, pods, FIELDS), and which pods existed."""
        now = self.filled * SLOT
        first = (now - seconds) // step * step + step
        times = [t for t in range(max(first, 0), now + 1, step) if t % SLOT == 0]
        index = [t // SLOT for t in times]
        origin = (T0 - WARMUP).timestamp()
        return [origin + t for t in times], self.cum[release][index], self.alive[release][index]


_QUERY = re.compile(
    r"^sum(?: by \((?P<by>[a-z_, ]*)\))? ?\(max_over_time\((?P<sel>[^\[]+)\[(?P<sec>\d+)s\]\)"
    r" - min_over_time\((?P=sel)\[(?P=sec)s\]\)\)$"
)
_PER_SOURCE = re.compile(
    r'^label_join\(sum by \(pod, instance\) \((?P<sel>[^()]+)\), "slipway_source", "/",'
    r' "pod", "instance"\)\[(?P<sec>\d+)s:(?P<step>\d+)s\]$'
)
_SELECTOR = re.compile(r"^(?P<metric>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<matchers>.*)\}$")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')


class SimPrometheus:
    """The queries ``analysis.judges.queries`` builds, answered from a Store.

    It reads the one query shape the judges use (a sum, optionally ``by``
    labels, of ``max_over_time - min_over_time`` per series over a range) over
    the series the example model server exports, per pod: requests by
    ``code``, correct and labelled predictions, and latency buckets by ``le``.
    Any other query is an error naming it, so a judge asking for something new
    shows up here instead of being answered wrongly.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def is_online(self) -> bool:
        return True

    def query(self, promql: str) -> QueryResult:
        series = self._series(promql)
        if isinstance(series, QueryResult):
            return series
        if not series:
            return QueryResult()
        return QueryResult(value=float(sum(series.values())))

    def query_by(self, promql: str, label: str) -> QueryResult:
        series = self._series(promql, label)
        if isinstance(series, QueryResult):
            return series
        return QueryResult(series=series)

    def _series(self, promql: str, label: str | None = None) -> dict[str, float] | QueryResult:
        sub = _PER_SOURCE.match(promql)
        if sub is not None:
            return self._history(sub, promql)
        found = _QUERY.match(promql)
        if found is None:
            return QueryResult.failed(f"SimPrometheus cannot answer {promql!r}")
        by = [b.strip() for b in (found.group("by") or "").split(",") if b.strip()]
        picked = self._pick(found.group("sel"))
        if isinstance(picked, QueryResult) or picked is None:
            return picked or {}
        release, column = picked
        grown = self.store.grown(release, int(found.group("sec")))  # (pods, FIELDS)
        if column is None:  # histogram buckets, by le
            if by != ["le"]:
                return QueryResult.failed(f"SimPrometheus: buckets only by le, got {promql!r}")
            totals = np.cumsum(grown[:, 4:], axis=1).sum(axis=0)
            return {_le(b): float(v) for b, v in zip(BUCKETS, totals, strict=True)}
        per_pod = grown[:, column].sum(axis=1)
        if not by:
            return {"": float(per_pod.sum())}
        return QueryResult.failed(f"SimPrometheus: cannot group by {by} in {promql!r}")

    def _history(self, sub: re.Match[str], promql: str) -> QueryResult:
        """``queries.per_source``: each pod's summed counters at every step of the range."""
        picked = self._pick(sub.group("sel"))
        if isinstance(picked, QueryResult):
            return picked
        if picked is None or picked[1] is None:
            return QueryResult()
        release, column = picked
        times, cum, alive = self.store.points(
            release, int(sub.group("sec")), int(sub.group("step"))
        )
        values = cum[:, :, column].sum(axis=2)  # (times, pods)
        history = {}
        stamps = np.asarray(times)
        for pod in range(values.shape[1]):
            there = alive[:, pod]
            if there.any():
                points = tuple(
                    zip(stamps[there].tolist(), values[there, pod].tolist(), strict=True)
                )
                history[f"{release}-{pod}/10.0.{pod}.1:8080"] = points
        return QueryResult(history=history)

    def _pick(self, sel: str) -> tuple[str, list[int] | None] | QueryResult | None:
        """(release, counter columns; None for buckets) a selector names; None: no series."""
        selector = _SELECTOR.match(sel)
        if selector is None:
            return QueryResult.failed(f"SimPrometheus cannot read the selector {sel!r}")
        matchers = {m[0]: (m[1], m[2]) for m in _MATCHER.findall(selector.group("matchers"))}
        release = matchers.get("release", ("=", ""))[1]
        if release not in self.store.cum or matchers.get("namespace", ("=", ""))[1] != NAMESPACE:
            return None
        metric = selector.group("metric")
        if metric == "model_requests_total":
            op, code = matchers.get("code", ("", ""))
            codes = {"200": OK, "500": FAILED}
            return release, [i for c, i in codes.items() if not op or _matches(op, code, c)]
        if metric == "model_predictions_correct_total":
            return release, [CORRECT]
        if metric == "model_predictions_total":
            return release, [LABELLED]
        if metric == "model_request_duration_seconds_bucket":
            return release, None
        if metric == "model_request_duration_seconds_count":
            return release, [OK, FAILED]
        return None


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else f"{bound:g}"


def _matches(op: str, pattern: str, value: str) -> bool:
    hit = re.fullmatch(pattern, value) is not None if op in ("=~", "!~") else pattern == value
    return hit if op in ("=", "=~") else not hit


# ---------------------------------------------------------------- one rollout


@dataclass
class Traffic:
    """Where requests go now: user shares and copies per release, and ready pods."""

    users: dict[str, float]  # share of user requests per release
    copies: dict[str, float]  # share of requests mirrored to a release (users never see)
    pods: dict[str, int]


@dataclass
class Sim:
    """One rollout's world: the objects the operator reads, and what it wrote."""

    config: Config
    world: World
    rate: float
    rng: np.random.Generator
    model: ModelDeployment
    release: ModelRelease = field(default_factory=release)
    deployments: dict[str, DeploymentState] = field(default_factory=dict)
    route: LiveRoute | None = None
    services: dict[str, str] = field(default_factory=dict)
    rates: dict[tuple[str, int], tuple[int, float]] = field(default_factory=dict)
    """Bursts: each pod's error rate and the period it was drawn for."""

    def apply(self, actions: Sequence[Action]) -> None:
        """Carry out a decision's actions as the cluster would (pods ready at once)."""
        for action in actions:
            if isinstance(action, ApplyObject):
                body = action.body
                kind, name = body["kind"], body["metadata"]["name"]
                if kind == "Deployment":
                    release = body["metadata"]["labels"][c.LABEL_RELEASE]
                    self._scale(release, name, int(body["spec"].get("replicas", 1)))
                elif kind == "Service":
                    self.services[name] = service_fingerprint(body)
                elif kind == istio.KIND:
                    self.route = istio.observe(body)
                elif kind == gatewayapi.KIND:
                    accepted = copy.deepcopy(body)
                    self.route = replace(gatewayapi.observe(accepted), accepted=True)
            elif isinstance(action, ScaleDeployment):
                found = next(d for d in self.deployments.values() if d.name == action.name)
                self._scale(found.release, found.name, action.replicas)
            elif isinstance(action, DeleteDeployment):
                self.deployments = {
                    k: d for k, d in self.deployments.items() if d.name != action.name
                }
            elif isinstance(action, SetActive):
                self._model_status(active_release=action.release)
            elif isinstance(action, SetServing):
                self._model_status(serving=action.release)
            elif isinstance(action, RecordStable):
                self._model_status(stable_release=action.record.release)

    def _model_status(self, **update: Any) -> None:
        status = self.model.status.model_copy(update=update)
        self.model = self.model.model_copy(update={"status": status})

    def _scale(self, release: str, name: str, replicas: int) -> None:
        self.deployments[release] = DeploymentState(
            name=name,
            namespace=NAMESPACE,
            model="fraud",
            release=release,
            replicas=replicas,
            ready_replicas=replicas,
            available_replicas=replicas,
            updated_replicas=replicas,
            generation=1,
            observed_generation=1,
        )

    def traffic(self) -> Traffic:
        """The split the data plane applies now."""
        pods = {r: d.ready_replicas for r, d in self.deployments.items()}
        if self.config.model.spec.router is Router.REPLICAS:
            serving = self.model.status.serving
            behind = {r: n for r, n in pods.items() if serving in (None, r)}
            total = sum(behind.values())
            return Traffic({r: n / total for r, n in behind.items()} if total else {}, {}, pods)
        route = self.route
        if route is None:
            return Traffic({STABLE: 1.0}, {}, pods)
        names = {service_name(self.model, r): r for r in (STABLE, CANDIDATE)}
        total = sum(w for _, w in route.backends)
        users = {names[s]: w / total for s, w in route.backends if s in names and total}
        copies = {}
        if route.mirror is not None and route.mirror[0] in names:
            copies[names[route.mirror[0]]] = route.mirror[1] / 100.0
        return Traffic(users, copies, pods)

    def serve(self, traffic: Traffic, slot: int) -> dict[str, FloatArray]:
        """One slot's counts per pod of each release."""
        counts: dict[str, FloatArray] = {}
        for release in (STABLE, CANDIDATE):
            pods = traffic.pods.get(release, 0)
            share = traffic.users.get(release, 0.0) + traffic.copies.get(release, 0.0)
            if pods == 0 or share == 0:
                continue
            candidate = release == CANDIDATE
            truth = self.world if candidate else World("stable")
            n = self.rng.poisson(self.rate * share * SLOT / pods, size=pods).astype(np.int64)
            p = np.full(pods, truth.errors)
            if self.world.bursty:  # the world's bursts, on every pod of both versions
                period = slot * SLOT // self.world.period
                shape = 1.0 / self.world.cv**2
                for i in range(pods):
                    held = self.rates.get((release, i))
                    if held is None or held[0] != period:
                        drawn = min(1.0, float(self.rng.gamma(shape, truth.errors / shape)))
                        held = self.rates[(release, i)] = (period, drawn)
                    p[i] = held[1]
            failed = self.rng.binomial(n, p)
            row = np.zeros((self.config.model.spec.replicas, FIELDS))
            row[:pods, OK] = n - failed
            row[:pods, FAILED] = failed
            row[:pods, CORRECT] = self.rng.binomial(n, truth.accuracy)
            row[:pods, LABELLED] = n
            row[:pods, 4:] = self.rng.multinomial(n, bucket_shares(truth.slower))
            counts[release] = row
        return counts


@dataclass(frozen=True)
class Result:
    """How one rollout ended, when, what it promised, and what it exposed."""

    outcome: str  # promoted, rolled back, undecided
    seconds: float
    reason: str
    evidence: float | None  # seconds to the first passing analysis, or to a rollback
    eta_kept: bool | None  # evidence decided by the first stated ETA (None: none stated)
    exposure: float  # candidate's user share x minutes, until decided (or the horizon)
    exposed_late: bool  # still undecided, serving users, at EXPOSED_AT


def share_recorded_analyses() -> None:
    """Let ``decide``'s deep copy of status share analysis records instead of copying them.

    ``decide`` deep-copies the release's status every reconcile, and with 30
    analysis records that copy is 90 % of a simulated rollout's time. A record
    is never changed once it is in status (``record_analysis`` sets only the
    fields of the tick's new record, before it is kept), so sharing them gives
    the same decisions; ``--exact`` turns this off to check that it does.
    """
    AnalysisRecord.__deepcopy__ = _same  # type: ignore[method-assign,assignment]


def skip_idle_reconciles() -> None:
    """Reconcile only at the moments ``timing.next_look`` names, not every safety-net tick.

    In the operator a release in flight is also looked at every 10 s whatever the
    moments say; here nothing changes between moments but the clock, and
    ``next_look`` names every moment the decision may change by time alone (its
    contract), so those extra reconciles decide nothing new. ``--exact`` keeps them.
    """
    timing.SAFETY_NET = timedelta(days=365)


def _same(record: AnalysisRecord, memo: dict[int, Any] | None = None) -> AnalysisRecord:
    return record


def horizon(config: Config) -> timedelta:
    """Every pause (and a shadow phase) of the config, then AFTER_PAUSES."""
    model, policy = config.model, config.policy
    canary = model.spec.canary or (policy.spec.canary if policy else None)
    steps = canary.steps if canary else []
    pauses = sum((parse_duration(s.pause) for s in steps), timedelta())
    if policy is not None and policy.spec.require_shadow:
        pauses += timedelta(minutes=5)  # ShadowSpec's default duration
    return pauses + AFTER_PAUSES


def roll_out(config: Config, world: World, rate: float, judge: str, seed: Sequence[int]) -> Result:
    """One canary through ``decide``, tick by tick, until it ends or the horizon."""
    model = with_judge(config.model, config.policy, judge)
    end = int(horizon(config).total_seconds())
    sim = Sim(config, world, rate, np.random.default_rng(list(seed)), model)
    sim._scale(STABLE, service_name(model, STABLE), model.spec.replicas)
    warm = int(WARMUP.total_seconds()) // SLOT
    store = Store(warm + end // SLOT + 1, model.spec.replicas)
    alone = Traffic({STABLE: 1.0}, {}, {STABLE: model.spec.replicas})
    for slot in range(warm):
        store.add(sim.serve(alone, slot), alone.pods)
    provider = SimPrometheus(store)
    stable_vars = release_variables(NAMESPACE, "fraud", STABLE, "v1")
    candidate_vars = release_variables(NAMESPACE, "fraud", CANDIDATE, "v2")
    now_s, exposure = 0, 0.0
    eta_at: float | None = None
    evidence: float | None = None
    exposed_late = False
    while True:
        now = T0 + timedelta(seconds=now_s)
        situation = Situation(
            release=sim.release,
            model=sim.model,
            siblings=(),
            deployments=dict(sim.deployments),
            now=now,
            policy=config.policy,
            route=sim.route,
            services=dict(sim.services),
        )
        if analysis_due(situation):
            results = run_analysis(situation, provider, candidate_vars, stable_vars)
            situation = replace(situation, analysis=results)
            if eta_at is None:
                etas = [r.eta_seconds for r in results if r.eta_seconds]
                eta_at = now_s + max(etas) if etas else None
            if evidence is None and combine(results) is Verdict.PASS:
                evidence = now_s
        decision = decide(situation)
        sim.apply(decision.actions)
        sim.release = sim.release.model_copy(update={"status": decision.status})
        phase = decision.status.phase
        if phase.is_terminal:
            outcome = "promoted" if phase is Phase.SUCCEEDED else "rolled back"
            reason = next((c.reason for c in decision.status.conditions if c.type == "Ready"), "")
            if evidence is None and outcome == "rolled back":
                evidence = now_s
            kept = None if eta_at is None or evidence is None else evidence <= eta_at
            return Result(outcome, now_s, reason, evidence, kept, exposure, exposed_late)
        if now_s >= end:
            kept = None if eta_at is None else evidence is not None and evidence <= eta_at
            return Result("undecided", now_s, "", evidence, kept, exposure, exposed_late)
        look = decision.look_again_at or now + timedelta(seconds=SLOT)
        if decision.actions:  # the cluster changed: the watch brings the next reconcile
            look = now + timedelta(seconds=SLOT)
        later = max(now_s + SLOT, SLOT * math.ceil((look - T0).total_seconds() / SLOT))
        later = min(later, end)
        traffic = sim.traffic()
        user = traffic.users.get(CANDIDATE, 0.0)
        for slot in range(now_s // SLOT, later // SLOT):
            store.add(sim.serve(traffic, warm + slot), traffic.pods)
        exposure += user * 100 * (later - now_s) / 60.0
        if now_s < EXPOSED_AT.total_seconds() <= later and user > 0:
            exposed_late = True
        now_s = later


def run_analysis(
    situation: Situation,
    provider: SimPrometheus,
    candidate: Mapping[str, str],
    stable: Mapping[str, str],
) -> list[SLOResult]:
    """The handler's analysis call (``handlers.reconcile``), with the simulated Prometheus."""
    model = situation.model
    assert model is not None
    release = situation.release
    evidence = Evidence(
        started=release.status.started_at or situation.now,
        now=situation.now,
        budget=error_budget(model, situation.policy),
    )
    settings = analysis_settings(model, situation.policy)
    return analyze(model.spec.slos, provider, candidate, stable, settings, evidence)


# ---------------------------------------------------------------- the optimum


def _z(p: float) -> float:
    """The standard normal quantile, by bisection (no SciPy needed)."""
    low, high = -10.0, 10.0
    for _ in range(80):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if 0.5 * (1.0 + math.erf(mid / math.sqrt(2.0))) < p else (low, mid)
    return 0.5 * (low + high)


def first_share(config: Config) -> float:
    """The candidate's user share in the first canary step (the router's achieved split)."""
    model, policy = config.model, config.policy
    canary = model.spec.canary or (policy.spec.canary if policy else None)
    weight = canary.steps[0].weight if canary else 25
    if model.spec.router is Router.REPLICAS:
        pods = min(model.spec.replicas, max(1, round(model.spec.replicas * weight / 100)))
        return pods / model.spec.replicas
    return weight / 100.0


def optimum_samples(config: Config, world: World) -> float:
    """Candidate samples a fixed-sample test needs to decide ``world`` with the same error
    rates (falseRollback split over the SLOs, falsePromotion), on the true rates."""
    model = config.model
    budget = error_budget(model, config.policy)
    alpha = budget.false_rollback / len(model.spec.slos)
    z = _z(1 - alpha) + _z(1 - budget.false_promotion)
    w = first_share(config)
    ratio = w / (1 - w)  # candidate samples per stable sample
    needs: dict[str, float] = {}
    for slo in model.spec.slos:
        t = slo.threshold
        scale = 1.0
        if slo.latency is not None:
            stable = Histogram(BUCKETS, tuple(1e6 * _cdf(b, 1.0) for b in BUCKETS))
            index = tail_bucket(stable, slo.latency.quantile)
            assert index is not None and t.max_increase is not None
            bound = BUCKETS[index]
            true_s = 1 - _cdf(bound, 1.0)
            true_c = 1 - _cdf(bound, world.slower)
            allowed = histograms.tail_share_at(stable, bound / (1 + t.max_increase)) / 1e6
            limit = max(allowed, true_s * (1 + slo.latency.min_effect))
            scale = limit / true_s
            key = "latency"
        elif slo.error_rate is not None:
            true_s, true_c = STABLE_ERRORS, world.errors
            assert t.max_increase is not None
            limit = (
                true_s + t.max_increase
                if t.relative == "absolute"
                else true_s * (1 + t.max_increase)
            )
            scale = 1.0 if t.relative == "absolute" else 1 + t.max_increase
            key = "errors"
        else:
            true_s, true_c = STABLE_ACCURACY, world.accuracy
            assert t.max_decrease is not None
            limit = (
                true_s - t.max_decrease
                if t.relative == "absolute"
                else true_s * (1 - t.max_decrease)
            )
            scale = 1.0 if t.relative == "absolute" else 1 - t.max_decrease
            key = "accuracy"
        variance = true_c * (1 - true_c) + scale**2 * true_s * (1 - true_s) * ratio
        delta = abs(limit - true_c)
        needs[key] = (z**2) * variance / delta**2 if delta > 0 else math.inf
    if not world.regression:
        return max(needs.values())
    moved = (
        "latency"
        if world.slower != 1
        else "errors"
        if world.errors != STABLE_ERRORS
        else "accuracy"
    )
    return needs[moved]


def optimum_seconds(config: Config, world: World, rate: float) -> float:
    return optimum_samples(config, world) / (rate * first_share(config))


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Cell:
    """A batch of one (config, world, rate, judge) cell's rollouts."""

    config: int
    world: int
    rate: int
    judge: str
    trials: int
    seed: int
    batch: int


def run_cell(cell: Cell) -> list[Result]:
    if not EXACT:
        share_recorded_analyses()
        skip_idle_reconciles()
    config = CONFIGS[cell.config]
    world = worlds(config.model)[cell.world]
    return [
        roll_out(
            config,
            world,
            cell.rate,
            cell.judge,
            (cell.seed, cell.config, cell.world, cell.rate, cell.batch, i),
        )
        for i in range(cell.trials)
    ]


CONFIGS: list[Config] = load_configs()
EXACT = False
JUDGES = ("sequential", "threshold")


def share(results: Sequence[Result], outcome: str) -> float:
    return sum(r.outcome == outcome for r in results) / len(results) if results else math.nan


def minutes(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "-"
    if math.isinf(seconds):
        return "never"
    return (
        f"{seconds:.0f}s"
        if seconds < 100
        else f"{seconds / 60:.1f}m"
        if seconds < 6000
        else f"{seconds / 3600:.1f}h"
    )


def quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def row(results: Sequence[Result]) -> dict[str, Any]:
    decided = [math.inf if r.evidence is None else r.evidence for r in results]
    ended = [r.seconds for r in results if r.outcome != "undecided"]
    stated = [r.eta_kept for r in results if r.eta_kept is not None]
    return {
        "rollback": share(results, "rolled back"),
        "by_judge": sum(r.reason == cond.SLO_FAILED for r in results) / len(results)
        if results
        else math.nan,
        "promote": share(results, "promoted"),
        "undecided": share(results, "undecided"),
        "t50": quantile(decided, 0.5),
        "t90": quantile(decided, 0.9),
        "done": quantile(ended, 0.5),
        "eta": sum(stated) / len(stated) if stated else math.nan,
        "exposure": statistics.fmean(r.exposure for r in results),
        "late": sum(r.exposed_late for r in results) / len(results),
        "reasons": _reasons(results),
    }


def _reasons(results: Sequence[Result]) -> str:
    counted: dict[str, int] = {}
    for r in results:
        if r.outcome == "rolled back":
            counted[r.reason] = counted.get(r.reason, 0) + 1
    return ",".join(f"{k}:{v}" for k, v in sorted(counted.items(), key=lambda kv: -kv[1]))


def cells_for(args: argparse.Namespace) -> list[Cell]:
    """Every (config, world, rate, judge) cell in batches; identical worlds get more trials."""
    cells = []
    for ci, config in enumerate(CONFIGS):
        if args.only and config.name not in args.only:
            continue
        for w, world in enumerate(worlds(config.model)):
            if config.baseline_of and world.bursty:
                continue  # the variant shows exposure: independent errors suffice
            for rate in BURST_RATES if world.bursty else RATES:
                for judge in JUDGES:
                    trials = (
                        args.baseline
                        if judge != "sequential"
                        else (args.regressions if world.regression else args.identical)
                    )
                    for start in range(0, trials, BATCH):
                        cells.append(
                            Cell(
                                ci,
                                w,
                                rate,
                                judge,
                                min(BATCH, trials - start),
                                args.seed,
                                start // BATCH,
                            )
                        )
    return cells


BATCH = 4
Table = dict[tuple[int, int, int, str], list[Result]]


def report(table: Table) -> list[str]:
    """One line per (config, candidate, traffic): the sequential judge, then the baseline."""
    lines = [
        f"{'':38}{'sequential (what ships)':^86}  {'threshold (naive)':^22}",
        f"{'config':9}{'candidate':24}{'req/s':>5}  {'SLO rb':>6}      {'policy':>6}"
        f" {'promote':>7}"
        f" {'undec':>5} {'t50':>6} {'t90':>6} {'optimum':>7} {'ETA ok':>6} {'done':>6}"
        f" {'expo':>6} {'@30m':>5} {'n':>4}  {'rollback':>8} {'undec':>5} {'done':>6}",
    ]
    for ci, config in enumerate(CONFIGS):
        budget = error_budget(config.model, config.policy).false_rollback
        shown = False
        for w, world in enumerate(worlds(config.model)):
            for rate in BURST_RATES if world.bursty else RATES:
                seq = table.get((ci, w, rate, "sequential"))
                base = table.get((ci, w, rate, "threshold"))
                if not seq:
                    continue
                if not shown:
                    lines += ["", f"{config.name}: {config.note}; falseRollback {budget:.0%}"]
                    shown = True
                s, b = row(seq), row(base or [])
                mark = ""
                if not world.regression:  # the judge's promise: SLO failures only
                    mark = " ok" if s["by_judge"] <= budget else " OVER"
                eta = "-" if math.isnan(s["eta"]) else f"{s['eta']:.0%}"
                lines.append(
                    f"{config.name:9}{world.name:24}{rate:>5}  {s['by_judge']:>6.1%}{mark:5}"
                    f" {s['rollback'] - s['by_judge']:>6.1%}"
                    f"{s['promote']:>7.0%} {s['undecided']:>5.0%} {minutes(s['t50']):>6}"
                    f" {minutes(s['t90']):>6} {minutes(optimum_seconds(config, world, rate)):>7}"
                    f" {eta:>6} {minutes(s['done']):>6} {s['exposure']:>6.0f} {s['late']:>5.0%}"
                    f" {len(seq):>4}  {b['rollback']:>8.1%} {b['undecided']:>5.0%}"
                    f" {minutes(b['done']):>6}" + (f"   [{s['reasons']}]" if s["reasons"] else "")
                )
    return lines


NOTES = (
    "SLO rb: share rolled back because an SLO failed (identical candidate: a FALSE rollback by"
    " the judge, marked against the release's falseRollback budget; past a tolerance:"
    " detection); policy: share rolled back by the settings rather than an SLO failure (no"
    " pass within progressDeadline with onInconclusive rollback, or maxUndecided: for an"
    " identical candidate also a false rollback, but one the settings chose, not the judge's"
    " error); threshold rollback counts both. promote / undec: promoted,"
    " or neither by the horizon (every pause plus 40 min). t50 / t90: median and 90th"
    " percentile time from the release's start to the evidence's decision (the first analysis"
    " that passes every SLO, or the rollback; 'never': not by the horizon); optimum: the time"
    " a fixed-sample test with the same error rates needs on the true rates at the first"
    " canary step's share (a shadow phase's copies not counted). ETA ok: share of those"
    " decisions made by the first etaSeconds stated (among rollouts that stated one; the"
    " judge states the time by which it decides with 90 % probability for a candidate as good"
    " as the stable). done: median time to promotion or rollback. expo: the candidate's share"
    " of user requests x minutes until then (or the horizon), mean, in %·min (25 % for 30 min"
    " = 750); @30m: share of rollouts still undecided and serving users at 30 min. n: rollouts"
    " of the sequential judge in the row. [..]: why they were rolled back."
)


def main(argv: Sequence[str] | None = None) -> int:
    global EXACT
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--identical", type=int, default=8, help="rollouts per identical cell")
    parser.add_argument("--regressions", type=int, default=4, help="rollouts per regression cell")
    parser.add_argument("--baseline", type=int, default=4, help="rollouts per threshold cell")
    parser.add_argument(
        "--scale", type=int, default=1, help="multiply every trial count (10: a ~1 h run)"
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--only", nargs="*", help="configs to run (example, low, medium, ...)")
    parser.add_argument("--exact", action="store_true", help="deep-copy analysis records (slow)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    EXACT = args.exact
    args.identical, args.regressions, args.baseline = (
        n * args.scale for n in (args.identical, args.regressions, args.baseline)
    )
    cells = cells_for(args)
    started = time.monotonic()
    print(
        f"[bench-decisions] {len(CONFIGS)} configs; rollouts per cell: {args.identical} identical,"
        f" {args.regressions} past a tolerance, {args.baseline} for the threshold baseline;"
        f" seed {args.seed}; {len(cells)} batches on {args.workers} workers",
        flush=True,
    )
    # Slow batches (long horizons, low traffic) first, so the workers end together.
    order = sorted(cells, key=lambda c: (-horizon(CONFIGS[c.config]).total_seconds(), c.rate))
    with multiprocessing.Pool(args.workers) as pool:
        answers = pool.map(run_cell, order, chunksize=1)
    table: Table = {}
    for cell, results in zip(order, answers, strict=True):
        table.setdefault((cell.config, cell.world, cell.rate, cell.judge), []).extend(results)
    for line in report(table):
        print(line)
    print()
    for line in textwrap.wrap(NOTES, 110):
        print(line)
    print(f"\n[bench-decisions] done in {time.monotonic() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

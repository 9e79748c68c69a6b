"""Pydantic models of the three Slipway resources.

These models are the single source of truth: the CRD schemas in ``crds/`` are
generated from them (``slipway crds``), and the operator parses every object
through them, so the API server and the operator never disagree about what is
valid. YAML is camelCase, Python is snake_case, unknown fields are refused.

Rules the API server can judge on its own are attached as CEL
(``x-kubernetes-validations``); rules that need other objects (policy, the
existence of the deployment) are the operator's, reported as conditions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from slipway.api.durations import Duration
from slipway.api.phases import InconclusiveAction, Phase, Router, Strategy, Verdict

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"  # RFC 1123 label
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"  # what a Service name must be
Name = Annotated[str, StringConstraints(pattern=DNS_LABEL, min_length=1, max_length=63)]
MAX_NAME_LENGTH = 63
# A ModelDeployment's name is its Service's name, so it must be a DNS-1035 label.
ModelName = Annotated[
    str, StringConstraints(pattern=DNS_1035_LABEL, min_length=1, max_length=MAX_NAME_LENGTH)
]
NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
MAX_STEPS = 20


def cel(rule: str, message: str, **extra: str) -> dict[str, Any]:
    """One CEL rule for ``x-kubernetes-validations``."""
    return {"rule": rule, "message": message, **extra}


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
    )


class OpenModel(ApiModel):
    """A model that keeps fields it does not name (Kubernetes types we pass through)."""

    model_config = ConfigDict(extra="allow")


# ---------------------------------------------------------------- shared parts


class CanaryStep(ApiModel):
    """One step of a canary: the candidate's share, then how long to hold it."""

    weight: int = Field(
        ge=1,
        le=99,
        description="Candidate's share of traffic, percent (promotion is the 100 % step).",
    )
    pause: Duration = Field(
        default="1m",
        description="How long the step holds with passing analysis before the next one.",
    )


Steps = Annotated[
    list[CanaryStep],
    Field(
        min_length=1,
        max_length=MAX_STEPS,
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.all(s, self.filter(t, t.weight == s.weight).size() == 1)"
                    " && self.map(s, s.weight).isSorted()",
                    "step weights must strictly increase",
                )
            ]
        },
    ),
]


class CanarySpec(ApiModel):
    """Canary settings: the steps the candidate's weight walks through."""

    steps: Steps


class AnalysisSettings(ApiModel):
    """How often SLOs are analysed and how many bad ticks are tolerated."""

    interval: Duration = Field(default="30s", description="Time between analysis ticks.")
    failure_limit: int = Field(
        default=1, ge=0, le=100, description="Failed ticks tolerated; one more rolls back."
    )
    inconclusive_limit: int = Field(
        default=3, ge=0, le=100, description="Inconclusive ticks tolerated before onInconclusive."
    )
    min_samples: int = Field(
        default=1, ge=0, description="Samples an SLO needs in its window to be judged."
    )
    on_inconclusive: InconclusiveAction = Field(
        default=InconclusiveAction.HOLD,
        description="What happens past inconclusiveLimit, or when a step's progressDeadline"
        " passes without enough evidence: hold (Paused) or rollback.",
    )
    judge: Literal["sequential", "threshold"] = Field(
        default="sequential",
        description="How typed SLOs (errorRate, ratio, latency) are judged. sequential:"
        " anytime-valid tests on everything since the candidate started; Pass only once a"
        " regression beyond the tolerance is ruled out, otherwise the step waits and says how"
        " many samples it still needs. threshold: one window's point estimate. Raw PromQL"
        " SLOs are always judged by threshold.",
    )
    false_rollback: float | None = Field(
        default=None,
        gt=0,
        lt=0.5,
        description="Chance of rolling back a release that is within every tolerance, for"
        " the whole release (split over SLOs; looks are free). Default 0.05; a tier's value is"
        " a ceiling a ModelDeployment may only lower.",
    )
    false_promotion: float | None = Field(
        default=None,
        gt=0,
        lt=0.5,
        description="Chance that a regressed SLO passes. Default 0.05; a tier's value is a"
        " ceiling a ModelDeployment may only lower.",
    )
    undecided_weight: int | None = Field(
        default=None,
        ge=1,
        le=99,
        description="Canary: while the evidence leans toward a regression (an SLO's estimate"
        " is worse than its limit, or a threshold window failed) and no analysis has passed"
        " since, the candidate's weight is lowered to at most this percent; it returns to the"
        " step's weight (the step's pause starting over) once an analysis passes. Unset: the"
        " step keeps its weight while undecided. A tier's value is a ceiling a ModelDeployment"
        " may only lower.",
    )
    max_undecided: Duration | None = Field(
        default=None,
        description="Canary: how long the evidence may lean toward a regression with no"
        " analysis passing; past it, at the next analysis that still leans, the release is"
        " rolled back (UndecidedTooLong). Unset: no bound (progressDeadline and"
        " onInconclusive still apply). A tier's value is a ceiling a ModelDeployment may only"
        " shorten.",
    )


class SLOThreshold(ApiModel):
    """Absolute bounds (min/max) and/or bounds relative to the stable release."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.min) || has(self.max) || has(self.maxIncrease)"
                    " || has(self.maxDecrease)",
                    "a threshold needs at least one of min, max, maxIncrease, maxDecrease",
                ),
                cel(
                    "!has(self.min) || !has(self.max) || self.min <= self.max",
                    "min must not exceed max",
                ),
            ]
        }
    )

    min: float | None = Field(default=None, description="Candidate value must be >= min.")
    max: float | None = Field(default=None, description="Candidate value must be <= max.")
    max_increase: float | None = Field(
        default=None, ge=0, description="Largest allowed rise over the stable's value."
    )
    max_decrease: float | None = Field(
        default=None, ge=0, description="Largest allowed fall under the stable's value."
    )
    relative: Literal["ratio", "absolute"] = Field(
        default="ratio",
        description="maxIncrease/maxDecrease as a ratio of the stable's value (0.1 = 10 %)"
        " or in the metric's own unit.",
    )


MetricName = Annotated[
    str, StringConstraints(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", min_length=1, max_length=200)
]
LabelMatchers = Annotated[
    str,
    StringConstraints(
        pattern=r'^\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)\s*"([^"\\]|\\.)*"\s*'
        r'(,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)\s*"([^"\\]|\\.)*"\s*)*$',
        max_length=500,
    ),
]


class ErrorRateSLO(ApiModel):
    """Errors among requests, both counted by one requests counter.

    Judged as errors / requests of each release, since the candidate started
    (sequential) or over the window (threshold). ``max`` is a ceiling,
    ``maxIncrease`` a tolerance over the stable (ratio: 0.5 = stable x1.5).
    """

    requests: MetricName = Field(
        default="model_requests_total", description="Counter of requests, per release."
    )
    errors: LabelMatchers = Field(
        default='code=~"5.."', description="Label matchers selecting the failed requests."
    )


class RatioSLO(ApiModel):
    """good / total from two counters, e.g. correct predictions among labelled ones."""

    good: MetricName = Field(default="model_predictions_correct_total")
    total: MetricName = Field(default="model_predictions_total")
    better: Literal["higher", "lower"] = Field(
        default="higher", description="higher: accuracy-like (min, maxDecrease); lower: max."
    )


class LatencySLO(ApiModel):
    """A latency quantile judged on histogram buckets (never an interpolated quantile)."""

    histogram: MetricName = Field(
        default="model_request_duration_seconds",
        description="Histogram name (its _bucket series are read).",
    )
    quantile: float = Field(default=0.95, gt=0, lt=1)
    min_effect: float = Field(
        default=0.1,
        ge=0,
        le=10,
        description="Smallest relative rise of the tail share worth detecting (0.1 = 10 %).",
    )


class SLO(ApiModel):
    """A service-level objective: typed (errorRate, ratio, latency) or a PromQL template,
    and its threshold. Series of a release are selected by the labels namespace and
    release (what the example model server exports)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "[has(self.query), has(self.errorRate), has(self.ratio),"
                    " has(self.latency)].filter(x, x).size() == 1",
                    "an SLO needs exactly one of query, errorRate, ratio, latency",
                )
            ]
        }
    )

    name: Name
    query: NonEmpty | None = Field(
        default=None,
        description="PromQL template. Variables: {{namespace}}, {{deployment}}, {{release}},"
        " {{version}}, {{window}}; every value substituted is escaped.",
    )
    error_rate: ErrorRateSLO | None = None
    ratio: RatioSLO | None = None
    latency: LatencySLO | None = None
    threshold: SLOThreshold
    samples_query: Annotated[str, StringConstraints(min_length=1)] | None = Field(
        default=None,
        description="Optional PromQL template giving the number of samples in the window.",
    )
    window: Duration = Field(default="1m", description="Range the query looks back over.")

    @model_validator(mode="after")
    def _one_kind(self) -> SLO:
        kinds = [k for k in ("query", "error_rate", "ratio", "latency") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError("an SLO needs exactly one of query, errorRate, ratio, latency")
        return self

    @property
    def typed(self) -> bool:
        """Measured from counters by the operator (not a hand-written PromQL value)."""
        return self.query is None


class BlueGreenSpec(ApiModel):
    """Blue-green: the candidate at full size beside the stable, then one switch.

    The candidate (the preview) is reachable on the ``<model>-preview`` Service
    while every live request still goes to the stable; its pre-switch analysis
    judges whatever traffic reaches the preview (a smoke or load test). The
    switch is one change of the model's Service selector. After it the old
    stable stays at full size for ``scaleDownDelay``: a failed post-switch
    analysis (or an abort) inside it switches back at once, starting no pod.
    """

    auto_promotion: bool = Field(
        default=True,
        description="Switch by itself once the preview is available and its analysis passed;"
        " false: wait for `slipway promote` (slipway.dev/action: promote).",
    )
    auto_promotion_delay: Duration = Field(
        default="0s", description="With autoPromotion: how long to wait after that first."
    )
    scale_down_delay: Duration = Field(
        default="30s",
        description="How long the old stable stays at full size after the switch.",
    )


Hostname = Annotated[
    str,
    StringConstraints(
        pattern=r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        min_length=1,
        max_length=253,
    ),
]


class ParentRef(ApiModel):
    """A Gateway (and optionally one of its listeners) the model's HTTPRoute attaches to."""

    name: Name
    namespace: Name | None = Field(default=None, description="Default: the model's namespace.")
    section_name: Name | None = Field(default=None, description="One listener of the Gateway.")


class GatewayAPIRouting(ApiModel):
    """Router ``gatewayAPI``: Slipway owns an HTTPRoute named after the model.

    Every release is a backend of it through its own Service (``<model>-<release>``);
    canary weights are backendRef weights, shadow is a ``RequestMirror`` filter with a
    percent, blue-green is one change of the weights. The route's status (accepted by
    the Gateway or not) is read back into the release's status.
    """

    parent_refs: list[ParentRef] = Field(min_length=1, max_length=8)
    hostnames: list[Hostname] = Field(default_factory=list, max_length=16)
    path: NonEmpty = Field(
        default="/",
        pattern=r"^/",
        description="The path prefix the route matches (default: every request).",
    )


class IstioRouting(ApiModel):
    """Router ``istio``: Slipway owns a VirtualService named after the model.

    Every release is a destination through its own Service (``<model>-<release>``);
    canary weights are route weights, shadow is ``mirror`` with ``mirrorPercentage``.
    """

    hosts: list[Hostname] = Field(
        default_factory=list,
        max_length=16,
        description="Hosts the VirtualService applies to (default: the model's Service).",
    )
    gateways: list[NonEmpty] = Field(
        default_factory=list, max_length=8, description="Istio Gateways (default: the mesh)."
    )


class ShadowSpec(ApiModel):
    """A shadow phase: the candidate gets a copy of live requests and its answers are
    discarded; users only ever see the stable's. Standalone (strategy ``shadow``) it
    ends with a verdict and no promotion; before a canary or blue-green it is their
    first step (what a tier's ``requireShadow`` demands)."""

    mirror_percent: int = Field(
        default=100, ge=1, le=100, description="Share of live requests copied to the candidate."
    )
    duration: Duration = Field(
        default="5m", description="How long the shadow runs at least (analysis must pass too)."
    )
    min_agreement: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Least share of mirrored requests on which the candidate's prediction"
        " must equal the stable's (joined per request id); unset: not checked. Below 1: the"
        " judge passes once it has shown the agreement is above this, and no number of"
        " requests shows that two models agree on every request.",
    )


class Owner(ApiModel):
    """The accountable person or team."""

    name: NonEmpty
    contact: str | None = Field(default=None, description="E-mail, chat channel or pager.")


class ContainerTemplate(OpenModel):
    """A container of the model-server pod; other Kubernetes fields pass through."""

    name: Name
    image: NonEmpty


class PodSpecTemplate(OpenModel):
    """The pod spec; only the containers are checked here."""

    containers: list[ContainerTemplate] = Field(min_length=1)


class PodTemplate(OpenModel):
    """The model-server pod template (metadata and spec)."""

    metadata: dict[str, Any] | None = None
    spec: PodSpecTemplate


class MetricsSource(ApiModel):
    """Where SLO queries go when not the operator's default metrics backend."""

    provider: Literal["prometheus"] = Field(
        default="prometheus", description="Metric provider; one registry entry each."
    )
    url: NonEmpty
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)


# ---------------------------------------------------------------- ModelDeployment


class ModelDeploymentSpec(ApiModel):
    """The long-lived serving unit of one model."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.router) || self.router != 'gatewayAPI' || has(self.gatewayAPI)",
                    "router gatewayAPI needs spec.gatewayAPI.parentRefs (the Gateway the"
                    " model's HTTPRoute attaches to)",
                )
            ]
        }
    )

    owner: Owner
    tier: Name = Field(default="medium", description="Risk tier: the RolloutPolicy that applies.")
    template: PodTemplate
    container: Name | None = Field(
        default=None, description="Container that serves the model (default: the first)."
    )
    port: int = Field(default=8080, ge=1, le=65535)
    replicas: int = Field(default=2, ge=1, le=1000)
    router: Router = Router.REPLICAS
    default_strategy: Strategy = Strategy.CANARY
    canary: CanarySpec | None = None
    blue_green: BlueGreenSpec | None = None
    shadow: ShadowSpec | None = Field(
        default=None, description="A shadow phase before every canary or blue-green release."
    )
    gateway_api: GatewayAPIRouting | None = Field(default=None, alias="gatewayAPI")
    istio: IstioRouting | None = None
    analysis: AnalysisSettings | None = None
    slos: list[SLO] = Field(default_factory=list, max_length=32)
    progress_deadline: Duration = Field(
        default="5m", description="How long a release's pods may take to become available."
    )
    history_limit: int = Field(default=10, ge=1, le=100)
    metrics: MetricsSource | None = None

    @model_validator(mode="after")
    def _routed(self) -> ModelDeploymentSpec:
        if self.router is Router.GATEWAY_API and self.gateway_api is None:
            raise ValueError(
                "router gatewayAPI needs spec.gatewayAPI.parentRefs (the Gateway the model's"
                " HTTPRoute attaches to)"
            )
        return self


class Condition(ApiModel):
    """A Kubernetes-style condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: datetime | None = None
    observed_generation: int | None = None


class ModelRef(ApiModel):
    """The model artifact a release serves."""

    uri: NonEmpty
    version: Annotated[str, StringConstraints(min_length=1, max_length=63)]
    digest: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+:[a-fA-F0-9]{8,128}$")] | None = (
        None
    )


class Provenance(ApiModel):
    """Where a model came from, so every release can be traced."""

    dataset_version: str | None = None
    code_version: str | None = None
    framework: str | None = None
    hyperparameters: dict[str, str] | None = None
    trained_by: str | None = None


class ReleaseRecord(ApiModel):
    """One entry of a ModelDeployment's release history."""

    release: str
    version: str
    uri: str
    digest: str | None = None
    provenance: Provenance | None = None
    strategy: Strategy
    image: str | None = None
    promoted_at: datetime
    note: str | None = Field(default=None, description="E.g. 'rollback from fraud-v3'.")


class ModelDeploymentStatus(ApiModel):
    """What the operator last saw and did for a ModelDeployment."""

    observed_generation: int | None = None
    stable_release: str | None = None
    stable_version: str | None = None
    active_release: str | None = None
    serving: str | None = Field(
        default=None,
        description="The one release the Service sends every request to (blue-green);"
        " unset: every ready pod of the model.",
    )
    ready: str | None = Field(default=None, description="Ready pods of the stable, e.g. 2/2.")
    message: str | None = Field(
        default=None,
        description="Why the spec is invalid, if it is; else what a rollback in progress"
        " waits for.",
    )
    conditions: list[Condition] = Field(default_factory=list)
    history: list[ReleaseRecord] = Field(default_factory=list)
    handled_rollback: str | None = Field(
        default=None, description="The last rollback-to request carried out."
    )


# ---------------------------------------------------------------- ModelRelease


class ModelReleaseSpec(ApiModel):
    """One model version for one ModelDeployment. Immutable once created."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self == oldSelf",
                    "ModelRelease spec is immutable: create a new release instead",
                )
            ]
        }
    )

    deployment: ModelName = Field(description="ModelDeployment in the same namespace.")
    model: ModelRef
    provenance: Provenance | None = None
    image: NonEmpty | None = Field(default=None, description="Overrides the model container image.")
    strategy: Strategy | None = Field(default=None, description="Default: the deployment's.")
    canary: CanarySpec | None = None
    shadow: ShadowSpec | None = Field(
        default=None,
        description="This release's shadow phase (strategy shadow, or before its canary or"
        " blue-green); default: the ModelDeployment's.",
    )


class SLOResult(ApiModel):
    """One SLO's verdict in one analysis tick, with the numbers behind it."""

    slo: str
    verdict: Verdict
    value: float | None = None
    baseline: float | None = None
    samples: float | None = None
    threshold: str = ""
    reason: str = ""
    judge: str | None = Field(default=None, description="Which judge decided (typed SLOs).")
    metric: str | None = Field(
        default=None,
        description="What value, bounds and limit measure, e.g. 'ratio' or 'share slower than"
        " 0.1s' (latency is judged on the share of slow requests, never a quantile).",
    )
    lower: float | None = Field(
        default=None, description="Lower confidence bound of the candidate's value."
    )
    upper: float | None = Field(
        default=None, description="Upper confidence bound of the candidate's value."
    )
    limit: float | None = Field(default=None, description="The limit the bound is held to.")
    stable_samples: float | None = None
    samples_needed: float | None = Field(
        default=None,
        description="Candidate samples by which the SLO is decided with 90 % probability if"
        " the candidate is as good as the stable (once its estimate is past the limit: as bad"
        " as that estimate).",
    )
    eta_seconds: float | None = Field(
        default=None,
        description="Time to samplesNeeded at the candidate's pace since it first served.",
    )
    gathering: bool = Field(
        default=False,
        description="Inconclusive only because evidence is still accumulating (holds the"
        " step; not counted against inconclusiveLimit).",
    )


class AnalysisRecord(ApiModel):
    """One analysis tick."""

    at: datetime
    step: int
    verdict: Verdict
    slos: list[SLOResult] = Field(default_factory=list)
    counted: bool = Field(
        default=False,
        description="A failure counted against failureLimit (one per SLO window: failures"
        " of overlapping windows judged the same requests).",
    )


class ModelReleaseStatus(ApiModel):
    """The single source of truth for a rollout."""

    observed_generation: int | None = None
    phase: Phase = Phase.PENDING
    strategy: Strategy | None = None
    step: int | None = Field(default=None, description="Current step, 1-based.")
    step_label: str | None = Field(default=None, description="Step as n/total, for kubectl.")
    weight: int | None = Field(default=None, description="Share of traffic actually achieved.")
    desired_weight: int | None = None
    verdict: Verdict | None = None
    message: str | None = None
    deployment_name: str | None = Field(default=None, description="The release's Deployment.")
    started_at: datetime | None = None
    step_started_at: datetime | None = None
    weight_reached_at: datetime | None = Field(
        default=None,
        description="When this step's weight was first achieved; pauses count from here.",
    )
    completed_at: datetime | None = None
    switched_at: datetime | None = Field(
        default=None, description="Blue-green: when every request went to the candidate."
    )
    mirror_percent: int | None = Field(
        default=None,
        description="Shadow: share of live requests the live route copies to the candidate.",
    )
    desired_mirror_percent: int | None = None
    shadowed_at: datetime | None = Field(
        default=None, description="When the shadow phase passed (before canary/blue-green)."
    )
    route: str | None = Field(
        default=None,
        description="The live route as read back, e.g. 'HTTPRoute fraud: stable 75, v2 25;"
        " accepted by gateway/web'.",
    )
    steps: list[CanaryStep] | None = Field(
        default=None,
        max_length=MAX_STEPS,  # bounds the cost of the per-step CEL rules
        description="The canary steps resolved when the release started.",
    )
    undecided_since: datetime | None = Field(
        default=None,
        description="Canary with undecidedWeight or maxUndecided: since when the evidence has"
        " leaned toward a regression with no analysis passing (cleared by a pass).",
    )
    failures: int = 0
    inconclusives: int = 0
    conditions: list[Condition] = Field(default_factory=list)
    analysis: list[AnalysisRecord] = Field(default_factory=list)


# ---------------------------------------------------------------- RolloutPolicy


class FreezeWindow(ApiModel):
    """A period in which no release of this tier may start (times without a zone are UTC)."""

    start: datetime
    end: datetime
    reason: str = ""

    @field_validator("start", "end")
    @classmethod
    def _utc_if_naive(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)


class ApprovalGate(ApiModel):
    """Manual approval before promotion."""

    required: bool = False
    approvers: list[str] = Field(default_factory=list)


class SLOBound(ApiModel):
    """The loosest threshold a deployment of this tier may declare for an SLO."""

    name: Name
    min: float | None = None
    max: float | None = None
    max_increase: float | None = Field(default=None, ge=0)
    max_decrease: float | None = Field(default=None, ge=0)


ProvenanceField = Literal[
    "datasetVersion", "codeVersion", "framework", "hyperparameters", "trainedBy", "digest"
]


class RolloutPolicySpec(ApiModel):
    """What every release of one risk tier may do. The object's name is the tier."""

    allowed_strategies: list[Strategy] = Field(
        default_factory=lambda: [
            Strategy.DIRECT,
            Strategy.CANARY,
            Strategy.SHADOW,
            Strategy.BLUE_GREEN,
        ],
        min_length=1,
    )
    require_shadow: bool = False
    canary: CanarySpec | None = None
    analysis: AnalysisSettings | None = None
    approval: ApprovalGate | None = None
    min_release_interval: Duration | None = None
    freeze_windows: list[FreezeWindow] = Field(default_factory=list)
    required_provenance: list[ProvenanceField] = Field(default_factory=list)
    slo_bounds: list[SLOBound] = Field(default_factory=list)


# ---------------------------------------------------------------- whole objects

# What each kind's own name must be, because of the children it names. The CRDs
# carry the same pattern and length (crd.py), so the API server refuses first.
MODEL_NAME_RULE = (
    DNS_1035_LABEL,
    "a ModelDeployment's name names its Service: a DNS-1035 label (lowercase letters,"
    " digits and '-', starting with a letter, ending with a letter or digit, no dots),"
    f" at most {MAX_NAME_LENGTH} characters",
)
RELEASE_NAME_RULE = (
    DNS_LABEL,
    "a ModelRelease's name is a label value and part of its Deployment's name:"
    " an RFC 1123 label (lowercase letters, digits and '-', starting and ending with"
    f" a letter or digit, no dots), at most {MAX_NAME_LENGTH} characters",
)


def _name_problem(name: str, rule: tuple[str, str]) -> str | None:
    pattern, explanation = rule
    if len(name) <= MAX_NAME_LENGTH and re.fullmatch(pattern, name):
        return None
    return f"name {name!r} is invalid: {explanation}"


def model_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a ModelDeployment's name, or None if it can."""
    return _name_problem(name, MODEL_NAME_RULE)


def release_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a ModelRelease's name, or None if it can."""
    return _name_problem(name, RELEASE_NAME_RULE)


def _checked_name(meta: ObjectMeta, problem: Callable[[str], str | None]) -> ObjectMeta:
    found = problem(meta.name)
    if found:
        raise ValueError(found)
    return meta


class ObjectMeta(OpenModel):
    """The metadata fields the operator reads."""

    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class ModelDeployment(ApiModel):
    """A ModelDeployment as stored in the cluster."""

    model_config = ConfigDict(extra="ignore")

    metadata: ObjectMeta
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus = Field(default_factory=ModelDeploymentStatus)

    @field_validator("metadata")
    @classmethod
    def _name_can_name_a_service(cls, meta: ObjectMeta) -> ObjectMeta:
        return _checked_name(meta, model_name_problem)


class ModelRelease(ApiModel):
    """A ModelRelease as stored in the cluster."""

    model_config = ConfigDict(extra="ignore")

    metadata: ObjectMeta
    spec: ModelReleaseSpec
    status: ModelReleaseStatus = Field(default_factory=ModelReleaseStatus)

    @field_validator("metadata")
    @classmethod
    def _name_can_be_a_label(cls, meta: ObjectMeta) -> ObjectMeta:
        return _checked_name(meta, release_name_problem)


class RolloutPolicy(ApiModel):
    """A RolloutPolicy as stored in the cluster."""

    model_config = ConfigDict(extra="ignore")

    metadata: ObjectMeta
    spec: RolloutPolicySpec

"""Prediction agreement: does a shadow candidate answer the same requests as the stable does?

Why. A shadow candidate serves nobody: the gateway mirrors a copy of live requests to it and
drops its answers. Its error rate and latency say little about its model; what says most is
whether it predicts what the stable predicts on exactly the same inputs. Accuracy needs labels,
which arrive late or never; agreement needs only the two answers. The mirrored copy carries the
original's ``x-request-id`` (Envoy sets it), and each model server keeps its predictions by
request id (``GET /predictions``, examples/model-server), so the two versions' answers can be
joined per request, with no metrics backend in between.

Three pieces, kept apart like the rest of analysis (measuring vs deciding):

- ``join`` and ``judge_agreement`` are pure. The judge is the sequential judge's guard rail on
  the disagreement share (``SequentialJudge``, ``judges/sequential.py``): the same always-valid
  bounds, read at every tick without spending more than ``budget`` on a false Fail or a false
  Pass. Fail once the agreement's upper bound is below ``min_agreement``; Pass once its lower
  bound is above; otherwise it waits and says how many joined requests it needs.
- ``PredictionSource`` is the seam to the pods; ``KubePredictionSource`` reads each Ready pod
  of a release through the API server's pod proxy (the operator needs ``list`` on ``pods`` and
  ``get`` on ``pods/proxy``), so it works wherever the operator can reach the API server,
  without a route to the pod network. A pod's answer is read under bounds (``bounded.py``:
  ``MAX_ANSWER_BYTES``, ``REQUEST_TIMEOUT_SECONDS`` for the whole answer, no decoding) and
  parsed into entries only (``parse_predictions``), so a pod answering too much, too slowly
  or something else costs the operator a bounded amount of memory and time.
- ``measure_agreement`` ties them together; a source that fails gives Inconclusive with the
  reason (never a pass, never a crash).

The joined requests are an assumption worth stating: a mirror samples live traffic, so the
joined ids are a fair sample of it whatever ``mirrorPercentage`` is; requests one side never
saw (the mirror dropped them, a pod went away with its ring) only shrink the sample.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from slipway.analysis.bounded import AnswerError, AnswerTooLargeError, Bounds, read_bounded
from slipway.analysis.judges.base import Counts, CountSLO, SLOBudget
from slipway.analysis.judges.sequential import NAME as SEQUENTIAL
from slipway.analysis.judges.sequential import SequentialJudge
from slipway.api import constants as c
from slipway.api.models import SLOResult
from slipway.api.phases import Verdict
from slipway.kube.client import refused

log = logging.getLogger(__name__)

SLO_NAME: Final = "agreement"
METRIC: Final = "agreement rate"
DEFAULT_PORT: Final = 8080
PREDICTIONS_PATH: Final = "predictions"
REQUEST_TIMEOUT_SECONDS: Final = 10.0
"""The most one pod's answer may take, request to last byte (``bounded.Bounds.seconds``)."""
MAX_ANSWER_ENTRIES: Final = 50_000
"""Predictions read from one pod's answer at most: the example model server keeps a ring of
the newest 50,000 (PREDICTION_LOG_SIZE) and answers with at most 20,000 of them."""
MAX_ANSWER_BYTES: Final = 8 << 20
"""Bytes read from one pod's answer at most. A full answer of the example server is 20,000
entries of ``["<id>", 0, 1764860000.123]``: about 1.2 MiB with Envoy's 36-character request
ids, 4.6 MiB with the longest id it records (200 characters); 8 MiB holds that with room to
spare, and is what one read may add to the operator's memory (the parsed entries come on top,
at most ``MAX_ANSWER_ENTRIES`` of them)."""
MEASURE_SECONDS: Final = 20.0
"""The most one agreement measurement (both releases, every pod) may take."""
_MAX_ERROR: Final = 300  # characters of a pod's error kept in a message


@dataclass(frozen=True, slots=True)
class AgreementCounts:
    """Requests answered by both versions (``joined``), and how many got the same prediction.

    ``stable_only`` and ``candidate_only`` count the ids only one side recorded (not judged;
    shown so a mirror that joins nothing is visible).
    """

    joined: int
    agreed: int
    stable_only: int = 0
    candidate_only: int = 0

    def __post_init__(self) -> None:
        if min(self.joined, self.agreed, self.stable_only, self.candidate_only) < 0:
            raise ValueError(f"counts must be >= 0: {self}")
        if self.agreed > self.joined:
            raise ValueError(f"{self.agreed} agreed out of only {self.joined} joined")

    @property
    def disagreed(self) -> int:
        return self.joined - self.agreed

    @property
    def rate(self) -> float | None:
        """The agreement rate, or None before any request is joined."""
        return self.agreed / self.joined if self.joined else None


def join(stable: Mapping[str, int], candidate: Mapping[str, int]) -> AgreementCounts:
    """Join two versions' predictions by request id: joined = ids in both, agreed = same answer."""
    small, large = (stable, candidate) if len(stable) <= len(candidate) else (candidate, stable)
    joined = agreed = 0
    for request_id, prediction in small.items():
        other = large.get(request_id)
        if other is None:
            continue
        joined += 1
        agreed += other == prediction
    return AgreementCounts(
        joined=joined,
        agreed=agreed,
        stable_only=len(stable) - joined,
        candidate_only=len(candidate) - joined,
    )


def judge_agreement(
    counts: AgreementCounts,
    min_agreement: float,
    budget: float,
    *,
    elapsed_seconds: float | None = None,
) -> SLOResult:
    """Pass, Fail or Inconclusive on ``agreement rate >= min_agreement``, valid at every look.

    ``budget`` bounds both errors over all looks: failing a candidate whose agreement is at
    least ``min_agreement``, and passing one whose agreement is below it. ``lower``/``upper``
    are the always-valid bounds on the agreement rate. ``elapsed_seconds`` (time over which
    ``counts`` were gathered) only turns ``samplesNeeded`` into an ETA.
    """
    threshold = f">= {min_agreement:g}"
    problem = _parameter_problem(min_agreement, budget)
    if problem:
        return _inconclusive(threshold, problem, gathering=False)
    if counts.joined == 0:
        return _inconclusive(
            threshold,
            "no mirrored request was joined yet (no request id answered by both the stable"
            f" and the candidate; {_sides(counts)})",
            gathering=True,
        )
    judged = SequentialJudge().counts(
        CountSLO(name=SLO_NAME, better="higher", bound=min_agreement, metric=METRIC),
        Counts(events=counts.agreed, total=counts.joined),
        None,
        SLOBudget(fail_alpha=budget, pass_alpha=budget),
    )
    check = judged.deciding
    assert check is not None  # the guard check is always there
    needed = check.samples_needed
    eta = None
    if elapsed_seconds and elapsed_seconds > 0 and needed and needed > counts.joined:
        eta = round((needed - counts.joined) * elapsed_seconds / counts.joined, 1)
    return SLOResult(
        slo=SLO_NAME,
        verdict=judged.verdict,
        value=check.candidate,
        samples=float(counts.joined),
        threshold=threshold,
        reason=f"{judged.message} (joined by request id; {_sides(counts)})",
        judge=SEQUENTIAL,
        metric=METRIC,
        lower=_share(check.lower),
        upper=_share(check.upper),
        limit=check.limit,
        samples_needed=needed,
        eta_seconds=eta if eta is not None and math.isfinite(eta) else None,
        gathering=judged.verdict is Verdict.INCONCLUSIVE,
    )


def _parameter_problem(min_agreement: float, budget: float) -> str | None:
    if not 0.0 <= min_agreement < 1.0:
        return (
            f"minAgreement must be in [0, 1), got {min_agreement:g}: no number of samples"
            " shows that two models agree on every request"
        )
    if not 0.0 < budget < 0.5:
        return f"the error budget must be in (0, 0.5), got {budget:g}"
    return None


def _sides(counts: AgreementCounts) -> str:
    return f"{counts.stable_only:,} stable-only, {counts.candidate_only:,} candidate-only ids"


def _share(value: float | None) -> float | None:
    return None if value is None else min(1.0, max(0.0, value))


def _inconclusive(threshold: str, why: str, *, gathering: bool) -> SLOResult:
    return SLOResult(
        slo=SLO_NAME,
        verdict=Verdict.INCONCLUSIVE,
        threshold=threshold,
        reason=f"SLO {SLO_NAME}: {why}",
        judge=SEQUENTIAL,
        metric=METRIC,
        gathering=gathering,
    )


# --- where the predictions come from ----------------------------------------------------------


class PredictionSourceError(RuntimeError):
    """The predictions of a release could not be read; the message says which pod and why."""


class PredictionSource(Protocol):
    """The predictions a release's servers recorded, by request id."""

    def predictions(
        self,
        namespace: str,
        model: str,
        release: str,
        since: float,
        *,
        deadline: float | None = None,
    ) -> dict[str, int]:
        """Every prediction recorded at or after ``since`` (unix seconds) by the release's
        Ready pods, as ``{request id: prediction}``, read by ``deadline`` (monotonic seconds)
        if one is given. Raises ``PredictionSourceError``."""
        ...


class KubePredictionSource:
    """Reads ``GET /predictions?since=`` of each Ready pod through the API server's pod proxy,
    every answer under ``bounds`` (``bounded.py``: size, deadline, no decoding)."""

    def __init__(
        self,
        api: client.ApiClient,
        timeout_seconds: float = REQUEST_TIMEOUT_SECONDS,
        *,
        max_bytes: int = MAX_ANSWER_BYTES,
        max_entries: int = MAX_ANSWER_ENTRIES,
    ) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.timeout_seconds = timeout_seconds
        self.bounds = Bounds(max_bytes=max_bytes, seconds=timeout_seconds)
        self.max_entries = max_entries

    def predictions(
        self,
        namespace: str,
        model: str,
        release: str,
        since: float,
        *,
        deadline: float | None = None,
    ) -> dict[str, int]:
        """See ``PredictionSource``; pods are read one by one, any failure fails the call."""
        selector = f"{c.LABEL_MODEL}={model},{c.LABEL_RELEASE}={release}"
        what = f"listing the pods of release {release} in {namespace}"
        try:
            pods: list[Any] = self.core.list_namespaced_pod(
                namespace, label_selector=selector, _request_timeout=self.timeout_seconds
            ).items
        except _UNREACHABLE as error:
            raise PredictionSourceError(_failed(what, error)) from None
        ready = sorted((p for p in pods if _ready(p)), key=lambda p: str(p.metadata.name))
        if not ready:
            raise PredictionSourceError(
                f"no Ready pod of release {release} in {namespace} ({selector})"
            )
        entries: list[tuple[str, int, float]] = []
        for pod in ready:
            entries.extend(
                self.pod_predictions(
                    namespace, str(pod.metadata.name), pod_port(pod), since, deadline=deadline
                )
            )
        # A request id seen twice (a retry that reached two pods) keeps its latest answer.
        entries.sort(key=lambda e: e[2])
        return {request_id: prediction for request_id, prediction, _ in entries}

    def pod_predictions(
        self, namespace: str, pod: str, port: int, since: float, *, deadline: float | None = None
    ) -> list[tuple[str, int, float]]:
        """One pod's ``(request id, prediction, unix time)`` entries at or after ``since``,
        read within the bounds, and by ``deadline`` (monotonic seconds) if one is given."""
        where = f"GET /predictions of pod {namespace}/{pod} (port {port})"
        ends = time.monotonic() + self.bounds.seconds
        if deadline is not None:
            ends = min(ends, deadline)
        try:
            request = self.api.param_serialize(
                method="GET",
                resource_path="/api/v1/namespaces/{namespace}/pods/{name}/proxy/{path}",
                path_params={
                    "namespace": namespace,
                    "name": f"{pod}:{port}",
                    "path": PREDICTIONS_PATH,
                },
                query_params=[("since", repr(float(since)))],
                header_params={"Accept": "application/json", "Accept-Encoding": "identity"},
                auth_settings=["BearerToken"],
            )
            # call_api leaves the answer unread (the client asks urllib3 not to preload it):
            # read_bounded reads it, under the bounds.
            response: Any = self.api.call_api(
                *request, _request_timeout=self.bounds.timeouts(ends - time.monotonic())
            )
            body = read_bounded(response.response, self.bounds, ends)
        except AnswerError as error:
            raise PredictionSourceError(f"{where}: {error}") from None
        except _UNREACHABLE as error:
            raise PredictionSourceError(_failed(where, error)) from None
        if not 200 <= response.status <= 299:
            raise PredictionSourceError(f"{where}: HTTP {response.status}: {_error_text(body)}")
        try:
            entries, truncated = parse_predictions(body, self.max_entries)
        except AnswerError as error:
            raise PredictionSourceError(f"{where}: {error}") from None
        if truncated:
            log.warning(
                "%s: more predictions since %s than one answer holds; read the newest %d",
                where,
                since,
                len(entries),
            )
        return entries


# --- the answer, parsed as it is meant to be and no further ----------------------------------
# A general JSON parser builds whatever the bytes describe: a few MiB of "[[],[],...]" become
# some twenty times as many bytes of Python lists. These patterns accept only the one shape
# the protocol has ({"predictions": [[id, prediction, time], ...], "truncated": bool, other
# plain fields}) and build nothing but the entries, at most ``max_entries`` of them.

_WS: Final = rb"[ \t\r\n]*"
_STRING: Final = rb'"(?:[^"\\\x00-\x1f]|\\.)*"'
_NUMBER: Final = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_SPACE: Final = re.compile(_WS)
_KEY: Final = re.compile(_WS + rb"(" + _STRING + rb")" + _WS + rb":" + _WS)
_PLAIN: Final = re.compile(rb"(?:" + _STRING + rb"|" + _NUMBER + rb"|true|false|null)")
_ENTRY: Final = re.compile(
    rb"\[%(ws)s(%(string)s)%(ws)s,%(ws)s(-?(?:0|[1-9][0-9]*))%(ws)s,%(ws)s(%(number)s)%(ws)s\]"
    % {b"ws": _WS, b"string": _STRING, b"number": _NUMBER}
)


def parse_predictions(body: bytes, max_entries: int) -> tuple[list[tuple[str, int, float]], bool]:
    """A ``/predictions`` answer as (entries, truncated), or ``AnswerError`` saying where it
    stops being one. Memory: the entries and nothing else."""
    parser = _Parser(body)
    parser.expect(b"{")
    entries: list[tuple[str, int, float]] | None = None
    truncated = False
    if not parser.maybe(b"}"):
        while True:
            key = parser.key()
            if key == "predictions":
                entries = parser.entries(max_entries)
            else:
                value = parser.plain(key)
                if key == "truncated":
                    if not isinstance(value, bool):
                        raise parser.error(f"'truncated' is {value!r}, not true or false")
                    truncated = value
            if parser.maybe(b"}"):
                break
            parser.expect(b",")
    parser.end()
    if entries is None:
        raise AnswerError("the answer is not a list of predictions: it has no 'predictions'")
    return entries, truncated


class _Parser:
    """A cursor over the answer's bytes; each step matches one token or fails saying where."""

    def __init__(self, body: bytes) -> None:
        self.body, self.pos = body, 0

    def error(self, why: str) -> AnswerError:
        return AnswerError(
            f"the answer is not a list of predictions: {why} (at byte {self.pos:,} of"
            f" {len(self.body):,})"
        )

    def maybe(self, token: bytes) -> bool:
        match = _SPACE.match(self.body, self.pos)
        self.pos = match.end() if match else self.pos
        if self.body.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: bytes) -> None:
        if not self.maybe(token):
            got = self.body[self.pos : self.pos + 20]
            raise self.error(f"expected {token.decode()!r}, got {got!r}")

    def key(self) -> str:
        match = _KEY.match(self.body, self.pos)
        if match is None:
            raise self.error("expected a field name")
        self.pos = match.end()
        return str(self.decode(match.group(1)))

    def plain(self, key: str) -> Any:
        match = _PLAIN.match(self.body, self.pos)
        if match is None:
            raise self.error(f"field {key[:40]!r} is not a plain value")
        self.pos = match.end()
        return self.decode(match.group(0))

    def entries(self, max_entries: int) -> list[tuple[str, int, float]]:
        self.expect(b"[")
        found: list[tuple[str, int, float]] = []
        if self.maybe(b"]"):
            return found
        while True:
            self.maybe(b"")  # skip blanks
            match = _ENTRY.match(self.body, self.pos)
            if match is None:
                raise self.error(f"entry {len(found)} is not [request id, prediction, unix time]")
            if len(found) >= max_entries:
                raise AnswerTooLargeError(
                    f"the answer holds more than {max_entries:,} predictions, the most one"
                    " answer is read for"
                )
            request_id = self.decode(match.group(1))
            found.append((str(request_id), int(match.group(2)), float(match.group(3))))
            self.pos = match.end()
            if self.maybe(b"]"):
                return found
            self.expect(b",")

    def end(self) -> None:
        if not self.maybe(b"") or self.pos != len(self.body):
            raise self.error("more follows the answer's end")

    def decode(self, token: bytes) -> Any:
        try:
            return json.loads(token)
        except ValueError as error:
            raise self.error(f"unreadable {token[:40]!r}: {error}") from None


def _ready(pod: Any) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(cd.type == "Ready" and cd.status == "True" for cd in conditions)


def pod_port(pod: Any) -> int:
    """The model server's port: the container port named ``http``, else the first container
    port, else 8080."""
    ports = [p for container in pod.spec.containers for p in (container.ports or [])]
    named = [p for p in ports if p.name == "http"]
    chosen = named or ports
    return int(chosen[0].container_port) if chosen else DEFAULT_PORT


_UNREACHABLE: Final = (ApiException, urllib3.exceptions.HTTPError, OSError)


def _failed(what: str, error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"{what}: HTTP {error.status}: {refused(error, what).message[:_MAX_ERROR]}"
    return f"{what}: {type(error).__name__}: {str(error)[:_MAX_ERROR]}"


def _error_text(body: bytes) -> str:
    """The API server's Status message, the model server's error, or the body's start."""
    text = body.decode(errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:_MAX_ERROR] or "(no body)"
    if isinstance(parsed, dict):
        text = str(parsed.get("message") or parsed.get("error") or text)
    return text[:_MAX_ERROR]


def measure_agreement(
    source: PredictionSource,
    namespace: str,
    model: str,
    stable_release: str,
    candidate_release: str,
    since: float,
    min_agreement: float,
    budget: float,
    *,
    now: float | None = None,
    seconds: float = MEASURE_SECONDS,
) -> SLOResult:
    """Read both releases' predictions since ``since`` (unix seconds), join and judge them.

    A source that fails (a pod's answer too large, too slow or not predictions included)
    gives Inconclusive (not gathering: something is wrong) with the source's reason. Both
    reads together take at most ``seconds``.
    """
    deadline = time.monotonic() + seconds
    try:
        stable = source.predictions(namespace, model, stable_release, since, deadline=deadline)
        candidate = source.predictions(
            namespace, model, candidate_release, since, deadline=deadline
        )
    except PredictionSourceError as error:
        return _inconclusive(f">= {min_agreement:g}", str(error), gathering=False)
    elapsed = (time.time() if now is None else now) - since
    return judge_agreement(join(stable, candidate), min_agreement, budget, elapsed_seconds=elapsed)

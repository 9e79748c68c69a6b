"""A simulated data plane: real model servers and a real Prometheus behind a fake cluster.

Kept only where a real pod cannot serve: a cluster without the real node (SLIPWAY_REAL_NODE=0,
or not root: kubelet and containerd need root), where `make demo` falls back to it, and
`make bench`, whose releases run on kwok's fake nodes. The e2e scenarios and, with the real
node, the demo run real pods instead (e2e/realplane.py).

The local cluster's pods are kwok fakes: no container ever runs, so nothing would serve the
traffic Slipway's SLOs measure. This module supplies what the pods would: for every release
Deployment of Slipway's with ready pods it runs the example model server
(examples/model-server) as a local process, a real Prometheus scrapes those processes, and a
load generator splits traffic between them by the weights the cluster ACTUALLY has, the way a
Service splits it: each release gets its Deployment's ready pods / all ready pods of the model.
So a canary that the operator moves to 25 % really gets 25 % of the requests, and its injected
faults really show up in the PromQL the operator gates on.

Faults come from annotations on the release's ModelRelease (``e2e.slipway.dev/inject-*``),
so a scenario marks a release bad in the cluster, where the operator can't see it but the data
plane can. Everything listens on and talks to 127.0.0.1 only; every process started here is
stopped by ``stop()`` (``atexit`` is the last resort), and nothing is printed unless a ``log``
callback is given.

Use::

    with DataPlane(kubeconfig, "slipway-demo", prometheus_binary, log=print) as plane:
        ...  # the operator shifts weights; plane.weights(), plane.counts(), plane.snapshot()
"""

from __future__ import annotations

import argparse
import atexit
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Final, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from tests.prometheus.server import PrometheusServer, find_prometheus

from slipway.api import constants as c

REPO: Final = Path(__file__).resolve().parents[1]
MODEL_SERVER_DIR: Final = REPO / "examples" / "model-server"
MODEL_SERVER: Final = MODEL_SERVER_DIR / "model_server.py"

# The example server and its load generator are scripts, not a package (as in its tests).
if str(MODEL_SERVER_DIR) not in sys.path:
    sys.path.insert(0, str(MODEL_SERVER_DIR))
import loadgen  # noqa: E402
from model_server import DEFAULT_SEED, heldout_seed, make_dataset  # noqa: E402

HOST: Final = "127.0.0.1"

# Fault knobs: ModelRelease annotation -> (Knobs field, model-server flag, largest value).
KNOB_PREFIX: Final = "e2e.slipway.dev"
ANNOTATION_LATENCY: Final = f"{KNOB_PREFIX}/inject-latency-ms"
ANNOTATION_ERROR_RATE: Final = f"{KNOB_PREFIX}/inject-error-rate"
ANNOTATION_ACCURACY_DROP: Final = f"{KNOB_PREFIX}/inject-accuracy-drop"
_KNOBS: Final = {
    ANNOTATION_LATENCY: ("latency_ms", "--inject-latency-ms", 60_000.0),
    ANNOTATION_ERROR_RATE: ("error_rate", "--inject-error-rate", 1.0),
    ANNOTATION_ACCURACY_DROP: ("accuracy_drop", "--inject-accuracy-drop", 1.0),
}

RECONCILE_INTERVAL: Final = 0.5  # seconds between looks at the cluster
LOAD_TICK: Final = 0.1  # seconds between load-generator batches
API_TIMEOUT: Final = 5.0  # seconds any Kubernetes API call may take
STARTUP_TIMEOUT: Final = 30.0  # seconds a model server may take to print its port
RESTART_BACKOFF: Final = 2.0  # seconds before restarting a server that died
MAX_RPS: Final = 2000.0
SAMPLES: Final = 4096  # held-out samples the load generator cycles through
_LISTENING: Final = re.compile(rf"^listening on {re.escape(HOST)}:(\d+)$")

FAKE_NODE_LABEL = {"type": "kwok"}
"""Label of kwokctl's fake nodes: their pods become Ready without running anything."""
ON_FAKE_NODES: dict[str, Any] = {
    "nodeSelector": FAKE_NODE_LABEL,
    "tolerations": [
        {"key": "kwok.x-k8s.io/node", "value": "fake", "operator": "Equal", "effect": "NoSchedule"}
    ],
}
"""Pod-spec fields that pin a pod to the fake nodes. Pods whose images are made up must land
there: with the real node on (SLIPWAY_REAL_NODE=1) they would otherwise be scheduled onto it,
never pull, and never become Ready. The toleration is for the taint up.sh puts on the fake
nodes when the real node is on; without it there is no taint and it is harmless."""


def on_fake_nodes(model: dict[str, Any]) -> dict[str, Any]:
    """A ModelDeployment body whose pods land on the fake nodes this data plane stands in for."""
    spec = model["spec"]["template"].setdefault("spec", {})
    spec.update(ON_FAKE_NODES)
    return model


# --- pure parts: splitting traffic, weights from pods, knobs --------------------------------


def _largest_remainder(quotas: Mapping[str, Fraction], n: int) -> dict[str, int]:
    """Hamilton's method: ``n`` seats in proportion to non-negative ``quotas`` (any sum)."""
    out = dict.fromkeys(quotas, 0)
    total = sum(quotas.values(), Fraction(0))
    if n == 0 or total == 0:
        return out
    exact = {k: q * n / total for k, q in quotas.items()}
    for k, q in exact.items():
        out[k] = math.floor(q)
    left = n - sum(out.values())
    # Fewer seats are left than keys with a remainder, so a zero quota never gets one.
    # Ties go to the larger quota, then to the smaller key: no dependence on dict order.
    order = sorted(
        (k for k in exact if exact[k] > 0),
        key=lambda k: (out[k] - exact[k], -exact[k], k),
    )
    for k in order[:left]:
        out[k] += 1
    return out


def _fractions(weights: Mapping[str, float]) -> dict[str, Fraction]:
    out: dict[str, Fraction] = {}
    for key, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float | Fraction):
            raise TypeError(f"weight of {key!r} must be a number, got {type(weight).__name__}")
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight of {key!r} must be a finite number >= 0, got {weight!r}")
        out[key] = Fraction(weight)  # exact: no float rounding decides a seat
    return out


def _check_count(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")


def split(weights: Mapping[str, float], n: int) -> dict[str, int]:
    """Split ``n`` requests in proportion to ``weights`` by largest remainder.

    Weights are any non-negative numbers (pod counts, percentages); every key is in the
    answer, a zero weight gets 0, and the parts sum to ``n`` unless every weight is 0 (then
    all are 0: with no ready pod nothing can be served). Deterministic: equal remainders go
    to the larger weight, then to the key that sorts first.
    """
    _check_count(n)
    return _largest_remainder(_fractions(weights), n)


class Apportioner:
    """Successive splits whose running totals follow the weights.

    A load generator sends a few requests per tick; splitting each tick on its own would
    round the same way every time (3 requests at 1:1:1:1 always skip the same release). This
    keeps what each release is owed (its exact share so far minus what it got) and gives each
    request to the release furthest behind, so a running count stays within about one
    request of its exact share (the unit tests hold it under 2). When every release is owed a
    non-negative amount this is exactly the largest-remainder split. A release whose weight
    drops to 0 is forgotten at once: it gets no request for credit earned while it had pods.
    """

    def __init__(self) -> None:
        self._owed: dict[str, Fraction] = {}

    def take(self, weights: Mapping[str, float], n: int) -> dict[str, int]:
        """The next ``n`` requests, split by ``weights`` (any non-negative numbers)."""
        _check_count(n)
        shares = {k: w for k, w in _fractions(weights).items() if w > 0}
        out = dict.fromkeys(weights, 0)
        if not shares:
            self._owed = {}
            return out
        total = sum(shares.values(), Fraction(0))
        owed = {k: w * n / total + self._owed.get(k, Fraction(0)) for k, w in shares.items()}
        # What departed releases were owed is gone: re-centre so exactly n is owed in all.
        drift = (sum(owed.values(), Fraction(0)) - n) / len(owed)
        owed = {k: o - drift for k, o in owed.items()}
        for _ in range(n):
            # Furthest behind first; ties to the larger weight, then the smaller key.
            k = min(owed, key=lambda k: (-owed[k], -shares[k], k))
            owed[k] -= 1
            out[k] += 1
        self._owed = owed
        return out


@dataclass(frozen=True)
class ReleaseState:
    """What the cluster says about one release's Deployment."""

    model: str
    release: str
    version: str
    ready: int


def ready_weights(states: Iterable[ReleaseState]) -> dict[str, float]:
    """Percent of its model's ready pods, per release (0 for all when a model has none)."""
    listed = list(states)
    totals: Counter[str] = Counter()
    for s in listed:
        totals[s.model] += max(s.ready, 0)
    return {
        s.release: (100.0 * max(s.ready, 0) / totals[s.model] if totals[s.model] else 0.0)
        for s in listed
    }


@dataclass(frozen=True)
class Knobs:
    """Fault knobs of one model server (see examples/model-server/README.md)."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    accuracy_drop: float = 0.0

    def args(self) -> list[str]:
        """Model-server flags; always all of them, so no INJECT_* variable leaks in."""
        return [
            arg for name, flag, _ in _KNOBS.values() for arg in (flag, str(getattr(self, name)))
        ]

    def describe(self) -> str:
        """``error_rate=0.5``, or ``no faults``."""
        values = [(name, getattr(self, name)) for name, _, _ in _KNOBS.values()]
        return " ".join(f"{name}={value:g}" for name, value in values if value) or "no faults"


def parse_knobs(annotations: Mapping[str, str] | None) -> tuple[Knobs, tuple[str, ...]]:
    """Knobs from a ModelRelease's annotations, and what was wrong with any that are ignored."""
    values: dict[str, float] = {}
    problems: list[str] = []
    for key, (name, _, largest) in _KNOBS.items():
        raw = (annotations or {}).get(key)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            problems.append(f"{key}={raw!r} is not a number")
            continue
        if not (math.isfinite(value) and 0.0 <= value <= largest):
            problems.append(f"{key}={raw!r} must be between 0 and {largest:g}")
            continue
        values[name] = value
    return Knobs(**values), tuple(problems)


# --- what the data plane reports ---------------------------------------------------------


@dataclass(frozen=True)
class ReleaseCounts:
    """Requests the load generator owed one release, by outcome.

    ``predict``/``feedback`` map HTTP status to count (0: no answer). ``unserved`` were owed
    while its pods were ready but its server was not up yet; ``shed`` were dropped because too
    many requests were already in flight.
    """

    predict: Mapping[int, int] = field(default_factory=dict)
    feedback: Mapping[int, int] = field(default_factory=dict)
    unserved: int = 0
    shed: int = 0

    @property
    def sent(self) -> int:
        """Predictions sent (and finished), whatever their answer."""
        return sum(self.predict.values())

    @property
    def errors(self) -> int:
        """Predictions answered 5xx or not at all."""
        return sum(n for code, n in self.predict.items() if code == 0 or code >= 500)


@dataclass
class _Tally:
    predict: Counter[int] = field(default_factory=Counter)
    feedback: Counter[int] = field(default_factory=Counter)
    unserved: int = 0
    shed: int = 0

    def frozen(self) -> ReleaseCounts:
        return ReleaseCounts(dict(self.predict), dict(self.feedback), self.unserved, self.shed)


@dataclass(frozen=True)
class ReleaseView:
    """One release in a snapshot: the cluster's view, its process and its traffic."""

    model: str
    release: str
    version: str
    ready: int
    weight: float
    process: str  # starting | serving | draining | stopped
    pid: int | None
    port: int | None
    knobs: Knobs
    counts: ReleaseCounts


@dataclass(frozen=True)
class Snapshot:
    """The whole data plane at one moment, for a timeline."""

    elapsed: float  # seconds since start()
    releases: tuple[ReleaseView, ...]

    def release(self, name: str) -> ReleaseView | None:
        return next((r for r in self.releases if r.release == name), None)

    def line(self) -> str:
        """One line, e.g. ``t=12.3s fraud-v1 75% pods=3 serving sent=300 err=0 | ...``."""
        parts = []
        for r in self.releases:
            text = (
                f"{r.release} {r.weight:.0f}% pods={r.ready} {r.process}"
                f" sent={r.counts.sent} err={r.counts.errors}"
            )
            if r.counts.unserved or r.counts.shed:
                text += f" unserved={r.counts.unserved} shed={r.counts.shed}"
            parts.append(text)
        return f"t={self.elapsed:.1f}s " + (" | ".join(parts) or "no releases")


# --- one model-server process ------------------------------------------------------------


class _Server:
    """One model-server process for one release; its port comes from its first stdout line."""

    def __init__(self, argv: list[str], state: ReleaseState, knobs: Knobs, log_path: Path) -> None:
        self.state = state
        self.knobs = knobs
        self.log_path = log_path
        self.started = time.monotonic()
        self.draining_since: float | None = None
        self.announced = False
        self.port: int | None = None
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log
            )
        # Reading the port in a thread keeps the reconcile loop from waiting on numpy imports.
        self._reader = threading.Thread(
            target=self._read_port, name=f"dataplane-port-{state.release}", daemon=True
        )
        self._reader.start()

    def _read_port(self) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode(errors="replace").strip()
        match = _LISTENING.match(line)
        if match:
            self.port = int(match.group(1))

    @property
    def exited(self) -> bool:
        return self.process.poll() is not None

    @property
    def serving(self) -> bool:
        return self.port is not None and not self.exited

    def status(self) -> str:
        if self.exited:
            return "stopped"
        if self.draining_since is not None:
            return "draining"
        return "serving" if self.port is not None else "starting"

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM (the server exits cleanly), then SIGKILL; returns the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self._reader.join(timeout=1.0)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


# --- the data plane ----------------------------------------------------------------------

_ProcessView = tuple[str, int | None, int | None, Knobs]  # status, pid, port, knobs


class DataPlane:
    """Model servers, Prometheus and traffic that follow one namespace's ready pods.

    ``rps`` is the traffic each model's Service receives (predictions per second), split
    among its releases by ready pods. A release whose Deployment loses its last ready pod gets
    no new requests at once; its server keeps running for ``drain_seconds`` more, so Prometheus
    (scraping every second) records its final counters, then it is stopped. A server whose
    ModelRelease knobs change is restarted with the new ones.
    """

    def __init__(
        self,
        kubeconfig: str,
        namespace: str,
        prometheus_binary: str,
        *,
        rps: float = 40.0,
        model_server_args: Sequence[str] = (),
        seed: int = DEFAULT_SEED,
        drain_seconds: float = 2.0,
        request_timeout: float = 2.0,
        max_in_flight: int = 64,
        python: str = sys.executable,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if not (math.isfinite(rps) and 0 < rps <= MAX_RPS):
            raise ValueError(f"rps must be in (0, {MAX_RPS:g}], got {rps}")
        if not 0 < request_timeout <= loadgen.MAX_TIMEOUT_S:
            raise ValueError(f"request_timeout must be in (0, {loadgen.MAX_TIMEOUT_S}]")
        if not (math.isfinite(drain_seconds) and drain_seconds >= 0):
            raise ValueError(f"drain_seconds must be >= 0, got {drain_seconds}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.namespace = namespace
        self._kubeconfig = kubeconfig
        self._prometheus_binary = prometheus_binary
        self._rps = rps
        self._server_args = list(model_server_args)
        self._seed = seed
        self._drain = drain_seconds
        self._timeout = request_timeout
        self._python = python
        self._log_fn = log

        # Fast shared state (observations, routes, counts, views) behind one short lock;
        # acting on processes (which may wait seconds) behind another.
        self._lock = threading.Lock()
        self._act_lock = threading.Lock()
        self._stop_event = threading.Event()
        self._started_at: float | None = None
        self._phase = "new"  # new -> running -> stopped
        self._known: dict[str, ReleaseState] = {}  # every release ever seen, last state
        self._observed: dict[str, ReleaseState] = {}  # release Deployments now
        self._routes: dict[str, int] = {}  # release -> port taking new requests
        self._live_ports: frozenset[int] = frozenset()  # ports in-flight requests may use
        self._views: dict[str, _ProcessView] = {}
        self._tallies: dict[str, _Tally] = {}
        self._servers: dict[str, _Server] = {}  # guarded by _act_lock
        self._retry_at: dict[str, float] = {}
        self._spawned = itertools.count(1)
        self._last_weights: dict[str, float] | None = None
        self._targets_written: str | None = None

        self._dir: Path | None = None
        self._targets_path: Path | None = None
        self._api: client.ApiClient | None = None
        self._prometheus: PrometheusServer | None = None
        self._threads: list[threading.Thread] = []
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight = threading.BoundedSemaphore(max_in_flight)
        self._max_in_flight = max_in_flight
        self._local = threading.local()
        self._clients: set[loadgen._Client] = set()
        self._apportioners: dict[str, Apportioner] = {}
        x, y = make_dataset(SAMPLES, heldout_seed(seed))
        self._samples = [(row.tolist(), int(label)) for row, label in zip(x, y, strict=True)]
        self._sample_index = itertools.count()

    # --- lifecycle ---

    def start(self) -> DataPlane:
        """Start Prometheus, look at the cluster once, then run the loops; returns self."""
        with self._lock:
            if self._phase != "new":
                raise RuntimeError(f"a DataPlane starts once (it is {self._phase})")
            self._phase = "running"
        atexit.register(self.stop)
        try:
            self._started_at = time.monotonic()
            self._dir = Path(tempfile.mkdtemp(prefix="slipway-dataplane-"))
            self._targets_path = self._dir / "targets.json"
            self._write_targets([])
            self._api = config.new_client_from_config(config_file=self._kubeconfig)
            # Kept before it starts, so a failed start is still cleaned up by stop().
            self._prometheus = PrometheusServer(
                self._prometheus_binary, [], scrape_interval="1s", file_sd=self._targets_path
            )
            self._prometheus.start()
            self._log(f"prometheus at {self._prometheus.url}")
            self._reconcile()
            self._executor = ThreadPoolExecutor(
                max_workers=self._max_in_flight, thread_name_prefix="dataplane-request"
            )
            for target, name in ((self._reconcile_loop, "reconcile"), (self._load_loop, "load")):
                thread = threading.Thread(target=target, name=f"dataplane-{name}", daemon=True)
                thread.start()
                self._threads.append(thread)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the loops, every model server and Prometheus; remove temp files. Idempotent."""
        with self._lock:
            if self._phase == "stopped":
                return
            self._phase = "stopped"
        atexit.unregister(self.stop)
        self._stop_event.set()
        for thread in self._threads:
            thread.join(timeout=2 * API_TIMEOUT + 5)
        # Requests still in flight finish (each has a timeout) before their servers go.
        executor = self._executor
        if executor is not None:
            self._quietly("request pool", lambda: executor.shutdown(wait=True, cancel_futures=True))
        with self._lock:
            conns, self._clients = list(self._clients), set()
        for conn in conns:
            conn.close()
        with self._act_lock:
            for release in list(self._servers):
                self._quietly(f"server {release}", partial(self._retire, release))
        if self._prometheus is not None:
            self._quietly("prometheus", self._prometheus.stop)
        if self._api is not None:
            self._quietly("kubernetes client", self._api.close)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._log("data plane stopped")

    def __enter__(self) -> DataPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what callers read ---

    @property
    def prometheus_url(self) -> str:
        """Base URL of the data plane's Prometheus (http://127.0.0.1:PORT)."""
        if self._prometheus is None:
            raise RuntimeError("the data plane is not started")
        return self._prometheus.url

    def weights(self) -> dict[str, float]:
        """Percent of its model's ready pods per release Deployment, as last observed."""
        with self._lock:
            return ready_weights(self._observed.values())

    def counts(self) -> dict[str, ReleaseCounts]:
        """Requests per release since start, by outcome."""
        with self._lock:
            return {r: t.frozen() for r, t in sorted(self._tallies.items())}

    def snapshot(self) -> Snapshot:
        """Weights, processes and counts of every release seen so far."""
        with self._lock:
            weights = ready_weights(self._observed.values())
            names = sorted(set(self._known) | set(self._tallies))
            views = []
            for name in names:
                now = self._observed.get(name)
                state = now or self._known.get(name)
                process, pid, port, knobs = self._views.get(name, ("stopped", None, None, Knobs()))
                tally = self._tallies.get(name)
                views.append(
                    ReleaseView(
                        model=state.model if state else "",
                        release=name,
                        version=state.version if state else "",
                        ready=now.ready if now else 0,
                        weight=weights.get(name, 0.0),
                        process=process,
                        pid=pid,
                        port=port,
                        knobs=knobs,
                        counts=tally.frozen() if tally else ReleaseCounts(),
                    )
                )
        started = self._started_at or time.monotonic()
        views.sort(key=lambda v: (v.model, v.release))
        return Snapshot(elapsed=time.monotonic() - started, releases=tuple(views))

    def query(self, promql: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """An instant query against the data plane's Prometheus: its ``result`` list."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        # No proxy handler: a proxy from the environment must never see loopback traffic.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=timeout) as answer:
            body = json.load(answer)
        if body.get("status") != "success":
            raise RuntimeError(f"query failed: {body.get('error', body)}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def kill_prometheus(self) -> None:
        """SIGKILL the data plane's Prometheus: an outage, as the operator will see it."""
        if self._prometheus is None:
            raise RuntimeError("the data plane is not started")
        self._prometheus.kill()

    def restart_prometheus(self) -> None:
        """Start Prometheus again on the same port, config and storage."""
        if self._prometheus is None:
            raise RuntimeError("the data plane is not started")
        self._prometheus.start()

    def describe(self) -> str:
        """A snapshot plus the tails of every log, for failure reports."""
        lines = [self.snapshot().line()]
        with self._act_lock:
            for release, server in sorted(self._servers.items()):
                lines.append(f"--- model server {release} (pid {server.process.pid}) stderr:")
                lines.append(server.log_tail())
        if self._prometheus is not None:
            lines.append("--- prometheus log:")
            lines.append(self._prometheus.log_tail())
        return "\n".join(lines)

    # --- reconcile: cluster -> processes and scrape targets ---

    def _reconcile_loop(self) -> None:
        while not self._stop_event.wait(RECONCILE_INTERVAL):
            try:
                self._reconcile()
            except Exception as error:  # the loop must outlive an API hiccup
                self._log(f"reconcile failed: {type(error).__name__}: {error}")

    def _reconcile(self) -> None:
        observed = self._observe()
        annotations, versions = self._read_releases()
        # Series carry the ModelRelease's spec.model.version, as a real server would (it gets
        # SLIPWAY_MODEL_VERSION), so SLO templates' {{version}} matches; the Deployment's
        # label is only a sanitised copy of it.
        observed = {
            r: replace(s, version=versions.get(r) or s.version) for r, s in observed.items()
        }
        with self._act_lock:
            with self._lock:
                if self._phase == "stopped":
                    return  # stop() owns the processes now
                self._observed = observed
                self._known.update(observed)
            weights = ready_weights(observed.values())
            if weights != self._last_weights:
                self._last_weights = weights
                shown = ", ".join(f"{r} {w:.0f}%" for r, w in sorted(weights.items()))
                self._log(f"ready-pod weights: {shown or 'no release Deployments'}")
            self._converge(observed, annotations)
            self._publish()

    def _observe(self) -> dict[str, ReleaseState]:
        assert self._api is not None
        selector = f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY_VALUE}"
        listed = client.AppsV1Api(self._api).list_namespaced_deployment(
            self.namespace, label_selector=selector, _request_timeout=API_TIMEOUT
        )
        states: dict[str, ReleaseState] = {}
        for deployment in listed.items:
            labels = (deployment.metadata.labels if deployment.metadata else None) or {}
            model, release = labels.get(c.LABEL_MODEL), labels.get(c.LABEL_RELEASE)
            if not model or not release:
                continue  # not a release Deployment
            ready = (deployment.status.ready_replicas or 0) if deployment.status else 0
            earlier = states.get(release)
            ready += earlier.ready if earlier else 0
            version = labels.get(c.LABEL_VERSION) or release
            states[release] = ReleaseState(model, release, version, ready)
        return states

    def _read_releases(self) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
        """Annotations and spec.model.version of each ModelRelease, by name."""
        assert self._api is not None
        try:
            listed = client.CustomObjectsApi(self._api).list_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                self.namespace,
                c.PLURAL_RELEASE,
                _request_timeout=API_TIMEOUT,
            )
        except ApiException as error:
            if error.status == 404:  # no CRD (or namespace) yet: no knobs
                return {}, {}
            raise
        items: list[dict[str, Any]] = cast(dict[str, Any], listed).get("items", [])
        annotations: dict[str, dict[str, str]] = {}
        versions: dict[str, str] = {}
        for item in items:
            name = item["metadata"]["name"]
            annotations[name] = item["metadata"].get("annotations") or {}
            version = ((item.get("spec") or {}).get("model") or {}).get("version")
            if isinstance(version, str) and version:
                versions[name] = version
        return annotations, versions

    def _converge(
        self, observed: Mapping[str, ReleaseState], annotations: Mapping[str, Mapping[str, str]]
    ) -> None:
        now = time.monotonic()
        for release, state in sorted(observed.items()):
            if state.ready <= 0:
                continue
            knobs, problems = parse_knobs(annotations.get(release))
            server = self._servers.get(release)
            if server is not None:
                if server.exited:
                    rc = self._retire(release)
                    self._log(f"{release}: model server exited ({rc}):\n{server.log_tail()}")
                    self._retry_at[release] = now + RESTART_BACKOFF
                    server = None
                elif (server.state.model, server.state.version, server.knobs) != (
                    state.model,
                    state.version,
                    knobs,
                ):
                    self._log(f"{release}: restarting its model server ({knobs.describe()})")
                    self._retire(release)
                    server = None
                elif server.port is None and now - server.started > STARTUP_TIMEOUT:
                    self._retire(release)
                    self._log(f"{release}: model server printed no port in {STARTUP_TIMEOUT}s")
                    self._retry_at[release] = now + RESTART_BACKOFF
                    server = None
                elif server.draining_since is not None:
                    server.draining_since = None
                    self._log(f"{release}: ready pods again, serving")
            if server is None and now >= self._retry_at.get(release, 0.0):
                self._start_server(state, knobs, problems)
        for release, server in list(self._servers.items()):
            current = observed.get(release)
            if current is not None and current.ready > 0:
                if server.serving and not server.announced:
                    server.announced = True
                    self._log(
                        f"{release}: model server pid {server.process.pid} serving on "
                        f"{HOST}:{server.port} ({server.knobs.describe()})"
                    )
                continue
            if server.exited or (
                server.draining_since is not None and now - server.draining_since >= self._drain
            ):
                rc = self._retire(release)
                self._log(f"{release}: model server pid {server.process.pid} stopped ({rc})")
            elif server.draining_since is None:
                server.draining_since = now
                self._log(f"{release}: no ready pods, draining for {self._drain:g}s")
        self._write_targets(
            [
                {
                    "targets": [f"{HOST}:{s.port}"],
                    "labels": {
                        "namespace": self.namespace,
                        "model": s.state.model,
                        "release": s.state.release,
                        "version": s.state.version,
                    },
                }
                for _, s in sorted(self._servers.items())
                if s.serving
            ]
        )

    def _start_server(self, state: ReleaseState, knobs: Knobs, problems: Sequence[str]) -> None:
        assert self._dir is not None
        argv = [
            self._python,
            str(MODEL_SERVER),
            "--host",
            HOST,
            "--port",
            "0",
            "--seed",
            str(self._seed),
            "--version",
            state.version,
            "--release",
            state.release,
            *self._server_args,
            *knobs.args(),  # last, so a release's annotations win
        ]
        log_path = self._dir / f"{state.release}-{next(self._spawned)}.log"
        self._servers[state.release] = _Server(argv, state, knobs, log_path)
        for problem in problems:
            self._log(f"{state.release}: ignoring {problem}")
        self._log(f"{state.release}: starting model server version={state.version}")

    def _retire(self, release: str) -> int | None:
        server = self._servers.pop(release)
        return server.stop()

    def _publish(self) -> None:
        routes = {
            r: s.port
            for r, s in self._servers.items()
            if s.serving and s.draining_since is None and s.port is not None
        }
        live = frozenset(s.port for s in self._servers.values() if s.serving and s.port)
        views: dict[str, _ProcessView] = {
            r: (s.status(), s.process.pid, s.port, s.knobs) for r, s in self._servers.items()
        }
        with self._lock:
            self._routes, self._live_ports, self._views = routes, live, views

    def _write_targets(self, groups: list[dict[str, Any]]) -> None:
        """Rewrite the file_sd JSON atomically, only when it changed."""
        assert self._targets_path is not None
        text = json.dumps(groups, indent=1, sort_keys=True)
        if text == self._targets_written:
            return
        partial = self._targets_path.with_name(f".{self._targets_path.name}.tmp")
        partial.write_text(text)
        os.replace(partial, self._targets_path)
        self._targets_written = text

    # --- load: weights -> requests ---

    def _load_loop(self) -> None:
        budget = 0.0
        last = time.monotonic()
        while not self._stop_event.wait(LOAD_TICK):
            now = time.monotonic()
            # At most one second of backlog: a stalled tick must not become a burst.
            budget = min(budget + self._rps * (now - last), self._rps)
            last = now
            n = int(budget)
            budget -= n
            if n:
                try:
                    self._dispatch(n)
                except Exception as error:
                    self._log(f"load generator: {type(error).__name__}: {error}")

    def _dispatch(self, n: int) -> None:
        """Send ``n`` requests to each model, split by its releases' ready pods right now."""
        with self._lock:
            observed = list(self._observed.values())
            routes = dict(self._routes)
        by_model: dict[str, dict[str, float]] = {}
        for state in observed:
            by_model.setdefault(state.model, {})[state.release] = float(state.ready)
        for model in set(self._apportioners) - set(by_model):
            del self._apportioners[model]
        for model, weights in sorted(by_model.items()):
            shares = self._apportioners.setdefault(model, Apportioner()).take(weights, n)
            for release, count in shares.items():
                if count:
                    self._send(release, routes.get(release), count)

    def _send(self, release: str, port: int | None, count: int) -> None:
        assert self._executor is not None
        unserved = shed = 0
        if port is None:
            unserved = count  # pods are ready but the process is not up (yet)
        else:
            for _ in range(count):
                if not self._in_flight.acquire(blocking=False):
                    shed += 1
                    continue
                try:
                    self._executor.submit(self._request, release, port)
                except RuntimeError:  # the pool shut down: we are stopping
                    self._in_flight.release()
                    return
        if unserved or shed:
            with self._lock:
                tally = self._tallies.setdefault(release, _Tally())
                tally.unserved += unserved
                tally.shed += shed

    def _request(self, release: str, port: int) -> None:
        """One prediction, then its true label as feedback (as loadgen.send does)."""
        try:
            features, label = self._samples[next(self._sample_index) % len(self._samples)]
            conn = self._client(port)
            status = conn.post("/predict", {"features": features})
            feedback = None
            if status == 200:
                feedback = conn.post("/feedback", {"features": features, "label": label})
            with self._lock:
                tally = self._tallies.setdefault(release, _Tally())
                tally.predict[status] += 1
                if feedback is not None:
                    tally.feedback[feedback] += 1
        finally:
            self._in_flight.release()

    def _client(self, port: int) -> loadgen._Client:
        """This thread's keep-alive connection to ``port`` (loadgen's client: loopback only)."""
        clients: dict[int, loadgen._Client] = self._local.__dict__.setdefault("clients", {})
        live = self._live_ports
        for stale in [p for p in clients if p not in live and p != port]:
            gone = clients.pop(stale)
            gone.close()
            with self._lock:
                self._clients.discard(gone)
        conn = clients.get(port)
        if conn is None:
            conn = clients[port] = loadgen._Client(HOST, port, self._timeout)
            with self._lock:
                self._clients.add(conn)
        return conn

    # --- helpers ---

    def _log(self, message: str) -> None:
        if self._log_fn is not None:
            self._log_fn(message)

    def _quietly(self, what: str, step: Callable[[], object]) -> None:
        """Run one clean-up step; a failure is logged and the next step still runs."""
        try:
            step()
        except Exception as error:
            self._log(f"stopping {what} failed: {type(error).__name__}: {error}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run a data plane for one namespace and print a timeline until Ctrl-C."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    parser.add_argument("--rps", type=float, default=40.0)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between lines")
    ns = parser.parse_args(argv)
    if not ns.kubeconfig:
        parser.error("give --kubeconfig or set KUBECONFIG")
    binary, why = find_prometheus()
    if binary is None:
        parser.error(why)
    with DataPlane(ns.kubeconfig, ns.namespace, binary, rps=ns.rps, log=print) as plane:
        try:
            while True:
                time.sleep(ns.every)
                print(plane.snapshot().line(), flush=True)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

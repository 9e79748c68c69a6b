"""The `make demo` story: a stable v1, a canary v2 that is promoted, a canary v3 rolled back.

With the real node (SLIPWAY_REAL_NODE=1, which `make` sets when run as root) nothing is
simulated: each release runs the model-server image as pods on the real node, Prometheus
finds them through the API server, and the load goes to the model's Service ClusterIP
through kube-proxy (e2e/realplane.py). The timeline shows, next to the weight the operator
set, the split the model servers actually answered at that weight. v3's +300 ms latency is
set for the release ``fraud-v3`` in the pod template.

Without a real node (not root, or SLIPWAY_REAL_NODE=0) the cluster's pods are kwok fakes
that run nothing, so the demo falls back to the simulated data plane (e2e/dataplane.py:
one model-server process per release on 127.0.0.1, traffic split by the ready pods) and
says so. The script prints the evidence each SLO verdict rests on (samples so far and
needed, the confidence bound and its limit) and ends with ``kubectl get slipway -A -o wide``.

On a fresh machine it builds only what the first story needs before it starts (the
cluster's binaries, no helm); Envoy Gateway (only the second story needs it) and helm (only
`make test` does) build in the background meanwhile (e2e/background.py), and the second
story waits for Envoy Gateway. A failed background build is reported, the first story's
result stays on screen, and the demo says which story did what in its last lines.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests import kube
from tests.prometheus.server import find_prometheus

from e2e import gateway
from e2e.background import BackgroundBuild, BuildStepError, Step
from e2e.dataplane import DataPlane, on_fake_nodes
from e2e.demo_gateway import second_story
from e2e.operator_process import OperatorProcess
from e2e.realplane import NO_ANSWER, Faults, RealPlane, import_image, pod_template, real_node
from slipway.api import constants as c

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "slipway-demo"
MANIFESTS = ROOT / "examples" / "manifests"
STATE = ROOT / "e2e" / ".state"
BUILD = ROOT / "e2e" / "cluster" / "build.sh"
IMAGES = ROOT / "e2e" / "images" / "build.sh"
ENVOY_GATEWAY, HELM = "Envoy Gateway", "helm"
PAUSE_IMAGE, MODEL_IMAGE = "the pause image", "the model-server image"
# Enough traffic that the example's first step (25 %, 30 s) gathers the ~600 candidate
# requests its tolerances need (see examples/manifests/fraud-model.yaml).
RPS = 100.0


def say(text: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {text}", flush=True)


def load(name: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((MANIFESTS / name).read_text())
    body["metadata"]["namespace"] = NAMESPACE
    return body


def fresh_namespace(core: client.CoreV1Api, custom: client.CustomObjectsApi) -> None:
    # The operator is not running yet, so nobody would release its finalizers.
    for plural in (c.PLURAL_RELEASE, c.PLURAL_DEPLOYMENT):
        try:
            items = custom.list_namespaced_custom_object(c.GROUP, c.VERSION, NAMESPACE, plural)
        except ApiException:
            continue
        for item in items.get("items", []):
            custom.patch_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                NAMESPACE,
                plural,
                item["metadata"]["name"],
                {"metadata": {"finalizers": None}},
            )
    try:
        core.delete_namespace(NAMESPACE)
        say(f"deleting the previous {NAMESPACE} namespace")
        kube.wait_for(lambda: _gone(core), timeout=120, what=f"namespace {NAMESPACE} to go")
    except ApiException as error:
        if error.status != 404:
            raise
    # The label lets Envoy Gateway (the second story) read the namespace's routes.
    core.create_namespace(
        {
            "metadata": {
                "name": NAMESPACE,
                "labels": {gateway.WATCH_LABEL[0]: gateway.WATCH_LABEL[1]},
            }
        }
    )


def _gone(core: client.CoreV1Api) -> bool:
    try:
        core.read_namespace(NAMESPACE)
        return False
    except ApiException as error:
        return error.status == 404


def release_from(base: dict[str, Any], name: str, version: str, **extra: Any) -> dict[str, Any]:
    body = copy.deepcopy(base)
    body["metadata"]["name"] = name
    body["spec"]["model"]["version"] = version
    body["spec"]["model"]["uri"] = f"s3://models/fraud/{version}/model.npz"
    body["spec"]["provenance"]["codeVersion"] = f"git:{version}"
    for key, value in extra.items():
        if key == "annotations":
            body["metadata"]["annotations"] = value
        else:
            body["spec"][key] = value
    return body


def status_of(custom: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    obj: Any = custom.get_namespaced_custom_object(
        c.GROUP, c.VERSION, NAMESPACE, c.PLURAL_RELEASE, name
    )
    return dict(obj.get("status") or {})


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}"


def evidence(slo: dict[str, Any]) -> str:
    """One SLO's latest result as the timeline shows it: the verdict and what it rests on.

    ``n=SAMPLES/~NEEDED`` is the candidate's samples since it started and what the judge
    said it needs to decide; ``[LOWER, UPPER]`` bounds the candidate's value (valid at
    every look) and ``limit`` is what that bound is held to.
    """
    head = f"{slo['slo']} {slo['verdict']}"
    if slo.get("judge") != "sequential" or slo.get("samples") is None:
        return f"{head} {_number(slo.get('value'))} ({slo.get('threshold', '')})"
    needed = slo.get("samplesNeeded")
    samples = f"n={slo['samples']:.0f}" + (
        f"/~{needed:.0f}" if needed is not None and slo["verdict"] != "Pass" else ""
    )
    bound = (
        f" [{_number(slo.get('lower'))}, {_number(slo.get('upper'))}]"
        f" limit {_number(slo.get('limit'))}"
        if slo.get("limit") is not None
        else ""
    )
    return f"{head} {samples} {_number(slo.get('value'))}{bound}"


def last_slos(status: dict[str, Any]) -> str:
    records = status.get("analysis") or []
    if not records:
        return "no analysis yet"
    last = records[-1]
    return f"{last['verdict']}: " + "; ".join(evidence(slo) for slo in last.get("slos") or [])


class Traffic(Protocol):
    def line(self, version: str, weight: int | None) -> str: ...


class SimulatedTraffic:
    """The simulated plane's own account: weights it split by, requests per release."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    def line(self, version: str, weight: int | None) -> str:
        return f"traffic {self.plane.snapshot().line()}"


class ObservedTraffic:
    """Answers counted per model version while the operator reported one weight.

    Counting starts afresh whenever the weight changes, so each line compares the weight
    the operator set with the share of answers the candidate's pods actually gave since.
    """

    def __init__(self, plane: RealPlane) -> None:
        self.plane = plane
        self.key: tuple[str, int | None] | None = None
        self.counts: Counter[str] = Counter()

    def line(self, version: str, weight: int | None) -> str:
        load = self.plane.load
        if load is None:
            return "observed: no load yet (it starts once the stable serves)"
        fresh = load.take()
        if (version, weight) == self.key:
            self.counts.update(fresh)
            return self._summary("")
        # The weight changed: the traffic since the last look may straddle it, so it is
        # dropped; the last step's whole count is shown once more, then counting restarts.
        done = self._summary("whole step ") if sum(self.counts.values()) else ""
        old = self.key
        self.key, self.counts = (version, weight), Counter()
        moved = f"counting afresh at weight {weight or 0}%"
        return f"{done}; {moved}" if done and old and old[0] == version else moved

    def _summary(self, what: str) -> str:
        if self.key is None:
            return ""
        version, weight = self.key
        n = sum(v for who, v in self.counts.items() if who != NO_ANSWER)
        share = 100.0 * self.counts[version] / n if n else 0.0
        answers = ", ".join(f"{who} {v}" for who, v in sorted(self.counts.items()))
        return (
            f"observed {what}at weight {weight or 0}%: {version} answered {share:.1f}% of {n}"
            f" requests through the Service ({answers})"
        )


def follow(
    custom: client.CustomObjectsApi, traffic: Traffic, name: str, until: set[str]
) -> dict[str, Any]:
    """Print a timeline line whenever something changes, until a phase in ``until``."""
    shown = ""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = status_of(custom, name)
        version = str(status.get("version") or name.rsplit("-", 1)[-1])
        observed = traffic.line(version, status.get("weight"))
        line = (
            f"{name}: {status.get('phase', '-'):<11} step {status.get('stepLabel', '-'):<9}"
            f" weight {status.get('weight', 0):>3}% | {last_slos(status)}"
        )
        if line != shown:
            say(line)
            say(f"    {observed}")
            shown = line
        if status.get("phase") in until:
            return status
        time.sleep(1)
    raise TimeoutError(f"{name} did not reach {until} in 300s")


def cluster_binaries() -> Path:
    """Build (cached) what starting the cluster needs, no more (`build.sh cluster`: no
    helm); its progress goes to stderr. The folder of the binaries."""
    out = subprocess.run(
        ["bash", str(BUILD), "cluster"], stdout=subprocess.PIPE, text=True, check=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def early_builds() -> list[Step]:
    """The real node's images (root only): they need no cluster, so they build beside the
    cluster's binaries, niced (the Go build keeps the CPU; debootstrap mostly waits on the
    network and the disk). Cached images take a second. node-up.sh builds them otherwise;
    images/build.sh holds a lock, so it never builds one twice at a time."""
    if os.environ.get("SLIPWAY_REAL_NODE") != "1" or os.geteuid() != 0:
        return []
    return [
        Step(PAUSE_IMAGE, ["bash", str(IMAGES), "pause"]),
        Step(MODEL_IMAGE, ["bash", str(IMAGES), "model-server"]),
    ]


def later_builds(bin_dir: Path) -> list[Step]:
    """What the first story does not need and is not cached yet: Envoy Gateway when the
    second story will run (real node and gateway on), and helm (`make test` uses it)."""
    steps = []
    if os.environ.get("SLIPWAY_REAL_NODE") == "1" and gateway.enabled() and not gateway.cached()[0]:
        steps.append(Step(ENVOY_GATEWAY, ["bash", str(gateway.SCRIPT), "prepare"]))
    if not (bin_dir / "helm").exists():
        steps.append(Step(HELM, ["bash", str(BUILD), "all"]))
    return steps


def main() -> int:
    images = BackgroundBuild(early_builds(), STATE / "demo-images.log")
    try:
        say("building what the first story needs (cached after the first run): the cluster")
        if images.steps:
            say(f"   and beside it the real node's images (nice -n 19, log {images.log})")
            images.start()
        bin_dir = cluster_binaries()
        for step in images.steps:
            try:
                images.wait(step.name, say)
            except BuildStepError as error:
                raise SystemExit(f"[demo] the first story cannot run: {error}") from None
    finally:
        images.stop()
    # The traffic CRDs (seconds, cached) before the background starts: it fetches them too.
    kube.traffic_crd_files()
    background = BackgroundBuild(later_builds(bin_dir), STATE / "demo-background.log")
    if background.steps:
        say(
            "building in the background (nice -n 19) while the first story runs: "
            + ", then ".join(step.name for step in background.steps)
            + f"; its progress goes to {background.log}"
        )
        background.start()
    try:
        return run_stories(background, bin_dir)
    finally:
        cut = background.stop()
        if cut:
            say(
                f"stopped the unfinished background build of {' and '.join(cut)}: the next"
                " `make demo` or `make test` builds it, Go's build cache keeps what was compiled"
            )


def run_stories(background: BackgroundBuild, bin_dir: Path) -> int:
    # Only an explicit opt-in points the demo at another cluster: a KUBECONFIG left
    # in the environment may well be production.
    kubeconfig = os.environ.get("SLIPWAY_DEMO_KUBECONFIG", "")
    if not kubeconfig:
        say("starting (or reusing) the local cluster")
        kubeconfig = kube.local_cluster_kubeconfig()
    api = kube.api_client(kubeconfig)
    say(f"cluster ready: Kubernetes {kube.server_version(api)}; installing CRDs")
    kube.install_crds(api)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    fresh_namespace(core, custom)

    say("making sure Prometheus is installed (Debian package)")
    prometheus, why = find_prometheus()
    if prometheus is None:
        raise SystemExit(f"no Prometheus for the demo: {why}")

    STATE.mkdir(parents=True, exist_ok=True)
    operator_log = STATE / "demo-operator.log"
    node = real_node(api)
    model = load("fraud-model.yaml")
    with contextlib.ExitStack() as stack:
        real: RealPlane | None = None
        image = ""
        traffic: Traffic
        if node is not None:
            say(f"real node {node.name}: building (cached) and importing the model-server image")
            image = import_image()
            # v3's fault is set for that release in the (shared) pod template.
            model["spec"]["template"] = pod_template(image, {"fraud-v3": Faults(latency_ms=300)})
            real = stack.enter_context(RealPlane(prometheus, kubeconfig, NAMESPACE, node, rps=RPS))
            prometheus_url, traffic = real.prometheus_url, ObservedTraffic(real)
            say(
                f"real pods on {node.name}: Prometheus at {prometheus_url} finds them through"
                " the API server; the load goes to the Service's ClusterIP (kube-proxy)"
            )
        else:
            say(
                "no real node (run `make demo` as root, SLIPWAY_REAL_NODE=1): the pods are kwok"
                " fakes, so model servers run as local processes (simulated data plane)"
            )
            model = on_fake_nodes(model)
            plane = stack.enter_context(DataPlane(kubeconfig, NAMESPACE, prometheus, rps=RPS))
            prometheus_url, traffic = plane.prometheus_url, SimulatedTraffic(plane)
            say(f"data plane up: Prometheus at {prometheus_url}, model servers on 127.0.0.1")
        operator_log.unlink(missing_ok=True)
        operator = OperatorProcess(
            kubeconfig, [NAMESPACE], operator_log, prometheus_url=prometheus_url
        ).start()
        stack.callback(operator.stop)
        say(f"operator running (log {operator_log})")
        custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, NAMESPACE, c.PLURAL_DEPLOYMENT, model
        )
        base = load("fraud-v1.yaml")
        say("1) first release fraud-v1: nothing to protect, it becomes stable once available")
        custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, NAMESPACE, c.PLURAL_RELEASE, base
        )
        follow(custom, traffic, "fraud-v1", {"Succeeded", "Failed"})
        if real is not None:
            real.serve()
            say(f"load: {RPS:g} requests/s to the Service fraud, one connection each")
            real.wait_scraped("fraud-v1", int(model["spec"]["replicas"]))
        time.sleep(8)  # let v1 build up a baseline in Prometheus

        say(
            "timeline per SLO: verdict, n=candidate samples/~needed to decide, the"
            " candidate's value, [lower, upper] bound valid at every look, and the limit"
            " (latency: the share of requests slower than the stable's p95 bucket)"
        )
        say("2) canary fraud-v2: same quality, should pass every SLO and be promoted")
        v2 = release_from(base, "fraud-v2", "v2", strategy="canary")
        custom.create_namespaced_custom_object(c.GROUP, c.VERSION, NAMESPACE, c.PLURAL_RELEASE, v2)
        v2_status = follow(custom, traffic, "fraud-v2", {"Succeeded", "RolledBack", "Failed"})
        time.sleep(8)

        say("3) canary fraud-v3: +300 ms latency injected, should be rolled back automatically")
        v3 = release_from(
            base,
            "fraud-v3",
            "v3",
            strategy="canary",
            annotations={"e2e.slipway.dev/inject-latency-ms": "300"},
        )
        custom.create_namespaced_custom_object(c.GROUP, c.VERSION, NAMESPACE, c.PLURAL_RELEASE, v3)
        v3_status = follow(custom, traffic, "fraud-v3", {"Succeeded", "RolledBack", "Failed"})
        say(f"fraud-v3 verdict: {v3_status.get('message')}")
        first_ok = v2_status.get("phase") == "Succeeded" and v3_status.get("phase") == "RolledBack"
        first = (
            "as expected (fraud-v2 promoted, fraud-v3 rolled back)"
            if first_ok
            else f"NOT as expected: fraud-v2 {v2_status.get('phase')} (expected Succeeded),"
            f" fraud-v3 {v3_status.get('phase')} (expected RolledBack)"
        )
        say(f"first story: {first}")

        second: bool | None = None
        if real is not None and gateway.enabled():
            if real.load is not None:
                real.load.stop()  # the second story sends its own load, through Envoy
            say("second story: router gatewayAPI, a real Envoy (Envoy Gateway) before real pods")
            try:
                waited = background.wait(ENVOY_GATEWAY, say)
            except BuildStepError as error:
                say(f"second story NOT run: {error}")
                second_said = "NOT run: the background build of Envoy Gateway failed (above)"
                second = False
            else:
                if waited >= 1:
                    say(f"Envoy Gateway built (the second story waited {waited:.0f} s for it)")
                second = second_story(api, kubeconfig, NAMESPACE, image, say)
                second_said = "as expected" if second else "NOT as expected (see above)"
        else:
            second_said = "skipped"
            say(
                "second story (gatewayAPI through a real Envoy: shadow, blue-green) skipped: it"
                " needs the real node and the gateway (`make demo` as root)"
            )

    kubectl = bin_dir / "kubectl"
    shutil.rmtree(STATE / "kubectl-cache", ignore_errors=True)  # stale discovery hides CRDs
    say("kubectl get slipway -A -o wide")
    subprocess.run(
        [
            str(kubectl),
            "--kubeconfig",
            kubeconfig,
            "--cache-dir",
            str(STATE / "kubectl-cache"),
            "get",
            "slipway",
            "-A",
            "-o",
            "wide",
        ],
        check=True,
    )
    ok = first_ok and second is not False
    say(f"export KUBECONFIG={kubeconfig} to look around; `make cluster-down` stops the cluster")
    say(f"first story (canary, router replicas): {first}")
    say(f"second story (shadow and blue-green, router gatewayAPI): {second_said}")
    say("demo " + ("finished as expected" if ok else "did NOT end as expected (see above)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

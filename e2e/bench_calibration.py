"""`make bench-calibration`: A/A rollouts end to end, counted (a benchmark, not a test).

Why. ``make bench-decisions`` measures the judges on synthetic streams; this
checks the same promise where it has to hold: the real operator, judging the
example's typed SLOs (examples/manifests/fraud-model.yaml, tolerances and
steps as shipped) from a real Prometheus scraping real model-server processes
(the simulated data plane, e2e/dataplane.py). Every candidate is identical to
its stable (same model, same seed, no fault injected), so every rollback is a
false rollback, and a release still undecided at the end was held for lack of
evidence the example's steps should have gathered.

How. ``--lanes`` namespaces run side by side (each its own data plane and
Prometheus at ``--rps``; one operator watches them all). In each lane a chain
of releases: v1 becomes the stable directly, then every next version is a
canary of the one before, so each rollout is A/A against the live stable.
A rollout still in flight after the example's pauses, its progressDeadline and
a minute more is counted as held and aborted, so the chain goes on. Printed:
rolled back / promoted / held, the median time from creating a release to its
promotion, and the candidate samples its first passing analysis rested on.
Two lanes at 100 req/s suit a 2-core machine (about 10 minutes for 20).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests import kube
from tests.e2e.scenario import release
from tests.prometheus.server import find_prometheus

from e2e.dataplane import DataPlane, on_fake_nodes
from e2e.operator_process import OperatorProcess
from slipway.api import constants as c
from slipway.api.durations import parse_duration

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "examples" / "manifests" / "fraud-model.yaml"
STATE = ROOT / "e2e" / ".state"
TERMINAL = {"Succeeded", "RolledBack", "Failed"}
GRACE_SECONDS = 60.0


def say(text: str) -> None:
    print(f"[calibration {time.strftime('%H:%M:%S')}] {text}", flush=True)


@dataclass(frozen=True)
class Outcome:
    """One A/A rollout, as it ended."""

    lane: int
    release: str
    outcome: str  # promoted, rolled back, held, failed
    seconds: float
    samples_at_pass: float | None
    message: str


def example_model(namespace: str, prometheus_url: str) -> dict[str, Any]:
    """The example ModelDeployment as shipped, pointed at this lane's Prometheus."""
    body: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    body["metadata"]["namespace"] = namespace
    body["spec"]["metrics"] = {"url": prometheus_url, "timeoutSeconds": 2}
    return on_fake_nodes(body)


def budget_seconds(model: dict[str, Any]) -> float:
    """How long one rollout may take before it counts as held."""
    pauses = sum(
        parse_duration(step.get("pause", "0s")).total_seconds()
        for step in model["spec"]["canary"]["steps"]
    )
    deadline = parse_duration(model["spec"]["progressDeadline"]).total_seconds()
    return pauses + deadline + GRACE_SECONDS


class Lane:
    """One namespace, its data plane and its chain of A/A releases."""

    def __init__(self, index: int, api: client.ApiClient, namespace: str, plane: DataPlane) -> None:
        self.index, self.ns, self.plane = index, namespace, plane
        self.custom = client.CustomObjectsApi(api)
        self.outcomes: list[Outcome] = []
        self.error: BaseException | None = None

    def create(self, plural: str, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(c.GROUP, c.VERSION, self.ns, plural, body)

    def status(self, name: str) -> dict[str, Any]:
        obj: Any = self.custom.get_namespaced_custom_object(
            c.GROUP, c.VERSION, self.ns, c.PLURAL_RELEASE, name
        )
        return dict(obj.get("status") or {})

    def run(self, rollouts: int) -> None:
        try:
            model = example_model(self.ns, self.plane.prometheus_url)
            self.create(c.PLURAL_DEPLOYMENT, model)
            self.create(c.PLURAL_RELEASE, release(self.ns, "fraud-v1", "v1"))
            kube.wait_for(
                lambda: self.status("fraud-v1").get("phase") == "Succeeded", 120, "fraud-v1"
            )
            time.sleep(5)  # the stable's series exist before the first candidate
            limit = budget_seconds(model)
            for n in range(2, rollouts + 2):
                self.outcomes.append(self.one(f"fraud-v{n}", f"v{n}", limit))
                say(f"lane {self.index}: {self.outcomes[-1].release} {self.describe(-1)}")
        except BaseException as error:  # reported by main, the other lanes go on
            self.error = error

    def describe(self, i: int) -> str:
        o = self.outcomes[i]
        samples = f", passed on {o.samples_at_pass:.0f} samples" if o.samples_at_pass else ""
        return f"{o.outcome} after {o.seconds:.0f}s{samples}: {o.message[:160]}"

    def one(self, name: str, version: str, limit: float) -> Outcome:
        self.create(c.PLURAL_RELEASE, release(self.ns, name, version, strategy="canary"))
        began = time.monotonic()
        status: dict[str, Any] = {}
        while time.monotonic() - began < limit:
            status = self.status(name)
            if status.get("phase") in TERMINAL:
                break
            time.sleep(0.5)
        seconds = time.monotonic() - began
        phase = status.get("phase")
        outcome = {"Succeeded": "promoted", "RolledBack": "rolled back", "Failed": "failed"}.get(
            str(phase), "held"
        )
        if outcome == "held":
            self.abort(name)
        return Outcome(
            self.index,
            name,
            outcome,
            seconds,
            first_pass_samples(status),
            str(status.get("message", "")),
        )

    def abort(self, name: str) -> None:
        """End a held rollout (back to the stable) so the chain can go on."""
        self.custom.patch_namespaced_custom_object(
            c.GROUP,
            c.VERSION,
            self.ns,
            c.PLURAL_RELEASE,
            name,
            {"metadata": {"annotations": {c.ANNOTATION_ACTION: "abort"}}},
        )
        kube.wait_for(
            lambda: self.status(name).get("phase") in TERMINAL, 60, f"{name} to be aborted"
        )


def first_pass_samples(status: dict[str, Any]) -> float | None:
    """Fewest candidate samples any SLO had at the first passing analysis."""
    for record in status.get("analysis") or []:
        if record.get("verdict") == "Pass":
            counts = [s["samples"] for s in record.get("slos", []) if s.get("samples")]
            return min(counts) if counts else None
    return None


def report(outcomes: list[Outcome]) -> list[str]:
    count = {k: sum(o.outcome == k for o in outcomes) for k in ("rolled back", "promoted", "held")}
    failed = len(outcomes) - sum(count.values())
    promoted = [o for o in outcomes if o.outcome == "promoted"]
    lines = [
        f"A/A rollouts end to end: {len(outcomes)}",
        f"  rolled back (false rollbacks): {count['rolled back']}",
        f"  promoted:                      {count['promoted']}",
        f"  held (no decision in time):    {count['held']}",
    ]
    if failed:
        lines.append(f"  failed (not a verdict):        {failed}")
    if promoted:
        times = [o.seconds for o in promoted]
        samples = [o.samples_at_pass for o in promoted if o.samples_at_pass]
        lines.append(
            f"  time to promotion: median {statistics.median(times):.0f}s"
            f" (min {min(times):.0f}s, max {max(times):.0f}s)"
        )
        if samples:
            lines.append(
                f"  candidate samples at the first passing analysis: median"
                f" {statistics.median(samples):.0f}"
            )
    for o in outcomes:
        if o.outcome != "promoted":
            lines.append(f"  lane {o.lane} {o.release}: {o.outcome}: {o.message[:300]}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rollouts", type=int, default=20, help="A/A rollouts in all (20)")
    parser.add_argument("--lanes", type=int, default=2, help="namespaces side by side (2)")
    parser.add_argument("--rps", type=float, default=100.0, help="traffic per lane (100)")
    args = parser.parse_args(argv)
    if args.rollouts < 1 or args.lanes < 1:
        parser.error("--rollouts and --lanes must be at least 1")

    prometheus, why = find_prometheus()
    if prometheus is None:
        raise SystemExit(f"no Prometheus: {why}")
    kubeconfig = kube.local_cluster_kubeconfig()
    api = kube.api_client(kubeconfig)
    kube.install_crds(api)
    core = client.CoreV1Api(api)
    names = [f"slipway-calib-{uuid.uuid4().hex[:6]}-{i}" for i in range(args.lanes)]
    share, extra = divmod(args.rollouts, args.lanes)
    per_lane = [share + (i < extra) for i in range(args.lanes)]
    STATE.mkdir(parents=True, exist_ok=True)
    log = STATE / "calibration-operator.log"
    log.unlink(missing_ok=True)
    began = time.monotonic()
    lanes: list[Lane] = []
    with ExitStack() as stack:
        for name in names:
            labels = {"slipway.dev/test": "true"}
            core.create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
            )
            stack.callback(_delete_namespace, core, name)
        planes = [
            stack.enter_context(DataPlane(kubeconfig, name, prometheus, rps=args.rps))
            for name in names
        ]
        # One operator for every lane; it stops first, before the namespaces go (LIFO),
        # after the releases are deleted so nothing is left holding a finalizer.
        operator = OperatorProcess(kubeconfig, names, log).start()
        stack.callback(operator.stop)
        stack.callback(_delete_releases, api, names)
        say(
            f"{args.rollouts} A/A rollouts in {args.lanes} lanes at {args.rps:g} req/s each;"
            f" example: {MANIFEST.relative_to(ROOT)}; operator log {log}"
        )
        lanes = [
            Lane(i, api, name, plane)
            for i, (name, plane) in enumerate(zip(names, planes, strict=True))
        ]
        threads = [
            threading.Thread(target=lane.run, args=(count,), name=f"lane-{lane.index}")
            for lane, count in zip(lanes, per_lane, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    outcomes = [o for lane in lanes for o in lane.outcomes]
    for line in report(outcomes):
        print(line)
    print(f"  wall time: {time.monotonic() - began:.0f}s")
    errors = [lane.error for lane in lanes if lane.error is not None]
    for error in errors:
        print(f"  a lane stopped early: {type(error).__name__}: {error}", file=sys.stderr)
    return 1 if errors or len(outcomes) < args.rollouts else 0


def _delete_releases(api: client.ApiClient, namespaces: list[str]) -> None:
    custom = client.CustomObjectsApi(api)
    for namespace in namespaces:
        for plural in (c.PLURAL_RELEASE, c.PLURAL_DEPLOYMENT):
            with suppress(ApiException):
                custom.delete_collection_namespaced_custom_object(
                    c.GROUP, c.VERSION, namespace, plural
                )
    time.sleep(5)  # the operator releases their finalizers


def _delete_namespace(core: client.CoreV1Api, name: str) -> None:
    with suppress(ApiException):
        core.delete_namespace(name)


if __name__ == "__main__":
    sys.exit(main())

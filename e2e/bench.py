"""`make bench`: rollout figures on the local cluster, printed (not asserted).

1. Rollback latency: from the moment the candidate's regression is visible in
   Prometheus (its error share crosses the SLO's 2 % tolerance) to the candidate's share
   reaching zero (no ready pods), beside the analysis interval.
2. Promotion overhead per step beyond the configured pauses.
3. Prometheus queries per analysis tick per release (operator's own counters).
4. Kubernetes API writes per release step, and while idle (must be zero).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client
from tests import kube
from tests.e2e.scenario import KNOB_ERRORS, fast_model, release
from tests.prometheus.server import find_prometheus, free_port

from e2e.dataplane import DataPlane
from e2e.operator_process import OperatorProcess, scrape, total
from slipway.analysis.judges.queries import error_rate_queries
from slipway.api import constants as c
from slipway.api.durations import parse_duration

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / "e2e" / ".state"


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def grown(before: dict[str, float], after: dict[str, float], metric: str, label: str) -> str:
    """How much each series of a counter grew, by one label's value: ``a 3, b 1``."""
    marker = label + '="'
    parts = []
    for key in sorted(after):
        if key.startswith(metric + "{") and marker in key:
            delta = after[key] - before.get(key, 0.0)
            value = key.split(marker)[1].split('"')[0]
            if delta:
                parts.append(f"{value} {delta:.0f}")
    return ", ".join(parts) or "none"


class Bench:
    def __init__(self, api: client.ApiClient, namespace: str, plane: DataPlane, port: int) -> None:
        self.api, self.ns, self.plane, self.port = api, namespace, plane, port
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)

    def create(self, plural: str, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(c.GROUP, c.VERSION, self.ns, plural, body)

    def patch_model(self, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            c.GROUP, c.VERSION, self.ns, c.PLURAL_DEPLOYMENT, "fraud", {"spec": spec}
        )
        time.sleep(3.5)  # one model tick, so the operator's index has it

    def status(self, name: str) -> dict[str, Any]:
        obj: Any = self.custom.get_namespaced_custom_object(
            c.GROUP, c.VERSION, self.ns, c.PLURAL_RELEASE, name
        )
        return dict(obj.get("status") or {})

    def wait_phase(self, name: str, phases: set[str], timeout: float = 180) -> dict[str, Any]:
        return kube.wait_for(
            lambda: (s := self.status(name)).get("phase") in phases and s,
            timeout=timeout,
            what=f"{name} in {phases}",
            interval=0.1,
        )

    def ready(self, release: str) -> int:
        try:
            deployment = self.apps.read_namespaced_deployment(f"fraud-{release}", self.ns)
        except client.exceptions.ApiException:
            return 0
        return deployment.status.ready_replicas or 0


def rollback_latency(b: Bench, interval: str, trial: int, stable: str) -> tuple[float, float]:
    """(seconds from visible regression to zero share, the interval in seconds)."""
    b.patch_model(
        {
            "canary": {"steps": [{"weight": 50, "pause": "10m"}]},
            "analysis": {
                "interval": interval,
                "failureLimit": 0,
                "inconclusiveLimit": 50,
                "minSamples": 1,
                "onInconclusive": "hold",
            },
        }
    )
    name = f"fraud-r{interval}-{trial}"
    slo = next(s for s in fast_model(b.ns, "")["spec"]["slos"] if s["name"] == "error-rate")
    # Visible: the candidate's error share over the last 10 s, from the operator's own queries.
    errors, requests = error_rate_queries(
        {"namespace": b.ns, "release": name},
        10,
        slo["errorRate"]["requests"],
        slo["errorRate"]["errors"],
    )
    query = f"({errors}) / ({requests})"
    b.create(
        c.PLURAL_RELEASE,
        release(b.ns, name, name, annotations={KNOB_ERRORS: "0.5"}, strategy="canary"),
    )
    visible = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if visible is None:
            result = b.plane.query(query)
            if result and float(result[0]["value"][1]) > 0.02:
                visible = time.monotonic()
        if (
            visible is not None
            and b.ready(name) == 0
            and b.status(name).get("phase") == "RolledBack"
        ):
            latency = time.monotonic() - visible
            b.wait_phase(name, {"RolledBack"})
            kube.wait_for(lambda: b.ready(stable) == 4, 30, "stable back at full size")
            return latency, parse_duration(interval).total_seconds()
        time.sleep(0.05)
    raise TimeoutError(f"{name}: no rollback within 120s")


def main() -> int:
    kubeconfig = kube.local_cluster_kubeconfig()
    api = kube.api_client(kubeconfig)
    kube.install_crds(api)
    prometheus, why = find_prometheus()
    if prometheus is None:
        raise SystemExit(f"no prometheus: {why}")
    STATE.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with (
        kube.namespace(api, prefix="slipway-bench") as namespace,
        DataPlane(kubeconfig, namespace, prometheus, rps=60.0) as plane,
    ):
        op = OperatorProcess(
            kubeconfig,
            [namespace],
            STATE / "bench-operator.log",
            prometheus_url=plane.prometheus_url,
            metrics_port=port,
        ).start()
        try:
            b = Bench(api, namespace, plane, port)
            body = fast_model(namespace, plane.prometheus_url)
            del body["spec"]["metrics"]  # the operator's --prometheus-url
            b.create(c.PLURAL_DEPLOYMENT, body)
            b.create(c.PLURAL_RELEASE, release(namespace, "fraud-v1", "v1"))
            b.wait_phase("fraud-v1", {"Succeeded"})
            time.sleep(6)  # a baseline for the relative SLOs

            say("promotion overhead: canary 25/50/75 %, pause 3s each, analysis every 1s")
            pauses, steps = 9.0, 3
            b.patch_model(
                {
                    "canary": {"steps": [{"weight": w, "pause": "3s"} for w in (25, 50, 75)]},
                    "analysis": {
                        "interval": "1s",
                        "failureLimit": 0,
                        "inconclusiveLimit": 20,
                        "minSamples": 1,
                        "onInconclusive": "hold",
                    },
                }
            )
            before = scrape(port)
            started = time.monotonic()
            b.create(c.PLURAL_RELEASE, release(namespace, "fraud-v2", "v2", strategy="canary"))
            done = b.wait_phase("fraud-v2", {"Succeeded", "RolledBack"})
            elapsed = time.monotonic() - started
            after = scrape(port)
            if done["phase"] != "Succeeded":
                raise SystemExit(f"the good canary was rolled back: {done.get('message')}")
            overhead = (elapsed - pauses) / steps
            ticks = total(after, "slipway_analysis_total") - total(before, "slipway_analysis_total")
            queries = total(after, "slipway_metric_queries_total") - total(
                before, "slipway_metric_queries_total"
            )
            writes = total(after, "slipway_kube_writes_total") - total(
                before, "slipway_kube_writes_total"
            )
            say(f"  release took {elapsed:.1f}s for {pauses:.0f}s of pauses over {steps} steps")
            say(f"  promotion overhead per step beyond pauses: {overhead:.2f}s")
            say(
                f"  analysis ticks {ticks:.0f}, Prometheus queries {queries:.0f}:"
                f" {queries / ticks:.2f} queries per tick per release (3 SLOs)"
            )
            say(
                f"  Kubernetes API writes {writes:.0f} for {steps} steps + promotion:"
                f" {writes / (steps + 1):.1f} per step"
            )
            say(f"  writes by call: {grown(before, after, 'slipway_kube_writes_total', 'call')}")
            say(
                f"  reconcile passes: {grown(before, after, 'slipway_reconciles_total', 'outcome')}"
            )

            say("idle: nothing in flight for 20s")
            time.sleep(4)
            before = scrape(port)
            time.sleep(20)
            after = scrape(port)
            idle_writes = total(after, "slipway_kube_writes_total") - total(
                before, "slipway_kube_writes_total"
            )
            idle_queries = total(after, "slipway_metric_queries_total") - total(
                before, "slipway_metric_queries_total"
            )
            say(f"  writes while idle: {idle_writes:.0f}; queries while idle: {idle_queries:.0f}")

            say("rollback latency: canary at 50 % with a 50 % error rate, failureLimit 0")
            figures: dict[str, list[float]] = {}
            for interval, trials in (("2s", 5), ("5s", 5)):
                for trial in range(trials):
                    latency, seconds = rollback_latency(b, interval, trial, "fraud-v2")
                    figures.setdefault(interval, []).append(latency)
                    say(
                        f"  interval {interval} trial {trial + 1}: {latency:.2f}s"
                        f" ({latency / seconds:.2f} x interval)"
                    )
            for interval, values in figures.items():
                seconds = float(interval.rstrip("s"))
                say(
                    f"  interval {interval}: median {statistics.median(values):.2f}s,"
                    f" max {max(values):.2f}s; bound interval+2s = {seconds + 2:.0f}s"
                    f" -> {'within' if max(values) <= seconds + 2 else 'OVER'}"
                )
        finally:
            op.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

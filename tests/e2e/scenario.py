"""Building blocks of the e2e scenarios: the demo's ModelDeployment made fast, and probes.

The SLOs are the ones in examples/manifests/fraud-model.yaml (so the e2e tier
tests what the demo shows), judged by the same sequential judge; only the timings
are shortened, and the traffic is the demo's, so a good canary's first step
gathers the few hundred requests the judge needs to pass it in about 20 s.
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from e2e.dataplane import on_fake_nodes
from kubernetes import client

from slipway.api import constants as c

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "examples" / "manifests"
KNOB_LATENCY = "e2e.slipway.dev/inject-latency-ms"
KNOB_ERRORS = "e2e.slipway.dev/inject-error-rate"
RPS = 100.0
"""Requests per second of every scenario's data plane (the demo's traffic)."""
REAL_RPS = 80.0
"""Through the real Service: each request a new connection through kube-proxy to a pod."""


def fast_model(
    namespace: str, prometheus_url: str, template: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    """The demo's ModelDeployment with short steps, windows and analysis interval.

    With ``template`` (e2e/realplane.py's ``pod_template``) its pods are real model servers on
    the real node; without it they are kwok fakes for the simulated data plane.
    """
    body: dict[str, Any] = yaml.safe_load((MANIFESTS / "fraud-model.yaml").read_text())
    body["metadata"]["namespace"] = namespace
    body["spec"].update(
        {
            "replicas": 4,
            "progressDeadline": "60s",
            "canary": {"steps": [{"weight": 25, "pause": "3s"}, {"weight": 50, "pause": "3s"}]},
            "analysis": {
                "interval": "2s",
                "failureLimit": 1,
                "inconclusiveLimit": 8,
                "onInconclusive": "hold",
                "judge": "sequential",
            },
            "metrics": {"url": prometheus_url, "timeoutSeconds": 2},
        }
    )
    for slo in body["spec"]["slos"]:
        if slo["name"] == "accuracy":
            # Ruling out a 5-point accuracy drop takes ~600 candidate requests (the
            # demo's first step); these tests regress other SLOs, so a looser tolerance
            # lets the error rate (~400 requests) set the pace.
            slo["threshold"] = {"maxDecrease": 0.25, "relative": "absolute"}
    body["spec"].update(spec)
    if template is not None:
        body["spec"]["template"] = template
        return body
    return on_fake_nodes(body)


def release(
    namespace: str, name: str, version: str, annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((MANIFESTS / "fraud-v1.yaml").read_text())
    body = copy.deepcopy(body)
    body["metadata"] = {"name": name, "namespace": namespace, "annotations": annotations or {}}
    body["spec"]["model"].update(uri=f"s3://models/fraud/{version}/model.npz", version=version)
    body["spec"].update(spec)
    return body


class Watcher:
    """Samples a release's status and the stable's ready pods in the background.

    The fault tests assert on the whole history (the step never goes back, the
    stable never loses its pods), not just on the end state.
    """

    def __init__(
        self, api: client.ApiClient, namespace: str, release: str, stable_deployment: str
    ) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.namespace, self.release, self.stable = namespace, release, stable_deployment
        self.samples: list[tuple[float, str, int | None, int | None, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                obj: Any = self.custom.get_namespaced_custom_object(
                    c.GROUP, c.VERSION, self.namespace, c.PLURAL_RELEASE, self.release
                )
                status = obj.get("status") or {}
                stable = self.apps.read_namespaced_deployment(self.stable, self.namespace)
                self.samples.append(
                    (
                        time.monotonic(),
                        str(status.get("phase")),
                        status.get("step"),
                        status.get("weight"),
                        stable.status.ready_replicas or 0,
                    )
                )
            except client.exceptions.ApiException:
                pass
            self._stop.wait(0.2)

    @property
    def phases(self) -> list[str]:
        return [s[1] for s in self.samples]

    @property
    def steps(self) -> list[int]:
        return [s[2] for s in self.samples if s[2] is not None]

    @property
    def weights(self) -> list[int]:
        return [s[3] for s in self.samples if s[3] is not None]

    @property
    def min_stable_ready(self) -> int:
        """Fewest ready stable pods seen while the release was in flight (after a
        promotion the old stable is scaled to zero on purpose)."""
        in_flight = [s[4] for s in self.samples if s[1] in ("Pending", "Progressing", "Paused")]
        assert in_flight, "the watcher saw no sample of the release in flight"
        return min(in_flight)


def wait_end(k: Any, release: str, timeout: float) -> dict[str, Any]:
    """Until ``release`` ends (Succeeded, RolledBack, Failed): its status. A timeout names
    the last status seen (phase, step, message, the last analysis), not just "not yet"."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = k.release_status(release)
        if status.get("phase") in ("Succeeded", "RolledBack", "Failed"):
            return status
        time.sleep(0.25)
    last = {key: status.get(key) for key in ("phase", "step", "weight", "message")}
    analysis = (status.get("analysis") or [None])[-1]
    raise AssertionError(f"{release} did not end in {timeout}s: {last}; last analysis {analysis}")

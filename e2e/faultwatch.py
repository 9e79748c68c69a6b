"""What a crash must never break, watched live on the cluster (issue 13, section 2).

- ``ScaledUp``: a watch of one namespace's Deployments. Each watch event is the state of
  the namespace's Deployments at one moment (events of one kind come in order), so the
  most Deployments of one model scaled up at once is exact, not sampled: a stable, a
  candidate, and never a third.
- ``ready_shares``: each release's share of the ready pods the model's Service selects
  right now, read from the pods themselves (not from Deployment status, which is what
  the operator reads), so a share the operator claims can be checked against it.

Shared by tests/integration/test_promotion_crash.py and ``make bench-faults``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from slipway.api import constants as c


class ScaledUp:
    """The most Deployments of each model that had replicas > 0 at the same moment."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.apps = client.AppsV1Api(api)
        self.namespace = namespace
        self.replicas: dict[tuple[str, str], int] = {}
        """(model, release) -> spec.replicas, as of the last event."""
        self.most: dict[str, int] = {}
        self.crowded: list[tuple[float, str, list[str]]] = []
        """(when, model, releases up) for every moment with more than two up."""
        self.events = 0
        self._version: str | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scaled-up", daemon=True)

    def __enter__(self) -> ScaledUp:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Deployment watch did not start")
        return self

    def __exit__(self, *_: object) -> None:
        time.sleep(0.5)  # the last events of the scenario
        self._stop.set()
        self._thread.join(timeout=10)

    def up(self, model: str) -> list[str]:
        return sorted(r for (m, r), n in self.replicas.items() if m == model and n > 0)

    def _run(self) -> None:
        selector = f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY_VALUE}"
        listed = self.apps.list_namespaced_deployment(self.namespace, label_selector=selector)
        for item in listed.items:
            self._see("ADDED", item)
        self._version = listed.metadata.resource_version
        self._ready.set()
        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self.apps.list_namespaced_deployment,
                    self.namespace,
                    label_selector=selector,
                    resource_version=self._version,
                    timeout_seconds=5,
                ):
                    obj = event["object"]
                    self._version = obj.metadata.resource_version
                    self._see(event["type"], obj)
                    if self._stop.is_set():
                        break
            except ApiException as error:
                if error.status == 410:  # too old: list again (a moment may be missed)
                    self._version = None
                self._stop.wait(0.2)
            finally:
                stream.stop()

    def _see(self, kind: str, deployment: Any) -> None:
        labels = deployment.metadata.labels or {}
        model, release = labels.get(c.LABEL_MODEL), labels.get(c.LABEL_RELEASE)
        if not model or not release:
            return
        self.events += 1
        if kind == "DELETED":
            self.replicas.pop((model, release), None)
        else:
            self.replicas[(model, release)] = deployment.spec.replicas or 0
        up = self.up(model)
        self.most[model] = max(self.most.get(model, 0), len(up))
        if len(up) > 2:
            self.crowded.append((time.monotonic(), model, up))


def ready_shares(core: client.CoreV1Api, namespace: str, model: str) -> dict[str, int]:
    """Ready pods per release behind the model's Service, read from the pods."""
    service = core.read_namespaced_service(model, namespace)
    selector = service.spec.selector or {}
    query = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    counts: dict[str, int] = {}
    for pod in core.list_namespaced_pod(namespace, label_selector=query).items:
        if pod.metadata.deletion_timestamp is not None:
            continue
        ready = any(
            cond.type == "Ready" and cond.status == "True" for cond in (pod.status.conditions or [])
        )
        if ready:
            release = (pod.metadata.labels or {}).get(c.LABEL_RELEASE, "")
            counts[release] = counts.get(release, 0) + 1
    return counts


def share(counts: dict[str, int], release: str) -> int:
    """``release``'s share of ``counts``, in percent, rounded as the operator rounds."""
    total = sum(counts.values())
    return round(100 * counts.get(release, 0) / total) if total else 0

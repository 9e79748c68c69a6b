"""Invariants checked throughout the cluster tiers, whatever the scenario.

1. The Deployment of a ModelDeployment's stable release is never deleted or
   scaled to zero while it is the stable (DESIGN practice 11).
2. No operator process logs a traceback.

``StableGuard`` watches every Slipway Deployment in the test namespaces from
a thread. A Deployment that is deleted or scaled to zero is checked against
its ModelDeployment read fresh from the API server at that moment (a watch of
ModelDeployments could lag behind a promotion that legitimately retired the
old stable), and ignored while its namespace or ModelDeployment is going away.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from slipway.api import constants as c


class StableGuard:
    """Records every moment a stable release's Deployment lost its last replica."""

    def __init__(self, api: client.ApiClient, prefixes: Iterable[str]) -> None:
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.prefixes = tuple(prefixes)
        self.violations: list[str] = []
        self.checked = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stable-guard", daemon=True)

    def start(self) -> StableGuard:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        selector = f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY_VALUE}"
        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self.apps.list_deployment_for_all_namespaces,
                    label_selector=selector,
                    timeout_seconds=5,
                ):
                    self._judge(event["type"], event["object"])
                    if self._stop.is_set():
                        break
            except ApiException:
                self._stop.wait(0.5)
            finally:
                stream.stop()

    def _judge(self, kind: str, deployment: Any) -> None:
        meta = deployment.metadata
        if not meta.namespace.startswith(self.prefixes):
            return
        scaled_to_zero = (deployment.spec.replicas or 0) == 0
        if kind != "DELETED" and not scaled_to_zero:
            return
        labels = meta.labels or {}
        model, release = labels.get(c.LABEL_MODEL), labels.get(c.LABEL_RELEASE)
        if not model or not release:
            return
        self.checked += 1
        try:
            owner: Any = self.custom.get_namespaced_custom_object(
                c.GROUP, c.VERSION, meta.namespace, c.PLURAL_DEPLOYMENT, model
            )
            namespace = self.core.read_namespace(meta.namespace)
        except ApiException:
            return  # the ModelDeployment or the namespace is gone: nothing to serve
        if owner["metadata"].get("deletionTimestamp") or namespace.status.phase == "Terminating":
            return
        owner_uids = {ref.uid for ref in meta.owner_references or []}
        if owner["metadata"]["uid"] not in owner_uids:
            return  # a predecessor's child, of a ModelDeployment since re-created
        if (owner.get("status") or {}).get("stableRelease") == release:
            what = "deleted" if kind == "DELETED" else "scaled to zero"
            self.violations.append(
                f"{meta.namespace}/{meta.name} of stable release {release!r} was {what}"
            )


def tracebacks(log: Path, since: int = 0) -> list[str]:
    """Tracebacks an operator logged after byte ``since`` of its log, with their last line."""
    if not log.exists():
        return []
    text = log.read_bytes()[since:].decode(errors="replace")
    found = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            tail = next((x for x in lines[i + 1 :] if x and not x.startswith(" ")), "")
            found.append(f"{line} ... {tail}")
    return found

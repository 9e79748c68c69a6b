"""The few writes Slipway makes to the Kubernetes API, counted.

Children are applied with server-side apply under one field manager: Slipway
sends only the fields it owns, so fields others set on its children (an
annotation added by hand, a sidecar injector's) are left alone; it forces its
own fields back, as a controller must. Replicas move through the scale
subresource only. Every write goes through ``KubeWriter``, which counts them:
a steady state must write nothing, and the benchmarks read these counters.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from slipway.api import constants as c
from slipway.metrics import KUBE_WRITES

log = logging.getLogger(__name__)


def make_api_client() -> client.ApiClient:
    """An API client from KUBECONFIG / ~/.kube/config, or the in-cluster account."""
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
            config.load_incluster_config()
        else:
            config.load_kube_config()
    except config.ConfigException as error:
        raise RuntimeError(f"no Kubernetes configuration found: {error}") from error
    return client.ApiClient()


class KubeWriter:
    """Applies, deletes and patches, and counts every write by kind of call."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.writes: Counter[str] = Counter()

    def apply(self, body: Mapping[str, Any]) -> None:
        """Server-side apply one object under Slipway's field manager."""
        kind, meta = body["kind"], body["metadata"]
        self._patcher(kind)(
            meta["name"],
            meta["namespace"],
            dict(body),
            field_manager=c.FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )
        self._count(f"apply/{kind}")

    def _patcher(self, kind: str) -> Callable[..., Any]:
        patchers: dict[str, Callable[..., Any]] = {
            "Service": self.core.patch_namespaced_service,
            "Deployment": self.apps.patch_namespaced_deployment,
        }
        if kind not in patchers:
            raise ValueError(f"Slipway does not apply objects of kind {kind!r}")
        return patchers[kind]

    def delete_deployment(self, namespace: str, name: str) -> bool:
        """Delete a Deployment (its pods go with it); False if it was already gone."""
        self._count("delete/Deployment")
        try:
            self.apps.delete_namespaced_deployment(name, namespace, propagation_policy="Background")
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def patch_model_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch the status of a ModelDeployment (only the keys given)."""
        self._patch_status(c.PLURAL_DEPLOYMENT, namespace, name, status)

    def patch_release_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch a ModelRelease's status now (keys set to None are removed)."""
        self._patch_status(c.PLURAL_RELEASE, namespace, name, status)

    def _patch_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None:
        self.custom.patch_namespaced_custom_object_status(
            c.GROUP,
            c.VERSION,
            namespace,
            plural,
            name,
            {"status": dict(status)},
            _content_type="application/merge-patch+json",
        )
        self._count(f"patch/{plural}-status")

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        """Set replicas through the scale subresource: no other field, no pod restart."""
        self.apps.patch_namespaced_deployment_scale(
            name,
            namespace,
            {"spec": {"replicas": replicas}},
            field_manager=c.FIELD_MANAGER,
            _content_type="application/merge-patch+json",
        )
        self._count("scale/Deployment")

    def _count(self, call: str) -> None:
        self.writes[call] += 1
        KUBE_WRITES.labels(call).inc()

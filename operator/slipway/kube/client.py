"""The few writes Slipway makes to the Kubernetes API, counted.

Children are applied with server-side apply under one field manager: Slipway
sends only the fields it owns, so fields others set on its children (an
annotation added by hand, a sidecar injector's) are left alone; it forces its
own fields back, as a controller must. Replicas move through the scale
subresource only. Every write goes through ``KubeWriter``, which counts them:
a steady state must write nothing, and the benchmarks read these counters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from slipway.api import constants as c
from slipway.metrics import KUBE_WRITES
from slipway.traffic import ROUTE_KINDS

log = logging.getLogger(__name__)


class KubeError(Exception):
    """A write the API server refused, with its HTTP status and its own words."""

    def __init__(self, status: int, message: str, what: str) -> None:
        super().__init__(f"{what}: {message}")
        self.status, self.message, self.what = status, message, what

    @property
    def conflict(self) -> bool:
        """Someone changed the object since we read it (or it was re-created)."""
        return self.status == 409

    @property
    def gone(self) -> bool:
        """The object, or its whole namespace, is gone or on its way out."""
        terminating = self.status == 403 and "being terminated" in self.message
        return self.status == 404 or terminating

    @property
    def invalid(self) -> bool:
        """The object can never be accepted as it is: retrying cannot help."""
        return self.status in (400, 422)


def refused(error: ApiException, what: str) -> KubeError:
    """The API server's own message out of an ApiException."""
    message = error.reason or "no reason given"
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(error.body or "{}").get("message") or message
    return KubeError(int(error.status or 0), str(message), what)


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
    """Applies, deletes and patches, and counts every write by kind of call.

    Every call raises ``KubeError`` with the API server's message when refused.
    Status patches carry the resourceVersion they were decided on, so a write
    based on a stale read (or aimed at a re-created object of the same name)
    fails with a conflict instead of overwriting newer state.
    """

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def apply(self, body: Mapping[str, Any]) -> None:
        """Server-side apply one object under Slipway's field manager."""
        kind, meta = body["kind"], body["metadata"]
        self._count(f"apply/{kind}", meta["namespace"])
        try:
            self._patcher(kind)(
                meta["name"],
                meta["namespace"],
                dict(body),
                field_manager=c.FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
            )
        except ApiException as error:
            raise refused(error, f"{kind} {meta['name']!r}") from None

    def _patcher(self, kind: str) -> Callable[..., Any]:
        patchers: dict[str, Callable[..., Any]] = {
            "Service": self.core.patch_namespaced_service,
            "Deployment": self.apps.patch_namespaced_deployment,
        }
        if kind in patchers:
            return patchers[kind]
        if kind in ROUTE_KINDS:  # a router's route object (a custom resource)
            group, version, plural, _ = ROUTE_KINDS[kind]

            def patch(name: str, namespace: str, body: dict[str, Any], **kwargs: Any) -> Any:
                return self.custom.patch_namespaced_custom_object(
                    group, version, namespace, plural, name, body, **kwargs
                )

            return patch
        raise ValueError(f"Slipway does not apply objects of kind {kind!r}")

    def delete_deployment(self, namespace: str, name: str, uid: str | None = None) -> bool:
        """Delete a Deployment (its pods go with it); False if it was already gone.

        With ``uid``, only that very object: a newer one of the same name is left alone.
        """
        return self._delete(
            "Deployment", self.apps.delete_namespaced_deployment, namespace, name, uid
        )

    def delete_service(self, namespace: str, name: str, uid: str | None = None) -> bool:
        """Delete a Service (a finished release's own); False if it was already gone."""
        return self._delete("Service", self.core.delete_namespaced_service, namespace, name, uid)

    def _delete(
        self, kind: str, call: Callable[..., Any], namespace: str, name: str, uid: str | None
    ) -> bool:
        self._count(f"delete/{kind}", namespace)
        options = client.V1DeleteOptions(
            propagation_policy="Background",
            preconditions=client.V1Preconditions(uid=uid) if uid else None,
        )
        try:
            call(name, namespace, body=options)
        except ApiException as error:
            if error.status in (404, 409):
                return False  # gone, or another object now has that name
            raise refused(error, f"{kind} {name!r}") from None
        return True

    def patch_model_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Merge-patch the status of a ModelDeployment (only the keys given); the new object."""
        return self._patch_status(c.PLURAL_DEPLOYMENT, namespace, name, status, resource_version)

    def patch_release_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Merge-patch a ModelRelease's status (keys set to None are removed); the new object."""
        return self._patch_status(c.PLURAL_RELEASE, namespace, name, status, resource_version)

    def _patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        self._count(f"patch/{plural}-status", namespace)
        try:
            result = self.custom.patch_namespaced_custom_object_status(
                c.GROUP,
                c.VERSION,
                namespace,
                plural,
                name,
                body,
                _content_type="application/merge-patch+json",
            )
        except ApiException as error:
            raise refused(error, f"status of {plural} {name!r}") from None
        return cast(dict[str, Any], result)

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        """Set replicas through the scale subresource: no other field, no pod restart."""
        self._count("scale/Deployment", namespace)
        try:
            self.apps.patch_namespaced_deployment_scale(
                name,
                namespace,
                {"spec": {"replicas": replicas}},
                field_manager=c.FIELD_MANAGER,
                _content_type="application/merge-patch+json",
            )
        except ApiException as error:
            raise refused(error, f"Deployment {name!r}") from None

    def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event about ``obj`` (a body); a refused Event is logged, never raised:
        it must not stop the decision it reports."""
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace") or "default", meta.get("name", "")
        stamp = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{name[:200]}.", namespace=namespace),
            involved_object=client.V1ObjectReference(
                api_version=obj.get("apiVersion"),
                kind=obj.get("kind"),
                name=name,
                namespace=namespace,
                uid=meta.get("uid"),
            ),
            reason=reason,
            message=message[:1024],
            type=type_,
            source=client.V1EventSource(component=c.FIELD_MANAGER),
            first_timestamp=stamp,
            last_timestamp=stamp,
            count=1,
        )
        self._count("create/Event", namespace)
        try:
            self.core.create_namespaced_event(namespace, event)
        except ApiException as error:
            log.debug("event %s on %s/%s not posted: %s", reason, namespace, name, error.reason)

    def _count(self, call: str, namespace: str) -> None:
        KUBE_WRITES.labels(call, namespace).inc()

"""Names of the API group, kinds, labels, annotations and the field manager.

Every string that identifies something in the cluster lives here, so a rename
touches one line and no two modules disagree about a key.
"""

from typing import Final

GROUP: Final = "slipway.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
CATEGORY: Final = "slipway"

KIND_DEPLOYMENT: Final = "ModelDeployment"
KIND_RELEASE: Final = "ModelRelease"
KIND_POLICY: Final = "RolloutPolicy"
PLURAL_DEPLOYMENT: Final = "modeldeployments"
PLURAL_RELEASE: Final = "modelreleases"
PLURAL_POLICY: Final = "rolloutpolicies"

# Server-side apply field manager: one for every child Slipway writes.
FIELD_MANAGER: Final = "slipway"
FINALIZER: Final = f"{GROUP}/finalizer"

# Labels Slipway puts on children. None encodes a role (stable/candidate):
# changing a pod-template label would restart every pod on promotion.
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_MODEL: Final = f"{GROUP}/model"
LABEL_RELEASE: Final = f"{GROUP}/release"
LABEL_VERSION: Final = f"{GROUP}/version"
MANAGED_BY_VALUE: Final = "slipway"

# Annotations on children saying which release spec they were built from.
ANNOTATION_MODEL_URI: Final = f"{GROUP}/model-uri"
ANNOTATION_MODEL_DIGEST: Final = f"{GROUP}/model-digest"

# Manual controls, set by `slipway` or by hand / in Git (documented in README).
ANNOTATION_ACTION: Final = f"{GROUP}/action"
"""On a ModelRelease: ``promote`` (skip the remaining steps) or ``abort`` (roll back now)."""
ANNOTATION_PAUSED: Final = f"{GROUP}/paused"
"""On a ModelRelease: ``"true"`` holds the rollout at its current weight."""
ANNOTATION_ROLLBACK_TO: Final = f"{GROUP}/rollback-to"
"""On a ModelDeployment: ``<release>@<request id>`` rolls back to an earlier release."""

# Environment variables injected into the model container.
ENV_MODEL_URI: Final = "SLIPWAY_MODEL_URI"
ENV_MODEL_VERSION: Final = "SLIPWAY_MODEL_VERSION"
ENV_MODEL_DIGEST: Final = "SLIPWAY_MODEL_DIGEST"
ENV_RELEASE: Final = "SLIPWAY_RELEASE"

# GitOps trackers that must never be copied from a parent to a child.
GITOPS_TRACKING_KEYS: Final = frozenset(
    {
        "argocd.argoproj.io/tracking-id",
        "app.kubernetes.io/instance",
        "argocd.argoproj.io/instance",
        "kubectl.kubernetes.io/last-applied-configuration",
    }
)

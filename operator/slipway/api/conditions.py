"""Condition types, reasons and annotation keys: one module, so none is spelled twice."""

from typing import Final

# Condition types.
READY: Final = "Ready"
"""ModelRelease: the release is progressing normally or is done (see reason)."""
AVAILABLE: Final = "Available"
"""ModelRelease: the release's own Deployment has all its pods available."""
STABLE_SERVING: Final = "StableServing"
"""ModelDeployment: the stable release has ready pods behind the Service."""

# Reasons.
DEPLOYMENT_NOT_FOUND: Final = "DeploymentNotFound"
INVALID_SPEC: Final = "InvalidSpec"
WAITING_FOR_RELEASE: Final = "WaitingForRelease"
STRATEGY_NOT_SUPPORTED: Final = "StrategyNotSupported"
PROGRESSING: Final = "Progressing"
WAITING_FOR_PODS: Final = "WaitingForPods"
PROMOTED: Final = "Promoted"
PROGRESS_DEADLINE_EXCEEDED: Final = "ProgressDeadlineExceeded"
NO_STABLE: Final = "NoStableRelease"
STABLE_READY: Final = "StableReady"
STABLE_NOT_READY: Final = "StableNotReady"

SLO_FAILED: Final = "SLOFailed"
INCONCLUSIVE_LIMIT: Final = "InconclusiveLimitExceeded"
ABORTED: Final = "Aborted"
PAUSED_MANUALLY: Final = "PausedManually"
HELD_INCONCLUSIVE: Final = "HeldInconclusive"
NOT_ENOUGH_EVIDENCE: Final = "NotEnoughEvidence"
"""A step's pause and progressDeadline passed without an analysis that passed."""
STEP_PROGRESSING: Final = "StepProgressing"
LEANING_TO_REGRESSION: Final = "LeaningToRegression"
"""The evidence leans toward a regression: the weight is held at undecidedWeight."""
UNDECIDED_TOO_LONG: Final = "UndecidedTooLong"
"""The evidence leaned toward a regression for longer than maxUndecided."""
PROMOTING: Final = "Promoting"
SWITCHED: Final = "Switched"
"""Blue-green: every request goes to the candidate; the old stable waits at full size."""
SWITCHING: Final = "Switching"
"""Blue-green: the switch is written, its data plane has not taken it yet; the stable may
still get every request and stays at full size."""
ROLLED_BACK_MANUALLY: Final = "RolledBackManually"
SUPERSEDED_BY_ROLLBACK: Final = "SupersededByRollback"

POLICY_VIOLATION: Final = "PolicyViolation"
CHILD_REFUSED: Final = "ChildRefused"
"""The API server refused a child object Slipway built (its message says why)."""
APPLY_FAILED: Final = "ApplyFailed"
"""A write to a child failed for a reason that may pass (forbidden, server error)."""
INVALID_NAME: Final = "InvalidName"
ROUTER_NOT_SUPPORTED: Final = "RouterNotSupported"
APPROVAL_REQUIRED: Final = "ApprovalRequired"
SHADOW_REQUIRED: Final = "ShadowRequired"
SHADOWING: Final = "Shadowing"
SHADOW_PASSED: Final = "ShadowPassed"
NEVER_STARTS: Final = frozenset(
    {"StrategyNotSupported", "RouterNotSupported", "ApprovalRequired", "ShadowRequired"}
)
"""Pending reasons no tick will cure: such releases never hold the model's queue."""
FREEZE_WINDOW: Final = "FreezeWindow"
RELEASE_INTERVAL: Final = "ReleaseInterval"

# Event reasons (also used as phase-change reasons).
EVENT_PHASE_CHANGED: Final = "PhaseChanged"
EVENT_PRUNED: Final = "Pruned"

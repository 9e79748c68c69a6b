"""Phases of a ModelRelease and the verdict words, one enum each.

A phase is the one word a person reads first (`kubectl get modelreleases`);
the conditions and the analysis history explain it.
"""

from enum import StrEnum


class Phase(StrEnum):
    """Where a ModelRelease stands in its rollout."""

    PENDING = "Pending"
    """Accepted but not started: waiting for its ModelDeployment, for a release
    already in flight, or for a capability that is not available yet. The
    Ready condition's reason says which."""

    PROGRESSING = "Progressing"
    """Rolling out: the candidate Deployment exists and takes (or is about to
    take) its share of traffic."""

    PAUSED = "Paused"
    """Held by a person (pause annotation) or by inconclusive analysis; the
    candidate keeps its current share until resumed."""

    SUCCEEDED = "Succeeded"
    """Promoted: this release became the stable release of its ModelDeployment."""

    ROLLED_BACK = "RolledBack"
    """Stopped and removed from traffic (failed SLO, abort, or inconclusive
    analysis configured to roll back); the stable release kept serving."""

    EVALUATED = "Evaluated"
    """A shadow-only release passed: it answered copies of live requests well enough,
    was never seen by a user, and was not promoted (ship it with a canary or
    blue-green). Its verdict and evidence stay in status."""

    FAILED = "Failed"
    """Could not be rolled out at all (invalid against policy, or its pods never
    became available within the progress deadline); the stable kept serving."""

    @property
    def is_terminal(self) -> bool:
        """True when the release will never move again."""
        return self in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED, Phase.EVALUATED)


class Strategy(StrEnum):
    """How a release reaches production."""

    DIRECT = "direct"
    """Replace the stable once the new Deployment is available (no analysis)."""

    CANARY = "canary"
    """Shift traffic step by step, gated by SLO analysis."""

    SHADOW = "shadow"
    """Mirror traffic to the candidate without serving its answers."""

    BLUE_GREEN = "blueGreen"
    """Bring up the full candidate, then switch all traffic at once."""


class Router(StrEnum):
    """How traffic is split between stable and candidate."""

    REPLICAS = "replicas"
    GATEWAY_API = "gatewayAPI"
    ISTIO = "istio"


class Verdict(StrEnum):
    """The outcome of analysing one SLO (or a whole tick)."""

    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"


class InconclusiveAction(StrEnum):
    """What to do once inconclusive analysis passes its limit."""

    HOLD = "hold"
    ROLLBACK = "rollback"

"""What a traffic router can do, in words a strategy can check before it starts."""

from __future__ import annotations

from enum import StrEnum


class Capability(StrEnum):
    """One thing a router can do with live traffic."""

    WEIGHTS = "weights"
    """Give the candidate a share of live requests (canary steps)."""
    MIRROR = "mirror"
    """Copy a share of live requests to the candidate, discarding its answers (shadow)."""
    SWITCH = "switch"
    """Move all live requests from one release to another in one change (blue-green)."""

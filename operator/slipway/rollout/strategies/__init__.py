"""One state machine per strategy, over the shared outcomes and analysis gate.

No strategy imports another; each is ``roll_out(situation, status, model)``
and is registered here. Adding a strategy is its module, one entry in
``STRATEGIES``, and what it needs of a router in ``traffic.NEEDS``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from slipway.api.models import ModelDeployment, ModelReleaseStatus
from slipway.api.phases import Strategy
from slipway.rollout.core import Decision, Situation
from slipway.rollout.strategies import bluegreen, canary, direct, shadow

RollOut = Callable[[Situation, ModelReleaseStatus, ModelDeployment], Decision]

STRATEGIES: Final[Mapping[Strategy, RollOut]] = {
    Strategy.DIRECT: direct.roll_out,
    Strategy.CANARY: canary.roll_out,
    Strategy.BLUE_GREEN: bluegreen.roll_out,
    Strategy.SHADOW: shadow.roll_out,
}
"""The strategies this version carries out."""

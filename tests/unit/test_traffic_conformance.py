"""Every router honours the same contract (run against each entry of traffic.PLACERS).

A tiny in-memory cluster carries out the router's actions (pods become ready
at once), then the router is asked again: the share read back is the share
asked for (within what the router can express), asking again changes nothing
(what a restarted operator does), and a share of zero leaves the stable with
all of the traffic.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from slipway.api.phases import Router
from slipway.kube.observe import DeploymentState
from slipway.rollout.core import Action, ApplyObject, ScaleDeployment, Situation
from slipway.traffic import PLACERS, Placement
from tests.unit.factories import T0, deployment, model, release


def carry_out(
    actions: list[Action], pods: dict[str, DeploymentState]
) -> dict[str, DeploymentState]:
    """The cluster after the actions, every pod ready (what kwok or a kubelet would do)."""
    pods = dict(pods)
    for action in actions:
        if isinstance(action, ApplyObject) and action.body["kind"] == "Deployment":
            release_name = action.body["metadata"]["labels"]["slipway.dev/release"]
            size = action.body["spec"]["replicas"]
            pods[release_name] = deployment(release_name, ready=size, replicas=size)
        elif isinstance(action, ScaleDeployment):
            release_name = next(r for r, d in pods.items() if d.name == action.name)
            pods[release_name] = replace(
                pods[release_name],
                replicas=action.replicas,
                ready_replicas=action.replicas,
                available_replicas=action.replicas,
                updated_replicas=action.replicas,
            )
    return pods


def ask(router: Router, weight: int, pods: dict[str, DeploymentState], **spec: Any) -> Placement:
    md = model(stable="fraud-v1", active="fraud-v2", replicas=spec.pop("replicas", 10), **spec)
    situation = Situation(
        release=release(strategy="canary"), model=md, siblings=(), deployments=pods, now=T0
    )
    return PLACERS[router](situation, md, weight)


@pytest.mark.parametrize("router", list(PLACERS))
@pytest.mark.parametrize("weight", [10, 25, 50, 75, 90])
def test_the_share_read_back_is_the_share_asked_for_and_asking_again_changes_nothing(
    router: Router, weight: int
) -> None:
    pods = {"fraud-v1": deployment("fraud-v1", ready=10, replicas=10)}
    first = ask(router, weight, pods)
    assert first.actions and not first.reached
    pods = carry_out(first.actions, pods)
    again = ask(router, weight, pods)
    assert again.reached
    assert again.actions == []  # a restarted operator re-deciding writes nothing
    assert abs(again.achieved - weight) <= 5  # 10 replicas: steps of 10 %, rounded


@pytest.mark.parametrize("router", list(PLACERS))
def test_a_share_of_zero_gives_the_stable_everything(router: Router) -> None:
    pods = {"fraud-v1": deployment("fraud-v1", ready=10, replicas=10)}
    pods = carry_out(ask(router, 50, pods).actions, pods)
    assert ask(router, 50, pods).achieved == 50
    # What a rollback asks of the router: the candidate at zero, the stable whole.
    pods = {**pods, "fraud-v2": replace(pods["fraud-v2"], replicas=0, ready_replicas=0)}
    pods["fraud-v1"] = deployment("fraud-v1", ready=10, replicas=10)
    assert ask(router, 0, pods).achieved == 0

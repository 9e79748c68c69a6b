"""ModelDeployment decisions: status from observed pods, and which Deployments to prune."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from slipway.api import conditions as cond
from slipway.api import constants as c
from slipway.api.models import ModelDeployment, ReleaseRecord
from slipway.kube.observe import ReleaseSummary
from slipway.rollout.core import ScaleDeployment
from slipway.rollout.model import decide_model
from tests.unit.factories import T0, deployment, model


def with_history(md: ModelDeployment, *names: str, step: int = 10) -> ModelDeployment:
    md.status.history = [
        ReleaseRecord(
            release=name,
            version=name,
            uri=f"s3://m/{name}",
            strategy="canary",
            promoted_at=T0 - timedelta(minutes=i * step),
        )
        for i, name in enumerate(names)
    ]
    return md


def summary(name: str, phase: str, completed_minutes: int | None = None) -> ReleaseSummary:
    done = T0 + timedelta(minutes=completed_minutes) if completed_minutes is not None else None
    return ReleaseSummary(name=name, phase=phase, created=T0 - timedelta(hours=1), completed=done)


def test_no_stable_yet() -> None:
    decision = decide_model(model(), {}, {}, T0)
    assert decision.status.ready is None
    serving = next(c for c in decision.status.conditions if c.type == cond.STABLE_SERVING)
    assert (serving.status, serving.reason) == ("False", cond.NO_STABLE)


@pytest.mark.parametrize(
    ("ready", "status", "reason"),
    [(2, "True", cond.STABLE_READY), (0, "False", cond.STABLE_NOT_READY)],
)
def test_ready_and_serving_condition(ready: int, status: str, reason: str) -> None:
    decision = decide_model(
        model(stable="fraud-v1"), {"fraud-v1": deployment("fraud-v1", ready=ready)}, {}, T0
    )
    assert decision.status.ready == f"{ready}/2"
    serving = next(c for c in decision.status.conditions if c.type == cond.STABLE_SERVING)
    assert (serving.status, serving.reason) == (status, reason)
    assert decision.status.observed_generation == 1


def test_stable_is_never_pruned_even_when_its_release_is_deleted() -> None:
    decision = decide_model(
        model(stable="fraud-v1"), {"fraud-v1": deployment("fraud-v1", 2)}, {}, T0
    )
    assert decision.prune == []


def test_deleted_in_flight_release_is_pruned_and_frees_the_slot() -> None:
    md = model(stable="fraud-v1", active="fraud-v2")
    decision = decide_model(
        md, {"fraud-v1": deployment("fraud-v1", 2), "fraud-v2": deployment("fraud-v2", 1)}, {}, T0
    )
    assert [name for name, _ in decision.prune] == ["fraud-fraud-v2"]
    assert decision.status.active_release is None


@pytest.mark.parametrize("phase", ["RolledBack", "Failed"])
def test_finished_bad_release_is_pruned(phase: str) -> None:
    md = model(stable="fraud-v1")
    decision = decide_model(
        md,
        {"fraud-v1": deployment("fraud-v1", 2), "fraud-v2": deployment("fraud-v2", 0, 0)},
        {"fraud-v2": summary("fraud-v2", phase)},
        T0,
    )
    assert [name for name, _ in decision.prune] == ["fraud-fraud-v2"]


def test_previous_stable_is_kept_at_zero_for_rollback() -> None:
    md = with_history(model(stable="fraud-v2"), "fraud-v2", "fraud-v1")
    decision = decide_model(
        md,
        {"fraud-v2": deployment("fraud-v2", 2), "fraud-v1": deployment("fraud-v1", 0, 0)},
        {"fraud-v1": summary("fraud-v1", "Succeeded", -20)},
        T0,
    )
    assert decision.prune == []


def test_release_two_promotions_back_is_pruned_even_off_the_history() -> None:
    md = with_history(model(stable="fraud-v3", historyLimit=2), "fraud-v3", "fraud-v2")
    decision = decide_model(
        md,
        {
            "fraud-v3": deployment("fraud-v3", 2),
            "fraud-v2": deployment("fraud-v2", 0, 0),
            "fraud-v1": deployment("fraud-v1", 0, 0),
        },
        {
            "fraud-v1": summary("fraud-v1", "Succeeded", -30),
            "fraud-v2": summary("fraud-v2", "Succeeded", -10),
        },
        T0,
    )
    assert [name for name, _ in decision.prune] == ["fraud-fraud-v1"]


def test_fresh_promotion_not_yet_in_this_view_is_kept() -> None:
    # The release index already says Succeeded; this (older) view of the model does not
    # know it is the stable yet. Its Deployment must survive.
    md = with_history(model(stable="fraud-v1"), "fraud-v1")
    decision = decide_model(
        md,
        {"fraud-v1": deployment("fraud-v1", 2), "fraud-v2": deployment("fraud-v2", 2)},
        {"fraud-v2": summary("fraud-v2", "Succeeded", 1)},
        T0,
    )
    assert decision.prune == []


def test_in_flight_release_is_kept() -> None:
    decision = decide_model(
        model(stable="fraud-v1", active="fraud-v2"),
        {"fraud-v1": deployment("fraud-v1", 2), "fraud-v2": deployment("fraud-v2", 1)},
        {"fraud-v2": summary("fraud-v2", "Progressing")},
        T0,
    )
    assert decision.prune == []


def test_at_rest_the_stable_gets_its_full_size_back() -> None:
    # A release deleted mid-canary left the stable shrunk to 1 of 4.
    md = model(stable="fraud-v1", replicas=4)
    decision = decide_model(md, {"fraud-v1": deployment("fraud-v1", 1, replicas=1)}, {}, T0)
    assert decision.actions == [ScaleDeployment("fraud-fraud-v1", 4)]
    assert decision.status.ready == "1/4", "ready counts against the spec, not the shrunk size"


def test_at_rest_the_kept_previous_stable_goes_to_zero() -> None:
    md = with_history(model(stable="fraud-v2", replicas=2), "fraud-v2", "fraud-v1")
    deps = {
        "fraud-v2": deployment("fraud-v2", 2),
        "fraud-v1": deployment("fraud-v1", 1, replicas=1),
    }
    decision = decide_model(md, deps, {"fraud-v1": summary("fraud-v1", "Succeeded", -20)}, T0)
    assert decision.actions == [ScaleDeployment("fraud-fraud-v1", 0)]


def test_the_kept_previous_stable_goes_to_zero_only_once_the_live_route_no_longer_names_it() -> (
    None
):
    md = with_history(model(stable="fraud-v2", replicas=2), "fraud-v2", "fraud-v1")
    deps = {"fraud-v2": deployment("fraud-v2", 2), "fraud-v1": deployment("fraud-v1", 2)}
    done = {"fraud-v1": summary("fraud-v1", "Succeeded", -20)}
    routed = decide_model(md, deps, done, T0, routed=frozenset({"fraud-v1", "fraud-v2"}))
    assert routed.actions == [] and routed.prune == []
    unrouted = decide_model(md, deps, done, T0, routed=frozenset({"fraud-v2"}))
    assert unrouted.actions == [ScaleDeployment("fraud-fraud-v1", 0)]


def test_nothing_is_resized_while_a_release_is_in_flight() -> None:
    md = model(stable="fraud-v1", replicas=4)
    deps = {
        "fraud-v1": deployment("fraud-v1", 3, replicas=3),
        "fraud-v2": deployment("fraud-v2", 1, replicas=1),
    }
    decision = decide_model(md, deps, {"fraud-v2": summary("fraud-v2", "Pending")}, T0)
    assert decision.actions == []


def test_active_release_that_finished_frees_the_slot() -> None:
    md = model(stable="fraud-v1", active="fraud-v2", replicas=4)
    decision = decide_model(
        md,
        {"fraud-v1": deployment("fraud-v1", 4, replicas=4)},
        {"fraud-v2": summary("fraud-v2", "RolledBack")},
        T0,
    )
    assert decision.status.active_release is None


def test_a_rolled_back_release_the_route_still_names_keeps_its_pods_until_it_does_not() -> None:
    md = model(stable="fraud-v1")
    deps = {"fraud-v1": deployment("fraud-v1", 2), "fraud-v2": deployment("fraud-v2", 2)}
    releases = {
        "fraud-v1": summary("fraud-v1", "Succeeded"),
        "fraud-v2": summary("fraud-v2", "RolledBack"),
    }
    held = decide_model(md, deps, releases, T0, routed=frozenset({"fraud-v2"}))
    assert held.prune == []
    freed = decide_model(md, deps, releases, T0, routed=frozenset())
    assert [name for name, _ in freed.prune] == ["fraud-fraud-v2"]


@pytest.mark.parametrize("router", ["gatewayAPI", "istio"])
def test_the_routed_releases_are_those_the_live_route_names(router: str) -> None:
    from dataclasses import replace as with_

    from slipway.api.phases import Router
    from slipway.kube.observe import LiveRoute
    from slipway.traffic import ROUTERS

    spec = {"router": router}
    if router == "gatewayAPI":
        spec["gatewayAPI"] = {"parentRefs": [{"name": "web"}]}  # type: ignore[assignment]
    md = model(stable="fraud-v1", **spec)
    route = LiveRoute(
        kind="HTTPRoute" if router == "gatewayAPI" else "VirtualService",
        name="fraud",
        backends=(("fraud-fraud-v1", 100), ("fraud-fraud-v3", 0)),
        mirror=("fraud-fraud-v2", 30),
        fingerprint=None,
        owner_uid="uid-1",
        accepted=True if router == "gatewayAPI" else None,
    )
    routed = ROUTERS[Router(router)].routed
    names = ["fraud-v1", "fraud-v2", "fraud-v3"]
    assert routed(md, route, names) == {"fraud-v1", "fraud-v2"}  # weight 0 carries nothing
    assert routed(md, None, names) == frozenset()
    if router == "gatewayAPI":
        # A generation the Gateway has not answered for: the last one may still be live.
        assert routed(md, with_(route, accepted=None), names) == set(names)
    assert ROUTERS[Router.REPLICAS].routed(md, route, names) == frozenset()


# --- strays: what a cut-short promotion left scaled up goes to zero, in flight or not -------


def strays_of(
    md: ModelDeployment,
    deps: dict[str, Any],
    releases: dict[str, ReleaseSummary],
    routed: frozenset[str] = frozenset(),
) -> list[ScaleDeployment]:
    decision = decide_model(md, deps, releases, T0, routed)
    return [a for a in decision.actions if isinstance(a, ScaleDeployment) and a.replicas == 0]


CANARY_IN_FLIGHT = {
    "fraud-v1": summary("fraud-v1", "Succeeded", -20),
    "fraud-v2": summary("fraud-v2", "Succeeded", -10),
    "fraud-v3": summary("fraud-v3", "Progressing"),
}


def issue_state(**spec: Any) -> tuple[ModelDeployment, dict[str, Any]]:
    """v2 the stable (shrunk to 3 by v3's first step), v1 left at 1, v3 at 1."""
    md = with_history(
        model(stable="fraud-v2", active="fraud-v3", replicas=4, **spec), "fraud-v2", "fraud-v1"
    )
    deps = {
        "fraud-v1": deployment("fraud-v1", 1, replicas=1),
        "fraud-v2": deployment("fraud-v2", 3, replicas=3),
        "fraud-v3": deployment("fraud-v3", 1, replicas=1),
    }
    return md, deps


@pytest.mark.parametrize("phase", ["Pending", "Progressing", "Paused"])
def test_a_stray_previous_stable_goes_to_zero_while_a_release_is_in_flight(phase: str) -> None:
    md, deps = issue_state()
    releases = {**CANARY_IN_FLIGHT, "fraud-v3": summary("fraud-v3", phase)}
    decision = decide_model(md, deps, releases, T0)
    # Only the stray: the stable keeps its shrunk size and the candidate its pods.
    assert decision.actions == [ScaleDeployment("fraud-fraud-v1", 0)]
    assert decision.prune == []  # kept (at zero) for a rollback


def test_a_stray_previous_stable_goes_to_zero_at_rest_too() -> None:
    md, deps = issue_state()
    md.status.active_release = None
    del deps["fraud-v3"]
    deps["fraud-v2"] = deployment("fraud-v2", 4, replicas=4)
    releases = {**CANARY_IN_FLIGHT, "fraud-v3": summary("fraud-v3", "RolledBack")}
    assert strays_of(md, deps, releases) == [ScaleDeployment("fraud-fraud-v1", 0)]


def test_the_stable_and_the_candidate_are_never_strays() -> None:
    md, deps = issue_state()
    deps["fraud-v1"] = deployment("fraud-v1", 0, replicas=0)
    for shrunk in (1, 3, 4):
        deps["fraud-v2"] = deployment("fraud-v2", shrunk, replicas=shrunk)
        assert strays_of(md, deps, CANARY_IN_FLIGHT) == []


def test_what_the_live_route_may_still_reach_keeps_its_pods() -> None:
    md, deps = issue_state(router="gatewayAPI", gatewayAPI={"parentRefs": [{"name": "web"}]})
    assert strays_of(md, deps, CANARY_IN_FLIGHT, routed=frozenset({"fraud-v1"})) == []
    assert strays_of(md, deps, CANARY_IN_FLIGHT, routed=frozenset({"fraud-v2"})) == [
        ScaleDeployment("fraud-fraud-v1", 0)
    ]


def test_the_release_the_service_is_pinned_to_keeps_its_pods() -> None:
    md, deps = issue_state()
    md.status.serving = "fraud-v1"
    assert strays_of(md, deps, CANARY_IN_FLIGHT) == []


def test_a_fresh_promotion_this_view_has_not_seen_keeps_its_pods() -> None:
    # The release index says v3 Succeeded; this older view of the model still says v2.
    md, deps = issue_state()
    deps["fraud-v1"] = deployment("fraud-v1", 0, replicas=0)
    deps["fraud-v3"] = deployment("fraud-v3", 4, replicas=4)
    releases = {**CANARY_IN_FLIGHT, "fraud-v3": summary("fraud-v3", "Succeeded", 1)}
    assert strays_of(md, deps, releases) == []


def test_nothing_is_touched_while_a_rollback_runs() -> None:
    # Its target may be any earlier release being scaled up.
    md, deps = issue_state()
    md.status.active_release = None
    del deps["fraud-v3"]
    md.metadata.annotations = {c.ANNOTATION_ROLLBACK_TO: "fraud-v1@1"}
    decision = decide_model(md, deps, CANARY_IN_FLIGHT, T0)
    assert ScaleDeployment("fraud-fraud-v1", 0) not in decision.actions


@pytest.mark.parametrize(
    ("release", "phase"),
    [
        ("fraud-v0", None),
        ("fraud-v0", "RolledBack"),
        ("fraud-v0", "Failed"),
        ("fraud-v0", "Evaluated"),
    ],
)
def test_other_finished_or_deleted_releases_with_pods_go_to_zero_and_are_pruned(
    release: str, phase: str | None
) -> None:
    md, deps = issue_state()
    deps["fraud-v1"] = deployment("fraud-v1", 0, replicas=0)
    deps[release] = deployment(release, 2, replicas=2)
    releases = dict(CANARY_IN_FLIGHT)
    if phase is not None:
        releases[release] = summary(release, phase, -30)
    decision = decide_model(md, deps, releases, T0)
    assert decision.actions == [ScaleDeployment(f"fraud-{release}", 0)]
    assert [name for name, _ in decision.prune] == [f"fraud-{release}"]


def test_an_older_stable_off_the_rollback_slot_goes_to_zero_and_is_pruned() -> None:
    md, deps = issue_state()
    md = with_history(md, "fraud-v2", "fraud-v1", "fraud-v0")
    deps["fraud-v0"] = deployment("fraud-v0", 1, replicas=1)
    releases = {**CANARY_IN_FLIGHT, "fraud-v0": summary("fraud-v0", "Succeeded", -40)}
    decision = decide_model(md, deps, releases, T0)
    assert decision.actions == [
        ScaleDeployment("fraud-fraud-v0", 0),
        ScaleDeployment("fraud-fraud-v1", 0),
    ]
    assert [name for name, _ in decision.prune] == ["fraud-fraud-v0"]


def test_a_deleted_in_flight_release_goes_to_zero_as_it_is_pruned() -> None:
    md, deps = issue_state()
    deps["fraud-v1"] = deployment("fraud-v1", 0, replicas=0)
    releases = {k: v for k, v in CANARY_IN_FLIGHT.items() if k != "fraud-v3"}
    decision = decide_model(md, deps, releases, T0)
    assert ScaleDeployment("fraud-fraud-v3", 0) in decision.actions
    assert [name for name, _ in decision.prune] == ["fraud-fraud-v3"]


def test_a_release_being_deleted_in_flight_is_not_kept_as_the_candidate() -> None:
    md, deps = issue_state()
    deps["fraud-v1"] = deployment("fraud-v1", 0, replicas=0)
    going = ReleaseSummary("fraud-v3", "Progressing", T0, deleting=True)
    decision = decide_model(md, deps, {**CANARY_IN_FLIGHT, "fraud-v3": going}, T0)
    assert ScaleDeployment("fraud-fraud-v3", 0) in decision.actions


def test_strays_at_zero_cost_no_write() -> None:
    md, deps = issue_state()
    deps["fraud-v1"] = deployment("fraud-v1", 0, replicas=0)
    assert decide_model(md, deps, CANARY_IN_FLIGHT, T0).actions == []


def test_a_stray_whose_pods_are_still_terminating_is_not_scaled_again() -> None:
    # Scaled to zero already; its last pod still reports ready until it is gone.
    md, deps = issue_state()
    deps["fraud-v1"] = deployment("fraud-v1", 1, replicas=0)
    assert strays_of(md, deps, CANARY_IN_FLIGHT) == []


def test_a_rollback_cut_short_after_its_record_is_finished_by_the_next_pass() -> None:
    # `slipway rollback --to fraud-v1` recorded v1 (and the request as handled); the
    # scale-down of v2 in the same step did not happen.
    md = with_history(model(stable="fraud-v1", replicas=4), "fraud-v1", "fraud-v2")
    md.metadata.annotations = {c.ANNOTATION_ROLLBACK_TO: "fraud-v1@7"}
    md.status.handled_rollback = "fraud-v1@7"
    deps = {
        "fraud-v1": deployment("fraud-v1", 4, replicas=4),
        "fraud-v2": deployment("fraud-v2", 4, replicas=4),
    }
    releases = {
        "fraud-v1": summary("fraud-v1", "Succeeded", -20),
        "fraud-v2": summary("fraud-v2", "Succeeded", -10),
    }
    assert decide_model(md, deps, releases, T0).actions == [ScaleDeployment("fraud-fraud-v2", 0)]
    # Behind a route that may still send v2 requests, it keeps its pods until it does not.
    held = decide_model(md, deps, releases, T0, routed=frozenset({"fraud-v2"}))
    assert held.actions == []

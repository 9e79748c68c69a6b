"""The route-owning routers (gatewayAPI, istio): the objects they write and how they read them.

``build`` turns a traffic plan into an HTTPRoute or a VirtualService; ``observe``
reads one back (weights, mirror, whether the data plane accepted it); ``ensure``
writes only what is not live as wanted; ``pods_for`` sizes the candidate for its
share. All pure: bodies in, bodies and actions out.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from slipway.api import constants as c
from slipway.api.models import ModelDeployment
from slipway.api.phases import Router
from slipway.kube.children import build_release_service
from slipway.kube.fingerprint import service_fingerprint
from slipway.kube.observe import LiveRoute
from slipway.rollout.core import Action, ApplyObject, ScaleDeployment, Situation, merge
from slipway.traffic import ROUTE_KINDS, ROUTERS, gatewayapi, istio
from slipway.traffic.routes import (
    FINGERPRINT,
    BuildRoute,
    ObserveRoute,
    RoutePlan,
    describe,
    ensure,
    live,
    pods_for,
    route_body,
    service_name,
    waiting,
)
from tests.unit.factories import T0, deployment, model, release

GATEWAY: dict[str, Any] = {"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "web"}]}}
ISTIO: dict[str, Any] = {"router": "istio"}
ROUTED = {Router.GATEWAY_API: GATEWAY, Router.ISTIO: ISTIO}
PARTS: dict[Router, tuple[BuildRoute, ObserveRoute]] = {
    Router.GATEWAY_API: (gatewayapi.build, gatewayapi.observe),
    Router.ISTIO: (istio.build, istio.observe),
}

AT_REST = RoutePlan((("fraud-v1", 100),))
SPLIT = RoutePlan((("fraud-v1", 75), ("fraud-v2", 25)))
MIRRORED = RoutePlan((("fraud-v1", 100),), ("fraud-v2", 50))
PLANS = [AT_REST, SPLIT, MIRRORED, RoutePlan((("fraud-v2", 100),), ("fraud-v2", 1))]


def md(router: Router = Router.GATEWAY_API, uid: str = "uid-1", **spec: Any) -> ModelDeployment:
    m = model(stable="fraud-v1", active="fraud-v2", **{**ROUTED[router], **spec})
    m.metadata.uid = uid
    return m


def body_for(m: ModelDeployment, plan: RoutePlan) -> dict[str, Any]:
    return route_body(m, plan, PARTS[m.spec.router][0])


def with_status(
    body: dict[str, Any], generation: int = 2, parents: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The HTTPRoute as the API server holds it: a generation and its Gateways' status."""
    live_body = copy.deepcopy(body)
    live_body["metadata"]["generation"] = generation
    if parents is not None:
        live_body["status"] = {"parents": parents}
    return live_body


def parent(
    name: str = "web",
    accepted: str = "True",
    resolved: str | None = "True",
    observed: int | None = 2,
    reason: str = "Accepted",
    message: str = "",
) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = [
        {"type": "Accepted", "status": accepted, "reason": reason, "message": message}
    ]
    if resolved is not None:
        conditions.append({"type": "ResolvedRefs", "status": resolved, "reason": "BackendNotFound"})
    if observed is not None:
        for condition in conditions:
            condition["observedGeneration"] = observed
    return {
        "parentRef": {"name": name},
        "controllerName": "gw.example/ctl",
        "conditions": conditions,
    }


def accepted_route(m: ModelDeployment, plan: RoutePlan) -> LiveRoute:
    """The route live as ``plan`` says and taken by its data plane."""
    body = body_for(m, plan)
    if m.spec.router is Router.ISTIO:
        return istio.observe(body)
    refs = body["spec"]["parentRefs"]
    return gatewayapi.observe(with_status(body, parents=[parent(r["name"]) for r in refs]))


def all_services(m: ModelDeployment, *releases: str) -> dict[str, str]:
    bodies = [build_release_service(m, r) for r in releases]
    return {b["metadata"]["name"]: service_fingerprint(b) for b in bodies}


def applied(actions: list[Action], kind: str) -> list[dict[str, Any]]:
    return [a.body for a in actions if isinstance(a, ApplyObject) and a.body["kind"] == kind]


# ---------------------------------------------------------------- build: HTTPRoute


def test_httproute_carries_parents_hostnames_path_weighted_backends_and_the_mirror() -> None:
    m = md(
        port=9000,
        gatewayAPI={
            "parentRefs": [
                {"name": "web"},
                {"name": "edge", "namespace": "infra", "sectionName": "https"},
            ],
            "hostnames": ["fraud.example.com", "*.fraud.example.com"],
            "path": "/predict",
        },
    )
    plan = RoutePlan((("fraud-v1", 75), ("fraud-v2", 25)), ("fraud-v2", 10))
    body = body_for(m, plan)
    assert body["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert body["kind"] == "HTTPRoute" == gatewayapi.KIND
    meta = body["metadata"]
    assert (meta["name"], meta["namespace"]) == ("fraud", "ns")
    assert meta["labels"] == {c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE, c.LABEL_MODEL: "fraud"}
    [owner] = meta["ownerReferences"]
    assert owner["uid"] == "uid-1" and owner["controller"] is True
    assert set(meta["annotations"]) == {FINGERPRINT}
    spec = body["spec"]
    # namespace and sectionName only when set: never a null the API server would refuse
    assert spec["parentRefs"] == [
        {"name": "web"},
        {"name": "edge", "namespace": "infra", "sectionName": "https"},
    ]
    assert spec["hostnames"] == ["fraud.example.com", "*.fraud.example.com"]
    [rule] = spec["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/predict"}}]
    assert rule["backendRefs"] == [
        {"name": "fraud-fraud-v1", "port": 9000, "weight": 75},
        {"name": "fraud-fraud-v2", "port": 9000, "weight": 25},
    ]
    assert rule["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {
                "backendRef": {"name": "fraud-fraud-v2", "port": 9000},
                "percent": 10,
            },
        }
    ]


def test_httproute_without_hostnames_or_mirror_leaves_them_out_and_matches_every_path() -> None:
    body = body_for(md(), AT_REST)
    spec = body["spec"]
    assert "hostnames" not in spec
    assert spec["parentRefs"] == [{"name": "web"}]
    [rule] = spec["rules"]
    assert "filters" not in rule
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["backendRefs"] == [{"name": "fraud-fraud-v1", "port": 8080, "weight": 100}]


def test_httproute_needs_its_gateway() -> None:
    m = md(Router.ISTIO)  # no spec.gatewayAPI
    with pytest.raises(ValueError, match=r"needs spec\.gatewayAPI"):
        gatewayapi.build(m, AT_REST, {})


# ---------------------------------------------------------------- build: VirtualService


def test_virtualservice_defaults_its_host_to_the_model_and_has_no_gateways() -> None:
    body = body_for(md(Router.ISTIO), SPLIT)
    assert body["apiVersion"] == "networking.istio.io/v1"
    assert body["kind"] == "VirtualService" == istio.KIND
    assert body["metadata"]["name"] == "fraud"
    spec = body["spec"]
    assert spec["hosts"] == ["fraud"]
    assert "gateways" not in spec
    [http] = spec["http"]
    assert http["route"] == [
        {
            "destination": {
                "host": "fraud-fraud-v1.ns.svc.cluster.local",
                "port": {"number": 8080},
            },
            "weight": 75,
        },
        {
            "destination": {
                "host": "fraud-fraud-v2.ns.svc.cluster.local",
                "port": {"number": 8080},
            },
            "weight": 25,
        },
    ]
    assert "mirror" not in http and "mirrorPercentage" not in http


def test_virtualservice_carries_hosts_gateways_and_the_mirror_with_its_percentage() -> None:
    m = md(
        Router.ISTIO,
        port=9000,
        istio={"hosts": ["fraud.example.com"], "gateways": ["istio-system/public", "mesh"]},
    )
    spec = body_for(m, MIRRORED)["spec"]
    assert spec["hosts"] == ["fraud.example.com"]
    assert spec["gateways"] == ["istio-system/public", "mesh"]
    [http] = spec["http"]
    assert http["route"] == [
        {
            "destination": {
                "host": "fraud-fraud-v1.ns.svc.cluster.local",
                "port": {"number": 9000},
            },
            "weight": 100,
        }
    ]
    assert http["mirror"] == {
        "host": "fraud-fraud-v2.ns.svc.cluster.local",
        "port": {"number": 9000},
    }
    assert http["mirrorPercentage"] == {"value": 50.0}


# ---------------------------------------------------------------- observe round-trips build


@pytest.mark.parametrize("router", list(ROUTED))
@pytest.mark.parametrize("plan", PLANS, ids=["at-rest", "split", "mirrored", "all-and-mirror"])
def test_observe_reads_back_what_build_wrote(router: Router, plan: RoutePlan) -> None:
    m = md(router)
    body = body_for(m, plan)
    route = PARTS[router][1](body)
    assert route.kind == body["kind"]
    assert route.name == "fraud"
    assert route.backends == tuple((service_name(m, r), w) for r, w in plan.weights)
    want_mirror = (service_name(m, plan.mirror[0]), plan.mirror[1]) if plan.mirror else None
    assert route.mirror == want_mirror
    assert route.fingerprint == body["metadata"]["annotations"][FINGERPRINT]
    assert route.owner_uid == "uid-1"
    assert route.accepted is None  # nothing has reported on it yet
    assert ROUTE_KINDS[body["kind"]][3] is PARTS[router][1]


@pytest.mark.parametrize("router", list(ROUTED))
def test_the_fingerprint_follows_the_spec_only(router: Router) -> None:
    m = md(router)
    a, b = body_for(m, SPLIT), body_for(m, SPLIT)
    assert a["metadata"]["annotations"] == b["metadata"]["annotations"]
    assert (
        body_for(m, MIRRORED)["metadata"]["annotations"]
        != body_for(m, AT_REST)["metadata"]["annotations"]
    )
    assert (
        body_for(md(router, uid="uid-9"), SPLIT)["metadata"]["annotations"]
        == (a["metadata"]["annotations"])
    )


def test_httproute_backend_without_a_weight_weighs_one_and_a_missing_rule_reads_empty() -> None:
    body = {
        "metadata": {"name": "fraud"},
        "spec": {"rules": [{"backendRefs": [{"name": "a"}, {"name": "b", "weight": 3}]}]},
    }
    route = gatewayapi.observe(body)
    assert route.backends == (("a", 1), ("b", 3))
    assert route.share("b") == 75
    assert route.mirror is None and route.fingerprint is None and route.owner_uid is None
    empty = gatewayapi.observe({"metadata": {"name": "fraud"}, "spec": {}})
    assert empty.backends == () and empty.share("a") == 0


def test_virtualservice_destination_without_a_weight_weighs_100_and_mirror_defaults_100() -> None:
    body = {
        "metadata": {"name": "fraud"},
        "spec": {
            "http": [
                {
                    "route": [{"destination": {"host": "fraud-fraud-v1.ns.svc.cluster.local"}}],
                    "mirror": {"host": "fraud-fraud-v2"},
                }
            ]
        },
    }
    route = istio.observe(body)
    assert route.backends == (("fraud-fraud-v1", 100),)
    assert route.mirror == ("fraud-fraud-v2", 100)
    assert route.accepted is None and route.why == ""


@pytest.mark.parametrize(
    ("mirror", "percent"),
    [
        ({"percent": 10}, 10),
        ({"fraction": {"numerator": 25}}, 25),  # denominator defaults to 100
        ({"fraction": {"numerator": 3, "denominator": 4}}, 75),
        ({"fraction": {"numerator": 1, "denominator": 3}}, 33),
        ({}, 100),  # neither: every request is mirrored
    ],
)
def test_httproute_mirror_percent_or_fraction_is_read_as_a_percent(
    mirror: dict[str, Any], percent: int
) -> None:
    body = {
        "metadata": {"name": "fraud"},
        "spec": {
            "rules": [
                {
                    "backendRefs": [{"name": "fraud-fraud-v1", "weight": 1}],
                    "filters": [
                        {"type": "RequestHeaderModifier", "requestHeaderModifier": {}},
                        {
                            "type": "RequestMirror",
                            "requestMirror": {"backendRef": {"name": "fraud-fraud-v2"}, **mirror},
                        },
                    ],
                }
            ]
        },
    }
    route = gatewayapi.observe(body)
    assert route.mirror == ("fraud-fraud-v2", percent)
    assert route.mirrored("fraud-fraud-v2") == percent
    assert route.mirrored("fraud-fraud-v1") == 0


@pytest.mark.parametrize("mirror", [{"percent": 0}, {"fraction": {"numerator": 0}}])
def test_httproute_mirror_of_zero_percent_is_read_as_zero(mirror: dict[str, Any]) -> None:
    filters = [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "b"}, **mirror}}]
    body = {"metadata": {"name": "fraud"}, "spec": {"rules": [{"filters": filters}]}}
    assert gatewayapi.observe(body).mirror == ("b", 0)
    assert gatewayapi.observe(body).mirrored("b") == 0


@pytest.mark.parametrize(("value", "percent"), [(12.0, 12), (0.0, 0), (99.6, 100), (100, 100)])
def test_virtualservice_mirror_percentage_is_rounded(value: float, percent: int) -> None:
    body = {
        "metadata": {"name": "fraud"},
        "spec": {"http": [{"mirror": {"host": "b.ns.svc"}, "mirrorPercentage": {"value": value}}]},
    }
    assert istio.observe(body).mirror == ("b", percent)


# ---------------------------------------------------------------- HTTPRoute acceptance


def gw_body(refs: int = 1) -> dict[str, Any]:
    names = ["web", "edge"][:refs]
    m = md(gatewayAPI={"parentRefs": [{"name": n} for n in names]})
    return body_for(m, SPLIT)


@pytest.mark.parametrize(
    ("refs", "parents", "accepted", "why"),
    [
        (1, None, None, "Gateway web has not answered"),  # no status at all yet
        (1, [], None, "Gateway web has not answered"),
        # The Gateway judged an older generation: silent on this one.
        (1, [parent(observed=1)], None, "Gateway web last answered generation 1"),
        (1, [parent(observed=None)], True, ""),  # no observedGeneration: taken as current
        (1, [parent()], True, ""),
        (1, [parent(observed=3)], True, ""),
        (
            1,
            [parent(accepted="False", reason="NotAllowedByListeners", message="no listener")],
            False,
            "Gateway web: Accepted=False NotAllowedByListeners: no listener",
        ),
        (1, [parent(resolved="False")], False, "Gateway web: ResolvedRefs=False BackendNotFound:"),
        # A stale refusal is no answer.
        (1, [parent(accepted="False", observed=1)], None, "Gateway web last answered generation 1"),
        (
            1,
            [parent(accepted="Unknown", reason="Pending")],
            None,
            "Gateway web: Accepted=Unknown Pending",
        ),
        (1, [parent(resolved=None)], True, ""),
        (2, [parent("web")], None, "Gateway edge has not answered"),  # one of two answered
        (
            2,
            [parent("web", observed=1), parent("edge", accepted="Unknown")],
            None,
            "Gateway web last answered generation 1; Gateway edge: Accepted=Unknown Accepted",
        ),
        (2, [parent("web"), parent("edge")], True, ""),
        (
            2,
            [parent("web"), parent("edge", accepted="False", reason="NotAllowed")],
            False,
            "Gateway edge: Accepted=False NotAllowed:",
        ),
    ],
)
def test_httproute_is_accepted_only_when_every_parent_took_the_current_generation(
    refs: int, parents: list[dict[str, Any]] | None, accepted: bool | None, why: str
) -> None:
    route = gatewayapi.observe(with_status(gw_body(refs), generation=2, parents=parents))
    assert route.accepted is accepted
    assert route.why == why
    assert gatewayapi._accepted(with_status(gw_body(refs), 2, parents)) == (accepted, why)


def test_a_gateway_named_by_two_parent_refs_must_accept_the_route_on_both() -> None:
    m = md(gatewayAPI={"parentRefs": [{"name": "web", "sectionName": a} for a in ("http", "tls")]})
    body = body_for(m, SPLIT)
    assert gatewayapi._accepted(with_status(body, 2, [parent()])) == (
        None,
        "Gateway web has not answered",
    )
    assert gatewayapi._accepted(with_status(body, 2, [parent(), parent()])) == (True, "")


def test_httproute_without_a_generation_takes_every_condition_as_current() -> None:
    body = copy.deepcopy(gw_body())
    body["status"] = {"parents": [parent(observed=1)]}
    assert "generation" not in body["metadata"]
    assert gatewayapi.observe(body).accepted is True


# ---------------------------------------------------------------- LiveRoute


@pytest.mark.parametrize(
    ("backends", "shares"),
    [
        ((("a", 3), ("b", 1)), {"a": 75, "b": 25, "c": 0}),
        ((("a", 1), ("b", 1)), {"a": 50, "b": 50}),
        ((("a", 100),), {"a": 100, "b": 0}),
        ((("a", 0), ("b", 5)), {"a": 0, "b": 100}),
        ((("a", 2), ("b", 1)), {"a": 67, "b": 33}),
        ((), {"a": 0}),
        ((("a", 0),), {"a": 0}),  # no weight anywhere: nothing, not a division by zero
    ],
)
def test_live_route_share_is_proportional_to_the_weights(
    backends: tuple[tuple[str, int], ...], shares: dict[str, int]
) -> None:
    route = LiveRoute("HTTPRoute", "fraud", backends, None, None, None)
    assert {name: route.share(name) for name in shares} == shares


# ---------------------------------------------------------------- ensure


@pytest.mark.parametrize("router", list(ROUTED))
@pytest.mark.parametrize("plan", PLANS, ids=["at-rest", "split", "mirrored", "all-and-mirror"])
def test_ensure_writes_nothing_when_the_route_and_services_are_live_as_wanted(
    router: Router, plan: RoutePlan
) -> None:
    m = md(router)
    build, observe = PARTS[router]
    services = all_services(m, "fraud-v1", "fraud-v2")
    assert ensure(m, plan, accepted_route(m, plan), services, build, observe) == []


@pytest.mark.parametrize("router", list(ROUTED))
def test_ensure_writes_every_service_and_the_route_when_nothing_exists(router: Router) -> None:
    m = md(router)
    build, observe = PARTS[router]
    actions = ensure(m, MIRRORED, None, {}, build, observe)
    assert [s["metadata"]["name"] for s in applied(actions, "Service")] == [
        "fraud-fraud-v1",
        "fraud-fraud-v2",
    ]
    [route] = [
        a.body for a in actions if isinstance(a, ApplyObject) and a.body["kind"] != "Service"
    ]
    assert route == body_for(m, MIRRORED)
    # Services first: a backend the route names exists before the route does.
    assert isinstance(actions[-1], ApplyObject) and actions[-1].body is route


def test_ensure_applies_a_release_both_weighted_and_mirrored_to_once() -> None:
    m = md()
    plan = RoutePlan((("fraud-v2", 100),), ("fraud-v2", 5))
    actions = ensure(m, plan, None, {}, gatewayapi.build, gatewayapi.observe)
    assert [s["metadata"]["name"] for s in applied(actions, "Service")] == ["fraud-fraud-v2"]


def test_ensure_applies_a_service_only_when_missing_or_different() -> None:
    m = md()
    route = accepted_route(m, SPLIT)
    stable = build_release_service(m, "fraud-v1")
    changed = copy.deepcopy(stable)
    changed["spec"]["ports"][0]["port"] = 1234
    cases: list[tuple[dict[str, str], list[str]]] = [
        (all_services(m, "fraud-v1", "fraud-v2"), []),
        (all_services(m, "fraud-v1"), ["fraud-fraud-v2"]),
        ({}, ["fraud-fraud-v1", "fraud-fraud-v2"]),
        (
            {**all_services(m, "fraud-v2"), "fraud-fraud-v1": service_fingerprint(changed)},
            ["fraud-fraud-v1"],
        ),
        # A Service of another release (the old stable) is left alone.
        (all_services(m, "fraud-v1", "fraud-v2", "fraud-v0"), []),
    ]
    for services, written in cases:
        actions = ensure(m, SPLIT, route, services, gatewayapi.build, gatewayapi.observe)
        assert [s["metadata"]["name"] for s in applied(actions, "Service")] == written
        assert applied(actions, "HTTPRoute") == []
        assert applied(actions, "Service") == [build_release_service(m, r[6:]) for r in written]


def drifted(m: ModelDeployment, plan: RoutePlan, edit: Any) -> LiveRoute:
    """The route Slipway applied for ``plan``, then changed by hand (its annotation kept)."""
    body = body_for(m, plan)
    edit(body["spec"])
    return PARTS[m.spec.router][1](body)


def _reweigh_gw(spec: dict[str, Any]) -> None:
    spec["rules"][0]["backendRefs"][0]["weight"] = 50


def _reweigh_istio(spec: dict[str, Any]) -> None:
    spec["http"][0]["route"][0]["weight"] = 50


def _unmirror_gw(spec: dict[str, Any]) -> None:
    del spec["rules"][0]["filters"]


def _unmirror_istio(spec: dict[str, Any]) -> None:
    del spec["http"][0]["mirror"]


def _halve_gw_mirror(spec: dict[str, Any]) -> None:
    spec["rules"][0]["filters"][0]["requestMirror"]["percent"] = 25


def _halve_istio_mirror(spec: dict[str, Any]) -> None:
    spec["http"][0]["mirrorPercentage"]["value"] = 25.0


@pytest.mark.parametrize(
    ("router", "plan", "edit"),
    [
        (Router.GATEWAY_API, SPLIT, _reweigh_gw),
        (Router.ISTIO, SPLIT, _reweigh_istio),
        (Router.GATEWAY_API, MIRRORED, _unmirror_gw),
        (Router.ISTIO, MIRRORED, _unmirror_istio),
        (Router.GATEWAY_API, MIRRORED, _halve_gw_mirror),
        (Router.ISTIO, MIRRORED, _halve_istio_mirror),
    ],
)
def test_ensure_rewrites_a_route_edited_by_hand_even_with_its_fingerprint(
    router: Router, plan: RoutePlan, edit: Any
) -> None:
    m = md(router)
    route = drifted(m, plan, edit)
    assert route.fingerprint == body_for(m, plan)["metadata"]["annotations"][FINGERPRINT]
    services = all_services(m, "fraud-v1", "fraud-v2")
    actions = ensure(m, plan, route, services, *PARTS[router])
    assert actions == [ApplyObject(body_for(m, plan))]


@pytest.mark.parametrize("router", list(ROUTED))
def test_ensure_rewrites_a_route_whose_spec_fingerprint_changed(router: Router) -> None:
    before = md(router)
    if router is Router.GATEWAY_API:
        after = md(router, gatewayAPI={"parentRefs": [{"name": "web"}], "hostnames": ["a.io"]})
    else:
        after = md(router, istio={"hosts": ["a.io"]})
    route = accepted_route(before, SPLIT)  # same weights, old hostnames
    services = all_services(after, "fraud-v1", "fraud-v2")
    actions = ensure(after, SPLIT, route, services, *PARTS[router])
    assert actions == [ApplyObject(body_for(after, SPLIT))]


@pytest.mark.parametrize("router", list(ROUTED))
def test_ensure_takes_over_a_route_of_a_predecessor_model(router: Router) -> None:
    old, new = md(router, uid="uid-0"), md(router, uid="uid-1")
    route = accepted_route(old, SPLIT)
    assert route.owner_uid == "uid-0"
    actions = ensure(new, SPLIT, route, all_services(new, "fraud-v1", "fraud-v2"), *PARTS[router])
    assert actions == [ApplyObject(body_for(new, SPLIT))]
    [body] = applied(actions, body_for(new, SPLIT)["kind"])
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


# ---------------------------------------------------------------- live, describe, waiting


def test_live_needs_the_planned_weights_and_mirror_and_for_gateway_api_acceptance() -> None:
    m = md()
    route = accepted_route(m, MIRRORED)
    assert live(route, MIRRORED, m, reports=True)
    assert not live(route, AT_REST, m, reports=True)  # a mirror nobody wants
    assert not live(accepted_route(m, AT_REST), MIRRORED, m, reports=True)
    assert not live(None, MIRRORED, m, reports=True)
    assert not live(replace(route, accepted=None), MIRRORED, m, reports=True)
    assert live(replace(route, accepted=None), MIRRORED, m, reports=False)  # istio
    assert not live(replace(route, accepted=False), MIRRORED, m, reports=False)
    zero = replace(accepted_route(m, AT_REST), backends=(("fraud-fraud-v1", 100), ("x", 0)))
    assert live(zero, RoutePlan((("fraud-v1", 100), ("fraud-v2", 0))), m, reports=True)


def test_describe_names_releases_weights_mirror_and_acceptance() -> None:
    m = md()
    route = accepted_route(m, MIRRORED)
    assert describe(route, m) == "HTTPRoute fraud: fraud-v1 100; mirror 50% to fraud-v2; accepted"
    split = replace(accepted_route(m, SPLIT), accepted=None)
    assert describe(split, m) == "HTTPRoute fraud: fraud-v1 75, fraud-v2 25"
    refused = replace(route, accepted=False, why="Gateway web: Accepted=False X: y")
    assert describe(refused, m) == (
        "HTTPRoute fraud: fraud-v1 100; mirror 50% to fraud-v2; NOT accepted:"
        " Gateway web: Accepted=False X: y"
    )
    assert describe(replace(route, backends=()), m) is not None
    assert "no backends" in (describe(replace(route, backends=()), m) or "")
    assert describe(None, m) is None


def test_waiting_says_what_the_route_still_lacks() -> None:
    m = md()
    route = accepted_route(m, SPLIT)
    assert waiting(None, m, planned=False) == "the 'fraud' route does not exist yet"
    assert waiting(route, m, planned=False) == (
        "HTTPRoute 'fraud' generation 2 does not have the new weights yet"
    )
    silent = replace(route, accepted=None, why="Gateway web last answered generation 1")
    assert waiting(silent, m, planned=True) == (
        "HTTPRoute 'fraud' generation 2 has no status from its data plane yet"
        " (Gateway web last answered generation 1)"
    )
    refused = replace(route, accepted=False, why="Gateway web: Accepted=False X: y")
    assert waiting(refused, m, planned=True) == (
        "HTTPRoute 'fraud' generation 2 is not accepted: Gateway web: Accepted=False X: y"
    )
    # istio: no generation-aware status, the route's name alone
    assert waiting(replace(route, generation=None), m, planned=False) == (
        "HTTPRoute 'fraud' does not have the new weights yet"
    )


# ---------------------------------------------------------------- pods_for


@pytest.mark.parametrize(
    ("replicas", "percent", "pods"),
    [
        (10, 1, 1),  # at least one
        (10, 10, 1),
        (10, 50, 5),
        (10, 99, 10),  # enough for the share: rounded up
        (10, 100, 10),
        (4, 1, 1),
        (4, 10, 1),
        (4, 25, 1),
        (4, 26, 2),
        (4, 50, 2),
        (4, 99, 4),
        (4, 100, 4),
        (3, 50, 2),
        (1, 1, 1),
        (1, 100, 1),
    ],
)
def test_pods_for_a_share(replicas: int, percent: int, pods: int) -> None:
    assert pods_for(model(replicas=replicas), percent) == pods


# ---------------------------------------------------------------- the ops


def situation(
    m: ModelDeployment,
    route: LiveRoute | None,
    deployments: dict[str, Any],
    services: dict[str, str] | None = None,
) -> Situation:
    return Situation(
        release=release(strategy="canary"),
        model=m,
        siblings=(),
        deployments=deployments,
        now=T0,
        route=route,
        services=services if services is not None else all_services(m, "fraud-v1", "fraud-v2"),
    )


STABLE = {"fraud-v1": deployment("fraud-v1", ready=4, replicas=4)}


@pytest.mark.parametrize("router", list(ROUTED))
def test_mirror_sizes_the_candidate_for_its_share_and_keeps_the_stable_whole(
    router: Router,
) -> None:
    m = md(router, replicas=4)
    shrunk = {"fraud-v1": deployment("fraud-v1", ready=3, replicas=3)}
    ops = ROUTERS[router]
    assert ops.mirror is not None
    placement = ops.mirror(situation(m, accepted_route(m, AT_REST), shrunk), m, 50)
    [dep] = applied(placement.actions, "Deployment")
    assert dep["spec"]["replicas"] == 2
    assert ScaleDeployment("fraud-fraud-v1", 4) in placement.actions
    assert not placement.reached and placement.achieved == 0
    assert not applied(placement.actions, body_for(m, MIRRORED)["kind"])  # no pod ready yet
    assert placement.note == "waiting for 0/2 ready candidate pods before the route changes"
    # Its two pods ready: the mirror goes on the route, after what it names.
    ready = {**shrunk, "fraud-v2": deployment("fraud-v2", ready=2, replicas=2)}
    placement = ops.mirror(situation(m, accepted_route(m, AT_REST), ready), m, 50)
    assert not placement.reached and placement.achieved == 0
    assert ScaleDeployment("fraud-fraud-v1", 4) in placement.actions
    last = placement.actions[-1]
    assert isinstance(last, ApplyObject) and last.body == body_for(m, MIRRORED)


@pytest.mark.parametrize("router", list(ROUTED))
def test_a_mirror_live_with_ready_pods_is_reached_and_writes_nothing(router: Router) -> None:
    m = md(router, replicas=4)
    ops = ROUTERS[router]
    assert ops.mirror is not None
    deps = {**STABLE, "fraud-v2": deployment("fraud-v2", ready=2, replicas=2)}
    placement = ops.mirror(situation(m, accepted_route(m, MIRRORED), deps), m, 50)
    assert placement.reached and placement.actions == [] and placement.achieved == 50
    assert placement.note == ""
    assert placement.route is not None and "mirror 50% to fraud-v2" in placement.route


def test_an_unanswered_httproute_carries_nothing_yet() -> None:
    m = md(replicas=4)
    deps = {**STABLE, "fraud-v2": deployment("fraud-v2", ready=1, replicas=1)}
    route = replace(accepted_route(m, SPLIT), accepted=None)
    placement = ROUTERS[Router.GATEWAY_API].place(situation(m, route, deps), m, 25)
    assert placement.achieved == 0 and not placement.reached
    assert placement.actions == []  # the spec is right: nothing to write, only to wait
    assert placement.note == "HTTPRoute 'fraud' generation 2 has no status from its data plane yet"
    # istio reports nothing: a route not refused carries its weights
    mi = md(Router.ISTIO, replicas=4)
    placed = ROUTERS[Router.ISTIO].place(situation(mi, accepted_route(mi, SPLIT), deps), mi, 25)
    assert placed.reached and placed.achieved == 25


@pytest.mark.parametrize("router", list(ROUTED))
def test_at_rest_keeps_the_stable_at_100_without_a_mirror_and_leaves_a_release_in_flight(
    router: Router,
) -> None:
    m = md(router)
    ops = ROUTERS[router]
    services = all_services(m, "fraud-v1", "fraud-v2")
    leftover = accepted_route(m, MIRRORED)
    assert ops.at_rest(m, leftover, services) == []  # fraud-v2 is in flight: its route
    m.status.active_release = None
    assert ops.at_rest(m, leftover, services) == [ApplyObject(body_for(m, AT_REST))]
    assert ops.at_rest(m, accepted_route(m, AT_REST), services) == []
    m.status.stable_release = None
    assert ops.at_rest(m, None, {}) == []


@pytest.mark.parametrize("router", list(ROUTED))
def test_a_canary_weight_goes_on_the_route_only_once_the_candidate_has_ready_pods(
    router: Router,
) -> None:
    m = md(router, replicas=4)
    ops = ROUTERS[router]
    kind = body_for(m, SPLIT)["kind"]
    only_stable = all_services(m, "fraud-v1")
    first = ops.place(situation(m, accepted_route(m, AT_REST), dict(STABLE), only_stable), m, 25)
    assert applied(first.actions, "Deployment")  # the candidate is created
    assert [s["metadata"]["name"] for s in applied(first.actions, "Service")] == ["fraud-fraud-v2"]
    assert applied(first.actions, kind) == []  # no weight before any ready pod
    assert not first.reached and first.achieved == 0
    assert first.note == "waiting for 0/1 ready candidate pods before the route changes"
    # Created but not ready: still nothing on the route.
    deps = {**STABLE, "fraud-v2": deployment("fraud-v2", ready=0, replicas=1)}
    waiting = ops.place(situation(m, accepted_route(m, AT_REST), deps), m, 25)
    assert waiting.actions == [] and not waiting.reached
    assert waiting.note == "waiting for 0/1 ready candidate pods before the route changes"
    # Growing to 50 %, one of two pods ready: the route keeps the 25 % it has.
    deps = {**STABLE, "fraud-v2": deployment("fraud-v2", ready=1, replicas=2)}
    growing = ops.place(situation(m, accepted_route(m, SPLIT), deps), m, 50)
    assert growing.actions == [] and not growing.reached and growing.achieved == 25
    assert growing.note == "waiting for 1/2 ready candidate pods before the route changes"
    # Shrinking to its share (2 pods, 1 wanted; all or some ready): it has the pods for it,
    # so the weight goes on the route as the scale-down is asked, and counts once live.
    for have in (2, 1):
        deps = {**STABLE, "fraud-v2": deployment("fraud-v2", ready=have, replicas=2)}
        shrinking = ops.place(situation(m, accepted_route(m, AT_REST), deps), m, 25)
        scale = ScaleDeployment("fraud-fraud-v2", 1)
        assert shrinking.actions == [scale, ApplyObject(body_for(m, SPLIT))]
        assert not shrinking.reached and "ready candidate pods" not in shrinking.note
        shrunk = ops.place(situation(m, accepted_route(m, SPLIT), deps), m, 25)
        assert shrunk.actions == [scale] and shrunk.reached and shrunk.achieved == 25
    # Ready: the weight goes on the route; reached once the route carries it.
    deps = {**STABLE, "fraud-v2": deployment("fraud-v2", ready=1, replicas=1)}
    ready = ops.place(situation(m, accepted_route(m, AT_REST), deps), m, 25)
    assert ready.actions == [ApplyObject(body_for(m, SPLIT))]
    assert not ready.reached and ready.note.endswith("does not have the new weights yet")
    done = ops.place(situation(m, accepted_route(m, SPLIT), deps), m, 25)
    assert done.reached and done.actions == [] and done.achieved == 25 and done.note == ""


@pytest.mark.parametrize("router", list(ROUTED))
def test_without_a_route_a_candidate_not_ready_gets_the_stable_at_100_meanwhile(
    router: Router,
) -> None:
    m = md(router, replicas=4)
    ops = ROUTERS[router]
    assert ops.mirror is not None
    stable = all_services(m, "fraud-v1")
    for placement in (
        ops.place(situation(m, None, dict(STABLE), stable), m, 25),
        ops.mirror(situation(m, None, dict(STABLE), stable), m, 50),
    ):
        assert [s["metadata"]["name"] for s in applied(placement.actions, "Service")] == [
            "fraud-fraud-v2"
        ]
        assert placement.actions[-1] == ApplyObject(body_for(m, AT_REST))
        assert not placement.reached and placement.achieved == 0
    # No stable yet: nothing to route to until the candidate is ready.
    m.status.stable_release = None
    first = ops.place(situation(m, None, {}, {}), m, 100)
    kinds = [a.body["kind"] for a in first.actions if isinstance(a, ApplyObject)]
    assert kinds == ["Deployment", "Service"]
    assert "waiting for 0/4 ready candidate pods" in first.note


@pytest.mark.parametrize("router", list(ROUTED))
def test_without_a_route_or_services_each_object_is_applied_once(router: Router) -> None:
    m = md(router, replicas=4)
    ops = ROUTERS[router]
    assert ops.mirror is not None
    for placement in (
        ops.place(situation(m, None, dict(STABLE), {}), m, 25),
        ops.mirror(situation(m, None, dict(STABLE), {}), m, 50),
    ):
        # The candidate's Deployment and Service share a name: both stay.
        objects = [a.body for a in placement.actions if isinstance(a, ApplyObject)]
        assert len(objects) == len(placement.actions)
        assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
            ("Deployment", "fraud-fraud-v2"),
            ("Service", "fraud-fraud-v1"),
            ("Service", "fraud-fraud-v2"),
            (body_for(m, AT_REST)["kind"], "fraud"),
        ]
        assert placement.actions[-1] == ApplyObject(body_for(m, AT_REST))


def test_merge_drops_repeats_and_keeps_the_later_of_one_objects_writes() -> None:
    m = md()
    dep, svc = ScaleDeployment("fraud-fraud-v2", 2), build_release_service(m, "fraud-v2")
    svc_again = copy.deepcopy(svc)
    svc_again["metadata"]["labels"]["edited"] = "yes"
    deployment_body = {"kind": "Deployment", "metadata": {"name": "fraud-fraud-v2"}}
    first: list[Action] = [dep, ApplyObject(deployment_body), ApplyObject(svc)]
    second: list[Action] = [
        ApplyObject(body_for(m, AT_REST)),
        ScaleDeployment("fraud-fraud-v2", 4),
        ApplyObject(svc),
        ApplyObject(body_for(m, SPLIT)),
        ApplyObject(svc_again),
    ]
    assert merge(first, second) == [
        ApplyObject(deployment_body),
        ScaleDeployment("fraud-fraud-v2", 4),
        ApplyObject(body_for(m, SPLIT)),
        ApplyObject(svc_again),
    ]
    assert merge(first, []) == first and merge([], first + first) == first

"""How the kopf handlers are registered (no cluster needed): no timers, no finalizers."""

from __future__ import annotations

import kopf

import slipway.handlers.operator  # noqa: F401  (registers the handlers)


def test_no_timers_or_daemons_are_registered() -> None:
    # Per-object timers kept acting on deleted objects' stale bodies; work now comes
    # from watch events and computed wake-up times through one queue.
    # kopf has no public listing of registered handlers: these read its registries.
    registry = kopf.get_default_registry()
    assert not registry._spawning.get_all_handlers()


def test_no_handler_requires_a_finalizer() -> None:
    registry = kopf.get_default_registry()
    assert not registry._changing.get_all_handlers()
    watching = registry._watching.get_all_handlers()
    assert watching and all(not getattr(h, "requires_finalizer", False) for h in watching)


def test_every_kind_that_drives_a_pass_has_an_event_handler() -> None:
    registry = kopf.get_default_registry()
    ids = {h.id for h in registry._watching.get_all_handlers()}
    assert ids == {
        "model_changed",
        "release_changed",
        "deployment_changed",
        "service_changed",
        "policy_changed",
        # one per route kind a router owns (traffic.ROUTE_KINDS)
        "httproute_changed",
        "virtualservice_changed",
    }


def test_every_route_kind_is_indexed() -> None:
    from slipway.traffic import ROUTE_KINDS

    registry = kopf.get_default_registry()
    ids = {h.id for h in registry._indexing.get_all_handlers()}
    assert {f"route_index_{kind.lower()}" for kind in ROUTE_KINDS} <= ids

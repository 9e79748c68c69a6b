"""How the kopf handlers are registered (no cluster needed)."""

from __future__ import annotations


def test_timers_are_registered_without_finalizers() -> None:
    import kopf

    import slipway.handlers.operator as handlers

    timers = [h for h in kopf.get_default_registry()._spawning._handlers if "reconcile" in h.id]
    assert {h.id for h in timers} == {"reconcile_release", "reconcile_model"}
    assert not any(h.requires_finalizer for h in timers)
    assert handlers.drop_timer_finalizers() == 0  # idempotent

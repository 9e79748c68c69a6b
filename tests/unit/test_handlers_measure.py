"""Measurements off the pass (slipway.handlers.measure): a pass never waits long on a read.

The measure functions here block on events the test releases, so each property is checked
without timing anything: a slow measurement gives the pass None at once and queues the model
when it ends; one per release is in flight; a finished one is used once, only for the step
it was taken for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from slipway.api.models import SLOResult
from slipway.api.phases import Verdict
from slipway.handlers.measure import MeasureKey, Measurements
from slipway.handlers.snapshot import ModelKey

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
KEY = MeasureKey("ns", "fraud", "fraud-v2", "uid-2", T0, 1, T0 + timedelta(seconds=5))


def result(reason: str) -> list[SLOResult]:
    return [SLOResult(slo="errors", verdict=Verdict.PASS, reason=reason)]


class Gate:
    """A measure function that ends only when released; counts its calls."""

    def __init__(self, reason: str = "measured") -> None:
        self.reason, self.calls = reason, 0
        self.release = threading.Event()
        self.started = threading.Event()

    def __call__(self) -> list[SLOResult]:
        self.calls += 1
        self.started.set()
        assert self.release.wait(10), "the test never released the measurement"
        return result(self.reason)


@pytest.fixture
def queued() -> list[ModelKey]:
    return []


@pytest.fixture
def done(queued: list[ModelKey]) -> Iterator[tuple[Measurements, threading.Event]]:
    """Measurements whose on_done records the model queued again, and signals it."""
    signal = threading.Event()

    def on_done(key: ModelKey) -> None:
        queued.append(key)
        signal.set()

    measurements = Measurements(on_done=on_done, workers=2, wait_seconds=0.05)
    yield measurements, signal
    measurements.shutdown()


def instant(reason: str) -> Callable[[], list[SLOResult]]:
    return lambda: result(reason)


def test_a_quick_measurement_is_decided_on_in_the_pass_that_started_it(
    done: tuple[Measurements, threading.Event],
) -> None:
    measurements, _ = done
    assert measurements.take(KEY, T0, None, instant("fast")) == result("fast")


def test_a_slow_one_gives_the_pass_nothing_then_queues_the_model_and_is_used_next(
    done: tuple[Measurements, threading.Event], queued: list[ModelKey]
) -> None:
    measurements, signal = done
    slow = Gate("slow")
    assert measurements.take(KEY, T0, None, slow) is None
    assert measurements.in_flight("ns", "fraud", "fraud-v2") and queued == []
    # Passes meanwhile (an abort, say) neither wait nor start a second read.
    for _ in range(3):
        assert measurements.take(KEY, T0 + timedelta(seconds=1), None, slow) is None
    slow.release.set()
    assert signal.wait(5)
    assert queued == [("ns", "fraud")] and slow.calls == 1
    assert measurements.take(KEY, T0 + timedelta(seconds=2), None, slow) == result("slow")


def test_a_finished_measurement_is_used_once(
    done: tuple[Measurements, threading.Event],
) -> None:
    measurements, _ = done
    assert measurements.take(KEY, T0, None, instant("first")) == result("first")
    # The pass recorded it at T0; the next due analysis measures anew.
    later = T0 + timedelta(seconds=3)
    assert measurements.take(KEY, later, T0, instant("second")) == result("second")


def test_a_measurement_of_an_earlier_step_is_never_used_for_the_next(
    done: tuple[Measurements, threading.Event],
) -> None:
    measurements, signal = done
    slow = Gate("step 1")
    assert measurements.take(KEY, T0, None, slow) is None
    next_step = MeasureKey("ns", "fraud", "fraud-v2", "uid-2", T0, 2, T0 + timedelta(seconds=20))
    # While step 1's read is in flight, step 2 waits for it (one read per release).
    assert measurements.take(next_step, T0 + timedelta(seconds=20), None, instant("x")) is None
    slow.release.set()
    assert signal.wait(5)
    got = measurements.take(next_step, T0 + timedelta(seconds=21), None, instant("step 2"))
    assert got == result("step 2")
    # The same for a release deleted and re-created under its name (another uid).
    again = MeasureKey("ns", "fraud", "fraud-v2", "uid-3", T0, 2, T0 + timedelta(seconds=20))
    assert measurements.take(again, T0 + timedelta(seconds=22), None, instant("new")) == result(
        "new"
    )


def test_releases_and_models_do_not_wait_for_each_other(
    done: tuple[Measurements, threading.Event],
) -> None:
    measurements, _ = done
    slow = Gate()
    assert measurements.take(KEY, T0, None, slow) is None
    other = MeasureKey("ns", "churn", "churn-v2", "uid-9", T0, 1, T0)
    assert measurements.take(other, T0, None, instant("other")) == result("other")
    slow.release.set()


def test_a_failing_measurement_is_logged_not_queued_and_retried_by_the_next_pass(
    done: tuple[Measurements, threading.Event],
    queued: list[ModelKey],
    caplog: pytest.LogCaptureFixture,
) -> None:
    measurements, _ = done

    def broken() -> list[SLOResult]:
        raise RuntimeError("a bug")

    assert measurements.take(KEY, T0, None, broken) is None
    assert "measuring release ns/fraud-v2 failed" in caplog.text
    assert queued == []
    assert measurements.take(KEY, T0, None, instant("retried")) == result("retried")


def test_keep_only_forgets_releases_no_longer_in_flight(
    done: tuple[Measurements, threading.Event],
) -> None:
    measurements, _ = done
    assert measurements.take(KEY, T0, None, instant("kept"))
    measurements.keep_only("ns", "fraud", {"fraud-v2"})
    assert measurements.take(KEY, T0 + timedelta(seconds=1), None, instant("other")) == result(
        "kept"
    )
    measurements.keep_only("ns", "fraud", set())
    assert measurements.take(KEY, T0 + timedelta(seconds=1), None, instant("new")) == result("new")

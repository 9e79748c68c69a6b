"""Measurements off the reconcile pass: a slow read never holds up a model's controls or other
models.

Why. An analysis reads what the operator does not control: Prometheus, and each pod's
``/predictions`` through the API server. Every read is bounded (analysis/bounded.py), but
bounded still means seconds, and a pass that waits on a read holds its model's key: an abort,
a promote or a pause annotated meanwhile waits with it, and once every reconcile worker waits,
so does every other model. So a pass never waits on a measurement for more than
``WAIT_SECONDS``. It asks ``Measurements.take`` for the finished measurement of exactly this
release step; if there is none it starts one in this module's own thread pool (at most one in
flight per release) and waits for it at most ``WAIT_SECONDS`` (a healthy backend answers well
within that, so a pass usually decides on the measurement it started), then decides without
one. When a measurement finishes, its model is queued again and the next pass uses it.

A measurement belongs to the release step it was started for (``MeasureKey``: the release's
uid, start, step, and when the step began or its weight was reached): one finishing after the
step moved on is dropped, never counted for the next step. It is used once, by a pass whose
release has recorded no analysis since the measurement was started.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from slipway import metrics
from slipway.api.models import SLOResult
from slipway.handlers.snapshot import ModelKey

log = logging.getLogger("slipway")

WORKERS: Final = 4
"""Measurements running at once, for all models (each is one release's analysis)."""
WAIT_SECONDS: Final = 0.5
"""The longest a pass waits for the measurement it started."""

Results = list[SLOResult]


@dataclass(frozen=True, slots=True)
class MeasureKey:
    """The release step a measurement is taken for."""

    namespace: str
    model: str
    release: str
    uid: str | None
    started: datetime | None
    step: int | None
    since: datetime | None
    """When the step's weight was reached, else when the step began."""


@dataclass(frozen=True, slots=True)
class _Measurement:
    key: MeasureKey
    at: datetime
    """The clock of the pass that started it: the moment it measures."""
    future: Future[Results | None]


class Measurements:
    """The measurements in flight and the latest finished one, per release."""

    def __init__(
        self,
        on_done: Callable[[ModelKey], None] | None = None,
        workers: int = WORKERS,
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        self.on_done = on_done
        self.wait_seconds = wait_seconds
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="measure")
        self._latest: dict[tuple[str, str, str], _Measurement] = {}
        self._lock = threading.Lock()

    def take(
        self,
        key: MeasureKey,
        now: datetime,
        last_recorded: datetime | None,
        measure: Callable[[], Results],
    ) -> Results | None:
        """This step's finished measurement if the release has recorded none since it was
        started; else start one (unless one of this release is in flight) and wait for it
        at most ``wait_seconds``; None: no measurement to decide on in this pass."""
        where = (key.namespace, key.model, key.release)
        with self._lock:
            latest = self._latest.get(where)
            if latest is not None and not latest.future.done():
                return None  # in flight: its end queues the model again
            if (
                latest is not None
                and latest.key == key
                and (last_recorded is None or latest.at > last_recorded)
                and latest.future.result() is not None
            ):
                return latest.future.result()
            started = _Measurement(key, now, self._pool.submit(self._run, key, measure))
            self._latest[where] = started
            metrics.MEASUREMENTS_IN_FLIGHT.inc()
        started.future.add_done_callback(lambda done: self._finished(key, done))
        try:
            return started.future.result(timeout=self.wait_seconds)
        except FutureTimeout:
            return None

    def in_flight(self, namespace: str, model: str, release: str) -> bool:
        latest = self._latest.get((namespace, model, release))
        return latest is not None and not latest.future.done()

    def keep_only(self, namespace: str, model: str, releases: set[str]) -> None:
        """Forget the measurements of this model's releases other than ``releases`` (those
        done, deleted or gone); one in flight finishes in the pool and is dropped."""
        with self._lock:
            for where in [
                w for w in self._latest if w[:2] == (namespace, model) and w[2] not in releases
            ]:
                del self._latest[where]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _run(key: MeasureKey, measure: Callable[[], Results]) -> Results | None:
        try:
            return measure()
        except Exception:  # a bug, not a backend's answer (those are results): say it loudly
            log.exception("measuring release %s/%s failed", key.namespace, key.release)
            return None

    def _finished(self, key: MeasureKey, done: Future[Results | None]) -> None:
        metrics.MEASUREMENTS_IN_FLIGHT.dec()
        # After a failure the model is not queued at once: its next pass (an event, or the
        # decision core's safety net) starts another, so a bug cannot spin.
        if self.on_done is not None and not done.cancelled() and done.result() is not None:
            self.on_done((key.namespace, key.model))

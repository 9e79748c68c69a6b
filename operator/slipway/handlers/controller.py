"""The reconcile loop: watch events and computed wake-up times in, one pass per model out.

kopf's indexes mirror the cluster in memory; kopf's event handlers only say
"this model changed" by adding its key to a work queue. The controller takes
a snapshot of everything one ModelDeployment's decisions may look at (on the
event loop, where the indexes are updated, so the copy is consistent), runs
the pass in a worker thread, and queues the key again at the time the
decision core asked for, or when a measurement it started finishes
(``measure.py``: analyses run off the pass, so a slow read never holds a
worker). There are no per-object timers: a deleted object
is simply no longer in the indexes, so nothing acts on it, and an idle
object costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from slipway import metrics
from slipway.analysis.agreement import PredictionSource
from slipway.analysis.provider import MetricProvider, QueryResult, make_provider
from slipway.api.models import ModelDeployment, RolloutPolicy
from slipway.handlers.measure import Measurements
from slipway.handlers.queue import WorkQueue
from slipway.handlers.snapshot import (
    ModelEntry,
    ModelKey,
    ModelSnapshot,
    ReleaseEntry,
    ServiceState,
)
from slipway.kube.client import KubeError, KubeWriter
from slipway.kube.observe import DeploymentState, LiveRoute

log = logging.getLogger("slipway")

WORKERS = 8
CONFLICT_RETRY_SECONDS = 0.2
BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class CountingProvider:
    """A metric provider that counts its queries (the benchmark's figure)."""

    def __init__(self, name: str, inner: MetricProvider) -> None:
        self.name, self.inner = name, inner
        self.queries = 0

    def query(self, promql: str) -> QueryResult:
        return self._count(self.inner.query(promql))

    def query_by(self, promql: str, label: str) -> QueryResult:
        return self._count(self.inner.query_by(promql, label))

    def is_online(self) -> bool:
        return self.inner.is_online()

    def _count(self, result: QueryResult) -> QueryResult:
        self.queries += 1
        outcome = "ok" if result.ok else ("unreachable" if result.unreachable else "error")
        metrics.METRIC_QUERIES.labels(self.name, outcome).inc()
        return result


class Providers:
    """Metric providers shared by all passes, one per (kind, url, timeout)."""

    def __init__(
        self, default_url: str | None = None, predictions: PredictionSource | None = None
    ) -> None:
        self.default_url = default_url or os.environ.get("SLIPWAY_PROMETHEUS_URL", "")
        self.predictions = predictions
        """Where a shadow phase reads each release's predictions per request id."""
        self._made: dict[tuple[str, str, float], CountingProvider] = {}
        self._lock = threading.Lock()

    def for_model(self, model: ModelDeployment) -> CountingProvider | None:
        """The model's metric provider, else the operator's default Prometheus."""
        source = model.spec.metrics
        name = source.provider if source else "prometheus"
        url = source.url if source else self.default_url
        timeout = source.timeout_seconds if source else 5.0
        if not url:
            return None
        key = (name, url, timeout)
        with self._lock:
            if key not in self._made:
                self._made[key] = CountingProvider(name, make_provider(name, url, timeout))
            return self._made[key]


@dataclass(frozen=True)
class Indexes:
    """kopf's in-memory indexes (live views, updated by kopf on the event loop)."""

    models: kopf.Index[Any, ModelEntry]
    releases: kopf.Index[Any, ReleaseEntry]
    deployments: kopf.Index[Any, DeploymentState]
    services: kopf.Index[Any, ServiceState]
    policies: kopf.Index[Any, RolloutPolicy | None]
    routes: tuple[kopf.Index[Any, LiveRoute], ...] = ()
    """One per route kind the routers own (traffic.ROUTE_KINDS)."""


@dataclass
class Memory:
    """What a controller remembers between passes that the cluster does not hold:
    the last message said per key (so an Event is not repeated) and failure counts."""

    said: dict[tuple[Any, ...], str] = field(default_factory=dict)
    failures: dict[ModelKey, int] = field(default_factory=dict)
    measurements: Measurements | None = None
    """Analyses in flight and finished, per release; None: a pass measures inline."""

    def forget(self, key: ModelKey) -> None:
        self.failures.pop(key, None)
        for said in [k for k in self.said if k[1:] == key]:
            del self.said[said]


Reconcile = Callable[[ModelSnapshot, KubeWriter, Providers, Memory], datetime | None]


class Controller:
    """Queue, snapshot, run passes in worker threads, and requeue."""

    def __init__(
        self,
        kube: KubeWriter,
        indexes: Indexes,
        reconcile: Reconcile,
        providers: Providers,
        workers: int = WORKERS,
    ) -> None:
        self.kube, self.indexes, self.reconcile = kube, indexes, reconcile
        self.providers = providers
        self.queue: WorkQueue[ModelKey] = WorkQueue()
        self.memory = Memory(measurements=Measurements(on_done=self._measured))
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reconcile")
        self._slots = asyncio.Semaphore(workers)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def enqueue(self, key: ModelKey, delay: float = 0.0) -> None:
        self.queue.add(key, delay)
        metrics.QUEUE_DEPTH.set(len(self.queue))

    async def run(self) -> None:
        """Hand due keys to workers until cancelled."""
        self._loop = asyncio.get_running_loop()
        try:
            while True:
                await self._slots.acquire()
                key = await self.queue.get()
                task = asyncio.create_task(self._process(key))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            for task in list(self._tasks):
                task.cancel()
            self._pool.shutdown(wait=False, cancel_futures=True)
            if self.memory.measurements is not None:
                self.memory.measurements.shutdown()

    def _measured(self, key: ModelKey) -> None:
        """A measurement of this model finished (in its own thread): queue the model."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.enqueue, key)

    async def _process(self, key: ModelKey) -> None:
        loop = asyncio.get_running_loop()
        try:
            snapshot = self.snapshot(key)
            if snapshot.model is None and not snapshot.releases:
                self.memory.forget(key)  # nothing of this model is left to remember
            started = time.monotonic()
            look = await loop.run_in_executor(
                self._pool, self.reconcile, snapshot, self.kube, self.providers, self.memory
            )
            metrics.RECONCILES.labels("ok").inc()
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
            self.memory.failures.pop(key, None)
            if look is not None:
                self.enqueue(key, (look - datetime.now(UTC)).total_seconds())
        except KubeError as error:
            if error.gone:
                # The object or its namespace is going away: its deletion events will come.
                metrics.RECONCILES.labels("gone").inc()
                log.debug("%s/%s: %s", *key, error)
            elif error.conflict:
                # Decided on a stale view: look again shortly, on the newer one.
                metrics.RECONCILES.labels("conflict").inc()
                log.debug("%s/%s: %s; retrying", *key, error)
                self.enqueue(key, CONFLICT_RETRY_SECONDS)
            else:
                self._failed(key, f"the API server refused a write: {error}", trace=False)
        except Exception as error:
            self._failed(key, f"{type(error).__name__}: {error}", trace=True)
        finally:
            self.queue.done(key)
            self._slots.release()
            metrics.QUEUE_DEPTH.set(len(self.queue))

    def _failed(self, key: ModelKey, why: str, trace: bool) -> None:
        """Back off, and say so once per distinct failure (never silently, never a flood)."""
        metrics.RECONCILES.labels("error").inc()
        count = self.memory.failures.get(key, 0)
        self.memory.failures[key] = count + 1
        delay = BACKOFF_SECONDS[min(count, len(BACKOFF_SECONDS) - 1)]
        if self.memory.said.get(("failure", *key)) != why:
            self.memory.said[("failure", *key)] = why
            log.error(
                "reconcile of %s/%s failed: %s; retrying in %.0fs", *key, why, delay, exc_info=trace
            )
        self.enqueue(key, delay)

    def snapshot(self, key: ModelKey) -> ModelSnapshot:
        """Copy what one pass may look at out of the indexes (on the event loop)."""
        namespace, name = key
        models = list(self.indexes.models.get(key, []))
        model = models[0] if models else None
        tier = model.model.spec.tier if model and model.model else None
        policies = list(self.indexes.policies.get(tier, [])) if tier else []
        return ModelSnapshot(
            namespace=namespace,
            name=name,
            model=model,
            releases=tuple(self.indexes.releases.get(key, [])),
            deployments=tuple(self.indexes.deployments.get(key, [])),
            services=tuple(self.indexes.services.get(key, [])),
            policy=policies[0] if policies else None,
            routes=tuple(r for index in self.indexes.routes for r in index.get(key, [])),
        )

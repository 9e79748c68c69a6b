"""`make bench-faults`: a storm of SIGKILLs of the operator across canary and blue-green
rollouts on the ``replicas`` router, with what must hold tallied (issue 13, section 2).

The operator (`slipway run`, a child process) is SIGKILLed at least ``KILLS`` times and
restarted each time: most kills at random moments, some the instant the
ModelDeployment's status records a new stable, which lands inside a promotion's writes
(record, release status, scale-down). Meanwhile releases follow one another, canary and
blue-green in turn, a quarter of them aborted at a random moment. Pods run on kwok's fake
nodes (Ready without running anything). Tallied, and the exit status is 1 if any broke:

- never more than two Deployments of the model scaled up at one moment (a watch of the
  Deployments: each event is one moment, so this is exact, not sampled);
- the share a release claims (status ``weight`` while it reports its weight reached) is
  its share of the ready pods behind the model's Service, read from the pods: a
  disagreement may last while the operator is down or a Deployment's status catches up
  with its pods, never longer than ``GRACE_SECONDS``;
- every release ends right (Succeeded; RolledBack when aborted before the model recorded
  its promotion) and the model's stable is the last Succeeded one; the next release starts
  at once, so a previous stable a kill left up must be gone before the next candidate runs
  (the Deployment watch above sees it otherwise); at the end only the stable is scaled up;
- serving is never lost: at every sample some ready pod is behind the Service.

SLIPWAY_FAULT_KILLS (default 50) and SLIPWAY_FAULT_SEED (default 13) change the storm.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from tests import kube
from tests.cluster import Cluster, model_body, release_body

from e2e.faultwatch import ScaledUp, ready_shares, share
from e2e.operator_process import OperatorProcess
from slipway.api import constants as c

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / "e2e" / ".state"
KILLS = int(os.environ.get("SLIPWAY_FAULT_KILLS", "50"))
SEED = int(os.environ.get("SLIPWAY_FAULT_SEED", "13"))
GRACE_SECONDS = 10.0
"""Longest a claimed share may disagree with the ready pods: an operator restart (a few
seconds on a busy machine) plus one pass."""
SAMPLE_SECONDS = 0.25
TARGETED = 0.3
"""Share of kills aimed at the moment a promotion records its new stable."""
ABORTED = 0.25
REPLICAS = 4
TERMINAL = {"Succeeded", "RolledBack", "Failed", "Evaluated"}
IN_FLIGHT = {"Progressing", "Paused"}


def say(text: str) -> None:
    print(f"[bench-faults {time.strftime('%H:%M:%S')}] {text}", flush=True)


class Killer:
    """SIGKILLs and restarts the operator from a thread until told to stop."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        op: OperatorProcess,
        rng: random.Random,
        up: ScaledUp,
    ) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace, self.op, self.rng, self.up = namespace, op, rng, up
        self.kills = 0
        self.targeted = 0
        self.half_done = 0
        """Kills that left a release other than the stable and the candidate scaled up:
        the crash state of issue 13 (a promotion or rollback cut before its scale-down)."""
        self.model: dict[str, Any] = {}
        self.restarts: list[float] = []
        self.errors: list[str] = []
        self.recorded = threading.Event()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._kill_loop, name="killer", daemon=True),
            threading.Thread(target=self._watch_stable, name="stable-watch", daemon=True),
        ]

    def __enter__(self) -> Killer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        if not self.op.running:
            self.op.start()

    def _watch_stable(self) -> None:
        """Set ``recorded`` the moment the ModelDeployment's stable changes."""
        stable: str | None = None
        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self.custom.list_namespaced_custom_object,
                    c.GROUP,
                    c.VERSION,
                    self.namespace,
                    c.PLURAL_DEPLOYMENT,
                    timeout_seconds=5,
                ):
                    self.model = dict(event["object"].get("status") or {})
                    now = self.model.get("stableRelease")
                    if now != stable:
                        stable = now
                        self.recorded.set()
                    if self._stop.is_set():
                        break
            except ApiException:
                self._stop.wait(0.2)
            finally:
                stream.stop()

    def _kill_loop(self) -> None:
        while not self._stop.is_set() and self.kills < KILLS:
            if self.rng.random() < TARGETED:
                self.recorded.clear()
                if not self.recorded.wait(30) or self._stop.is_set():
                    continue
                self.targeted += 1
            elif self._stop.wait(self.rng.uniform(0.3, 2.5)):
                return
            self.op.kill()
            self.kills += 1
            self._stop.wait(self.rng.uniform(0.0, 0.5))
            keep = (self.model.get("stableRelease"), self.model.get("activeRelease"))
            if any(r not in keep for r in self.up.up("fraud")):
                self.half_done += 1
            began = time.monotonic()
            for _ in range(3):
                try:
                    self.op.start()
                    break
                except RuntimeError as error:
                    self.errors.append(str(error)[-300:])
            self.restarts.append(time.monotonic() - began)


@dataclass
class Sampler:
    """Claimed shares against the ready pods behind the Service, and serving, sampled."""

    api: client.ApiClient
    namespace: str
    samples: int = 0
    checked: int = 0
    disagreed: int = 0
    lost: list[str] = field(default_factory=list)
    longest: float = 0.0
    broken: list[str] = field(default_factory=list)
    _open: dict[str, tuple[float, str]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for name in list(self._open):
            self._close(name)

    def _releases(self) -> dict[str, dict[str, Any]]:
        listed: Any = self.custom.list_namespaced_custom_object(
            c.GROUP, c.VERSION, self.namespace, c.PLURAL_RELEASE
        )
        return {r["metadata"]["name"]: r for r in listed["items"]}

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            try:
                self._sample()
            except ApiException:
                continue

    def _sample(self) -> None:
        before = self._releases()
        counts = ready_shares(self.core, self.namespace, "fraud")
        after = self._releases()
        self.samples += 1
        if not sum(counts.values()):
            self.lost.append(f"{time.strftime('%H:%M:%S')}: no ready pod behind the Service")
        for name, body in after.items():
            status = body.get("status") or {}
            if status.get("phase") not in IN_FLIGHT or not status.get("weightReachedAt"):
                self._close(name)
                continue
            seen = before.get(name, {}).get("metadata", {}).get("resourceVersion")
            if seen != body["metadata"]["resourceVersion"]:
                continue  # its status moved while the pods were read: not one moment
            self.checked += 1
            claimed, real = status.get("weight"), share(counts, name)
            if claimed == real:
                self._close(name)
                continue
            self.disagreed += 1
            if name not in self._open:
                detail = (
                    f"{name} at {status.get('stepLabel')} claims {claimed}% while its share of"
                    f" the ready pods is {real}% ({counts})"
                )
                self._open[name] = (time.monotonic(), detail)

    def _close(self, name: str) -> None:
        opened = self._open.pop(name, None)
        if opened is None:
            return
        lasted = time.monotonic() - opened[0]
        self.longest = max(self.longest, lasted)
        if lasted > GRACE_SECONDS:
            self.broken.append(f"{opened[1]}, for {lasted:.1f}s")


@dataclass
class Outcome:
    name: str
    strategy: str
    aborted: bool
    phase: str
    right: bool
    why: str = ""
    late: bool = False
    """Aborted after the model recorded its promotion (so Succeeded is right)."""


def run_release(
    k: Cluster, rng: random.Random, index: int, strategy: str, abort: bool, stable: str
) -> Outcome:
    """One release from creation to its end; whether it ended right."""
    name = f"fraud-v{index}"
    k.create(c.PLURAL_RELEASE, release_body(name, f"v{index}", strategy=strategy))
    aborted_at = None
    if abort:
        time.sleep(rng.uniform(0.5, 5.0))
        k.custom.patch_namespaced_custom_object(
            c.GROUP,
            c.VERSION,
            k.ns,
            c.PLURAL_RELEASE,
            name,
            {"metadata": {"annotations": {c.ANNOTATION_ACTION: "abort"}}},
        )
        aborted_at = time.time()
    status = k.wait_phase_in(name, TERMINAL, timeout=240)
    phase = status["phase"]
    expected, too_late = "Succeeded", False
    if aborted_at is not None:
        # An abort that came after the promotion was recorded on the model is too late:
        # the promotion is then finished (even by the next operator, after a kill).
        promoted = promoted_at(k, name)
        too_late = promoted is not None and promoted <= aborted_at
        expected = "Succeeded" if too_late else "RolledBack"
    new_stable = name if phase == "Succeeded" else stable
    why = ""
    if phase != expected:
        why = f"ended {phase}, expected {expected}: {status.get('message')}"
    else:
        why = recorded(k, new_stable)
    return Outcome(name, strategy, abort, phase, not why, why, too_late)


def recorded(k: Cluster, stable: str) -> str:
    """'' once the model records ``stable`` as its stable (within 30 s: the operator may be
    down); else what it records. The next release starts at once: a previous stable left
    up by a kill must be gone before the next candidate runs (the watch of the Deployments
    sees it if not), not merely by the time someone looks."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = k.model_status().get("stableRelease")
        if now == stable:
            return ""
        time.sleep(0.2)
    return f"the model records {now!r} as its stable, not {stable!r}"


def promoted_at(k: Cluster, release: str) -> float | None:
    """When the model recorded ``release`` as its stable (its history entry), if it did."""
    for record in k.model_status().get("history") or []:
        if record.get("release") == release and record.get("promotedAt"):
            text = str(record["promotedAt"]).replace("Z", "+00:00")
            return datetime.fromisoformat(text).timestamp()
    return None


def settled(k: Cluster, stable: str) -> str:
    """'' once the model's stable is ``stable`` at full size with every other release at
    zero (within 30 s); else what is wrong. Checked when the storm is over."""
    deadline = time.monotonic() + 30
    last = ""
    while time.monotonic() < deadline:
        model = k.model_status()
        up = {
            d.metadata.labels.get(c.LABEL_RELEASE): d.spec.replicas or 0
            for d in k.deployments().values()
            if (d.spec.replicas or 0) > 0
        }
        if model.get("stableRelease") == stable and up == {stable: REPLICAS}:
            return ""
        last = f"stable {model.get('stableRelease')!r}, scaled up {up}"
        time.sleep(0.5)
    return f"not settled on {stable!r}: {last}"


def main() -> int:
    kubeconfig = kube.local_cluster_kubeconfig()
    api = kube.api_client(kubeconfig)
    kube.install_crds(api)
    rng = random.Random(SEED)
    outcomes: list[Outcome] = []
    STATE.mkdir(parents=True, exist_ok=True)
    log = STATE / "bench-faults-operator.log"
    log.write_text("")
    began = time.monotonic()
    with kube.namespace(api, prefix="slipway-bench-faults") as namespace:
        k = Cluster(api, namespace)
        op = OperatorProcess(kubeconfig, [namespace], log).start()
        try:
            steps = [{"weight": w, "pause": "2s"} for w in (25, 50, 75)]
            model = model_body(
                replicas=REPLICAS,
                progressDeadline="90s",
                canary={"steps": steps},
                blueGreen={"autoPromotion": True, "scaleDownDelay": "3s"},
            )
            k.start_stable(model, release_body("fraud-v1", "v1"))
            say(f"namespace {namespace}: fraud-v1 stable; {KILLS} SIGKILLs, seed {SEED}")
            stable, index = "fraud-v1", 1
            with (
                ScaledUp(api, namespace) as up,
                Sampler(api, namespace) as sampler,
                Killer(api, namespace, op, random.Random(SEED + 1), up) as killer,
            ):
                while killer.kills < KILLS or index < 5:
                    if time.monotonic() - began > 1800:
                        say("stopping after 30 minutes")
                        break
                    index += 1
                    strategy = "canary" if index % 2 == 0 else "blueGreen"
                    abort = rng.random() < ABORTED
                    outcome = run_release(k, rng, index, strategy, abort, stable)
                    outcomes.append(outcome)
                    if outcome.phase == "Succeeded":
                        stable = outcome.name
                    say(
                        f"{outcome.name} {strategy}{' (aborted)' if abort else ''}:"
                        f" {outcome.phase}{'' if outcome.right else ' WRONG: ' + outcome.why};"
                        f" {killer.kills} kills so far"
                    )
                killer.stop()
                final = settled(k, stable)
                outcomes.append(Outcome("end", "-", False, "settled", not final, final))
        finally:
            text = op.log_tail(200_000)
            op.stop()
    return report(outcomes, up, sampler, killer, text, time.monotonic() - began)


def report(
    outcomes: list[Outcome],
    up: ScaledUp,
    sampler: Sampler,
    killer: Killer,
    log: str,
    seconds: float,
) -> int:
    wrong = [o for o in outcomes if not o.right]
    outcomes = [o for o in outcomes if o.name != "end"]
    tracebacks = log.count("Traceback")
    most = up.most.get("fraud", 0)
    restarts = sorted(killer.restarts)
    median = restarts[len(restarts) // 2] if restarts else 0.0
    by = {
        f"{s}{' aborted' if a else ''}": [
            o.phase for o in outcomes if o.strategy == s and o.aborted == a
        ]
        for s in ("canary", "blueGreen")
        for a in (False, True)
    }
    print()
    print(
        f"bench-faults: {killer.kills} SIGKILLs ({killer.targeted} at a promotion's record)"
        f" over {len(outcomes)} releases in {seconds:.0f}s; seed {SEED}; replicas router,"
        f" kwok pods, {REPLICAS} replicas"
    )
    for kind, phases in by.items():
        tally = ", ".join(f"{p} {phases.count(p)}" for p in sorted(set(phases))) or "none"
        print(f"  {kind:<18} {len(phases):>3} releases: {tally}")
    print(
        f"  kills that left a stray up      {killer.half_done} (a release besides the stable and"
        " the candidate still scaled up: a promotion or rollback cut before its scale-down)"
    )
    late = sum(o.late for o in outcomes)
    print(f"  aborts after the promotion's record (Succeeded is right) {late}")
    alone = "no" if any(o.name == "end" for o in wrong) else "yes"
    print(
        f"  releases ended right            {sum(o.right for o in outcomes)}/{len(outcomes)};"
        f" at the end the stable alone scaled up: {alone}"
    )
    print(
        f"  most Deployments scaled up      {most} (limit 2; {up.events} Deployment events"
        f" watched; {len(up.crowded)} moments above 2)"
    )
    print(
        f"  claimed share = ready-pod share {sampler.checked - sampler.disagreed}/{sampler.checked}"
        f" samples agree; longest disagreement {sampler.longest:.1f}s (limit {GRACE_SECONDS:.0f}s)"
    )
    print(f"  serving lost                    {len(sampler.lost)} of {sampler.samples} samples")
    print(
        f"  operator restarts               median {median:.1f}s, max"
        f" {restarts[-1] if restarts else 0.0:.1f}s; start failures {len(killer.errors)};"
        f" tracebacks {tracebacks}"
    )
    broken = []
    if killer.kills < KILLS:
        broken.append(f"only {killer.kills} kills")
    broken += [f"{o.name}: {o.why}" for o in wrong]
    broken += [f"three scaled up at once: {x[2]}" for x in up.crowded[:5]]
    broken += sampler.broken[:5] + sampler.lost[:5]
    if tracebacks:
        broken.append(f"{tracebacks} tracebacks in the operator log")
    for line in broken:
        print(f"  BROKEN: {line}")
    print("bench-faults: " + ("every invariant held" if not broken else "INVARIANTS BROKEN"))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())

"""A promotion cut short at every one of its writes is finished right by the next pass.

The reconcile pass (handlers/reconcile.py) writes a promotion in order: the model's
record of the new stable, the release's status, then the router's actions and the
previous stable's scale-down. The operator can die between any two. Here the real pass
runs against a tiny in-memory API (its only collaborator, ``KubeWriter``; pods are ready
the moment they are asked for, as on kwok's fake nodes) that dies after the k-th write,
for every k; then a new operator's passes run on what was left, with or without a next
canary created while the operator was down. What must hold after every single write, and
at the end:

- never more than two of the model's Deployments scaled up (stable, candidate);
- the recorded stable always has pods;
- the end state is the promotion's: the release Succeeded, it is the stable, the slot is
  free, the previous stable waits at zero; a next canary's claimed weight is the share of
  ready pods behind the model's Service.

The real API server runs the same story in tests/integration/test_promotion_crash.py.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from slipway.api import constants as c
from slipway.api.models import ModelRelease
from slipway.handlers.controller import Memory, Providers
from slipway.handlers.reconcile import parse_model, reconcile
from slipway.handlers.snapshot import ModelSnapshot, ReleaseEntry, service_state
from slipway.kube.children import build_deployment
from slipway.kube.fingerprint import service_fingerprint
from slipway.kube.observe import deployment_state, release_summary

NS, UID = "ns", "uid-model"


class KilledError(Exception):
    """The operator process died here."""


class World:
    """The API server as far as one model's passes see it: bodies, resourceVersions, and
    pods that are ready as soon as a Deployment asks for them."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.writes = 0
        self.crash_after: int | None = None
        self.history: list[dict[str, int]] = []
        """The model's Deployments' replicas after every write."""
        self.stables: list[tuple[str | None, int]] = []
        """(recorded stable, its replicas) after every write."""

    # -- the KubeWriter calls a pass makes ---------------------------------------------
    def _write(self) -> None:
        if self.crash_after is not None and self.writes >= self.crash_after:
            raise KilledError(f"killed after {self.writes} writes")
        self.writes += 1

    def _stamp(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        body["metadata"]["resourceVersion"] = str(self.version)
        return body

    def _observe(self) -> None:
        self.history.append(self.replicas())
        status = self.objects[("ModelDeployment", "fraud")].get("status") or {}
        stable = status.get("stableRelease")
        self.stables.append((stable, self.replicas().get(f"fraud-{stable}", 0)))

    def apply(self, body: Mapping[str, Any]) -> None:
        self._write()
        kind, name = body["kind"], body["metadata"]["name"]
        old = self.objects.get((kind, name))
        new = copy.deepcopy(dict(body))
        new["metadata"]["uid"] = old["metadata"]["uid"] if old else f"uid-{kind}-{name}"
        if kind == "Deployment":
            new["metadata"]["generation"] = (old["metadata"]["generation"] + 1) if old else 1
            self._ready(new)
        self.objects[(kind, name)] = self._stamp(new)
        self._observe()

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self._write()
        body = self.objects[("Deployment", name)]
        body["spec"]["replicas"] = replicas
        self._ready(body)
        self._stamp(body)
        self._observe()

    def delete_deployment(self, namespace: str, name: str, uid: str | None = None) -> bool:
        self._write()
        gone = self.objects.pop(("Deployment", name), None) is not None
        self._observe()
        return gone

    def delete_service(self, namespace: str, name: str, uid: str | None = None) -> bool:
        self._write()
        return self.objects.pop(("Service", name), None) is not None

    def patch_model_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        return self._patch_status("ModelDeployment", name, status, resource_version)

    def patch_release_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        return self._patch_status("ModelRelease", name, status, resource_version)

    def _patch_status(
        self, kind: str, name: str, patch: Mapping[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        body = self.objects[(kind, name)]
        if resource_version and resource_version != body["metadata"]["resourceVersion"]:
            raise AssertionError(f"{kind} {name}: a write on a stale view")  # never here
        self._write()
        status = body.setdefault("status", {})
        for key, value in patch.items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = copy.deepcopy(value)
        self._stamp(body)
        self._observe()
        return copy.deepcopy(body)

    def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Events change nothing a decision reads."""

    # -- what the pods and the indexes would show --------------------------------------
    @staticmethod
    def _ready(body: dict[str, Any]) -> None:
        n = body["spec"]["replicas"]
        body["metadata"]["generation"] = body["metadata"].get("generation", 1)
        body["status"] = {
            "replicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
            "updatedReplicas": n,
            "observedGeneration": body["metadata"]["generation"],
        }

    def replicas(self) -> dict[str, int]:
        return {
            name: body["spec"]["replicas"]
            for (kind, name), body in self.objects.items()
            if kind == "Deployment"
        }

    def ready_share(self, release: str) -> int:
        """``release``'s share of the ready pods the model's Service selects, in percent."""
        service = self.objects[("Service", "fraud")]
        selector = service["spec"]["selector"]
        counts: dict[str, int] = {}
        for (kind, _), body in self.objects.items():
            labels = body["spec"]["template"]["metadata"]["labels"] if kind == "Deployment" else {}
            if kind == "Deployment" and all(labels.get(k) == v for k, v in selector.items()):
                counts[labels[c.LABEL_RELEASE]] = body["status"]["readyReplicas"]
        total = sum(counts.values())
        return round(100 * counts.get(release, 0) / total) if total else 0

    def snapshot(self) -> ModelSnapshot:
        copies = {key: copy.deepcopy(body) for key, body in self.objects.items()}
        deployments = [deployment_state(b) for (k, _), b in copies.items() if k == "Deployment"]
        return ModelSnapshot(
            namespace=NS,
            name="fraud",
            model=parse_model(copies[("ModelDeployment", "fraud")]),
            releases=tuple(
                ReleaseEntry(release_summary(b), b)
                for (k, _), b in sorted(copies.items())
                if k == "ModelRelease"
            ),
            deployments=tuple(d for d in deployments if d is not None),
            services=tuple(
                service_state(b, service_fingerprint(b))
                for (k, _), b in copies.items()
                if k == "Service"
            ),
            policy=None,
        )

    def release_status(self, name: str) -> dict[str, Any]:
        return dict(self.objects[("ModelRelease", name)].get("status") or {})

    def model_status(self) -> dict[str, Any]:
        return dict(self.objects[("ModelDeployment", "fraud")].get("status") or {})


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


def model_body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_DEPLOYMENT,
        "metadata": {"name": "fraud", "namespace": NS, "uid": UID, "generation": 1},
        "spec": {
            "owner": {"name": "risk-team"},
            "replicas": 4,
            "progressDeadline": "10m",
            "template": {"spec": {"containers": [{"name": "server", "image": "srv:1"}]}},
            **spec,
        },
        "status": {},
    }


def release_body(
    name: str, strategy: str, status: dict[str, Any], age: float, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_RELEASE,
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "generation": 1,
            "creationTimestamp": ago(age),
        },
        "spec": {
            "deployment": "fraud",
            "model": {"uri": f"s3://models/{name}", "version": name.rsplit("-", 1)[-1]},
            "strategy": strategy,
            **spec,
        },
        "status": status,
    }


def record(name: str, minutes: float) -> dict[str, Any]:
    return {
        "release": name,
        "version": name.rsplit("-", 1)[-1],
        "uri": f"s3://models/{name}",
        "strategy": "canary",
        "promotedAt": ago(minutes * 60),
    }


def put(world: World, body: dict[str, Any]) -> None:
    """An object as it is before the story starts (not a write of the operator)."""
    body = copy.deepcopy(body)
    body["metadata"].setdefault("uid", f"uid-{body['kind']}-{body['metadata']['name']}")
    if body["kind"] == "Deployment":
        body["metadata"]["generation"] = 1
        World._ready(body)
    world.objects[(body["kind"], body["metadata"]["name"])] = world._stamp(body)


def deployment_of(release: str, replicas: int, **spec: Any) -> dict[str, Any]:
    md = parse_model(model_body(**spec)).model
    assert md is not None
    rel = ModelRelease.model_validate(release_body(release, "canary", {}, 0))
    return build_deployment(md, rel, replicas)


def promoting(strategy: str) -> World:
    """fraud-v1 the stable (fraud-v0 kept at zero before it); fraud-v2 one pass from being
    promoted: a canary past its last step at full size, a blue-green switched with its
    window over, or a direct release with all its pods available."""
    spec: dict[str, Any] = {"canary": {"steps": [{"weight": 25, "pause": "0s"}]}}
    serving = None
    if strategy == "canary":
        status = {
            "phase": "Progressing",
            "strategy": "canary",
            "steps": [{"weight": 25, "pause": "0s"}],
            "step": 2,
            "stepLabel": "promoting",
            "startedAt": ago(120),
            "stepStartedAt": ago(5),
            "weight": 50,
            "desiredWeight": 100,
        }
        stable_pods = 3
    elif strategy == "direct":
        status = {
            "phase": "Progressing",
            "strategy": "direct",
            "step": 1,
            "stepLabel": "1/1",
            "startedAt": ago(30),
            "weight": 50,
            "desiredWeight": 100,
        }
        stable_pods = 4
    else:
        spec["blueGreen"] = {"autoPromotion": True, "scaleDownDelay": "1s"}
        serving = "fraud-v2"
        status = {
            "phase": "Progressing",
            "strategy": "blueGreen",
            "step": 2,
            "stepLabel": "switched",
            "startedAt": ago(120),
            "stepStartedAt": ago(60),
            "weightReachedAt": ago(90),
            "switchedAt": ago(60),
            "weight": 100,
            "desiredWeight": 100,
        }
        stable_pods = 4
    world = World()
    model = model_body(**spec)
    model["status"] = {
        "stableRelease": "fraud-v1",
        "stableVersion": "v1",
        "activeRelease": "fraud-v2",
        "history": [record("fraud-v1", 30), record("fraud-v0", 60)],
        **({"serving": serving} if serving else {}),
    }
    put(world, model)
    for name, minutes in (("fraud-v0", 90), ("fraud-v1", 45)):
        put(world, release_body(name, "canary", {"phase": "Succeeded"}, minutes * 60))
    put(world, release_body("fraud-v2", strategy, status, 150))
    put(world, deployment_of("fraud-v0", 0, **spec))
    put(world, deployment_of("fraud-v1", stable_pods, **spec))
    put(world, deployment_of("fraud-v2", 4, **spec))
    md = parse_model(model).model
    assert md is not None
    from slipway.kube.children import build_service

    put(world, build_service(md, serving))
    return world


HELD = {"steps": [{"weight": 25, "pause": "10m"}]}
"""The next canary's one step, held long enough to look at."""


def run_pass(world: World) -> None:
    reconcile(world.snapshot(), world, Providers(None), Memory())  # type: ignore[arg-type]


def settle(world: World, passes: int = 8) -> None:
    """A new operator's passes until nothing more is written."""
    for _ in range(passes):
        before = world.writes
        run_pass(world)
        if world.writes == before:
            return
    raise AssertionError(f"still writing after {passes} passes: {world.replicas()}")


def writes_of_promotion(strategy: str) -> int:
    world = promoting(strategy)
    run_pass(world)
    assert world.release_status("fraud-v2")["phase"] == "Succeeded"
    return world.writes


def crash_points(strategy: str) -> Iterator[int]:
    yield from range(writes_of_promotion(strategy))


STRATEGIES = ("canary", "blueGreen", "direct")
CASES = [(s, k) for s in STRATEGIES for k in crash_points(s)]


def check_every_moment(world: World) -> None:
    for moment in world.history:
        up = sorted(name for name, n in moment.items() if n > 0)
        assert len(up) <= 2, f"three releases with pods at one moment: {moment}"
    for stable, pods in world.stables:
        assert pods > 0, f"the stable {stable} had no pods at one moment"


def check_promoted(world: World) -> None:
    assert world.release_status("fraud-v2")["phase"] == "Succeeded"
    model = world.model_status()
    assert model["stableRelease"] == "fraud-v2"
    assert "activeRelease" not in model
    assert [h["release"] for h in model["history"]][:2] == ["fraud-v2", "fraud-v1"]
    replicas = world.replicas()
    assert replicas["fraud-fraud-v2"] == 4
    assert replicas["fraud-fraud-v1"] == 0, "the previous stable kept its pods"
    assert "fraud-fraud-v0" not in replicas, "two promotions back is pruned"


def test_there_is_more_than_one_write_to_cut_short() -> None:
    # Record, release status, scale-down at least: else this test would test nothing.
    for strategy in STRATEGIES:
        assert writes_of_promotion(strategy) >= 3


@pytest.mark.parametrize(("strategy", "crash_after"), CASES)
def test_a_promotion_cut_short_anywhere_is_finished_by_the_next_operator(
    strategy: str, crash_after: int
) -> None:
    world = promoting(strategy)
    world.crash_after = crash_after
    with pytest.raises(KilledError):
        run_pass(world)
    world.crash_after = None
    settle(world)
    check_promoted(world)
    check_every_moment(world)


@pytest.mark.parametrize(("strategy", "crash_after"), CASES)
def test_a_canary_created_while_the_operator_was_down_never_runs_beside_the_old_stable(
    strategy: str, crash_after: int
) -> None:
    world = promoting(strategy)
    world.crash_after = crash_after
    with pytest.raises(KilledError):
        run_pass(world)
    world.crash_after = None
    put(world, release_body("fraud-v3", "canary", {}, 0, canary=HELD))
    settle(world)
    check_every_moment(world)
    replicas = world.replicas()
    assert replicas["fraud-fraud-v1"] == 0, "the previous stable kept its pods"
    v3 = world.release_status("fraud-v3")
    assert v3["phase"] == "Progressing" and v3.get("weightReachedAt"), v3
    assert v3["weight"] == world.ready_share("fraud-v3") == 25
    assert world.model_status()["stableRelease"] == "fraud-v2"
    assert replicas == {"fraud-fraud-v1": 0, "fraud-fraud-v2": 3, "fraud-fraud-v3": 1}


def test_the_issue_state_a_stray_previous_stable_goes_before_the_canary_starts() -> None:
    """Issue 13's reproduction: v2 stable, v1 scaled back to 1 by hand while the operator
    was down, a canary v3 created; today v1 kept its pod and v3 claimed 25 % of 5 pods."""
    world = promoting("canary")
    settle(world)
    world.objects[("Deployment", "fraud-fraud-v1")]["spec"]["replicas"] = 1
    World._ready(world.objects[("Deployment", "fraud-fraud-v1")])
    world.history.clear()
    world.stables.clear()
    put(world, release_body("fraud-v3", "canary", {}, 0, canary=HELD))
    run_pass(world)
    # In the very first pass, before v3's Deployment exists, v1 is back at zero.
    assert world.history[0] == {"fraud-fraud-v1": 0, "fraud-fraud-v2": 4}
    settle(world)
    check_every_moment(world)
    v3 = world.release_status("fraud-v3")
    assert v3["weight"] == world.ready_share("fraud-v3") == 25

"""`make bench-traffic` (part of `make bench` with the real node): router gatewayAPI figures.

Everything runs through a real Envoy (Envoy Gateway, reading the operator's HTTPRoute
from our API server) in front of real model-server pods on the real node; every figure is
counted from answers (which version served each request) or from the model servers' own
prediction logs, never from what the operator set. Printed, not asserted:

1. Blue-green switch latency: from `slipway promote` (the annotation written) to the
   first quarter-second in which every answer comes from the new version: the operator's
   reaction, the route write, Envoy Gateway's translation and Envoy's update together.
2. Rollback-inside-window latency: from `slipway abort` after the switch to every answer
   from the old version again, with no pod started (the old stable never stopped).
3. Mirror accuracy: for a shadow release at each mirror percent, the share of the
   stable's requests whose copy reached the candidate (joined per x-request-id in the two
   releases' prediction logs), beside the percent set.

Needs root (the real node) and builds Envoy Gateway once if it is not cached (4 to 8
minutes; progress printed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from kubernetes import client
from tests import kube
from tests.cluster import Cluster, model_body, release_body
from tests.e2e.test_gateway_routes import HOST, release_annotate, until_only

from e2e import gateway
from e2e.operator_process import OperatorProcess
from e2e.realplane import ServiceLoad, import_image, pod_template, real_node
from slipway.analysis.agreement import KubePredictionSource, PredictionSourceError
from slipway.api import constants as c

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / "e2e" / ".state"
RPS = 80.0
WINDOW = 0.1
"""Latencies are measured in windows this long (the resolution): at 80 requests/s each
holds about 8 answers, all of which must come from the version switched to."""


def say(text: str) -> None:
    print(f"[bench-traffic {time.strftime('%H:%M:%S')}] {text}", flush=True)


def summary(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.2f}s, min {min(values):.2f}s,"
        f" max {max(values):.2f}s over {len(values)} trials"
    )


def blue_green(k: Cluster, load: ServiceLoad, trials: int) -> tuple[list[float], list[float]]:
    switches, backs = [], []
    for trial in range(trials):
        name = f"fraud-bg{trial}"
        k.create(c.PLURAL_RELEASE, release_body(name, f"bg{trial}", strategy="blueGreen"))
        kube.wait_for(
            lambda n=name: "slipway promote" in (k.release_status(n).get("message") or ""),  # type: ignore[misc]
            timeout=120,
            what=f"{name}'s preview ready",
        )
        time.sleep(1)
        release_annotate(k, name, "promote")
        switches.append(until_only(load, f"bg{trial}", window=WINDOW, least=3))
        time.sleep(2)
        release_annotate(k, name, "abort")
        backs.append(until_only(load, "v1", window=WINDOW, least=3))
        k.wait_phase(name, "RolledBack", timeout=60)
        say(f"trial {trial + 1}: switch {switches[-1]:.2f}s, switch back {backs[-1]:.2f}s")
        time.sleep(2)
    return switches, backs


def mirror(
    k: Cluster, api: client.ApiClient, percents: Sequence[int]
) -> list[tuple[int, float, int]]:
    rows = []
    for percent in percents:
        name = f"fraud-m{percent}"
        shadow = {"mirrorPercent": percent, "duration": "15s"}
        k.create(
            c.PLURAL_RELEASE, release_body(name, f"m{percent}", strategy="shadow", shadow=shadow)
        )
        kube.wait_for(
            lambda n=name, p=percent: k.release_status(n).get("mirrorPercent") == p,  # type: ignore[misc]
            timeout=120,
            what=f"the {percent} % mirror live",
        )
        since = time.time() + 2
        time.sleep(12)
        try:
            share, joined, total = _share(k, api, since, name)
        except PredictionSourceError as error:
            say(f"mirror {percent}%: could not read the prediction logs: {error}")
            continue
        rows.append((percent, share, total))
        say(f"mirror set {percent}%: observed {share:.1f}% ({joined} of {total} requests)")
        k.wait_phase_in(name, {"Evaluated", "RolledBack"}, timeout=120)
    return rows


def _share(k: Cluster, api: client.ApiClient, since: float, release: str) -> tuple[float, int, int]:
    """The share of the stable's requests since ``since`` whose copy reached ``release``."""
    source = KubePredictionSource(api)
    stable = source.predictions(k.ns, "fraud", "fraud-v1", since)
    candidate = source.predictions(k.ns, "fraud", release, since)
    joined = len(stable.keys() & candidate.keys())
    return (100.0 * joined / len(stable) if stable else 0.0), joined, len(stable)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5, help="blue-green trials (default 5)")
    parser.add_argument("--mirror", default="10,25,50,100", help="mirror percents to measure")
    args = parser.parse_args(argv)
    percents = [int(p) for p in args.mirror.split(",") if p]
    kubeconfig = kube.local_cluster_kubeconfig()
    api = kube.api_client(kubeconfig)
    kube.install_crds(api)
    node = real_node(api)
    if node is None:
        say("no real node: run as root (SLIPWAY_REAL_NODE=1); the traffic bench needs real pods")
        return 2
    STATE.mkdir(parents=True, exist_ok=True)
    say("model-server image (built once, cached) and Envoy Gateway (built once, cached)")
    image = import_image()
    with gateway.shared(kubeconfig), kube.namespace(api, prefix="slipway-bench") as namespace:
        op = OperatorProcess(kubeconfig, [namespace], STATE / "bench-traffic-operator.log").start()
        load: ServiceLoad | None = None
        try:
            gw = gateway.create_gateway(api, namespace)
            k = Cluster(api, namespace)
            model = model_body(
                template=pod_template(image, {}),
                replicas=2,
                progressDeadline="90s",
                router="gatewayAPI",
                gatewayAPI=gw.routing(HOST),
                blueGreen={"autoPromotion": False, "scaleDownDelay": "10m"},
            )
            k.start_stable(model, release_body("fraud-v1", "v1"))
            gateway.wait_route_accepted(api, namespace, "fraud")
            load = ServiceLoad(
                "127.0.0.1", gw.port, rps=RPS, workers=16, host_header=HOST, feedback=False
            ).start()
            time.sleep(3)
            say(f"blue-green through Envoy, {args.trials} trials at {RPS:g} requests/s")
            switches, backs = blue_green(k, load, args.trials)
            say(f"mirror accuracy at {', '.join(map(str, percents))} %")
            rows = mirror(k, api, percents)
        finally:
            if load is not None:
                load.stop()
            op.stop()
    print("\n== router gatewayAPI through a real Envoy to real pods ==")
    print(f"(latencies have a resolution of {WINDOW:g}s: the window every answer must fill)")
    print(f"blue-green switch (promote -> every answer from the new version): {summary(switches)}")
    print(f"rollback inside the window (abort -> every answer from the old): {summary(backs)}")
    for percent, share, total in rows:
        print(
            f"mirror set {percent:>3}%: observed {share:5.1f}% of {total} live requests"
            f" ({share - percent:+.1f} points)"
        )
    if load is not None:
        errors = dict(load.errors)
        print(f"requests that failed during the bench: {sum(errors.values())} {errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

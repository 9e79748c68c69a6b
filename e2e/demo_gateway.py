"""The demo's second story: router gatewayAPI, a real Envoy in front of real pods.

A second model, ``fraud-gw``, is served through a Gateway (Envoy Gateway programming a
real Envoy on 127.0.0.1) and the load goes to that Envoy:

4. a shadow release whose model disagrees with the stable on 30 % of its predictions
   (same latency, same errors) gets a copy of half the live requests; the operator joins
   both releases' predictions per request id and stops it on prediction agreement before
   any user sees one of its answers;
5. a blue-green release switches every request at once on ``slipway promote``, then
   ``slipway abort`` inside the rollback window switches back to pods that never stopped.

The timeline shows what the operator set (route, mirror percent) next to what was
observed: answers counted per version at the Envoy, and the mirrored share from the two
releases' prediction logs. Needs the real node and the gateway (`make demo` as root).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kubernetes import client
from tests.cluster import Cluster, model_body, release_body
from tests.kube import wait_for

from e2e import gateway
from e2e.realplane import NO_ANSWER, Faults, ServiceLoad, pod_template
from slipway.analysis.agreement import KubePredictionSource, PredictionSourceError
from slipway.api import constants as c

MODEL = "fraud-gw"
HOST = "fraud.demo"
RPS = 60.0


def _answers(counts: Counter[str]) -> str:
    n = sum(v for k, v in counts.items() if k != NO_ANSWER)
    return ", ".join(f"{k} {100 * v / n:.0f}%" for k, v in sorted(counts.items()) if n) or "none"


class Story:
    def __init__(self, api: client.ApiClient, namespace: str, say: Callable[[str], None]) -> None:
        self.api, self.ns, self.say = api, namespace, say
        self.k = Cluster(api, namespace)
        self.source = KubePredictionSource(api)
        self.load: ServiceLoad | None = None

    def status(self, name: str) -> dict[str, Any]:
        return self.k.release_status(name)

    def mirrored(self, release: str, since: float) -> str:
        """The share of the stable's requests whose copy reached ``release``, observed."""
        try:
            stable = self.source.predictions(self.ns, MODEL, f"{MODEL}-v1", since)
            mine = self.source.predictions(self.ns, MODEL, release, since)
        except PredictionSourceError:
            return "observed: candidate gone"
        joined = len(stable.keys() & mine.keys())
        share = 100 * joined / len(stable) if stable else 0.0
        return f"observed mirror {share:.0f}% ({joined} of {len(stable)} requests copied)"

    def follow(self, name: str, until: set[str], timeout: float = 240) -> dict[str, Any]:
        shown = ""
        since = time.time()
        deadline = time.monotonic() + timeout
        assert self.load is not None
        self.load.take()
        while time.monotonic() < deadline:
            time.sleep(1)
            s = self.status(name)
            line = (
                f"{name}: {s.get('phase', '-'):<11} {s.get('stepLabel', '-'):<9}"
                f" | set: {s.get('route') or 'no route yet'}"
            )
            observed = f"users got: {_answers(self.load.take())}"
            if s.get("mirrorPercent") and s.get("weightReachedAt"):
                # Counted from when the mirror went live (plus Envoy's second to take it).
                live = datetime.fromisoformat(s["weightReachedAt"]).timestamp() + 1
                observed += f"; {self.mirrored(name, max(since, live))}"
            if line != shown or s.get("mirrorPercent"):
                self.say(line)
                self.say(f"    {observed}")
                shown = line
            if s.get("phase") in until:
                return s
        raise TimeoutError(f"{name} did not reach {until} in {timeout}s")

    def until_only(self, version: str, timeout: float = 30) -> float:
        assert self.load is not None
        began = time.monotonic()
        self.load.take()
        while time.monotonic() - began < timeout:
            time.sleep(0.1)
            counts = self.load.take()
            if set(counts) == {version} and counts[version] >= 3:
                return time.monotonic() - began
        raise TimeoutError(f"answers never all came from {version} in {timeout}s")

    def annotate(self, name: str, action: str) -> None:
        self.k.custom.patch_namespaced_custom_object(
            c.GROUP,
            c.VERSION,
            self.ns,
            c.PLURAL_RELEASE,
            name,
            {"metadata": {"annotations": {c.ANNOTATION_ACTION: action}}},
        )


def second_story(
    api: client.ApiClient, kubeconfig: str, namespace: str, image: str, say: Callable[[str], None]
) -> bool:
    """Run the gatewayAPI story; whether it ended as expected."""
    story = Story(api, namespace, say)
    with gateway.shared(kubeconfig):
        gw = gateway.create_gateway(api, namespace, name="demo")
        say(f"Envoy Gateway up: Gateway 'demo' listens on {gw.url} (Host: {HOST})")
        model = model_body(
            MODEL,
            template=pod_template(image, {f"{MODEL}-v2": Faults(accuracy_drop=0.3)}),
            replicas=2,
            progressDeadline="90s",
            router="gatewayAPI",
            gatewayAPI=gw.routing(HOST),
            blueGreen={"autoPromotion": False, "scaleDownDelay": "10m"},
            analysis={"interval": "3s", "judge": "sequential", "onInconclusive": "hold"},
        )
        story.k.create(c.PLURAL_DEPLOYMENT, model)
        say(f"4) {MODEL}-v1 becomes the stable behind the HTTPRoute {MODEL!r}")
        story.k.create(c.PLURAL_RELEASE, release_body(f"{MODEL}-v1", "v1", MODEL))
        story.k.wait_phase(f"{MODEL}-v1", "Succeeded", timeout=120)
        gateway.wait_route_accepted(api, namespace, MODEL)
        story.load = ServiceLoad(
            "127.0.0.1", gw.port, rps=RPS, workers=16, host_header=HOST, feedback=False
        ).start()
        try:
            wait_for(
                lambda: story.load is not None and story.load.take().get("v1", 0) > 0,
                timeout=30,
                what="v1 answering through Envoy",
            )
            say(
                f"   load: {RPS:g} requests/s to Envoy. Shadow {MODEL}-v2: its model flips 30 %"
                " of predictions (same latency, same errors); 50 % of requests mirrored,"
                " minAgreement 0.9"
            )
            shadow = {"mirrorPercent": 50, "duration": "30s", "minAgreement": 0.9}
            story.k.create(
                c.PLURAL_RELEASE,
                release_body(f"{MODEL}-v2", "v2", MODEL, strategy="shadow", shadow=shadow),
            )
            v2 = story.follow(f"{MODEL}-v2", {"Evaluated", "RolledBack", "Failed"})
            users_v2 = story.load.totals.get("v2", 0)
            say(f"{MODEL}-v2 verdict: {v2.get('phase')}: {v2.get('message')}")
            say(f"   answers users got from v2 during its shadow: {users_v2}")

            say(
                f"5) blue-green {MODEL}-v3: preview at full size, answering a copy of every request"
            )
            story.k.create(
                c.PLURAL_RELEASE,
                release_body(f"{MODEL}-v3", "v3", MODEL, strategy="blueGreen"),
            )
            wait_for(
                lambda: "slipway promote" in (story.status(f"{MODEL}-v3").get("message") or ""),
                timeout=120,
                what="the preview to wait for promotion",
            )
            say(f"   {story.status(f'{MODEL}-v3').get('message')}")
            say(f"   slipway promote {MODEL}-v3")
            story.annotate(f"{MODEL}-v3", "promote")
            switch = story.until_only("v3")
            say(f"   every answer from v3 {switch:.2f}s after the promote")
            time.sleep(3)
            say(f"   slipway abort {MODEL}-v3 (inside the rollback window)")
            story.annotate(f"{MODEL}-v3", "abort")
            back = story.until_only("v1")
            say(f"   every answer from v1 again {back:.2f}s after the abort; no pod was started")
            v3 = story.follow(f"{MODEL}-v3", {"RolledBack", "Succeeded", "Failed"}, timeout=60)
        finally:
            story.load.stop()
            gateway.delete_gateway(api, namespace, name="demo")
    errors = dict(story.load.errors)
    say(f"   requests that failed through the whole story: {sum(errors.values())} {errors}")
    return (
        v2.get("phase") == "RolledBack"
        and "agreement" in (v2.get("message") or "")
        and users_v2 == 0
        and v3.get("phase") == "RolledBack"
    )

"""The Gateway API data plane is real: Envoy Gateway reads HTTPRoutes from our API server
and a real Envoy splits and mirrors real requests as the route says.

Backends are Envoy Gateway `Backend` objects pointing at two HTTP servers on 127.0.0.1
(this tier may have no real node; kube-apiserver refuses loopback EndpointSlices).
Runs with SLIPWAY_GATEWAY=1, which `make` sets whenever the real node is on (as root, as
in CI); `make test` prepares the binaries first (4 to 8 minutes on 2 cores once, cached).
Under CI=true a data plane that cannot be prepared or started fails these tests instead
of skipping them.
"""

from __future__ import annotations

import http.client
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn

import pytest
from kubernetes import client

from e2e import gateway
from tests import kube

REQUESTS = 1000
ROUTE = "model"


pytestmark = [
    pytest.mark.skipif(
        not gateway.enabled(),
        reason="the Envoy Gateway data plane is off: SLIPWAY_GATEWAY=1 (make sets it with the"
        " real node, as root) runs it; preparing it takes 4 to 8 minutes once",
    ),
    # The first test's set-up builds envoy-gateway if `make test` did not (4 to 8 minutes).
    pytest.mark.timeout(900),
]


def _unavailable(why: str) -> NoReturn:
    if gateway.required():
        pytest.fail(f"CI=true and SLIPWAY_GATEWAY=1, but no Envoy Gateway: {why}", pytrace=False)
    pytest.skip(f"no Envoy Gateway: {why}")


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # Envoy resets idle upstream connections when a route changes


class Backend:
    """An HTTP server on 127.0.0.1 that counts requests and keeps their request ids."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: Counter[str] = Counter()
        self.request_ids: set[str] = set()
        lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without this, Nagle's algorithm and
            # Envoy's delayed ACK held every answer back 40 ms.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                # Envoy Gateway's mirror does not append `-shadow` to the Host (a
                # static Envoy config does): tell copies apart by `-shadow` if present,
                # otherwise by the route (a backend with no live weight gets copies only).
                kind = "shadow-host" if "-shadow" in self.headers.get("Host", "") else "plain-host"
                with lock:
                    backend.counts[kind] += 1
                    backend.request_ids.add(self.headers.get("x-request-id", ""))
                body = backend.name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        self.counts.clear()
        self.request_ids.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Client:
    """Keep-alive requests to the Gateway listener; returns which backend answered."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def get(self, request_id: str | None = None) -> tuple[int, str]:
        headers = {"x-request-id": request_id} if request_id else {}
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                self.conn.request("GET", "/predict", headers=headers)
                answer = self.conn.getresponse()
                return answer.status, answer.read().decode()
            except (OSError, http.client.HTTPException):
                if self.conn:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")

    def split(self, n: int) -> Counter[str]:
        seen: Counter[str] = Counter()
        for _ in range(n):
            status, body = self.get()
            seen[body if status == 200 else f"status {status}"] += 1
        return seen


@pytest.fixture(scope="module")
def dataplane(api: client.ApiClient, kubeconfig: str) -> Iterator[dict[str, Any]]:
    with ExitStack() as stack:
        try:  # prepares it first if `make test` did not (slow, once)
            process = stack.enter_context(gateway.shared(kubeconfig))
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            _unavailable(str(error))
        stable, candidate = Backend("stable"), Backend("candidate")
        stack.callback(candidate.close)
        stack.callback(stable.close)
        namespace = stack.enter_context(kube.namespace(api))
        objects = client.CustomObjectsApi(api)
        for backend in (stable, candidate):
            objects.create_namespaced_custom_object(
                gateway.EG_GROUP,
                gateway.EG_VERSION,
                namespace,
                "backends",
                {
                    "apiVersion": f"{gateway.EG_GROUP}/{gateway.EG_VERSION}",
                    "kind": "Backend",
                    "metadata": {"name": backend.name},
                    "spec": {"endpoints": [{"ip": {"address": "127.0.0.1", "port": backend.port}}]},
                },
            )
        gw = gateway.create_gateway(api, namespace)
        yield {
            "api": api,
            "namespace": namespace,
            "gateway": gw,
            "port": gw.port,
            "process": process,
            "stable": stable,
            "candidate": candidate,
            "client": Client(gw.port),
        }
        took = process.startup_seconds or 0.0
        print(
            f"\nenvoy-gateway start-up {took:.1f}s (reused: {process.reused}),"
            f" memory {process.memory_kib()} KiB"
        )


def _backend_ref(name: str, weight: int | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"group": gateway.EG_GROUP, "kind": "Backend", "name": name}
    if weight is not None:
        ref["weight"] = weight
    return ref


def _set_route(
    dp: dict[str, Any], weights: dict[str, int], mirror_percent: int | None = None
) -> dict[str, Any]:
    rule: dict[str, Any] = {"backendRefs": [_backend_ref(n, w) for n, w in weights.items()]}
    if mirror_percent is not None:
        rule["filters"] = [
            {
                "type": "RequestMirror",
                "requestMirror": {
                    "backendRef": _backend_ref("candidate"),
                    "percent": mirror_percent,
                },
            }
        ]
    body = {
        "apiVersion": f"{gateway.GATEWAY_GROUP}/{gateway.GATEWAY_VERSION}",
        "kind": "HTTPRoute",
        "metadata": {"name": ROUTE, "namespace": dp["namespace"]},
        "spec": {"parentRefs": [dp["gateway"].parent_ref()], "rules": [rule]},
    }
    gateway._apply(dp["api"], gateway.GATEWAY_GROUP, gateway.GATEWAY_VERSION, "httproutes", body)
    return rule


def _route(dp: dict[str, Any]) -> dict[str, Any]:
    objects: Any = client.CustomObjectsApi(dp["api"])
    return objects.get_namespaced_custom_object(  # type: ignore[no-any-return]
        gateway.GATEWAY_GROUP, gateway.GATEWAY_VERSION, dp["namespace"], "httproutes", ROUTE
    )


def _wait_for(check: Any, timeout: float, what: str) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if check():
            return time.monotonic() - began
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s")


def _only(dp: dict[str, Any], name: str, n: int = 20) -> bool:
    return bool(dp["client"].split(n) == Counter({name: n}))


def test_route_accepted_and_weights_split_75_25(dataplane: dict[str, Any]) -> None:
    dp = dataplane
    _set_route(dp, {"stable": 75, "candidate": 25})
    route = gateway.wait_route_accepted(dp["api"], dp["namespace"], ROUTE)
    assert (gateway.route_condition(route, "ResolvedRefs") or {}).get("status") == "True", (
        route.get("status")
    )
    # Routes apply a moment after the listener: wait until both backends answer.
    _wait_for(lambda: len(dp["client"].split(20)) == 2, 30, "both backends answering")
    seen = dp["client"].split(REQUESTS)
    print(f"\n75/25 over {REQUESTS}: {dict(seen)}")
    assert set(seen) == {"stable", "candidate"}, seen
    assert 0.70 <= seen["stable"] / REQUESTS <= 0.80, seen


def test_listener_bound_to_loopback(dataplane: dict[str, Any]) -> None:
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{dataplane['port']}"], capture_output=True, text=True
    )
    if out.returncode != 0:
        pytest.skip("no ss here")
    local = {line.split()[3] for line in out.stdout.splitlines() if line.strip()}
    assert local == {f"127.0.0.1:{dataplane['port']}"}, out.stdout


def test_request_mirror_50_percent(dataplane: dict[str, Any]) -> None:
    dp = dataplane
    _set_route(dp, {"stable": 1}, mirror_percent=50)
    # Applied once live traffic goes only to the stable and mirrored copies arrive.
    dp["candidate"].reset()
    try:
        _wait_for(
            lambda: _only(dp, "stable") and dp["candidate"].counts.total() > 0,
            30,
            "mirror applied",
        )
    except AssertionError:
        raise AssertionError(
            f"mirror not applied in 30s: candidate saw {dict(dp['candidate'].counts)}, "
            f"route status {_route(dp).get('status')}"
        ) from None
    dp["stable"].reset()
    dp["candidate"].reset()
    ids = [f"req-{i}" for i in range(REQUESTS)]
    answers = Counter(dp["client"].get(rid)[1] for rid in ids)
    time.sleep(1.0)  # mirrored copies are sent asynchronously
    mirrored = dp["candidate"].counts.total()  # users saw only the stable: all are copies
    print(
        f"\nmirror 50 % over {REQUESTS}: users saw {dict(answers)}, "
        f"candidate got {mirrored} copies {dict(dp['candidate'].counts)}"
    )
    assert answers == Counter({"stable": REQUESTS})
    assert 0.44 <= mirrored / REQUESTS <= 0.56, mirrored
    # Envoy Gateway replaces a client's x-request-id with its own (no
    # preserve_external_request_id), but a copy carries the same id as its live request,
    # so shadow and stable predictions join per request id as the servers log them.
    assert dp["candidate"].request_ids <= dp["stable"].request_ids
    assert len(dp["candidate"].request_ids) == mirrored


def test_weight_change_takes_effect_within_seconds(dataplane: dict[str, Any]) -> None:
    dp = dataplane
    _set_route(dp, {"stable": 100, "candidate": 0})
    _wait_for(lambda: _only(dp, "stable"), 30, "all to stable")
    began = time.monotonic()
    _set_route(dp, {"stable": 0, "candidate": 100})
    took = _wait_for(lambda: _only(dp, "candidate", 10), 15, "switch to candidate")
    print(f"\nweight change 100/0 -> 0/100 seen by requests after {time.monotonic() - began:.2f}s")
    assert took < 10

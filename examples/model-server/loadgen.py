"""Bounded traffic for a local model server: predictions, then feedback with the true label.

The labels come from the same synthetic generator the server trained on (held-out seed), so
the server's accuracy counters measure real accuracy. Only http://127.0.0.1 URLs are accepted,
the request count is capped and every request has a timeout: this is a test helper, not a
load-testing tool.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from model_server import DEFAULT_SEED, heldout_seed, make_dataset

MAX_REQUESTS = 100_000
MAX_TIMEOUT_S = 30.0
# Status recorded when no HTTP answer arrived (refused, reset, timed out).
NO_RESPONSE = 0


@dataclass
class LoadResult:
    """HTTP status -> count, for /predict and for /feedback."""

    predict: Counter[int] = field(default_factory=Counter)
    feedback: Counter[int] = field(default_factory=Counter)


def _target(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    if parts.scheme != "http" or parts.hostname != "127.0.0.1":
        raise ValueError(f"only http://127.0.0.1:PORT URLs are allowed, got {base_url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"give the server's base URL without a path, got {base_url!r}")
    return "127.0.0.1", parts.port or 80


class _Client:
    """One keep-alive connection, reopened when the server closes it."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self._host, self._port, self._timeout = host, port, timeout
        self._conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: dict[str, Any]) -> int:
        data = json.dumps(body).encode()
        for _ in range(2):
            reused = self._conn is not None
            if self._conn is None:
                # http.client never consults proxy environment variables: this stays local.
                self._conn = http.client.HTTPConnection(self._host, self._port, self._timeout)
            try:
                self._conn.request("POST", path, data, {"Content-Type": "application/json"})
                resp = self._conn.getresponse()
                resp.read()
                if resp.will_close:
                    self.close()
                return resp.status
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                # Retry once only if a kept-alive connection had gone stale meanwhile.
                if not reused or isinstance(exc, TimeoutError):
                    break
        return NO_RESPONSE

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def send(
    base_url: str,
    n: int,
    *,
    seed: int = DEFAULT_SEED,
    timeout: float = 2.0,
    feedback: bool = True,
    rps: float | None = None,
) -> LoadResult:
    """Send `n` predictions to `base_url`, each answered one followed by its true label.

    `seed` is the server's training seed; samples come from its held-out set. `rps` paces the
    requests (None: as fast as the server answers).
    """
    host, port = _target(base_url)
    if not 0 <= n <= MAX_REQUESTS:
        raise ValueError(f"n must be 0..{MAX_REQUESTS}, got {n}")
    if not 0 < timeout <= MAX_TIMEOUT_S:
        raise ValueError(f"timeout must be in (0, {MAX_TIMEOUT_S}] seconds, got {timeout}")
    if rps is not None and rps <= 0:
        raise ValueError(f"rps must be > 0, got {rps}")

    x, y = make_dataset(n, heldout_seed(seed))
    result = LoadResult()
    client = _Client(host, port, timeout)
    start = time.monotonic()
    try:
        for i in range(n):
            if rps is not None:
                delay = start + i / rps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            features = x[i].tolist()
            status = client.post("/predict", {"features": features})
            result.predict[status] += 1
            # Feedback only follows answered predictions, as it would in production.
            if feedback and status == 200:
                body = {"features": features, "label": int(y[i])}
                result.feedback[client.post("/feedback", body)] += 1
    finally:
        client.close()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("-n", type=int, default=100, help="number of predictions")
    p.add_argument("--rps", type=float, default=None, help="requests per second")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the server's --seed")
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--no-feedback", action="store_true")
    ns = p.parse_args(argv)
    r = send(
        ns.url,
        ns.n,
        seed=ns.seed,
        timeout=ns.timeout,
        feedback=not ns.no_feedback,
        rps=ns.rps,
    )
    print(json.dumps({"predict": dict(r.predict), "feedback": dict(r.feedback)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

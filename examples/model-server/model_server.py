"""A small but real model server for Slipway's demo and end-to-end tests.

Slipway gates releases on Prometheus SLOs, so the e2e scenarios need a workload whose latency,
error rate and accuracy are real measurements, not numbers printed by a stub. This server
trains an actual logistic-regression model with numpy at startup (on a seeded synthetic
dataset, in milliseconds), serves predictions over HTTP and exports the metrics an SLO would
query. Each version runs as its own process; fault knobs make a "bad release" reproducible:
extra latency, a fraction of 500s, or a fraction of flipped predictions that shows up as lower
accuracy through the /feedback endpoint. Two more knobs misbehave on ``GET /predictions``, to
show that the operator's reads of pod output are bounded: an answer padded to a huge size
(sent without a Content-Length, so only counting the bytes can stop it), or an answer
trickled a few bytes a second.

Shadow rollouts compare the candidate with the stable on the same requests: a gateway mirrors
live requests to the candidate with the same ``x-request-id`` header. So each server keeps the
predictions it answered, by request id, in a bounded in-memory ring (``GET /predictions``), and
the operator joins the two versions' answers per id. Nothing is logged per request: the ring
is the record, and it costs one tuple per prediction.

Every metric carries `version` and `release` labels, so one Prometheus can compare the stable
and the canary version side by side. Only the standard library, numpy and prometheus_client
are used, so it runs anywhere a Python interpreter does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

log = logging.getLogger("model_server")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# The hidden "truth" behind the synthetic data: a linear boundary plus Gaussian logit noise.
TRUE_WEIGHTS: tuple[float, ...] = (1.5, -2.0, 1.0)
TRUE_BIAS = 0.25
LOGIT_NOISE = 0.5
N_FEATURES = len(TRUE_WEIGHTS)

TRAIN_SIZE = 2000
DEFAULT_SEED = 7
# Seed offset for data the model never trained on (load generator, accuracy checks).
HELDOUT_SEED_OFFSET = 1_000_003

MAX_BODY_BYTES = 1 << 20
MAX_INSTANCES = 1000

REQUEST_ID_HEADER = "x-request-id"
MAX_REQUEST_ID_CHARS = 200  # Envoy's ids are 36; a longer header is not recorded
PREDICTION_LOG_SIZE = 50_000  # predictions kept (rows, not requests); the oldest go first
MAX_PREDICTIONS_ANSWER = 20_000  # entries in one /predictions answer: the newest

# Latency buckets covering 5 ms .. 2 s, the range canary latency SLOs are written for.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)


def make_dataset(n: int, seed: int) -> tuple[FloatArray, IntArray]:
    """Return `n` deterministic samples (features, 0/1 labels) for `seed`."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, size=(n, N_FEATURES))
    logits = x @ np.asarray(TRUE_WEIGHTS) + TRUE_BIAS + rng.normal(0.0, LOGIT_NOISE, size=n)
    y = (logits > 0).astype(np.int64)
    return x, y


def heldout_seed(seed: int) -> int:
    """Seed of the held-out data that belongs to a model trained with `seed`."""
    return seed + HELDOUT_SEED_OFFSET


def _sigmoid(z: FloatArray) -> FloatArray:
    # tanh form never overflows, unlike 1 / (1 + exp(-z)).
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


@dataclass(frozen=True)
class LogisticModel:
    weights: FloatArray
    bias: float

    def predict_proba(self, x: FloatArray) -> FloatArray:
        """P(label = 1) for each row of `x`."""
        return _sigmoid(x @ self.weights + self.bias)


def train(x: FloatArray, y: IntArray, *, lr: float = 0.5, epochs: int = 300) -> LogisticModel:
    """Fit logistic regression by full-batch gradient descent on the log loss."""
    n, d = x.shape
    w = np.zeros(d)
    b = 0.0
    yf = y.astype(np.float64)
    for _ in range(epochs):
        err = _sigmoid(x @ w + b) - yf
        w -= lr * (x.T @ err) / n
        b -= lr * float(err.mean())
    return LogisticModel(weights=w, bias=b)


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    version: str = "v1"
    release: str = "local"
    inject_latency_ms: float = 0.0
    inject_error_rate: float = 0.0
    inject_accuracy_drop: float = 0.0
    inject_predictions_bytes: int = 0
    """/predictions answers this many bytes (its entries, then padding); 0: off."""
    inject_predictions_trickle_bps: float = 0.0
    """/predictions answers at this many bytes per second; 0: off."""
    seed: int = DEFAULT_SEED
    prediction_log_size: int = PREDICTION_LOG_SIZE


class BadRequestError(ValueError):
    """The request body is not what the endpoint accepts; the message says why."""

    status = 400


class LengthRequiredError(BadRequestError):
    status = 411


class PayloadTooLargeError(BadRequestError):
    status = 413


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    duration: Histogram
    correct: Counter
    total: Counter


def _make_metrics(version: str, release: str) -> Metrics:
    # One registry per server, so tests can run several versions in one process.
    reg = CollectorRegistry()
    base = ("version", "release")
    m = Metrics(
        registry=reg,
        requests=Counter(
            "model_requests",
            "Prediction requests by HTTP status code.",
            [*base, "code"],
            registry=reg,
        ),
        duration=Histogram(
            "model_request_duration_seconds",
            "Prediction request latency, injected latency included.",
            base,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        ),
        correct=Counter(
            "model_predictions_correct",
            "Predictions that /feedback confirmed correct.",
            base,
            registry=reg,
        ),
        total=Counter(
            "model_predictions",
            "Predictions that received /feedback.",
            base,
            registry=reg,
        ),
    )
    # Create the series at zero so rate() sees the first increments.
    for code in ("200", "400", "500"):
        m.requests.labels(version, release, code)
    m.duration.labels(version, release)
    m.correct.labels(version, release)
    m.total.labels(version, release)
    return m


PredictionEntry = tuple[str, int, float]
"""(request id, prediction, unix time in seconds)."""


class PredictionLog:
    """The newest predictions answered, by request id: a ring of at most ``size`` entries.

    A batch's rows are keyed ``<id>/<i>``, a single row ``<id>``. Times are the server's unix
    clock, rounded to milliseconds.
    """

    def __init__(self, size: int = PREDICTION_LOG_SIZE) -> None:
        if size < 1:
            raise ValueError(f"a prediction log holds at least 1 entry, got {size}")
        self._entries: deque[PredictionEntry] = deque(maxlen=size)
        self._lock = threading.Lock()

    def record(
        self, request_id: str, predictions: Sequence[int], batch: bool, now: float | None = None
    ) -> None:
        t = round(time.time() if now is None else now, 3)
        if batch:
            rows = [(f"{request_id}/{i}", p, t) for i, p in enumerate(predictions)]
        else:
            rows = [(request_id, predictions[0], t)]
        with self._lock:
            self._entries.extend(rows)

    def since(
        self, since: float, limit: int = MAX_PREDICTIONS_ANSWER
    ) -> tuple[list[PredictionEntry], bool]:
        """Entries at or after ``since``, oldest first: the newest ``limit``, and whether
        older ones were left out to stay within it."""
        with self._lock:
            entries = list(self._entries)
        found = [e for e in entries if e[2] >= since]
        if len(found) > limit:
            return found[len(found) - limit :], True
        return found, False

    def __len__(self) -> int:
        return len(self._entries)


def request_id(value: str | None) -> str | None:
    """The id a prediction is recorded under, or None (no header, empty, or too long)."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_REQUEST_ID_CHARS:
        return None
    return value


def parse_since(query: str) -> float:
    """The ``since`` of a /predictions query string (unix seconds; absent: 0, everything)."""
    values = urllib.parse.parse_qs(query, keep_blank_values=True).get("since", [])
    if not values:
        return 0.0
    if len(values) > 1:
        raise BadRequestError("give 'since' once")
    try:
        since = float(values[0])
    except ValueError:
        raise BadRequestError(f"'since' must be unix seconds, got {values[0]!r}") from None
    if not math.isfinite(since):
        raise BadRequestError("'since' must be finite")
    return since


@dataclass
class ModelApp:
    """The model, its knobs and its metrics; the HTTP handler only translates to and from JSON."""

    config: Config
    model: LogisticModel = field(init=False)
    metrics: Metrics = field(init=False)
    predictions: PredictionLog = field(init=False)
    _rng: random.Random = field(init=False)
    _rng_lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        x, y = make_dataset(TRAIN_SIZE, self.config.seed)
        self.model = train(x, y)
        self.metrics = _make_metrics(self.config.version, self.config.release)
        self.predictions = PredictionLog(self.config.prediction_log_size)
        self._rng = random.Random(self.config.seed)

    @property
    def labels(self) -> tuple[str, str]:
        return (self.config.version, self.config.release)

    def draw_error(self) -> bool:
        """Whether this predict should be answered 500 (seeded, so runs are reproducible)."""
        rate = self.config.inject_error_rate
        if rate <= 0:
            return False
        with self._rng_lock:
            return self._rng.random() < rate

    def _flipped(self, row: FloatArray) -> bool:
        # Keyed on the features, so /predict and /feedback agree about the same input.
        drop = self.config.inject_accuracy_drop
        if drop <= 0:
            return False
        digest = hashlib.blake2b(
            row.astype("<f8").tobytes(),
            digest_size=8,
            key=str(self.config.seed).encode(),
        ).digest()
        return int.from_bytes(digest, "big") / 2**64 < drop

    def predict(self, x: FloatArray) -> list[tuple[int, float]]:
        """(prediction, P(label = 1)) per row; a flipped row reports the flipped probability."""
        out: list[tuple[int, float]] = []
        for row, p in zip(x, self.model.predict_proba(x), strict=True):
            prob = float(p)
            if self._flipped(row):
                prob = 1.0 - prob
            out.append((int(prob >= 0.5), prob))
        return out

    def feedback(self, x: FloatArray, label: int) -> tuple[int, bool]:
        prediction = self.predict(x)[0][0]
        correct = prediction == label
        self.metrics.total.labels(*self.labels).inc()
        if correct:
            self.metrics.correct.labels(*self.labels).inc()
        return prediction, correct


def _parse_row(value: Any, name: str) -> list[float]:
    if not isinstance(value, list):
        raise BadRequestError(f"'{name}' must be a list of {N_FEATURES} numbers")
    if len(value) != N_FEATURES:
        raise BadRequestError(f"'{name}' must have {N_FEATURES} numbers, got {len(value)}")
    row: list[float] = []
    for i, v in enumerate(value):
        # bool is an int subclass in Python; true/false are not features.
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise BadRequestError(f"'{name}[{i}]' must be a number, got {type(v).__name__}")
        if not math.isfinite(v):
            raise BadRequestError(f"'{name}[{i}]' must be finite")
        row.append(float(v))
    return row


def parse_predict(body: Any) -> tuple[FloatArray, bool]:
    """Features of a /predict body and whether it was a batch ('instances')."""
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object with 'features' or 'instances'")
    if ("features" in body) == ("instances" in body):
        raise BadRequestError("body must have exactly one of 'features' or 'instances'")
    if "features" in body:
        return np.asarray([_parse_row(body["features"], "features")]), False
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadRequestError("'instances' must be a non-empty list of feature lists")
    if len(instances) > MAX_INSTANCES:
        raise BadRequestError(f"'instances' may hold at most {MAX_INSTANCES} rows")
    rows = [_parse_row(r, f"instances[{i}]") for i, r in enumerate(instances)]
    return np.asarray(rows), True


def parse_feedback(body: Any) -> tuple[FloatArray, int]:
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object with 'features' and 'label'")
    if "features" not in body:
        raise BadRequestError("missing 'features'")
    row = _parse_row(body["features"], "features")
    label = body.get("label")
    if isinstance(label, bool) or label not in (0, 1):
        raise BadRequestError("'label' must be 0 or 1")
    return np.asarray([row]), int(label)


class ModelHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app: ModelApp) -> None:
        self.app = app
        super().__init__((app.config.host, app.config.port), _Handler)

    @property
    def bound_port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: ModelHTTPServer
    server_version = "slipway-model-server/1"
    # Keep-alive makes a local load generator about five times faster; without Nagle, a
    # response's header and body writes are not held back waiting for a delayed ACK.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 60  # seconds an idle or slow connection may hold its thread
    _body_read = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if not self._body_read:
            # An unread request body would be parsed as the next request: hang up instead.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _read_json(self) -> Any:
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            raise LengthRequiredError("missing Content-Length header")
        try:
            length = int(length_header)
        except ValueError:
            raise BadRequestError("Content-Length is not an integer") from None
        if length < 0:
            raise BadRequestError("Content-Length is negative")
        if length > MAX_BODY_BYTES:
            raise PayloadTooLargeError(f"body is larger than {MAX_BODY_BYTES} bytes")
        raw = self.rfile.read(length)
        self._body_read = True
        try:
            # parse_constant rejects NaN/Infinity, which json would otherwise accept.
            return json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequestError(f"body is not valid JSON: {exc}") from None

    def do_GET(self) -> None:
        app = self.server.app
        if self.path == "/healthz":
            v, r = app.labels
            self._send_json(200, {"status": "ok", "version": v, "release": r})
        elif self.path == "/metrics":
            data = generate_latest(app.metrics.registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path.split("?", 1)[0] == "/predictions":
            self._predictions(app)
        elif self.path in ("/predict", "/feedback"):
            self._send_json(405, {"error": f"use POST for {self.path}"})
        else:
            self._send_json(404, {"error": f"no such path: {self.path}"})

    def _predictions(self, app: ModelApp) -> None:
        try:
            since = parse_since(urllib.parse.urlsplit(self.path).query)
        except BadRequestError as exc:
            self._send_json(exc.status, {"error": str(exc)})
            return
        entries, truncated = app.predictions.since(since, MAX_PREDICTIONS_ANSWER)
        version, release = app.labels
        payload = {
            "release": release,
            "version": version,
            "predictions": entries,
            "truncated": truncated,
        }
        config = app.config
        try:
            if config.inject_predictions_bytes > 0:
                self._send_padded(payload, config.inject_predictions_bytes)
            elif config.inject_predictions_trickle_bps > 0:
                self._send_trickle(payload, config.inject_predictions_trickle_bps)
            else:
                self._send_json(200, payload)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the reader gave up: what these faults are for

    def _send_padded(self, payload: dict[str, Any], size: int) -> None:
        """The answer padded to ``size`` bytes with a "padding" string, sent without a
        Content-Length (until the connection closes), 64 KiB at a time."""
        head = json.dumps({**payload, "padding": ""}).encode()
        prefix, suffix = head[:-2], head[-2:]  # split before the padding's closing quote
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(prefix)
        left = max(size - len(head), 0)
        chunk = b"x" * 65536
        while left > 0:
            self.wfile.write(chunk[:left])
            left -= min(left, len(chunk))
        self.wfile.write(suffix)

    def _send_trickle(self, payload: dict[str, Any], bytes_per_second: float) -> None:
        """The answer, with its Content-Length, one byte every ``1 / bytes_per_second`` s."""
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.flush()
        for i in range(len(data)):
            self.wfile.write(data[i : i + 1])
            self.wfile.flush()
            time.sleep(1.0 / bytes_per_second)

    def do_POST(self) -> None:
        self._body_read = False
        if self.path == "/predict":
            self._predict()
        elif self.path == "/feedback":
            self._feedback()
        elif self.path.split("?", 1)[0] == "/predictions":
            self._send_json(405, {"error": "use GET for /predictions"})
        else:
            self._send_json(404, {"error": f"no such path: {self.path}"})

    def _predict(self) -> None:
        app = self.server.app
        start = time.perf_counter()
        try:
            status, payload = self._predict_response(app)
        except Exception:
            log.exception("predict failed")
            status, payload = 500, {"error": "internal error"}
        try:
            self._send_json(status, payload)
        finally:
            # Counted even if the client hung up before reading the answer.
            app.metrics.requests.labels(*app.labels, str(status)).inc()
            app.metrics.duration.labels(*app.labels).observe(time.perf_counter() - start)

    def _predict_response(self, app: ModelApp) -> tuple[int, dict[str, Any]]:
        try:
            x, batch = parse_predict(self._read_json())
        except BadRequestError as exc:
            return exc.status, {"error": str(exc)}
        if app.config.inject_latency_ms > 0:
            time.sleep(app.config.inject_latency_ms / 1000.0)
        if app.draw_error():
            return 500, {"error": "injected error"}
        results = app.predict(x)
        version = app.config.version
        rid = request_id(self.headers.get(REQUEST_ID_HEADER))
        if rid is not None:
            app.predictions.record(rid, [p for p, _ in results], batch)
        if batch:
            return 200, {
                "predictions": [p for p, _ in results],
                "probabilities": [prob for _, prob in results],
                "version": version,
            }
        prediction, probability = results[0]
        return 200, {"prediction": prediction, "probability": probability, "version": version}

    def _feedback(self) -> None:
        app = self.server.app
        try:
            x, label = parse_feedback(self._read_json())
        except BadRequestError as exc:
            self._send_json(exc.status, {"error": str(exc)})
            return
        prediction, correct = app.feedback(x, label)
        self._send_json(
            200,
            {
                "prediction": prediction,
                "label": label,
                "correct": correct,
                "version": app.config.version,
            },
        )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not (value >= 0.0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _size(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of bytes >= 0, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, got {text}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Flags win over environment variables, which win over the defaults."""
    env = os.environ
    d = Config()
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    p.add_argument(
        "--host", default=env.get("MODEL_HOST", d.host), help="bind address (env MODEL_HOST)"
    )
    p.add_argument(
        "--port",
        type=_port,
        default=env.get("PORT", str(d.port)),
        help="0 picks a free port (env PORT)",
    )
    p.add_argument(
        "--version", default=env.get("MODEL_VERSION", d.version), help="env MODEL_VERSION"
    )
    p.add_argument(
        "--release", default=env.get("MODEL_RELEASE", d.release), help="env MODEL_RELEASE"
    )
    p.add_argument(
        "--inject-latency-ms",
        type=_non_negative,
        default=env.get("INJECT_LATENCY_MS", "0"),
        help="milliseconds added to every /predict (env INJECT_LATENCY_MS)",
    )
    p.add_argument(
        "--inject-error-rate",
        type=_fraction,
        default=env.get("INJECT_ERROR_RATE", "0"),
        help="fraction of /predict answered 500 (env INJECT_ERROR_RATE)",
    )
    p.add_argument(
        "--inject-accuracy-drop",
        type=_fraction,
        default=env.get("INJECT_ACCURACY_DROP", "0"),
        help="fraction of predictions flipped (env INJECT_ACCURACY_DROP)",
    )
    p.add_argument(
        "--inject-predictions-bytes",
        type=_size,
        default=env.get("INJECT_PREDICTIONS_BYTES", "0"),
        help="answer /predictions with this many bytes, padded, no Content-Length"
        " (env INJECT_PREDICTIONS_BYTES)",
    )
    p.add_argument(
        "--inject-predictions-trickle-bps",
        type=_non_negative,
        default=env.get("INJECT_PREDICTIONS_TRICKLE_BPS", "0"),
        help="send /predictions answers at this many bytes per second"
        " (env INJECT_PREDICTIONS_TRICKLE_BPS)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=env.get("SEED", str(d.seed)),
        help="data and RNG seed (env SEED)",
    )
    ns = p.parse_args(argv)
    return Config(
        host=ns.host,
        port=ns.port,
        version=ns.version,
        release=ns.release,
        inject_latency_ms=ns.inject_latency_ms,
        inject_error_rate=ns.inject_error_rate,
        inject_accuracy_drop=ns.inject_accuracy_drop,
        inject_predictions_bytes=ns.inject_predictions_bytes,
        inject_predictions_trickle_bps=ns.inject_predictions_trickle_bps,
        seed=ns.seed,
    )


def make_server(config: Config) -> ModelHTTPServer:
    """Train the model and bind the socket; the caller runs `serve_forever()`."""
    return ModelHTTPServer(ModelApp(config))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = parse_args(argv)
    server = make_server(config)
    # Tests and the e2e launcher read this first line to learn the port.
    print(f"listening on {config.host}:{server.bound_port}", flush=True)
    log.info(
        "serving version=%s release=%s latency_ms=%s error_rate=%s accuracy_drop=%s"
        " predictions_bytes=%s predictions_trickle_bps=%s",
        config.version,
        config.release,
        config.inject_latency_ms,
        config.inject_error_rate,
        config.inject_accuracy_drop,
        config.inject_predictions_bytes,
        config.inject_predictions_trickle_bps,
    )

    def _on_sigterm(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever(), so it must run off the main thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

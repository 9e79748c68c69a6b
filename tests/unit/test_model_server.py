"""The example model server must really measure what Slipway's SLOs gate on.

Servers run in-process on port 0 (one thread each), plus one real subprocess to check the
command-line contract the e2e launcher relies on.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

SERVER_DIR = Path(__file__).resolve().parents[2] / "examples" / "model-server"
sys.path.insert(0, str(SERVER_DIR))

import loadgen  # noqa: E402
import model_server as ms  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

StartServer = Callable[..., ms.ModelHTTPServer]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    started: list[tuple[ms.ModelHTTPServer, threading.Thread]] = []

    def start(**overrides: Any) -> ms.ModelHTTPServer:
        config = ms.Config(**{"port": 0, "version": "v-test", "release": "r1", **overrides})
        server = ms.make_server(config)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def call(
    server: ms.ModelHTTPServer,
    method: str,
    path: str,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.bound_port, timeout=5)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, data, headers or {})
        resp = conn.getresponse()
        payload = resp.read()
        if resp.getheader("Content-Type") == "application/json":
            return resp.status, json.loads(payload)
        return resp.status, payload.decode()
    finally:
        conn.close()


def samples(server: ms.ModelHTTPServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, text = call(server, "GET", "/metrics")
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(server: ms.ModelHTTPServer, name: str, **labels: str) -> float:
    key = (name, frozenset({"version": "v-test", "release": "r1", **labels}.items()))
    return samples(server)[key]


def base_url(server: ms.ModelHTTPServer) -> str:
    return f"http://127.0.0.1:{server.bound_port}"


def test_training_is_deterministic_and_fast_enough_to_be_repeatable() -> None:
    x, y = ms.make_dataset(500, 3)
    x2, y2 = ms.make_dataset(500, 3)
    assert (x == x2).all() and (y == y2).all()
    assert 0.3 < y.mean() < 0.7  # both classes well represented
    a = ms.train(*ms.make_dataset(ms.TRAIN_SIZE, 3))
    b = ms.train(*ms.make_dataset(ms.TRAIN_SIZE, 3))
    assert (a.weights == b.weights).all() and a.bias == b.bias


def test_predict_single_and_batch(start_server: StartServer) -> None:
    server = start_server()
    status, body = call(server, "POST", "/predict", {"features": [1.0, -1.0, 0.5]})
    assert status == 200
    assert body["prediction"] == 1 and 0.5 <= body["probability"] <= 1.0
    assert body["version"] == "v-test"

    status, body = call(server, "POST", "/predict", {"instances": [[-2, 2, -1], [2, -2, 1]]})
    assert status == 200
    assert body["predictions"] == [0, 1]
    assert len(body["probabilities"]) == 2


def test_clean_model_is_accurate_on_heldout_data(start_server: StartServer) -> None:
    server = start_server()
    x, y = ms.make_dataset(1000, ms.heldout_seed(ms.DEFAULT_SEED))
    status, body = call(server, "POST", "/predict", {"instances": x.tolist()})
    assert status == 200
    accuracy = sum(p == t for p, t in zip(body["predictions"], y.tolist(), strict=True)) / 1000
    assert accuracy > 0.85


def test_accuracy_drop_shows_in_feedback_metrics(start_server: StartServer) -> None:
    clean = start_server()
    bad = start_server(inject_accuracy_drop=0.5)
    accuracies = []
    for server in (clean, bad):
        result = loadgen.send(base_url(server), 300)
        assert result.predict == {200: 300} and result.feedback == {200: 300}
        total = value(server, "model_predictions_total")
        assert total == 300
        accuracies.append(value(server, "model_predictions_correct_total") / total)
    clean_acc, bad_acc = accuracies
    assert clean_acc > 0.85
    # Flipping half of the answers leaves a coin toss: 0.94*0.5 + 0.06*0.5 = 0.5.
    assert 0.38 < bad_acc < 0.62


def test_flipped_prediction_is_consistent_between_predict_and_feedback(
    start_server: StartServer,
) -> None:
    server = start_server(inject_accuracy_drop=1.0)
    features = [1.0, -1.0, 0.5]  # the clean model says 1
    status, body = call(server, "POST", "/predict", {"features": features})
    assert (status, body["prediction"]) == (200, 0)
    assert body["probability"] < 0.5
    status, body = call(server, "POST", "/feedback", {"features": features, "label": 1})
    assert status == 200 and body["correct"] is False


def test_injected_errors_match_the_rate_and_the_counter(start_server: StartServer) -> None:
    server = start_server(inject_error_rate=0.3)
    result = loadgen.send(base_url(server), 400, feedback=False)
    assert set(result.predict) == {200, 500}
    assert 0.22 < result.predict[500] / 400 < 0.38
    errors, answers = result.predict[500], result.predict[200]
    assert counted(server, errors, "model_requests_total", code="500") == errors
    assert counted(server, answers, "model_requests_total", code="200") == answers


def test_injected_errors_are_reproducible_for_a_seed(start_server: StartServer) -> None:
    runs = [
        loadgen.send(base_url(start_server(inject_error_rate=0.5, seed=11)), 50, feedback=False)
        for _ in range(2)
    ]
    assert runs[0].predict == runs[1].predict
    assert 0 < runs[0].predict[500] < 50


def test_no_errors_without_injection(start_server: StartServer) -> None:
    server = start_server()
    assert loadgen.send(base_url(server), 100, feedback=False).predict == {200: 100}
    assert value(server, "model_requests_total", code="500") == 0


def test_injected_latency_shows_in_the_histogram(start_server: StartServer) -> None:
    server = start_server(inject_latency_ms=60)
    loadgen.send(base_url(server), 5, feedback=False)
    name = "model_request_duration_seconds"
    assert counted(server, 5, f"{name}_count") == 5
    assert value(server, f"{name}_sum") >= 5 * 0.060
    assert value(server, f"{name}_bucket", le="0.05") == 0
    assert value(server, f"{name}_bucket", le="+Inf") == 5


def counted(server: ms.ModelHTTPServer, n: int, name: str, **labels: str) -> float:
    """The counter once it reached ``n`` (the server counts a request after answering it,
    so a read right after the answer may come first), or its value after 5 s."""
    deadline = time.monotonic() + 5
    seen = 0.0
    while time.monotonic() < deadline:
        try:
            seen = value(server, name, **labels)
        except KeyError:
            seen = 0.0
        if seen >= n:
            break
        time.sleep(0.02)
    return seen


def test_fast_server_lands_in_the_low_buckets(start_server: StartServer) -> None:
    server = start_server()
    loadgen.send(base_url(server), 20, feedback=False)
    assert counted(server, 20, "model_request_duration_seconds_bucket", le="+Inf") == 20
    assert value(server, "model_request_duration_seconds_bucket", le="0.25") == 20


def test_metrics_carry_version_and_release_labels(start_server: StartServer) -> None:
    server = start_server(version="v2.3.1", release="fraud-v2")
    call(server, "POST", "/predict", {"features": [0, 0, 0]})
    status, text = call(server, "GET", "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "model_requests",
        "model_request_duration_seconds",
        "model_predictions_correct",
        "model_predictions",
    ):
        assert name in families, name
        for s in families[name].samples:
            assert s.labels["version"] == "v2.3.1" and s.labels["release"] == "fraud-v2"
    codes = {
        s.labels["code"]: s.value for s in families["model_requests"].samples if "code" in s.labels
    }
    assert codes["200"] == 1 and codes["500"] == 0


@pytest.mark.parametrize(
    ("path", "raw", "message"),
    [
        ("/predict", b"{not json", "not valid JSON"),
        ("/predict", b"[1, 2, 3]", "JSON object"),
        ("/predict", b"{}", "exactly one of 'features' or 'instances'"),
        ("/predict", b'{"features": [1, 2]}', "must have 3 numbers, got 2"),
        ("/predict", b'{"features": [1, "a", 3]}', "'features[1]' must be a number"),
        ("/predict", b'{"features": [1, true, 3]}', "'features[1]' must be a number"),
        ("/predict", b'{"features": [1, NaN, 3]}', "NaN is not allowed"),
        ("/predict", b'{"features": 5}', "'features' must be a list"),
        ("/predict", b'{"instances": []}', "non-empty list"),
        ("/predict", b'{"instances": [[1, 2, 3], [1]]}', "'instances[1]' must have 3"),
        ("/feedback", b'{"features": [1, 2, 3]}', "'label' must be 0 or 1"),
        ("/feedback", b'{"features": [1, 2, 3], "label": 2}', "'label' must be 0 or 1"),
        ("/feedback", b'{"features": [1, 2, 3], "label": true}', "'label' must be 0 or 1"),
        ("/feedback", b'{"label": 1}', "missing 'features'"),
    ],
)
def test_bad_input_is_400_with_a_message(
    start_server: StartServer, path: str, raw: bytes, message: str
) -> None:
    server = start_server()
    status, body = call(server, "POST", path, raw=raw)
    assert status == 400
    assert message in body["error"]


def test_bad_predict_is_counted_as_400_and_feedback_is_not_counted(
    start_server: StartServer,
) -> None:
    server = start_server()
    call(server, "POST", "/predict", raw=b"nope")
    call(server, "POST", "/feedback", raw=b"nope")
    assert counted(server, 1, "model_requests_total", code="400") == 1
    assert value(server, "model_predictions_total") == 0


def test_oversized_body_and_unknown_paths(start_server: StartServer) -> None:
    server = start_server()
    # The server answers from the header alone, without reading a huge body.
    too_long = {"Content-Length": str(ms.MAX_BODY_BYTES + 1)}
    status, body = call(server, "POST", "/predict", raw=b"{}", headers=too_long)
    assert status == 413 and "larger than" in body["error"]
    assert counted(server, 1, "model_requests_total", code="413") == 1
    assert call(server, "GET", "/nope")[0] == 404
    assert call(server, "GET", "/predict")[0] == 405


def test_keep_alive_survives_answers_and_hangs_up_on_unread_bodies(
    start_server: StartServer,
) -> None:
    server = start_server()
    conn = http.client.HTTPConnection("127.0.0.1", server.bound_port, timeout=5)
    try:
        for _ in range(3):  # one connection, several requests
            conn.request("POST", "/predict", json.dumps({"features": [0, 0, 0]}))
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200 and not resp.will_close
        conn.request("POST", "/nope", b"body the server never reads")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 404 and resp.will_close
    finally:
        conn.close()


def test_healthz(start_server: StartServer) -> None:
    server = start_server(release="r1")
    assert call(server, "GET", "/healthz") == (
        200,
        {"status": "ok", "version": "v-test", "release": "r1"},
    )


def test_flags_override_env_and_env_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_VERSION", "from-env")
    monkeypatch.setenv("INJECT_ERROR_RATE", "0.25")
    monkeypatch.setenv("PORT", "0")
    config = ms.parse_args(["--version", "from-flag"])
    assert config.version == "from-flag"
    assert config.inject_error_rate == 0.25
    assert config.port == 0
    assert config.host == "127.0.0.1"


@pytest.mark.parametrize(
    "argv",
    [["--inject-error-rate", "1.5"], ["--inject-accuracy-drop", "-0.1"], ["--port", "70000"]],
)
def test_out_of_range_knobs_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        ms.parse_args(argv)


def test_loadgen_only_talks_to_localhost() -> None:
    for url in ("http://example.com:80", "https://127.0.0.1:1", "http://localhost:1"):
        with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
            loadgen.send(url, 1)
    with pytest.raises(ValueError, match="n must be"):
        loadgen.send("http://127.0.0.1:1", loadgen.MAX_REQUESTS + 1)


def test_loadgen_counts_unreachable_server_as_no_response(start_server: StartServer) -> None:
    server = start_server()
    port = server.bound_port
    server.shutdown()
    server.server_close()
    result = loadgen.send(f"http://127.0.0.1:{port}", 3, timeout=1)
    assert result.predict == {loadgen.NO_RESPONSE: 3} and not result.feedback


def test_subprocess_prints_port_serves_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(SERVER_DIR / "model_server.py"), "--port", "0", "--version", "v9"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=5)
        conn.request("GET", "/healthz")
        assert json.loads(conn.getresponse().read())["version"] == "v9"
        conn.close()
        proc.terminate()
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- predictions by request id (/predictions), for shadow agreement ---------------------------


def predict_with_id(
    server: ms.ModelHTTPServer, body: Any, request_id: str | None
) -> tuple[int, Any]:
    headers = {} if request_id is None else {"X-Request-Id": request_id}
    return call(server, "POST", "/predict", body, headers=headers)


def predictions(server: ms.ModelHTTPServer, query: str = "") -> tuple[int, Any]:
    return call(server, "GET", f"/predictions{query}")


def test_predictions_are_recorded_by_request_id(start_server: StartServer) -> None:
    server = start_server(version="v7", release="fraud-v7")
    before = time.time()
    status, body = predict_with_id(server, {"features": [1.0, -1.0, 0.5]}, "req-1")
    assert status == 200
    after = time.time()
    status, answer = predictions(server)
    assert status == 200
    assert answer["release"] == "fraud-v7" and answer["version"] == "v7"
    assert answer["truncated"] is False
    [(rid, prediction, t)] = answer["predictions"]
    assert (rid, prediction) == ("req-1", body["prediction"])
    assert isinstance(prediction, int) and not isinstance(prediction, bool)
    assert before - 0.001 <= t <= after + 0.001


def test_batch_rows_are_keyed_by_index(start_server: StartServer) -> None:
    server = start_server()
    rows = [[-2, 2, -1], [2, -2, 1], [0.5, 0, 0]]
    status, body = predict_with_id(server, {"instances": rows}, "b")
    assert status == 200
    got = {rid: p for rid, p, _ in predictions(server)[1]["predictions"]}
    assert got == {f"b/{i}": p for i, p in enumerate(body["predictions"])}


def test_without_a_request_id_nothing_is_recorded(start_server: StartServer) -> None:
    server = start_server()
    for rid in (None, "", "   ", "x" * (ms.MAX_REQUEST_ID_CHARS + 1)):
        assert predict_with_id(server, {"features": [0, 0, 0]}, rid)[0] == 200
    assert predictions(server)[1]["predictions"] == []
    longest = "y" * ms.MAX_REQUEST_ID_CHARS
    predict_with_id(server, {"features": [0, 0, 0]}, f"  {longest} ")
    assert [e[0] for e in predictions(server)[1]["predictions"]] == [longest]


def test_only_answered_predictions_are_recorded(start_server: StartServer) -> None:
    server = start_server(inject_error_rate=1.0)
    assert predict_with_id(server, {"features": [0, 0, 0]}, "e")[0] == 500
    assert predict_with_id(server, {"features": [1]}, "bad")[0] == 400
    assert predictions(server)[1]["predictions"] == []


def test_recorded_prediction_is_the_one_answered_even_when_flipped(
    start_server: StartServer,
) -> None:
    server = start_server(inject_accuracy_drop=1.0)
    status, body = predict_with_id(server, {"features": [1.0, -1.0, 0.5]}, "f")
    assert (status, body["prediction"]) == (200, 0)  # the clean model says 1
    assert predictions(server)[1]["predictions"][0][:2] == ["f", 0]


def test_same_id_twice_is_kept_twice_in_order(start_server: StartServer) -> None:
    server = start_server()
    predict_with_id(server, {"features": [2, -2, 1]}, "dup")
    predict_with_id(server, {"features": [-2, 2, -1]}, "dup")
    assert [e[:2] for e in predictions(server)[1]["predictions"]] == [["dup", 1], ["dup", 0]]


def test_since_filters_by_the_servers_clock(start_server: StartServer) -> None:
    server = start_server()
    predict_with_id(server, {"features": [0, 0, 0]}, "old")
    time.sleep(0.05)
    cut = time.time()
    predict_with_id(server, {"features": [0, 0, 0]}, "new")
    ids = [e[0] for e in predictions(server, f"?since={cut}")[1]["predictions"]]
    assert ids == ["new"]
    assert [e[0] for e in predictions(server, "?since=0")[1]["predictions"]] == ["old", "new"]
    assert predictions(server, f"?since={time.time() + 60}")[1]["predictions"] == []
    # Other parameters are ignored; a negative since is simply everything.
    assert len(predictions(server, "?x=1&since=-5")[1]["predictions"]) == 2


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?since=abc", "'since' must be unix seconds"),
        ("?since=", "'since' must be unix seconds"),
        ("?since=nan", "finite"),
        ("?since=inf", "finite"),
        ("?since=1&since=2", "once"),
    ],
)
def test_bad_since_is_400(start_server: StartServer, query: str, message: str) -> None:
    status, body = predictions(start_server(), query)
    assert status == 400 and message in body["error"]


def test_post_on_predictions_is_405(start_server: StartServer) -> None:
    server = start_server()
    assert call(server, "POST", "/predictions", {"since": 0})[0] == 405
    assert call(server, "GET", "/predictionsX")[0] == 404


def test_the_ring_keeps_only_the_newest(start_server: StartServer) -> None:
    server = start_server(prediction_log_size=5)
    rows = [[0, 0, 0]] * 4
    predict_with_id(server, {"instances": rows}, "a")  # a/0..a/3
    predict_with_id(server, {"instances": rows}, "b")  # b/0..b/3 push out a/0..a/2
    ids = [e[0] for e in predictions(server)[1]["predictions"]]
    assert ids == ["a/3", "b/0", "b/1", "b/2", "b/3"]
    assert len(server.app.predictions) == 5


def test_the_answer_is_capped_to_the_newest_and_says_so() -> None:
    log = ms.PredictionLog(size=100)
    for i in range(30):
        log.record(f"r{i}", [i % 2], batch=False, now=1000.0 + i)
    entries, truncated = log.since(1005.0, limit=10)
    assert truncated and [e[0] for e in entries] == [f"r{i}" for i in range(20, 30)]
    entries, truncated = log.since(1020.0, limit=10)
    assert not truncated and len(entries) == 10 and entries[0] == ("r20", 0, 1020.0)
    assert log.since(1029.0, limit=10) == ([("r29", 1, 1029.0)], False)
    assert log.since(1029.5, limit=10) == ([], False)


def test_prediction_log_rejects_an_empty_ring() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ms.PredictionLog(0)


def test_the_default_answer_cap_applies_over_http(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ms, "MAX_PREDICTIONS_ANSWER", 3)
    server = start_server()
    predict_with_id(server, {"instances": [[0, 0, 0]] * 5}, "c")
    answer = predictions(server)[1]
    assert answer["truncated"] is True
    assert [e[0] for e in answer["predictions"]] == ["c/2", "c/3", "c/4"]


def test_recording_is_safe_under_concurrent_requests(start_server: StartServer) -> None:
    server = start_server()
    errors: list[BaseException] = []

    def send(worker: int) -> None:
        try:
            for i in range(25):
                status, _ = predict_with_id(server, {"features": [i, -i, 0]}, f"w{worker}-{i}")
                assert status == 200
                predictions(server)  # reads while others write
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    ids = {e[0] for e in predictions(server)[1]["predictions"]}
    assert ids == {f"w{w}-{i}" for w in range(8) for i in range(25)}


# --- faults on /predictions: an answer too large, an answer trickled ------------------------


def test_padded_predictions_answer_is_that_many_bytes_of_valid_json_without_a_length(
    start_server: StartServer,
) -> None:
    server = start_server(inject_predictions_bytes=3 << 20)
    call(server, "POST", "/predict", {"features": [1.0, 0.0, 0.0]}, headers={"X-Request-Id": "a"})
    conn = http.client.HTTPConnection("127.0.0.1", server.bound_port, timeout=5)
    try:
        conn.request("GET", "/predictions")
        answer = conn.getresponse()
        assert answer.getheader("Content-Length") is None
        body = answer.read()
    finally:
        conn.close()
    assert len(body) == 3 << 20
    parsed = json.loads(body)
    assert [e[0] for e in parsed["predictions"]] == ["a"] and set(parsed["padding"]) == {"x"}


def test_trickled_predictions_answer_arrives_byte_by_byte(start_server: StartServer) -> None:
    server = start_server(inject_predictions_trickle_bps=50)
    conn = http.client.HTTPConnection("127.0.0.1", server.bound_port, timeout=5)
    try:
        conn.request("GET", "/predictions")
        answer = conn.getresponse()
        length = int(answer.getheader("Content-Length") or 0)
        first = [answer.read1(100) for _ in range(3)]  # each read brings what one send did
        rest = answer.read()
    finally:
        conn.close()
    assert [len(b) for b in first] == [1, 1, 1]
    assert json.loads(b"".join(first) + rest)["predictions"] == [] and length > 50
    # /predict and /healthz are not slowed.
    assert call(server, "GET", "/healthz")[0] == 200


def test_prediction_fault_flags_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INJECT_PREDICTIONS_BYTES", str(200 << 20))
    config = ms.parse_args(["--inject-predictions-trickle-bps", "1"])
    assert config.inject_predictions_bytes == 200 << 20
    assert config.inject_predictions_trickle_bps == 1.0
    for argv in (["--inject-predictions-bytes", "-1"], ["--inject-predictions-trickle-bps", "-2"]):
        with pytest.raises(SystemExit):
            ms.parse_args(argv)

"""Bounded reads (slipway.analysis.bounded) against a real HTTP server on 127.0.0.1.

The server answers what a misbehaving pod or backend would: too much (with and without a
Content-Length), a trickle of bytes that never trips a socket timeout, silence, a compressed
body, a body cut short. Each must end as the matching ``AnswerError`` long before the answer
would have ended, and a plain answer must come through whole. The pod-proxy path
(``KubePredictionSource``) is exercised on the real cluster (tests/e2e/test_prediction_limits.py).
"""

from __future__ import annotations

import contextlib
import gzip
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import urllib3
from kubernetes import client

from slipway.analysis.agreement import KubePredictionSource, PredictionSourceError
from slipway.analysis.bounded import (
    AnswerError,
    AnswerRefusedError,
    AnswerTooLargeError,
    AnswerTooSlowError,
    BoundedSession,
    Bounds,
    read_bounded,
    size,
)
from slipway.analysis.provider import PrometheusProvider

PLAIN = b'{"status": "success", "data": {"resultType": "vector", "result": []}}'
GZIPPED = gzip.compress(b" " * (50 << 20))  # 50 MiB in about 50 KiB
TRICKLE_BYTES = 600  # at one byte per 0.1 s: a minute, if nothing stopped it


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sent: dict[str, int] = {}

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _head(self, length: int | None, encoding: str | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if length is not None:
            self.send_header("Content-Length", str(length))
        else:
            self.send_header("Connection", "close")
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.end_headers()

    def do_GET(self) -> None:
        # The first path segment names the answer (/trickle, /trickle/api/v1/query), or the
        # pod's name in a pod-proxy path (/api/v1/namespaces/ns/pods/trickle:8080/proxy/...).
        parts = urllib.parse.unquote(self.path.split("?")[0]).strip("/").split("/")
        name = parts[5].split(":")[0] if parts[0] == "api" else parts[0]
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            getattr(self, "serve_" + name)()

    def serve_predictions(self) -> None:
        body = b'{"predictions": [["a", 1, 1.5]], "truncated": false}'
        self._head(len(body))
        self.wfile.write(body)

    def serve_malformed(self) -> None:
        body = b'{"predictions": [[[], [], []]]}'
        self._head(len(body))
        self.wfile.write(body)

    def serve_plain(self) -> None:
        self._head(len(PLAIN))
        self.wfile.write(PLAIN)

    def serve_declared_huge(self) -> None:
        self._head(200 << 20)
        self._stream(200 << 20)

    def serve_undeclared_huge(self) -> None:
        self._head(None)
        self._stream(200 << 20)

    def serve_lying_length(self) -> None:
        self._head(100)
        self._stream(200 << 20)

    def _stream(self, n: int) -> None:
        chunk = b" " * 65536
        sent = 0
        while sent < n:
            self.wfile.write(chunk)
            sent += len(chunk)
            Handler.sent[self.path] = sent

    def serve_trickle(self) -> None:
        self._head(TRICKLE_BYTES)
        for _ in range(TRICKLE_BYTES):
            self.wfile.write(b" ")
            self.wfile.flush()
            time.sleep(0.1)

    def serve_silent(self) -> None:
        self._head(len(PLAIN))
        self.wfile.flush()
        time.sleep(30)

    def serve_gzip(self) -> None:
        self._head(len(GZIPPED), "gzip")
        self.wfile.write(GZIPPED)

    def serve_cut(self) -> None:
        self._head(1000)
        self.wfile.write(b"x" * 10)
        self.wfile.flush()
        self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-answer is what these tests do


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


BOUNDS = Bounds(max_bytes=1 << 20, seconds=1.0, connect_seconds=1.0, stall_seconds=0.5)


def read(url: str, bounds: Bounds = BOUNDS) -> bytes:
    pool = urllib3.PoolManager()
    deadline = time.monotonic() + bounds.seconds
    connect, stall = bounds.timeouts()
    response = pool.request(
        "GET",
        url,
        preload_content=False,
        timeout=urllib3.Timeout(connect=connect, read=stall),
        retries=False,
    )
    return read_bounded(response, bounds, deadline)


def test_a_plain_answer_comes_through_whole(server: str) -> None:
    assert read(f"{server}/plain") == PLAIN


def test_a_declared_huge_answer_is_refused_before_reading(server: str) -> None:
    with pytest.raises(AnswerTooLargeError) as refused:
        read(f"{server}/declared_huge")
    assert str(refused.value) == (
        "the answer is 200 MiB (Content-Length), more than the 1 MiB limit; none of it was read"
    )


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("undeclared_huge", "no Content-Length was declared"),
        ("lying_length", None),  # the client stops at the declared 100 bytes: no error
    ],
)
def test_an_undeclared_huge_answer_stops_at_the_limit(
    server: str, path: str, why: str | None
) -> None:
    if why is None:
        assert read(f"{server}/{path}") == b" " * 100
        return
    with pytest.raises(AnswerTooLargeError, match="larger than the 1 MiB limit") as refused:
        read(f"{server}/{path}")
    assert why in str(refused.value)
    time.sleep(0.2)
    # The server stopped sending well before 200 MiB: the client hung up at the limit.
    assert Handler.sent[f"/{path}"] < 32 << 20


def test_a_trickle_is_stopped_at_the_deadline_though_no_read_times_out(server: str) -> None:
    began = time.monotonic()
    with pytest.raises(AnswerTooSlowError, match=r"not complete within 1 s \(\d+ bytes arrived"):
        read(f"{server}/trickle")
    # A socket timeout alone (0.5 s per read) never fires: a byte comes every 0.1 s.
    assert time.monotonic() - began < TRICKLE_BYTES * 0.1 / 4


def test_silence_is_too_slow(server: str) -> None:
    with pytest.raises(AnswerTooSlowError, match=r"no byte of the answer for 0.5 s"):
        read(f"{server}/silent")


def test_a_compressed_answer_is_refused(server: str) -> None:
    with pytest.raises(AnswerError, match=r"compressed \(Content-Encoding: gzip\)"):
        read(f"{server}/gzip")


def test_an_answer_cut_short_says_so(server: str) -> None:
    with pytest.raises(AnswerError, match="broke off after 10 bytes"):
        read(f"{server}/cut")


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        Bounds(max_bytes=0, seconds=1)
    with pytest.raises(ValueError, match="time bound"):
        Bounds(max_bytes=1, seconds=0)
    assert Bounds(max_bytes=1, seconds=10, connect_seconds=3, stall_seconds=2).timeouts(1.5) == (
        1.5,
        1.5,
    )
    assert [size(n) for n in (512, 8 << 20, 200 << 20, 3 << 30)] == [
        "512 bytes",
        "8 MiB",
        "200 MiB",
        "3 GiB",
    ]


# --- BoundedSession: the same bounds for a requests-based client ----------------------------


def test_the_session_hands_the_plain_answer_to_the_caller(server: str) -> None:
    with BoundedSession(BOUNDS) as session:
        answer = session.get(f"{server}/plain?x=1")
        assert answer.status_code == 200 and answer.json()["status"] == "success"
        assert answer.request.headers["Accept-Encoding"] == "identity"
        # The pooled connection was released: the next request reuses it.
        assert session.get(f"{server}/plain").content == PLAIN


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("declared_huge", AnswerTooLargeError),
        ("undeclared_huge", AnswerTooLargeError),
        ("trickle", AnswerTooSlowError),
        ("gzip", AnswerError),
    ],
)
def test_the_session_refuses_as_a_requests_error(
    server: str, path: str, kind: type[AnswerError]
) -> None:
    with BoundedSession(BOUNDS) as session, pytest.raises(AnswerRefusedError) as refused:
        session.get(f"{server}/{path}")
    assert isinstance(refused.value, requests.exceptions.RequestException)
    assert isinstance(refused.value.reason, kind)
    assert refused.value.too_slow is (kind is AnswerTooSlowError)


# --- the Prometheus provider reads through it ------------------------------------------------


def test_prometheus_answers_are_bounded_in_size_and_time(server: str) -> None:
    assert PrometheusProvider(f"{server}/plain", timeout_seconds=1).query("up").no_data
    huge = PrometheusProvider(f"{server}/undeclared_huge", timeout_seconds=1).query("up")
    assert huge.error == (
        f"Prometheus at {server}/undeclared_huge: the answer is larger than the 1 MiB limit;"
        " reading stopped there (no Content-Length was declared)"
    )
    assert not huge.unreachable
    began = time.monotonic()
    slow = PrometheusProvider(f"{server}/trickle", timeout_seconds=1).query("up")
    assert slow.unreachable and slow.error is not None
    assert "the answer was not complete within 1 s" in slow.error
    assert time.monotonic() - began < TRICKLE_BYTES * 0.1 / 4


# --- the prediction source reads through it --------------------------------------------------
# The API server's pod proxy passes a pod's answer through; here a local server stands in for
# both (pod named after the answer it gives). The real pod proxy: tests/e2e.


@pytest.mark.parametrize(
    ("pod", "why"),
    [
        ("undeclared_huge", "the answer is larger than the 1 MiB limit"),
        ("declared_huge", "the answer is 200 MiB (Content-Length)"),
        ("trickle", "the answer was not complete within 1 s"),
        ("gzip", "the answer is compressed"),
        ("malformed", "entry 0 is not [request id, prediction, unix time]"),
    ],
)
def test_the_prediction_source_reports_the_pod_and_what_was_wrong(
    server: str, pod: str, why: str
) -> None:
    configuration = client.Configuration()
    configuration.host = server
    source = KubePredictionSource(
        client.ApiClient(configuration), timeout_seconds=1, max_bytes=1 << 20
    )
    assert source.pod_predictions("ns", "predictions", 8080, 0.0) == [("a", 1, 1.5)]
    with pytest.raises(PredictionSourceError) as refused:
        source.pod_predictions("ns", pod, 8080, 0.0)
    message = str(refused.value)
    assert message.startswith(f"GET /predictions of pod ns/{pod} (port 8080): "), message
    assert why in message, message

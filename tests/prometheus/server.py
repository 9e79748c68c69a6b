"""A real Prometheus for tests, scraping metrics the test sets.

Analysis is only trustworthy if it is tested against the real query engine:
PromQL escaping, empty vectors, NaN, error bodies and a server that goes away
all behave as Prometheus makes them behave, not as a mock imagines. This
module starts ``prometheus`` on 127.0.0.1 with a throw-away config and TSDB,
scraping a tiny in-process HTTP target every second, and stops it afterwards.

The binary comes from ``$PROMETHEUS``, the ``PATH``, or ``e2e/prometheus/ensure.sh``
(Debian's package). Nothing listens beyond the loopback interface.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ENSURE = REPO / "e2e" / "prometheus" / "ensure.sh"
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


_binary: tuple[str | None, str] | None = None


def find_prometheus(install: bool = True) -> tuple[str | None, str]:
    """(path, "") of a prometheus binary, or (None, why not); ensure.sh installs it if allowed."""
    global _binary
    if _binary is not None:
        return _binary
    explicit = os.environ.get("PROMETHEUS")
    found = explicit if explicit and os.access(explicit, os.X_OK) else shutil.which("prometheus")
    if found:
        _binary = (found, "")
    elif not install:
        _binary = (None, "no prometheus binary on PATH (set PROMETHEUS or run ensure.sh)")
    else:
        run = subprocess.run(
            ["bash", str(ENSURE)], capture_output=True, text=True, timeout=600, check=False
        )
        path = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
        if run.returncode == 0 and path and os.access(path, os.X_OK):
            _binary = (path, "")
        else:
            tail = " | ".join(run.stderr.strip().splitlines()[-3:])
            _binary = (None, f"{ENSURE.relative_to(REPO)} could not install prometheus: {tail}")
    return _binary


def _escape_label(value: str) -> str:
    """A label value in the text exposition format."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_number(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class MetricsTarget:
    """An HTTP server on 127.0.0.1 exposing gauges the test sets, in text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = target.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """host:port, as a scrape target."""
        return f"{HOST}:{self._server.server_address[1]}"

    def set(self, name: str, labels: Mapping[str, str], value: float) -> None:
        """Expose ``name{labels} value`` from now on."""
        with self._lock:
            self._series[(name, tuple(sorted(labels.items())))] = value

    def remove(self, name: str, labels: Mapping[str, str]) -> None:
        """Stop exposing one series (Prometheus marks it stale at the next scrape)."""
        with self._lock:
            self._series.pop((name, tuple(sorted(labels.items()))), None)

    def exposition(self) -> str:
        """The text format body of one scrape."""
        with self._lock:
            items = sorted(self._series.items())
        lines: list[str] = []
        typed: set[str] = set()
        for (name, labels), value in items:
            if name not in typed:
                lines.append(f"# TYPE {name} gauge")
                typed.add(name)
            inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
            lines.append(f"{name}{{{inner}}} {_format_number(value)}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


_CONFIG = """\
global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: {interval}
scrape_configs:
  - job_name: slipway-test
    static_configs:
      - targets: [{targets}]
"""

# Targets that come and go (the e2e data plane's model servers): Prometheus re-reads the
# JSON file when it changes. Scraped labels win over the file's, so a target that labels
# its own series (``release``, ``version``) keeps one value per label, never ``exported_*``.
_FILE_SD_JOB = """\
  - job_name: slipway-file-sd
    honor_labels: true
    file_sd_configs:
      - files: [{path}]
        refresh_interval: {interval}
"""


class PrometheusServer:
    """One ``prometheus`` process on 127.0.0.1 with its own config and TSDB."""

    def __init__(
        self,
        binary: str,
        targets: list[str],
        *,
        scrape_interval: str = "1s",
        file_sd: str | Path | None = None,
        extra_scrape_configs: str | None = None,
    ) -> None:
        """``targets`` are scraped as listed; ``file_sd`` names a JSON file of target groups
        (``[{"targets": ["host:port"], "labels": {...}}]``) that may change while running;
        ``extra_scrape_configs`` is YAML appended under ``scrape_configs`` (e.g. a
        ``kubernetes_sd_configs`` job, e2e/realplane.py).
        """
        self.binary = binary
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self._dir = Path(tempfile.mkdtemp(prefix="slipway-prometheus-"))
        self._config = self._dir / "prometheus.yml"
        quoted = ", ".join(f'"{t}"' for t in targets)
        text = _CONFIG.format(interval=scrape_interval, targets=quoted)
        if file_sd is not None:
            path = json.dumps(str(Path(file_sd).resolve()))  # JSON strings are YAML too
            text += _FILE_SD_JOB.format(path=path, interval=scrape_interval)
        if extra_scrape_configs:
            text += extra_scrape_configs
        self._config.write_text(text)
        self._log = self._dir / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout: float = 30.0) -> PrometheusServer:
        """Start the process and wait until /-/ready answers 200."""
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    f"--web.listen-address={HOST}:{self.port}",
                    f"--config.file={self._config}",
                    f"--storage.tsdb.path={self._dir / 'data'}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited early:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus not ready in {ready_timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log, for failure messages."""
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """Kill the process at once (a crashed Prometheus), without cleaning up files."""
        if self._process and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and remove its files."""
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

"""The operator as a child process (`slipway run`), for the tests, the demo and the benchmark.

A real process, so the fault tests can SIGKILL it at any moment and start a
new one, exactly as a crashed pod would be restarted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import ClassVar

STARTED = "slipway operator started"


class OperatorProcess:
    """Start, kill and restart `slipway run` with its log in one file."""

    logs: ClassVar[list[Path]] = []
    """Every log an operator of this Python process wrote (the tests scan them)."""

    def __init__(
        self,
        kubeconfig: str,
        namespaces: list[str],
        log_path: Path,
        *,
        prometheus_url: str | None = None,
        metrics_port: int | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.kubeconfig, self.namespaces, self.log_path = kubeconfig, namespaces, log_path
        self.extra_args = extra_args
        """More ``slipway run`` flags, e.g. ("--workers", "1")."""
        self.prometheus_url, self.metrics_port = prometheus_url, metrics_port
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        if log_path not in OperatorProcess.logs:
            OperatorProcess.logs.append(log_path)

    def start(self, timeout: float = 30.0) -> OperatorProcess:
        """Start one operator and wait until its handlers are registered."""
        argv = [sys.executable, "-m", "slipway.cli.main", "run"]
        for namespace in self.namespaces:
            argv += ["--namespace", namespace]
        if self.prometheus_url:
            argv += ["--prometheus-url", self.prometheus_url]
        if self.metrics_port is not None:
            argv += ["--metrics-port", str(self.metrics_port)]
        argv += self.extra_args
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                env={**os.environ, "KUBECONFIG": self.kubeconfig},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited at start:\n{self.log_tail()}")
            with self.log_path.open("rb") as log:
                log.seek(offset)
                if STARTED.encode() in log.read():
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"operator not started in {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye, like a node failure."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL if it does not stop in time."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def scrape(port: int) -> dict[str, float]:
    """An operator's /metrics as {series: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def total(metrics: dict[str, float], prefix: str) -> float:
    """The sum of every series of one counter (all label values)."""
    return sum(v for k, v in metrics.items() if k.startswith(prefix) and not k.endswith("_created"))

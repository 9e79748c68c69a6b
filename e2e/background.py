"""Builds the demo runs beside its foreground work, one after another, niced.

`make demo` on a fresh machine used to build everything in one sequence before it showed
anything: the cluster's binaries, helm (which only `make test` uses), the real node's
images and, once the first story was over, Envoy Gateway (4 to 8 minutes on 2 cores,
silently; only the second story needs it). Now the demo builds in the foreground only
what the first story needs and hands the rest to a `BackgroundBuild`: the images beside
the cluster's Go build (they need no cluster), Envoy Gateway and helm behind the first
story. Each step is one command under ``nice -n 19`` (the foreground keeps the CPU it
wants), its output going to one log file; a later step runs whether an earlier one failed
or not. Whoever needs a step waits for it, saying every 30 s how long it has run and what
it last logged; a failed step raises `BuildStepError` with its exit status and its last
lines, so the caller can report it next to what already ran.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Step:
    name: str
    """What it builds, as the demo says it (``Envoy Gateway``)."""
    argv: Sequence[str]


class BuildStepError(RuntimeError):
    """A background step exited non-zero, or was stopped before it finished."""


class BackgroundBuild:
    """Runs ``steps`` in order in a thread; ``wait`` for one, ``stop`` whatever still runs."""

    def __init__(self, steps: Sequence[Step], log: Path) -> None:
        names = [step.name for step in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"background steps need distinct names, got {names}")
        self.steps = list(steps)
        self.log = log
        self.results: dict[str, int] = {}
        """Exit status per finished step (negative: killed by that signal)."""
        self.started: dict[str, float] = {}
        self._spans: dict[str, tuple[int, int]] = {}  # each step's bytes in the log
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="background-build", daemon=True)

    def start(self) -> BackgroundBuild:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.write_text("")
        self._thread.start()
        return self

    def _run(self) -> None:
        for step in self.steps:
            with self._lock:
                if self._stopping:
                    self.results[step.name] = -signal.SIGTERM
                    continue
                with self.log.open("a") as out:
                    begin = out.tell()
                    out.write(f"[background {time.strftime('%H:%M:%S')}] {step.name}: ")
                    out.write(f"{' '.join(step.argv)}\n")
                    out.flush()
                    # Its own session, so stop() ends the step's whole process tree
                    # (go build's compilers too) by one process-group id.
                    process = subprocess.Popen(
                        ["nice", "-n", "19", *step.argv],
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                self._process = process
                self.started[step.name] = time.monotonic()
            status = process.wait()
            with self.log.open("a") as out:
                out.write(f"[background {time.strftime('%H:%M:%S')}] {step.name}: exit {status}\n")
                self._spans[step.name] = (begin, out.tell())
            with self._lock:  # last: `wait` returns once the result is in
                self.results[step.name] = status
                self._process = None

    def running(self) -> str | None:
        """The step that runs now, if any."""
        with self._lock:
            running = [s.name for s in self.steps if s.name in self.started]
            return next((name for name in running if name not in self.results), None)

    def last_line(self) -> str:
        """The log's last line (what the running step said last), or ``""``."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""

    def tail(self, name: str, lines: int = 15) -> str:
        """The last ``lines`` the finished step ``name`` wrote to the log."""
        begin, end = self._spans.get(name, (0, 0))
        try:
            with self.log.open("rb") as log:
                log.seek(begin)
                text = log.read(end - begin).decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait(
        self,
        name: str,
        say: Callable[[str], None],
        every: float = 30.0,
        quiet: float = 2.0,
        poll: float = 0.2,
    ) -> float:
        """Wait until step ``name`` is done; seconds waited. Raises `BuildStepError` if it failed.

        Says that it waits once that took ``quiet`` seconds (a cached step ends sooner),
        then every ``every`` seconds how far the step got. A name that is not one of the
        steps (nothing needed building) returns at once.
        """
        if name not in {step.name for step in self.steps}:
            return 0.0
        began = time.monotonic()
        announced, next_report = False, began + every
        while name not in self.results:
            time.sleep(poll)
            now = time.monotonic()
            if not announced and now >= began + quiet:
                say(f"waiting for the background build of {name} (log {self.log})")
                announced = True
            elif announced and now >= next_report and name not in self.results:
                which = self.running()
                if which == name:
                    say(
                        f"   still building {name} ({now - self.started[name]:.0f} s so far;"
                        f" it last said: {self.last_line()[:160]})"
                    )
                else:
                    say(f"   still waiting for {name}: {which} builds first")
                next_report += every
        status = self.results[name]
        if status != 0:
            raise BuildStepError(
                f"the background build of {name} failed (exit {status}); its log"
                f" {self.log} ends:\n{self.tail(name)}"
            )
        return time.monotonic() - began

    def stop(self) -> list[str]:
        """End the running step's process group and skip the rest; the steps cut short."""
        with self._lock:
            self._stopping = True
            process = self._process
            cut = [s.name for s in self.steps if s.name not in self.results]
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        return cut

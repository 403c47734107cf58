"""The progress line of a run: elapsed time, each load's operations and errors, the fault
steps done. A rich progress bar on a terminal when rich is installed (the rdbss command's own
dependency), else one rewritten plain line on a terminal, and a line per second when the stream
is not a terminal (a log)."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TextIO

from rdbss.experiment.faults import StepResult
from rdbss.experiment.load import Load

PROGRESS_INTERVAL_S = 0.5


class Progress:
    """A progress line on ``stream`` while the load runs: a rich progress bar on a terminal
    when rich is installed (the rdbss command's own dependency), else one rewritten plain line
    on a terminal, and a line per second when the stream is not a terminal (a log)."""

    def __init__(self, stream: TextIO, loads: list[Load], steps: list[StepResult], total: float):
        self.stream = stream
        self.loads = loads
        self.steps = steps
        self.total = total
        self.tty = stream.isatty()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self.t0 = 0.0

    def line(self, now: float) -> str:
        parts = [f"t={min(now - self.t0, self.total):5.1f}/{self.total:g} s"]
        parts += self.counts()
        return "  ".join(parts)

    def counts(self) -> list[str]:
        parts = []
        for load in self.loads:
            ops, errors = load.ops_done()
            parts.append(f"{load.spec.name}: {ops} ops, {errors} errors")
        done = sum(1 for s in self.steps if s.at is not None)
        parts.append(f"faults {done}/{len(self.steps)}")
        return parts

    def _run(self) -> None:
        if self.tty:
            with contextlib.suppress(ImportError):
                self._run_rich()
                return
        interval = PROGRESS_INTERVAL_S if self.tty else 1.0
        while not self.stop.wait(interval):
            text = self.line(time.monotonic())
            self.stream.write(f"\r{text}\x1b[K" if self.tty else text + "\n")
            self.stream.flush()

    def _run_rich(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (
            TextColumn("load"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[counts]}"),
        )
        with Progress(*columns, console=Console(file=self.stream), transient=True) as bar:
            task = bar.add_task("load", total=self.total, counts="")
            while not self.stop.wait(PROGRESS_INTERVAL_S):
                done = min(time.monotonic() - self.t0, self.total)
                bar.update(task, completed=done, counts="  ".join(self.counts()))

    def start(self, t0: float) -> None:
        self.t0 = t0
        self.thread.start()

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(2.0)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

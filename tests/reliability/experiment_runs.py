"""Running ``python -m rdbss.experiment`` from a test: a subprocess with a deadline, in the
checkout, with no stdin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 90.0


def experiment_cli(*args: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rdbss.experiment", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
        cwd=ROOT,
    )


def run_experiment(path: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return experiment_cli("run", str(path), "--out", str(out), *extra)

"""``python -m benchmarks NAME ARGS`` runs one benchmark as ``python -m benchmarks.NAME ARGS``
would, and refuses an unknown name with the list of names (no benchmark is run here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_named_benchmark_gets_its_own_arguments() -> None:
    done = _run("peers", "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: python -m benchmarks.peers" in done.stdout
    assert "--rounds" in done.stdout


def test_an_unknown_benchmark_is_refused_with_the_names() -> None:
    done = _run("no-such-bench")
    assert done.returncode == 2
    assert "no benchmark 'no-such-bench'" in done.stderr
    assert "peers" in done.stderr and "floor" in done.stderr and "mount" in done.stderr
    assert "common" not in done.stderr

"""What the protocol benchmarks share: repeats, a median timer and the table they print."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

REPEATS = 3


def median_seconds(fn: Callable[[int], None]) -> float:
    """The median wall time of ``fn(i)`` over REPEATS runs."""
    times = []
    for i in range(REPEATS):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timed(times: list[float], fn: Callable[[int], None], i: int) -> None:
    """Call ``fn(i)`` and append how long it took to ``times`` (for sides that alternate)."""
    t0 = time.perf_counter()
    fn(i)
    times.append(time.perf_counter() - t0)


def alternating(
    ours: Callable[[int], None], theirs: Callable[[int], None], warm_up: int | None = None
) -> tuple[float, float]:
    """Median wall times of ``ours(i)`` and ``theirs(i)`` over REPEATS rounds, one of each in
    turn (a change in the machine's load hits both sides alike), after one warm-up call of
    each with ``warm_up`` when given."""
    if warm_up is not None:
        ours(warm_up)
        theirs(warm_up)
    a: list[float] = []
    b: list[float] = []
    for i in range(REPEATS):
        timed(a, ours, i)
        timed(b, theirs, i)
    return statistics.median(a), statistics.median(b)


def render(rows: list[tuple[str, float, float]], direct: str = "direct") -> str:
    """Rows of (operation, rdbss MiB/s, direct MiB/s) with their ratio."""
    head = f"{direct} MiB/s"
    width = max(13, len(head))
    first = max([18, *(len(name) for name, _, _ in rows)])
    lines = [f"{'operation':<{first}} {'rdbss MiB/s':>12} {head:>{width}} {'ratio':>6}"]
    for name, ours, base in rows:
        lines.append(f"{name:<{first}} {ours:>12.1f} {base:>{width}.1f} {ours / base:>6.2f}")
    return "\n".join(lines)


def quantile(times: list[float], q: float) -> float:
    """The ``q`` quantile of a sample (nearest rank below)."""
    ordered = sorted(times)
    return ordered[int(q * (len(ordered) - 1))]

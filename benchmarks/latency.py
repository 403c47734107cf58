"""One-at-a-time latency through the daemon (local mini-redirector) against direct os calls on
the same files, measured in the same run: stat (create + query + close) and a 4 KiB read on an
open handle. Prints p50/p99 and the ratio to the direct baseline."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from rdbss.testing.daemon import running_daemon

BLOCK = 4096


@dataclass
class Row:
    name: str
    p50_us: float
    p99_us: float
    base_p50_us: float
    base_p99_us: float

    @property
    def ratio_p50(self) -> float:
        return self.p50_us / self.base_p50_us


def sample(fn: Callable[[int], object], n: int) -> tuple[float, float]:
    for i in range(min(200, n)):  # warm-up
        fn(i)
    times = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        fn(i)
        times.append(time.perf_counter_ns() - t0)
    times.sort()
    return statistics.median(times) / 1000, times[int(len(times) * 0.99)] / 1000


def run(n: int = 5000) -> list[Row]:
    rows = []
    with running_daemon() as d:
        path = d.share_dir / "bench.bin"
        path.write_bytes(os.urandom(64 << 20))
        unc = d.share + r"\bench.bin"
        with d.client() as c:
            p50, p99 = sample(lambda i: c.stat(unc), n)
            b50, b99 = sample(lambda i: os.stat(path), n)
            rows.append(Row("stat (open+query+close)", p50, p99, b50, b99))
            handle = c.create(unc)
            blocks = (64 << 20) // BLOCK
            p50, p99 = sample(lambda i: c.read_handle(handle.fobx, (i % blocks) * BLOCK, BLOCK), n)
            fd = os.open(path, os.O_RDONLY)
            try:
                b50, b99 = sample(lambda i: os.pread(fd, BLOCK, (i % blocks) * BLOCK), n)
            finally:
                os.close(fd)
            c.close_handle(handle.fobx)
            rows.append(Row("read 4 KiB on an open handle", p50, p99, b50, b99))
    return rows


def render(rows: list[Row]) -> str:
    out = [
        f"{'operation':<30} {'rdbss p50':>10} {'p99':>9} {'direct p50':>11} {'p99':>8} "
        f"{'ratio p50':>10}"
    ]
    for r in rows:
        out.append(
            f"{r.name:<30} {r.p50_us:>8.1f}us {r.p99_us:>7.1f}us {r.base_p50_us:>9.2f}us "
            f"{r.base_p99_us:>6.2f}us {r.ratio_p50:>9.0f}x"
        )
    return "\n".join(out)

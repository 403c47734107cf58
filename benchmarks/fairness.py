"""Another client's latency while one client floods the daemon: the p50/p99/max of one read
at a time (4 KiB, a client of its own) on an idle daemon (the baseline, same run), beside a
client that keeps 2,000 reads of 128 KiB in flight (reading its answers), and beside one that
sends 2,000 reads and never reads the answers; the core's RSS growth with the latter.
``python -m benchmarks.fairness [SAMPLES]``. Not a test."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import threading
import time

from benchmarks.common import quantile
from rdbss.aio import AsyncClient
from rdbss.testing.daemon import Daemon, UnreadingClient, rss_bytes, running_daemon

IN_FLIGHT = 2000
BIG = 128 << 10


def _latencies(d: Daemon, samples: int) -> list[float]:
    out = []
    with d.client(timeout=30.0) as c:
        h = c.create(d.share + r"\small.bin")
        for _ in range(samples):
            start = time.perf_counter()
            c.read_handle(h.fobx, 0, 4096)
            out.append(time.perf_counter() - start)
        c.close_handle(h.fobx)
    return out


def _flood_reading(d: Daemon, stop: threading.Event, started: threading.Event) -> None:
    async def main() -> None:
        async with AsyncClient(d.runtime_dir, timeout=60.0, shared_memory=False) as c:
            h = await c.create(d.share + r"\big.bin")

            async def one() -> None:
                while not stop.is_set():
                    try:
                        await c.read_handle(h.fobx, 0, BIG)
                    except OSError:  # past a limit (named status): ask again a moment later
                        await asyncio.sleep(0.01)

            tasks = [asyncio.ensure_future(one()) for _ in range(IN_FLIGHT)]
            await asyncio.sleep(1.0)
            started.set()
            await asyncio.gather(*tasks)

    asyncio.run(main())


def run(samples: int = 2000) -> tuple[list[tuple[str, list[float]]], float]:
    rows = []
    with running_daemon() as d:
        (d.share_dir / "small.bin").write_bytes(os.urandom(4096))
        (d.share_dir / "big.bin").write_bytes(os.urandom(BIG))
        _latencies(d, 200)  # warm up
        rows.append(("idle daemon (baseline)", _latencies(d, samples)))
        stop, started = threading.Event(), threading.Event()
        flood = threading.Thread(target=_flood_reading, args=(d, stop, started))
        flood.start()
        started.wait(60)
        try:
            rows.append((f"beside {IN_FLIGHT} reads of 128 KiB in flight", _latencies(d, samples)))
        finally:
            stop.set()
            flood.join(120)
        core = d.processes()["core"]
        idle = rss_bytes(core)
        unreading = UnreadingClient(d.runtime_dir)
        try:
            unreading.flood(unreading.open(d.share + r"\big.bin"), IN_FLIGHT, BIG)
            rows.append((f"beside {IN_FLIGHT} reads never read", _latencies(d, samples)))
            grown = (rss_bytes(core) - idle) / (1 << 20)
        finally:
            unreading.close()
    return rows, grown


def render(rows: list[tuple[str, list[float]]], grown: float) -> str:
    base_p99 = quantile(rows[0][1], 0.99)
    head = f"{'one 4 KiB read at a time (local)':<44}{'p50':>9}{'p99':>9}{'max':>9}{'p99/idle':>10}"
    out = [head]
    for what, times in rows:
        p99 = quantile(times, 0.99)
        out.append(
            f"{what:<44}{statistics.median(times) * 1e3:>7.2f}ms{p99 * 1e3:>7.2f}ms"
            f"{max(times) * 1e3:>7.1f}ms{p99 / base_p99:>9.1f}x"
        )
    out.append(f"core RSS growth beside the client that never reads: {grown:.0f} MiB")
    return "\n".join(out)


if __name__ == "__main__":
    print(render(*run(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)))

"""CPU per pipelined request, per process: 4 KiB reads, 64 in flight through the asyncio client,
with the user + system time of every thread of the core, the mini-redirector, the connection
manager and this client process read from /proc before and after. The baseline is os.pread of
the same blocks in the same run (its CPU per read). Not a test.

    python -m benchmarks.cpu [SECONDS]
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from rdbss.aio import AsyncClient
from rdbss.testing.daemon import running_daemon

BLOCK = 4096
FILE_SIZE = 16 << 20
IN_FLIGHT = 64
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of every thread of ``pid`` (from /proc/PID/task/*/stat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # a thread that ended meanwhile
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


def run(seconds: float = 4.0) -> tuple[float, dict[str, float], float]:
    """(reads per second, CPU microseconds per read by process, os.pread's microseconds)."""
    with running_daemon() as d:
        path = d.share_dir / "cpu.bin"
        path.write_bytes(os.urandom(FILE_SIZE))
        blocks = FILE_SIZE // BLOCK
        procs = {**d.processes(), "client": os.getpid()}

        async def reads() -> tuple[int, float, dict[str, float]]:
            async with AsyncClient(d.runtime_dir) as c:
                h = await c.create(d.share + r"\cpu.bin")
                done = 0
                stop = 0.0

                async def worker(k: int) -> None:
                    nonlocal done
                    i = k
                    while time.perf_counter() < stop:
                        await c.read_handle(h.fobx, (i % blocks) * BLOCK, BLOCK)
                        i += IN_FLIGHT
                        done += 1

                stop = time.perf_counter() + 1.0  # warm-up
                await asyncio.gather(*(worker(k) for k in range(IN_FLIGHT)))
                before = {name: cpu_seconds(pid) for name, pid in procs.items()}
                done = 0
                t0 = time.perf_counter()
                stop = t0 + seconds
                await asyncio.gather(*(worker(k) for k in range(IN_FLIGHT)))
                wall = time.perf_counter() - t0
                used = {name: cpu_seconds(pid) - before[name] for name, pid in procs.items()}
                await c.close_handle(h.fobx)
                return done, wall, used

        done, wall, used = asyncio.run(reads())
        per_read = {name: used[name] / done * 1e6 for name in used}
        fd = os.open(path, os.O_RDONLY)
        try:
            t0 = time.process_time()
            for i in range(100_000):
                os.pread(fd, BLOCK, (i % blocks) * BLOCK)
            direct = (time.process_time() - t0) / 100_000 * 1e6
        finally:
            os.close(fd)
    return done / wall, per_read, direct


def render(rate: float, per_read: dict[str, float], direct: float) -> str:
    total = sum(per_read.values())
    parts = ", ".join(f"{name} {us:.1f}" for name, us in per_read.items() if us >= 0.05)
    return (
        f"CPU per 4 KiB read, {IN_FLIGHT} in flight ({rate:.0f} reads/s): {total:.1f} us "
        f"across the processes ({parts}); os.pread {direct:.2f} us"
    )


if __name__ == "__main__":
    print(render(*run(float(sys.argv[1]) if len(sys.argv) > 1 else 4.0)))

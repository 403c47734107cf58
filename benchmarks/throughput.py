"""Throughput with many requests in flight: 4 KiB reads on one handle through the asyncio
client (64 in flight) against os.pread on the same file in the same run. Not a test."""

from __future__ import annotations

import asyncio
import os
import time

from rdbss.aio import AsyncClient
from rdbss.testing.daemon import running_daemon

BLOCK = 4096
FILE_SIZE = 64 << 20


def run(seconds: float = 3.0, in_flight: int = 64) -> list[tuple[str, float, float]]:
    """Rows of (operation, rdbss ops/s, direct ops/s)."""
    with running_daemon() as d:
        path = d.share_dir / "tput.bin"
        path.write_bytes(os.urandom(FILE_SIZE))
        blocks = FILE_SIZE // BLOCK

        async def reads() -> float:
            async with AsyncClient(d.runtime_dir) as c:
                h = await c.create(d.share + r"\tput.bin")
                done = 0
                stop = time.perf_counter() + seconds

                async def worker(k: int) -> None:
                    nonlocal done
                    i = k
                    while time.perf_counter() < stop:
                        await c.read_handle(h.fobx, (i % blocks) * BLOCK, BLOCK)
                        done += 1
                        i += in_flight

                t0 = time.perf_counter()
                await asyncio.gather(*(worker(k) for k in range(in_flight)))
                elapsed = time.perf_counter() - t0
                await c.close_handle(h.fobx)
                return done / elapsed

        rdbss_ops = asyncio.run(reads())
        fd = os.open(path, os.O_RDONLY)
        try:
            n = 0
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                os.pread(fd, BLOCK, (n % blocks) * BLOCK)
                n += 1
            direct_ops = n / (time.perf_counter() - t0)
        finally:
            os.close(fd)
    return [(f"read 4 KiB, {in_flight} in flight (aio)", rdbss_ops, direct_ops)]

"""Sequential large reads and writes through the local mini-redirector, through the sockets and
through the shared-memory data path (rdbss.shm), against os.preadv into a buffer of the same
size on the same page-cached file (writes: os.pwrite of the same chunks into a file of the same
folder) in the same run. Each rdbss figure is a client's second pass (steady state: the first
makes the client's arena and touches its pages for the first time, as the direct side's buffer
is touched before it is timed). Not a test."""

from __future__ import annotations

import asyncio
import os
import time

from rdbss.aio import AsyncClient
from rdbss.client import Client
from rdbss.testing.daemon import running_daemon
from rdbss.wire import Access, CreateDisposition

MIB = 1 << 20


def _direct(path: str, size: int, chunk: int) -> float:
    buffer = memoryview(bytearray(chunk))
    fd = os.open(path, os.O_RDONLY)
    try:
        t0 = time.perf_counter()
        for offset in range(0, size, chunk):
            os.preadv(fd, [buffer], offset)
        return size / (time.perf_counter() - t0)
    finally:
        os.close(fd)


def _direct_write(path: str, data: memoryview, chunk: int) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)  # overwrites in place, as rdbss
    try:
        t0 = time.perf_counter()
        for offset in range(0, len(data), chunk):
            os.pwrite(fd, data[offset : offset + chunk], offset)
        return len(data) / (time.perf_counter() - t0)
    finally:
        os.close(fd)


def run(size_mib: int = 256, in_flight: int = 8) -> list[tuple[str, float, float]]:
    """Rows of (operation, rdbss MB/s, direct MB/s)."""
    size = size_mib * MIB
    rows = []
    with running_daemon() as d:
        path = d.share_dir / "seq.bin"
        with open(path, "wb") as f:
            for _ in range(size // (16 * MIB)):
                f.write(os.urandom(16 * MIB))
        _direct(str(path), size, 4 * MIB)  # warm the page cache

        async def aio(chunk: int, shared: bool) -> float:
            async with AsyncClient(d.runtime_dir, shared_memory=shared) as c:
                h = await c.create(d.share + r"\seq.bin")
                out = memoryview(bytearray(size))
                gate = asyncio.Semaphore(in_flight)

                async def one(offset: int) -> None:
                    async with gate:
                        await c.readinto(h.fobx, offset, out[offset : offset + chunk])

                for _ in range(2):  # the second pass is timed
                    t0 = time.perf_counter()
                    await asyncio.gather(*(one(o) for o in range(0, size, chunk)))
                    rate = size / (time.perf_counter() - t0)
                await c.close_handle(h.fobx)
                return rate

        async def views(chunk: int) -> float:
            async with AsyncClient(d.runtime_dir) as c:
                h = await c.create(d.share + r"\seq.bin")
                gate = asyncio.Semaphore(in_flight)
                got = 0

                async def one(offset: int) -> None:
                    nonlocal got
                    async with gate, c.read_view(h.fobx, offset, chunk) as view:
                        got += len(view)

                for _ in range(2):  # the second pass is timed
                    got = 0
                    t0 = time.perf_counter()
                    await asyncio.gather(*(one(o) for o in range(0, size, chunk)))
                    rate = size / (time.perf_counter() - t0)
                    assert got == size
                await c.close_handle(h.fobx)
                return rate

        for chunk, shared, label in (
            (MIB, False, f"1 MiB reads, sockets, {in_flight} in flight"),
            (MIB, True, f"1 MiB reads, shared memory, {in_flight} in flight"),
            (4 * MIB, True, f"4 MiB reads, shared memory, {in_flight} in flight"),
        ):
            mine = asyncio.run(aio(chunk, shared))
            rows.append((label, mine / 1e6, _direct(str(path), size, chunk) / 1e6))
        mine = asyncio.run(views(4 * MIB))
        label = f"4 MiB zero-copy views, shared memory, {in_flight} in flight"
        rows.append((label, mine / 1e6, _direct(str(path), size, 4 * MIB) / 1e6))
        with Client(d.runtime_dir) as c:
            buffer = bytearray(4 * MIB)
            for _ in range(2):  # the second pass is timed
                with c.open(d.share + r"\seq.bin", "rb") as f:
                    t0 = time.perf_counter()
                    while f.readinto(buffer):
                        pass
                    mine = size / (time.perf_counter() - t0)
        rows.append(
            (
                "4 MiB readinto, blocking file object",
                mine / 1e6,
                _direct(str(path), size, 4 * MIB) / 1e6,
            )
        )
        data = memoryview(path.read_bytes())
        direct_path = str(d.share_dir / "direct-written.bin")

        def blocking_writes(chunk: int, shared: bool) -> float:
            with Client(d.runtime_dir, shared_memory=shared) as c:
                fobx = c.create(
                    d.share + r"\written.bin",
                    access=Access.GENERIC_WRITE,
                    disposition=CreateDisposition.FILE_OVERWRITE_IF,
                ).fobx
                for _ in range(2):  # the second pass is timed: the first allocates pages
                    t0 = time.perf_counter()
                    for offset in range(0, size, chunk):
                        c.write_handle(fobx, offset, data[offset : offset + chunk])
                    rate = size / (time.perf_counter() - t0)
                c.close_handle(fobx)
                return rate

        for chunk, shared, label in (
            (MIB, False, "1 MiB writes one at a time, sockets"),
            (MIB, True, "1 MiB writes one at a time, shared memory"),
            (4 * MIB, True, "4 MiB writes one at a time, shared memory"),
        ):
            _direct_write(direct_path, data, chunk)  # as above: warm first
            direct = _direct_write(direct_path, data, chunk)
            rows.append((label, blocking_writes(chunk, shared) / 1e6, direct / 1e6))
    return rows

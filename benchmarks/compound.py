"""Compound requests (many operations in one message) on the local mini-redirector against
direct os calls on the same files in the same run: 4 KiB reads of one open file
(``Client.read_many``) and stats of many paths (``Client.stat_many``: create + related close
each). Rows of (operation, rdbss ops/s, direct ops/s). Not a test."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from rdbss.testing.daemon import running_daemon

BLOCK = 4096
FILE_SIZE = 64 << 20
READS_PER_CALL = 4096  # Client.compound cuts these into compounds of 1024, 4 in flight
STATS_PER_CALL = 2048
N_FILES = 512


def _rate(fn: Callable[[int], int], seconds: float) -> float:
    fn(0)  # warm-up
    done, i = 0, 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        i += 1
        done += fn(i)
    return done / (time.perf_counter() - t0)


def run(seconds: float = 3.0) -> list[tuple[str, float, float]]:
    rows = []
    with running_daemon() as d:
        path = d.share_dir / "compound.bin"
        path.write_bytes(os.urandom(FILE_SIZE))
        blocks = FILE_SIZE // BLOCK
        names = [f"f{k:04d}.txt" for k in range(N_FILES)]
        for name in names:
            (d.share_dir / name).write_bytes(b"x" * 100)
        with d.client() as c:
            h = c.create(d.share + r"\compound.bin")

            def reads(i: int) -> int:
                base = i * READS_PER_CALL
                ranges = [((base + k) % blocks * BLOCK, BLOCK) for k in range(READS_PER_CALL)]
                return len(c.read_many(h.fobx, ranges))

            fd = os.open(path, os.O_RDONLY)
            try:

                def preads(i: int) -> int:
                    base = i * READS_PER_CALL
                    for k in range(READS_PER_CALL):
                        os.pread(fd, BLOCK, (base + k) % blocks * BLOCK)
                    return READS_PER_CALL

                rows.append(
                    (
                        f"read 4 KiB, compound x{READS_PER_CALL}",
                        _rate(reads, seconds),
                        _rate(preads, seconds),
                    )
                )
            finally:
                os.close(fd)
            c.close_handle(h.fobx)
            uncs = [d.share + "\\" + names[k % N_FILES] for k in range(STATS_PER_CALL)]
            hosts = [str(d.share_dir / names[k % N_FILES]) for k in range(STATS_PER_CALL)]

            def stats(i: int) -> int:
                infos = c.stat_many(uncs)
                assert not any(isinstance(x, Exception) for x in infos)
                return len(infos)

            def os_stats(i: int) -> int:
                for host in hosts:
                    os.stat(host)
                return len(hosts)

            rows.append(
                (
                    f"stat, compound x{STATS_PER_CALL}",
                    _rate(stats, seconds),
                    _rate(os_stats, seconds),
                )
            )
    return rows

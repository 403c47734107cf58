"""Read leases (docs/caching.md, Read leases): a read of a leased handle that hits the client's
cache, against the same read as a round trip to the daemon on a handle without a lease, in the
same run on the same file. The daemon's local mini-redirector has ``caching = "exclusive"``, so
the round trip is answered from the core's own read cache: the difference is the message.
Sides alternate in batches; every byte read is checked. Prints p50/p99 per read and the speed-up
of the hit (round trip p50 / hit p50). Not a test.

    python -m benchmarks lease [READS]
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from benchmarks.common import quantile
from rdbss.client import Client
from rdbss.testing.daemon import running_daemon
from rdbss.wire import Access

SIZES = (4 << 10, 64 << 10)
BATCH = 100


def _times(read: Callable[[], bytes], want: bytes, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        data = read()
        out.append(time.perf_counter() - t0)
        if data != want:
            raise AssertionError("a read returned other bytes than the file holds")
    return out


def run(reads: int = 2000) -> list[tuple[str, float, float, float, float]]:
    """Rows of (read, hit p50 us, hit p99 us, round trip p50 us, round trip p99 us)."""
    rows = []
    extra = "close_delay = 0\nwrite_behind = 0"
    with running_daemon(daemon_extra=extra, local_extra='caching = "exclusive"') as d:
        data = os.urandom(1 << 20)
        (d.share_dir / "lease.bin").write_bytes(data)
        unc = d.share + r"\lease.bin"
        with Client(d.runtime_dir, timeout=60) as c:
            leased = c.create(unc, access=Access.GENERIC_READ, lease=True)
            plain = c.create(unc, access=Access.GENERIC_READ)
            if not c.leased(leased.fobx):
                raise SystemExit("no lease granted: is /dev/shm writable?")
            for size in SIZES:
                want = data[:size]
                c.read_handle(leased.fobx, 0, size)  # fills the cache
                c.read_handle(plain.fobx, 0, size)  # fills the core's cache
                hit: list[float] = []
                trip: list[float] = []
                for _ in range(max(1, reads // BATCH)):
                    hit += _times(lambda s=size: c.read_handle(leased.fobx, 0, s), want, BATCH)
                    trip += _times(lambda s=size: c.read_handle(plain.fobx, 0, s), want, BATCH)
                stats = c.lease_stats
                if stats is None or stats.hits < len(hit):
                    raise AssertionError("leased reads made round trips")
                us = [1e6 * quantile(t, q) for t in (hit, trip) for q in (0.5, 0.99)]
                rows.append((f"read {size >> 10} KiB of an open handle", *us))
            c.close_handle(leased.fobx)
            c.close_handle(plain.fobx)
    return rows


def render(rows: list[tuple[str, float, float, float, float]]) -> str:
    first = max(34, *(len(r[0]) for r in rows))
    head = ["hit p50", "p99", "trip p50", "p99", "speed-up"]
    lines = [f"{'local, caching = exclusive':<{first}}" + "".join(f"{h:>10}" for h in head)]
    for name, *us in rows:
        cells = [f"{v:>8.1f}us" for v in us] + [f"{us[2] / us[0]:>9.1f}x"]
        lines.append(f"{name:<{first}}" + "".join(cells))
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(run(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)))

"""Read latency on an established connection, with and without 10 concurrent connection
set-ups that each take 2 s, measured in the same run. The slow set-ups are on other SrvCalls of
the same mini-redirector process (a ``faulty`` local one whose MRxCreateSrvCall is delayed),
which is the hard case: only its per-connection workers keep them apart. Not a test.

    python -m benchmarks.setup_isolation
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from rdbss.testing.backend import faulty_config
from rdbss.testing.daemon import running_daemon

ROUNDS = 5
SETUPS = 10
DELAY_MS = 2000


def _percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples) * 1e6, samples[int(len(samples) * 0.99)] * 1e6


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        folder = Path(tmp) / "iso"
        folder.mkdir()
        (folder / "f.bin").write_bytes(os.urandom(1 << 20))
        aliases = ", ".join(f'"slow{i}"' for i in range(ROUNDS * SETUPS))
        config = faulty_config(folder).replace(
            'server = "flaky"', f'server = "fast"\naliases = [{aliases}]'
        )
        with running_daemon(config) as d, d.client() as c:
            handle = c.create(r"\\fast\data\f.bin")
            c.set_faults(
                "flaky", [{"routine": "MRxCreateSrvCall", "action": "delay", "delay_ms": DELAY_MS}]
            )

            def read() -> float:
                t0 = time.perf_counter()
                c.read_handle(handle.fobx, 0, 4096)
                return time.perf_counter() - t0

            for _ in range(300):
                read()
            quiet = [read() for _ in range(3000)]
            busy: list[float] = []
            for r in range(ROUNDS):
                threads = []
                for i in range(SETUPS):
                    name = rf"\\slow{r * SETUPS + i}\data"

                    def setup(unc: str = name) -> None:
                        with d.client(timeout=30) as other:
                            other.stat(unc)

                    threads.append(threading.Thread(target=setup))
                for t in threads:
                    t.start()
                time.sleep(0.1)  # the set-ups are under way
                end = time.monotonic() + DELAY_MS / 1000 - 0.3
                while time.monotonic() < end:
                    busy.append(read())
                for t in threads:
                    t.join(30)
            c.close_handle(handle.fobx)
    q50, q99 = _percentiles(quiet)
    b50, b99 = _percentiles(busy)
    return {
        "quiet_p50_us": q50,
        "quiet_p99_us": q99,
        "busy_p50_us": b50,
        "busy_p99_us": b99,
        "busy_samples": len(busy),
        "p99_ratio": b99 / q99,
    }


def main() -> int:
    r = run()
    print(
        f"4 KiB read on an established connection, one at a time ({sys.platform}, "
        f"{os.cpu_count()} cpus)"
    )
    print(
        f"  without set-ups:                      p50 {r['quiet_p50_us']:7.0f} us  "
        f"p99 {r['quiet_p99_us']:7.0f} us"
    )
    print(
        f"  during {SETUPS} concurrent {DELAY_MS / 1000:.0f} s set-ups:  p50 "
        f"{r['busy_p50_us']:7.0f} us  p99 {r['busy_p99_us']:7.0f} us  "
        f"({r['busy_samples']:.0f} samples)"
    )
    print(f"  p99 ratio busy/quiet: {r['p99_ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

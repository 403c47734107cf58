"""Run the benchmark suite and print a table: ``python -m benchmarks [N]``.
Every figure is paired with its baseline measured in the same run; nothing here is a test."""

from __future__ import annotations

import os
import platform
import sys

from benchmarks import latency


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}"
        f", {n} samples each, one request at a time"
    )
    print(latency.render(latency.run(n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

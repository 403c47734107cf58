"""Run the benchmark suite and print tables: ``python -m benchmarks [--quick] [--size MIB]``;
``python -m benchmarks mount [--quick] [sftp|smb|webdav]`` compares the FUSE mount with sshfs and
rclone mount (benchmarks/mount.py). Every figure is paired with its baseline measured in the same
run; nothing here is a test."""

from __future__ import annotations

import importlib
import os
import platform
import sys

from benchmarks import (
    client_link,
    common,
    compound,
    cpu,
    latency,
    memory,
    readahead,
    sequential,
    throughput,
)


def _rate_table(title: str, unit: str, rows: list[tuple[str, float, float]]) -> str:
    width = max(44, len(title), *(len(name) for name, _, _ in rows))
    cell = 10 + len(unit)
    out = [f"{title:<{width}} {'rdbss':>{cell}} {'direct':>{cell}} {'ratio':>7}"]
    for name, mine, base in rows:
        out.append(f"{name:<{width}} {mine:>9.0f} {unit} {base:>9.0f} {unit} {mine / base:>6.2f}x")
    return "\n".join(out)


def main() -> int:
    if sys.argv[1:2] == ["mount"]:
        from benchmarks import mount

        return mount.main(sys.argv[2:])
    quick = "--quick" in sys.argv
    n = 1000 if quick else 5000
    size = 16 if quick else 64
    if "--size" in sys.argv:  # MiB for the protocol tables, e.g. --size 256
        size = int(sys.argv[sys.argv.index("--size") + 1])
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python "
        f"{platform.python_version()}; each figure next to its baseline from the same run"
    )
    print()
    print(latency.render(latency.run(n)))
    print()
    seconds = 1.0 if quick else 3.0
    rows = throughput.run(seconds) + compound.run(seconds)
    print(_rate_table("operation (local)", "/s", rows))
    print(cpu.render(*cpu.run(seconds)))
    print()
    rows = sequential.run(64 if quick else 256)
    print(_rate_table("sequential (local, page cache)", "MB/s", rows))
    print()
    print(f"local: {size} MiB sequential through Client.open (sockets; read-ahead 0 = off)")
    print(common.render(readahead.run(size)))
    print()
    print(memory.render(memory.run()))
    print()
    print(client_link.render(client_link.run()))
    for proto in ("smb", "sftp", "webdav"):
        try:
            module = importlib.import_module(f"benchmarks.proto_{proto}")
        except ModuleNotFoundError:
            print(f"\n{proto}: no benchmark module")
            continue
        print()
        print(_rate_table(f"{proto}: {size} MiB sequential", "MiB/s", module.run(size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the benchmark suite and print tables: ``python -m benchmarks [--quick] [--size MIB]``.
``python -m benchmarks NAME [ARGS]`` runs one of the other benchmarks, as ``python -m
benchmarks.NAME [ARGS]`` would: ``peers`` (rdbss against sshfs, fsspec's SMBFileSystem and
webdav4), ``floor`` (against a bare 3-process ZeroMQ chain), ``mount`` (the FUSE mount against
sshfs and rclone mount), ``recovery``, ``fairness``, ``cpu``, ``memory``... Every figure is
paired with its baseline measured in the same run; nothing here is a test."""

from __future__ import annotations

import importlib
import os
import platform
import runpy
import sys
from pathlib import Path

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


def _names() -> list[str]:
    here = Path(__file__).parent
    return sorted(p.stem for p in here.glob("*.py") if not p.stem.startswith("_"))


def _run_one(name: str, argv: list[str]) -> int:
    """``python -m benchmarks NAME ARGS`` as ``python -m benchmarks.NAME ARGS``."""
    if name not in _names() or name == "common":
        print(
            f"python -m benchmarks: no benchmark {name!r}; one of: "
            + ", ".join(n for n in _names() if n != "common"),
            file=sys.stderr,
        )
        return 2
    sys.argv = [f"benchmarks.{name}", *argv]
    try:
        runpy.run_module(f"benchmarks.{name}", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def main() -> int:
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        return _run_one(sys.argv[1], sys.argv[2:])
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

"""A folder's listing over SFTP: rdbss (``Client.listdir`` and fsspec's ``ls(detail=True)``)
against sshfs.SSHFileSystem's ``ls(detail=True)`` on the same OpenSSH server, for folders of
several sizes; then the CPU each rdbss process spends per listing.

``peers`` times one listing per round, which a busy machine's noise swamps; here each round
lists once on every side, in turn, many rounds over, and the ratio is taken round by round
(sshfs's time / rdbss's: above 1, rdbss faster) before its median, so load that comes and
goes hits both sides of a ratio alike. The CPU figures (``/proc``, every thread of each
process: the client, the core, the SFTP mini-redirector) show where a listing's work is when
the machine is too busy for the times to (listings over 3 s at least). Not a test.

    python -m benchmarks listing [--rounds 40] [--sizes 100,1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.cpu import cpu_seconds
from rdbss.fsspec_fs import RdbssFileSystem
from rdbss.testing.backend import sftp_config
from rdbss.testing.daemon import running_daemon
from rdbss.testing.servers import SshServer

TIMEOUT_S = 120.0
#: the CPU figures come from listings over at least this long (/proc counts in clock ticks)
CPU_SECONDS = 3.0


def _fill(folder: Path, count: int) -> None:
    folder.mkdir()
    for i in range(count):
        (folder / f"f{i:05d}.bin").write_bytes(b"x" * (i % 100))


def _times(sides: dict[str, Callable[[], int]], count: int, rounds: int) -> dict[str, list[float]]:
    """Each side's seconds per round (two rounds first, not counted); every listing checked."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(rounds + 2):
        for name, fn in sides.items():
            t0 = time.perf_counter()
            got = fn()
            elapsed = time.perf_counter() - t0
            if got != count:
                raise AssertionError(f"{name}: {got} entries listed, not {count}")
            if r >= 2:
                times[name].append(elapsed)
    return times


def run(rounds: int, sizes: list[int]) -> str:
    import sshfs

    lines = [
        f"SFTP listing, {rounds} rounds, sides in turn; ms median (min-max), and the median of "
        "the round-by-round ratio sshfs / rdbss"
    ]
    with (
        tempfile.TemporaryDirectory(prefix="rdbss-listing-") as tmp,
        SshServer(Path(tmp) / "ssh") as srv,
    ):
        root = srv.root_dir / "bench"
        root.mkdir()
        for count in sizes:
            _fill(root / f"d{count}", count)
        peer: Any = sshfs.SSHFileSystem(srv.host, **srv.asyncssh_options())
        config = sftp_config(srv, {"bench": root}, timeout=TIMEOUT_S)
        with running_daemon(extra_config=config) as daemon, daemon.client(TIMEOUT_S) as client:
            ours = RdbssFileSystem(runtime_dir=daemon.runtime_dir, timeout=TIMEOUT_S)
            procs = {"client": os.getpid(), **daemon.processes()}
            for count in sizes:
                unc = rf"\\sshtest\bench\d{count}"

                def fsspec_ls(count: int = count) -> int:
                    ours.invalidate_cache()
                    return len(ours.ls(f"rdbss://sshtest/bench/d{count}", detail=True))

                sides: dict[str, Callable[[], int]] = {
                    "sshfs ls": lambda count=count: len(peer.ls(str(root / f"d{count}"))),
                    "rdbss fsspec ls": fsspec_ls,
                    "rdbss Client.listdir": lambda unc=unc: len(client.listdir(unc)),
                }
                times = _times(sides, count, rounds)
                base = times["sshfs ls"]
                lines.append(f"folder of {count}:")
                for name, mine in times.items():
                    cell = (
                        f"{statistics.median(mine) * 1000:8.2f} ms "
                        f"({min(mine) * 1000:.2f}-{max(mine) * 1000:.2f})"
                    )
                    ratio = statistics.median(b / m for b, m in zip(base, mine, strict=True))
                    tail = "" if name == "sshfs ls" else f"  {ratio:.2f}x"
                    lines.append(f"  {name:<22}{cell:>28}{tail}")
                before = {name: cpu_seconds(pid) for name, pid in procs.items()}
                listings, start = 0, time.perf_counter()
                while listings < rounds or time.perf_counter() - start < CPU_SECONDS:
                    client.listdir(unc)
                    listings += 1
                spent = {name: cpu_seconds(pid) - before[name] for name, pid in procs.items()}
                shown = ", ".join(
                    f"{name} {seconds / listings * 1000:.2f}"
                    for name, seconds in spent.items()
                    if seconds > 0
                )
                total = sum(spent.values()) / listings * 1000
                lines.append(f"  CPU ms per Client.listdir: {total:.2f} ({shown})")
            ours.close()
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.listing", description=__doc__)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--sizes", default="100,1000")
    args = parser.parse_args(argv)
    print(run(args.rounds, [int(s) for s in args.sizes.split(",")]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

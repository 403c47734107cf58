"""The core's attribute cache (rdbss/core/attrcache.py): stats of N files right after a listing
of their folder, one ``Client.stat`` at a time, with the cache (``attr_cache_entries`` at its
default) against without it (``attr_cache_entries = 0``), both under ``caching = "exclusive"``,
over the local and the SFTP (OpenSSH) mini-redirectors. The two daemons run side by side in
the same run, sides alternating, several rounds; medians with the spread, every size checked.

    python -m benchmarks attrs [--files N] [--rounds R] [--only local|sftp]

Not a test."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from rdbss.client import Client
from rdbss.testing.backend import sftp_config
from rdbss.testing.daemon import Daemon, running_daemon
from rdbss.testing.servers import SshServer

EXCLUSIVE = 'caching = "exclusive"'


@contextlib.contextmanager
def _daemons(proto: str, base: Path) -> Iterator[tuple[Daemon, Daemon, str, list[Path]]]:
    """A daemon with the cache and one without: (cached, uncached, the UNC name of the folder
    of files, where the server keeps that folder: one for both, or one each)."""
    with contextlib.ExitStack() as stack:
        if proto == "local":
            sides = [
                stack.enter_context(running_daemon(daemon_extra=d, local_extra=EXCLUSIVE))
                for d in ("", "attr_cache_entries = 0")
            ]
            folders = [d.share_dir / "bench" for d in sides]
            unc = r"\\local\data\bench"
        else:
            ssh = stack.enter_context(SshServer(base / "ssh"))
            folders = [ssh.root_dir / "bench"]
            table = sftp_config(ssh, {"bench": folders[0]}).replace(
                'kind = "sftp"\n', f'kind = "sftp"\n{EXCLUSIVE}\n'
            )
            unc = r"\\sshtest\bench"
            sides = [
                stack.enter_context(running_daemon(extra_config=table, daemon_extra=d))
                for d in ("", "attr_cache_entries = 0")
            ]
        for folder in folders:
            folder.mkdir()
        yield sides[0], sides[1], unc, folders


def _round(c: Client, unc: str, names: list[str], sizes: dict[str, int]) -> list[float]:
    """A listing of the folder, then a stat of each file: the stats' latencies (seconds)."""
    assert len(c.listdir(unc)) == len(names)
    times = []
    for name in names:
        t0 = time.perf_counter()
        info = c.stat(f"{unc}\\{name}")
        times.append(time.perf_counter() - t0)
        assert info.size == sizes[name], name
    return times


def measure(proto: str, files: int, rounds: int) -> dict[str, list[list[float]]]:
    with (
        tempfile.TemporaryDirectory(prefix="rdb-attrs-", dir="/tmp") as tmp,
        _daemons(proto, Path(tmp)) as (cached, uncached, unc, folders),
    ):
        names = [f"f{k:04d}.bin" for k in range(files)]
        sizes = {name: k % 997 for k, name in enumerate(names)}
        for folder in folders:
            for name in names:
                (folder / name).write_bytes(b"x" * sizes[name])
        out: dict[str, list[list[float]]] = {"cached": [], "uncached": []}
        with cached.client(timeout=60) as a, uncached.client(timeout=60) as b:
            _round(a, unc, names, sizes)  # warm-up: connections made, code paths hot
            _round(b, unc, names, sizes)
            for r in range(rounds):
                sides = [("cached", a), ("uncached", b)]
                for label, c in sides if r % 2 == 0 else sides[::-1]:
                    out[label].append(_round(c, unc, names, sizes))
        return out


def _rate(times: list[float]) -> float:
    return len(times) / sum(times)


def report(proto: str, files: int, result: dict[str, list[list[float]]]) -> list[str]:
    lines = []
    rates = {k: [_rate(t) for t in v] for k, v in result.items()}
    p50 = {k: statistics.median(x for t in v for x in t) * 1e6 for k, v in result.items()}
    for label in ("cached", "uncached"):
        r = rates[label]
        lines.append(
            f"{proto:<6} {label:<9} {statistics.median(r):>10,.0f}/s "
            f"({min(r):,.0f}-{max(r):,.0f})  p50 {p50[label]:>7.0f} us"
        )
    ratio = statistics.median(rates["cached"]) / statistics.median(rates["uncached"])
    faster = p50["uncached"] / p50["cached"]
    lines.append(
        f"{proto:<6} {files} stats after a listing, cached vs uncached: {ratio:.1f}x the rate, "
        f"p50 {faster:.1f}x shorter"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks attrs", description=__doc__)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=("local", "sftp"))
    args = parser.parse_args(argv)
    print(f"stat of {args.files} files after a listing, {args.rounds} rounds, medians (spread)")
    for proto in ("local", "sftp"):
        if args.only and proto != args.only:
            continue
        try:
            result = measure(proto, args.files, args.rounds)
        except OSError as exc:  # a server this host cannot run
            print(f"{proto}: skipped ({exc})", file=sys.stderr)
            continue
        print("\n".join(report(proto, args.files, result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

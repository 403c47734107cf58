"""Where one SFTP stat's time goes, by difference: the same stat measured with one more hop
each time, one at a time, medians over N, all in the same run on the same sshd.

Rows (each includes the ones above it):
- asyncssh LSTAT in-process (the coroutine awaited on the caller's own loop: sshfs's floor);
- the lookup rdbss makes (``alocate``: for a name in a sub-folder, realpath + stat of the
  parent + lstat, pipelined), same loop;
- both from another thread through the mini-redirector's loop thread (``LoopThread.run``: the
  worker -> loop -> worker hop);
- ``Client.stat`` on the local mini-redirector (client -> core -> mini-redirector process, the
  IPC floor, with a non-blocking mini-redirector: no worker hop);
- ``Client.stat`` through the SFTP mini-redirector, for a name at the share's top and in a
  sub-folder; a 4 KiB read on an open handle.

Then the same two SFTP stats again on a daemon whose processes time each hop (the
``hops_trace`` folder, loaded only here): the median of each segment, client send -> core ->
mini-redirector host -> worker -> event loop -> server answer -> worker -> answer posted -> core
-> client (on the direct path, ``MiniRdr.start_direct``, the event loop takes the request from
the host and posts the answer itself: no worker rows).

    python -m benchmarks hops [--count 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncssh

from rdbss.minirdrs.sftp.loop import LoopThread
from rdbss.testing.backend import sftp_config
from rdbss.testing.daemon import running_daemon
from rdbss.testing.servers import SshServer


def _median_us(fn: Callable[[], object], n: int) -> float:
    for _ in range(min(100, n)):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1000


async def _amedian_us(fn: Callable[[], Awaitable[object]], n: int) -> float:
    for _ in range(min(100, n)):
        await fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        await fn()
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1000


def _lookup(sftp: asyncssh.SFTPClient, folder: str, name: str) -> Callable[[], Awaitable[object]]:
    async def locate() -> object:
        return await asyncio.gather(
            sftp.realpath(folder), sftp.stat(folder), sftp.lstat(folder + "/" + name)
        )

    return locate


def run(count: int) -> tuple[list[tuple[str, float]], list[list[str]]]:
    rows: list[tuple[str, float]] = []
    with (
        tempfile.TemporaryDirectory(prefix="rdbss-hops-") as tmp,
        SshServer(Path(tmp) / "ssh") as srv,
    ):
        root = srv.root_dir / "bench"
        (root / "sub").mkdir(parents=True)
        (root / "top").write_bytes(b"x" * 4096)
        (root / "sub" / "f").write_bytes(b"x" * 4096)
        sub = str(root / "sub")
        options = srv.asyncssh_options()

        async def in_process() -> None:
            async with (
                asyncssh.connect(srv.host, **options) as conn,
                conn.start_sftp_client() as sftp,
            ):
                rows.append(
                    (
                        "asyncssh LSTAT, same loop",
                        await _amedian_us(lambda: sftp.lstat(sub + "/f"), count),
                    )
                )
                rows.append(
                    (
                        "rdbss lookup (3 pipelined), same loop",
                        await _amedian_us(_lookup(sftp, sub, "f"), count),
                    )
                )

        asyncio.run(in_process())

        loop = LoopThread("hops")
        holder: dict[str, object] = {}

        async def connect() -> None:
            conn = await asyncssh.connect(srv.host, **options)
            holder["conn"] = conn
            holder["sftp"] = await conn.start_sftp_client()

        loop.run(connect, 30.0)
        sftp = holder["sftp"]
        assert isinstance(sftp, asyncssh.SFTPClient)
        rows.append(
            (
                "asyncssh LSTAT, via LoopThread.run",
                _median_us(lambda: loop.run(lambda: sftp.lstat(sub + "/f"), 30.0), count),
            )
        )
        locate = _lookup(sftp, sub, "f")
        rows.append(
            ("rdbss lookup, via LoopThread.run", _median_us(lambda: loop.run(locate, 30.0), count))
        )

        async def disconnect() -> None:
            conn = holder["conn"]
            assert isinstance(conn, asyncssh.SSHClientConnection)
            conn.close()
            await conn.wait_closed()

        loop.run(disconnect, 30.0)
        loop.stop()

        config = sftp_config(srv, {"bench": root}, timeout=30.0)
        with running_daemon(extra_config=config) as daemon, daemon.client(timeout=30.0) as client:
            (daemon.share_dir / "top").write_bytes(b"x" * 4096)
            local = daemon.share + r"\top"
            rows.append(
                (
                    "Client.stat, local mini-redirector",
                    _median_us(lambda: client.stat(local), count),
                )
            )
            top = r"\\sshtest\bench\top"
            deep = r"\\sshtest\bench\sub\f"
            rows.append(
                ("Client.stat, SFTP, name at the top", _median_us(lambda: client.stat(top), count))
            )
            rows.append(
                (
                    "Client.stat, SFTP, name in a sub-folder",
                    _median_us(lambda: client.stat(deep), count),
                )
            )
            with client.open(deep, "rb", buffering=0) as f:

                def read() -> None:
                    f.seek(0)
                    f.read(4096)

                rows.append(
                    ("Client read of 4 KiB on an open handle, SFTP", _median_us(read, count))
                )
        tables = traced(srv, root, [top, deep], count)
    return rows, tables


#: the hops of one stat, in order (the names ``hops_trace`` records)
HOPS = [
    "client sends",
    "core receives the request",
    "core sends to the mini-redirector",
    "host I/O thread receives",
    "worker starts",
    "loop starts the coroutine",
    "server answered",
    "worker resumes",
    "answer posted",
    "host I/O thread forwards the answer",
    "core receives the answer",
    "core sends the answer",
    "client receives",
]


def segments(folder: Path) -> list[dict[str, float]]:
    """Each stat's segments (from one hop to the next, microseconds), from the events the
    processes wrote to ``folder``: a stat is what lies between "client sends" and "client
    receives"; in it, each hop is the first event of its name after the previous hop found (a
    hop a path does not pass, such as the worker on the direct path, is left out)."""
    events: list[tuple[int, str]] = []
    for path in folder.glob("ev-*.txt"):
        for line in path.read_text().splitlines():
            stamp, name = line.split(" ", 1)
            events.append((int(stamp), name))
    events.sort()
    stats: list[dict[str, float]] = []
    start: int | None = None
    for index, (_, name) in enumerate(events):
        if name == HOPS[0]:
            start = index
        elif name == HOPS[-1] and start is not None:
            window, found, at = events[start : index + 1], [], 0
            for hop in HOPS:
                seek = at
                while seek < len(window) and window[seek][1] != hop:
                    seek += 1
                if seek < len(window):
                    found.append((hop, window[seek][0]))
                    at = seek
            stats.append(
                {f"{a} -> {b}": (t1 - t0) / 1000 for (a, t0), (b, t1) in itertools.pairwise(found)}
            )
            start = None
    return stats


def traced(srv: SshServer, root: Path, paths: list[str], count: int) -> list[list[str]]:
    """Per path, the median of each segment over ``count`` stats on a traced daemon."""
    from benchmarks.hops_trace import sitecustomize as trace

    tables = []
    with tempfile.TemporaryDirectory(prefix="rdbss-hops-ev-") as out:
        saved = {key: os.environ.get(key) for key in ("PYTHONPATH", "RDBSS_HOPS_OUT")}
        here = str(Path(trace.__file__).parent)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, saved["PYTHONPATH"]) if p)
        os.environ["RDBSS_HOPS_OUT"] = out
        try:
            config = sftp_config(srv, {"bench": root}, timeout=30.0)
            with running_daemon(extra_config=config) as daemon:
                trace.install(out)
                with daemon.client(timeout=30.0) as client:
                    for path in paths:
                        for _ in range(min(100, count)):  # connected, share resolved
                            client.stat(path)
                        time.sleep(1.0)
                        for f in Path(out).glob("ev-*.txt"):
                            f.unlink()
                        for _ in range(count):
                            client.stat(path)
                        time.sleep(1.0)  # every process writes its events
                        stats = segments(Path(out))[-count:]
                        for f in Path(out).glob("ev-*.txt"):
                            f.unlink()
                        rows = [f"{'segment (' + path + ')':<72} {'p50 us':>8}"]
                        names = list(dict.fromkeys(name for stat in stats for name in stat))
                        for name in names:
                            us = statistics.median(stat[name] for stat in stats if name in stat)
                            rows.append(f"{name:<72} {us:>8.0f}")
                        total = statistics.median(sum(stat.values()) for stat in stats)
                        rows.append(f"{'total':<72} {total:>8.0f}")
                        tables.append(rows)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks hops", description=__doc__)
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args(argv)
    rows, tables = run(args.count)
    width = max(len(name) for name, _ in rows)
    print(f"{'one SFTP stat, one at a time':<{width}} {'p50 us':>8}")
    for name, us in rows:
        print(f"{name:<{width}} {us:>8.0f}")
    for table in tables:
        print()
        print("\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

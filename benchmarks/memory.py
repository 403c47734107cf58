"""Memory of the daemon per open handle and per connection: RSS of the core, the connection
manager and the mini-redirectors (from /proc) with 10,000 handles open and with 1,000
connections up, minus the same processes' RSS when idle but warmed up, in the same run.

The 1,000 connections are 1,000 server names one local mini-redirector answers to (its
``aliases``: each name is its own SrvCall, NetRoot and VNetRoot, and its own connection worker
thread in the mini-redirector), each with one share. Not a test."""

from __future__ import annotations

import os
import tempfile

from rdbss import requests as rq
from rdbss.testing.daemon import Daemon, rss_bytes, running_daemon, wait_until

T = 60_000


def _rss(d: Daemon) -> dict[str, int]:
    return {name: rss_bytes(pid) for name, pid in d.processes().items()}


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before.get(name, 0) for name in after}


def run(handles: int = 10_000, connections: int = 1_000) -> list[tuple[str, int, dict[str, int]]]:
    """Rows of (what, how many, RSS growth by process in bytes)."""
    aliases = ", ".join(f'"srv{k:04d}"' for k in range(connections))
    extra = f"""
[[minirdr]]
name = "many"
kind = "local"
server = "many"
aliases = [{aliases}]
[minirdr.shares]
data = "{{share}}"
"""
    rows = []
    many = tempfile.mkdtemp(prefix="rdbss-many-")
    with running_daemon(extra.replace("{share}", many)) as d:
        folder = d.share_dir / "handles"
        folder.mkdir()
        for k in range(handles):
            (folder / f"h{k:05d}").write_bytes(b"")
        (d.share_dir / "x.txt").write_bytes(b"x")
        with d.client(timeout=120) as c:
            # warm up every code path measured, then take the idle baseline
            c.stat_many([d.share + r"\x.txt", r"\\srv0000\data"])
            warm = c.compound([rq.create(d.share + rf"\handles\h{k:05d}", T) for k in range(50)])
            c.compound([rq.close(o.unwrap().fobx, T) for o in warm])
            idle = _rss(d)
            for what in ("open handles", "opened again"):
                opened = c.compound(
                    [rq.create(d.share + rf"\handles\h{k:05d}", T) for k in range(handles)]
                )
                fobxs = [o.unwrap().fobx for o in opened]
                assert c.status()["handles"] == handles
                rows.append((what, handles, _delta(_rss(d), idle)))
                c.compound([rq.close(f, T) for f in fobxs])
                assert c.status()["handles"] == 0
                rows.append(("closed (memory kept)", handles, _delta(_rss(d), idle)))
            idle = _rss(d)
            names = [rf"\\srv{k:04d}\data" for k in range(connections)]
            infos = c.stat_many(names)
            failed = [i for i in infos if isinstance(i, Exception)]
            assert not failed, failed[:3]
            wait_until(lambda: len(c.status()["connections"]) >= connections + 1, 30)
            rows.append(("connections", connections, _delta(_rss(d), idle)))
    os.rmdir(many)
    return rows


def render(rows: list[tuple[str, int, dict[str, int]]]) -> str:
    names = sorted({name for _, _, delta in rows for name in delta})
    head = "".join(f"{name:>12}" for name in names)
    out = [f"{'RSS growth over idle':<26}{head}{'total':>12}{'per item':>11}"]
    for what, n, delta in rows:
        cells = "".join(f"{delta.get(name, 0) / (1 << 20):>9.1f}MiB" for name in names)
        total = sum(delta.values())
        out.append(
            f"{what + f' ({n})':<26}{cells}{total / (1 << 20):>9.1f}MiB{total / n / 1024:>8.2f}KiB"
        )
    return "\n".join(out)


if __name__ == "__main__":
    print(render(run(int(os.environ.get("HANDLES", 10_000)), int(os.environ.get("CONNS", 1000)))))

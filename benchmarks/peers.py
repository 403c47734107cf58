"""rdbss against the tools users would pick instead, on the same real servers in the same run:
fsspec's own filesystems (sshfs.SSHFileSystem, fsspec's SMBFileSystem, webdav4's
WebdavFileSystem) against rdbss's fsspec filesystem (``rdbss://``) and its ``Client``.

Workloads: stat of N files, create+write+close of N x 4 KiB, read of N x 4 KiB files, a listing
of a folder of N, one large write and one large read. The sides alternate workload by workload
and round by round (a change in the machine's load hits both alike); every round works in a
folder of its own, so nothing is read from a cache that the previous round filled. Every byte
written is read back and checked. Printed: rates as medians with min-max over the rounds, and
the ratio rdbss / peer (above 1: rdbss faster). Not a test.

    python -m benchmarks.peers [--rounds 5] [--files 300] [--size 64] [--proto sftp,smb,webdav]

``--latency-ms MS --proto sftp`` puts a fault proxy adding MS each way between both sides and
sshd: what the round trips cost over a network instead of loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rdbss.client import Client
from rdbss.fsspec_fs import RdbssFileSystem
from rdbss.testing.backend import sftp_config, smb_config, webdav_config, write_password_file
from rdbss.testing.daemon import running_daemon
from rdbss.testing.servers import SambaServer, SshServer, WebDavServer

SMALL = 4096
TIMEOUT_S = 120.0


@dataclass
class Side:
    """One way to reach the scratch folder: an fsspec filesystem and the folder's path on it,
    or (``client``) rdbss's Client and the folder's UNC name."""

    name: str
    root: str
    fs: Any = None
    client: Client | None = None

    def path(self, *parts: str) -> str:
        sep = "\\" if self.client is not None else "/"
        return sep.join([self.root.rstrip(sep), *parts])

    def mkdir(self, folder: str) -> None:
        if self.client is not None:
            self.client.mkdir(folder)
        else:
            self.fs.mkdir(folder, create_parents=True)

    def write(self, path: str, data: bytes) -> None:
        if self.client is not None:
            self.client.write_bytes(path, data)
        else:
            self.fs.pipe_file(path, data)

    def read(self, path: str) -> bytes:
        if self.client is not None:
            return self.client.read_bytes(path)
        data: bytes = self.fs.cat_file(path)
        return data

    def stat(self, path: str) -> int:
        if self.client is not None:
            return self.client.stat(path).size
        return int(self.fs.info(path)["size"])

    def listing(self, folder: str) -> int:
        if self.client is not None:
            return len(self.client.listdir(folder))
        return len(self.fs.ls(folder, detail=True))


@dataclass
class Figures:
    """Rates of one workload on one side, one per round."""

    rates: list[float] = field(default_factory=list)

    def median(self) -> float:
        return statistics.median(self.rates)

    def spread(self) -> str:
        return f"{min(self.rates):,.0f}-{max(self.rates):,.0f}"


WORKLOADS = (
    "stat",
    "create+write+close 4 KiB",
    "read 4 KiB files",
    "list a folder",
    "write big",
    "read big",
)


def _round(side: Side, i: int, files: int, big: bytes, out: dict[str, Figures]) -> None:
    """Every workload once on ``side`` in a folder of its own; rates into ``out``."""
    folder = side.path(f"r{i}-{side.name.replace(' ', '_')}")
    side.mkdir(folder)
    sep = "\\" if side.client is not None else "/"
    names = [f"{folder}{sep}f{k:04d}.bin" for k in range(files)]
    payloads = [os.urandom(SMALL) for _ in range(files)]

    def timed(workload: str, count: float, fn: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        fn()
        out.setdefault(workload, Figures()).rates.append(count / (time.perf_counter() - t0))

    def write_all() -> None:
        for name, data in zip(names, payloads, strict=True):
            side.write(name, data)

    def stat_all() -> None:
        for name in names:
            if side.stat(name) != SMALL:
                raise AssertionError(f"{side.name}: wrong size of {name}")

    def read_all() -> None:
        for name, data in zip(names, payloads, strict=True):
            if side.read(name) != data:
                raise AssertionError(f"{side.name}: {name} read back wrong")

    def listing() -> None:
        if side.listing(folder) != files:
            raise AssertionError(f"{side.name}: listing of {folder} is not {files} entries")

    mib = len(big) / (1 << 20)
    big_name = side.path(f"big-{i}-{side.name.replace(' ', '_')}.bin")
    timed("create+write+close 4 KiB", files, write_all)
    timed("stat", files, stat_all)
    timed("read 4 KiB files", files, read_all)
    timed("list a folder", files, listing)
    timed("write big", mib, lambda: side.write(big_name, big))
    got: list[bytes] = []
    timed("read big", mib, lambda: got.append(side.read(big_name)))
    if got[0] != big:
        raise AssertionError(f"{side.name}: {big_name} read back wrong")


@contextlib.contextmanager
def _slow_link(host: str, port: int, latency_ms: float) -> Iterator[int]:
    """A FaultProxy process (rdbss/faultproxy.py) in front of ``host:port`` adding
    ``latency_ms`` each way; yields its port. A process of its own, so that its work is
    nobody's CPU time: both sides go through it."""
    proxy = subprocess.Popen(
        [sys.executable, "-m", "rdbss.faultproxy", "--listen", f"{host}:0",
         "--target", f"{host}:{port}", "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proxy.stdout is not None
        ready, _, _ = select.select([proxy.stdout], [], [], 20.0)
        if not ready:
            raise RuntimeError("the fault proxy did not start in 20 s")
        yield int(json.loads(proxy.stdout.readline())["listen"].rpartition(":")[2])
    finally:
        proxy.terminate()
        try:
            proxy.wait(10.0)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait(10.0)


@contextlib.contextmanager
def _sftp(base: Path, latency_ms: float = 0.0) -> Iterator[tuple[str, str, Any, str]]:
    import sshfs

    with SshServer(base / "ssh") as srv, contextlib.ExitStack() as stack:
        folder = srv.root_dir / "bench"
        folder.mkdir()
        port, known_hosts = srv.port, srv.known_hosts_path
        if latency_ms:  # the server's host key, known at the proxy's port
            port = stack.enter_context(_slow_link(srv.host, srv.port, latency_ms))
            known_hosts = base / "known_hosts"
            known_hosts.write_text(
                srv.known_hosts_path.read_text().replace(f":{srv.port} ", f":{port} ")
            )
        options = {**srv.asyncssh_options(), "port": port, "known_hosts": str(known_hosts)}
        peer = sshfs.SSHFileSystem(srv.host, **options)
        config = sftp_config(srv, {"bench": folder}, timeout=TIMEOUT_S, port=port)
        config = config.replace(str(srv.known_hosts_path), str(known_hosts))
        yield config, r"\\sshtest\bench", peer, str(folder)


@contextlib.contextmanager
def _smb(base: Path) -> Iterator[tuple[str, str, Any, str]]:
    from fsspec.implementations.smb import SMBFileSystem

    with SambaServer(base / "smb") as srv:
        password_file = write_password_file(base / "smb-password", srv.password)
        peer = SMBFileSystem(srv.host, port=srv.port, username=srv.user, password=srv.password)
        config = smb_config(srv, password_file, timeout=TIMEOUT_S)
        yield config, rf"\\sambatest\{srv.share_name}", peer, f"/{srv.share_name}"


@contextlib.contextmanager
def _webdav(base: Path) -> Iterator[tuple[str, str, Any, str]]:
    from webdav4.fsspec import WebdavFileSystem

    with WebDavServer(base / "dav") as srv:
        (srv.root_dir / "bench").mkdir()
        password_file = write_password_file(base / "dav-password", srv.password)
        peer = WebdavFileSystem(srv.url, auth=(srv.user, srv.password))
        config = webdav_config(srv, password_file, timeout=TIMEOUT_S)
        yield config, r"\\davtest\bench", peer, "bench"


SERVERS = {
    "sftp": (_sftp, "sshfs.SSHFileSystem"),
    "smb": (_smb, "fsspec SMBFileSystem"),
    "webdav": (_webdav, "webdav4"),
}


def run(
    proto: str, rounds: int, files: int, size_mib: int, latency_ms: float = 0.0
) -> dict[str, dict[str, Figures]]:
    """Figures per side (peer, rdbss fsspec, rdbss Client) per workload for one protocol;
    ``latency_ms`` (SFTP only) each way between both sides and the server."""
    servers, peer_name = SERVERS[proto]
    big = os.urandom(size_mib << 20)
    figures: dict[str, dict[str, Figures]] = {}
    with (
        tempfile.TemporaryDirectory(prefix=f"rdbss-peers-{proto}-") as tmp,
        _sftp(Path(tmp), latency_ms) if latency_ms else servers(Path(tmp)) as (
            config,
            unc,
            peer,
            peer_root,
        ),
        running_daemon(extra_config=config) as daemon,
        daemon.client(timeout=TIMEOUT_S) as client,
    ):
        client.write_bytes(unc + r"\warm-up", b"connect first")
        ours = RdbssFileSystem(runtime_dir=daemon.runtime_dir, timeout=TIMEOUT_S)
        sides = [
            Side(peer_name, peer_root, fs=peer),
            Side("rdbss fsspec", "rdbss:" + unc.replace("\\", "/"), fs=ours),
            Side("rdbss Client", unc, client=client),
        ]
        for i in range(rounds):
            for side in sides if i % 2 == 0 else reversed(sides):
                _round(side, i, files, big, figures.setdefault(side.name, {}))
        ours.close()
    return figures


def render(proto: str, figures: dict[str, dict[str, Figures]], files: int, size: int) -> str:
    peer, *ours = figures
    lines = [f"{proto}: {files} small files, {size} MiB big file; rate median (min-max)"]
    head = f"{'workload':<26} {peer:>28}"
    for name in ours:
        head += f" {name:>28} {'ratio':>6}"
    lines.append(head)
    for workload in WORKLOADS:
        unit = "MiB/s" if "big" in workload else "/s"
        base = figures[peer][workload]
        row = f"{workload:<26} {f'{base.median():,.0f} {unit} ({base.spread()})':>28}"
        for name in ours:
            mine = figures[name][workload]
            cell = f"{mine.median():,.0f} {unit} ({mine.spread()})"
            row += f" {cell:>28} {mine.median() / base.median():>5.2f}x"
        lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--size", type=int, default=64, help="MiB of the big file")
    parser.add_argument("--proto", default="sftp,smb,webdav")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="SFTP only: delay added each way by a fault proxy (a network's round trip)",
    )
    args = parser.parse_args(argv)
    if args.latency_ms and args.proto != "sftp":
        parser.error("--latency-ms is for --proto sftp")
    for proto in args.proto.split(","):
        figures = run(proto, args.rounds, args.files, args.size, args.latency_ms)
        if args.latency_ms:
            print(f"(through a link of {args.latency_ms:g} ms each way)")
        print(render(proto, figures, args.files, args.size))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

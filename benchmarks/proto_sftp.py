"""Sequential throughput of the SFTP mini-redirector against asyncssh used directly, measured in
the same run against the same private OpenSSH sshd on loopback. Both sides make whole-file
calls: the rdbss client's ``write_bytes`` / ``read_bytes`` (4 MiB shared-memory pieces, two in
flight) against asyncssh's own ``write(data)`` / ``read()`` of the whole file on one open file
(asyncssh splits a call into pipelined requests of the server's limit, as the mini-redirector
does with each piece). Every transfer is checked byte for byte. Not a test.

    python -m benchmarks.proto_sftp [SIZE_MIB]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import asyncssh

from benchmarks.common import REPEATS, render
from rdbss.testing.backend import sftp_config
from rdbss.testing.daemon import running_daemon
from rdbss.testing.servers import SshServer

SHARE = "bench"
TIMEOUT_S = 120.0
T = TypeVar("T")


class _Direct:
    """asyncssh used directly: one connection and SFTP session on a private event loop."""

    def __init__(self, srv: SshServer) -> None:
        self.loop = asyncio.new_event_loop()
        self.conn = self._run(asyncssh.connect(srv.host, **srv.asyncssh_options()))
        self.sftp = self._run(self.conn.start_sftp_client())

    def _run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT_S))

    def write(self, path: str, data: bytes) -> None:
        async def go() -> None:
            async with self.sftp.open(path, "wb") as f:
                await f.write(data)

        self._run(go())

    def read(self, path: str) -> bytes:
        async def go() -> bytes:
            async with self.sftp.open(path, "rb") as f:
                return cast(bytes, await f.read())

        return self._run(go())

    def close(self) -> None:
        self.sftp.exit()
        self.conn.close()
        self._run(self.conn.wait_closed())
        self.loop.close()


def _timed(times: list[float], fn: Callable[..., T], *args: Any) -> T:
    """Call ``fn(*args)``, append how long it took to ``times``, return its result."""
    t0 = time.perf_counter()
    result = fn(*args)
    times.append(time.perf_counter() - t0)
    return result


def run(size_mib: int = 64) -> list[tuple[str, float, float]]:
    """Rows of (operation, rdbss MiB/s, asyncssh-direct MiB/s). The two sides alternate, one
    transfer each in turn, so a change in the machine's load hits both alike."""
    data = os.urandom(size_mib << 20)
    times: dict[str, list[float]] = {k: [] for k in ("rw", "dw", "rr", "dr")}
    with tempfile.TemporaryDirectory(prefix="rdbss-bench-sftp-") as tmp:
        base = Path(tmp)
        with SshServer(base / "ssh") as srv:
            folder = srv.root_dir / SHARE
            folder.mkdir()
            config = sftp_config(srv, {SHARE: folder}, timeout=TIMEOUT_S)
            with (
                running_daemon(extra_config=config) as daemon,
                daemon.client(timeout=TIMEOUT_S) as client,
            ):
                direct = _Direct(srv)
                try:
                    unc = rf"\\sshtest\{SHARE}"
                    client.write_bytes(rf"{unc}\warm-up.bin", b"connect first")
                    for i in range(REPEATS):
                        rdbss_path = rf"{unc}\rdbss-{i}.bin"
                        direct_path = f"{folder}/direct-{i}.bin"
                        _timed(times["rw"], client.write_bytes, rdbss_path, data)
                        _timed(times["dw"], direct.write, direct_path, data)
                        assert (folder / f"rdbss-{i}.bin").read_bytes() == data
                        assert (folder / f"direct-{i}.bin").read_bytes() == data
                    for i in range(REPEATS):
                        rdbss_path = rf"{unc}\rdbss-{i}.bin"
                        direct_path = f"{folder}/direct-{i}.bin"
                        assert _timed(times["rr"], client.read_bytes, rdbss_path) == data
                        assert _timed(times["dr"], direct.read, direct_path) == data
                finally:
                    direct.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    return [
        ("sequential write", size_mib / med["rw"], size_mib / med["dw"]),
        ("sequential read", size_mib / med["rr"], size_mib / med["dr"]),
    ]


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    print(f"sftp (OpenSSH sshd on loopback), {size} MiB, median of {REPEATS}")
    print(render(run(size), "asyncssh"))

"""CPU per small file over SMB, per process: N x 4 KiB ``Client.write_bytes``, then
``read_bytes``, then ``stat`` on a Samba server over loopback, with the user + system time of
every thread of the client, the core and the SMB mini-redirector read from /proc before and
after (smbd's too); then fsspec's SMBFileSystem doing the same in this process (``pipe_file``,
``cat_file``, ``info``), its own CPU and smbd's, on the same server in the same run. Every byte
read is checked. Not a test.

    python -m benchmarks.smb_small [FILES]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.cpu import cpu_seconds
from rdbss.testing.backend import smb_config, write_password_file
from rdbss.testing.daemon import running_daemon
from rdbss.testing.servers import SambaServer

SMALL = 4096
WORKLOADS = ("create+write+close", "read", "stat")
PROCESSES = ("client", "core", "smb")


def smbd_seconds(marker: str) -> float:
    """CPU of the smbd processes whose command line names ``marker`` (their server's folder)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "smbd" in args and marker in args:
            try:
                total += cpu_seconds(int(proc.name))
            except OSError:  # a process that ended meanwhile
                continue
    return total


def _measure(
    count: int, step: Callable[[int], None], pids: dict[str, int], marker: str
) -> dict[str, float]:
    """Microseconds of CPU per step by process (and "smbd", "rate" in steps per second)."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    served = smbd_seconds(marker)
    start = time.perf_counter()
    for k in range(count):
        step(k)
    elapsed = time.perf_counter() - start
    out = {name: (cpu_seconds(pid) - before[name]) * 1e6 / count for name, pid in pids.items()}
    out["smbd"] = (smbd_seconds(marker) - served) * 1e6 / count
    out["rate"] = count / elapsed
    return out


def _steps(
    names: list[str],
    payloads: list[bytes],
    write: Callable[[str, bytes], object],
    read: Callable[[str], bytes],
    size: Callable[[str], int],
) -> list[Callable[[int], None]]:
    """One step per workload, each byte read and each size checked."""

    def write_one(k: int) -> None:
        write(names[k], payloads[k])

    def read_one(k: int) -> None:
        if read(names[k]) != payloads[k]:
            raise AssertionError(f"{names[k]} read back wrong")

    def stat_one(k: int) -> None:
        if size(names[k]) != SMALL:
            raise AssertionError(f"wrong size of {names[k]}")

    return [write_one, read_one, stat_one]


def run(files: int = 1000) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Figures per workload: rdbss's (by process) and the peer's (its process, smbd)."""
    payloads = [os.urandom(SMALL) for _ in range(files)]
    ours: dict[str, dict[str, float]] = {}
    peer: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="rdbss-smb-small-") as tmp:
        base = Path(tmp)
        with SambaServer(base / "smb") as srv:
            marker = str(base / "smb")
            password = write_password_file(base / "smb-password", srv.password)
            with (
                running_daemon(extra_config=smb_config(srv, password, timeout=60.0)) as d,
                d.client(timeout=60.0) as client,
            ):
                unc = rf"\\sambatest\{srv.share_name}"
                client.write_bytes(unc + r"\warm-up", b"connect first")
                client.read_bytes(unc + r"\warm-up")
                processes = d.processes()
                pids = {"client": os.getpid(), "core": processes["core"]}
                pids["smb"] = processes["smb"]
                names = [unc + rf"\r{k:05d}.bin" for k in range(files)]
                steps = _steps(
                    names,
                    payloads,
                    client.write_bytes,
                    client.read_bytes,
                    lambda name: client.stat(name).size,
                )
                for workload, step in zip(WORKLOADS, steps, strict=True):
                    ours[workload] = _measure(files, step, pids, marker)
            from fsspec.implementations.smb import SMBFileSystem

            fs = SMBFileSystem(srv.host, port=srv.port, username=srv.user, password=srv.password)
            fs.pipe_file(f"/{srv.share_name}/warm-up", b"connect first")
            paths = [f"/{srv.share_name}/p{k:05d}.bin" for k in range(files)]
            steps = _steps(
                paths, payloads, fs.pipe_file, fs.cat_file, lambda path: int(fs.info(path)["size"])
            )
            for workload, step in zip(WORKLOADS, steps, strict=True):
                peer[workload] = _measure(files, step, {"peer": os.getpid()}, marker)
    return ours, peer


def render(ours: dict[str, dict[str, float]], peer: dict[str, dict[str, float]]) -> str:
    head = f"{'us of CPU per file':<20}" + "".join(f"{name:>8}" for name in PROCESSES)
    head += f"{'rdbss':>8}{'smbd':>8}{'rate':>8}  |{'peer':>8}{'smbd':>8}{'rate':>8}"
    lines = [head]
    for workload in WORKLOADS:
        mine, theirs = ours[workload], peer[workload]
        row = f"{workload:<20}" + "".join(f"{mine[name]:>8.0f}" for name in PROCESSES)
        row += f"{sum(mine[name] for name in PROCESSES):>8.0f}{mine['smbd']:>8.0f}"
        row += f"{mine['rate']:>6.0f}/s  |{theirs['peer']:>8.0f}{theirs['smbd']:>8.0f}"
        row += f"{theirs['rate']:>6.0f}/s"
        lines.append(row)
    lines.append(
        "rdbss: its client (this process), core and SMB mini-redirector, all threads; "
        "peer: fsspec's SMBFileSystem in this process"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    files = int(args[0]) if args else 1000
    ours, peer = run(files)
    print(render(ours, peer))
    return 0


if __name__ == "__main__":
    sys.exit(main())

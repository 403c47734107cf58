"""The FUSE mount (``rdbss mount``) against sshfs and rclone mount, in the same run, over the same
private servers on loopback (sshd for SFTP, Samba for SMB, wsgidav for WebDAV): the workloads of
issue 23, every tool with its default caching (rdbss: attr_timeout 1 s, close-to-open; sshfs and
rclone: their own defaults, rclone with ``--vfs-cache-mode off``; rclone gets ``--no-checksum``,
or over SFTP it runs ``md5sum`` on the server after every file it reads, which neither other tool
does). A tool that is not installed is left out. Every figure is a median of REPEATS runs (3 with
``--quick``), the tools taking turns; the table shows rdbss's figure divided by each other tool's.
``--before DIR`` adds a column for the mount of another checkout of rdbss (its own
``DIR/.venv``, e.g. ``git worktree add /tmp/before main``, then its venv with the fuse extra),
on the same daemon: the binding before a change against the one after, in the same run.
``-o OPTS`` gives rdbss's mount options (``-o notify``). One row counts the FUSE side alone:
small files read per CPU second of the mount process (all its threads; not its children nor
other processes: sshfs's ssh, rdbss's daemon, the servers). Not a test.

    python -m benchmarks mount [--quick] [--before DIR] [-o OPTS] [sftp|smb|webdav ...]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rdbss.testing.backend import sftp_config, smb_config, webdav_config, write_password_file
from rdbss.testing.daemon import running_daemon
from rdbss.testing.mounts import (
    MOUNT_CODE,
    Mounted,
    foreground_mount,
    fuse_missing,
    mount_share,
)
from rdbss.testing.servers import SambaServer, SshServer, WebDavServer

REPEATS = 5
#: Seconds between two runs of a metadata workload: every tool's 1 s attribute cache expires, so
#: each run asks the server again (rclone's directory cache, 5 min by default, stays: its design).
SETTLE_S = 1.2
FOLDERS, PER_FOLDER = 20, 100  # the tree that ls -lR and cp -r walk
SMALL_FILES, SMALL_BYTES = 300, 4096
BIG_MIB = 64
CHUNK = 1 << 20
PARALLEL = 8  # readers at once in the parallel small-file workload
CPU_ROUNDS = 5  # reads of the small files in the per-CPU-second workload


@dataclass
class Sizes:
    stat_files: int = 300
    tree: tuple[int, int] = (FOLDERS, PER_FOLDER)
    small: int = SMALL_FILES
    big_mib: int = BIG_MIB
    repeats: int = REPEATS


QUICK = Sizes(stat_files=100, tree=(10, 30), small=100, big_mib=16, repeats=3)


@dataclass
class Workload:
    name: str
    unit: str
    run: Callable[[Path, str], float]  # (mount, run tag) -> the figure (higher is better)
    settle: bool = False
    #: the figure is what ``run`` returns (files) per CPU second of the mount process (all its
    #: threads, not its children: sshfs's ssh, rdbss's daemon): the FUSE side's own cost
    per_cpu: bool = False


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _workloads(sizes: Sizes) -> list[Workload]:
    files = sizes.tree[0] * sizes.tree[1]

    def stat_fresh(mnt: Path, tag: str) -> float:
        folder = mnt / f"stat-{tag}"
        folder.mkdir()
        for i in range(sizes.stat_files):
            (folder / f"f{i}").write_bytes(b"x" * 100)
        t0 = time.perf_counter()
        for i in range(sizes.stat_files):
            os.stat(folder / f"f{i}")
        took = time.perf_counter() - t0
        shutil.rmtree(folder)
        return sizes.stat_files / took

    def ls_lr(mnt: Path, tag: str) -> float:
        t0 = time.perf_counter()
        subprocess.run(["ls", "-lR", str(mnt / "tree")], stdout=subprocess.DEVNULL, check=True)
        return files / (time.perf_counter() - t0)

    def cp_r(mnt: Path, tag: str) -> float:
        target = Path(tempfile.mkdtemp(prefix="rdbench-cp-"))
        try:
            t0 = time.perf_counter()
            subprocess.run(["cp", "-r", str(mnt / "tree"), str(target / "tree")], check=True)
            return files / (time.perf_counter() - t0)
        finally:
            shutil.rmtree(target, ignore_errors=True)

    def read_small(mnt: Path, tag: str) -> float:
        t0 = time.perf_counter()
        for i in range(sizes.small):
            with open(mnt / "small" / f"f{i}", "rb") as f:
                if len(f.read()) != SMALL_BYTES:
                    raise AssertionError("short read")
        return sizes.small / (time.perf_counter() - t0)

    def read_small_rounds(mnt: Path, tag: str) -> float:
        for _ in range(CPU_ROUNDS):  # enough CPU time for the clock's ticks to measure
            read_small(mnt, tag)
        return CPU_ROUNDS * sizes.small

    def read_small_parallel(mnt: Path, tag: str) -> float:
        def one(i: int) -> None:
            with open(mnt / "small" / f"f{i}", "rb") as f:
                if len(f.read()) != SMALL_BYTES:
                    raise AssertionError("short read")

        t0 = time.perf_counter()
        with ThreadPoolExecutor(PARALLEL) as pool:
            list(pool.map(one, range(sizes.small)))
        return sizes.small / (time.perf_counter() - t0)

    def read_big(mnt: Path, tag: str, *, cold: bool = True) -> float:
        total = 0
        with open(mnt / "big.bin", "rb", buffering=0) as f:
            if cold:  # the kernel's pages of it go, for every tool alike: the data is asked for
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            t0 = time.perf_counter()
            while chunk := f.read(CHUNK):
                total += len(chunk)
        if total != sizes.big_mib << 20:
            raise AssertionError(f"read {total} bytes")
        return sizes.big_mib / (time.perf_counter() - t0)

    block = os.urandom(CHUNK)

    def write_big(mnt: Path, tag: str) -> float:
        target = mnt / f"w-{tag}.bin"
        t0 = time.perf_counter()
        with open(target, "wb", buffering=0) as f:
            for _ in range(sizes.big_mib):
                f.write(block)
        took = time.perf_counter() - t0  # close included: the server has the file
        target.unlink()
        return sizes.big_mib / took

    return [
        Workload(f"stat of {sizes.stat_files} files just written", "/s", stat_fresh),
        Workload(f"ls -lR of {files:,} files", "files/s", ls_lr, settle=True),
        Workload(f"cp -r of {files:,} files to local disk", "files/s", cp_r, settle=True),
        Workload(f"read {sizes.small} x 4 KiB files", "/s", read_small, settle=True),
        Workload(
            "the same, per CPU s of the mount process",
            "files",
            read_small_rounds,
            settle=True,
            per_cpu=True,
        ),
        Workload(f"the same, {PARALLEL} readers at once", "/s", read_small_parallel, settle=True),
        Workload(f"read one {sizes.big_mib} MiB file", "MiB/s", read_big),
        Workload(
            "read it again, unchanged",
            "MiB/s",
            lambda mnt, tag: read_big(mnt, tag, cold=False),
        ),
        Workload(f"write one {sizes.big_mib} MiB file", "MiB/s", write_big),
    ]


def _prepare(folder: Path, sizes: Sizes) -> None:
    """The files the read workloads use, written straight into the server's folder."""
    for d in range(sizes.tree[0]):
        sub = folder / "tree" / f"d{d}"
        sub.mkdir(parents=True)
        for i in range(sizes.tree[1]):
            (sub / f"f{i}").write_bytes(b"t" * 100)
    (folder / "small").mkdir()
    for i in range(sizes.small):
        (folder / "small" / f"f{i}").write_bytes(os.urandom(SMALL_BYTES))
    with open(folder / "big.bin", "wb") as f:
        for _ in range(sizes.big_mib):
            f.write(os.urandom(CHUNK))


def _obscure(password: str) -> str:
    done = subprocess.run(
        ["rclone", "obscure", password], capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.strip()


@contextlib.contextmanager
def _other_mount(name: str, argv: list[str], base: Path) -> Iterator[Mounted]:
    mnt = base / f"mnt-{name}"
    mnt.mkdir()
    env = {**os.environ, "RCLONE_CONFIG": str(base / "rclone.conf")}
    with foreground_mount([*argv, str(mnt)], mnt, base / f"{name}.log", env) as mounted:
        yield mounted


@dataclass
class Server:
    """One protocol's server and how each tool reaches its folder ``folder``."""

    folder: Path
    rdbss_config: str
    rdbss_root: str
    others: dict[str, list[str]]  # tool -> its mount command without the mount point


@contextlib.contextmanager
def _server(proto: str, base: Path) -> Iterator[Server]:
    others: dict[str, list[str]] = {}
    rclone = shutil.which("rclone") is not None

    def rclone_mount(kind: str, settings: str, where: str) -> None:
        if rclone:
            others["rclone"] = ["rclone", "mount", "--no-checksum", f":{kind},{settings}:{where}"]

    if proto == "sftp":
        with SshServer(base / "ssh") as ssh:
            folder = ssh.root_dir / "bench"
            folder.mkdir()
            keys = f"IdentityFile={ssh.client_key_path},UserKnownHostsFile={ssh.known_hosts_path}"
            if shutil.which("sshfs"):
                others["sshfs"] = ["sshfs", "-f", "-p", str(ssh.port), "-o",
                                   f"{keys},StrictHostKeyChecking=yes,BatchMode=yes",
                                   f"root@{ssh.host}:{folder}"]  # fmt: skip
            rclone_mount("sftp", f"host={ssh.host},port={ssh.port},user=root,key_file="
                         f"{ssh.client_key_path},known_hosts_file={ssh.known_hosts_path}",
                         str(folder))  # fmt: skip
            yield Server(folder, sftp_config(ssh, {"bench": folder}), r"\\sshtest\bench", others)
    elif proto == "smb":
        with SambaServer(base / "smb") as smb:
            password = write_password_file(base / "smb-password", smb.password)
            if rclone:
                rclone_mount("smb", f"host={smb.host},port={smb.port},user={smb.user},"
                             f"pass={_obscure(smb.password)}", smb.share_name)  # fmt: skip
            root = rf"\\sambatest\{smb.share_name}"
            yield Server(smb.share_path, smb_config(smb, password), root, others)
    else:
        with WebDavServer(base / "dav") as dav:
            folder = dav.root_dir / "bench"
            folder.mkdir()
            password = write_password_file(base / "dav-password", dav.password)
            if rclone:
                rclone_mount("webdav", f"url='{dav.url}',vendor=other,user={dav.user},"
                             f"pass={_obscure(dav.password)}", "bench")  # fmt: skip
            yield Server(folder, webdav_config(dav, password), r"\\davtest\bench", others)


@contextlib.contextmanager
def _before_mount(checkout: Path, daemon: Any, root: str, base: Path) -> Iterator[Mounted]:
    """``root`` mounted by the rdbss of another checkout (its own venv), on ``daemon``."""
    mnt = base / "mnt-before"
    mnt.mkdir()
    python = checkout / ".venv" / "bin" / "python"
    argv = [python, "-c", MOUNT_CODE, root, mnt, daemon.runtime_dir, ""]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    with foreground_mount(argv, mnt, base / "before.log", env, cwd=checkout) as mounted:
        yield mounted


def run(
    proto: str, sizes: Sizes, *, before: Path | None = None, options: str = ""
) -> tuple[list[str], list[tuple[str, str, dict[str, float]]]]:
    """The tools measured and, per workload, (name, unit, {tool: median figure}); printed as
    soon as measured (a failure to tear a mount down later does not lose them)."""
    base = Path(tempfile.mkdtemp(prefix=f"rdbench-{proto}-", dir="/tmp"))
    (base / "rclone.conf").write_text("")
    try:
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(_server(proto, base))
            _prepare(server.folder, sizes)
            daemon = stack.enter_context(running_daemon(extra_config=server.rdbss_config))
            mine = mount_share(daemon, server.rdbss_root, options)
            mounts: dict[str, Mounted] = {"rdbss": stack.enter_context(mine)}
            if before is not None:
                old = _before_mount(before, daemon, server.rdbss_root, base)
                mounts["before"] = stack.enter_context(old)
            for tool, argv in server.others.items():
                mounts[tool] = stack.enter_context(_other_mount(tool, argv, base))
            rows = []
            for work in _workloads(sizes):
                figures: dict[str, list[float]] = {tool: [] for tool in mounts}
                for i in range(sizes.repeats):
                    for tool, mounted in mounts.items():
                        if work.settle:
                            time.sleep(SETTLE_S)
                        cpu = _cpu_seconds(mounted.process.pid)
                        figure = work.run(mounted.path, f"{tool}{i}")
                        if work.per_cpu:
                            tick = 1 / os.sysconf("SC_CLK_TCK")
                            figure /= max(_cpu_seconds(mounted.process.pid) - cpu, tick)
                        figures[tool].append(figure)
                rows.append(
                    (work.name, work.unit, {t: statistics.median(f) for t, f in figures.items()})
                )
            print(render(proto, list(mounts), rows, sizes.repeats), flush=True)
            return list(mounts), rows
    finally:
        shutil.rmtree(base, ignore_errors=True)


def render(
    proto: str, tools: list[str], rows: list[tuple[str, str, dict[str, float]]], repeats: int
) -> str:
    others = [t for t in tools if t != "rdbss"]
    first = max(36, *(len(name) + len(unit) + 3 for name, unit, _ in rows))
    head = f"{'over ' + proto + ' (median of ' + str(repeats) + ')':<{first}}"
    head += "".join(f" {t:>10}" for t in tools)
    head += "".join(f" {'rdbss/' + t:>13}" for t in others)
    lines = [head]
    for name, unit, figures in rows:
        line = f"{name + ' (' + unit + ')':<{first}}"
        line += "".join(f" {figures[t]:>10,.0f}" for t in tools)
        line += "".join(f" {figures['rdbss'] / figures[t]:>12.2f}x" for t in others)
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    missing = fuse_missing()
    if missing:
        print(f"mount benchmark: needs {', '.join(missing)}")
        return 1
    parser = argparse.ArgumentParser(prog="python -m benchmarks mount")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--before", type=Path, help="another checkout of rdbss, with its .venv")
    parser.add_argument("-o", dest="options", default="", help="rdbss's mount options")
    parser.add_argument("protos", nargs="*", metavar="sftp|smb|webdav")
    args = parser.parse_args(argv)
    if set(args.protos) - {"sftp", "smb", "webdav"}:
        parser.error(f"protocols are sftp, smb, webdav, not {args.protos}")
    sizes = QUICK if args.quick else Sizes()
    protos = args.protos or ["sftp", "smb", "webdav"]
    absent = [t for t in ("sshfs", "rclone") if shutil.which(t) is None]
    if absent:
        print(f"not installed, left out: {', '.join(absent)}")
    for proto in protos:
        run(proto, sizes, before=args.before, options=args.options)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The FUSE front end (rdbss.fuse_mount) against a real daemon: the share is mounted by a child
process and used with ordinary shell tools; every result is checked in the folder behind the
share. Needs /dev/fuse and fusermount3 (scripts/install-test-deps.sh); skipped without them
unless RDBSS_REQUIRE_SERVERS is set."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.daemon import Daemon, running_daemon
from tests.servers.fixtures import require_or_skip

REPO = Path(__file__).resolve().parents[2]
MOUNT_DEADLINE_S = 20.0
UNMOUNT_DEADLINE_S = 10.0
SHELL_TIMEOUT_S = 30.0


def _missing() -> list[str]:
    missing = []
    if not os.access("/dev/fuse", os.W_OK):
        missing.append("a writable /dev/fuse")
    if shutil.which("fusermount3") is None:
        missing.append("fusermount3 (Debian package fuse3)")
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:  # OSError: libfuse3.so.3 not found
        missing.append(f"mfusepy with libfuse3 ({exc})")
    return missing


@dataclass
class Mount:
    daemon: Daemon
    path: Path
    process: subprocess.Popen[bytes]
    log: Path

    def sh(self, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with sh inside the mount."""
        done = subprocess.run(
            ["sh", "-c", script],
            cwd=self.path,
            capture_output=True,
            text=True,
            timeout=SHELL_TIMEOUT_S,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{script!r} exited {done.returncode}\nstdout: {done.stdout}\n"
                f"stderr: {done.stderr}\nmount log:\n{self.log.read_text(errors='replace')}"
            )
        return done


def _unmount(path: Path) -> None:
    for flags in (["-u"], ["-u", "-z"]):
        if not os.path.ismount(path):
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                ["fusermount3", *flags, str(path)],
                capture_output=True,
                timeout=UNMOUNT_DEADLINE_S,
                check=False,
            )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """The mount process ends by itself once unmounted; else SIGTERM, then SIGKILL, by pid."""
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=UNMOUNT_DEADLINE_S / 2)
            return


@pytest.fixture(scope="module")
def mounted() -> Iterator[Mount]:
    require_or_skip(_missing(), "FUSE")
    with running_daemon() as daemon:
        base = Path(tempfile.mkdtemp(prefix="rdfuse-", dir="/tmp"))
        mnt = base / "mnt"
        mnt.mkdir()
        log = base / "mount.log"
        code = (
            "import logging, sys; logging.basicConfig(level=logging.WARNING); "
            "from rdbss.fuse_mount import mount; "
            "mount(sys.argv[1], sys.argv[2], runtime_dir=sys.argv[3])"
        )
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", code, daemon.share, str(mnt), str(daemon.runtime_dir)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=env,
            )
        try:
            deadline = time.monotonic() + MOUNT_DEADLINE_S
            while not os.path.ismount(mnt):
                if process.poll() is not None:
                    pytest.fail(
                        f"the mount process exited {process.returncode}:\n{log.read_text()}"
                    )
                if time.monotonic() > deadline:
                    pytest.fail(f"no mount at {mnt} after {MOUNT_DEADLINE_S} s:\n{log.read_text()}")
                time.sleep(0.05)
            yield Mount(daemon, mnt, process, log)
        finally:
            _unmount(mnt)
            _stop(process)
            still_mounted = os.path.ismount(mnt)
            output = log.read_text(errors="replace")
            if not still_mounted:
                shutil.rmtree(base, ignore_errors=True)
        assert not still_mounted, f"{mnt} is still mounted"
        assert process.returncode == 0, output  # it ended by itself once unmounted
        assert "Traceback" not in output and "Uncaught" not in output, output


def test_mount_shows_up_in_proc_mounts(mounted: Mount) -> None:
    lines = Path("/proc/mounts").read_text().splitlines()
    mine = [line for line in lines if line.split()[1] == str(mounted.path)]
    assert mine, lines
    device, _, kind = mine[0].split()[:3]
    assert device == "rdbss://local/data"
    assert kind == "fuse.rdbss"
    df = mounted.sh("df -P .").stdout.splitlines()[-1].split()
    assert int(df[1]) > 0  # statfs answered with the share's volume sizes


def test_echo_cat_append_and_ls(mounted: Mount) -> None:
    share = mounted.daemon.share_dir
    mounted.sh("echo hi > f.txt")  # open(O_CREAT|O_TRUNC) + write at offset 0: no "Illegal seek"
    assert (share / "f.txt").read_bytes() == b"hi\n"
    assert mounted.sh("cat f.txt").stdout == "hi\n"
    mounted.sh("echo more >> f.txt")
    assert (share / "f.txt").read_bytes() == b"hi\nmore\n"
    mounted.sh("echo new > f.txt")  # O_TRUNC on an existing file
    assert (share / "f.txt").read_bytes() == b"new\n"

    (share / "from-disk.txt").write_bytes(b"12345")
    listing = mounted.sh("ls -l").stdout
    rows = {line.split()[-1]: line.split() for line in listing.splitlines()[1:]}
    assert rows["f.txt"][0].startswith("-rw") and rows["f.txt"][4] == "4"
    assert rows["from-disk.txt"][4] == "5"
    assert mounted.sh("stat -c %s from-disk.txt").stdout.strip() == "5"

    missing = mounted.sh("cat no-such-file", check=False)
    assert missing.returncode != 0 and "No such file or directory" in missing.stderr


def test_cp_of_a_few_mib_and_back(mounted: Mount, tmp_path: Path) -> None:
    share = mounted.daemon.share_dir
    original = tmp_path / "big.bin"
    data = os.urandom(5 * (1 << 20) + 4321)
    original.write_bytes(data)
    mounted.sh(f"cp {original} big.bin && cmp {original} big.bin")
    assert (share / "big.bin").read_bytes() == data
    back = tmp_path / "back.bin"
    mounted.sh(f"cp big.bin {back}")
    assert back.read_bytes() == data
    mounted.sh("dd if=big.bin of=part.bin bs=4096 skip=100 count=3 status=none")
    assert (share / "part.bin").read_bytes() == data[100 * 4096 : 103 * 4096]
    mounted.sh("truncate -s 1000 part.bin")
    assert (share / "part.bin").read_bytes() == data[100 * 4096 : 100 * 4096 + 1000]
    mounted.sh("rm big.bin part.bin")
    assert not (share / "big.bin").exists() and not (share / "part.bin").exists()


def test_mv_rm_mkdir_rmdir(mounted: Mount) -> None:
    share = mounted.daemon.share_dir
    mounted.sh("mkdir -p a/b && echo x > a/b/c.txt")
    assert (share / "a" / "b" / "c.txt").read_bytes() == b"x\n"
    busy = mounted.sh("rmdir a/b", check=False)
    assert busy.returncode != 0 and "Directory not empty" in busy.stderr
    mounted.sh("mv a/b/c.txt a/d.txt")
    assert (share / "a" / "d.txt").read_bytes() == b"x\n"
    assert not (share / "a" / "b" / "c.txt").exists()
    mounted.sh("echo y > a/e.txt && mv a/e.txt a/d.txt")  # replaces the target
    assert (share / "a" / "d.txt").read_bytes() == b"y\n"
    mounted.sh("mv a/b a/renamed")
    assert (share / "a" / "renamed").is_dir()
    mounted.sh("rmdir a/renamed && rm a/d.txt && rmdir a")
    assert not (share / "a").exists()
    exists = mounted.sh("mkdir f2 && mkdir f2", check=False)
    assert exists.returncode != 0 and "File exists" in exists.stderr
    mounted.sh("rmdir f2")


def test_touch_sets_times_on_the_share(mounted: Mount) -> None:
    share = mounted.daemon.share_dir
    mounted.sh("touch -d '2001-02-03 04:05:06 UTC' t.txt")
    assert (share / "t.txt").exists()
    assert int(os.stat(share / "t.txt").st_mtime) == 981173106
    assert mounted.sh("stat -c %Y t.txt").stdout.strip() == "981173106"
    before = time.time() - 5
    mounted.sh("touch t.txt")  # UTIME_NOW
    assert os.stat(share / "t.txt").st_mtime >= before
    mounted.sh("chmod a-w t.txt")
    assert not os.stat(share / "t.txt").st_mode & 0o200
    mounted.sh("chmod u+w t.txt && rm t.txt")
    assert not (share / "t.txt").exists()

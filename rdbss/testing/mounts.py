"""FUSE mounts for tests and benchmarks: a process that mounts in the foreground (``rdbss
mount``, sshfs -f, rclone mount), waited for until the mount is there, and at the end unmounted
(fusermount3 -u, then -u -z) and stopped by its pid. Every wait has a deadline."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rdbss.testing.daemon import Daemon

REPO = Path(__file__).resolve().parents[2]
MOUNT_DEADLINE_S = 20.0
UNMOUNT_DEADLINE_S = 10.0
EXIT_DEADLINE_S = 30.0  # from the unmount to the mount process's own exit
SHELL_TIMEOUT_S = 120.0
#: A mount process: ``python -c MOUNT_CODE SHARE MOUNTPOINT RUNTIME_DIR OPTIONS``.
MOUNT_CODE = (
    "import logging, os, sys; logging.basicConfig(level=logging.DEBUG "
    "if os.environ.get('RDBSS_FUSE_DEBUG') else logging.WARNING); "
    "from rdbss.fuse_mount import mount, _parse_options; "
    "mount(sys.argv[1], sys.argv[2], runtime_dir=sys.argv[3], "
    "options=_parse_options(sys.argv[4]))"
)


def fuse_missing() -> list[str]:
    """What this machine lacks for an rdbss mount."""
    missing = []
    if not os.access("/dev/fuse", os.W_OK):
        missing.append("a writable /dev/fuse")
    if shutil.which("fusermount3") is None:
        missing.append("fusermount3 (Debian package fuse3)")
    try:
        import pyfuse3  # noqa: F401
    except (ImportError, OSError) as exc:  # OSError: libfuse3.so.3 not found
        missing.append(f"pyfuse3 with libfuse3 ({exc})")
    return missing


@dataclass
class Mounted:
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


@dataclass
class Mount(Mounted):
    daemon: Daemon


def unmount(path: Path) -> None:
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


def stop(process: subprocess.Popen[bytes]) -> None:
    """The mount process ends by itself once unmounted (on a loaded machine libfuse's own
    clean-up can take seconds); else SIGTERM, then SIGKILL, by pid."""
    for sig, wait_s in ((None, EXIT_DEADLINE_S), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait_s)
            return


@contextlib.contextmanager
def foreground_mount(
    argv: Sequence[str | Path],
    mnt: Path,
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
) -> Iterator[Mounted]:
    """Run ``argv`` (a command that mounts at ``mnt`` and stays in the foreground) until the
    mount is there; at the end unmount and stop it. RuntimeError when it does not mount."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(a) for a in argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
        )
    try:
        deadline = time.monotonic() + MOUNT_DEADLINE_S
        while not os.path.ismount(mnt):
            if process.poll() is not None:
                raise RuntimeError(f"the mount process exited {process.returncode}:\n"
                                   f"{log.read_text(errors='replace')}")  # fmt: skip
            if time.monotonic() > deadline:
                raise RuntimeError(f"no mount at {mnt} after {MOUNT_DEADLINE_S} s:\n"
                                   f"{log.read_text(errors='replace')}")  # fmt: skip
            time.sleep(0.05)
        yield Mounted(mnt, process, log)
    finally:
        unmount(mnt)
        stop(process)
    if os.path.ismount(mnt):
        raise RuntimeError(f"{mnt} is still mounted")


@contextlib.contextmanager
def mount_share(
    daemon: Daemon, share: str, options: str = "", *, check_log: bool = True
) -> Iterator[Mount]:
    """``share`` of ``daemon`` mounted by an ``rdbss.fuse_mount`` child process (``options``
    as for ``-o``); unmounted and stopped at the end, its exit status and log checked.
    RDBSS_FUSE_DEBUG=1 in the environment logs every FUSE call into the mount's log."""
    base = Path(tempfile.mkdtemp(prefix="rdfuse-", dir="/tmp"))
    mnt = base / "mnt"
    mnt.mkdir()
    log = base / "mount.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    argv: list[str | Path] = [sys.executable, "-c", MOUNT_CODE, share, mnt]
    argv += [str(daemon.runtime_dir), options]
    try:
        with foreground_mount(argv, mnt, log, env) as mounted:
            yield Mount(mounted.path, mounted.process, log, daemon)
        output = log.read_text(errors="replace")
        code_ = mounted.process.returncode
        assert code_ == 0, f"the mount process exited {code_}:\n{output}"
        if check_log:
            assert "Traceback" not in output and "Uncaught" not in output, output
    finally:
        if not os.path.ismount(mnt):
            shutil.rmtree(base, ignore_errors=True)

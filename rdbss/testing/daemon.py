"""A real rdbss daemon for tests: its own runtime directory, config file and shares; started the
way users start it (detached, waits for readiness) and always stopped by its pid.

``running_daemon(extra_config=...)`` starts one with a ``local`` mini-redirector (share
``\\\\local\\data``) plus whatever ``[[minirdr]]`` tables ``extra_config`` adds, and stops it (and
every process of its session) when the block ends, within bounded deadlines.
``daemon_on_config(path)`` starts one on a configuration file of your own and yields its pid."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rdbss.actors.supervisor import read_pid, start_detached, stop_daemon
from rdbss.client import Client
from rdbss.config import Config, load_config

#: Deadlines of a stop, in seconds: the orderly stop, then the pid file's removal after SIGKILL.
STOP_DEADLINE_S = 20.0
PID_FILE_DEADLINE_S = 5.0


@dataclass
class Daemon:
    base: Path
    config_path: Path
    config: Config
    share_dir: Path
    pid: int

    @property
    def runtime_dir(self) -> Path:
        return self.config.runtime_dir

    @property
    def share(self) -> str:
        return r"\\local\data"

    def client(self, timeout: float = 10.0) -> Client:
        return Client(self.runtime_dir, timeout=timeout)

    def cli(
        self, *args: str, input: bytes | None = None, timeout: float = 30.0, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """The rdbss command as a user runs it (from ``cwd``: relative local paths)."""
        return subprocess.run(
            [sys.executable, "-m", "rdbss.cli", "--config", str(self.config_path), *args],
            cwd=cwd,
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def child_pid(self, name: str) -> int:
        with self.client() as c:
            for peer in c.status()["peers"]:
                if peer["name"] == name:
                    return int(peer["pid"])
        raise LookupError(name)

    def processes(self) -> dict[str, int]:
        """The daemon's child processes by name ("core", "connmgr", each mini-redirector's
        name) -> pid, from the supervisor's children (their command lines name them). A warm
        standby keeps ``--standby`` in its command line once promoted: a name served by
        standbys only is the oldest of them (the promoted one; its replacement came after)."""
        out = subprocess.run(
            ["ps", "-ww", "--ppid", str(self.pid), "-o", "pid=,etimes=,args="],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        found: dict[str, int] = {}
        standby: dict[str, tuple[int, int]] = {}  # name -> (age in seconds, pid): the oldest
        for line in out.splitlines():
            fields = line.split()
            if len(fields) < 3 or "rdbss.actors.process" not in fields:
                continue
            pid, age = int(fields[0]), int(fields[1])
            name = fields[fields.index("rdbss.actors.process") + 2]
            if "--standby" not in fields:
                found[name] = pid
            elif age >= standby.get(name, (-1, 0))[0]:
                standby[name] = (age, pid)
        for name, (_, pid) in standby.items():
            found.setdefault(name, pid)
        return found

    def log(self) -> str:
        path = self.runtime_dir / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/status (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for {pid}")


def wait_until(predicate: Callable[[], bool], timeout: float, poll: float = 0.1) -> None:
    """Poll ``predicate`` until it holds; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise AssertionError("condition not reached in time")


def write_config(
    base: Path,
    extra: str = "",
    log_level: str = "info",
    idle_timeout: float = 300.0,
    metrics_port: int = 0,
    daemon_extra: str = "",
    local_extra: str = "",
    connect_timeout: float = 5.0,
) -> tuple[Path, Path]:
    share = base / "share"
    share.mkdir(parents=True, exist_ok=True)
    cfg = base / "rdbss.toml"
    cfg.write_text(
        f"""[daemon]
runtime_dir = "{base / "run"}"
request_timeout = 10.0
idle_timeout = {idle_timeout}
metrics_port = {metrics_port}
{daemon_extra}
log_level = "{log_level}"
connect_timeout = {connect_timeout}

[[minirdr]]
name = "local"
kind = "local"
server = "local"
{local_extra}
[minirdr.shares]
data = "{share}"
{extra}"""
    )
    return cfg, share


@contextlib.contextmanager
def running_daemon(
    extra_config: str = "",
    log_level: str = "info",
    idle_timeout: float = 300.0,
    metrics_port: int = 0,
    daemon_extra: str = "",
    local_extra: str = "",
    connect_timeout: float = 5.0,
) -> Iterator[Daemon]:
    # short path: ipc socket paths are limited to 107 characters
    base = Path(tempfile.mkdtemp(prefix="rdt-", dir="/tmp"))
    cfg, share = write_config(
        base,
        extra_config,
        log_level,
        idle_timeout,
        metrics_port,
        daemon_extra,
        local_extra,
        connect_timeout,
    )
    config = load_config(cfg)
    pid = start_detached(cfg, config)
    try:
        yield Daemon(base, cfg, config, share, pid)
    finally:
        stop_by_pid(config, pid)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def daemon_on_config(config_path: Path) -> Iterator[int]:
    """Start a daemon on ``config_path`` (detached, as ``rdbss daemon start`` does: returns once
    it is ready) and yield its pid; stop it by that pid when the block ends."""
    config = load_config(config_path)
    pid = start_detached(config_path, config)
    try:
        yield pid
    finally:
        stop_by_pid(config, pid)


def stop_by_pid(config: Config, pid: int) -> None:
    """Stop the daemon ``pid`` of ``config``: an orderly stop first (bounded), then SIGKILL to
    its whole session, and wait (bounded) until its pid file is gone."""
    try:
        stop_daemon(config.runtime_dir, timeout=STOP_DEADLINE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    # the daemon runs in its own session: kill whatever of that group is left
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + PID_FILE_DEADLINE_S
    while read_pid(config.runtime_dir) is not None and time.monotonic() < deadline:
        time.sleep(0.05)


class UnreadingClient:
    """A client that sends reads and never reads the answers: its socket takes one message at
    a time into its queue and a small kernel buffer, so what it does not read stays with the
    daemon (a hostile or stuck client)."""

    def __init__(self, runtime_dir: Path) -> None:
        import zmq

        from rdbss.actors.bus import Endpoints, client_identity, process_start_time

        self._zctx = zmq.Context()
        self.sock = self._zctx.socket(zmq.DEALER)
        pid = os.getpid()
        ident = client_identity(pid, process_start_time(pid) or 0, os.urandom(4))
        self.sock.setsockopt(zmq.IDENTITY, ident)
        self.sock.setsockopt(zmq.RCVHWM, 1)
        self.sock.setsockopt(zmq.RCVBUF, 4096)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(Endpoints.in_dir(runtime_dir).client)
        self._ids = 0

    def _send(self, ctx: Any) -> None:
        from rdbss.wire.codec import Codec
        from rdbss.wire.framing import pack_frames

        self._ids += 1
        ctx.request_id = self._ids
        self.sock.send_multipart(pack_frames(Codec(), ctx))

    def open(self, path: str) -> int:
        from rdbss import requests as rq
        from rdbss.wire.codec import Codec
        from rdbss.wire.framing import unpack_frames

        self._send(rq.create(path, 10_000).ctx)
        if not self.sock.poll(10_000):
            raise TimeoutError("no answer to the create")
        done, _ = unpack_frames(Codec(), self.sock.recv_multipart(copy=False))
        return int(done.result["fobx"])  # type: ignore[union-attr]

    def flood(self, fobx: int, count: int, length: int) -> None:
        from rdbss import requests as rq

        for k in range(count):
            self._send(rq.read(fobx, 0, length, 60_000).ctx)
            if k % 64 == 63:
                time.sleep(0.001)

    def close(self) -> None:
        self.sock.close(0)
        self._zctx.term()

"""Carrying out a fault schedule: the timeline of a run's steps (with the undo of every step that
has a ``duration_s`` and the resets of a reset storm), and the actions themselves on real parts:
fault rules of a ``faulty`` mini-redirector, signals to a process of the run's own daemon (a
mini-redirector or the connection manager, checked by process group so nothing else is hit),
settings of a ``FaultProxy``, and restarts of a server process the run started.

Actions:
- ``set_faults`` / ``clear_faults``: rules of a faulty mini-redirector
  (rdbss/minirdrs/faulty/faults.py);
- ``kill`` / ``stop`` / ``cont``: SIGKILL / SIGSTOP / SIGCONT; ``minirdr = "connmgr"`` names the
  connection manager; the supervisor restarts a killed process;
- ``proxy``: FaultProxy settings (latency_ms, jitter_ms, bandwidth, blackhole, refuse, reset);
  with ``duration_s`` the changed settings go back to their values before the step;
- ``reset_storm``: every ``interval_s`` for ``duration_s``, RST every connection of the proxy;
- ``restart``: stop a ``[[setup.server]]`` process (SIGTERM, then SIGKILL) and start it again;
- ``disk_full``: fill the volume of ``path`` with one file until ENOSPC; with ``duration_s`` the
  file goes again. Refused on a volume with more than 1 GiB free: put the share (or the server's
  root) on a ``[[setup.volume]]``, a small tmpfs the run mounts;
- ``command``: run ``command`` (argv, placeholders allowed; 30 s at most), e.g. Samba's
  ``smbcontrol smbd close-share NAME`` to delete the SMB sessions' tree connects.

One thread carries out the timeline in order, so a step that takes time (a restart waits until
the server listens) delays the steps after it; the report records when each step really ran.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import msgspec

from rdbss.client import Client
from rdbss.experiment.daemon import substitute
from rdbss.experiment.schema import FaultStep, ServerSpec
from rdbss.faultproxy import FaultProxy

SERVER_READY_S = 20.0
SERVER_STOP_S = 5.0
COMMAND_TIMEOUT_S = 30.0
FILL_NAME = ".rdbss-experiment-fill"
FILL_LIMIT = 1 << 30  # bytes free on a volume disk_full agrees to fill
FILL_CHUNK = 1 << 20


class StepResult(msgspec.Struct):
    index: int
    t: float
    action: str
    target: str
    what: str
    at: float | None = None  # seconds since the load started; None: not run
    ended_at: float | None = None  # when its undo ran (a step with duration_s)
    ok: bool = False
    detail: str = ""


class Entry(msgspec.Struct, frozen=True, order=True):
    """One moment of the timeline: ``do`` a step, ``undo`` it, or one ``reset`` of a storm."""

    t: float
    order: int
    what: str  # do | undo | reset
    step: int  # the step's position in the experiment's (sorted) faults


def timeline(steps: tuple[FaultStep, ...]) -> list[Entry]:
    """The run's moments in time order. Pure."""
    entries: list[Entry] = []
    for pos, step in enumerate(steps):
        entries.append(Entry(step.t, len(entries), "do", pos))
        if step.action == "reset_storm" and step.duration_s is not None:
            k = 1
            while k * step.interval_s < step.duration_s - 1e-9:
                entries.append(Entry(step.t + k * step.interval_s, len(entries), "reset", pos))
                k += 1
        elif step.duration_s is not None:
            entries.append(Entry(step.t + step.duration_s, len(entries), "undo", pos))
    return sorted(entries)


def proc_identity(pid: int) -> tuple[int, int] | None:
    """(process group, start time) of a live process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[2]), int(fields[19])


class ServerProcess:
    """A server the run starts (``[[setup.server]]``): in its own session, output to a log."""

    def __init__(self, spec: ServerSpec, argv: list[str], ready: str, log_path: Path) -> None:
        self.spec = spec
        self.argv = argv
        host, _, port = ready.rpartition(":")
        self.ready = (host, int(port))
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + SERVER_READY_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server {self.spec.name} exited with {self.proc.returncode}; "
                    f"see {self.log_path.name}"
                )
            try:
                socket.create_connection(self.ready, timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(
                        f"server {self.spec.name} not listening on {self.ready} after "
                        f"{SERVER_READY_S:.0f} s"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(SERVER_STOP_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(SERVER_STOP_S)
        if self._log is not None:
            self._log.close()
            self._log = None


def fill(folder: Path) -> str:
    """Write one file into ``folder`` until its volume is full (ENOSPC)."""
    import errno

    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    if free > FILL_LIMIT:
        raise RuntimeError(
            f"{folder} has {free >> 20} MiB free: disk_full fills only a small volume "
            "(put the share on a [[setup.volume]])"
        )
    written = 0
    chunk = b"\0" * FILL_CHUNK
    with (folder / FILL_NAME).open("wb", buffering=0) as f:
        for size in (FILL_CHUNK, 4096, 1):
            try:
                while True:
                    written += f.write(chunk[:size])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return f"filled {written >> 10} KiB, the volume is full"


class FaultActions:
    """The actions of one run, on its daemon (``daemon_pid``), proxies and servers."""

    def __init__(
        self,
        daemon_pid: Callable[[], int | None],
        proxies: Mapping[str, FaultProxy],
        servers: Mapping[str, ServerProcess],
        replacements: Mapping[str, Any] | None = None,
    ) -> None:
        self.daemon_pid = daemon_pid
        self.proxies = proxies
        self.servers = servers
        self.replacements = replacements if replacements is not None else {}
        self.stopped: dict[str, tuple[int, tuple[int, int]]] = {}  # name -> pid, identity
        self._before: dict[int, dict[str, Any]] = {}  # step index -> proxy settings it changed

    def do(self, client: Client, step: FaultStep) -> str:
        if step.action == "set_faults":
            result = client.set_faults(step.target, [dict(r) for r in step.rules], step.seed)
            return f"accepted: {len(result['rules'])} rule(s), seed {result['seed']}"
        if step.action == "clear_faults":
            client.set_faults(step.target, [], step.seed)
            return "rules cleared"
        if step.action == "proxy":
            proxy = self.proxies[step.target]
            settings = dict(step.settings)
            old = proxy.settings.to_dict()
            self._before[step.index] = {k: old[k] for k in settings if k in old}
            proxy.set(**settings)
            return "proxy settings: " + ", ".join(f"{k}={v}" for k, v in settings.items())
        if step.action == "reset_storm":
            return f"reset {self.proxies[step.target].reset()} connection(s)"
        if step.action == "restart":
            server = self.servers[step.target]
            started = time.monotonic()
            server.stop()
            server.start()
            return f"restarted, listening again after {time.monotonic() - started:.2f} s"
        if step.action == "disk_full":
            return fill(Path(substitute(step.path, self.replacements)))
        if step.action == "command":
            return self.run_command([str(a) for a in substitute(step.command, self.replacements)])
        if step.action == "cont":
            return self.cont(step.target)
        pid = self.peer_pid(client, step.target)
        if step.action == "kill":
            os.kill(pid, signal.SIGKILL)
            return f"SIGKILL pid {pid}"
        identity = proc_identity(pid)
        os.kill(pid, signal.SIGSTOP)
        if identity is not None:
            self.stopped[step.target] = (pid, identity)
        return f"SIGSTOP pid {pid}"

    def undo(self, client: Client, step: FaultStep) -> str:
        """End a step's fault after its ``duration_s``."""
        if step.action == "set_faults":
            client.set_faults(step.target, [], None)
            return "rules cleared"
        if step.action == "stop":
            return self.cont(step.target)
        if step.action == "proxy":
            before = self._before.pop(step.index, {})
            if before:
                self.proxies[step.target].set(**before)
            return "proxy settings back: " + ", ".join(f"{k}={v}" for k, v in before.items())
        if step.action == "disk_full":
            path = Path(substitute(step.path, self.replacements)) / FILL_NAME
            path.unlink(missing_ok=True)
            return "fill removed"
        return "nothing to undo"

    @staticmethod
    def run_command(argv: list[str]) -> str:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        output = " ".join((proc.stdout + proc.stderr).split())[-200:]
        return f"exit {proc.returncode}" + (f": {output}" if output else "")

    def reset(self, step: FaultStep) -> str:
        return f"reset {self.proxies[step.target].reset()} connection(s)"

    def peer_pid(self, client: Client, name: str) -> int:
        for peer in client.status()["peers"]:
            if peer.get("name") == name and peer.get("pid"):
                pid = int(peer["pid"])
                identity = proc_identity(pid)
                # only a process of this daemon (its own session and group)
                if identity is None or identity[0] != self.daemon_pid():
                    raise LookupError(f"{name} (pid {pid}) is not a process of this daemon")
                return pid
        raise LookupError(f"no running process named {name!r} in the daemon's status")

    def cont(self, name: str) -> str:
        entry = self.stopped.pop(name, None)
        if entry is None:
            return "nothing stopped by this experiment"
        pid, identity = entry
        if proc_identity(pid) != identity:
            return f"pid {pid} is gone (the supervisor replaced it)"
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        return f"SIGCONT pid {pid}"

    def cont_all(self) -> None:
        for name in list(self.stopped):
            self.cont(name)

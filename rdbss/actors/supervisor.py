"""The supervisor: the daemon's main process.

It owns the runtime directory (lock, pid, effective config) and runs the processes that
rdbss.model.restart describes as child specifications: the core, the connection manager and one
process per configured mini-redirector (on a node, the mini-redirectors only). When one exits,
``decide_restart`` says what to do (restart now or after a back-off, or leave it down past the
restart intensity, which ``status`` then shows) and the supervisor applies it. When a peer dies
it tells the core at once (rdbss.actors.control), so that peer's in-flight requests complete
with STATUS_CONNECTION_DISCONNECTED instead of waiting out their deadlines. SIGTERM stops
gracefully: the process serving the bus (the core) drains first, then the others stop.

A peer whose alive file (touched by its watchdog thread, rdbss.actors.peer) is older than
``ALIVE_STALE_S`` is frozen or stuck: it is killed, and restarted like one that died. With
``warm_standby`` ([daemon], on by default) each mini-redirector has a standby process, started
and imported ahead, that takes over when it dies (rdbss.actors.process); the next standby starts
``STANDBY_DELAY_S`` later, so it does not take CPU from the one taking over.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rdbss.actors.bus import Endpoints, alive_file, daemon_pid, ensure_runtime_dir
from rdbss.actors.control import peer_down, registered_peers
from rdbss.actors.peer import ALIVE_STALE_S, RESET_EXIT
from rdbss.actors.process import STANDBY_GO
from rdbss.config import Config
from rdbss.core.types import CONNMGR
from rdbss.logs import rotate
from rdbss.model.restart import (
    ChildSpec,
    RestartDecision,
    RestartPolicy,
    child_specs,
    decide_restart,
    minirdr_spec,
)

log = logging.getLogger("rdbss.supervisor")

READY_TIMEOUT_S = 30.0
HEALTH_INTERVAL_S = 1.0  # how often the supervisor asks the core who is registered
HANG_GRACE_S = 6.0  # alive but unregistered this long (the core drops a peer after 3 s of
# silence): the process is hung and is killed, then restarted under the policy
CORE_FAILURES = 3  # the core did not answer this many health checks in a row: killed
ALIVE_INTERVAL_S = 0.25  # how often the peers' alive files are looked at
STANDBY_DELAY_S = 1.0  # a new standby starts this long after the last one took over
LOOP_S = 0.05  # the supervisor's loop: how soon an exit is seen


def sd_notify(state: str) -> bool:
    """Tell systemd (Type=notify) about the daemon's state; a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError as exc:
            log.warning("cannot notify systemd: %s", exc)
            return False
    return True


#: [daemon] settings a reload cannot change in a running daemon
_RESTART_ONLY = (
    "log_level",
    "log_format",
    "log_file",
    "log_file_max_mib",
    "log_file_backups",
    "request_timeout",
    "connect_timeout",
    "idle_timeout",
    "metrics_port",
    "metrics_host",
    "provider_order",
    "secret_key",
    "peer_listen",
    "client_listen",
    "authorized_keys",
    "remote_client_grace",
    "node",
    "close_delay",
    "max_delayed_closes",
    "cache_mib",
    "write_behind",
    "dirty_mib",
    "attr_cache_entries",
    "attr_max_age",
    "max_client_requests",
    "max_client_unread_mib",
)


class ReloadRefused(ValueError):
    """The new configuration is invalid: nothing of it was applied."""


class AlreadyRunning(RuntimeError):
    def __init__(self, pid: int | None) -> None:
        super().__init__(f"an rdbss daemon is already running (pid {pid})")
        self.pid = pid


__all__ = [
    "AlreadyRunning",
    "Child",
    "ReloadRefused",
    "RestartPolicy",
    "Supervisor",
    "apply_decision",
    "read_pid",
    "reload_daemon",
    "sd_notify",
    "start_detached",
    "stop_daemon",
]


@dataclass(slots=True)
class Child:
    """A supervised process: its spec (rdbss.model.restart) and its running state."""

    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    restarts: tuple[float, ...] = ()  # the counted restarts within the policy's period
    next_start: float = 0.0
    gave_up: bool = False  # it stays down (past the restart intensity, or by its restart type)
    started_at: float = 0.0
    last_registered: float = 0.0
    starts: int = 0
    reloads: int = 0  # starts that were a reload's, not a restart
    last_exit: str = ""
    connected: bool | None = None  # on a node: whether the process hears the core
    standby: subprocess.Popen[bytes] | None = None  # a warm standby (mini-redirectors)
    standby_due: float = 0.0  # when to start the next standby

    @property
    def role(self) -> str:
        return self.spec.role.value

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


def apply_decision(child: Child, decision: RestartDecision, now: float) -> None:
    """Apply to ``child`` what rdbss.model.restart.decide_restart answered for its exit at
    ``now``: when to start it again, or that it stays down."""
    child.restarts = decision.history
    if not decision.restart:
        child.gave_up = True  # it stays down
        log.error("%s %s: %s", child.role, child.name, decision.reason)
        return
    child.next_start = now + decision.delay_s
    if decision.clean:
        log.info("%s %s restarts clean (%s)", child.role, child.name, decision.reason)
        return
    log.info(
        "restarting %s %s in %.2f s (%s)", child.role, child.name, decision.delay_s, decision.reason
    )


def read_pid(runtime_dir: Path) -> int | None:
    """The pid of the live daemon owning ``runtime_dir``, or None."""
    return daemon_pid(runtime_dir)


@contextlib.contextmanager
def runtime_lock(runtime_dir: Path) -> Iterator[None]:
    """Exclusive ownership of a runtime directory; refuses a second daemon (an ipc bind would
    silently steal the live daemon's sockets)."""
    fd = os.open(runtime_dir / "daemon.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(read_pid(runtime_dir)) from None
        yield
    finally:
        os.close(fd)


class Supervisor:
    def __init__(self, config: Config, policy: RestartPolicy | None = None) -> None:
        self.config = config
        self.policy = policy or RestartPolicy()
        self.runtime_dir = config.runtime_dir
        self.endpoints = Endpoints.in_dir(self.runtime_dir)
        # a node (config [node]) runs mini-redirectors only, for the core of another host
        self.node = config.node is not None
        self.children = [Child(spec) for spec in child_specs(config, connmgr=CONNMGR)]
        self._stop = threading.Event()
        self._reload_requested = threading.Event()
        self._next_health = 0.0
        self._next_rotate = 0.0
        self._reloads = 0  # answered reloads (reload.json's seq)
        self._next_alive = 0.0
        self._core_failures = 0

    # ---------------------------------------------------------------- lifecycle
    def run(self) -> int:
        ensure_runtime_dir(self.runtime_dir)
        with runtime_lock(self.runtime_dir):
            self._prepare()
            signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
            signal.signal(signal.SIGINT, lambda *_: self._stop.set())
            signal.signal(signal.SIGHUP, lambda *_: self._reload_requested.set())
            try:
                self._start_all()
                if not self._wait_ready():
                    log.error("daemon did not become ready in %.0f s", READY_TIMEOUT_S)
                    return 1
                (self.runtime_dir / "ready").write_text(str(os.getpid()))
                log.info("daemon ready pid=%d runtime_dir=%s", os.getpid(), self.runtime_dir)
                sd_notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving")
                while not self._stop.wait(LOOP_S):
                    if self._reload_requested.is_set():
                        self._reload_requested.clear()
                        self.reload()
                    self._watch()
                    self._check_alive()
                    self._check_health()
                    self._rotate_log()
                    self._keep_standbys()
                return 0
            finally:
                sd_notify("STOPPING=1")
                self._stop_all()
                self._cleanup()

    def _prepare(self) -> None:
        for stale in ("ready", "rdbss.sock", "bus.sock", "reload.json"):
            with contextlib.suppress(FileNotFoundError):
                (self.runtime_dir / stale).unlink()
        self._write_config()
        (self.runtime_dir / "daemon.pid").write_text(str(os.getpid()))
        peers = self.runtime_dir / "peers"  # the peers' alive files
        peers.mkdir(mode=0o700, exist_ok=True)
        for old in peers.iterdir():
            old.unlink()

    def _write_state(self) -> None:
        """The supervisor's view of its processes, for ``rdbss status`` (supervisor.json)."""
        now = time.monotonic()
        state = [
            {
                "name": c.name,
                "role": c.role,
                "pid": c.pid,
                "state": "gave up"
                if c.gave_up
                else ("running" if c.proc is not None else "restarting"),
                "restarts": max(0, c.starts - 1 - c.reloads),
                "restart_in_s": round(max(0.0, c.next_start - now), 2)
                if c.proc is None and not c.gave_up
                else None,
                "last_exit": c.last_exit,
                "connected": c.connected,
            }
            for c in self.children
        ]
        tmp = self.runtime_dir / "supervisor.json.tmp"
        node = {"core": self.config.node.core} if self.config.node is not None else None
        tmp.write_text(json.dumps({"pid": os.getpid(), "children": state, "node": node}))
        os.replace(tmp, self.runtime_dir / "supervisor.json")

    def _write_config(self) -> None:
        cfg = self.runtime_dir / "config.json"
        tmp = self.runtime_dir / "config.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.config.to_json())
        os.replace(tmp, cfg)

    def _cleanup(self) -> None:
        for name in (
            "ready",
            "daemon.pid",
            "config.json",
            "rdbss.sock",
            "bus.sock",
            "supervisor.json",
            "reload.json",
        ):
            with contextlib.suppress(FileNotFoundError):
                (self.runtime_dir / name).unlink()
        log.info("daemon stopped")

    # ---------------------------------------------------------------- children
    def _popen(self, child: Child, *, standby: bool = False) -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable,
            "-m",
            "rdbss.actors.process",
            child.role,
            child.name,
            str(self.runtime_dir),
        ]
        if standby:
            cmd.append("--standby")
        # the child stops when this process is gone (rdbss.actors.process.die_with_supervisor)
        env = {**os.environ, "RDBSS_SUPERVISOR_PID": str(os.getpid())}
        stdin = subprocess.PIPE if standby else subprocess.DEVNULL
        return subprocess.Popen(cmd, stdin=stdin, close_fds=True, env=env)

    def _spawn(self, child: Child) -> None:
        now = time.monotonic()
        child.proc = self._take_standby(child)
        how = "took over" if child.proc is not None else "started"
        if child.proc is None:
            child.proc = self._popen(child)
        child.standby_due = now + STANDBY_DELAY_S
        child.started_at = now
        child.starts += 1
        self._write_state()
        log.info("%s %s %s pid=%d", how, child.role, child.name, child.proc.pid)

    def _take_standby(self, child: Child) -> subprocess.Popen[bytes] | None:
        """The child's warm standby, told to serve; None when it has none alive."""
        standby, child.standby = child.standby, None
        if standby is None or standby.poll() is not None or standby.stdin is None:
            return None
        try:
            standby.stdin.write(f"{STANDBY_GO}\n".encode())
            standby.stdin.close()
        except OSError:  # it died just now
            return None
        return standby

    def _keep_standbys(self) -> None:
        """Start a warm standby for each running mini-redirector that has none (when due)."""
        if not self.config.warm_standby:
            return
        now = time.monotonic()
        for child in self.children:
            if not child.spec.standby or child.proc is None or child.gave_up:
                continue
            if child.standby is not None and child.standby.poll() is not None:
                child.standby = None  # it died waiting: start another
            if child.standby is None and now >= child.standby_due:
                child.standby = self._popen(child, standby=True)
                log.info("standby for %s pid=%d", child.name, child.standby.pid)

    def _drop_standby(self, child: Child) -> None:
        standby, child.standby = child.standby, None
        if standby is not None:
            if standby.stdin is not None:
                with contextlib.suppress(OSError):
                    standby.stdin.close()  # end of input: it exits
            with contextlib.suppress(ProcessLookupError):
                standby.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                standby.wait(2.0)

    def _start_all(self) -> None:
        """The process serving the bus first (on a node there is none here), the others once
        its socket exists."""
        for first in [c for c in self.children if c.spec.serves_bus]:
            self._spawn(first)
            socket_path = self.runtime_dir / "bus.sock"
            deadline = time.monotonic() + 10.0
            while not socket_path.exists():
                if time.monotonic() > deadline or (first.proc and first.proc.poll() is not None):
                    raise RuntimeError(f"the {first.role} process did not start")
                time.sleep(0.01)
        for child in self.children:
            if not child.spec.serves_bus:
                self._spawn(child)

    def _bus_server(self) -> Child | None:
        """The process the others connect to (the core); None on a node."""
        return next((c for c in self.children if c.spec.serves_bus), None)

    def _wait_ready(self) -> bool:
        expected = {c.name for c in self.children if c.spec.peer}
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and not self._stop.is_set():
            if self.node:
                # ready when every process runs its loop; reaching the core is not required
                # (the core's host may come later): `daemon status` shows who is connected
                if all(self._alive(c) is not None for c in self.children):
                    return True
                if any(c.proc is not None and c.proc.poll() is not None for c in self.children):
                    log.error("a mini-redirector exited during start-up")
                    return False
                time.sleep(0.05)
                continue
            for child in self.children:
                if child.proc is not None and child.proc.poll() is not None:
                    log.error(
                        "%s %s exited during start-up (code %s)",
                        child.role,
                        child.name,
                        child.proc.returncode,
                    )
                    return False
            try:
                if expected <= registered_peers(self.runtime_dir, timeout=2.0).keys():
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def _watch(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.gave_up:
                continue
            if child.proc is not None:
                code = child.proc.poll()
                if code is None:
                    continue
                log.warning(
                    "%s %s pid=%d exited code=%s", child.role, child.name, child.proc.pid, code
                )
                child.proc = None
                decision = decide_restart(
                    child.spec,
                    child.restarts,
                    now,
                    self.policy,
                    exit_code=code,
                    dropped=code == RESET_EXIT,
                )
                if decision.tell_core:
                    self._tell_core_peer_down(child.name, f"process exited with code {code}")
                apply_decision(child, decision, now)
                self._write_state()
            elif now >= child.next_start:
                self._spawn(child)

    def reload(self) -> None:
        """Re-read the configuration file (SIGHUP, ``rdbss daemon reload``) and answer in
        reload.json (:func:`reload_daemon` waits for it)."""
        self._reloads += 1
        try:
            ok, message = True, self._apply_reload()
        except ReloadRefused as exc:
            ok, message = False, str(exc)
            log.error("reload: configuration refused, keeping the running one: %s", exc)
        answer = {"seq": self._reloads, "ok": ok, "message": message}
        tmp = self.runtime_dir / "reload.json.tmp"
        tmp.write_text(json.dumps(answer))
        os.replace(tmp, self.runtime_dir / "reload.json")

    def _apply_reload(self) -> str:
        """Validate the whole new configuration first (every mini-redirector's options are
        typed: rdbss.config_schema); only then apply the mini-redirector changes: start the
        added ones, stop the removed ones, restart the changed ones. A refused file changes
        nothing. Processes (and connections) whose configuration did not change are untouched.
        A reload is not a restart: it is not counted as one, and it clears the back-off and
        last exit of the processes it restarts."""
        from rdbss.config import ConfigError, load_config

        if self.config.source is None:
            return "running the embedded default; nothing to re-read"
        try:
            new = load_config(self.config.source)
        except (ConfigError, OSError) as exc:
            raise ReloadRefused(str(exc)) from None
        if not new.minirdrs:
            raise ReloadRefused(f"{self.config.source}: needs at least one [[minirdr]] table")
        new.runtime_dir = self.config.runtime_dir
        pending = []
        for key in _RESTART_ONLY:
            if getattr(new, key) != getattr(self.config, key):
                log.warning("reload: [daemon] %s changed; takes effect after a restart", key)
                pending.append(key)
                setattr(new, key, getattr(self.config, key))
        old = {m.name: m for m in self.config.minirdrs}
        wanted = {m.name: m for m in new.minirdrs}
        self.config = new
        self._write_config()  # children read it when they start
        done: dict[str, list[str]] = {"started": [], "restarted": [], "stopped": []}
        for child in [c for c in self.children if c.spec.reloadable]:
            entry = wanted.get(child.name)
            if entry is not None and entry == old.get(child.name):
                continue
            log.info(
                "reload: %s mini-redirector %s",
                "stopping" if entry is None else "restarting changed",
                child.name,
            )
            self._terminate([child], child.spec.shutdown_s)
            self._drop_standby(child)  # it may have imported another kind
            if child.proc is not None:
                self._tell_core_peer_down(child.name, "configuration reloaded")
            child.proc = None
            if entry is None:
                self.children.remove(child)
                done["stopped"].append(child.name)
            else:
                child.restarts = ()
                child.gave_up = False
                child.last_exit = ""
                child.reloads += 1
                self._spawn(child)
                done["restarted"].append(child.name)
        for name in wanted.keys() - old.keys():
            log.info("reload: starting new mini-redirector %s", name)
            child = Child(minirdr_spec(name))
            self.children.append(child)
            self._spawn(child)
            done["started"].append(name)
        parts = [f"{what} {', '.join(sorted(names))}" for what, names in done.items() if names]
        if pending:
            parts.append(f"[daemon] {', '.join(pending)} take effect after a restart")
        return "; ".join(parts) or "no change"

    def _rotate_log(self) -> None:
        """Rotate the configured log file by size, at most once a second."""
        now = time.monotonic()
        if not self.config.log_file or now < self._next_rotate:
            return
        self._next_rotate = now + 1.0
        limit = int(self.config.log_file_max_mib * (1 << 20))
        if rotate(Path(self.config.log_file), limit, self.config.log_file_backups):
            log.info("log file rotated: %s", self.config.log_file)

    def _check_alive(self) -> None:
        """Kill a peer whose alive file went stale (frozen or stuck; see the module docstring).
        Before its first touch a peer is still starting: the core check below covers it."""
        now = time.monotonic()
        if self.node or now < self._next_alive:
            return
        self._next_alive = now + ALIVE_INTERVAL_S
        for child in self.children:
            if not child.spec.peer or child.proc is None or child.proc.poll() is not None:
                continue
            alive = self._alive(child)
            if alive is not None and alive[0] > ALIVE_STALE_S:
                log.error(
                    "%s %s pid=%d is frozen or stuck (alive %.1f s ago); killing it",
                    child.role,
                    child.name,
                    child.proc.pid,
                    alive[0],
                )
                self._kill(child)

    def _check_health(self) -> None:
        """Find hung processes: a process that is alive but stopped answering (no heartbeats,
        so the core dropped it) is killed; the exit then goes through the restart policy."""
        now = time.monotonic()
        if now < self._next_health:
            return
        self._next_health = now + HEALTH_INTERVAL_S
        if self.node:
            self._check_node_health(now)
            return
        core = self._bus_server()
        if core is None or core.proc is None or core.proc.poll() is not None:
            return
        try:
            registered = registered_peers(self.runtime_dir, timeout=1.0)
        except OSError as exc:
            self._core_failures += 1
            log.warning("core did not answer a health check (%d): %s", self._core_failures, exc)
            if self._core_failures >= CORE_FAILURES:
                log.error("core pid=%d is hung; killing it", core.proc.pid)
                self._kill(core)
                self._core_failures = 0
            return
        self._core_failures = 0
        now = time.monotonic()
        for child in self.children:
            if not child.spec.peer or child.proc is None or child.proc.poll() is not None:
                continue
            if registered.get(child.name) == child.proc.pid:
                child.last_registered = now
            elif now - max(child.started_at, child.last_registered) > HANG_GRACE_S:
                log.error(
                    "%s %s pid=%d stopped answering; killing it",
                    child.role,
                    child.name,
                    child.proc.pid,
                )
                self._kill(child)

    def _alive(self, child: Child) -> tuple[float, bool] | None:
        """(age in seconds, hears the core) from the child's alive file, if it is this pid's."""
        path = alive_file(self.runtime_dir, child.name)
        try:
            data = json.loads(path.read_text())
            age = time.time() - path.stat().st_mtime
        except (OSError, ValueError):
            return None
        if child.proc is None or data.get("pid") != child.proc.pid:
            return None
        return age, bool(data.get("connected"))

    def _check_node_health(self, now: float) -> None:
        """On a node nobody local asks the processes anything, so each touches its alive file
        every heartbeat from its socket loop; a stale file means a hung loop: killed."""
        changed = False
        for child in self.children:
            if child.proc is None or child.proc.poll() is not None:
                continue
            alive = self._alive(child)
            connected = alive[1] if alive is not None else None
            if connected != child.connected:
                child.connected = connected
                changed = True
            fresh = alive is not None and alive[0] < HANG_GRACE_S / 2
            if fresh:
                child.last_registered = now
            elif now - max(child.started_at, child.last_registered) > HANG_GRACE_S:
                log.error("minirdr %s pid=%d stopped answering; killing it", child.name, child.pid)
                self._kill(child)
        if changed:
            self._write_state()

    @staticmethod
    def _kill(child: Child) -> None:
        if child.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()

    def _tell_core_peer_down(self, name: str, reason: str) -> None:
        if self.node:  # the core is on another host: it notices the silence (heartbeats)
            return
        try:
            peer_down(self.runtime_dir, name, reason, timeout=2.0)
        except OSError as exc:
            log.warning("could not tell the core that %s is down: %s", name, exc)

    def _stop_all(self) -> None:
        for child in self.children:
            self._drop_standby(child)
        # the bus server (the core) first: it drains in-flight requests, then the others
        for group in (
            [c for c in self.children if c.spec.serves_bus],
            [c for c in self.children if not c.spec.serves_bus],
        ):
            if group:
                self._terminate(group, max(c.spec.shutdown_s for c in group))

    @staticmethod
    def _terminate(children: list[Child], timeout: float) -> None:
        procs = [c.proc for c in children if c.proc is not None and c.proc.poll() is None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("pid %d did not stop; killing it", proc.pid)
                proc.kill()
                proc.wait(5.0)


def start_detached(
    config_path: Path | None, config: Config, log_file: IO[bytes] | None = None
) -> int:
    """Start ``rdbss daemon run`` in the background and return its pid once it is ready."""
    ensure_runtime_dir(config.runtime_dir)
    pid = read_pid(config.runtime_dir)
    if pid is not None:
        raise AlreadyRunning(pid)
    with contextlib.suppress(FileNotFoundError):
        (config.runtime_dir / "ready").unlink()
    log_path = config.runtime_dir / "daemon.log"
    cmd = [sys.executable, "-m", "rdbss.cli"]
    if config_path is not None:
        cmd += ["--config", str(config_path)]
    cmd += ["daemon", "run", "--log-format", config.log_format]  # the file's, or --log-format
    out = log_file or open(log_path, "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        if log_file is None:
            out.close()
    deadline = time.monotonic() + READY_TIMEOUT_S + 5.0
    ready = config.runtime_dir / "ready"
    while time.monotonic() < deadline:
        if ready.exists():
            return proc.pid
        code = proc.poll()
        if code is not None:
            raise RuntimeError(f"the daemon exited during start-up (code {code}); see {log_path}")
        time.sleep(0.02)
    proc.terminate()
    raise TimeoutError(f"the daemon did not become ready in time; see {log_path}")


def stop_daemon(runtime_dir: Path, timeout: float = 30.0) -> int | None:
    """Ask the daemon to stop (SIGTERM) and wait until it has. Returns its pid, or None when no
    daemon was running."""
    pid = read_pid(runtime_dir)
    if pid is None:
        return None
    if pid > 0:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_pid(runtime_dir) is None:  # the lock is released when the supervisor exits
            if pid > 0:
                # reap it if it is our child (tests start it that way); harmless otherwise
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            return pid
        time.sleep(0.05)
    raise TimeoutError(f"the daemon (pid {pid}) did not stop in {timeout:.0f} s")


def reload_daemon(runtime_dir: Path, pid: int, timeout: float = 30.0) -> tuple[bool, str]:
    """Ask the daemon ``pid`` to reload (SIGHUP) and wait for its answer: (applied, what it
    did or why the configuration was refused)."""
    answer = runtime_dir / "reload.json"

    def seq() -> int:
        try:
            return int(json.loads(answer.read_text())["seq"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    before = seq()
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if seq() > before:
            data = json.loads(answer.read_text())
            return bool(data["ok"]), str(data["message"])
        time.sleep(0.05)
    raise TimeoutError(f"the daemon (pid {pid}) did not answer the reload in {timeout:.0f} s")

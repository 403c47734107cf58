"""Real test servers on free loopback ports: Samba smbd, OpenSSH sshd and wsgidav (WebDAV).

PYTEST_DONT_REWRITE (imported by test modules before pytest_plugins registers it)

Every server gets its own configuration, state and served folder under a caller-given
``base_dir``, listens on 127.0.0.1 only, runs as a child of the test process in its own session
(``start_new_session=True``), and is stopped by its process id. Every wait has a deadline.

Classes (all context managers; ``start()`` returns ``self``, ``stop()`` is idempotent,
``kill()`` SIGKILLs the server and everything it spawned, to simulate a crash; ``restart()``
does that (or a SIGTERM) and starts it again on the same port, to simulate a server that came
back):

- :class:`SambaServer`   host, port, share_name, share_path, user, password, log_path, conf_path,
                         encrypted_share_name / encrypted_share_path (when ``encrypt_share=True``)
- :class:`SshServer`     host, port, user ("root"), client_key_path, root_dir, log_path,
                         conf_path, known_hosts_path; opt-in password auth (``allow_system_user``)
- :class:`WebDavServer`  host, port, url, user, password, root_dir, log_path

Each also has ``startup_s`` (seconds from spawn to an open port) and ``pid``.

pytest fixtures (session scope), registered by ``pytest_plugins = ["rdbss.testing.servers"]``
in a conftest (or ``-p rdbss.testing.servers``): ``samba_server``, ``ssh_server``,
``webdav_server``. A fixture skips when its server binary (or Python package) is absent, unless
the environment variable ``RDBSS_REQUIRE_SERVERS`` is set (CI sets it to 1): then it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import pytest

LOOPBACK = "127.0.0.1"
REQUIRE_SERVERS_ENV = "RDBSS_REQUIRE_SERVERS"

# Deadlines, in seconds.
START_DEADLINE_S = 20.0
STOP_DEADLINE_S = 10.0
HELPER_DEADLINE_S = 30.0  # one-shot helpers: ssh-keygen, smbpasswd, sshd -t, useradd
START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it

_SBIN_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin")


# --------------------------------------------------------------------------------------------
# Generic helpers
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A loopback TCP port that accepts connections and never says a word (a hung server)."""
    listener = socket.create_server((LOOPBACK, 0))
    listener.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


def find_binary(name: str) -> str | None:
    """Absolute path of an executable, looking in PATH and the sbin folders (often not in PATH)."""
    found = shutil.which(name)
    if found:
        return os.path.abspath(found)
    for d in _SBIN_DIRS:
        cand = os.path.join(d, name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def log_tail(path: Path | None, max_lines: int = 40) -> str:
    """Last lines of a log file, for error messages."""
    if path is None:
        return "(no log)"
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(lines[-max_lines:]) or "(empty log)"


class ServerExitedError(RuntimeError):
    """The server process exited while we were waiting for it to listen."""


def wait_for_tcp(
    host: str,
    port: int,
    deadline_s: float,
    *,
    log_path: Path | None = None,
    proc: subprocess.Popen[bytes] | None = None,
) -> float:
    """Wait until ``host:port`` accepts a TCP connection; return the seconds waited.

    Raises TimeoutError (with the server's log tail) when ``deadline_s`` seconds pass, and
    ServerExitedError at once if ``proc`` exits meanwhile.
    """
    t0 = time.monotonic()
    end = t0 + deadline_s
    delay = 0.005
    while True:
        if proc is not None and proc.poll() is not None:
            raise ServerExitedError(
                f"server pid {proc.pid} exited with rc {proc.returncode} before {host}:{port} "
                f"was open; log tail:\n{log_tail(log_path)}"
            )
        try:
            with socket.create_connection((host, port), timeout=min(1.0, deadline_s)):
                return time.monotonic() - t0
        except OSError:
            pass
        now = time.monotonic()
        if now >= end:
            raise TimeoutError(
                f"{host}:{port} not accepting connections after {deadline_s:.1f} s; "
                f"log tail:\n{log_tail(log_path)}"
            )
        time.sleep(min(delay, max(0.0, end - now)))
        delay = min(delay * 2, 0.1)


def _run_helper(
    argv: Sequence[str],
    *,
    input_text: str | None = None,
    timeout: float = HELPER_DEADLINE_S,
    what: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a short helper command with a deadline; raise RuntimeError with its output on failure."""
    try:
        res = subprocess.run(
            list(argv),
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=None if input_text is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{what or argv[0]} timed out after {timeout} s") from exc
    if res.returncode != 0:
        raise RuntimeError(
            f"{what or argv[0]} failed (rc {res.returncode}): {' '.join(argv)}\n"
            f"stdout: {res.stdout.strip()}\nstderr: {res.stderr.strip()}"
        )
    return res


# ---- process-tree handling (Linux /proc) ---------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgrp, starttime) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    # fields[0] = state (3rd field of the file), [1] = ppid, [2] = pgrp, [19] = starttime.
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def _all_pids() -> list[int]:
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def _tree(root_pid: int, *, descendants: bool = True) -> dict[int, int]:
    """{pid: starttime} for ``root_pid``'s live descendants and its process-group members.

    Processes are identified by (pid, starttime) so that a recycled pid is never signalled.
    Once ``root_pid`` is reaped its number may be reused, so then pass ``descendants=False``:
    a process-group id cannot be reused while the group has members.
    """
    stats = {}
    for pid in _all_pids():
        st = _proc_stat(pid)
        if st is not None:
            stats[pid] = st
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, int] = {}
    stack = list(children.get(root_pid, [])) if descendants else []
    while stack:
        pid = stack.pop()
        if pid in found or pid not in stats:
            continue
        found[pid] = stats[pid][3]
        stack.extend(children.get(pid, []))
    own_pgrp = os.getpgrp()
    if root_pid != own_pgrp:  # never touch our own process group
        for pid, (_, _, pgrp, start) in stats.items():
            if pgrp == root_pid and pid != root_pid and pid != os.getpid():
                found.setdefault(pid, start)
    return found


def _alive(pid: int, starttime: int) -> bool:
    st = _proc_stat(pid)
    return st is not None and st[3] == starttime and st[0] not in ("Z", "X")


def _signal_procs(procs: dict[int, int], sig: signal.Signals) -> None:
    for pid, start in procs.items():
        if pid != os.getpid() and _alive(pid, start):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def _wait_gone(procs: dict[int, int], deadline_s: float) -> dict[int, int]:
    end = time.monotonic() + deadline_s
    while True:
        left = {p: s for p, s in procs.items() if _alive(p, s)}
        if not left or time.monotonic() >= end:
            return left
        time.sleep(0.02)


def cut_tcp(port: int, host: str = LOOPBACK) -> None:
    """Cut every TCP connection to ``host:port`` (``ss -K``: the kernel aborts both ends, as a
    reset on the path would); the listener stays up. Skips (or fails) without ``ss``."""
    ss = find_binary("ss")
    if ss is None:
        require_or_skip(["ss"], "ss (iproute2)")
    assert ss is not None
    subprocess.run(
        [ss, "-K", "dst", host, "dport", "=", str(port)],
        capture_output=True,
        timeout=HELPER_DEADLINE_S,
        check=False,
    )


def stop_process_tree(
    proc: subprocess.Popen[Any], *, sig: signal.Signals = signal.SIGTERM, deadline_s: float
) -> None:
    """Stop ``proc`` (started with start_new_session=True) and everything it spawned.

    Sends ``sig`` to ``proc.pid`` only, waits up to ``deadline_s``, then SIGKILLs the server's
    own process group (never ours) and any remaining descendant, and reaps ``proc``.
    Descendants that left the group (sshd's per-connection children call setsid()) are found
    through the parent links taken before the signal.
    """
    tree = _tree(proc.pid)
    if sig == signal.SIGKILL:  # crash: everything dies at once, children first
        _signal_procs(tree, signal.SIGKILL)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
    try:
        proc.wait(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        if proc.pid != os.getpgrp():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.wait(timeout=deadline_s)
    # Children of a server that exited are reparented; catch group members spawned late, too.
    tree.update(_tree(proc.pid, descendants=False))
    # smbd's children follow their parent within milliseconds; sshd's per-connection children
    # (own sessions) would live on until their client hangs up, so they get a SIGTERM.
    left = _wait_gone(tree, 0.2 if sig != signal.SIGKILL else 0.0)
    if left:
        _signal_procs(left, signal.SIGTERM)
        left = _wait_gone(left, 2.0)
    if left:
        _signal_procs(left, signal.SIGKILL)
        left = _wait_gone(left, deadline_s)
    if left:
        raise RuntimeError(f"processes survived SIGKILL: {sorted(left)}")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def require_or_skip(missing: Sequence[str], what: str) -> None:
    """Skip (or fail, when RDBSS_REQUIRE_SERVERS is set) if anything in ``missing``."""
    if not missing:
        return
    reason = f"{what} unavailable: missing {', '.join(missing)} (run scripts/install-test-deps.sh)"
    if _env_flag(REQUIRE_SERVERS_ENV):
        pytest.fail(f"{reason}; {REQUIRE_SERVERS_ENV} is set, so this is an error", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------------------------


class _ServerBase:
    """Spawn/stop bookkeeping shared by the servers."""

    name = "server"

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.host = LOOPBACK
        self.port = 0
        self.log_path = self.base_dir / "log" / f"{self.name}.log"
        self.startup_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._logf: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- to implement -------------------------------------------------------------------
    def _prepare(self) -> None:
        """Write static files (keys, folders) once."""

    def _configure(self) -> None:
        """Write the config for self.port (called for every start attempt)."""

    def _argv(self) -> list[str]:
        raise NotImplementedError

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        """Write the config, spawn the server, wait (bounded) until its port accepts."""
        if self.running:
            return self
        try:
            return self._start()
        except BaseException:
            self._cleanup_process(signal.SIGKILL)
            self._release()
            raise

    def restart(self, *, kill: bool = True, down_s: float = 0.0) -> Self:
        """Stop the server (SIGKILL, a crash, unless ``kill`` is False: SIGTERM), leave it down
        ``down_s`` seconds and start it again on the same port, with the same config, keys and
        files: what clients see of a server that went away and came back."""
        port = self.port
        self._cleanup_process(signal.SIGKILL if kill else signal.SIGTERM)
        if down_s > 0:
            time.sleep(down_s)
        try:
            return self._start(port)
        except BaseException:
            self._cleanup_process(signal.SIGKILL)
            raise

    def _start(self, port: int | None = None) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._prepare()
        last_exc: Exception | None = None
        for attempt in range(START_ATTEMPTS):
            if port is None:
                self.port = free_port()
            else:  # the same port again: a socket of the old process may still hold it briefly
                self.port = port
                time.sleep(0.2 * attempt)
            self._configure()
            self._logf = open(self.log_path, "ab")  # noqa: SIM115 - closed in _cleanup_process
            t0 = time.monotonic()
            self._proc = subprocess.Popen(
                self._argv(),
                stdin=subprocess.DEVNULL,
                stdout=self._logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # required for smbd; harmless and isolating for all
                cwd=self.base_dir,
            )
            try:
                wait_for_tcp(
                    self.host, self.port, START_DEADLINE_S, log_path=self.log_path, proc=self._proc
                )
            except ServerExitedError as exc:  # e.g. the port was taken meanwhile: retry
                last_exc = exc
                self._cleanup_process(signal.SIGKILL)
                continue
            self.startup_s = time.monotonic() - t0
            return self
        raise RuntimeError(f"{self.name} failed to start {START_ATTEMPTS} times") from last_exc

    def _cleanup_process(self, sig: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        try:
            if proc is not None:
                stop_process_tree(proc, sig=sig, deadline_s=STOP_DEADLINE_S)
        finally:
            if self._logf is not None:
                self._logf.close()
                self._logf = None

    def _release(self) -> None:
        """Undo what _prepare() did outside base_dir (called by stop() and kill())."""

    def stop(self) -> None:
        """SIGTERM the server pid, wait with a deadline, SIGKILL its group if needed, reap."""
        try:
            self._cleanup_process(signal.SIGTERM)
        finally:
            self._release()

    def kill(self) -> None:
        """SIGKILL the server and every process it spawned (crash simulation); then reap."""
        try:
            self._cleanup_process(signal.SIGKILL)
        finally:
            self._release()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host}:{self.port} pid={self.pid}>"


def _random_password() -> str:
    # Letters, digits and a symbol; no quote, colon, comma, '%' or whitespace, so the password is
    # safe in smbclient's user%pass syntax, rclone connection strings and config files.
    return "Rd" + secrets.token_hex(8) + "!9"


# --------------------------------------------------------------------------------------------
# Samba
# --------------------------------------------------------------------------------------------


class SambaServer(_ServerBase):
    """A private smbd on 127.0.0.1:<free port> serving ``share_path`` as ``share_name``.

    The SMB user must be an existing Unix account; the default ``root`` needs no system change
    (``smbpasswd -c CONF`` writes the password only into the private tdbsam under base_dir).
    Signing is negotiated (``server signing = auto``), which works with smbprotocol's default
    ``require_signing=True``; oplocks and leases are off, because an oplock break kills an
    smbprotocol connection. With ``encrypt_share=True`` a second share
    ``encrypted_share_name`` requires SMB3 encryption.
    """

    name = "smbd"

    def __init__(
        self,
        base_dir: Path,
        share_name: str = "share",
        user: str = "root",
        password: str | None = None,
        *,
        encrypt_share: bool = False,
        server_signing: str = "auto",
        log_level: int = 1,
        extra_global: str = "",
    ) -> None:
        super().__init__(base_dir)
        self.extra_global = extra_global  # more [global] lines (e.g. quota commands)
        self.share_name = share_name
        self.user = user
        self.password = password if password is not None else _random_password()
        self.encrypt_share = encrypt_share
        self.server_signing = server_signing
        self.log_level = log_level
        self.share_path = self.base_dir / "share"
        self.encrypted_share_name: str | None = "secure" if encrypt_share else None
        self.encrypted_share_path: Path | None = self.base_dir / "secure" if encrypt_share else None
        self.conf_path = self.base_dir / "etc" / "smb.conf"
        self._smbd = find_binary("smbd")
        self._smbpasswd = find_binary("smbpasswd")

    @staticmethod
    def missing_binaries() -> list[str]:
        return [b for b in ("smbd", "smbpasswd") if find_binary(b) is None]

    def _dir(self, name: str) -> Path:
        return self.base_dir / name

    def _prepare(self) -> None:
        if self._smbd is None or self._smbpasswd is None:
            raise FileNotFoundError("smbd/smbpasswd not found (install samba)")
        for d in ("etc", "lock", "state", "cache", "private", "pid", "ncalrpc", "log"):
            self._dir(d).mkdir(parents=True, exist_ok=True)
        self.share_path.mkdir(parents=True, exist_ok=True)
        if self.encrypted_share_path is not None:
            self.encrypted_share_path.mkdir(parents=True, exist_ok=True)

    def _share_section(self, name: str, path: Path, extra: str = "") -> str:
        return (
            f"[{name}]\n"
            f"    path = {path}\n"
            "    read only = no\n"
            "    browseable = yes\n"
            f"    valid users = {self.user}\n"
            "    create mask = 0644\n"
            "    directory mask = 0755\n"
            "    oplocks = no\n"
            "    level2 oplocks = no\n"
            "    strict locking = auto\n"
            f"{extra}"
        )

    def _configure(self) -> None:
        b = self.base_dir
        conf = (
            "[global]\n"
            "    netbios name = RDBSSTEST\n"
            "    workgroup = WORKGROUP\n"
            "    server role = standalone server\n"
            f"    smb ports = {self.port}\n"
            "    interfaces = 127.0.0.1\n"
            "    bind interfaces only = yes\n"
            "    disable netbios = yes\n"
            f"    lock directory = {b / 'lock'}\n"
            f"    state directory = {b / 'state'}\n"
            f"    cache directory = {b / 'cache'}\n"
            f"    private dir = {b / 'private'}\n"
            f"    pid directory = {b / 'pid'}\n"
            f"    ncalrpc dir = {b / 'ncalrpc'}\n"
            f"    log file = {b / 'log' / 'log.%m'}\n"
            f"    log level = {self.log_level}\n"
            f"    passdb backend = tdbsam:{b / 'private' / 'passdb.tdb'}\n"
            "    map to guest = never\n"
            "    restrict anonymous = 2\n"
            "    load printers = no\n"
            "    printing = bsd\n"
            "    printcap name = /dev/null\n"
            "    disable spoolss = yes\n"
            "    server min protocol = SMB2_10\n"
            "    smb encrypt = if_required\n"
            f"    server signing = {self.server_signing}\n"
            "    kernel oplocks = no\n"
            "    kernel share modes = no\n"
            "    posix locking = no\n"
            "    smb2 leases = no\n"
            f"{self.extra_global}"
            "\n" + self._share_section(self.share_name, self.share_path)
        )
        if self.encrypted_share_name is not None and self.encrypted_share_path is not None:
            conf += "\n" + self._share_section(
                self.encrypted_share_name,
                self.encrypted_share_path,
                "    smb encrypt = required\n",
            )
        self.conf_path.write_text(conf)
        if not (self._dir("private") / "passdb.tdb").exists():
            self.set_password(self.password)

    def set_password(self, password: str) -> None:
        """(Re)set the SMB password of ``user`` in the private passdb."""
        assert self._smbpasswd is not None
        _run_helper(
            [self._smbpasswd, "-c", str(self.conf_path), "-s", "-a", self.user],
            input_text=f"{password}\n{password}\n",
            what="smbpasswd",
        )
        self.password = password

    def _argv(self) -> list[str]:
        assert self._smbd is not None
        return [
            self._smbd,
            "--foreground",
            "--no-process-group",
            "--debug-stdout",
            f"--configfile={self.conf_path}",
        ]

    @property
    def unc_root(self) -> str:
        r"""``\\127.0.0.1\share`` (the port is not part of a UNC path: pass it separately)."""
        return rf"\\{self.host}\{self.share_name}"

    def session_ids(self) -> set[int]:
        """The ids of the SMB sessions the server holds now (``smbstatus --json``)."""
        binary = find_binary("smbstatus")
        require_or_skip([] if binary else ["smbstatus"], "Samba's smbstatus")
        assert binary is not None
        done = subprocess.run(
            [binary, "--json", "-s", str(self.conf_path)],
            capture_output=True,
            text=True,
            timeout=HELPER_DEADLINE_S,
            check=True,
        )
        sessions = json.loads(done.stdout).get("sessions", {})
        return {int(s["session_id"]) for s in sessions.values()}

    def end_session(self, session_id: int) -> None:
        """Have the server end session ``session_id``: the same user logs on again naming it as
        its PreviousSessionId (what a client does after it restarted, MS-SMB2 3.3.5.5.3)."""
        from smbprotocol.connection import Connection
        from smbprotocol.session import Session, SMB2SessionSetupRequest

        conn = Connection(uuid.uuid4(), self.host, self.port)
        conn.connect(timeout=10)
        send = conn.send

        def send_with_previous(message: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(message, SMB2SessionSetupRequest):
                message["previous_session_id"] = session_id
            return send(message, *args, **kwargs)

        conn.send = send_with_previous
        try:
            Session(conn, self.user, self.password, require_encryption=False).connect()
        finally:
            conn.disconnect(True)


# --------------------------------------------------------------------------------------------
# OpenSSH
# --------------------------------------------------------------------------------------------


def _sshd_version(sshd: str) -> tuple[int, int]:
    try:
        res = subprocess.run(
            [sshd, "-V"], capture_output=True, text=True, timeout=HELPER_DEADLINE_S, check=False
        )
    except subprocess.TimeoutExpired:
        return (0, 0)
    text = res.stderr + res.stdout
    marker = "OpenSSH_"
    i = text.find(marker)
    if i < 0:
        return (0, 0)
    ver = text[i + len(marker) :].split(",")[0].split()[0]
    parts = ver.replace("p", ".").split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        return (0, 0)


class SshServer(_ServerBase):
    """A private OpenSSH sshd on 127.0.0.1:<free port>, SFTP via ``internal-sftp``.

    Default authentication is by key: ``client_key_path`` (ed25519, no passphrase) logs in as
    ``root``, which needs no change to system accounts. SFTP sessions start in ``root_dir``
    (``internal-sftp -d``), so relative paths land there; absolute paths are NOT confined.

    Password authentication (opt-in): pass ``allow_system_user=True`` to create a throwaway Unix
    account (``useradd``, name in ``password_user``, random ``password`` set with ``chpasswd``)
    that is deleted again (``userdel``) in ``stop()``/``kill()``. In that mode ``root_dir`` is a
    fresh folder in the system temp dir owned by that user (base_dir's ancestors are usually
    not traversable by other users), removed at stop. This touches /etc/passwd and /etc/shadow
    for the lifetime of the server, so it is off by default.
    """

    name = "sshd"

    def __init__(
        self, base_dir: Path, *, allow_system_user: bool = False, root_password: bool = False
    ) -> None:
        super().__init__(base_dir)
        self.user = "root"
        self.keys_dir = self.base_dir / "keys"
        self.host_key_path = self.keys_dir / "host_ed25519"
        self.client_key_path = self.keys_dir / "client_ed25519"
        self.authorized_keys_path = self.keys_dir / "authorized_keys"
        self.known_hosts_path = self.keys_dir / "known_hosts"
        self.root_dir = self.base_dir / "root"
        self.conf_path = self.base_dir / "etc" / "sshd_config"
        self.pid_file = self.base_dir / "run" / "sshd.pid"
        self.allow_system_user = allow_system_user
        self.password_user: str | None = None
        self.password: str | None = None
        # root_password: password auth for root with a random password that only this sshd
        # sees (a private /etc/shadow bind-mounted in its own mount namespace); the machine's
        # accounts are never touched
        self.root_password = root_password
        self._shadow: Path | None = None
        self._sshd = find_binary("sshd")
        self._keygen = find_binary("ssh-keygen")

    @staticmethod
    def missing_binaries() -> list[str]:
        return [b for b in ("sshd", "ssh-keygen") if find_binary(b) is None]

    def _prepare(self) -> None:
        if self._sshd is None or self._keygen is None:
            raise FileNotFoundError("sshd/ssh-keygen not found (install openssh-server)")
        for d in (self.keys_dir, self.root_dir, self.conf_path.parent, self.pid_file.parent):
            d.mkdir(parents=True, exist_ok=True)
        for key in (self.host_key_path, self.client_key_path):
            if not key.exists():
                _run_helper(
                    [self._keygen, "-q", "-t", "ed25519", "-N", "", "-C", key.name, "-f", str(key)],
                    what="ssh-keygen",
                )
        self.authorized_keys_path.write_text(Path(str(self.client_key_path) + ".pub").read_text())
        # "Missing privilege separation directory: /run/sshd" otherwise.
        run_sshd = Path("/run/sshd")
        if not run_sshd.is_dir():
            run_sshd.mkdir(mode=0o755, parents=True, exist_ok=True)
            run_sshd.chmod(0o755)
        if self.root_password and self._shadow is None:
            self._private_shadow()
        if self.allow_system_user and self.password_user is None:
            self._create_system_user()

    def _create_system_user(self) -> None:
        useradd, chpasswd = find_binary("useradd"), find_binary("chpasswd")
        if useradd is None or chpasswd is None:
            raise FileNotFoundError("useradd/chpasswd not found")
        name = "rdbss" + secrets.token_hex(4)
        password = _random_password()
        # base_dir's ancestors are usually root-only (pytest's /tmp/pytest-of-root is 0700), so
        # the throwaway user gets a folder in the system temp dir instead.
        home = Path(tempfile.mkdtemp(prefix="rdbss-sftp-"))
        try:
            _run_helper([useradd, "-M", "-d", str(home), "-s", "/bin/sh", name], what="useradd")
        except BaseException:
            shutil.rmtree(home, ignore_errors=True)
            raise
        self.password_user = name
        self.root_dir = home
        try:
            _run_helper([chpasswd], input_text=f"{name}:{password}\n", what="chpasswd")
            shutil.chown(home, user=name, group=name)
        except BaseException:
            self._delete_system_user()
            raise
        self.password = password

    def _delete_system_user(self) -> None:
        name, self.password_user = self.password_user, None
        self.password = None
        if name is None:
            return
        home, self.root_dir = self.root_dir, self.base_dir / "root"
        try:
            userdel = find_binary("userdel") or "userdel"
            _run_helper([userdel, name], what="userdel")
        finally:
            shutil.rmtree(home, ignore_errors=True)

    def _private_shadow(self) -> None:
        password = secrets.token_urlsafe(12)
        hashed = (
            subprocess.run(
                ["openssl", "passwd", "-6", "-stdin"],
                input=password.encode(),
                capture_output=True,
                timeout=10,
                check=True,
            )
            .stdout.decode()
            .strip()
        )
        lines = []
        for line in Path("/etc/shadow").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == "root":
                fields[1] = hashed
            lines.append(":".join(fields))
        shadow = self.base_dir / "shadow"
        fd = os.open(shadow, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        self._shadow = shadow
        self.password = password

    def _configure(self) -> None:
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            f"HostKey {self.host_key_path}",
            f"PidFile {self.pid_file}",
            "PermitRootLogin yes",
            "PasswordAuthentication "
            + ("yes" if self.allow_system_user or self.root_password else "no"),
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            f"AuthorizedKeysFile {self.authorized_keys_path}",
            "StrictModes no",
            "UsePAM no",
            "UseDNS no",
            "PrintMotd no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "LogLevel INFO",
            f"Subsystem sftp internal-sftp -d {self.root_dir}",
            "MaxSessions 50",
            "MaxStartups 50:30:100",
            "MaxAuthTries 10",
            "LoginGraceTime 30",
        ]
        assert self._sshd is not None
        if _sshd_version(self._sshd) >= (9, 8):
            # OpenSSH 9.8+ penalises sources that fail auth; tests fail auth on purpose.
            lines.append("PerSourcePenalties no")
        self.conf_path.write_text("\n".join(lines) + "\n")
        _run_helper([self._sshd, "-t", "-f", str(self.conf_path)], what="sshd -t")
        pub = self.host_key_path.with_name(self.host_key_path.name + ".pub").read_text().split()
        self.known_hosts_path.write_text(f"[{self.host}]:{self.port} {pub[0]} {pub[1]}\n")

    def _argv(self) -> list[str]:
        assert self._sshd is not None  # absolute path: sshd refuses to re-exec otherwise
        argv = [self._sshd, "-D", "-e", "-f", str(self.conf_path)]
        if self._shadow is None:
            return argv
        # unshare and sh exec in place: the pid we hold is sshd's
        script = f'mount --bind "{self._shadow}" /etc/shadow && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]

    def _release(self) -> None:
        if self.password_user is not None:
            self._delete_system_user()

    def asyncssh_options(self) -> dict[str, Any]:
        """Keyword arguments for ``asyncssh.connect(host, ...)`` (and what passes them on, such
        as sshfs.SSHFileSystem): key auth, no agent, no user config, our known_hosts."""
        return {
            "port": self.port,
            "username": self.user,
            "client_keys": [str(self.client_key_path)],
            "known_hosts": str(self.known_hosts_path),
            "config": None,
            "agent_path": None,
        }

    def cli_args(self) -> list[str]:
        """Options for ``ssh``/``sftp``: key auth, no agent, no user config, our known_hosts."""
        return [
            "-F",
            "/dev/null",
            "-i",
            str(self.client_key_path),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts_path}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=10",
        ]


# --------------------------------------------------------------------------------------------
# wsgidav
# --------------------------------------------------------------------------------------------

WSGIDAV_RUNNER = Path(__file__).with_name("wsgidav_runner.py")


class WebDavServer(_ServerBase):
    """wsgidav under cheroot in a separate Python process (``wsgidav_runner.py``).

    Serves ``root_dir`` at ``url`` (``http://127.0.0.1:<port>/``) with HTTP Basic and Digest
    auth for ``user``/``password``: the 401 challenge is Digest (``default_to_digest=True``, so
    ``httpx.DigestAuth`` works) and pre-emptive Basic (httpx's ``auth=(user, pw)``) is accepted
    too. Lock and property managers in memory. Killable by pid like the others. With
    ``request_log``, ``log_path`` gets one line per request (:meth:`requests` reads them).
    """

    name = "wsgidav"

    def __init__(
        self,
        base_dir: Path,
        user: str = "davuser",
        password: str | None = None,
        *,
        default_to_digest: bool = True,
        numthreads: int = 8,
        request_log: bool = False,
    ) -> None:
        super().__init__(base_dir)
        self.request_log = request_log
        self.user = user
        self.password = password if password is not None else _random_password()
        self.default_to_digest = default_to_digest
        self.numthreads = numthreads
        self.root_dir = self.base_dir / "root"
        self.conf_path = self.base_dir / "etc" / "wsgidav.json"

    @staticmethod
    def missing_binaries() -> list[str]:
        import importlib.util

        return [m for m in ("wsgidav", "cheroot") if importlib.util.find_spec(m) is None]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def _prepare(self) -> None:
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path.parent.mkdir(parents=True, exist_ok=True)

    def _configure(self) -> None:
        cfg = {
            "root": str(self.root_dir),
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "default_to_digest": self.default_to_digest,
            "numthreads": self.numthreads,
            "request_log": self.request_log,
        }
        # The password is in this file: keep it private.
        fd = os.open(self.conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(cfg, f)

    def _argv(self) -> list[str]:
        return [sys.executable, "-u", str(WSGIDAV_RUNNER), str(self.conf_path)]

    def requests(self, method: str, path: str) -> list[str]:
        """The logged requests (``request_log``) of ``method`` on the URL path ``path``
        (percent-decoded, as wsgidav logs it): one line each, with its range if it had one."""
        needle = f'"{method} {path}"'
        return [line for line in self.log_path.read_text().splitlines() if needle in line]


# --------------------------------------------------------------------------------------------
# pytest fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session", name="samba_server")
def samba_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaServer]:
    """A session-wide private smbd (user root, random password, share ``share``)."""
    require_or_skip(SambaServer.missing_binaries(), "Samba (smbd)")
    with SambaServer(tmp_path_factory.mktemp("samba"), encrypt_share=True) as srv:
        yield srv


@pytest.fixture(scope="session", name="ssh_server")
def ssh_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A session-wide private sshd (root with ``client_key_path``; SFTP starts in root_dir)."""
    require_or_skip(SshServer.missing_binaries(), "OpenSSH (sshd)")
    with SshServer(tmp_path_factory.mktemp("sshd")) as srv:
        yield srv


@pytest.fixture(scope="session", name="webdav_server")
def webdav_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDavServer]:
    """A session-wide wsgidav server in its own process (Basic/Digest auth)."""
    require_or_skip(WebDavServer.missing_binaries(), "wsgidav")
    with WebDavServer(tmp_path_factory.mktemp("webdav")) as srv:
        yield srv

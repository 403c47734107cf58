"""Soak against real servers (marked slow; run with: bash scripts/test.sh -m slow): clients read
and write through handles held open on Samba (SMB) and OpenSSH (SFTP) shares for a few minutes
while a seeded random schedule of faults hits them: a server killed and started again on the
same port, every TCP connection to a server cut (``ss -K``), a silent server (frozen with
SIGSTOP, then resumed), the SMB session ended by the server, a mini-redirector SIGKILLed (the
supervisor restarts it) or frozen and resumed.

Then it checks what a user relies on:
- no acknowledged write is lost or corrupted: every block on the server (read from the server's
  own folder) holds its last acknowledged content, or what a write that failed may have left;
  reads during the run see the same;
- no request takes longer than its deadline + 1 s;
- every failure has a named NTSTATUS, and every handle is usable again once the faults stop;
- nothing leaks: each daemon process keeps about the file descriptors it had after warm-up, no
  extra daemon process, no shared-memory segment of this process, and no process of the
  daemon's session once it stopped.

``RDBSS_SOAK_S`` sets the faulted run's length (default 150 s); the schedule is drawn from
``SEED`` (``RDBSS_SOAK_SEED`` overrides it) and repeats for it."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rdbss.wire import Access, CreateDisposition, NtStatusError
from rdbss.wire.status import status_name
from tests.conformance.backend_sftp import sftp_config
from tests.conformance.backend_smb import smb_config, write_password_file
from tests.daemon import Daemon, running_daemon, wait_until
from tests.servers.fixtures import SambaServer, SshServer, cut_tcp, require_or_skip

SEED = 20261206
SOAK_S = float(os.environ.get("RDBSS_SOAK_S", "150"))
CLIENT_TIMEOUT_S = 5.0
LATE_S = 1.0  # a request may answer this much after its deadline, no more
BLOCK = 4096
BLOCKS = 16
WORKERS_PER_BACKEND = 2
FD_SLACK = 24  # file descriptors a daemon process may hold beyond its warm-up count
RW = Access.GENERIC_READ | Access.GENERIC_WRITE
FAULTS = (
    "restart_server",
    "cut_tcp",
    "freeze_server",
    "end_session",  # SMB only: the server ends the daemon's session
    "kill_minirdr",
    "freeze_minirdr",
)


@dataclass(frozen=True)
class Fault:
    at: float  # seconds into the run
    kind: str
    target: str  # "smb" | "sftp"
    hold_s: float = 0.0  # how long a frozen server or mini-redirector stays frozen


def schedule(seed: int, duration_s: float) -> list[Fault]:
    """The faults, drawn from ``seed``: one every 3-8 s, the last 10 s quiet."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    t = 4.0
    while t < duration_s - 10:
        kind = rng.choice(FAULTS)
        hold = round(rng.uniform(0.5, 2.5), 2) if kind.startswith("freeze") else 0.0
        target = "smb" if kind == "end_session" else rng.choice(["smb", "sftp"])
        faults.append(Fault(round(t, 2), kind, target, hold))
        t += rng.uniform(3.0, 8.0)
    return faults


def test_the_fault_schedule_repeats_for_a_seed() -> None:
    assert schedule(SEED, 150) == schedule(SEED, 150)
    assert schedule(SEED, 150) != schedule(SEED + 1, 150)
    kinds = {f.kind for f in schedule(SEED, 150)}
    assert kinds == set(FAULTS)  # every kind of fault happens in a default run


# ----------------------------------------------------------------------------- the model


@dataclass
class FileModel:
    """What the server must hold: per block its last acknowledged content, plus what a write
    that failed may have left there (it may or may not have reached the server)."""

    name: str
    acked: list[bytes]
    maybe: list[set[bytes]] = field(default_factory=lambda: [set() for _ in range(BLOCKS)])

    def allowed(self, block: int) -> set[bytes]:
        return {self.acked[block], *self.maybe[block]}


@dataclass
class Outcome:
    ops: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # status name -> count
    late: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    unnamed: list[str] = field(default_factory=list)
    max_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(self, what: str, fn: Callable[[], object]) -> tuple[object, NtStatusError | None]:
        start = time.monotonic()
        error: NtStatusError | None = None
        result: object = None
        try:
            result = fn()
        except NtStatusError as exc:
            error = exc
        took = time.monotonic() - start
        with self.lock:
            self.ops[what] += 1
            self.max_s = max(self.max_s, took)
            if took > CLIENT_TIMEOUT_S + LATE_S:
                self.late.append(f"{what} took {took:.2f} s ({error})")
            if error is not None:
                name = status_name(error.status)
                self.errors[name] += 1
                if name.startswith("0x"):
                    self.unnamed.append(f"{what}: {error}")
        return result, error


@dataclass
class Backend:
    name: str
    server: SambaServer | SshServer
    folder: Path
    unc_root: str


class Worker(threading.Thread):
    """One client with one file and a handle held open all along: block writes, block reads
    checked against the model, and a listing now and then (no handle: a fresh connection)."""

    def __init__(
        self, daemon: Daemon, backend: Backend, index: int, seed: int, outcome: Outcome
    ) -> None:
        super().__init__(name=f"soak-{backend.name}-{index}", daemon=True)
        self.backend = backend
        self.rng = random.Random(seed)
        self.outcome = outcome
        self.client = daemon.client(timeout=CLIENT_TIMEOUT_S)
        name = f"soak{index}.bin"
        self.unc = rf"{backend.unc_root}\{name}"
        initial = [bytes([index]) * BLOCK for _ in range(BLOCKS)]
        self.model = FileModel(name, initial)
        self.fobx = self.client.create(
            self.unc, access=RW, disposition=CreateDisposition.FILE_OVERWRITE_IF
        ).fobx
        self.client.write_handle(self.fobx, 0, b"".join(initial))
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            roll = self.rng.random()
            block = self.rng.randrange(BLOCKS)
            if roll < 0.5:
                self._write(block)
            elif roll < 0.9:
                self._read(block)
            else:
                self.outcome.timed(
                    f"{self.backend.name} list", lambda: self.client.listdir(self.backend.unc_root)
                )
            self.stop.wait(self.rng.uniform(0.005, 0.04))

    def _write(self, block: int) -> None:
        data = self.rng.randbytes(BLOCK)
        _, error = self.outcome.timed(
            f"{self.backend.name} write",
            lambda: self.client.write_handle(self.fobx, block * BLOCK, data),
        )
        if error is None:
            self.model.acked[block] = data
            self.model.maybe[block].clear()
        else:
            self.model.maybe[block].add(data)

    def _read(self, block: int) -> None:
        got, error = self.outcome.timed(
            f"{self.backend.name} read",
            lambda: self.client.read_handle(self.fobx, block * BLOCK, BLOCK),
        )
        if error is None and got not in self.model.allowed(block):
            with self.outcome.lock:
                self.outcome.corrupt.append(f"{self.unc} block {block}: a read saw other bytes")

    def usable_again(self, deadline_s: float) -> str | None:
        """Once the faults stopped: the handle reads again (first requests may still meet a
        connection being rebuilt); None, or why not."""
        deadline = time.monotonic() + deadline_s
        last = "never tried"
        while time.monotonic() < deadline:
            try:
                self.client.read_handle(self.fobx, 0, BLOCK)
                return None
            except NtStatusError as exc:
                last = str(exc)
                if status_name(exc.status).startswith("0x"):
                    return f"unnamed status: {exc}"
                time.sleep(0.3)
        return f"{self.unc}: still failing: {last}"

    def check_server_copy(self) -> list[str]:
        on_server = (self.backend.folder / self.model.name).read_bytes()
        wrong = []
        if len(on_server) != BLOCK * BLOCKS:
            wrong.append(f"{self.unc}: {len(on_server)} bytes on the server")
        for block in range(BLOCKS):
            if on_server[block * BLOCK : (block + 1) * BLOCK] not in self.model.allowed(block):
                wrong.append(f"{self.unc} block {block}: not what was acknowledged")
        return wrong

    def finish(self) -> None:
        with contextlib.suppress(NtStatusError):
            self.client.close_handle(self.fobx)
        self.client.close()


# ----------------------------------------------------------------------------- faults


def _inject(fault: Fault, daemon: Daemon, backends: dict[str, Backend]) -> None:
    backend = backends[fault.target]
    if fault.kind == "restart_server":
        backend.server.restart()
    elif fault.kind == "cut_tcp":
        cut_tcp(backend.server.port)
    elif fault.kind == "end_session":
        samba = backend.server
        assert isinstance(samba, SambaServer)
        for session_id in samba.session_ids():
            samba.end_session(session_id)
    elif fault.kind == "freeze_server":  # a silent server: connections open, nothing answers
        pid = backend.server.pid
        assert pid is not None
        os.killpg(pid, signal.SIGSTOP)  # the listener and its per-connection processes
        try:
            time.sleep(fault.hold_s)
        finally:
            os.killpg(pid, signal.SIGCONT)
    else:
        pid = daemon.processes().get(fault.target)
        if pid is None:
            return  # being restarted after an earlier kill
        if fault.kind == "kill_minirdr":
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        else:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                return
            try:
                time.sleep(fault.hold_s)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)


# ----------------------------------------------------------------------------- leaks


def _fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        return 0


def _fds(pid: int) -> dict[int, str]:
    """The descriptors a process holds: number -> what it points at."""
    found = {}
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            found[int(entry.name)] = os.readlink(entry)
    return found


def _own_segments() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob(f"rdbss-{os.getpid()}-*")}


def _session_processes(sid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[3]) == sid and fields[0] != "Z":  # session id, not a zombie
                found.append(int(entry.name))
    return found


# ----------------------------------------------------------------------------- the soak


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[dict[str, Backend]]:
    require_or_skip(SambaServer.missing_binaries(), "Samba (smbd)")
    require_or_skip(SshServer.missing_binaries(), "OpenSSH (sshd)")
    require_or_skip([] if shutil.which("ss") else ["ss"], "ss (iproute2)")
    with SambaServer(tmp_path / "smb") as samba, SshServer(tmp_path / "ssh") as sshd:
        folder = sshd.root_dir / "data"
        folder.mkdir()
        yield {
            "smb": Backend("smb", samba, samba.share_path, r"\\sambatest\share"),
            "sftp": Backend("sftp", sshd, folder, r"\\sftptest\share"),
        }


@pytest.mark.slow
@pytest.mark.timeout(int(SOAK_S) + 240)
def test_soak_faults_on_real_servers_lose_nothing_acknowledged(
    tmp_path: Path, backends: dict[str, Backend]
) -> None:
    seed = int(os.environ.get("RDBSS_SOAK_SEED", SEED))
    samba, sshd = backends["smb"].server, backends["sftp"].server
    assert isinstance(samba, SambaServer) and isinstance(sshd, SshServer)
    password = write_password_file(tmp_path / "pw", samba.password)
    config = smb_config(samba, password, timeout=3.0) + sftp_config(
        sshd, {"share": backends["sftp"].folder}, server="sftptest", timeout=3.0
    )
    segments_before = _own_segments()
    outcome = Outcome()
    with running_daemon(config) as daemon:
        sid = daemon.pid  # the daemon runs in its own session
        with daemon.client() as first:
            # pyzmq's context, and the one of its zero-copy sends' garbage collector, keep
            # their descriptors for good: made here, before counting
            first.write_bytes(rf"{backends['smb'].unc_root}\warm.bin", bytes(BLOCK * BLOCKS))
        fds_before = _fds(os.getpid())
        rng = random.Random(seed)
        workers = [
            Worker(daemon, backend, index, rng.randrange(1 << 30), outcome)
            for backend in backends.values()
            for index in range(WORKERS_PER_BACKEND)
        ]
        for worker in workers:
            worker.start()
        time.sleep(3.0)  # warm-up: every connection made, every process at its working size
        warm = {name: _fd_count(pid) for name, pid in daemon.processes().items()}
        start = time.monotonic()
        injected: Counter[str] = Counter()
        try:
            for fault in schedule(seed, SOAK_S):
                delay = start + fault.at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                _inject(fault, daemon, backends)
                injected[fault.kind] += 1
            time.sleep(max(0.0, start + SOAK_S - time.monotonic()))
        finally:
            for worker in workers:
                worker.stop.set()
            for worker in workers:
                worker.join(CLIENT_TIMEOUT_S + 5)
        assert not any(w.is_alive() for w in workers), "a worker is stuck in a request"
        # the faults stopped: every handle is usable again, the data is what was acknowledged
        unusable = [why for w in workers if (why := w.usable_again(20.0)) is not None]
        wrong = [line for w in workers for line in w.check_server_copy()]
        for worker in workers:
            worker.finish()
        fds_after = _fds(os.getpid())
        wait_until(lambda: set(daemon.processes()) == set(warm), timeout=15)
        now = {name: _fd_count(pid) for name, pid in daemon.processes().items()}
        leaked_fds = {n: (warm[n], c) for n, c in now.items() if c > warm[n] + FD_SLACK}
    with contextlib.suppress(AssertionError):  # killed with the daemon: give them a moment
        wait_until(lambda: not _session_processes(sid), timeout=10)
    left_behind = _session_processes(sid)
    report = (
        f"seed={seed} faults={dict(injected)} ops={dict(outcome.ops)} "
        f"errors={dict(outcome.errors)} slowest={outcome.max_s:.2f}s"
    )
    print(report)
    assert sum(injected.values()) >= SOAK_S / 10, report
    assert outcome.corrupt == [], report
    assert wrong == [], report
    assert outcome.late == [], report
    assert outcome.unnamed == [], report
    assert unusable == [], report
    assert leaked_fds == {}, report
    assert left_behind == [], f"processes of the daemon's session left: {left_behind}"
    assert _own_segments() <= segments_before, "shared-memory segments left behind"
    extra = sorted(v for k, v in fds_after.items() if fds_before.get(k) != v)
    assert len(fds_after) <= len(fds_before) + 4, f"the test's clients left open: {extra}"
    # it kept serving through the faults
    assert outcome.ops["smb write"] > 200 and outcome.ops["sftp write"] > 200, report
    assert sum(outcome.errors.values()) < sum(outcome.ops.values()) / 5, report

"""Process-level behaviour: separate processes, a crash of one never takes the rest down, bad
frames get an answer, stop is graceful. Every wait has a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import msgpack
import pytest
import zmq

from rdbss.actors.supervisor import read_pid
from rdbss.wire import Codec, IrpMj, NtStatus, NtStatusError, RxCompletion, RxContext
from tests.daemon import Daemon, running_daemon, wait_until

S = NtStatus


def test_every_part_is_its_own_process(daemon: Daemon) -> None:
    pids = {daemon.pid, daemon.child_pid("local"), daemon.child_pid("connmgr")}
    assert len(pids) == 3
    for pid in pids:
        os.kill(pid, 0)


def test_killed_minirdr_is_restarted_and_service_resumes(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    with d.client() as c:
        c.write_bytes(d.share + r"\keep.txt", b"kept")
        handle = c.create(d.share + r"\keep.txt")
        old = d.child_pid("local")
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: _peer_pid(c, "local") not in (None, old), timeout=10.0, poll=0.05)
        # the handle opened before the crash is re-opened by path and goes on
        assert c.read_handle(handle.fobx, 0, 4) == b"kept"
        c.close_handle(handle.fobx)
        assert c.read_bytes(d.share + r"\keep.txt") == b"kept"
        # a handle whose file is gone by the time it is re-opened answers why, every time
        lost = c.create(d.share + r"\keep.txt")
        second = d.child_pid("local")
        os.kill(second, signal.SIGKILL)
        (d.share_dir / "keep.txt").unlink()
        wait_until(lambda: _peer_pid(c, "local") not in (None, second), timeout=10.0, poll=0.05)
        for _ in range(2):
            with pytest.raises(FileNotFoundError):
                c.read_handle(lost.fobx, 0, 4)


def _peer_pid(c, name: str) -> int | None:  # type: ignore[no-untyped-def]
    for p in c.status()["peers"]:
        if p["name"] == name:
            return int(p["pid"])
    return None


def test_requests_in_flight_when_a_minirdr_dies_complete_at_once(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    results: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with d.client(timeout=20.0) as c:
            while not stop.is_set():
                try:
                    c.stat(d.share)
                    results.append("ok")
                except NtStatusError as exc:
                    results.append(exc.status_name)

    t = threading.Thread(target=load)
    t.start()
    time.sleep(0.3)
    started = time.monotonic()
    os.kill(d.child_pid("local"), signal.SIGKILL)
    time.sleep(1.5)
    stop.set()
    t.join(30)
    assert not t.is_alive()
    assert time.monotonic() - started < 10  # nothing waited for a 20 s deadline
    assert results.count("ok") > 10
    assert set(results) <= {"ok", "STATUS_CONNECTION_DISCONNECTED"}
    assert results[-1] == "ok"  # and it came back


def test_killed_connmgr_does_not_stop_io_on_established_connections(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    with d.client() as c:
        c.write_bytes(d.share + r"\a.txt", b"abc")
        os.kill(d.child_pid("connmgr"), signal.SIGKILL)
        for _ in range(50):
            assert c.read_bytes(d.share + r"\a.txt") == b"abc"
        wait_until(lambda: _peer_pid(c, "connmgr") is not None, timeout=10.0, poll=0.05)


def test_malformed_frames_get_invalid_parameter_and_the_daemon_keeps_serving(
    daemon: Daemon,
) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"ipc://{daemon.runtime_dir / 'rdbss.sock'}")
    codec = Codec()
    try:
        bad = [
            [b"\xc1"],
            [msgpack.packb({"k": "rx", "v": 1, "id": 77, "mj": "create"})],
            [msgpack.packb({"k": "rx", "v": 1, "id": 78, "mj": 0}), b"x", b"y"],
            [codec.encode(RxCompletion(79, 0))],
            [codec.encode(RxContext(80, IrpMj.CREATE, path="not-unc"))],
            [codec.encode(RxContext(81, 0x1F, fobx=1))],
        ]
        answers = {}
        for frames in bad:
            sock.send_multipart(frames)
            assert sock.poll(5000), "no answer to a malformed request"
            done = codec.decode(sock.recv_multipart()[0])
            assert isinstance(done, RxCompletion)
            answers[done.request_id] = done.status
        assert answers[0] == S.STATUS_INVALID_PARAMETER
        assert answers[77] == S.STATUS_INVALID_PARAMETER
        assert answers[78] == S.STATUS_INVALID_PARAMETER
        assert answers[79] == S.STATUS_INVALID_PARAMETER
        assert answers[80] == S.STATUS_OBJECT_PATH_SYNTAX_BAD
        assert answers[81] == S.STATUS_INVALID_HANDLE
    finally:
        sock.close(0)
        ctx.term()
    with daemon.client() as c:
        assert c.ping()


def test_graceful_stop_removes_runtime_files() -> None:
    with running_daemon() as d:
        with d.client() as c:
            assert c.ping()
        proc = d.cli("daemon", "stop")
        assert proc.returncode == 0 and b"stopped" in proc.stdout
        assert read_pid(d.runtime_dir) is None
        assert not (d.runtime_dir / "rdbss.sock").exists()
        proc = d.cli("ls", "//local/data")
        assert proc.returncode == 1 and b"STATUS_REDIRECTOR_NOT_STARTED" in proc.stderr
        proc = d.cli("daemon", "status")
        assert proc.returncode == 3


def test_handles_of_a_killed_client_process_are_closed(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    (d.share_dir / "held.txt").write_bytes(b"x")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from rdbss.client import Client\n"
            f"c = Client({str(d.runtime_dir)!r})\n"
            f"hs = [c.create({d.share + chr(92) + 'held.txt'!r}) for _ in range(5)]\n"
            "print('open', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"open"
        with d.client() as c:
            assert c.status()["handles"] == 5
            holder.kill()
            holder.wait(10)
            wait_until(lambda: c.status()["handles"] == 0, timeout=15, poll=0.05)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
    assert "is gone; closing its 5 handles" in d.log()


def test_rdbss_profile_leaves_a_cpu_profile_of_every_child(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$RDBSS_PROFILE=DIR: each child process writes DIR/ROLE-NAME-PID.prof when it stops, and
    the core's shows the requests it served."""
    import pstats
    from pathlib import Path

    where = Path(str(tmp_path))
    monkeypatch.setenv("RDBSS_PROFILE", str(where))
    with running_daemon() as d:
        (d.share_dir / "p.txt").write_bytes(b"profiled")
        with d.client() as c:
            assert c.read_bytes(d.share + r"\p.txt") == b"profiled"
    found = {p.name.split("-")[0] for p in where.glob("*.prof")}
    assert found == {"core", "connmgr", "minirdr"}
    core = next(where.glob("core-*.prof"))
    served = pstats.Stats(str(core)).get_stats_profile().func_profiles
    assert "on_client" in served


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_children_stop_when_the_supervisor_is_killed() -> None:
    """A supervisor killed outright (SIGKILL, the OOM killer) takes its children with it: none
    serves on unsupervised, and the next start of the daemon finds the place free."""
    with running_daemon() as d:
        children = d.processes()
        assert set(children) == {"core", "connmgr", "local"}
        os.kill(d.pid, signal.SIGKILL)
        wait_until(lambda: not any(_running(pid) for pid in children.values()), timeout=20)
        assert read_pid(d.runtime_dir) is None  # its lock went with it


def test_listings_and_small_files_while_a_minirdr_dies_are_right_or_fail(
    fresh_daemon: Daemon,
) -> None:
    """Listings (one compound, then queries on its handle), whole small files and stats running
    while their mini-redirector is killed: each answers what is there (every entry once) or
    fails with a connection status; nothing waits for its deadline, no handle is left open."""
    d = fresh_daemon
    folder = d.share_dir / "many"
    folder.mkdir()
    names = sorted(f"f{i:04d}" for i in range(1100))
    for name in names:
        (folder / name).write_bytes(name.encode())
    unc = d.share + r"\many"
    wrong: list[str] = []
    statuses: set[str] = set()
    ok = [0]
    stop = threading.Event()

    def load(i: int) -> None:
        with d.client(timeout=20.0) as c:
            while not stop.is_set():
                try:
                    if i == 0:
                        got = c.listdir(unc)
                        if sorted(got) != names:
                            wrong.append(f"{len(got)} entries, {len(set(got))} names")
                    elif (data := c.read_bytes(unc + r"\f0007")) != b"f0007":
                        wrong.append(repr(data))
                    ok[0] += 1
                except NtStatusError as exc:
                    statuses.add(exc.status_name)

    with d.client() as c:
        before = c.status()["handles"]  # (before the loads: each has a handle open at times)
        threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for _ in range(3):
            time.sleep(0.4)
            old = d.child_pid("local")
            os.kill(old, signal.SIGKILL)
            wait_until(lambda o=old: _peer_pid(c, "local") not in (None, o), timeout=10.0)
        time.sleep(0.4)
        stop.set()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        assert wrong == []
        assert statuses <= {"STATUS_CONNECTION_DISCONNECTED"}, statuses
        assert ok[0] > 3
        assert sorted(c.listdir(unc)) == names
        wait_until(lambda: c.status()["handles"] == before, timeout=5.0, poll=0.05)

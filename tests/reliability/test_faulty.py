"""Fault isolation with the ``faulty`` mini-redirector wrapping ``local``: injected statuses,
hangs, crashes and frozen processes never take the rest down, and every in-flight request ends
with a clear status instead of hanging. Real daemon, real processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rdbss.testing.backend import faulty_config
from rdbss.wire import Access, NtStatus, NtStatusError
from tests.daemon import Daemon, running_daemon, wait_until

S = NtStatus
FLAKY = r"\\flaky\data"


def failing_reads(every: int, count: int | None = None) -> str:
    """A rule for ``faulty_config``: every ``every``-th READ answers STATUS_DEVICE_NOT_READY
    (at most ``count`` times)."""
    return failing_lowio("READ", every, "STATUS_DEVICE_NOT_READY", count)


def failing_lowio(op: str, every: int, status: str, count: int | None = None) -> str:
    """A rule for ``faulty_config``: every ``every``-th low I/O ``op`` (READ, WRITE...) answers
    ``status`` (at most ``count`` times)."""
    limit = "" if count is None else f"count = {count}\n"
    return f"""
[[minirdr.rules]]
routine = "MRxLowIOSubmit"
lowio_op = "{op}"
action = "status"
status = "{status}"
every = {every}
{limit}"""


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[Daemon]:
    folder = tmp_path / "flaky"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"flaky data")
    (folder / "b.secret").write_bytes(b"hidden")
    rules = """
[[minirdr.rules]]
routine = "MRxCreate"
path = "*.secret"
action = "status"
status = "STATUS_ACCESS_DENIED"
"""
    with running_daemon(faulty_config(folder, rules)) as d:
        yield d


def peer_pid(d: Daemon, name: str) -> int | None:
    with d.client() as c:
        return next((p["pid"] for p in c.status()["peers"] if p["name"] == name), None)


def test_injected_status_reaches_the_client_and_nothing_else_changes(flaky: Daemon) -> None:
    with flaky.client() as c:
        assert c.read_bytes(FLAKY + r"\a.txt") == b"flaky data"
        with pytest.raises(PermissionError) as info:
            c.read_bytes(FLAKY + r"\b.secret")
        assert info.value.status == S.STATUS_ACCESS_DENIED  # type: ignore[attr-defined]
        assert "injected" in str(info.value)
        rules = c.faults("flaky")["rules"]
        assert rules[0]["fired"] == 1 and rules[0]["matched"] == 1
        c.write_bytes(flaky.share + r"\ok.txt", b"local is untouched")


def test_a_hang_ends_in_io_timeout_while_other_minirdrs_keep_serving(flaky: Daemon) -> None:
    with flaky.client(timeout=1.5) as c:
        c.set_faults("flaky", [{"routine": "MRxLowIOSubmit", "lowio_op": "READ", "action": "hang"}])
        handle = c.create(FLAKY + r"\a.txt")
        done: list[object] = []

        def hung_read() -> None:
            try:
                c.read_handle(handle.fobx, 0, 10)
                done.append("read")
            except NtStatusError as exc:
                done.append(exc.status)

        with flaky.client() as other:
            t = threading.Thread(target=hung_read)
            t.start()
            time.sleep(0.2)
            # the local mini-redirector is another process: unaffected while flaky hangs
            for i in range(20):
                other.write_bytes(flaky.share + rf"\during{i}.txt", b"x")
            t.join(10)
        assert not t.is_alive()
        assert done == [S.STATUS_IO_TIMEOUT]


def test_a_crash_completes_in_flight_requests_at_once_and_the_process_restarts(
    flaky: Daemon,
) -> None:
    old = peer_pid(flaky, "flaky")
    with flaky.client(timeout=20.0) as c:
        c.set_faults("flaky", [{"routine": "MRxQueryFileInfo", "action": "crash", "count": 1}])
        handle = c.create(FLAKY + r"\a.txt")
        started = time.monotonic()
        with pytest.raises(NtStatusError) as info:
            c.query_info(handle.fobx)
        assert info.value.status == S.STATUS_CONNECTION_DISCONNECTED
        assert time.monotonic() - started < 10  # not the 20 s deadline
        wait_until(lambda: peer_pid(flaky, "flaky") not in (None, old), timeout=20.0)
        # the restarted process starts with the configured rules (no crash rule): it serves
        assert c.read_bytes(FLAKY + r"\a.txt") == b"flaky data"
    assert "exited code=70" in flaky.log()


@pytest.mark.parametrize("action", ["freeze", "spin"])
def test_a_frozen_or_spinning_process_is_detected_killed_and_restarted(
    flaky: Daemon, action: str
) -> None:
    """SIGSTOP (freeze), or a spin that holds the interpreter lock: the watchdog's alive file
    goes stale and the supervisor kills the process in about 2 s, not after the request's
    deadline."""
    old = peer_pid(flaky, "flaky")
    with flaky.client(timeout=30.0) as c:
        c.set_faults("flaky", [{"routine": "MRxQueryFileInfo", "action": action}])
        handle = c.create(FLAKY + r"\a.txt")
        started = time.monotonic()
        with pytest.raises(NtStatusError) as info:
            c.query_info(handle.fobx)
        assert info.value.status in (S.STATUS_CONNECTION_DISCONNECTED, S.STATUS_IO_TIMEOUT)
        assert time.monotonic() - started < 6  # not the 30 s deadline
        wait_until(lambda: peer_pid(flaky, "flaky") not in (None, old), timeout=30)
        assert c.read_bytes(FLAKY + r"\a.txt") == b"flaky data"
    assert "is frozen or stuck" in flaky.log()


def test_rules_change_at_run_time_through_the_cli(flaky: Daemon, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        'seed = 5\n[[rules]]\nroutine = "MRxQueryOpen"\naction = "status"\n'
        'status = "STATUS_NETWORK_UNREACHABLE"\nevery = 2\n'
    )
    with flaky.client() as c:  # connected first: a stat on a connected share is a query open
        assert c.stat(FLAKY + r"\a.txt").size == 10
    proc = flaky.cli("fault", "set", "flaky", str(rules))
    assert proc.returncode == 0, proc.stderr
    statuses = []
    with flaky.client() as c:
        for _ in range(4):
            try:
                c.stat(FLAKY + r"\a.txt")
                statuses.append("ok")
            except NtStatusError as exc:
                statuses.append(exc.status_name)
    assert statuses == ["ok", "STATUS_NETWORK_UNREACHABLE"] * 2
    listing = flaky.cli("fault", "list", "flaky")
    assert b"seed 5" in listing.stdout and b"fired=2" in listing.stdout
    assert flaky.cli("fault", "clear", "flaky").returncode == 0
    with flaky.client() as c:
        assert c.stat(FLAKY + r"\a.txt").size == 10


def test_a_bad_rule_is_refused_with_invalid_parameter(flaky: Daemon) -> None:
    with flaky.client() as c, pytest.raises(NtStatusError) as info:
        c.set_faults("flaky", [{"action": "explode"}])
    assert info.value.status == S.STATUS_INVALID_PARAMETER
    assert "action must be one of" in str(info.value)


def test_a_dropped_connection_is_rebuilt_and_handles_go_on(flaky: Daemon) -> None:
    def drop_on(op: str) -> None:
        rule = {"routine": "MRxLowIOSubmit", "lowio_op": op, "action": "disconnect", "count": 1}
        c.set_faults("flaky", [rule])

    with flaky.client() as c:
        access = Access.GENERIC_READ | Access.GENERIC_WRITE
        handle = c.create(FLAKY + r"\a.txt", access=access)
        for _ in range(3):  # every loss, not only the first
            drop_on("READ")
            # the core rebuilds \\flaky (MRxCreateSrvCall again), re-opens the handle by path
            # and sends the read again (a read is idempotent)
            assert c.read_handle(handle.fobx, 0, 5) == b"flaky"
        drop_on("WRITE")
        with pytest.raises(NtStatusError) as info:  # a write is not sent again
            c.write_handle(handle.fobx, 0, b"f")
        assert info.value.status == S.STATUS_CONNECTION_DISCONNECTED
        assert c.read_handle(handle.fobx, 0, 5) == b"flaky"
        conns = {x["name"].lower(): x["condition"] for x in c.status()["connections"]}
        assert conns[FLAKY.lower()] == "GOOD"
        c.close_handle(handle.fobx)
    log = flaky.log()
    assert log.count("connection lost server=flaky") >= 4
    assert log.count("re-opened handle") >= 4


def test_idle_connections_are_finalized_by_the_scavenger(tmp_path: Path) -> None:
    folder = tmp_path / "idle"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"idle")
    config = faulty_config(folder)
    with running_daemon(config, idle_timeout=1.0) as d, d.client() as c:
        assert c.read_bytes(FLAKY + r"\a.txt") == b"idle"
        wait_until(
            lambda: not any(x["name"].lower() == FLAKY.lower() for x in c.status()["connections"]),
            timeout=15,
        )
        assert c.read_bytes(FLAKY + r"\a.txt") == b"idle"  # built again on demand
        log = d.log()
    assert "scavenging idle connection" in log and "idle; finalizing its SrvCall" in log


def test_a_process_that_keeps_crashing_is_given_up_and_the_rest_serves(tmp_path: Path) -> None:
    folder = tmp_path / "crashy"
    folder.mkdir()
    rules = """
[[minirdr.rules]]
routine = "MRxCreate"
action = "crash"
"""
    with running_daemon(faulty_config(folder, rules)) as d, d.client(timeout=5) as c:

        def given_up() -> bool:
            with contextlib.suppress(NtStatusError):
                c.stat(FLAKY)
            proc = d.cli("--json", "status")
            states = {p["name"]: p["state"] for p in json.loads(proc.stdout)["processes"]}
            return states.get("flaky") == "gave up"

        wait_until(given_up, timeout=60)
        started = time.monotonic()
        with pytest.raises(NtStatusError) as info:
            c.stat(FLAKY)
        assert info.value.status == S.STATUS_CONNECTION_DISCONNECTED
        assert time.monotonic() - started < 2  # answered at once, not at the deadline
        c.write_bytes(d.share + r"\still.txt", b"local keeps serving")
        table = d.cli("status").stdout.decode()
        assert "GAVE UP" in table and "restarts=5" in table
        log = d.log()
    assert "restarted 5 times in 30 s; giving up" in log


def test_a_killed_core_is_restarted_and_clients_come_back(flaky: Daemon) -> None:
    core = int(
        subprocess.check_output(
            ["pgrep", "-f", f"rdbss.actors.process core core {flaky.runtime_dir}"]
        ).split()[0]
    )
    os.kill(core, signal.SIGKILL)

    def served() -> bool:
        try:
            with flaky.client(timeout=2) as c:
                names = {p["name"] for p in c.status()["peers"]}
                return (
                    names >= {"local", "flaky", "connmgr"}
                    and c.read_bytes(FLAKY + r"\a.txt") == b"flaky data"
                )
        except NtStatusError:
            return False

    wait_until(served, timeout=30)
    assert f"core core pid={core} exited" in flaky.log()

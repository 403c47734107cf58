"""The daemon as a client sees it (rdbss.link): a daemon that is not running, a remote daemon
that refuses the client's key or does not listen, and a core that dies with requests in flight
each fail at once with their own named status, and the client goes on with the restarted core
on its next call. Real daemons, real sockets; the bounds are behaviour (at once, not at the
request's deadline)."""

from __future__ import annotations

import asyncio
import contextlib
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

import pytest

from rdbss import keys
from rdbss.actors.supervisor import stop_daemon
from rdbss.aio import AsyncClient
from rdbss.client import Client
from rdbss.config import RemoteDaemon
from rdbss.wire import Access, CreateOptions, NtStatus, NtStatusError
from tests.daemon import Daemon, running_daemon, wait_until

S = NtStatus
AT_ONCE_S = 2.0  # far below the 10 s deadline these clients use


#: an open directory, for a change-notify wait that stays pending until the core dies
FOLDER = {"access": Access.FILE_LIST_DIRECTORY, "options": CreateOptions.FILE_DIRECTORY_FILE}


def _assert_lost_at_once(started: float, error: NtStatusError) -> None:
    assert time.monotonic() - started < AT_ONCE_S
    assert error.status == S.STATUS_CONNECTION_DISCONNECTED
    assert "core went away" in (error.strerror or "")


def _kill_core_after(d: Daemon, delay: float) -> int:
    core = d.processes()["core"]
    threading.Timer(delay, os.kill, (core, signal.SIGKILL)).start()
    return core


def _core_restarted(d: Daemon, old: int) -> None:
    """The supervisor started a new core; the first request on the share succeeds (the new
    core holds a set-up until the connection manager and the mini-redirector serving the name
    have registered with it again)."""
    wait_until(lambda: d.processes().get("core", old) != old, 10)
    with d.client(timeout=10) as c:
        assert c.stat(d.share).is_dir


def test_a_core_that_dies_fails_what_is_in_flight_at_once_and_the_next_call_goes_on(
    fresh_daemon: Daemon,
) -> None:
    """Three losses in a row: each time a pending change-notify wait ends at once with
    STATUS_CONNECTION_DISCONNECTED, and the next call reaches the restarted core."""
    d = fresh_daemon
    with d.client(timeout=10) as c:
        for _ in range(3):
            folder = c.create(d.share, **FOLDER)
            old = _kill_core_after(d, 0.3)
            started = time.monotonic()
            with pytest.raises(NtStatusError) as info:
                c.watch(folder.fobx, timeout=10)
            _assert_lost_at_once(started, info.value)
            _core_restarted(d, old)
            assert c.ping()  # waits for the restarted core's socket, then goes


def test_the_asyncio_client_notices_a_lost_core_too(fresh_daemon: Daemon) -> None:
    d = fresh_daemon

    async def scenario() -> None:
        async with AsyncClient(d.runtime_dir, timeout=10) as c:
            folder = await c.create(d.share, **FOLDER)
            old = _kill_core_after(d, 0.3)
            started = time.monotonic()
            with pytest.raises(NtStatusError) as info:
                await c.watch(folder.fobx, timeout=10)
            _assert_lost_at_once(started, info.value)
            _core_restarted(d, old)
            # several calls at once while the core may still be starting: held, then sent
            assert await asyncio.gather(*(c.ping() for _ in range(20))) == [True] * 20

    asyncio.run(scenario())


def test_a_stopped_daemon_fails_at_once_with_what_to_do() -> None:
    with running_daemon() as d:
        c = d.client(timeout=10)
        assert c.ping()
        stop_daemon(d.runtime_dir, timeout=20.0)

        async def aio_call() -> None:
            async with AsyncClient(d.runtime_dir, timeout=10) as a:
                await a.ping()

        try:
            for call in (c.ping, lambda: asyncio.run(aio_call())):
                started = time.monotonic()
                with pytest.raises(NtStatusError) as info:
                    call()
                assert time.monotonic() - started < AT_ONCE_S
                assert info.value.status == S.STATUS_REDIRECTOR_NOT_STARTED
                message = info.value.strerror or ""
                assert str(d.runtime_dir) in message and "rdbss daemon start" in message
        finally:
            c.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Refusing:
    """A daemon listening on tcp:// whose allow-list (``allow``) admits nobody yet, and how
    the client alice reaches it."""

    daemon: Daemon
    remote: RemoteDaemon
    allow: Path
    alice: str  # her public key
    port: int

    def grant(self) -> None:
        self.allow.write_text(f"{self.alice} alice client\n")


@contextlib.contextmanager
def _refusing(tmp_path: Path) -> Iterator[Refusing]:
    key_dir = tmp_path / "keys"
    keys.generate(key_dir, "core")
    keys.generate(key_dir, "alice")
    allow = tmp_path / "authorized_keys"
    allow.write_text("")  # nobody yet
    port = _free_port()
    extra = (
        f'secret_key = "{key_dir / "core.key_secret"}"\n'
        f'client_listen = "tcp://127.0.0.1:{port}"\n'
        f'authorized_keys = "{allow}"\n'
    )
    remote = RemoteDaemon(
        f"tcp://127.0.0.1:{port}", str(key_dir / "core.key"), str(key_dir / "alice.key_secret")
    )
    alice = keys.load_public(str(key_dir / "alice.key")).decode()
    with running_daemon(daemon_extra=extra) as d:
        yield Refusing(d, remote, allow, alice, port)


def test_a_remote_daemon_refusing_the_key_fails_at_once_and_a_granted_key_gets_in(
    tmp_path: Path,
) -> None:
    with _refusing(tmp_path) as rig, Client(remote=rig.remote, timeout=10) as c:
        d, alice, port = rig.daemon, rig.alice, rig.port
        started = time.monotonic()
        with pytest.raises(NtStatusError) as info:
            c.ping()
        assert time.monotonic() - started < AT_ONCE_S
        assert info.value.status == S.STATUS_LOGON_FAILURE
        message = info.value.strerror or ""
        assert f"key refused by tcp://127.0.0.1:{port}" in message and alice in message
        rig.grant()  # the next call gets in
        assert c.ping()
        # over tcp:// too, a lost core fails what was in flight at once, and the next call
        # waits for the restarted core (a remote port refusing for a while is not "stopped")
        folder = c.create(d.share, **FOLDER)
        old = _kill_core_after(d, 0.3)
        started = time.monotonic()
        with pytest.raises(NtStatusError) as info:
            c.watch(folder.fobx, timeout=10)
        _assert_lost_at_once(started, info.value)
        assert c.ping()
        _core_restarted(d, old)


def test_a_key_granted_a_while_after_the_refusal_gets_in(tmp_path: Path) -> None:
    """The next call after a refusal makes a new handshake: one made in between (while the
    user edits the allow-list) would be refused and remembered. Client and AsyncClient."""
    with _refusing(tmp_path) as rig:
        with Client(remote=rig.remote, timeout=10) as c:
            with pytest.raises(NtStatusError) as info:
                c.ping()
            assert info.value.status == S.STATUS_LOGON_FAILURE
            time.sleep(1.0)
            rig.grant()
            assert c.ping()
        rig.allow.write_text("")

        async def refused_then_granted() -> None:
            async with AsyncClient(remote=rig.remote, timeout=10) as ac:
                with pytest.raises(NtStatusError) as info:
                    await ac.ping()
                assert info.value.status == S.STATUS_LOGON_FAILURE
                await asyncio.sleep(1.0)
                rig.grant()
                assert await ac.ping()

        asyncio.run(asyncio.wait_for(refused_then_granted(), 30))


def test_a_remote_address_where_nothing_listens_fails_at_once(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    keys.generate(key_dir, "core")
    keys.generate(key_dir, "alice")
    port = _free_port()
    remote = RemoteDaemon(
        f"tcp://127.0.0.1:{port}", str(key_dir / "core.key"), str(key_dir / "alice.key_secret")
    )
    with Client(remote=remote, timeout=10) as c:
        started = time.monotonic()
        with pytest.raises(NtStatusError) as info:
            c.ping()
        assert time.monotonic() - started < AT_ONCE_S + 1.0  # a restart gets 1 s to come back
        assert info.value.status == S.STATUS_REMOTE_NOT_LISTENING
        assert f"tcp://127.0.0.1:{port}" in (info.value.strerror or "")


def test_the_client_refuses_an_over_long_path_itself(daemon: Daemon) -> None:
    """Never sent: refused at once with a named status (the codec would refuse it too)."""
    with daemon.client(timeout=10) as c:
        started = time.monotonic()
        with pytest.raises(NtStatusError) as info:
            c.stat(daemon.share + "\\" + "x" * (70 << 10))
        assert time.monotonic() - started < 0.5
        assert info.value.status == S.STATUS_OBJECT_NAME_INVALID
        with pytest.raises(NtStatusError) as info:
            c.read_handle(1, -7, 10)
        assert info.value.status == S.STATUS_INVALID_PARAMETER
        assert "offset -7" in (info.value.strerror or "")
        assert c.ping()


#: a client socket whose daemon is gone retries its connection for a while (every millisecond
#: here, so thousands of monitor events pile up unread), then the client is closed
_IDLE_CLIENT = """
import sys, tempfile, threading, time
from pathlib import Path
import zmq
from rdbss.actors.bus import Endpoints
from rdbss.client import LinkWatch

folder = Path(tempfile.mkdtemp(prefix="rdbss-link-"))
sock = zmq.Context.instance().socket(zmq.DEALER)
sock.setsockopt(zmq.RECONNECT_IVL, 1)
sock.setsockopt(zmq.LINGER, 0)
watch = LinkWatch(sock, Endpoints.in_dir(folder))
sock.connect(f"ipc://{folder}/gone.sock")
time.sleep(3)
closer = threading.Thread(target=watch.close, daemon=True)
closer.start()
closer.join(10)
print("closed" if not closer.is_alive() else "blocked", flush=True)
"""


def test_a_client_idle_while_its_daemon_is_gone_is_not_frozen_by_its_link_events() -> None:
    """libzmq sends monitor events blocking, holding the interpreter lock: were their queue
    bounded, a client left idle while its daemon is gone would freeze its whole process (seen
    as a test run that never exited, in a cached fsspec client's exit hook). Run in a child
    process: a frozen one cannot even be timed out from inside."""
    done = subprocess.run(
        [sys.executable, "-c", _IDLE_CLIENT], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "closed", (done.stdout, done.stderr[-2000:])


def test_stats_listings_and_small_files_while_the_core_dies(fresh_daemon: Daemon) -> None:
    """A lone stat (its own short way), a listing and a small file's read, each one compound,
    sent in a loop while the core is killed: each answers right or fails at once with
    STATUS_CONNECTION_DISCONNECTED; once the core is back, each answers right again, through
    Client and AsyncClient."""
    d = fresh_daemon
    (d.share_dir / "core-kill").mkdir()
    (d.share_dir / "core-kill" / "a.txt").write_bytes(b"abc")
    folder, path = d.share + r"\core-kill", d.share + r"\core-kill\a.txt"
    with d.client(timeout=10) as c:
        calls = (
            (lambda: c.stat(path).size, 3),
            (lambda: c.listdir(folder), ["a.txt"]),
            (lambda: c.read_bytes(path), b"abc"),
            (lambda: [getattr(s, "size", s) for s in c.stat_many([path])], [3]),
        )
        for call, want in calls:
            old = _kill_core_after(d, 0.2)
            deadline = time.monotonic() + 10
            while d.processes().get("core", old) == old and time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    assert call() == want
                except NtStatusError as exc:
                    _assert_lost_at_once(started, exc)
            _core_restarted(d, old)
            assert call() == want

    async def scenario() -> None:
        async with AsyncClient(d.runtime_dir, timeout=10) as a:
            old = _kill_core_after(d, 0.2)
            deadline = time.monotonic() + 10
            while d.processes().get("core", old) == old and time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    assert (await a.stat(path)).size == 3
                    assert await a.listdir(folder) == ["a.txt"]
                    assert await a.read_bytes(path) == b"abc"
                except NtStatusError as exc:
                    _assert_lost_at_once(started, exc)
            _core_restarted(d, old)
            assert (await a.stat(path)).size == 3
            assert await a.listdir(folder) == ["a.txt"]
            assert await a.read_bytes(path) == b"abc"

    asyncio.run(scenario())

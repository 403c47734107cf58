"""Recovery is a loop: against real Samba and OpenSSH servers that are killed and started again
on the same port, handles survive every loss (three in a row, opened before the first loss and
between losses), the first request after a connection dropped while idle succeeds (a server
restart, a TCP connection cut with ``ss -K``, keepalives in between), and a handle whose file is
gone after the reconnect fails with a named status at once, never a hang."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rdbss.client import Client
from rdbss.wire import Access, CreateDisposition, NtStatus, NtStatusError
from tests.conformance.backend_sftp import sftp_config
from tests.conformance.backend_smb import smb_config, write_password_file
from tests.daemon import Daemon, running_daemon
from tests.servers.fixtures import SambaServer, SshServer, cut_tcp, require_or_skip

S = NtStatus
RW = Access.GENERIC_READ | Access.GENERIC_WRITE
LOSSES = 3
KEEPALIVE_S = 0.5
#: every request below answers well within this (request timeout 10 s, backend timeout 3 s)
ANSWER_S = 8.0


@dataclass
class Backend:
    name: str  # "smb" | "sftp"
    server: SambaServer | SshServer
    folder: Path  # the share's folder on the server
    unc_root: str
    other_root: str  # another share on the same server

    def unc(self, name: str) -> str:
        return rf"{self.unc_root}\{name}"


@dataclass
class Rig:
    daemon: Daemon
    backends: dict[str, Backend]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    require_or_skip(SambaServer.missing_binaries(), "Samba (smbd)")
    require_or_skip(SshServer.missing_binaries(), "OpenSSH (sshd)")
    base = tmp_path_factory.mktemp("reconnect")
    with SambaServer(base / "smb", encrypt_share=True) as samba, SshServer(base / "ssh") as sshd:
        folder = sshd.root_dir / "data"
        folder.mkdir()
        password = write_password_file(base / "pw", samba.password)
        config = smb_config(samba, password, timeout=3.0).replace(
            "timeout = 3.0", f"timeout = 3.0\nkeepalive_interval = {KEEPALIVE_S}", 1
        ) + sftp_config(
            sshd, {"share": folder, "other": folder}, server="sftptest", timeout=3.0
        ).replace("timeout = 3.0", f"timeout = 3.0\nkeepalive_interval = {KEEPALIVE_S}", 1)
        with running_daemon(config) as daemon:
            yield Rig(
                daemon,
                {
                    "smb": Backend(
                        "smb", samba, samba.share_path, r"\\sambatest\share", r"\\sambatest\secure"
                    ),
                    "sftp": Backend("sftp", sshd, folder, r"\\sftptest\share", r"\\sftptest\other"),
                },
            )


@pytest.fixture(params=["smb", "sftp"])
def backend(request: pytest.FixtureRequest, rig: Rig) -> Backend:
    name: str = request.param
    return rig.backends[name]


@pytest.fixture
def client(rig: Rig) -> Iterator[Client]:
    with rig.daemon.client(timeout=10.0) as c:
        yield c


def _timed(fn: object) -> float:
    assert callable(fn)
    start = time.monotonic()
    fn()
    took = time.monotonic() - start
    assert took < ANSWER_S, f"took {took:.1f} s"
    return took


def test_handles_survive_every_server_restart(backend: Backend, client: Client) -> None:
    """A handle opened before the first loss and one opened after each loss: after every
    restart, reads and writes on all of them work again (re-opened by path)."""
    handles: dict[str, int] = {}
    try:
        for loss in range(LOSSES + 1):
            name = f"survivor{loss}.bin"
            handle = client.create(
                backend.unc(name), access=RW, disposition=CreateDisposition.FILE_OVERWRITE_IF
            )
            handles[name] = handle.fobx
            assert client.write_handle(handle.fobx, 0, f"opened before loss {loss}".encode())
            if loss == LOSSES:
                break
            backend.server.restart()
            for k, (old, fobx) in enumerate(handles.items()):
                expected = f"opened before loss {int(old[8:-4])}".encode()
                # the first read finds the connection lost and is sent again on a new one
                _timed(lambda f=fobx, e=expected: _check_read(client, f, e))
                # a write through every handle after every loss lands on the server
                mark = f"/{loss}{k}".encode()
                assert client.write_handle(fobx, len(expected) + 3 * loss, mark) == len(mark)
        for name, fobx in handles.items():
            client.flush_handle(fobx)
            on_server = (backend.folder / name).read_bytes()
            assert client.read_handle(fobx, 0, len(on_server) + 10) == on_server
    finally:
        for fobx in handles.values():
            client.close_handle(fobx)
    # what was written after every loss is on the server
    first = (backend.folder / "survivor0.bin").read_bytes()
    assert first.startswith(b"opened before loss 0/")
    assert first.count(b"/") == LOSSES


def _check_read(client: Client, fobx: int, expected: bytes) -> None:
    assert client.read_handle(fobx, 0, len(expected)) == expected


def test_a_handle_whose_file_is_gone_fails_with_a_named_status(
    backend: Backend, client: Client
) -> None:
    handle = client.create(
        backend.unc("doomed.bin"), access=RW, disposition=CreateDisposition.FILE_OVERWRITE_IF
    )
    try:
        client.write_handle(handle.fobx, 0, b"soon gone")
        backend.server.restart()
        (backend.folder / "doomed.bin").unlink()
        for _ in range(2):  # the re-open fails, and from then on the handle says so at once
            start = time.monotonic()
            with pytest.raises(NtStatusError) as ei:
                client.read_handle(handle.fobx, 0, 4)
            assert time.monotonic() - start < ANSWER_S
            assert ei.value.status == S.STATUS_OBJECT_NAME_NOT_FOUND, ei.value
            assert "re-open" in str(ei.value)
    finally:
        client.close_handle(handle.fobx)  # never fails for the caller


def test_the_first_request_after_an_idle_drop_succeeds(backend: Backend, client: Client) -> None:
    """No handle open: the server restarts, or the connection is cut, or either and then some
    keepalive intervals pass; the next listing, or stat (a compound), succeeds every time (the
    connection is torn down and built again on that request)."""
    (backend.folder / "listed.txt").write_bytes(b"x")
    assert "listed.txt" in client.listdir(backend.unc_root)

    def listing() -> None:
        assert "listed.txt" in client.listdir(backend.unc_root)

    def stat() -> None:
        assert client.stat(backend.unc("listed.txt")).size == 1

    def restart(wait_s: float) -> None:
        backend.server.restart()
        time.sleep(wait_s)

    def cut(wait_s: float) -> None:
        cut_tcp(backend.server.port)
        time.sleep(wait_s)

    keepalives = 5 * KEEPALIVE_S
    steps = [
        ("a server restart, 1 s later, then a listing", lambda: restart(1.0), listing),
        ("a TCP cut, then a stat", lambda: cut(0.0), stat),
        ("a restart and keepalive intervals, then a stat", lambda: restart(keepalives), stat),
        ("a TCP cut and keepalive intervals, then a listing", lambda: cut(keepalives), listing),
    ]
    for what, fault, request in steps:
        fault()
        start = time.monotonic()
        try:
            request()
        except NtStatusError as exc:
            pytest.fail(f"after {what}: {exc}")
        assert time.monotonic() - start < ANSWER_S, what


def test_a_change_that_finds_the_connection_seen_lost_is_sent_again(
    backend: Backend, client: Client
) -> None:
    """A write, a create that overwrites, a rename, a resize and a small file's whole write (a
    compound) never go again after a lost connection when they may have reached the server;
    one that finds its connection already seen lost (the server restarted or the TCP connection
    was cut, then keepalive intervals passed) never left the daemon, so it is sent again on the
    connection built again and succeeds, three faults in a row for each."""
    from rdbss.wire import FileInformationClass

    path = backend.unc("changed.bin")
    handle = client.create(path, access=RW, disposition=CreateDisposition.FILE_OVERWRITE_IF)
    faults = [
        lambda: backend.server.restart(),
        lambda: cut_tcp(backend.server.port),
        lambda: backend.server.restart(),
    ]
    try:
        client.listdir(backend.unc_root)
        for k, fault in enumerate(faults):
            fault()
            time.sleep(3 * KEEPALIVE_S)  # the keepalive (or the transport) sees the loss
            mark = f"write after fault {k}".encode()
            took = _timed(lambda m=mark: client.write_handle(handle.fobx, 0, m))  # type: ignore[misc]
            assert took < ANSWER_S
            client.flush_handle(handle.fobx)
            assert (backend.folder / "changed.bin").read_bytes()[: len(mark)] == mark
        for k, fault in enumerate(faults):
            fault()
            time.sleep(3 * KEEPALIVE_S)
            made = client.create(
                backend.unc(f"made{k}.bin"),
                access=RW,
                disposition=CreateDisposition.FILE_OVERWRITE_IF,
            )
            client.close_handle(made.fobx)
            assert (backend.folder / f"made{k}.bin").exists()
        for k, fault in enumerate(faults):
            fault()
            time.sleep(3 * KEEPALIVE_S)
            client.set_info(
                handle.fobx, FileInformationClass.FileEndOfFileInformation, size=100 + k
            )
            assert (backend.folder / "changed.bin").stat().st_size == 100 + k
        fault = faults[0]
        fault()
        time.sleep(3 * KEEPALIVE_S)
        client.set_info(
            handle.fobx,
            FileInformationClass.FileRenameInformation,
            target=backend.unc("renamed.bin"),
            replace=True,
        )
        assert (backend.folder / "renamed.bin").stat().st_size == 102
        assert not (backend.folder / "changed.bin").exists()
    finally:
        client.close_handle(handle.fobx)
    for k, fault in enumerate(faults):  # a small file written whole: one compound
        fault()
        time.sleep(3 * KEEPALIVE_S)
        data = f"written whole after fault {k}".encode()
        assert client.write_bytes(backend.unc("whole.txt"), data) == len(data)
        assert (backend.folder / "whole.txt").read_bytes() == data


def test_a_new_share_on_a_server_whose_connection_dropped_connects(
    backend: Backend, client: Client
) -> None:
    """The server's connection is up (one share in use) and drops while idle; the first use of
    another share on that server builds the connection again instead of failing, three drops
    in a row."""
    for _ in range(3):
        client.listdir(backend.unc_root)
        backend.server.restart()
        time.sleep(1.0)
        client.listdir(backend.other_root)
        client.listdir(backend.unc_root)  # and the share in use before


def test_the_short_ways_after_each_server_restart(backend: Backend, client: Client) -> None:
    """The first request after the server restarted, for each of the one-compound ways (a
    stat, a small file's whole read, a listing; each sent again on a new connection, as it
    may be) answers right and in time. A small file's whole write (never sent again) right
    after a restart lands or fails with the lost connection, and lands when sent again."""
    (backend.folder / "after").mkdir(exist_ok=True)
    (backend.folder / "after" / "s.txt").write_bytes(b"short")
    folder, path = backend.unc("after"), backend.unc(r"after\s.txt")
    calls = (
        lambda: client.stat(path).size == 5,
        lambda: client.read_bytes(path) == b"short",
        lambda: client.listdir(folder) == ["s.txt"],
        lambda: getattr(client.stat_many([path, folder])[0], "size", None) == 5,
    )
    for call in calls:
        backend.server.restart()
        results: list[bool] = []
        _timed(lambda c=call, r=results: r.append(c()))  # type: ignore[misc]
        assert results == [True]
    backend.server.restart()
    try:
        client.write_bytes(backend.unc(r"after\w.txt"), b"lost?")
    except NtStatusError as exc:
        assert exc.status == S.STATUS_CONNECTION_DISCONNECTED, exc
    assert client.write_bytes(backend.unc(r"after\w.txt"), b"landed") == 6
    assert (backend.folder / "after" / "w.txt").read_bytes() == b"landed"

"""Large transfers through a real daemon to OpenSSH (the SFTP mini-redirector behind a fault
proxy on loopback): the client keeps several pieces of one write in flight (shared memory and
sockets), the mini-redirector pipelines them to the server, and yet everything lands byte-exact,
a read right after a write sees it, a close returns only once the server has the whole file,
and a connection cut in the middle of a write fails that write."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rdbss.aio import AsyncClient
from rdbss.client import SOCKET_WRITES_IN_FLIGHT, Client, Handle
from rdbss.faultproxy import FaultProxy
from rdbss.fsspec_fs import RdbssFileSystem
from rdbss.testing.backend import faulty_config, sftp_config
from rdbss.testing.daemon import Daemon, running_daemon
from rdbss.wire import Access, CreateDisposition, NtStatus
from tests.reliability.test_faulty import failing_lowio
from tests.servers.fixtures import SshServer, require_or_skip

S = NtStatus
SIZE = (20 << 20) + 12345  # not a whole number of pieces
DATA = os.urandom(SIZE)


@dataclass
class Rig:
    daemon: Daemon
    proxy: FaultProxy
    folder: Path  # the share's folder on the server, read directly
    unc: str


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    require_or_skip(SshServer.missing_binaries(), "OpenSSH (sshd)")
    base = tmp_path_factory.mktemp("pipelined")
    with SshServer(base / "ssh") as server:
        folder = server.root_dir / "bulk"
        folder.mkdir()
        with FaultProxy(server.host, server.port) as proxy:
            config = sftp_config(server, {"bulk": folder}, timeout=30.0, port=proxy.port)
            # the server's host key, known at the proxy's port
            known = server.known_hosts_path.read_text()
            proxied = base / "known_hosts"
            proxied.write_text(known.replace(f":{server.port} ", f":{proxy.port} "))
            config = config.replace(str(server.known_hosts_path), str(proxied))
            with running_daemon(extra_config=config) as daemon:
                yield Rig(daemon, proxy, folder, r"\\sshtest\bulk")


@pytest.fixture(params=[True, False], ids=["shared-memory", "sockets"])
def client(request: pytest.FixtureRequest, rig: Rig) -> Iterator[Client]:
    with Client(rig.daemon.runtime_dir, timeout=30.0, shared_memory=request.param) as c:
        yield c


def _open_for_writing(client: Client, path: str) -> int:
    access = Access.GENERIC_READ | Access.GENERIC_WRITE
    return client.create(path, access=access, disposition=CreateDisposition.FILE_OVERWRITE_IF).fobx


def test_a_large_write_lands_byte_exact(rig: Rig, client: Client) -> None:
    assert client.write_bytes(rig.unc + r"\whole.bin", DATA) == SIZE
    assert (rig.folder / "whole.bin").read_bytes() == DATA


def test_small_pieces_in_flight_through_the_sockets_land_byte_exact(rig: Rig) -> None:
    with Client(rig.daemon.runtime_dir, timeout=30.0, shared_memory=False) as client:
        fobx = _open_for_writing(client, rig.unc + r"\pieces.bin")
        try:
            view = memoryview(DATA)
            written = client.write_pieces(
                fobx, 0, view, 1 << 20, SOCKET_WRITES_IN_FLIGHT, shared_memory=False
            )
        finally:
            client.close_handle(fobx)
    assert written == SIZE
    assert (rig.folder / "pieces.bin").read_bytes() == DATA


def test_a_read_right_after_a_write_sees_it(rig: Rig, client: Client) -> None:
    path = rig.unc + r"\then-read.bin"
    fobx = _open_for_writing(client, path)
    try:
        for round_ in range(3):
            data = DATA[round_ : round_ + (8 << 20)]
            assert client.write_handle(fobx, 0, data) == len(data)
            assert client.read_handle(fobx, 0, len(data)) == data
            with Client(rig.daemon.runtime_dir, timeout=30.0) as other:  # another handle too
                assert other.read_bytes(path)[: len(data)] == data
    finally:
        client.close_handle(fobx)


def test_an_fsspec_close_returns_once_the_server_has_the_file(rig: Rig) -> None:
    fs = RdbssFileSystem(runtime_dir=rig.daemon.runtime_dir, timeout=30.0)
    try:
        for round_ in range(3):
            name = f"fsspec-{round_}.bin"
            with fs.open(f"rdbss://sshtest/bulk/{name}", "wb") as f:
                f.write(DATA[: 3 << 20])  # buffered: goes out in the close, with the rest
                f.write(DATA[3 << 20 :])
            # read straight from the server's folder the moment close returned
            assert (rig.folder / name).read_bytes() == DATA
    finally:
        fs.close()


def test_a_connection_cut_mid_write_fails_the_write(rig: Rig) -> None:
    big = os.urandom(64 << 20)
    with Client(rig.daemon.runtime_dir, timeout=30.0) as client:
        path = rig.unc + r"\cut.bin"
        fobx = _open_for_writing(client, path)
        outcome: list[object] = []

        def write() -> None:
            try:
                outcome.append(client.write_handle(fobx, 0, big))
            except OSError as exc:
                outcome.append(exc)

        rig.proxy.set(bandwidth=16 << 20)  # the write takes seconds: it is cut in the middle
        start = rig.proxy.stats()["bytes_up"]
        writer = threading.Thread(target=write)
        try:
            writer.start()
            deadline = time.monotonic() + 30.0
            while rig.proxy.stats()["bytes_up"] - start < (8 << 20):
                assert time.monotonic() < deadline and writer.is_alive(), "the write never started"
                time.sleep(0.01)
            rig.proxy.reset()
            writer.join(60.0)
        finally:
            rig.proxy.set(bandwidth=0)
        assert outcome, "the write did not finish"
        assert isinstance(outcome[0], OSError), f"a cut write answered {outcome[0]!r}"
        assert getattr(outcome[0], "status", None) == S.STATUS_CONNECTION_DISCONNECTED
        assert (rig.folder / "cut.bin").stat().st_size < len(big)
        with contextlib.suppress(OSError):  # its connection is gone: the close may fail too
            client.close_handle(fobx)
        # the share is usable again
        assert client.write_bytes(path, DATA) == SIZE
        assert (rig.folder / "cut.bin").read_bytes() == DATA


@pytest.mark.parametrize("shared_memory", [True, False], ids=["shared-memory", "sockets"])
def test_the_first_failed_piece_in_offset_order_fails_the_write(
    tmp_path: Path, shared_memory: bool
) -> None:
    """Pieces 3 and 4 of one write fail, both in flight together: the write raises piece 3's
    status, once every piece sent was answered."""
    folder = tmp_path / "flaky"
    folder.mkdir()
    # the first rule takes the third write; the second counts the others: it takes the fourth
    rules = failing_lowio("WRITE", 3, "STATUS_DISK_FULL", 1) + failing_lowio(
        "WRITE", 3, "STATUS_ACCESS_DENIED", 1
    )
    step = 1 << 20 if not shared_memory else 4 << 20
    with (
        running_daemon(faulty_config(folder, rules)) as daemon,
        Client(daemon.runtime_dir, timeout=30.0, shared_memory=shared_memory) as client,
    ):
        fobx = _open_for_writing(client, r"\\flaky\data\f.bin")
        try:
            with pytest.raises(OSError) as failed:
                client.write_pieces(
                    fobx, 0, memoryview(DATA), step, 4 if not shared_memory else 2, shared_memory
                )
            assert getattr(failed.value, "status", None) == S.STATUS_DISK_FULL
            assert not client._outstanding and not client._arrived  # every answer collected
            assert client.write_handle(fobx, 0, b"still usable") == 12
        finally:
            client.close_handle(fobx)


async def _open_async(client: AsyncClient, path: str) -> Handle:
    access = Access.GENERIC_READ | Access.GENERIC_WRITE
    return await client.create(path, access=access, disposition=CreateDisposition.FILE_OVERWRITE_IF)


def test_the_asyncio_client_keeps_pieces_in_flight_and_lands_byte_exact(tmp_path: Path) -> None:
    """AsyncClient.write_handle sends the shared-memory pieces of one write before the first
    is answered (the core holds several of its writes at once), and the file is whole after.
    (Through the sockets a piece is one message's limit, more than these writes.)"""
    folder = tmp_path / "slow"
    folder.mkdir()
    delay = """
[[minirdr.rules]]
routine = "MRxLowIOSubmit"
lowio_op = "WRITE"
action = "delay"
delay_ms = 300
"""
    data = DATA[: (12 << 20) + 7]
    with running_daemon(faulty_config(folder, delay)) as daemon:
        seen: list[int] = []
        done = threading.Event()

        def watch() -> None:
            with daemon.client() as c:
                while not done.is_set():
                    seen.append(int(c.status()["pending"]))
                    time.sleep(0.02)

        async def write() -> int:
            async with AsyncClient(daemon.runtime_dir, timeout=30.0, shared_memory=True) as c:
                handle = await _open_async(c, r"\\flaky\data\f.bin")
                try:
                    return await c.write_handle(handle.fobx, 0, data)
                finally:
                    await c.close_handle(handle.fobx)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            written = asyncio.run(write())
        finally:
            done.set()
            watcher.join(10.0)
    assert written == len(data)
    assert (folder / "f.bin").read_bytes() == data
    assert max(seen) >= 2, seen


def test_the_asyncio_client_raises_the_first_failed_piece_in_offset_order(tmp_path: Path) -> None:
    folder = tmp_path / "flaky"
    folder.mkdir()
    rules = failing_lowio("WRITE", 3, "STATUS_DISK_FULL", 1) + failing_lowio(
        "WRITE", 3, "STATUS_ACCESS_DENIED", 1
    )

    async def write(daemon: Daemon) -> tuple[int | None, int]:
        async with AsyncClient(daemon.runtime_dir, timeout=30.0, shared_memory=True) as c:
            handle = await _open_async(c, r"\\flaky\data\f.bin")
            try:
                try:
                    await c.write_handle(handle.fobx, 0, DATA)
                except OSError as exc:
                    status = getattr(exc, "status", None)
                else:
                    status = None
                return status, await c.write_handle(handle.fobx, 0, b"still usable")
            finally:
                await c.close_handle(handle.fobx)

    with running_daemon(faulty_config(folder, rules)) as daemon:
        status, again = asyncio.run(write(daemon))
    assert status == S.STATUS_DISK_FULL
    assert again == 12

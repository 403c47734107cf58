"""Sequential reads and writes through the WebDAV mini-redirector stream: a real daemon against
a real wsgidav server that logs every request, so the tests count the GETs and PUTs the server
saw. A read that continues where the handle's previous one ended takes its bytes from one open
``Range: bytes=N-`` GET; a seek, a write through the handle and the close end that stream, and a
stream the server dropped is reopened at the same offset. A new (or overwritten) file written
sequentially from byte 0 goes up as one chunked PUT while the writes arrive; a write elsewhere,
a broken PUT or a lost server fall back to the staged file, uploaded whole at the close."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rdbss.client import Client
from rdbss.wire import Access, CreateDisposition, FileInformationClass, NtStatus, NtStatusError
from tests.conformance.backend_webdav import webdav_config, write_password_file
from tests.daemon import Daemon, running_daemon
from tests.servers.fixtures import WebDavServer, require_or_skip

RW = Access.GENERIC_READ | Access.GENERIC_WRITE
RENAME = FileInformationClass.FileRenameInformation
END_OF_FILE = FileInformationClass.FileEndOfFileInformation
CHUNK = 1 << 20
#: wsgidav writes a request's log line before it sends the body; allow for the pipe anyway.
LOG_DEADLINE_S = 5.0


@dataclass
class Dav:
    daemon: Daemon
    server: WebDavServer
    share: str

    def unc(self, name: str) -> str:
        return rf"\\davtest\{self.share}\{name}"

    def file(self, name: str) -> Path:
        return self.server.root_dir / self.share / name

    def gets(self, name: str) -> list[str]:
        return self.server.requests("GET", f"/{self.share}/{name}")

    def data_puts(self, name: str) -> list[str]:
        """The PUT lines of ``name`` that carried data (a create's empty PUT logs length=0)."""
        return [
            p for p in self.server.requests("PUT", f"/{self.share}/{name}") if "length=0," not in p
        ]

    def wait_on_server(self, name: str) -> int:
        """The size of ``name`` on the server once it is not empty (0 if it stays empty)."""
        deadline = time.monotonic() + LOG_DEADLINE_S
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                if size := self.file(name).stat().st_size:
                    return size
            time.sleep(0.02)
        return 0

    def wait_gets(self, name: str, count: int) -> list[str]:
        """The GET lines of ``name`` once there are at least ``count`` (within the deadline)."""
        deadline = time.monotonic() + LOG_DEADLINE_S
        lines = self.gets(name)
        while len(lines) < count and time.monotonic() < deadline:
            time.sleep(0.05)
            lines = self.gets(name)
        return lines


@pytest.fixture(scope="module")
def dav(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dav]:
    require_or_skip(WebDavServer.missing_binaries(), "wsgidav")
    base = tmp_path_factory.mktemp("webdav-stream")
    share = "stream-" + secrets.token_hex(3)
    with WebDavServer(base / "dav", request_log=True) as server:
        server.root_dir.joinpath(share).mkdir()
        password_file = write_password_file(base / "pw", server.password)
        with running_daemon(extra_config=webdav_config(server, password_file)) as daemon:
            yield Dav(daemon, server, share)


@pytest.fixture
def client(dav: Dav) -> Iterator[Client]:
    with dav.daemon.client(timeout=10.0) as c:
        yield c


def read_chunks(client: Client, fobx: int, offset: int, count: int) -> bytes:
    """``count`` sequential 1 MiB reads from ``offset`` through one handle (stops at EOF)."""
    out = bytearray()
    for i in range(count):
        piece = client.read_handle(fobx, offset + i * CHUNK, CHUNK)
        out += piece
        if len(piece) < CHUNK:
            break
    return bytes(out)


def test_sequential_reads_use_fewer_gets_than_chunks(dav: Dav, client: Client) -> None:
    data = os.urandom(8 * CHUNK + 12345)
    dav.file("seq.bin").write_bytes(data)
    handle = client.create(dav.unc("seq.bin"))
    try:
        assert read_chunks(client, handle.fobx, 0, 20) == data  # 9 chunks of 1 MiB
        assert client.read_handle(handle.fobx, len(data), CHUNK) == b""  # END_OF_FILE
    finally:
        client.close_handle(handle.fobx)
    gets = dav.wait_gets("seq.bin", 2)
    # a 1 MiB read from byte 0 starts the sequential read: one open-ended GET from there for
    # every chunk, one for the EOF read
    assert len(gets) == 2, gets
    assert sum("range=bytes=0-," in g for g in gets) == 1, gets
    # the whole-file read (shared memory, 4 MiB reads): the compound's first 64 KiB, then one
    # stream from byte 0
    assert client.read_bytes(dav.unc("seq.bin")) == data
    whole = dav.wait_gets("seq.bin", len(gets) + 2)[len(gets) :]
    assert len(whole) == 2 and "range=bytes=0-," in whole[1], whole


def test_a_short_read_from_the_start_is_one_get_of_its_range(dav: Dav, client: Client) -> None:
    data = os.urandom(3 * CHUNK)
    dav.file("head.bin").write_bytes(data)
    handle = client.create(dav.unc("head.bin"))
    try:
        assert client.read_handle(handle.fobx, 0, CHUNK - 1) == data[: CHUNK - 1]
    finally:
        client.close_handle(handle.fobx)
    gets = dav.wait_gets("head.bin", 1)
    assert len(gets) == 1 and f"range=bytes=0-{CHUNK - 2}," in gets[0], gets


def test_a_seek_back_reads_again_from_the_server(dav: Dav, client: Client) -> None:
    data = os.urandom(6 * CHUNK)
    dav.file("seek.bin").write_bytes(data)
    handle = client.create(dav.unc("seek.bin"))
    try:
        assert read_chunks(client, handle.fobx, 0, 3) == data[: 3 * CHUNK]
        before = len(dav.gets("seek.bin"))
        assert client.read_handle(handle.fobx, 100, 1000) == data[100:1100]  # back
        assert client.read_handle(handle.fobx, 1100, CHUNK) == data[1100 : 1100 + CHUNK]
        assert client.read_handle(handle.fobx, 5 * CHUNK, 10) == data[5 * CHUNK : 5 * CHUNK + 10]
        assert len(dav.wait_gets("seek.bin", before + 2)) > before  # the seeks asked again
        assert (
            read_chunks(client, handle.fobx, 1100 + CHUNK, 3)
            == data[1100 + CHUNK : 1100 + 4 * CHUNK]
        )
    finally:
        client.close_handle(handle.fobx)


def test_a_write_through_the_handle_is_read_back(dav: Dav, client: Client) -> None:
    data = os.urandom(4 * CHUNK)
    dav.file("own.bin").write_bytes(data)
    expected = bytearray(data)
    handle = client.create(dav.unc("own.bin"), access=RW)
    try:
        assert read_chunks(client, handle.fobx, 0, 2) == data[: 2 * CHUNK]  # a stream is open
        patch = b"W" * 5000
        assert client.write_handle(handle.fobx, 2 * CHUNK + 10, patch) == len(patch)
        expected[2 * CHUNK + 10 : 2 * CHUNK + 10 + len(patch)] = patch
        # the very next sequential read must see the handle's own write, not the stream
        assert client.read_handle(handle.fobx, 2 * CHUNK, CHUNK) == bytes(
            expected[2 * CHUNK : 3 * CHUNK]
        )
        assert read_chunks(client, handle.fobx, 0, 8) == bytes(expected)
    finally:
        client.close_handle(handle.fobx)
    assert dav.file("own.bin").read_bytes() == bytes(expected)


def test_a_replacement_on_the_server_is_seen_after_a_seek(dav: Dav, client: Client) -> None:
    old = os.urandom(4 * CHUNK)
    new = os.urandom(4 * CHUNK)
    dav.file("swap.bin").write_bytes(old)
    handle = client.create(dav.unc("swap.bin"))
    try:
        assert read_chunks(client, handle.fobx, 0, 2) == old[: 2 * CHUNK]  # streaming now
        replacement = dav.file("swap.bin.tmp")
        replacement.write_bytes(new)
        os.replace(replacement, dav.file("swap.bin"))  # another client replaces the file
        assert client.read_handle(handle.fobx, 0, CHUNK) == new[:CHUNK]  # a seek: fresh GET
        assert read_chunks(client, handle.fobx, CHUNK, 3) == new[CHUNK:]
    finally:
        client.close_handle(handle.fobx)


class CuttableProxy:
    """A TCP relay in front of the server whose live connections the test can cut (a reset, as
    when a server or middlebox drops an idle connection), while the server itself stays up."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                downstream, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=5.0)
            upstream.settimeout(None)
            with self.lock:
                self.sockets += [downstream, upstream]
            for a, b in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(1 << 16):
                dst.sendall(chunk)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()  # linger 0: a reset

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()
        self.thread.join(timeout=2.0)
        self.cut()


def test_a_stream_the_connection_of_which_was_cut_is_reopened(dav: Dav, tmp_path: Path) -> None:
    """The stream's connection is reset mid-file: the next read gets its bytes from a fresh
    ranged GET at the same offset, and the connection is not declared lost."""
    proxy = CuttableProxy((dav.server.host, dav.server.port))
    try:
        password_file = write_password_file(tmp_path / "pw", dav.server.password)
        config = webdav_config(dav.server, password_file).replace(
            dav.server.url, f"http://127.0.0.1:{proxy.port}/"
        )
        assert f"127.0.0.1:{proxy.port}" in config
        data = os.urandom(32 * CHUNK)
        dav.file("cut.bin").write_bytes(data)
        with running_daemon(extra_config=config) as daemon, daemon.client(timeout=10.0) as c:
            handle = c.create(dav.unc("cut.bin"))
            try:
                assert read_chunks(c, handle.fobx, 0, 2) == data[: 2 * CHUNK]
                opened = [g for g in dav.gets("cut.bin") if "range=bytes=0-," in g]
                assert len(opened) == 1, dav.gets("cut.bin")
                proxy.cut()
                assert read_chunks(c, handle.fobx, 2 * CHUNK, 40) == data[2 * CHUNK :]
            finally:
                c.close_handle(handle.fobx)
            streams = [g for g in dav.gets("cut.bin") if "-," in g.split("range=bytes=")[-1]]
            assert len(streams) >= 2, dav.gets("cut.bin")  # the stream was opened again
            assert c.read_bytes(dav.unc("cut.bin")) == data  # the connection still serves
    finally:
        proxy.close()


def test_many_open_streams_do_not_starve_the_connection_pool(dav: Dav, client: Client) -> None:
    """Six handles each in the middle of a sequential read: at most two keep a stream (each holds
    one of the four pooled connections), so other requests still get a connection at once and
    every handle reads the right bytes when it goes on."""
    files = {f"many-{i}.bin": os.urandom(4 * CHUNK) for i in range(6)}
    for name, data in files.items():
        dav.file(name).write_bytes(data)
    handles = {name: client.create(dav.unc(name)) for name in files}
    try:
        for name, handle in handles.items():
            assert read_chunks(client, handle.fobx, 0, 2) == files[name][: 2 * CHUNK]
        t0 = time.monotonic()
        assert client.stat(dav.unc("many-0.bin")).size == 4 * CHUNK
        assert sorted(n for n in client.listdir(dav.unc("")) if n.startswith("many-")) == sorted(
            files
        )
        assert time.monotonic() - t0 < 2.0  # no wait for a pooled connection (timeout 5 s)
        for name, handle in handles.items():
            assert read_chunks(client, handle.fobx, 2 * CHUNK, 3) == files[name][2 * CHUNK :]
    finally:
        for handle in handles.values():
            client.close_handle(handle.fobx)


# ------------------------------------------------------------------------------ streamed PUT
def write_chunks(client: Client, fobx: int, data: bytes, offset: int = 0) -> None:
    for at in range(0, len(data), CHUNK):
        piece = data[at : at + CHUNK]
        assert client.write_handle(fobx, offset + at, piece) == len(piece)


def test_a_sequential_write_reaches_the_server_before_the_close(dav: Dav, client: Client) -> None:
    """A new file written from byte 0 streams: its bytes are on the server while the handle is
    still open, and the whole file went up in one (chunked) PUT."""
    data = os.urandom(6 * CHUNK + 777)
    handle = client.create(
        dav.unc("up.bin"), access=RW, disposition=CreateDisposition.FILE_OVERWRITE_IF
    )
    try:
        write_chunks(client, handle.fobx, data[: 3 * CHUNK])
        assert dav.wait_on_server("up.bin") > 0  # before any flush or close
        write_chunks(client, handle.fobx, data[3 * CHUNK :], 3 * CHUNK)
        assert client.read_handle(handle.fobx, 0, 100) == data[:100]  # reads see the writes
    finally:
        client.close_handle(handle.fobx)
    assert dav.file("up.bin").read_bytes() == data
    assert len(dav.data_puts("up.bin")) == 1, dav.data_puts("up.bin")
    assert "length=" not in dav.data_puts("up.bin")[0]  # chunked: no Content-Length
    # an overwrite of an existing file streams the same way
    assert client.write_bytes(dav.unc("up.bin"), data[::-1]) == len(data)
    assert dav.file("up.bin").read_bytes() == data[::-1]
    assert len(dav.data_puts("up.bin")) == 2


def test_a_write_elsewhere_after_a_sequential_start_gives_the_right_file(
    dav: Dav, client: Client
) -> None:
    """The stream has started when a write lands before the end: the stream ends, the handle
    goes on with the staging file, and the close uploads the file whole."""
    data = bytearray(os.urandom(3 * CHUNK))
    handle = client.create(
        dav.unc("mixed.bin"), access=RW, disposition=CreateDisposition.FILE_CREATE
    )
    try:
        write_chunks(client, handle.fobx, bytes(data))
        assert dav.wait_on_server("mixed.bin") > 0  # streaming
        patch = b"P" * 3000
        assert client.write_handle(handle.fobx, 100, patch) == len(patch)  # back
        data[100 : 100 + len(patch)] = patch
        tail = os.urandom(CHUNK + 5)
        assert client.write_handle(handle.fobx, len(data), tail) == len(tail)  # at the end again
        data += tail
        assert client.write_handle(handle.fobx, len(data) + 10, b"gap") == 3  # past the end
        data += bytes(10) + b"gap"
        assert client.read_handle(handle.fobx, 0, len(data)) == bytes(data)
    finally:
        client.close_handle(handle.fobx)
    assert dav.file("mixed.bin").read_bytes() == bytes(data)
    assert len(dav.data_puts("mixed.bin")) == 2  # the stream that ended, then the whole file


def test_a_truncate_and_a_rename_end_the_stream_with_the_right_file(
    dav: Dav, client: Client
) -> None:
    data = os.urandom(2 * CHUNK)
    handle = client.create(
        dav.unc("before.bin"), access=RW, disposition=CreateDisposition.FILE_CREATE
    )
    try:
        write_chunks(client, handle.fobx, data)
        assert dav.wait_on_server("before.bin") > 0
        client.set_info(handle.fobx, RENAME, target=dav.unc("after.bin"))
        write_chunks(client, handle.fobx, data, len(data))  # sequential, after the rename
        client.set_info(handle.fobx, END_OF_FILE, size=3 * CHUNK)
    finally:
        client.close_handle(handle.fobx)
    assert not dav.file("before.bin").exists()
    assert dav.file("after.bin").read_bytes() == (data + data)[: 3 * CHUNK]


def test_a_streamed_put_cut_midway_goes_up_whole_at_the_close(dav: Dav, tmp_path: Path) -> None:
    """The streamed PUT's connection is reset mid-body: nothing is lost, the close uploads the
    staged file whole (the server itself is still there)."""
    proxy = CuttableProxy((dav.server.host, dav.server.port))
    try:
        password_file = write_password_file(tmp_path / "pw", dav.server.password)
        config = webdav_config(dav.server, password_file).replace(
            dav.server.url, f"http://127.0.0.1:{proxy.port}/"
        )
        data = os.urandom(8 * CHUNK)
        with running_daemon(extra_config=config) as daemon, daemon.client(timeout=10.0) as c:
            handle = c.create(
                dav.unc("cutput.bin"), access=RW, disposition=CreateDisposition.FILE_CREATE
            )
            try:
                write_chunks(c, handle.fobx, data[: 2 * CHUNK])
                assert dav.wait_on_server("cutput.bin") > 0
                proxy.cut()
                write_chunks(c, handle.fobx, data[2 * CHUNK :], 2 * CHUNK)
            finally:
                c.close_handle(handle.fobx)  # no error: the fallback upload got through
            assert dav.file("cutput.bin").read_bytes() == data
            assert c.read_bytes(dav.unc("cutput.bin")) == data
    finally:
        proxy.close()


def test_a_streamed_put_whose_server_goes_away_fails_the_close(tmp_path: Path) -> None:
    """The server dies while a file streams up: the close reports a network status (the data
    did not reach the server), never success."""
    require_or_skip(WebDavServer.missing_binaries(), "wsgidav")
    with WebDavServer(tmp_path / "dav") as server:
        server.root_dir.joinpath("s").mkdir()
        password_file = write_password_file(tmp_path / "pw", server.password)
        config = webdav_config(server, password_file)
        with running_daemon(extra_config=config) as daemon, daemon.client(timeout=10.0) as c:
            unc = r"\\davtest\s\gone.bin"
            handle = c.create(unc, access=RW, disposition=CreateDisposition.FILE_CREATE)
            write_chunks(c, handle.fobx, os.urandom(2 * CHUNK))
            deadline = time.monotonic() + LOG_DEADLINE_S
            target = server.root_dir / "s" / "gone.bin"
            while not target.stat().st_size and time.monotonic() < deadline:
                time.sleep(0.02)
            assert target.stat().st_size > 0  # streaming
            server.kill()
            with contextlib.suppress(NtStatusError):  # staged locally, or the stream's failure
                write_chunks(c, handle.fobx, os.urandom(2 * CHUNK), 2 * CHUNK)
            with pytest.raises(NtStatusError) as ei:
                c.close_handle(handle.fobx)
            assert ei.value.status in (
                NtStatus.STATUS_CONNECTION_DISCONNECTED,
                NtStatus.STATUS_REMOTE_NOT_LISTENING,
                NtStatus.STATUS_CONNECTION_REFUSED,
                NtStatus.STATUS_IO_TIMEOUT,
            ), ei.value


def test_a_big_file_written_and_read_back_costs_three_requests_each(
    dav: Dav, client: Client
) -> None:
    """``write_bytes`` of a new 9 MiB file: the create's PROPFIND (nothing there) and empty
    PUT, whose answer stands for a PROPFIND of what it made, then one streamed PUT of the
    data, answered before the close returns. ``read_bytes`` of it: the compound's GET of the
    first 64 KiB (the write's PUT answered for the file: no PROPFIND), the open's PROPFIND,
    and one stream from byte 0 for the rest."""
    data = os.urandom(9 * CHUNK + 5)
    client.write_bytes(dav.unc("both.bin"), data)
    assert dav.file("both.bin").read_bytes() == data  # whole on the server at the close
    path = f"/{dav.share}/both.bin"

    def methods() -> list[str]:
        lines = dav.server.log_path.read_text().splitlines()
        return [m for line in lines for m in ("PROPFIND", "PUT", "GET") if f'"{m} {path}"' in line]

    assert methods() == ["PROPFIND", "PUT", "PUT"]
    assert len(dav.data_puts("both.bin")) == 1
    assert client.read_bytes(dav.unc("both.bin")) == data
    dav.wait_gets("both.bin", 2)
    assert methods()[3:] == ["GET", "PROPFIND", "GET"]
    gets = dav.gets("both.bin")
    assert "range=bytes=0-65535," in gets[0] and "range=bytes=0-," in gets[1], gets

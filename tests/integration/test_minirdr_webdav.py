"""The WebDAV mini-redirector through a real daemon against real wsgidav servers: bytes written
through rdbss are read back with an independent HTTP client (and the reverse), the staging path
(a partial overwrite in the middle of an existing file), directories, rename, delete, and the
statuses a client sees when the server refuses the password, has no such share, is not there or
dies mid-session. Credentials never reach the daemon's log."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from rdbss.client import Client
from rdbss.minirdrs.webdav.minirdr import WebDavMiniRdr
from rdbss.wire import (
    Access,
    CreateDisposition,
    CreateInformation,
    CreateOptions,
    CreateParameters,
    IrpMj,
    LowIoOp,
    LowIoParameters,
    NtStatus,
    NtStatusError,
    Routine,
    RxContext,
)
from rdbss.wire.status import NETWORK_ERRORS
from tests.conformance.backend_webdav import webdav_config, write_password_file
from tests.daemon import Daemon, running_daemon
from tests.servers.fixtures import WebDavServer, free_port, require_or_skip

S = NtStatus
RW = Access.GENERIC_READ | Access.GENERIC_WRITE
#: Every failure below must reach the client well within this (the daemon's request timeout is
#: 10 s and the mini-redirector's HTTP timeout 5 s).
ANSWER_DEADLINE_S = 8.0


@dataclass
class Dav:
    daemon: Daemon
    server: WebDavServer
    victim: WebDavServer  # a second server, killed by one test
    share: str
    http: httpx.Client  # independent of rdbss
    bad_password: str

    def unc(self, *parts: str, server: str = "davtest") -> str:
        return "\\".join([rf"\\{server}\{self.share}", *parts])

    def url(self, *parts: str) -> str:
        return "/".join([quote(self.share), *(quote(p) for p in parts)])

    def folder(self, *parts: str) -> Path:
        return self.server.root_dir.joinpath(self.share, *parts)

    def get(self, *parts: str) -> bytes:
        response = self.http.get(self.url(*parts))
        assert response.status_code == 200, response.status_code
        return response.content

    def put(self, data: bytes, *parts: str) -> None:
        response = self.http.put(self.url(*parts), content=data)
        assert response.status_code in (200, 201, 204), response.status_code


@pytest.fixture(scope="module")
def dav(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dav]:
    require_or_skip(WebDavServer.missing_binaries(), "wsgidav")
    base = tmp_path_factory.mktemp("webdav-it")
    share = "itest-" + secrets.token_hex(3)
    bad_password = "wrong-" + secrets.token_hex(8)
    with WebDavServer(base / "dav") as server, WebDavServer(base / "victim") as victim:
        server.root_dir.joinpath(share).mkdir()
        victim.root_dir.joinpath(share).mkdir()
        good = write_password_file(base / "pw", server.password)
        bad = write_password_file(base / "bad-pw", bad_password)
        victim_pw = write_password_file(base / "victim-pw", victim.password)
        config = (
            webdav_config(server, good)
            + f"""
[minirdr.servers.davbad]
url = "{server.url}"
username = "{server.user}"
password_file = "{bad}"
[minirdr.servers.davnone]
url = "http://127.0.0.1:{free_port()}/"
username = "{server.user}"
password_file = "{good}"
[minirdr.servers.davkill]
url = "{victim.url}"
username = "{victim.user}"
password_file = "{victim_pw}"
"""
        )
        auth = httpx.DigestAuth(server.user, server.password)
        with (
            running_daemon(extra_config=config, log_level="debug") as daemon,
            httpx.Client(base_url=server.url, auth=auth, timeout=10) as http,
        ):
            yield Dav(daemon, server, victim, share, http, bad_password)


@pytest.fixture
def client(dav: Dav) -> Iterator[Client]:
    with dav.daemon.client(timeout=10.0) as c:
        yield c


def expect_status(status: int, fn: Callable[..., object], *args: object) -> float:
    """Call fn(*args), require NtStatusError with ``status`` within the deadline; the seconds."""
    t0 = time.monotonic()
    with pytest.raises(NtStatusError) as ei:
        fn(*args)
    took = time.monotonic() - t0
    assert ei.value.status == status, f"expected {S(status).name}, got {ei.value}"
    assert took < ANSWER_DEADLINE_S, f"{S(status).name} took {took:.1f} s"
    return took


# ------------------------------------------------------------------------------ data
def test_write_through_rdbss_then_http_get(dav: Dav, client: Client) -> None:
    data = os.urandom(3 * (1 << 20) + 4321)
    name = "a b%20c é €.bin"  # a space, a literal %20, non-ASCII
    assert client.write_bytes(dav.unc(name), data) == len(data)
    assert dav.get(name) == data
    assert dav.folder(name).read_bytes() == data
    assert client.stat(dav.unc(name)).size == len(data)
    assert name in client.listdir(dav.unc())


def test_http_put_then_read_through_rdbss(dav: Dav, client: Client) -> None:
    data = os.urandom((1 << 20) + 99)
    dav.put(data, "put.bin")
    assert client.read_bytes(dav.unc("put.bin")) == data
    handle = client.create(dav.unc("put.bin"))
    try:  # ranged reads on a read-only handle
        assert client.read_handle(handle.fobx, 1000, 10) == data[1000:1010]
        assert client.read_handle(handle.fobx, len(data) - 5, 100) == data[-5:]
        assert client.read_handle(handle.fobx, len(data), 10) == b""  # END_OF_FILE
    finally:
        client.close_handle(handle.fobx)
    dav.put(b"changed", "put.bin")
    assert client.read_bytes(dav.unc("put.bin")) == b"changed"


def test_partial_overwrite_in_the_middle_goes_through_the_staging_file(
    dav: Dav, client: Client
) -> None:
    original = os.urandom(1 << 20)
    dav.put(original, "middle.bin")
    expected = bytearray(original)
    handle = client.create(dav.unc("middle.bin"), access=RW)
    try:
        assert client.write_handle(handle.fobx, 500_000, b"X" * 1000) == 1000
        expected[500_000:501_000] = b"X" * 1000
        # the handle reads its own staged bytes
        assert client.read_handle(handle.fobx, 499_990, 1020) == bytes(expected[499_990:501_010])
        assert client.query_info(handle.fobx).size == len(original)
        client.flush_handle(handle.fobx)  # MRxFlush uploads the whole file
        assert dav.get("middle.bin") == bytes(expected)
        assert client.write_handle(handle.fobx, -1, b"tail") == 4  # append
        expected += b"tail"
    finally:
        client.close_handle(handle.fobx)  # MRxCloseSrvOpen uploads what is left
    assert dav.get("middle.bin") == bytes(expected)
    client.truncate(dav.unc("middle.bin"), 10)
    assert dav.get("middle.bin") == original[:10]


def test_overwrite_dispositions_truncate_on_the_server(dav: Dav, client: Client) -> None:
    dav.put(b"old old old", "ow.txt")
    handle = client.create(
        dav.unc("ow.txt"), access=RW, disposition=CreateDisposition.FILE_OVERWRITE
    )
    try:
        assert dav.get("ow.txt") == b""
        client.write_handle(handle.fobx, 0, b"new")
    finally:
        client.close_handle(handle.fobx)
    assert dav.get("ow.txt") == b"new"
    with pytest.raises(FileExistsError):
        client.open(dav.unc("ow.txt"), "xb")
    client.truncate(dav.unc("ow.txt"), 0)  # a fresh handle: nothing to fetch first
    assert dav.get("ow.txt") == b""
    assert client.stat(dav.unc("ow.txt")).size == 0


# ------------------------------------------------------------------------------ namespace
def test_directories_rename_and_delete(dav: Dav, client: Client) -> None:
    client.mkdir(dav.unc("tree", "a", "b"), parents=True)
    for name in ("one.txt", "two.TXT", "three.log"):
        client.write_bytes(dav.unc("tree", name), name.encode())
    assert sorted(client.listdir(dav.unc("tree"))) == ["a", "one.txt", "three.log", "two.TXT"]
    assert sorted(client.listdir(dav.unc("tree"), "*.txt")) == ["one.txt", "two.TXT"]
    assert dav.folder("tree", "a", "b").is_dir()
    # rename: onto an existing name only with replace; a directory moves with its content
    with pytest.raises(FileExistsError):
        client.rename(dav.unc("tree", "one.txt"), dav.unc("tree", "two.TXT"))
    client.rename(dav.unc("tree", "one.txt"), dav.unc("tree", "two.TXT"), replace=True)
    assert dav.get("tree", "two.TXT") == b"one.txt"
    assert not dav.folder("tree", "one.txt").exists()
    client.rename(dav.unc("tree", "a"), dav.unc("tree", "renamed dir"))
    assert dav.folder("tree", "renamed dir", "b").is_dir()
    # delete: a non-empty directory is refused (WebDAV DELETE would take it all)
    with pytest.raises(NtStatusError) as ei:
        client.delete(dav.unc("tree", "renamed dir"))
    assert ei.value.status == S.STATUS_DIRECTORY_NOT_EMPTY
    assert dav.folder("tree", "renamed dir", "b").is_dir()
    client.rmdir(dav.unc("tree", "renamed dir", "b"))
    client.delete(dav.unc("tree", "renamed dir"))
    client.remove(dav.unc("tree", "three.log"))
    assert sorted(p.name for p in dav.folder("tree").iterdir()) == ["two.TXT"]
    with pytest.raises(FileNotFoundError):
        client.stat(dav.unc("tree", "three.log"))
    with pytest.raises(NtStatusError) as ei:
        client.create(dav.unc("nodir", "f.txt"), disposition=CreateDisposition.FILE_OPEN_IF)
    assert ei.value.status == S.STATUS_OBJECT_PATH_NOT_FOUND


def test_delete_on_close_of_a_new_file_leaves_nothing(dav: Dav, client: Client) -> None:
    handle = client.create(
        dav.unc("temp.bin"),
        access=RW | Access.DELETE,
        disposition=CreateDisposition.FILE_CREATE,
        options=CreateOptions.FILE_DELETE_ON_CLOSE,
    )
    client.write_handle(handle.fobx, 0, b"scratch")
    assert dav.folder("temp.bin").exists()
    client.close_handle(handle.fobx)
    assert not dav.folder("temp.bin").exists()


def test_volume_information_comes_from_the_quota_properties(dav: Dav, client: Client) -> None:
    volume = client.volume(dav.unc())
    assert volume["fs_name"] == "rdbss-webdav"
    assert volume["total_bytes"] >= volume["free_bytes"] > 0


# ------------------------------------------------------------------------------ errors
def test_wrong_password_is_logon_failure(dav: Dav, client: Client) -> None:
    expect_status(S.STATUS_LOGON_FAILURE, client.stat, dav.unc("x", server="davbad"))


def test_unknown_share_is_bad_network_name(dav: Dav, client: Client) -> None:
    expect_status(S.STATUS_BAD_NETWORK_NAME, client.stat, r"\\davtest\no-such-share\x")


def test_nothing_listening_is_remote_not_listening(dav: Dav, client: Client) -> None:
    expect_status(S.STATUS_REMOTE_NOT_LISTENING, client.stat, dav.unc("x", server="davnone"))


def test_server_killed_mid_session_answers_at_once(dav: Dav, client: Client) -> None:
    unc = dav.unc("k.bin", server="davkill")
    writer = client.create(unc, access=RW, disposition=CreateDisposition.FILE_CREATE)
    client.write_handle(writer.fobx, 0, b"0123456789")
    client.flush_handle(writer.fobx)
    assert dav.victim.root_dir.joinpath(dav.share, "k.bin").read_bytes() == b"0123456789"
    reader = client.create(unc)
    assert client.read_handle(reader.fobx, 0, 4) == b"0123"
    dav.victim.kill()
    client.write_handle(writer.fobx, 10, b"more")  # staged locally: still fine
    # the close cannot upload the staged bytes: it says so (the data did not reach the server)
    expect_status(S.STATUS_CONNECTION_DISCONNECTED, client.close_handle, writer.fobx)
    # later requests get a network status at once, never a hang (the core may re-open the
    # handle and rebuild the connection, which is then refused)
    for call, args in (
        (client.read_handle, (reader.fobx, 0, 4)),
        (client.read_handle, (reader.fobx, 0, 4)),
        (client.stat, (unc,)),
        (client.stat, (unc,)),
    ):
        t0 = time.monotonic()
        with pytest.raises(NtStatusError) as ei:
            call(*args)
        took = time.monotonic() - t0
        assert ei.value.status in NETWORK_ERRORS, f"not a network status: {ei.value}"
        assert took < ANSWER_DEADLINE_S, f"{ei.value} took {took:.1f} s"
    with contextlib.suppress(NtStatusError):
        client.close_handle(reader.fobx)
    # other servers of the same mini-redirector are unaffected
    client.write_bytes(dav.unc("still-ok.txt"), b"fine")
    assert dav.get("still-ok.txt") == b"fine"


def test_password_is_in_no_log_line(dav: Dav, client: Client) -> None:
    # make sure both a good and a refused logon happened in this daemon
    client.write_bytes(dav.unc("log.txt"), b"x")
    with pytest.raises(NtStatusError) as ei:
        client.stat(dav.unc("x", server="davbad"))
    assert dav.bad_password not in str(ei.value)
    log = dav.daemon.log()
    assert "proc=webdav" in log, "the mini-redirector's log lines are missing"
    assert "LOGON_FAILURE" in log or "0xC000006D" in log, "the refused logon was not logged"
    for secret in (dav.server.password, dav.bad_password, dav.victim.password):
        assert secret not in log


# ------------------------------------------------------------------------------ reconnect
class CuttableProxy:
    """A TCP forwarder on a fixed loopback port that can be cut (every connection dropped,
    nothing listening: a server that went away) and restored on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR
        listener.settimeout(0.05)
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while not self._stop.is_set():
                try:
                    down, _ = listener.accept()
                except TimeoutError:
                    continue
                down.settimeout(None)
                up = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                up.settimeout(None)
                with self._lock:
                    self._sockets += [down, up]
                for a, b in ((down, up), (up, down)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(1 << 16):
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            assert not self._thread.is_alive(), "the proxy did not stop"
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def in_process(
    dav: Dav, tmp_path: Path, name: str, url: str
) -> tuple[WebDavMiniRdr, Callable[..., RxContext]]:
    """A WebDavMiniRdr in this process reaching ``url`` as server ``name`` (the test server's
    user), and a maker of the RxContexts of its share's routines."""
    password_file = write_password_file(tmp_path / "pw", dav.server.password)
    minirdr = WebDavMiniRdr(
        "webdav",
        {
            "timeout": 5.0,
            "servers": {
                name: {
                    "url": url,
                    "username": dav.server.user,
                    "password_file": str(password_file),
                }
            },
        },
    )

    def ctx(routine: Routine, **fields: object) -> RxContext:
        return RxContext(
            request_id=1,
            major=IrpMj.CREATE,
            routine=str(routine),
            srv_call=name,
            net_root=dav.share,
            **fields,  # type: ignore[arg-type]
        )

    return minirdr, ctx


def test_reconnect_keeps_the_staged_data_of_a_reopened_handle(dav: Dav, tmp_path: Path) -> None:
    """In-process, through a proxy that drops the connection: a write staged before the loss
    survives the core's re-open of the same handle (same FOBX) on the new connection."""
    proxy = CuttableProxy(dav.server.port)
    proxy.start()
    minirdr, ctx = in_process(dav, tmp_path, "davproxy", f"http://127.0.0.1:{proxy.port}/")

    def open_rw(disposition: int) -> int:
        create = CreateParameters(desired_access=int(RW), disposition=disposition)
        done = minirdr.create(ctx(Routine.MRxCreate, path="adopt.bin", fobx=77, create=create))
        return int(done.result["srv_open"])

    def write(srv_open: int, offset: int, data: bytes) -> int:
        lowio = LowIoParameters(operation=LowIoOp.WRITE, offset=offset, length=len(data))
        done = minirdr.low_io_submit(
            ctx(Routine.MRxLowIOSubmit, srv_open=srv_open, lowio=lowio), data
        )
        return done.information

    try:
        minirdr.create_srv_call(ctx(Routine.MRxCreateSrvCall))
        minirdr.create_v_net_root(ctx(Routine.MRxCreateVNetRoot))
        first = open_rw(CreateDisposition.FILE_CREATE)
        assert write(first, 0, b"before the loss|") == 16
        proxy.cut()
        with pytest.raises(NtStatusError) as ei:
            minirdr.flush(ctx(Routine.MRxFlush, srv_open=first))
        assert ei.value.status == S.STATUS_CONNECTION_DISCONNECTED
        with pytest.raises(NtStatusError) as ei:  # dead: answers at once
            minirdr.flush(ctx(Routine.MRxFlush, srv_open=first))
        assert ei.value.status == S.STATUS_CONNECTION_DISCONNECTED
        proxy.start()
        # what the core does next: build the SrvCall again, re-open the handle by path
        minirdr.create_srv_call(ctx(Routine.MRxCreateSrvCall))
        again = open_rw(CreateDisposition.FILE_OPEN)
        assert write(again, 16, b"after") == 5
        assert minirdr.close_srv_open(ctx(Routine.MRxCloseSrvOpen, srv_open=again)).status == 0
        assert dav.get("adopt.bin") == b"before the loss|after"
    finally:
        minirdr.close()
        proxy.cut()


def test_query_open_is_one_propfind(dav: Dav, tmp_path: Path) -> None:
    """In-process, counting the HTTP requests: MRxQueryOpen (a stat) is one PROPFIND Depth 0
    and answers what MRxCreate for attributes answers, statuses included."""
    dav.folder("qo").mkdir()
    dav.folder("qo", "f.txt").write_bytes(b"12345")
    minirdr, ctx = in_process(dav, tmp_path, "davq", dav.server.url)
    assert Routine.MRxQueryOpen in minirdr.registration_routines()

    def attrs(options: int = 0) -> CreateParameters:
        return CreateParameters(
            desired_access=int(Access.FILE_READ_ATTRIBUTES),
            disposition=CreateDisposition.FILE_OPEN,
            create_options=options,
        )

    requests: list[str] = []
    try:
        minirdr.create_srv_call(ctx(Routine.MRxCreateSrvCall))
        minirdr.create_v_net_root(ctx(Routine.MRxCreateVNetRoot))
        minirdr._server("davq").client.event_hooks["request"].append(
            lambda request: requests.append(request.method)
        )
        for path, is_dir in (("qo\\f.txt", False), ("qo", True), ("", True)):
            requests.clear()
            stat = minirdr.query_open(ctx(Routine.MRxQueryOpen, path=path, create=attrs()))
            assert requests == ["PROPFIND"], path
            assert stat.information == CreateInformation.FILE_OPENED
            assert stat.result["directory"] is is_dir
            assert stat.result["size"] == (0 if is_dir else 5)
            opened = minirdr.create(ctx(Routine.MRxCreate, path=path, create=attrs()))
            srv_open = opened.result.pop("srv_open")
            minirdr.close_srv_open(ctx(Routine.MRxCloseSrvOpen, srv_open=srv_open))
            assert (stat.information, stat.result) == (opened.information, opened.result)
        for path, options, status in (
            ("qo\\none", 0, S.STATUS_OBJECT_NAME_NOT_FOUND),
            ("none\\f.txt", 0, S.STATUS_OBJECT_PATH_NOT_FOUND),
            ("qo\\f.txt", CreateOptions.FILE_DIRECTORY_FILE, S.STATUS_NOT_A_DIRECTORY),
            ("qo", CreateOptions.FILE_NON_DIRECTORY_FILE, S.STATUS_FILE_IS_A_DIRECTORY),
        ):
            for routine, call in (
                (Routine.MRxQueryOpen, minirdr.query_open),
                (Routine.MRxCreate, minirdr.create),
            ):
                with pytest.raises(NtStatusError) as ei:
                    call(ctx(routine, path=path, create=attrs(int(options))))
                assert ei.value.status == status, (path, routine)
    finally:
        minirdr.close()


@pytest.mark.parametrize("other", [b"B" * 5, b"longer by far", b""])
def test_a_file_replaced_by_another_client_after_its_write_reads_as_replaced(
    dav: Dav, client: Client, other: bytes
) -> None:
    """A file written through rdbss (a later read of it is one GET) and then replaced by
    another client: a read through rdbss gives the other client's bytes, and a stat its size
    once the attributes kept since the write are stale."""
    name = f"replaced-{len(other)}.txt"
    client.write_bytes(dav.unc(name), b"A" * 5)
    assert client.read_bytes(dav.unc(name)) == b"A" * 5
    dav.put(other, name)
    assert client.read_bytes(dav.unc(name)) == other
    with client.open(dav.unc(name), "rb") as f:
        assert f.read() == other


@pytest.mark.parametrize("change", [-300_000, 300_000])
def test_a_whole_read_of_a_big_file_whose_size_changed_on_the_server(
    dav: Dav, client: Client, change: int
) -> None:
    """A read of 1 MiB or more from byte 0 opens the stream at once: when another client
    replaced the file (shorter or longer) since the open, what the reads return is one whole
    version of the file, never a mix or a length the server never had."""
    name = f"big-changed-{change}.bin"
    first = bytes(i % 251 for i in range(1_500_000))
    dav.put(first, name)
    second = bytes((i * 7) % 253 for i in range(len(first) + change))
    with client.open(dav.unc(name), "rb", buffering=0) as f:
        dav.put(second, name)
        got = bytes(f.readall())
    assert got in (first, second), (len(got), len(first), len(second))
    assert client.read_bytes(dav.unc(name)) == second


@pytest.mark.parametrize("size", [0, 5, 200_000])
def test_times_after_a_create_or_write_are_the_servers(dav: Dav, client: Client, size: int) -> None:
    """The times a stat reports right after a file was made or written through rdbss are the
    ones the server keeps (getlastmodified: the file's mtime, to the second), so that they do
    not change once the attributes kept since are stale and a PROPFIND answers instead."""
    name = f"times-{size}.bin"
    client.write_bytes(dav.unc(name), b"x" * size)
    st = client.stat(dav.unc(name))
    server_mtime = int(dav.folder(name).stat().st_mtime) * 1_000_000_000
    assert (st.size, st.last_write_time) == (size, server_mtime)
    with client.open(dav.unc(name), "rb", buffering=0) as f:
        assert f.stat().last_write_time == server_mtime

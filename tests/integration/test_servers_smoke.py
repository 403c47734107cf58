"""Smoke tests for the real-server fixtures (tests/servers/fixtures.py), and a record of how
each Python client library reports failures: the error mapping of the mini-redirectors.

Every fixture is checked with an independent client (the ``smbclient`` and ``sftp`` CLIs,
smbprotocol, asyncssh, httpx). The table below is asserted by the ``test_*_error_*`` tests.
Versions seen: Samba 4.17.12 + smbprotocol 1.17.0; OpenSSH 9.2p1 + asyncssh 2.24.1;
wsgidav 4.4.0 + cheroot 11.1.2 + httpx 0.28.1 (webdav4 0.11.0 on top of httpx).

SMB: smbprotocol's high-level ``smbclient`` API, one private ``connection_cache`` per connection

| failure                | what the library raises                                             |
|------------------------|---------------------------------------------------------------------|
| wrong password         | ``smbprotocol.exceptions.LogonFailure`` from ``register_session``   |
|                        | (an SMBResponseException, NOT an OSError; NTSTATUS 0xc000006d)      |
| unknown share          | ``SMBOSError`` errno ENOENT, ntstatus 0xc0000225 STATUS_NOT_FOUND   |
|                        | (smbclient tries DFS); raw ``TreeConnect.connect()``: BadNetworkName|
| unknown path           | ``SMBOSError`` errno ENOENT, ntstatus 0xc0000034 (missing name) or  |
|                        | 0xc000003a (missing parent); an OSError but NOT FileNotFoundError   |
| connection refused     | ``ValueError("Failed to connect to 'host:port': ...")``,            |
|                        | ``__cause__`` = ConnectionRefusedError                              |
| server killed, next    | on an open handle: ``smbprotocol.exceptions.SMBConnectionClosed``   |
| call                   | (SMBException, not OSError) when the receive thread saw the EOF     |
|                        | first (the usual case); else the raw ``ConnectionError`` of the     |
|                        | socket (BrokenPipe/ConnectionReset). A new path call makes smbclient|
|                        | reconnect first: ``ValueError`` (connection refused), as above      |

SFTP: asyncssh

| failure                | what the library raises                                             |
|------------------------|---------------------------------------------------------------------|
| wrong password or key  | ``asyncssh.PermissionDenied`` (DisconnectError, code 14)            |
| unknown path / root    | ``asyncssh.SFTPNoSuchFile`` (SFTPError, code 2 FX_NO_SUCH_FILE)     |
| connection refused     | ``ConnectionRefusedError`` (plain OSError, errno 111)               |
| server killed, next    | a request sent before the loop saw the EOF fails with what the      |
| call                   | socket said: ``asyncssh.ConnectionLost`` (DisconnectError, code 10) |
|                        | after a clean EOF, or the raw ``BrokenPipeError`` /                 |
|                        | ``ConnectionResetError`` (both seen, timing-dependent); once the    |
|                        | loop saw it: ``asyncssh.SFTPNoConnection`` (SFTPError, code 6); a   |
|                        | new channel: ``asyncssh.ChannelOpenError`` (code 2)                 |

WebDAV: httpx (webdav4 wraps the same client)

| failure                | what the library reports                                            |
|------------------------|---------------------------------------------------------------------|
| no or wrong password   | a 401 response, no exception; ``raise_for_status()`` raises         |
|                        | ``httpx.HTTPStatusError``; webdav4 raises ``webdav4.client.HTTPError``|
| unknown path / root    | 404 for GET and PROPFIND; PUT into a missing folder gives 409;      |
|                        | webdav4 raises ``webdav4.client.ResourceNotFound``                  |
| connection refused     | ``httpx.ConnectError`` (wraps httpcore.ConnectError, which wraps    |
|                        | ConnectionRefusedError)                                             |
| server killed, next    | ``httpx.ConnectError`` (refused): the pool drops the dead keep-alive|
| call                   | socket and reconnects; killed while a body is being read:           |
|                        | ``httpx.RemoteProtocolError`` ("peer closed connection without ...")|
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import httpx
import pytest
import smbclient
import webdav4.client
from smbprotocol.exceptions import (
    BadNetworkName,
    LogonFailure,
    SMBConnectionClosed,
    SMBOSError,
    SMBResponseException,
)
from smbprotocol.tree import TreeConnect

from tests.servers import fixtures as fx

CLI_TIMEOUT_S = 60.0
ASYNC_TIMEOUT_S = 30.0
PAYLOAD = os.urandom(256 * 1024) + b"end-of-payload"

STATUS_NOT_FOUND = 0xC0000225
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
STATUS_OBJECT_PATH_NOT_FOUND = 0xC000003A


def _run(argv: list[str], *, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a client CLI with a deadline; fail the test with its output if it fails."""
    res = subprocess.run(
        argv,
        input=input_text,
        stdin=None if input_text is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert res.returncode == 0, f"{argv[0]} rc={res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def _require_cli(name: str) -> str:
    path = fx.find_binary(name)
    if path is None:
        fx.require_or_skip([name], f"{name} CLI")
    assert path is not None
    return path


def _arun(coro: Any) -> Any:
    """Run a coroutine on a fresh event loop, bounded by ASYNC_TIMEOUT_S."""
    return asyncio.run(asyncio.wait_for(coro, ASYNC_TIMEOUT_S))


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """True if ``kind`` is in the cause/context chain (httpx wraps httpcore wraps OSError)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, kind):
            return True
        todo.extend([e.__cause__, e.__context__])
        todo.extend(a for a in e.args if isinstance(a, BaseException))
    return False


def _assert_refused(port: int, host: str) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=5).close()


# ------------------------------------------------------------------------------------------
# Fixture plumbing
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["samba_server", "ssh_server", "webdav_server"])
def test_fixture_listens_on_127_0_0_1_only(name: str, request: pytest.FixtureRequest) -> None:
    srv = request.getfixturevalue(name)
    assert srv.host == "127.0.0.1"
    assert srv.running
    socket.create_connection((srv.host, srv.port), timeout=5).close()
    # Bound to 127.0.0.1 itself, not 0.0.0.0: another loopback address is refused.
    _assert_refused(srv.port, "127.0.0.2")
    assert srv.startup_s is not None and srv.startup_s < fx.START_DEADLINE_S


def test_free_port_and_wait_for_tcp_deadline(tmp_path: Path) -> None:
    port = fx.free_port()
    assert 0 < port < 65536
    log = tmp_path / "srv.log"
    log.write_text("line one\nthe last words of the server\n")
    with pytest.raises(TimeoutError, match="the last words of the server"):
        fx.wait_for_tcp("127.0.0.1", port, 0.2, log_path=log)


def _open_session(srv: Any) -> Any:
    """Open one client session (which makes the server spawn a per-connection child)."""
    if isinstance(srv, fx.SambaServer):
        cache: dict[str, Any] = {}
        smbclient.register_session(
            srv.host,
            username=srv.user,
            password=srv.password,
            port=srv.port,
            connection_cache=cache,
        )
        return cache
    if isinstance(srv, fx.SshServer):
        sock = socket.create_connection((srv.host, srv.port), timeout=5)
        proc = subprocess.Popen(
            [_require_cli("ssh"), *srv.cli_args(), "-p", str(srv.port), "-N", "root@127.0.0.1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return (sock, proc)
    client = httpx.Client(base_url=srv.url, auth=(srv.user, srv.password), timeout=10)
    client.request("PROPFIND", "/", headers={"Depth": "0"})
    return client


def _close_session(handle: Any) -> None:
    if isinstance(handle, dict):
        with contextlib.suppress(Exception):  # the server is gone: nothing closes cleanly
            smbclient.reset_connection_cache(connection_cache=handle)
    elif isinstance(handle, tuple):
        sock, proc = handle
        sock.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    else:
        handle.close()


@pytest.mark.parametrize("cls", [fx.SambaServer, fx.SshServer, fx.WebDavServer])
@pytest.mark.parametrize("how", ["stop", "kill"])
def test_stop_leaves_nothing_running(cls: type[Any], how: str, tmp_path: Path) -> None:
    fx.require_or_skip(cls.missing_binaries(), cls.name)
    srv = cls(tmp_path / "srv")
    with srv:
        handle = _open_session(srv)
        try:
            if isinstance(srv, fx.SshServer):  # wait until sshd forked the session child
                _wait_for_children(srv.pid)
            tree = fx._tree(srv.pid)
            pid, port = srv.pid, srv.port
            getattr(srv, how)()
            assert not srv.running
            assert srv.pid is None
            leftovers = {p: s for p, s in tree.items() if fx._alive(p, s)}
            assert not leftovers, f"left running after {how}(): {leftovers}"
            assert fx._proc_stat(pid) is None, "server pid not reaped"
            _assert_refused(port, "127.0.0.1")
        finally:
            _close_session(handle)


def _wait_for_children(pid: int | None, deadline_s: float = 10.0) -> None:
    assert pid is not None
    end = time.monotonic() + deadline_s
    while not fx._tree(pid):
        assert time.monotonic() < end, "sshd forked no session child"
        time.sleep(0.02)


def test_missing_binary_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fx.REQUIRE_SERVERS_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-server"):
        fx.require_or_skip(["no-such-server"], "demo")
    monkeypatch.setenv(fx.REQUIRE_SERVERS_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="RDBSS_REQUIRE_SERVERS"):
        fx.require_or_skip(["no-such-server"], "demo")
    fx.require_or_skip([], "demo")  # nothing missing: no-op


# ------------------------------------------------------------------------------------------
# Samba
# ------------------------------------------------------------------------------------------


def _smbclient_cli(srv: fx.SambaServer, tmp_path: Path, share: str, commands: str) -> str:
    cli = _require_cli("smbclient")
    auth = tmp_path / "smb-auth.txt"  # keeps the password off the command line
    auth.write_text(f"username = {srv.user}\npassword = {srv.password}\ndomain = WORKGROUP\n")
    auth.chmod(0o600)
    empty_conf = tmp_path / "client-smb.conf"
    empty_conf.write_text("[global]\n")
    res = _run(
        [
            cli,
            f"//{srv.host}/{share}",
            "-p",
            str(srv.port),
            "-A",
            str(auth),
            f"--configfile={empty_conf}",
            "--use-kerberos=off",
            "-c",
            commands,
        ]
    )
    return res.stdout + res.stderr


@pytest.fixture
def smb_cache(samba_server: fx.SambaServer) -> Iterator[dict[str, Any]]:
    """A private smbprotocol connection cache with a registered session; closed afterwards."""
    cache: dict[str, Any] = {}
    smbclient.register_session(
        samba_server.host,
        username=samba_server.user,
        password=samba_server.password,
        port=samba_server.port,
        connection_cache=cache,
    )
    yield cache
    smbclient.reset_connection_cache(connection_cache=cache)


def test_samba_smbclient_cli_put_get(samba_server: fx.SambaServer, tmp_path: Path) -> None:
    src, back = tmp_path / "src.bin", tmp_path / "back.bin"
    src.write_bytes(PAYLOAD)
    _smbclient_cli(samba_server, tmp_path, "share", f"put {src} cli.bin; get cli.bin {back}")
    assert back.read_bytes() == PAYLOAD
    assert (samba_server.share_path / "cli.bin").read_bytes() == PAYLOAD


def test_samba_smbprotocol_roundtrip_and_cross_check(
    samba_server: fx.SambaServer, smb_cache: dict[str, Any], tmp_path: Path
) -> None:
    kw: dict[str, Any] = {"port": samba_server.port, "connection_cache": smb_cache}
    root = samba_server.unc_root
    smbclient.makedirs(rf"{root}\d\sub", exist_ok=True, **kw)
    with smbclient.open_file(rf"{root}\d\sub\py.bin", mode="wb", **kw) as f:
        f.write(PAYLOAD)
    with smbclient.open_file(rf"{root}\d\sub\py.bin", mode="rb", **kw) as f:
        assert f.read() == PAYLOAD
    assert smbclient.listdir(rf"{root}\d\sub", **kw) == ["py.bin"]
    assert smbclient.stat(rf"{root}\d\sub\py.bin", **kw).st_size == len(PAYLOAD)
    assert (samba_server.share_path / "d" / "sub" / "py.bin").read_bytes() == PAYLOAD
    # The independent client reads what smbprotocol wrote.
    back = tmp_path / "via-cli.bin"
    _smbclient_cli(samba_server, tmp_path, "share", f"get d/sub/py.bin {back}")
    assert back.read_bytes() == PAYLOAD


def test_samba_encrypted_share(samba_server: fx.SambaServer, smb_cache: dict[str, Any]) -> None:
    assert samba_server.encrypted_share_name is not None
    assert samba_server.encrypted_share_path is not None
    kw: dict[str, Any] = {"port": samba_server.port, "connection_cache": smb_cache}
    path = rf"\\{samba_server.host}\{samba_server.encrypted_share_name}\enc.bin"
    with smbclient.open_file(path, mode="wb", **kw) as f:
        f.write(b"secret bytes")
    assert (samba_server.encrypted_share_path / "enc.bin").read_bytes() == b"secret bytes"
    session = smbclient.register_session(
        samba_server.host,
        username=samba_server.user,
        password=samba_server.password,
        port=samba_server.port,
        connection_cache=smb_cache,
    )
    tree = TreeConnect(session, rf"\\{samba_server.host}\{samba_server.encrypted_share_name}")
    tree.connect()
    try:
        assert tree.encrypt_data, "share with 'smb encrypt = required' must encrypt"
    finally:
        tree.disconnect()


def test_samba_error_wrong_password(samba_server: fx.SambaServer) -> None:
    cache: dict[str, Any] = {}  # a fresh cache: a pooled session would ignore the password
    with pytest.raises(LogonFailure) as ei:
        smbclient.register_session(
            samba_server.host,
            username=samba_server.user,
            password="wrong-" + "pw",
            port=samba_server.port,
            connection_cache=cache,
        )
    assert isinstance(ei.value, SMBResponseException)
    assert not isinstance(ei.value, OSError)
    smbclient.reset_connection_cache(connection_cache=cache)


def test_samba_error_unknown_share(samba_server: fx.SambaServer, smb_cache: dict[str, Any]) -> None:
    kw: dict[str, Any] = {"port": samba_server.port, "connection_cache": smb_cache}
    with pytest.raises(SMBOSError) as ei:
        smbclient.listdir(rf"\\{samba_server.host}\nosuchshare", **kw)
    assert ei.value.errno == errno.ENOENT
    assert ei.value.ntstatus == STATUS_NOT_FOUND
    assert not isinstance(ei.value, FileNotFoundError)
    # The raw tree connect says what really happened.
    session = smbclient.register_session(
        samba_server.host,
        username=samba_server.user,
        password=samba_server.password,
        port=samba_server.port,
        connection_cache=smb_cache,
    )
    with pytest.raises(BadNetworkName):
        TreeConnect(session, rf"\\{samba_server.host}\nosuchshare").connect()


def test_samba_error_unknown_path(samba_server: fx.SambaServer, smb_cache: dict[str, Any]) -> None:
    kw: dict[str, Any] = {"port": samba_server.port, "connection_cache": smb_cache}
    root = samba_server.unc_root
    with pytest.raises(SMBOSError) as ei:
        smbclient.listdir(rf"{root}\no-such-dir", **kw)
    assert (ei.value.errno, ei.value.ntstatus) == (errno.ENOENT, STATUS_OBJECT_NAME_NOT_FOUND)
    with pytest.raises(SMBOSError) as ei:
        smbclient.open_file(rf"{root}\no-such-dir\f.txt", mode="rb", **kw)
    assert (ei.value.errno, ei.value.ntstatus) == (errno.ENOENT, STATUS_OBJECT_PATH_NOT_FOUND)


def test_samba_error_connection_refused() -> None:
    port = fx.free_port()  # nothing listens there
    with pytest.raises(ValueError, match="Failed to connect") as ei:
        smbclient.register_session(
            "127.0.0.1", username="root", password="x", port=port, connection_cache={}
        )
    assert isinstance(ei.value.__cause__, ConnectionRefusedError)


def test_samba_error_server_killed(tmp_path: Path) -> None:
    fx.require_or_skip(fx.SambaServer.missing_binaries(), "Samba (smbd)")
    cache: dict[str, Any] = {}
    with fx.SambaServer(tmp_path / "smb") as srv:
        smbclient.register_session(
            srv.host,
            username=srv.user,
            password=srv.password,
            port=srv.port,
            connection_cache=cache,
        )
        kw: dict[str, Any] = {"port": srv.port, "connection_cache": cache}
        f = smbclient.open_file(rf"{srv.unc_root}\k.bin", mode="w+b", **kw)
        try:
            f.write(b"0123456789")
            f.flush()
            srv.kill()
            # Usually SMBConnectionClosed (the receive thread saw the EOF first); a raw
            # ConnectionError if the send hit the dead socket or an RST came first.
            with pytest.raises((SMBConnectionClosed, ConnectionError)):
                f.seek(0)
                f.read()
            # A new path call makes smbclient reconnect, which is refused.
            with pytest.raises(ValueError, match="Failed to connect") as ei:
                smbclient.listdir(srv.unc_root, **kw)
            assert isinstance(ei.value.__cause__, ConnectionRefusedError)
        finally:
            with contextlib.suppress(SMBConnectionClosed, ConnectionError):
                f.close()
            smbclient.reset_connection_cache(connection_cache=cache)


# ------------------------------------------------------------------------------------------
# OpenSSH / SFTP
# ------------------------------------------------------------------------------------------


def _sftp_batch(srv: fx.SshServer, key: Path, batch: str) -> str:
    cli = _require_cli("sftp")
    res = _run(
        [
            cli,
            "-b",
            "-",
            "-F",
            "/dev/null",
            "-i",
            str(key),
            "-P",
            str(srv.port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            f"{srv.user}@{srv.host}",
        ],
        input_text=batch,
    )
    return res.stdout + res.stderr


def _connect(srv: fx.SshServer, **kw: Any) -> Any:
    opts: dict[str, Any] = {
        "port": srv.port,
        "username": srv.user,
        "client_keys": [str(srv.client_key_path)],
        "known_hosts": str(srv.known_hosts_path),
    }
    opts.update(kw)
    return asyncssh.connect(srv.host, **opts)


def test_ssh_sftp_cli_put_get(ssh_server: fx.SshServer, tmp_path: Path) -> None:
    src, back = tmp_path / "src.bin", tmp_path / "back.bin"
    src.write_bytes(PAYLOAD)
    _sftp_batch(ssh_server, ssh_server.client_key_path, f"put {src} cli.bin\nget cli.bin {back}\n")
    assert back.read_bytes() == PAYLOAD
    # Relative paths land in root_dir (internal-sftp -d).
    assert (ssh_server.root_dir / "cli.bin").read_bytes() == PAYLOAD


def test_ssh_asyncssh_roundtrip_and_cross_check(ssh_server: fx.SshServer, tmp_path: Path) -> None:
    async def go() -> None:
        async with _connect(ssh_server) as conn, conn.start_sftp_client() as sftp:
            assert await sftp.realpath(".") == str(ssh_server.root_dir)
            await sftp.makedirs("d/sub", exist_ok=True)
            async with sftp.open("d/sub/py.bin", "wb") as f:
                await f.write(PAYLOAD)
            async with sftp.open("d/sub/py.bin", "rb") as f:
                assert await f.read() == PAYLOAD
            names = set(await sftp.listdir("d/sub")) - {".", ".."}  # SFTP v3 lists . and ..
            assert names == {"py.bin"}
            assert (await sftp.stat("d/sub/py.bin")).size == len(PAYLOAD)

    _arun(go())
    assert (ssh_server.root_dir / "d" / "sub" / "py.bin").read_bytes() == PAYLOAD
    back = tmp_path / "via-cli.bin"
    _sftp_batch(ssh_server, ssh_server.client_key_path, f"get d/sub/py.bin {back}\n")
    assert back.read_bytes() == PAYLOAD


def test_ssh_error_wrong_password(ssh_server: fx.SshServer) -> None:
    with pytest.raises(asyncssh.PermissionDenied) as ei:
        _arun(_connect(ssh_server, client_keys=None, password="wrong-" + "pw"))
    assert isinstance(ei.value, asyncssh.DisconnectError)
    assert ei.value.code == asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE


def test_ssh_error_wrong_key(ssh_server: fx.SshServer) -> None:
    other_key = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(asyncssh.PermissionDenied):
        _arun(_connect(ssh_server, client_keys=[other_key]))


def test_ssh_error_unknown_path(ssh_server: fx.SshServer) -> None:
    async def go() -> None:
        async with _connect(ssh_server) as conn, conn.start_sftp_client() as sftp:
            with pytest.raises(asyncssh.SFTPNoSuchFile) as ei:
                await sftp.listdir("no-such-dir")
            assert ei.value.code == asyncssh.FX_NO_SUCH_FILE
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.open("no-such-dir/f.txt", "rb")
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.stat(str(ssh_server.base_dir / "no-such-root"))

    _arun(go())


def test_ssh_error_connection_refused() -> None:
    port = fx.free_port()
    with pytest.raises(ConnectionRefusedError) as ei:
        _arun(asyncssh.connect("127.0.0.1", port=port, username="root", known_hosts=None))
    assert ei.value.errno == errno.ECONNREFUSED


def test_ssh_error_server_killed(tmp_path: Path) -> None:
    fx.require_or_skip(fx.SshServer.missing_binaries(), "OpenSSH (sshd)")

    async def go(srv: fx.SshServer, loop_saw_eof: bool) -> None:
        conn = await _connect(srv)
        try:
            sftp = await conn.start_sftp_client()
            f = await sftp.open("k.bin", "w+b")
            await f.write(b"0123456789", 0)
            srv.kill()  # blocks the loop: asyncssh has not seen the EOF yet
            if loop_saw_eof:
                await asyncio.wait_for(conn.wait_closed(), 10)
                with pytest.raises(asyncssh.SFTPNoConnection):
                    await f.read(4, 0)
            else:
                # asyncssh passes on what the socket said: ConnectionLost after a clean EOF, the
                # raw BrokenPipeError/ConnectionResetError when a write or an RST came first.
                with pytest.raises((asyncssh.ConnectionLost, ConnectionError)):
                    await f.read(4, 0)
            with pytest.raises(asyncssh.SFTPNoConnection):
                await sftp.listdir(".")
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.start_sftp_client()
        finally:
            conn.close()

    for loop_saw_eof in (False, True):
        with fx.SshServer(tmp_path / f"ssh-{loop_saw_eof}") as srv:
            _arun(go(srv, loop_saw_eof))


@pytest.mark.skipif(
    not fx._env_flag("RDBSS_TEST_SYSTEM_USER"),
    reason="creates and deletes a throwaway Unix account; set RDBSS_TEST_SYSTEM_USER=1",
)
def test_ssh_password_auth_with_throwaway_user(tmp_path: Path) -> None:
    fx.require_or_skip(fx.SshServer.missing_binaries(), "OpenSSH (sshd)")
    with fx.SshServer(tmp_path / "ssh", allow_system_user=True) as srv:
        user, password = srv.password_user, srv.password
        assert user is not None and password is not None

        async def go() -> None:
            async with (
                _connect(srv, username=user, client_keys=None, password=password) as conn,
                conn.start_sftp_client() as sftp,
                sftp.open("pw.txt", "wb") as f,
            ):
                await f.write(b"by password")
            with pytest.raises(asyncssh.PermissionDenied):
                await _connect(srv, username=user, client_keys=None, password="wrong")

        _arun(go())
        assert (srv.root_dir / "pw.txt").read_bytes() == b"by password"
    assert srv.password_user is None
    res = subprocess.run(["getent", "passwd", user], capture_output=True, timeout=10, check=False)
    assert res.returncode != 0, f"throwaway user {user} was not removed"


# ------------------------------------------------------------------------------------------
# WebDAV
# ------------------------------------------------------------------------------------------


@pytest.fixture
def dav(webdav_server: fx.WebDavServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=webdav_server.url, timeout=30) as client:
        yield client


def test_webdav_put_get_and_401(webdav_server: fx.WebDavServer, dav: httpx.Client) -> None:
    auth = (webdav_server.user, webdav_server.password)
    assert dav.put("/py.bin", content=PAYLOAD).status_code == 401  # no credentials
    r = dav.put("/py.bin", content=PAYLOAD, auth=auth)
    assert r.status_code in (201, 204), r.text
    assert dav.get("/py.bin").status_code == 401
    assert dav.get("/py.bin", auth=auth).content == PAYLOAD
    assert dav.get("/py.bin", auth=httpx.DigestAuth(*auth)).content == PAYLOAD
    assert (webdav_server.root_dir / "py.bin").read_bytes() == PAYLOAD
    r = dav.request("PROPFIND", "/", headers={"Depth": "1"}, auth=auth)
    assert r.status_code == 207 and "py.bin" in r.text


def test_webdav_webdav4_client(webdav_server: fx.WebDavServer) -> None:
    client = webdav4.client.Client(
        webdav_server.url, auth=(webdav_server.user, webdav_server.password), timeout=30
    )
    try:
        client.mkdir("w4")
        client.upload_fileobj(io.BytesIO(b"via webdav4"), "w4/f.txt")
        assert client.ls("w4", detail=False) == ["w4/f.txt"]
        assert (webdav_server.root_dir / "w4" / "f.txt").read_bytes() == b"via webdav4"
        with pytest.raises(webdav4.client.ResourceNotFound):
            client.ls("no-such-dir")
    finally:
        client.http.close()
    bad = webdav4.client.Client(webdav_server.url, auth=(webdav_server.user, "wrong"), timeout=30)
    try:
        with pytest.raises(webdav4.client.HTTPError) as ei:
            bad.ls("/")
        assert isinstance(ei.value.__cause__, httpx.HTTPStatusError)
        assert ei.value.__cause__.response.status_code == 401
    finally:
        bad.http.close()


def test_webdav_error_wrong_password(webdav_server: fx.WebDavServer, dav: httpx.Client) -> None:
    for auth in (
        (webdav_server.user, "wrong-pw"),
        httpx.DigestAuth(webdav_server.user, "wrong-pw"),
        ("nobody", webdav_server.password),
    ):
        r = dav.get("/", auth=auth)
        assert r.status_code == 401
        with pytest.raises(httpx.HTTPStatusError):
            r.raise_for_status()


def test_webdav_error_unknown_path(webdav_server: fx.WebDavServer, dav: httpx.Client) -> None:
    auth = (webdav_server.user, webdav_server.password)
    assert dav.get("/no-such-dir/f.txt", auth=auth).status_code == 404
    assert dav.request("PROPFIND", "/no-such-dir/", auth=auth).status_code == 404
    assert dav.put("/no-such-dir/f.txt", content=b"x", auth=auth).status_code == 409


def test_webdav_error_connection_refused() -> None:
    port = fx.free_port()
    with pytest.raises(httpx.ConnectError) as ei:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
    assert _caused_by(ei.value, ConnectionRefusedError)


def test_webdav_error_server_killed(tmp_path: Path) -> None:
    fx.require_or_skip(fx.WebDavServer.missing_binaries(), "wsgidav")
    # Idle keep-alive connection: the next request reconnects and is refused.
    with fx.WebDavServer(tmp_path / "dav1") as srv:
        (srv.root_dir / "f.txt").write_bytes(b"0123456789")
        with httpx.Client(base_url=srv.url, auth=(srv.user, srv.password), timeout=10) as client:
            assert client.get("/f.txt").content == b"0123456789"
            srv.kill()
            with pytest.raises(httpx.ConnectError) as ei:
                client.get("/f.txt")
            assert _caused_by(ei.value, ConnectionRefusedError)
    # Killed while a response body is being read.
    with fx.WebDavServer(tmp_path / "dav2") as srv:
        (srv.root_dir / "big.bin").write_bytes(b"z" * (32 << 20))
        with (
            httpx.Client(base_url=srv.url, auth=(srv.user, srv.password), timeout=10) as client,
            client.stream("GET", "/big.bin") as r,
        ):
            chunks = r.iter_bytes(64 * 1024)
            next(chunks)
            srv.kill()
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in chunks:
                    pass

"""The SMB mini-redirector through a real daemon against real Samba servers: bytes written
through rdbss are read back with the ``smbclient`` CLI (and the reverse), partial overwrites and
appends, directories, rename, delete, an encrypted share, and the statuses a client sees when the
server refuses the password, has no such share, is not there, never answers or dies mid-session.
Credentials never reach the daemon's log."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rdbss.client import Client
from rdbss.minirdrs.smb.config import ServerConfig
from rdbss.minirdrs.smb.minirdr import SmbMiniRdr
from rdbss.requests import SMALL_READ_BYTES
from rdbss.wire import (
    Access,
    CreateDisposition,
    CreateParameters,
    FileInformationClass,
    LowIoOp,
    LowIoParameters,
    NtStatus,
    NtStatusError,
    RxContext,
)
from rdbss.wire.status import NETWORK_ERRORS
from tests.conformance.backend_smb import DirectSmb, smb_config, write_password_file
from tests.daemon import Daemon, running_daemon
from tests.servers.fixtures import (
    SambaServer,
    find_binary,
    free_port,
    require_or_skip,
    silent_server,
)

S = NtStatus
RW = Access.GENERIC_READ | Access.GENERIC_WRITE
CLI_TIMEOUT_S = 30.0
#: Every failure below must reach the client well within this (the daemon's request timeout is
#: 10 s, its connect_timeout 5 s, the mini-redirector's SMB timeout 5 s).
ANSWER_DEADLINE_S = 8.0


@dataclass
class Smb:
    daemon: Daemon
    server: SambaServer
    victim: SambaServer  # a second server, killed by one test
    direct: DirectSmb  # an smbprotocol session independent of rdbss
    base: Path
    bad_password: str
    silent_port: int  # accepts TCP connections and never answers

    def unc(self, *parts: str, server: str = "sambatest", share: str = "share") -> str:
        return "\\".join([rf"\\{server}\{share}", *parts])

    def cli(self, commands: str, share: str = "share") -> str:
        """Run the ``smbclient`` CLI on the main server; its output."""
        cli = find_binary("smbclient")
        if cli is None:
            require_or_skip(["smbclient"], "smbclient CLI")
        assert cli is not None
        auth = self.base / "cli-auth.txt"  # keeps the password off the command line
        if not auth.exists():
            fd = os.open(auth, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"username = {self.server.user}\npassword = {self.server.password}\n")
            (self.base / "cli-smb.conf").write_text("[global]\n")
        res = subprocess.run(
            [
                cli,
                f"//{self.server.host}/{share}",
                "-p",
                str(self.server.port),
                "-A",
                str(auth),
                f"--configfile={self.base / 'cli-smb.conf'}",
                "--use-kerberos=off",
                "-c",
                commands,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
        assert res.returncode == 0, f"smbclient rc={res.returncode}\n{res.stdout}\n{res.stderr}"
        return res.stdout + res.stderr


@pytest.fixture(scope="module")
def smb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Smb]:
    require_or_skip(SambaServer.missing_binaries(), "Samba (smbd)")
    base = tmp_path_factory.mktemp("smb-it")
    bad_password = "wrong-" + secrets.token_hex(8)
    with (
        SambaServer(base / "smb", encrypt_share=True) as server,
        SambaServer(base / "victim") as victim,
        silent_server() as silent_port,
    ):
        good = write_password_file(base / "pw", server.password)
        bad = write_password_file(base / "bad-pw", bad_password)
        victim_pw = write_password_file(base / "victim-pw", victim.password)
        config = (
            smb_config(server, good)
            + f"""
[minirdr.servers.smbbad]
host = "{server.host}"
port = {server.port}
username = "{server.user}"
password_file = "{bad}"
[minirdr.servers.smbnone]
host = "127.0.0.1"
port = {free_port()}
username = "{server.user}"
password_file = "{good}"
[minirdr.servers.smbkill]
host = "{victim.host}"
port = {victim.port}
username = "{victim.user}"
password_file = "{victim_pw}"
[minirdr.servers.smbcrypt]
host = "{server.host}"
port = {server.port}
username = "{server.user}"
password_file = "{good}"
encrypt = true

[[minirdr]]
name = "smbquick"
kind = "smb"
timeout = 1.0
[minirdr.servers.smbsilent]
host = "127.0.0.1"
port = {silent_port}
username = "{server.user}"
password_file = "{good}"
[minirdr.servers.smbunreachable]
host = "192.0.2.1"
port = 445
username = "{server.user}"
password_file = "{good}"
"""
        )
        direct = DirectSmb(server)
        try:
            with running_daemon(extra_config=config, log_level="debug") as daemon:
                yield Smb(daemon, server, victim, direct, base, bad_password, silent_port)
        finally:
            direct.close()


@pytest.fixture
def client(smb: Smb) -> Iterator[Client]:
    with smb.daemon.client(timeout=10.0) as c:
        yield c


def _timed_status(fn: object) -> tuple[int, float]:
    """Run ``fn``; the NTSTATUS it failed with and how long that took."""
    assert callable(fn)
    start = time.monotonic()
    with pytest.raises(NtStatusError) as ei:
        fn()
    return ei.value.status, time.monotonic() - start


# ------------------------------------------------------------------------------ data


def test_cli_ls_server_says_why_smb_shares_are_not_listed(smb: Smb) -> None:
    proc = smb.daemon.cli("--json", "ls", "//sambatest")
    assert proc.returncode == 1
    error = json.loads(proc.stderr)
    assert error["status"] == "STATUS_NOT_SUPPORTED"
    assert "NetShareEnum" in error["message"] and "//sambatest/SHARE" in error["message"]


def test_write_through_rdbss_read_with_smbclient_cli(smb: Smb, client: Client) -> None:
    data = os.urandom(3 << 20) + b"odd tail"
    client.mkdir(smb.unc("w1"))
    assert client.write_bytes(smb.unc("w1", "out.bin"), data) == len(data)
    back = smb.base / "w1-back.bin"
    smb.cli(f"get w1\\out.bin {back}")
    assert back.read_bytes() == data
    assert client.stat(smb.unc("w1", "out.bin")).size == len(data)


def test_write_with_smbclient_cli_read_through_rdbss(smb: Smb, client: Client) -> None:
    data = os.urandom((2 << 20) + 12345)
    src = smb.base / "r1-src.bin"
    src.write_bytes(data)
    smb.cli(f"mkdir r1; put {src} r1\\in.bin")
    assert client.read_bytes(smb.unc("r1", "in.bin")) == data
    with client.open(smb.unc("r1", "in.bin"), "rb", buffering=0) as f:
        f.seek(len(data) - 10)
        assert f.read(100) == data[-10:]
        assert f.read(100) == b""  # at EOF


def test_partial_overwrite_append_and_truncate(smb: Smb, client: Client) -> None:
    path = smb.unc("edit.txt")
    client.write_bytes(path, b"0123456789")
    with client.open(path, "r+b", buffering=0) as f:
        f.seek(3)
        f.write(b"abc")
    with client.open(path, "ab", buffering=0) as f:
        f.write(b"END")
    assert smb.direct.read("edit.txt") == b"012abc6789END"
    client.truncate(path, 4)
    assert smb.direct.read("edit.txt") == b"012a"
    smb.direct.write("edit.txt", b"written directly")
    assert client.read_bytes(path) == b"written directly"


def test_directories_rename_and_delete(smb: Smb, client: Client) -> None:
    client.mkdir(smb.unc("tree", "a", "b"), parents=True)
    for name in ("one.txt", "two.txt"):
        client.write_bytes(smb.unc("tree", "a", name), name.encode())
    assert sorted(client.listdir(smb.unc("tree", "a"))) == ["b", "one.txt", "two.txt"]
    assert client.listdir(smb.unc("tree", "a"), "t*") == ["two.txt"]
    assert client.listdir(smb.unc("tree", "a", "b")) == []
    # rename: a collision unless asked to replace, then the replacement
    with pytest.raises(FileExistsError) as ei:
        client.rename(smb.unc("tree", "a", "one.txt"), smb.unc("tree", "a", "two.txt"))
    assert getattr(ei.value, "status", None) == S.STATUS_OBJECT_NAME_COLLISION
    client.rename(smb.unc("tree", "a", "one.txt"), smb.unc("tree", "a", "two.txt"), replace=True)
    assert smb.direct.read(r"tree\a\two.txt") == b"one.txt"
    client.rename(smb.unc("tree", "a"), smb.unc("tree", "moved"))
    assert sorted(client.listdir(smb.unc("tree"))) == ["moved"]
    smb.cli("ls tree\\moved\\two.txt")  # the server has it under the new name
    # delete: a non-empty directory refuses
    with pytest.raises(NtStatusError) as ei:
        client.rmdir(smb.unc("tree", "moved"))
    assert ei.value.status == S.STATUS_DIRECTORY_NOT_EMPTY
    client.remove(smb.unc("tree", "moved", "two.txt"))
    client.rmdir(smb.unc("tree", "moved", "b"))
    client.delete(smb.unc("tree", "moved"))
    assert client.listdir(smb.unc("tree")) == []
    assert not (smb.server.share_path / "tree" / "moved").exists()
    with pytest.raises(FileNotFoundError):
        client.stat(smb.unc("tree", "moved"))


def test_times_and_volume(smb: Smb, client: Client) -> None:
    path = smb.unc("times.txt")
    client.write_bytes(path, b"t")
    when = 1_600_000_000_123_456_700  # 100 ns precision survives the round trip
    handle = client.create(path, access=Access.FILE_WRITE_ATTRIBUTES | Access.GENERIC_READ)
    try:
        client.set_info(
            handle.fobx, FileInformationClass.FileBasicInformation, last_write_time=when
        )
        assert client.query_info(handle.fobx).last_write_time == when
    finally:
        client.close_handle(handle.fobx)
    assert (smb.server.share_path / "times.txt").stat().st_mtime_ns == when
    volume = client.volume(smb.unc())
    assert volume["total_bytes"] > 0 and 0 <= volume["avail_bytes"] <= volume["total_bytes"]


def test_encrypted_share_and_encrypted_session(smb: Smb, client: Client) -> None:
    secure = smb.server.encrypted_share_name
    assert secure is not None and smb.server.encrypted_share_path is not None
    client.write_bytes(smb.unc("enc.bin", share=secure), b"sealed")
    assert (smb.server.encrypted_share_path / "enc.bin").read_bytes() == b"sealed"
    client.write_bytes(smb.unc("crypt.bin", server="smbcrypt"), b"whole session")
    assert smb.direct.read("crypt.bin") == b"whole session"


# ------------------------------------------------------------------------------ failures


def test_wrong_password_is_logon_failure(smb: Smb, client: Client) -> None:
    status, took = _timed_status(lambda: client.listdir(smb.unc(server="smbbad")))
    assert status == S.STATUS_LOGON_FAILURE
    assert took < ANSWER_DEADLINE_S


def test_unknown_share_is_bad_network_name(smb: Smb, client: Client) -> None:
    status, _ = _timed_status(lambda: client.stat(smb.unc(share="nosuchshare")))
    assert status == S.STATUS_BAD_NETWORK_NAME


def test_nothing_listening_is_remote_not_listening(smb: Smb, client: Client) -> None:
    status, took = _timed_status(lambda: client.stat(smb.unc(server="smbnone")))
    assert status == S.STATUS_REMOTE_NOT_LISTENING
    assert took < ANSWER_DEADLINE_S


def test_unknown_server_is_bad_network_path(smb: Smb, client: Client) -> None:
    status, _ = _timed_status(lambda: client.stat(smb.unc(server="nosuchserver")))
    assert status == S.STATUS_BAD_NETWORK_PATH


def test_silent_server_times_out(smb: Smb, client: Client) -> None:
    status, took = _timed_status(lambda: client.stat(smb.unc(server="smbsilent")))
    assert status == S.STATUS_IO_TIMEOUT
    assert took < ANSWER_DEADLINE_S


def test_unreachable_host_answers_in_time(smb: Smb, client: Client) -> None:
    # 192.0.2.1 (TEST-NET-1) is never routed: the stack says so, a firewall refuses, or the
    # connect times out; which one depends on the machine, that it answers in time does not
    status, took = _timed_status(lambda: client.stat(smb.unc(server="smbunreachable")))
    assert status in (
        S.STATUS_NETWORK_UNREACHABLE,
        S.STATUS_IO_TIMEOUT,
        S.STATUS_REMOTE_NOT_LISTENING,
    )
    assert took < ANSWER_DEADLINE_S


def test_server_killed_mid_session(smb: Smb, client: Client) -> None:
    path = smb.unc("k.bin", server="smbkill")
    handle = client.create(path, access=RW, disposition=CreateDisposition.FILE_OVERWRITE_IF)
    try:
        assert client.write_handle(handle.fobx, 0, b"0123456789") == 10
        assert client.read_handle(handle.fobx, 0, 4) == b"0123"
        smb.victim.kill()
        # the read finds the connection lost, and is sent again (a read is idempotent) on a
        # new connection: nothing listens there any more
        status, took = _timed_status(lambda: client.read_handle(handle.fobx, 0, 4))
        assert status == S.STATUS_REMOTE_NOT_LISTENING
        assert took < ANSWER_DEADLINE_S
        # the connection is gone: what follows (the core trying to connect again) answers a
        # network error in time, never hangs
        for attempt in (
            lambda: client.query_info(handle.fobx),
            lambda: client.stat(smb.unc("other.bin", server="smbkill")),
        ):
            status, took = _timed_status(attempt)
            assert status in NETWORK_ERRORS, hex(status)
            assert took < ANSWER_DEADLINE_S
    finally:
        start = time.monotonic()
        client.close_handle(handle.fobx)  # never hangs, never fails
        assert time.monotonic() - start < ANSWER_DEADLINE_S
    # the other server is not affected
    client.write_bytes(smb.unc("still-here.txt"), b"yes")
    assert smb.direct.read("still-here.txt") == b"yes"


def test_passwords_never_logged(smb: Smb, client: Client) -> None:
    # make sure every connection (good, refused, failed) has happened in this daemon
    client.stat(smb.unc())
    with contextlib.suppress(NtStatusError):
        client.stat(smb.unc(server="smbbad"))
    log = smb.daemon.log()
    assert "connected server=sambatest" in log, "the daemon log is not the one expected"
    for secret in (smb.server.password, smb.victim.password, smb.bad_password):
        assert secret not in log
    config_json = (smb.daemon.runtime_dir / "config.json").read_text()
    assert smb.server.password not in config_json  # only the password file's name is there


# ------------------------------------------------------------------------------ configuration


def test_configuration_is_checked_and_secrets_stay_out_of_reprs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="host"):
        SmbMiniRdr("smb", {"servers": {"s": {"username": "u"}}})
    with pytest.raises(ValueError, match="only one"):
        both = {"host": "h", "username": "u", "password": "a", "password_env": "B"}
        SmbMiniRdr("smb", {"servers": {"s": both}})
    with pytest.raises(ValueError, match="timeout"):
        SmbMiniRdr("smb", {"timeout": 0})
    m = SmbMiniRdr("smb", {"servers": {"One": {"host": "h", "username": "u"}}})
    assert m.servers() == ["One"]
    secret = "s3cret-" + secrets.token_hex(4)
    monkeypatch.setenv("RDBSS_TEST_SMB_PW", secret)
    server = ServerConfig.parse(
        "s", {"host": "h", "username": "u", "password_env": "RDBSS_TEST_SMB_PW"}
    )
    assert server.read_password() == secret
    inline = ServerConfig.parse("s", {"host": "h", "username": "u", "password": secret})
    assert secret not in repr(inline)
    missing = ServerConfig.parse(
        "s", {"host": "h", "username": "u", "password_file": str(tmp_path / "none")}
    )
    with pytest.raises(NtStatusError) as ei:
        missing.read_password()
    assert ei.value.status == S.STATUS_LOGON_FAILURE


def test_finalized_srv_call_keeps_handles_closable_and_connects_again(smb: Smb) -> None:
    """What the core's reconnect relies on: after MRxFinalizeSrvCall (a lost or idle connection)
    the old handles answer CONNECTION_DISCONNECTED and still close cleanly; MRxCreateSrvCall
    builds a new connection on which the handle can be re-opened."""
    password_file = smb.base / "pw"
    server = {
        "host": smb.server.host,
        "port": smb.server.port,
        "username": smb.server.user,
        "password_file": str(password_file),
    }
    m = SmbMiniRdr("direct", {"timeout": 5.0, "servers": {"direct": server}})
    try:

        def ctx(**fields: Any) -> RxContext:
            return RxContext(1, 0, srv_call="direct", net_root="share", **fields)

        def open_file() -> int:
            create = CreateParameters(desired_access=RW, share_access=7, disposition=3)
            result = m.create(ctx(path="fin.txt", create=create)).result
            return int(result["srv_open"])

        def read(srv_open: int) -> bytes:
            lowio = LowIoParameters(operation=LowIoOp.READ, offset=0, length=100)
            return bytes(m.low_io_submit(ctx(srv_open=srv_open, lowio=lowio)).payload or b"")

        m.create_srv_call(ctx())
        m.create_v_net_root(ctx())
        smb.direct.write("fin.txt", b"before")
        old = open_file()
        assert read(old) == b"before"
        m.finalize_srv_call(ctx(args={"force": True}))
        with pytest.raises(NtStatusError) as ei:
            read(old)
        assert ei.value.status == S.STATUS_CONNECTION_DISCONNECTED
        assert m.close_srv_open(ctx(srv_open=old)).status == S.STATUS_SUCCESS
        m.create_srv_call(ctx())
        m.create_v_net_root(ctx())
        new = open_file()
        assert read(new) == b"before"
        m.close_srv_open(ctx(srv_open=new))
    finally:
        m.close()


@pytest.mark.parametrize("size", [0, SMALL_READ_BYTES, SMALL_READ_BYTES + 1])
@pytest.mark.parametrize("where", ["share", "session"])
def test_small_files_stats_and_listings_sealed(
    smb: Smb, client: Client, where: str, size: int
) -> None:
    """The packed small-file requests, the stat and the listing compound on an encrypted share
    and over an encrypted session: byte exact, and failing as an open one by one does."""
    secure = smb.server.encrypted_share_name
    assert secure is not None
    server = "smbcrypt" if where == "session" else "sambatest"
    share = "share" if where == "session" else secure
    folder = f"sealed-{where}-{size}"
    client.mkdir(smb.unc(folder, server=server, share=share))
    name = f"{folder}\\{'ü' * 40}日本.bin"
    data = bytes(i % 253 for i in range(size))
    path = smb.unc(name, server=server, share=share)
    assert client.write_bytes(path, data) == size
    assert client.read_bytes(path) == data
    assert client.stat(path).size == size
    assert client.listdir(smb.unc(folder, server=server, share=share)) == [name.split("\\")[1]]
    missing = smb.unc(f"{folder}\\nothing\\x.bin", server=server, share=share)
    with pytest.raises(FileNotFoundError) as alone:
        client.open(missing, "rb")
    with pytest.raises(FileNotFoundError) as packed:
        client.read_bytes(missing)
    assert getattr(packed.value, "status", 0) == getattr(alone.value, "status", 1)
    with pytest.raises(FileNotFoundError) as stat:
        client.stat(missing)
    assert getattr(stat.value, "status", 0) == S.STATUS_OBJECT_PATH_NOT_FOUND

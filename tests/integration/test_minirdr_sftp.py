"""The SFTP mini-redirector through a real daemon against real OpenSSH servers: bytes written
through rdbss are read back with the ``sftp`` CLI (and the reverse), directories, rename with and
without replace, delete, symbolic links that lead out of the share, and the statuses a client
sees when the server refuses the password or the key, has no such share, is not there or dies
mid-session. No credential reaches the daemon's log."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from rdbss.client import Client
from rdbss.minirdrs.sftp.config import parse_config, read_credentials
from rdbss.minirdrs.sftp.minirdr import SftpMiniRdr
from rdbss.wire import (
    Access,
    CreateDisposition,
    CreateOptions,
    FileInformationClass,
    NtStatus,
    NtStatusError,
)
from tests.conformance.backend_sftp import sftp_config
from tests.daemon import Daemon, running_daemon
from tests.servers import fixtures as fx
from tests.servers.fixtures import SshServer, find_binary, free_port, require_or_skip

S = NtStatus
RW = Access.GENERIC_READ | Access.GENERIC_WRITE
SHARE = "itest"
#: Every failure below must reach the client well within this (the daemon's request timeout is
#: 10 s and the mini-redirector's timeout 5 s).
ANSWER_DEADLINE_S = 8.0
CLI_DEADLINE_S = 30.0
#: The timeout of the mini-redirector that reaches a server that never answers.
HANG_TIMEOUT_S = 2.0


@dataclass
class Ssh:
    daemon: Daemon
    server: SshServer
    victim: SshServer  # a second server, killed by one test
    flaky: SshServer  # a third, whose sessions (not its listener) one test kills
    folder: Path  # the share's folder on the server (this machine)
    secrets: list[str]  # what must never appear in the log

    def unc(self, *parts: str, server: str = "sshtest", share: str = SHARE) -> str:
        return "\\".join([rf"\\{server}\{share}", *parts])

    def remote(self, *parts: str) -> str:
        return "/".join([str(self.folder), *parts])

    def sftp_cli(self, batch: str) -> str:
        """Run the ``sftp`` CLI in batch mode against the main server (independent of rdbss)."""
        cli = find_binary("sftp")
        if cli is None:
            require_or_skip(["sftp"], "sftp CLI")
        assert cli is not None
        res = subprocess.run(
            [
                cli,
                "-b",
                "-",
                *self.server.cli_args(),
                "-P",
                str(self.server.port),
                f"{self.server.user}@{self.server.host}",
            ],
            input=batch,
            capture_output=True,
            text=True,
            timeout=CLI_DEADLINE_S,
            check=False,
        )
        assert res.returncode == 0, f"sftp rc={res.returncode}\n{res.stdout}\n{res.stderr}"
        return res.stdout

    def cli_get(self, tmp_path: Path, *parts: str) -> bytes:
        local = tmp_path / ("got-" + secrets.token_hex(4))
        self.sftp_cli(f'get "{self.remote(*parts)}" "{local}"\n')
        return local.read_bytes()

    def cli_put(self, tmp_path: Path, data: bytes, *parts: str) -> None:
        local = tmp_path / ("put-" + secrets.token_hex(4))
        local.write_bytes(data)
        self.sftp_cli(f'put "{local}" "{self.remote(*parts)}"\n')

    def cli_ls(self, *parts: str) -> list[str]:
        out = self.sftp_cli(f'ls -1a "{self.remote(*parts)}"\n')
        names = [line.strip().rsplit("/", 1)[-1] for line in out.splitlines()[1:]]
        return sorted(n for n in names if n and n not in (".", ".."))


def _write_key(path: Path, key: asyncssh.SSHKey) -> Path:
    key.write_private_key(str(path))
    path.chmod(0o600)
    return path


def _key_body(path: Path) -> list[str]:
    """The base64 lines of a private key file: the secret part."""
    return [line for line in path.read_text().splitlines() if line and "PRIVATE KEY" not in line]


@pytest.fixture(scope="module")
def ssh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ssh]:
    require_or_skip(SshServer.missing_binaries(), "OpenSSH (sshd)")
    base = tmp_path_factory.mktemp("sftp-it")
    bad_password = "wrong-" + secrets.token_hex(8)
    with (
        SshServer(base / "ssh") as server,
        SshServer(base / "victim") as victim,
        SshServer(base / "flaky") as flaky,
        socket.create_server(("127.0.0.1", 0)) as silent,  # accepts TCP, never speaks SSH
    ):
        folder = server.root_dir / SHARE
        folder.mkdir()
        (victim.root_dir / SHARE).mkdir()
        (flaky.root_dir / SHARE).mkdir()
        bad_pw = base / "bad-pw"
        bad_pw.write_text(bad_password + "\n")
        bad_pw.chmod(0o600)
        wrong_key = _write_key(base / "wrong_ed25519", asyncssh.generate_private_key("ssh-ed25519"))
        config = (
            sftp_config(server, {SHARE: folder, "gone": server.root_dir / "no-such-folder"})
            + sftp_config(server, {SHARE: folder}, name="sftp_badpw", server="sshbadpw",
                          password_file=bad_pw)
            + sftp_config(server, {SHARE: folder}, name="sftp_badkey", server="sshbadkey",
                          key_file=wrong_key)
            + sftp_config(server, {SHARE: folder}, name="sftp_none", server="sshnone",
                          port=free_port())
            + sftp_config(victim, {SHARE: victim.root_dir / SHARE}, name="sftp_kill",
                          server="sshkill")
            + sftp_config(flaky, {SHARE: flaky.root_dir / SHARE}, name="sftp_flaky",
                          server="sshflaky")
            + sftp_config(server, {SHARE: folder}, name="sftp_hang", server="sshhang",
                          port=silent.getsockname()[1], timeout=HANG_TIMEOUT_S)
        )  # fmt: skip
        # the private parts of every key the daemon holds, and the wrong password
        held = [bad_password, *_key_body(server.client_key_path), *_key_body(wrong_key)]
        held += _key_body(victim.client_key_path) + _key_body(flaky.client_key_path)
        with running_daemon(extra_config=config, log_level="debug") as daemon:
            yield Ssh(daemon, server, victim, flaky, folder, held)


@pytest.fixture
def client(ssh: Ssh) -> Iterator[Client]:
    with ssh.daemon.client(timeout=10.0) as c:
        yield c


def _status(exc: NtStatusError) -> str:
    return f"{exc.status_name}: {exc.strerror}"


def expect_status(client: Client, unc: str, expected: int, **create: int) -> None:
    """A create of ``unc`` fails with exactly ``expected``, within ANSWER_DEADLINE_S."""
    t0 = time.monotonic()
    with pytest.raises(NtStatusError) as ei:
        handle = client.create(unc, **create)
        client.close_handle(handle.fobx)
    took = time.monotonic() - t0
    assert ei.value.status == expected, _status(ei.value)
    assert took < ANSWER_DEADLINE_S, f"answered after {took:.1f} s"


# ------------------------------------------------------------------------------ data
def test_write_through_rdbss_then_sftp_get(ssh: Ssh, client: Client, tmp_path: Path) -> None:
    data = os.urandom((3 << 20) + 12345)  # several pipelined SFTP requests, an odd tail
    assert client.write_bytes(ssh.unc("w.bin"), data) == len(data)
    assert ssh.cli_get(tmp_path, "w.bin") == data
    # appending goes to the server's end of file
    with client.open(ssh.unc("w.bin"), "ab", buffering=0) as f:
        f.write(b"tail")
    assert ssh.cli_get(tmp_path, "w.bin") == data + b"tail"


def test_sftp_put_then_read_through_rdbss(ssh: Ssh, client: Client, tmp_path: Path) -> None:
    data = os.urandom((5 << 20) + 7)
    ssh.cli_put(tmp_path, data, "p.bin")
    assert client.read_bytes(ssh.unc("p.bin")) == data
    assert client.stat(ssh.unc("p.bin")).size == len(data)
    with client.open(ssh.unc("p.bin"), "rb", buffering=0) as f:
        f.seek(len(data) - 3)
        assert f.read(100) == data[-3:]
        assert f.read(100) == b""  # past the end: END_OF_FILE, which the client reads as EOF


def test_overwrite_truncates_on_the_server(ssh: Ssh, client: Client, tmp_path: Path) -> None:
    ssh.cli_put(tmp_path, b"a much longer original content", "o.txt")
    handle = client.create(
        ssh.unc("o.txt"), access=RW, disposition=CreateDisposition.FILE_OVERWRITE_IF
    )
    try:
        assert handle.info.size == 0
        client.write_handle(handle.fobx, 0, b"short")
    finally:
        client.close_handle(handle.fobx)
    assert ssh.cli_get(tmp_path, "o.txt") == b"short"


# ------------------------------------------------------------------------------ namespace
def test_directories_rename_and_delete(ssh: Ssh, client: Client, tmp_path: Path) -> None:
    client.mkdir(ssh.unc("tree", "a", "b"), parents=True)
    client.write_bytes(ssh.unc("tree", "a", "b", "one.txt"), b"one")
    client.write_bytes(ssh.unc("tree", "two.txt"), b"two")
    assert ssh.cli_ls("tree") == ["a", "two.txt"]
    assert sorted(client.listdir(ssh.unc("tree"))) == ["a", "two.txt"]
    assert client.listdir(ssh.unc("tree"), "*.TXT") == ["two.txt"]  # Windows wildcards

    # rename without replace: refused onto an existing name, fine onto a new one
    with pytest.raises(NtStatusError) as ei:
        client.rename(ssh.unc("tree", "two.txt"), ssh.unc("tree", "a", "b", "one.txt"))
    assert ei.value.status == S.STATUS_OBJECT_NAME_COLLISION, _status(ei.value)
    assert ssh.cli_get(tmp_path, "tree", "a", "b", "one.txt") == b"one"
    client.rename(ssh.unc("tree", "two.txt"), ssh.unc("tree", "a", "moved.txt"))
    assert ssh.cli_ls("tree") == ["a"]
    assert ssh.cli_get(tmp_path, "tree", "a", "moved.txt") == b"two"

    # rename with replace: the target's old content is gone
    client.rename(
        ssh.unc("tree", "a", "moved.txt"), ssh.unc("tree", "a", "b", "one.txt"), replace=True
    )
    assert ssh.cli_get(tmp_path, "tree", "a", "b", "one.txt") == b"two"
    assert ssh.cli_ls("tree", "a") == ["b"]

    # a directory renamed with a file open inside it: the handle follows
    with client.open(ssh.unc("tree", "a", "b", "one.txt"), "rb", buffering=0) as f:
        client.rename(ssh.unc("tree", "a"), ssh.unc("tree", "c"))
        assert f.stat().name.replace("/", "\\").endswith("c\\b\\one.txt")
        assert f.read() == b"two"
    assert ssh.cli_ls("tree") == ["c"]

    # delete: a non-empty folder is refused, then files and folders go
    with pytest.raises(NtStatusError) as ei:
        client.rmdir(ssh.unc("tree", "c"))
    assert ei.value.status == S.STATUS_DIRECTORY_NOT_EMPTY, _status(ei.value)
    client.remove(ssh.unc("tree", "c", "b", "one.txt"))
    client.delete(ssh.unc("tree", "c", "b"))
    client.rmdir(ssh.unc("tree", "c"))
    assert ssh.cli_ls("tree") == []
    assert not client.exists(ssh.unc("tree", "c"))


def test_missing_names_and_parents(ssh: Ssh, client: Client) -> None:
    expect_status(client, ssh.unc("nope.txt"), S.STATUS_OBJECT_NAME_NOT_FOUND)
    expect_status(client, ssh.unc("nodir", "nope.txt"), S.STATUS_OBJECT_PATH_NOT_FOUND)
    client.write_bytes(ssh.unc("plain.txt"), b"x")
    expect_status(
        client,
        ssh.unc("plain.txt"),
        S.STATUS_NOT_A_DIRECTORY,
        options=CreateOptions.FILE_DIRECTORY_FILE,
    )
    expect_status(
        client,
        ssh.unc("plain.txt"),
        S.STATUS_OBJECT_NAME_COLLISION,
        access=RW,
        disposition=CreateDisposition.FILE_CREATE,
    )


def test_symbolic_links_cannot_lead_out_of_the_share(ssh: Ssh, client: Client) -> None:
    outside = ssh.server.root_dir / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_bytes(b"not for the share")
    (ssh.folder / "out").symlink_to(outside)
    (ssh.folder / "out-file").symlink_to(outside / "secret.txt")
    (ssh.folder / "inner").mkdir()
    (ssh.folder / "inner" / "in.txt").write_bytes(b"inside")
    (ssh.folder / "in-link").symlink_to(ssh.folder / "inner")
    try:
        expect_status(client, ssh.unc("out", "secret.txt"), S.STATUS_ACCESS_DENIED)
        expect_status(client, ssh.unc("out-file"), S.STATUS_ACCESS_DENIED)
        expect_status(
            client, ssh.unc("out", "new.txt"), S.STATUS_ACCESS_DENIED, access=RW,
            disposition=CreateDisposition.FILE_CREATE,
        )  # fmt: skip
        assert not (outside / "new.txt").exists()
        # a link whose target stays inside the share may be passed through
        assert client.read_bytes(ssh.unc("in-link", "in.txt")) == b"inside"
    finally:
        for name in ("out", "out-file", "in-link"):
            (ssh.folder / name).unlink()


# ------------------------------------------------------------------------------ failures
def test_wrong_password_is_logon_failure(ssh: Ssh, client: Client) -> None:
    expect_status(client, ssh.unc("x", server="sshbadpw"), S.STATUS_LOGON_FAILURE)


def test_wrong_key_is_logon_failure(ssh: Ssh, client: Client) -> None:
    expect_status(client, ssh.unc("x", server="sshbadkey"), S.STATUS_LOGON_FAILURE)


def test_unknown_share_is_bad_network_name(ssh: Ssh, client: Client) -> None:
    expect_status(client, ssh.unc("x", share="nosuchshare"), S.STATUS_BAD_NETWORK_NAME)
    # configured, but its folder does not exist on the server
    expect_status(client, ssh.unc("x", share="gone"), S.STATUS_BAD_NETWORK_NAME)


def test_cli_ls_server_lists_its_configured_shares(ssh: Ssh) -> None:
    """``rdbss ls //server`` of an SFTP server: the shares configured for it (an SFTP server
    has no share list of its own)."""
    proc = ssh.daemon.cli("--json", "ls", "//SSHtest")
    assert proc.returncode == 0, proc.stderr.decode()
    shares = json.loads(proc.stdout)
    assert [(s["name"], s["kind"], s["minirdr"]) for s in shares] == [
        ("gone", "sftp", "sftp"),
        (SHARE, "sftp", "sftp"),
    ]


def test_nothing_listening_is_remote_not_listening(ssh: Ssh, client: Client) -> None:
    expect_status(client, ssh.unc("x", server="sshnone"), S.STATUS_REMOTE_NOT_LISTENING)


def test_server_that_never_answers_is_io_timeout(ssh: Ssh, client: Client) -> None:
    t0 = time.monotonic()
    expect_status(client, ssh.unc("x", server="sshhang"), S.STATUS_IO_TIMEOUT)
    assert time.monotonic() - t0 >= HANG_TIMEOUT_S * 0.9, "answered before its own timeout"


def test_server_killed_mid_session_answers_at_once(ssh: Ssh, client: Client) -> None:
    unc = ssh.unc("k.bin", server="sshkill")
    handle = client.create(unc, access=RW, disposition=CreateDisposition.FILE_OVERWRITE_IF)
    assert client.write_handle(handle.fobx, 0, b"0123456789") == 10
    assert client.read_handle(handle.fobx, 0, 4) == b"0123"
    ssh.victim.kill()
    time.sleep(0.5)  # the connection's transport sees it go
    # the next write on the open handle finds the connection seen lost: it never reached the
    # server, so the core sends it again, and the new connection is refused at once
    t0 = time.monotonic()
    with pytest.raises(NtStatusError) as ei:
        client.write_handle(handle.fobx, 0, b"x")
    took = time.monotonic() - t0
    assert ei.value.status == S.STATUS_REMOTE_NOT_LISTENING, _status(ei.value)
    assert took < ANSWER_DEADLINE_S, f"answered after {took:.1f} s"
    # then the core tries to re-open it on a new connection: nothing listens there any more
    for what in ("the orphaned handle", "a new open"):
        t0 = time.monotonic()
        with pytest.raises(NtStatusError) as ei:
            if what == "a new open":
                client.create(unc)
            else:
                client.write_handle(handle.fobx, 0, b"x")
        took = time.monotonic() - t0
        assert ei.value.status == S.STATUS_REMOTE_NOT_LISTENING, f"{what}: {_status(ei.value)}"
        assert took < ANSWER_DEADLINE_S, f"{what} answered after {took:.1f} s"
    client.close_handle(handle.fobx)  # never fails for the caller


def _kill_sessions(ssh: Ssh) -> None:
    """Kill sshd's per-connection processes (not the listener) and wait until they are gone."""
    assert ssh.flaky.pid is not None
    sessions = fx._tree(ssh.flaky.pid)
    assert sessions, "sshd has no session process"
    for pid in sessions:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + ANSWER_DEADLINE_S
    while any(fx._alive(pid, start) for pid, start in sessions.items()):
        assert time.monotonic() < deadline, "the session processes did not die"
        time.sleep(0.02)


def test_lost_session_is_reopened_on_a_new_connection(ssh: Ssh, client: Client) -> None:
    """sshd's session process dies but the server still listens: a read that finds the
    connection gone is sent again on a new connection, with the handle re-opened there; so is
    a write that finds it seen lost (it never reached the server)."""
    unc = ssh.unc("r.bin", server="sshflaky")
    handle = client.create(unc, access=RW, disposition=CreateDisposition.FILE_OVERWRITE_IF)
    try:
        assert client.write_handle(handle.fobx, 0, b"survives") == 8
        _kill_sessions(ssh)
        assert client.read_handle(handle.fobx, 0, 8) == b"survives"
        _kill_sessions(ssh)
        time.sleep(0.5)  # the connection's transport sees it go
        assert client.write_handle(handle.fobx, 8, b"!") == 1
        assert client.read_handle(handle.fobx, 0, 9) == b"survives!"
    finally:
        client.close_handle(handle.fobx)
    assert (ssh.flaky.root_dir / SHARE / "r.bin").read_bytes() == b"survives!"


def test_a_pending_notify_ends_when_the_connection_is_lost(ssh: Ssh, client: Client) -> None:
    """The notify poller's next listing finds the connection gone: the watch completes with
    STATUS_CONNECTION_DISCONNECTED at once, not at its deadline."""
    folder = ssh.unc("watched-lost", server="sshflaky")
    client.mkdir(folder)
    handle = client.create(
        folder, access=Access.FILE_LIST_DIRECTORY, options=CreateOptions.FILE_DIRECTORY_FILE
    )
    assert ssh.flaky.pid is not None

    def kill_sessions() -> None:
        for pid in fx._tree(ssh.flaky.pid or 0):
            os.kill(pid, signal.SIGKILL)

    killer = threading.Timer(1.0, kill_sessions)
    killer.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(NtStatusError) as ei:
            client.watch(handle.fobx, timeout=20.0)
        took = time.monotonic() - t0
        assert ei.value.status == S.STATUS_CONNECTION_DISCONNECTED, _status(ei.value)
        assert took < ANSWER_DEADLINE_S, f"the notify ended {took:.1f} s after it started"
    finally:
        killer.join(5)
        client.close_handle(handle.fobx)


def test_no_credential_in_the_daemon_log(ssh: Ssh, client: Client) -> None:
    # make sure the failures and a connection were logged at all (log level debug)
    expect_status(client, ssh.unc("x", server="sshbadpw"), S.STATUS_LOGON_FAILURE)
    expect_status(client, ssh.unc("x", server="sshbadkey"), S.STATUS_LOGON_FAILURE)
    client.write_bytes(ssh.unc("log.txt"), b"logged")
    deadline = time.monotonic() + ANSWER_DEADLINE_S
    while "connect to sshbadkey failed" not in ssh.daemon.log():
        assert time.monotonic() < deadline, "the failed connect was not logged"
        time.sleep(0.05)
    log = ssh.daemon.log()
    assert "connected to sshtest" in log
    leaked = [s for s in ssh.secrets if s in log]
    assert not leaked, f"{len(leaked)} secret(s) appear in the daemon log"


# ------------------------------------------------------------------------------ configuration
def _table(**server: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "host": "127.0.0.1",
        "username": "u",
        "key_file": "/nonexistent/key",
        "shares": {"data": "/srv/data"},
    }
    entry.update(server)
    return {"timeout": 3.0, "servers": {"SshTest": entry}}


def test_configuration_is_checked_when_the_minirdr_starts() -> None:
    minirdr = SftpMiniRdr("sftp", _table())
    try:
        assert minirdr.servers() == ["SshTest"]
        assert minirdr.settings.server("sshtest") is not None  # names are case-insensitive
        assert minirdr.settings.servers["sshtest"].port == 22
    finally:
        minirdr.close()
    bad: list[dict[str, object]] = [
        {**_table(), "colour": "blue"},
        _table(port=0),
        _table(port="22"),
        _table(shares={}),
        _table(shares={"bad:name": "/x"}),
        _table(host_key_check="no"),
        _table(key_file=[""]),
        {"servers": {"s": {"host": "h", "username": "u", "shares": {"d": "/d"}}}},  # no secret
        {"timeout": -1, "servers": {}},
    ]
    for config in bad:
        with pytest.raises(ValueError):
            SftpMiniRdr("sftp", config)


def test_secrets_stay_out_of_reprs_and_messages(tmp_path: Path) -> None:
    password = "pw-" + secrets.token_hex(8)
    settings = parse_config(_table(key_file=[], password=password))
    server = settings.servers["sshtest"]
    assert password not in repr(server) and password not in repr(settings)
    assert read_credentials(server).password == password
    pw_file = tmp_path / "pw"
    pw_file.write_text(password + "\n")
    creds = read_credentials(parse_config(_table(key_file=[], password_file=str(pw_file)))
                             .servers["sshtest"])  # fmt: skip
    assert creds.password == password and password not in repr(creds)
    with pytest.raises(NtStatusError) as ei:  # the key file is read at SrvCall creation
        read_credentials(parse_config(_table()).servers["sshtest"])
    assert ei.value.status == S.STATUS_LOGON_FAILURE
    assert "/nonexistent" not in str(ei.value)
    (tmp_path / "garbage").write_text(password)
    with pytest.raises(NtStatusError) as ei:
        read_credentials(
            parse_config(_table(key_file=str(tmp_path / "garbage"))).servers["sshtest"]
        )
    assert ei.value.status == S.STATUS_LOGON_FAILURE
    assert password not in str(ei.value)


def test_last_write_time_set_on_a_handle_sticks_until_close(ssh: Ssh, client: Client) -> None:
    """Windows semantics (MS-FSA 2.1.5.14.2): once a handle sets the last-write time, later
    writes and size changes through that handle do not move it; after the close it stays."""
    when = 1_600_000_000 * 10**9  # whole seconds: SFTP v3's precision
    unc = ssh.unc("pinned.bin")
    handle = client.create(unc, access=RW, disposition=CreateDisposition.FILE_OVERWRITE_IF)
    try:
        client.write_handle(handle.fobx, 0, b"before")
        client.set_info(
            handle.fobx, FileInformationClass.FileBasicInformation, last_write_time=when
        )
        client.write_handle(handle.fobx, 6, b" after")
        assert client.query_info(handle.fobx).last_write_time == when
        client.set_info(handle.fobx, FileInformationClass.FileEndOfFileInformation, size=4)
        assert client.query_info(handle.fobx).last_write_time == when
    finally:
        client.close_handle(handle.fobx)
    assert (ssh.folder / "pinned.bin").stat().st_mtime_ns == when
    assert (ssh.folder / "pinned.bin").read_bytes() == b"befo"
    # a new handle that does not set the time moves it again with its writes
    client.write_bytes(unc, b"fresh")
    assert (ssh.folder / "pinned.bin").stat().st_mtime_ns > when

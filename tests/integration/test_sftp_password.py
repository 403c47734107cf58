"""SFTP password authentication, for real: sshd runs with a private /etc/shadow (its own mount
namespace) holding a random root password, so the machine's accounts are never touched. The
password travels only in a 0600 file the configuration names, and appears in no log line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rdbss.wire import NtStatus, NtStatusError
from tests.conformance.backend_sftp import sftp_config
from tests.daemon import running_daemon
from tests.servers.fixtures import SshServer, require_or_skip

S = NtStatus


def password_file(path: Path, password: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return path


def test_password_login_works_and_a_wrong_one_is_logon_failure(tmp_path: Path) -> None:
    require_or_skip(
        [
            *SshServer.missing_binaries(),
            *([] if Path("/usr/bin/unshare").exists() else ["unshare"]),
        ],
        "OpenSSH (sshd), unshare",
    )
    with SshServer(tmp_path / "ssh", root_password=True) as srv:
        assert srv.password is not None
        folder = srv.root_dir / "pw"
        folder.mkdir()
        good = password_file(tmp_path / "good", srv.password)
        bad = password_file(tmp_path / "bad", srv.password + "x")
        config = sftp_config(srv, {"data": folder}, password_file=good) + sftp_config(
            srv, {"data": folder}, name="sftpbad", server="sshbad", password_file=bad
        )
        with running_daemon(config) as d, d.client() as c:
            c.write_bytes(r"\\sshtest\data\hello.txt", b"over a password login")
            assert (folder / "hello.txt").read_bytes() == b"over a password login"
            with pytest.raises(NtStatusError) as info:
                c.stat(r"\\sshbad\data")
            assert info.value.status == S.STATUS_LOGON_FAILURE
            log = d.log()
        assert srv.password not in log

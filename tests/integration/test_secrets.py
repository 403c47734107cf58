"""Credentials never appear on a command line (what ps shows) of any daemon process, the copy
of the configuration the children read is private (0600) in a private runtime directory
(0700), and a run's log does not contain them."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import pytest

from rdbss.wire import NtStatus, NtStatusError
from tests.daemon import running_daemon


def cmdlines_of_group(pgid: int) -> list[str]:
    lines = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ProcessLookupError):
            continue
    return lines


def test_passwords_stay_out_of_ps_and_logs_and_files_are_private() -> None:
    password = "pw-" + secrets.token_hex(12)
    config = f"""
[[minirdr]]
name = "smb"
kind = "smb"
[minirdr.servers.nowhere]
host = "127.0.0.1"
port = 9
username = "alice"
password = "{password}"
"""
    with running_daemon(config) as d, d.client(timeout=10) as c:
        # the smb mini-redirector reads the password, then finds nothing listening on port 9
        with pytest.raises(NtStatusError) as info:
            c.stat(r"\\nowhere\share")
        assert info.value.status == NtStatus.STATUS_REMOTE_NOT_LISTENING
        lines = cmdlines_of_group(d.pid)
        assert len(lines) >= 4  # supervisor, core, connection manager, mini-redirectors
        assert all(password not in line for line in lines)
        assert stat.S_IMODE(d.runtime_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE((d.runtime_dir / "config.json").stat().st_mode) == 0o600
        log = d.log()
    assert "nowhere" in log  # the failed connection was logged...
    assert password not in log  # ...without its password

"""An expired or deleted SMB session (STATUS_USER_SESSION_DELETED) reaches the client, and the
next request goes on over a new session with the handle re-opened. Samba cannot be asked to
expire a session on demand, so the status is injected by a ``faulty`` mini-redirector wrapping
the real smb one: everything after the injection is the real path against a real Samba."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdbss.wire import Access, CreateDisposition, NtStatus, NtStatusError
from tests.conformance.backend_smb import write_password_file
from tests.daemon import running_daemon
from tests.servers.fixtures import SambaServer

S = NtStatus


def test_a_deleted_session_is_reported_then_rebuilt(tmp_path: Path) -> None:
    with SambaServer(tmp_path / "smb") as server:
        password = write_password_file(tmp_path / "pw", server.password)
        config = f"""
[[minirdr]]
name = "smbf"
kind = "faulty"
wraps = "smb"
[minirdr.options]
timeout = 5.0
[minirdr.options.servers.sambatest]
host = "{server.host}"
port = {server.port}
username = "{server.user}"
password_file = "{password}"
"""
        with running_daemon(config) as d, d.client() as c:
            unc = r"\\sambatest\share\session.bin"
            h = c.create(
                unc,
                access=Access.GENERIC_READ | Access.GENERIC_WRITE,
                disposition=CreateDisposition.FILE_OVERWRITE_IF,
            )
            c.write_handle(h.fobx, 0, b"survives")
            c.set_faults(
                "smbf",
                [
                    {
                        "routine": "MRxLowIOSubmit",
                        "lowio_op": "READ",
                        "action": "status",
                        "status": "STATUS_USER_SESSION_DELETED",
                        "count": 1,
                    }
                ],
            )
            with pytest.raises(NtStatusError) as info:
                c.read_handle(h.fobx, 0, 8)
            assert info.value.status == S.STATUS_USER_SESSION_DELETED
            # the core dropped the connection; this read builds a new session and re-opens
            assert c.read_handle(h.fobx, 0, 8) == b"survives"
            c.close_handle(h.fobx)
            log = d.log()
    assert "connection lost server=sambatest" in log and "re-opened handle" in log
    assert (server.share_path / "session.bin").read_bytes() == b"survives"

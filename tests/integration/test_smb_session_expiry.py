"""An expired or deleted SMB session (STATUS_USER_SESSION_DELETED): a read is sent again over a
new session with the handle re-opened; a write is not (it may have reached the server), the
client gets the status, and the next request goes on over a new session. Samba cannot be asked to
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
            fault = {
                "routine": "MRxLowIOSubmit",
                "lowio_op": "READ",
                "action": "status",
                "status": "STATUS_USER_SESSION_DELETED",
                "count": 1,
            }
            c.set_faults("smbf", [fault])
            # the core drops the connection and sends the read again over a new session
            assert c.read_handle(h.fobx, 0, 8) == b"survives"
            c.set_faults("smbf", [{**fault, "lowio_op": "WRITE"}])
            with pytest.raises(NtStatusError) as info:
                c.write_handle(h.fobx, 8, b"?")
            assert info.value.status == S.STATUS_USER_SESSION_DELETED
            # the core dropped the connection; this read builds a new session and re-opens
            assert c.read_handle(h.fobx, 0, 8) == b"survives"
            c.close_handle(h.fobx)
            log = d.log()
    assert log.count("connection lost server=sambatest") >= 2
    assert "re-opened handle" in log and "again (STATUS_USER_SESSION_DELETED" in log
    assert (server.share_path / "session.bin").read_bytes() == b"survives"

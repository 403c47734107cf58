"""A pending SMB2 CHANGE_NOTIFY when the server goes away: the notify completes with a network
status at once (smbprotocol wakes its waiters as its connection dies), not at its deadline."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rdbss.wire import Access, CreateOptions, NtStatus, NtStatusError
from rdbss.wire.status import NETWORK_ERRORS
from tests.conformance.backend_smb import smb_config, write_password_file
from tests.daemon import running_daemon
from tests.servers.fixtures import SambaServer, require_or_skip

S = NtStatus
ANSWER_DEADLINE_S = 8.0


def test_a_pending_notify_ends_when_the_server_dies(tmp_path: Path) -> None:
    require_or_skip(SambaServer.missing_binaries(), "Samba (smbd)")
    with SambaServer(tmp_path / "smb") as srv:
        config = smb_config(srv, write_password_file(tmp_path / "pw", srv.password))
        with running_daemon(extra_config=config) as daemon, daemon.client() as client:
            folder = rf"\\sambatest\{srv.share_name}\watched"
            client.mkdir(folder)
            handle = client.create(
                folder,
                access=Access.FILE_LIST_DIRECTORY,
                options=CreateOptions.FILE_DIRECTORY_FILE,
            )
            killer = threading.Timer(1.0, srv.kill)
            killer.start()
            try:
                t0 = time.monotonic()
                with pytest.raises(NtStatusError) as ei:
                    client.watch(handle.fobx, timeout=20.0)
                took = time.monotonic() - t0
            finally:
                killer.join(5)
            assert ei.value.status in NETWORK_ERRORS, ei.value
            assert took < ANSWER_DEADLINE_S, f"the notify ended {took:.1f} s after it started"
            client.close_handle(handle.fobx)

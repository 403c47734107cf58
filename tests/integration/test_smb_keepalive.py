"""SMB keepalive: an idle connection to a server that stops answering is found dead by the
keepalive echo, so the next request does not wait out its deadline on it: it goes over a new
connection at once."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from rdbss.wire import Access, CreateDisposition
from tests.conformance.backend_smb import smb_config, write_password_file
from tests.daemon import running_daemon
from tests.servers.fixtures import SambaServer


def test_keepalive_finds_a_frozen_server_before_the_next_request(tmp_path: Path) -> None:
    with SambaServer(tmp_path / "smb") as server:
        password = write_password_file(tmp_path / "pw", server.password)
        config = smb_config(server, password, timeout=3.0).replace(
            "timeout = 3.0", "timeout = 3.0\nkeepalive_interval = 0.5"
        )
        assert server.pid is not None
        with running_daemon(config) as d, d.client(timeout=10) as c:
            unc = r"\\sambatest\share\ka.bin"
            h = c.create(
                unc,
                access=Access.GENERIC_READ | Access.GENERIC_WRITE,
                disposition=CreateDisposition.FILE_OVERWRITE_IF,
            )
            c.write_handle(h.fobx, 0, b"alive")
            os.killpg(server.pid, signal.SIGSTOP)  # smbd and its per-client children
            try:
                # idle: within keepalive_interval + timeout the echo has failed
                deadline = time.monotonic() + 15
                while "keepalive to sambatest failed" not in d.log():
                    assert time.monotonic() < deadline, "the keepalive never noticed"
                    time.sleep(0.2)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, signal.SIGCONT)
            # the server answers again, but the link was dropped: the read finds it dead at
            # once (not after 3 s) and is sent again on a new connection, the handle re-opened
            started = time.monotonic()
            assert c.read_handle(h.fobx, 0, 5) == b"alive"
            took = time.monotonic() - started
            c.close_handle(h.fobx)
            log = d.log()
        assert took < 3.0  # not waiting out the old link: a new connection at once
        assert "connection lost server=sambatest" in log and "re-opened handle" in log

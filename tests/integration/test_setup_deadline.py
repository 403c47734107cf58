"""``[daemon] connect_timeout`` is the deadline of a connection set-up, for every network
mini-redirector: against a server that accepts TCP and never answers, the first request on a
share ends with STATUS_IO_TIMEOUT within connect_timeout (+0.5 s), naming the server and the
phase; and a set-up slower than the deadline (a real Samba behind a slow link) leaves no
connection behind, while the next request, once the link is fast again, connects."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rdbss.client import Client
from rdbss.faultproxy import FaultProxy
from rdbss.wire import NtStatus, NtStatusError
from tests.conformance.backend_smb import write_password_file
from tests.daemon import Daemon, running_daemon
from tests.servers.fixtures import SambaServer, require_or_skip, silent_server

S = NtStatus
CONNECT_TIMEOUT_S = 2.0
SLACK_S = 0.5  # what the deadline may be passed by, end to end


def _config(port: int, password_file: Path) -> str:
    """One server of each network kind, all on the silent port."""
    return f"""
[[minirdr]]
name = "smb"
kind = "smb"
timeout = 30.0
[minirdr.servers.smbsilent]
host = "127.0.0.1"
port = {port}
username = "root"
password_file = "{password_file}"

[[minirdr]]
name = "sftp"
kind = "sftp"
timeout = 30.0
[minirdr.servers.sshsilent]
host = "127.0.0.1"
port = {port}
username = "root"
password_file = "{password_file}"
host_key_check = false
[minirdr.servers.sshsilent.shares]
data = "/tmp"

[[minirdr]]
name = "webdav"
kind = "webdav"
timeout = 30.0
[minirdr.servers.davsilent]
url = "http://127.0.0.1:{port}/"
username = "davuser"
password_file = "{password_file}"
"""


@pytest.fixture(scope="module")
def silent_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    base = tmp_path_factory.mktemp("setup-deadline")
    password = write_password_file(base / "pw", "not-used")
    with (
        silent_server() as port,
        running_daemon(_config(port, password), connect_timeout=CONNECT_TIMEOUT_S) as daemon,
    ):
        yield daemon


@pytest.mark.parametrize("server", ["smbsilent", "sshsilent", "davsilent"])
def test_a_silent_server_ends_at_connect_timeout(silent_daemon: Daemon, server: str) -> None:
    with silent_daemon.client(timeout=20.0) as client:
        start = time.monotonic()
        with pytest.raises(NtStatusError) as ei:
            client.stat(rf"\\{server}\data")
        took = time.monotonic() - start
    assert ei.value.status == S.STATUS_IO_TIMEOUT, ei.value
    assert CONNECT_TIMEOUT_S - 0.1 <= took <= CONNECT_TIMEOUT_S + SLACK_S, (took, ei.value)
    message = ei.value.strerror or ""
    assert server in message and "negotiate" in message, message


def test_a_setup_past_its_deadline_leaves_no_connection(tmp_path: Path) -> None:
    """Samba behind a link with 0.5 s each way: negotiate and session set-up take 3 round trips,
    longer than connect_timeout. The request ends at the deadline, the connection the
    mini-redirector had opened is closed, and the next request over a fast link connects."""
    require_or_skip(SambaServer.missing_binaries(), "Samba (smbd)")
    with SambaServer(tmp_path / "smb") as samba:
        proxy = FaultProxy(samba.host, samba.port, seed=1).start()
        try:
            proxy.set(latency_ms=500)
            password = write_password_file(tmp_path / "pw", samba.password)
            config = f"""
[[minirdr]]
name = "smb"
kind = "smb"
timeout = 30.0
[minirdr.servers.slowsmb]
host = "{proxy.host}"
port = {proxy.port}
username = "{samba.user}"
password_file = "{password}"
"""
            with (
                running_daemon(config, connect_timeout=CONNECT_TIMEOUT_S) as daemon,
                daemon.client(timeout=20.0) as client,
            ):
                unc = rf"\\slowsmb\{samba.share_name}"
                start = time.monotonic()
                with pytest.raises(NtStatusError) as ei:
                    client.stat(unc)
                took = time.monotonic() - start
                assert ei.value.status == S.STATUS_IO_TIMEOUT, ei.value
                assert took <= CONNECT_TIMEOUT_S + SLACK_S, took
                assert "slowsmb" in (ei.value.strerror or "")
                _wait_no_connection(proxy)
                proxy.set(latency_ms=0)
                _stat_when_retry_allowed(client, unc)
        finally:
            proxy.stop()


def _wait_no_connection(proxy: FaultProxy) -> None:
    deadline = time.monotonic() + 3.0
    while proxy.stats()["active"]:
        assert time.monotonic() < deadline, f"a connection was left behind: {proxy.stats()}"
        time.sleep(0.05)


def _stat_when_retry_allowed(client: Client, unc: str) -> None:
    """The failed set-up is remembered for a short back-off; then the share connects."""
    deadline = time.monotonic() + 10.0
    while True:
        try:
            client.stat(unc)
            return
        except NtStatusError as exc:
            assert exc.status == S.STATUS_IO_TIMEOUT, exc
            assert time.monotonic() < deadline, "the share never connected over the fast link"
            time.sleep(0.2)

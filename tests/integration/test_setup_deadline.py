"""``[daemon] connect_timeout`` is the deadline of a connection set-up, for every network
mini-redirector: against a server that accepts TCP and never answers, the first request on a
share ends with STATUS_IO_TIMEOUT within connect_timeout (+0.5 s), naming the server and the
phase; and a set-up slower than the deadline (a real server behind a slow link) leaves no
connection behind, while the next request, once the link is fast again, connects."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rdbss.client import Client
from rdbss.faultproxy import FaultProxy
from rdbss.wire import NtStatus, NtStatusError
from tests.conformance.backend_smb import write_password_file
from tests.daemon import Daemon, running_daemon
from tests.servers.fixtures import (
    SambaServer,
    SshServer,
    WebDavServer,
    require_or_skip,
    silent_server,
)

S = NtStatus
CONNECT_TIMEOUT_S = 2.0
SLACK_S = 0.5  # what the deadline may be passed by, end to end
SHARE = "slow"


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A loopback port whose TCP connects never complete: a listener with a backlog of one,
    filled by one connection nobody accepts, so the kernel drops every further SYN (as a host
    behind a firewall that drops packets)."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as listener:
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5.0):
            yield port


def _config(port: int, hole: int, password_file: Path) -> str:
    """One server of each network kind on the silent port (``...silent``), one on the port whose
    connects never complete (``...hole``), and one reaching a real server through a fault proxy
    (``...slow``): placeholders for the slow ones' tables."""
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
[minirdr.servers.smbhole]
host = "127.0.0.1"
port = {hole}
username = "root"
password_file = "{password_file}"
{{smb}}
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
[minirdr.servers.sshhole]
host = "127.0.0.1"
port = {hole}
username = "root"
password_file = "{password_file}"
host_key_check = false
[minirdr.servers.sshhole.shares]
data = "/tmp"
{{sftp}}
[[minirdr]]
name = "webdav"
kind = "webdav"
timeout = 30.0
[minirdr.servers.davsilent]
url = "http://127.0.0.1:{port}/"
username = "davuser"
password_file = "{password_file}"
[minirdr.servers.davhole]
url = "http://127.0.0.1:{hole}/"
username = "davuser"
password_file = "{password_file}"
{{webdav}}"""


@dataclass
class Links:
    daemon: Daemon
    proxies: dict[str, FaultProxy]  # kind -> the proxy before its real server


@pytest.fixture(scope="module")
def links(
    tmp_path_factory: pytest.TempPathFactory, ssh_server: SshServer, webdav_server: WebDavServer
) -> Iterator[Links]:
    require_or_skip(SambaServer.missing_binaries(), "Samba (smbd)")
    base = tmp_path_factory.mktemp("setup-deadline")
    unused = write_password_file(base / "pw", "not-used")
    with (
        SambaServer(base / "smb", share_name=SHARE) as samba,
        silent_server() as port,
        unanswered_port() as hole,
        contextlib.ExitStack() as stack,
    ):
        proxies: dict[str, FaultProxy] = {}
        for kind, target in (("smb", samba), ("sftp", ssh_server), ("webdav", webdav_server)):
            proxies[kind] = FaultProxy(target.host, target.port, seed=1).start()
            stack.callback(proxies[kind].stop)
        (ssh_server.root_dir / SHARE).mkdir(exist_ok=True)
        (webdav_server.root_dir / SHARE).mkdir(exist_ok=True)
        smb, sftp, dav = proxies["smb"], proxies["sftp"], proxies["webdav"]
        samba_pw = write_password_file(base / "samba-pw", samba.password)
        dav_pw = write_password_file(base / "dav-pw", webdav_server.password)
        tables = {
            "smb": f'''[minirdr.servers.smbslow]
host = "{smb.host}"
port = {smb.port}
username = "{samba.user}"
password_file = "{samba_pw}"
''',
            "sftp": f'''[minirdr.servers.sshslow]
host = "{sftp.host}"
port = {sftp.port}
username = "{ssh_server.user}"
key_file = "{ssh_server.client_key_path}"
host_key_check = false
[minirdr.servers.sshslow.shares]
{SHARE} = "{ssh_server.root_dir / SHARE}"
''',
            "webdav": f'''[minirdr.servers.davslow]
url = "http://{dav.host}:{dav.port}/"
username = "{webdav_server.user}"
password_file = "{dav_pw}"
''',
        }
        config = _config(port, hole, unused).format(**tables)
        with running_daemon(config, connect_timeout=CONNECT_TIMEOUT_S) as daemon:
            yield Links(daemon, proxies)


@pytest.mark.parametrize(
    ("server", "phase"),
    [
        ("smbsilent", "negotiate"),
        ("sshsilent", "negotiate"),
        ("davsilent", "negotiate"),
        ("smbhole", "TCP connect"),
        ("sshhole", "TCP connect"),
        ("davhole", "TCP connect"),
    ],
)
def test_a_silent_server_ends_at_connect_timeout(links: Links, server: str, phase: str) -> None:
    """``...silent`` accepts TCP and never answers; ``...hole`` never completes a TCP connect."""
    with links.daemon.client(timeout=20.0) as client:
        start = time.monotonic()
        with pytest.raises(NtStatusError) as ei:
            client.stat(rf"\\{server}\data")
        took = time.monotonic() - start
    assert ei.value.status == S.STATUS_IO_TIMEOUT, ei.value
    assert CONNECT_TIMEOUT_S - 0.1 <= took <= CONNECT_TIMEOUT_S + SLACK_S, (took, ei.value)
    message = ei.value.strerror or ""
    assert server in message and phase in message, message


@pytest.mark.parametrize(
    ("kind", "server"), [("smb", "smbslow"), ("sftp", "sshslow"), ("webdav", "davslow")]
)
def test_a_setup_past_its_deadline_leaves_no_connection(
    links: Links, kind: str, server: str
) -> None:
    """A real server behind a link with 0.5 s each way: its set-up (negotiate, key exchange,
    authentication: several round trips) takes longer than connect_timeout. The request ends
    at the deadline, the connection the mini-redirector had opened is closed, and the next
    request over a fast link connects."""
    proxy = links.proxies[kind]
    unc = rf"\\{server}\{SHARE}"
    proxy.set(latency_ms=500)
    try:
        with links.daemon.client(timeout=20.0) as client:
            start = time.monotonic()
            with pytest.raises(NtStatusError) as ei:
                client.stat(unc)
            took = time.monotonic() - start
            assert ei.value.status == S.STATUS_IO_TIMEOUT, ei.value
            assert took <= CONNECT_TIMEOUT_S + SLACK_S, (took, ei.value)
            assert server in (ei.value.strerror or "")
            _wait_no_connection(proxy)
            proxy.set(latency_ms=0)
            _stat_when_retry_allowed(client, unc)
    finally:
        proxy.set(latency_ms=0)


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

"""Conformance backend: the SFTP mini-redirector against a private OpenSSH sshd.

The server logs ``root`` in with the fixture's client key; the share is the scratch folder
``conformance`` of the server's ``root_dir``, reached as ``\\\\sshtest\\conformance``. The host key
is checked against the fixture's known_hosts file. ``read_back`` and ``write_direct`` use the
server's folder on this machine directly, independent of rdbss.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.conformance.backend import BackendSetup
from tests.servers.fixtures import SshServer, require_or_skip

SERVER = "sshtest"
SHARE = "conformance"


def sftp_config(
    srv: SshServer,
    shares: dict[str, Path | str],
    *,
    name: str = "sftp",
    server: str = SERVER,
    timeout: float = 5.0,
    key_file: Path | None = None,
    password_file: Path | None = None,
    port: int | None = None,
) -> str:
    """A ``[[minirdr]]`` table for the sftp mini-redirector reaching ``srv`` as ``server``."""
    credentials = f'key_file = "{key_file or srv.client_key_path}"\n'
    if password_file is not None:
        credentials = f'password_file = "{password_file}"\n'
    share_lines = "".join(f'{share} = "{folder}"\n' for share, folder in shares.items())
    return f"""
[[minirdr]]
name = "{name}"
kind = "sftp"
timeout = {timeout}
[minirdr.servers.{server}]
host = "{srv.host}"
port = {port if port is not None else srv.port}
username = "{srv.user}"
{credentials}known_hosts = "{srv.known_hosts_path}"
[minirdr.servers.{server}.shares]
{share_lines}"""


@contextlib.contextmanager
def backend(base: Path) -> Iterator[BackendSetup]:
    require_or_skip(SshServer.missing_binaries(), "OpenSSH (sshd)")
    with SshServer(base / "ssh") as srv:
        folder = srv.root_dir / SHARE
        folder.mkdir()

        def host(rel: str) -> Path:
            return folder.joinpath(*rel.split("\\"))

        def write_direct(rel: str, data: bytes) -> None:
            host(rel).write_bytes(data)

        yield BackendSetup(
            minirdr="sftp",
            config=sftp_config(srv, {SHARE: folder}),
            root=rf"\\{SERVER}\{SHARE}",
            read_back=lambda rel: host(rel).read_bytes(),
            write_direct=write_direct,
            host_path=host,
        )

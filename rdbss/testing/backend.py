"""How the conformance suite reaches a backend: a :class:`BackendSetup`.

``config`` is appended to the test daemon's TOML configuration (one or more ``[[minirdr]]``
tables; empty when the daemon is already configured). ``root`` is the UNC name of the empty
scratch folder every test works under. ``read_back`` reads a path relative to ``root``
(backslashes) with a client independent of rdbss, so the suite can check bytes on the server;
``write_direct`` writes one the same way. ``minirdr`` names the mini-redirector under test.
``host_path`` (when the server keeps its files on this machine) names where a path relative to
``root`` lives on disk, so a test can change or inspect it behind the server's back (owner and
mode, changes made directly in the folder); tests that need it skip without it.

:func:`folder_setup` builds one for a server that keeps ``root`` in a folder of this machine.
The ``*_config`` helpers write the ``[[minirdr]]`` table that reaches one of the loopback test
servers of :mod:`rdbss.testing.servers`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rdbss.testing.servers import SambaServer, SshServer, WebDavServer

#: The server names the test configurations give the loopback servers.
SMB_SERVER = "sambatest"
SFTP_SERVER = "sshtest"
WEBDAV_SERVER = "davtest"


@dataclass
class BackendSetup:
    minirdr: str
    config: str
    root: str
    read_back: Callable[[str], bytes]
    write_direct: Callable[[str, bytes], None]
    host_path: Callable[[str], Path] | None = None


def folder_setup(minirdr: str, config: str, root: str, folder: Path) -> BackendSetup:
    """A backend whose scratch root ``root`` is the folder ``folder`` of this machine: the suite
    reads, writes and inspects it there, behind the server's back."""

    def host(rel: str) -> Path:
        return folder.joinpath(*rel.split("\\"))

    def read_back(rel: str) -> bytes:
        return host(rel).read_bytes()

    def write_direct(rel: str, data: bytes) -> None:
        host(rel).write_bytes(data)

    return BackendSetup(
        minirdr=minirdr,
        config=config,
        root=root,
        read_back=read_back,
        write_direct=write_direct,
        host_path=host,
    )


def write_password_file(path: Path, password: str) -> Path:
    """The password in a file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return path


def minirdr_options(config: str) -> dict[str, Any]:
    """The options of the one ``[[minirdr]]`` table of ``config`` (what ``smb_config``,
    ``sftp_config``... return), for a mini-redirector made in the test's own process."""
    table: dict[str, Any] = tomllib.loads(config)["minirdr"][0]
    return {key: value for key, value in table.items() if key not in ("name", "kind")}


def smb_config(
    srv: SambaServer,
    password_file: Path,
    *,
    name: str = "smb",
    server: str = SMB_SERVER,
    timeout: float = 5.0,
    port: int | None = None,
) -> str:
    """A ``[[minirdr]]`` table for the smb mini-redirector reaching ``srv`` as ``server``."""
    return f"""
[[minirdr]]
name = "{name}"
kind = "smb"
timeout = {timeout}
[minirdr.servers.{server}]
host = "{srv.host}"
port = {port if port is not None else srv.port}
username = "{srv.user}"
password_file = "{password_file}"
"""


def sftp_config(
    srv: SshServer,
    shares: dict[str, Path | str],
    *,
    name: str = "sftp",
    server: str = SFTP_SERVER,
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


def webdav_config(
    srv: WebDavServer,
    password_file: Path,
    *,
    name: str = "webdav",
    server: str = WEBDAV_SERVER,
    timeout: float = 5.0,
) -> str:
    """A ``[[minirdr]]`` table for the webdav mini-redirector reaching ``srv`` as ``server``."""
    return f"""
[[minirdr]]
name = "{name}"
kind = "webdav"
timeout = {timeout}
[minirdr.servers.{server}]
url = "{srv.url}"
username = "{srv.user}"
password_file = "{password_file}"
"""


def through_daemon_setup(minirdr: str, root: str, runtime_dir: Path) -> BackendSetup:
    """A backend with no host folder: ``read_back`` and ``write_direct`` go through a client of
    the same daemon (so they check what rdbss reads back, not what the server holds), and the
    tests that inspect the server's folder skip."""
    from rdbss.client import Client

    def unc(rel: str) -> str:
        return "\\".join([root.rstrip("\\"), rel])

    def read_back(rel: str) -> bytes:
        with Client(runtime_dir) as client:
            return client.read_bytes(unc(rel))

    def write_direct(rel: str, data: bytes) -> None:
        with Client(runtime_dir) as client:
            client.write_bytes(unc(rel), data)

    return BackendSetup(
        minirdr=minirdr, config="", root=root, read_back=read_back, write_direct=write_direct
    )


def unc_root(text: str) -> str:
    """A UNC name as the client takes it, from either spelling (``//srv/share/dir`` or
    ``\\\\srv\\share\\dir``), without a trailing separator."""
    name = text.replace("/", "\\").rstrip("\\")
    if not name.startswith("\\\\") or len(name.split("\\")) < 4:
        raise ValueError(f"{text!r} is not a UNC name //server/share[/folder...]")
    return name


def faulty_config(folder: Path, rules: str = "", seed: int = 1) -> str:
    """A ``[[minirdr]]`` table for the ``faulty`` mini-redirector ``flaky`` wrapping a local one
    that serves ``folder`` as ``\\\\flaky\\data``; ``rules`` are its ``[[minirdr.rules]]`` tables
    (the faults it injects)."""
    return f"""
[[minirdr]]
name = "flaky"
kind = "faulty"
wraps = "local"
seed = {seed}
[minirdr.options]
server = "flaky"
[minirdr.options.shares]
data = "{folder}"
{rules}"""

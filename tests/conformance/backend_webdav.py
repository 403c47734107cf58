"""Conformance backend: the WebDAV mini-redirector against a private wsgidav server.

The server serves ``root_dir``; the share is the scratch folder ``conformance`` in it, reached as
``\\\\davtest\\conformance``. The password reaches the daemon through a 0600 file. ``read_back``
and ``write_direct`` use the server's folder on this machine directly, independent of rdbss.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from tests.conformance.backend import BackendSetup
from tests.servers.fixtures import WebDavServer, require_or_skip

SERVER = "davtest"
SHARE = "conformance"


def write_password_file(path: Path, password: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return path


def webdav_config(
    srv: WebDavServer,
    password_file: Path,
    *,
    name: str = "webdav",
    server: str = SERVER,
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


@contextlib.contextmanager
def backend(base: Path) -> Iterator[BackendSetup]:
    require_or_skip(WebDavServer.missing_binaries(), "wsgidav")
    with WebDavServer(base / "dav") as srv:
        folder = srv.root_dir / SHARE
        folder.mkdir()
        password_file = write_password_file(base / "dav-password", srv.password)

        def host(rel: str) -> Path:
            return folder.joinpath(*rel.split("\\"))

        def write_direct(rel: str, data: bytes) -> None:
            host(rel).write_bytes(data)

        yield BackendSetup(
            minirdr="webdav",
            config=webdav_config(srv, password_file),
            root=rf"\\{SERVER}\{SHARE}",
            read_back=lambda rel: host(rel).read_bytes(),
            write_direct=write_direct,
            host_path=host,
        )

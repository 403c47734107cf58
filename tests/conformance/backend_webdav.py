"""Conformance backend: the WebDAV mini-redirector against a private wsgidav server.

The server serves ``root_dir``; the share is the scratch folder ``conformance`` in it, reached as
``\\\\davtest\\conformance``. The password reaches the daemon through a 0600 file. ``read_back``
and ``write_direct`` use the server's folder on this machine directly, independent of rdbss.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from rdbss.testing.backend import (
    WEBDAV_SERVER,
    BackendSetup,
    folder_setup,
    webdav_config,
    write_password_file,
)
from rdbss.testing.servers import WebDavServer, require_or_skip

__all__ = ["SERVER", "SHARE", "backend", "webdav_config", "write_password_file"]

SERVER = WEBDAV_SERVER
SHARE = "conformance"


@contextlib.contextmanager
def backend(base: Path) -> Iterator[BackendSetup]:
    require_or_skip(WebDavServer.missing_binaries(), "wsgidav")
    with WebDavServer(base / "dav") as srv:
        folder = srv.root_dir / SHARE
        folder.mkdir()
        password_file = write_password_file(base / "dav-password", srv.password)
        config = webdav_config(srv, password_file)
        yield folder_setup("webdav", config, rf"\\{SERVER}\{SHARE}", folder)

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

from rdbss.testing.backend import SFTP_SERVER, BackendSetup, folder_setup, sftp_config
from rdbss.testing.servers import SshServer, require_or_skip

__all__ = ["SERVER", "SHARE", "backend", "sftp_config"]

SERVER = SFTP_SERVER
SHARE = "conformance"


@contextlib.contextmanager
def backend(base: Path) -> Iterator[BackendSetup]:
    require_or_skip(SshServer.missing_binaries(), "OpenSSH (sshd)")
    with SshServer(base / "ssh") as srv:
        folder = srv.root_dir / SHARE
        folder.mkdir()
        config = sftp_config(srv, {SHARE: folder})
        yield folder_setup("sftp", config, rf"\\{SERVER}\{SHARE}", folder)

"""Conformance backend: the SMB mini-redirector against a private Samba smbd.

The server (rdbss.testing.servers ``SambaServer``) serves ``share``; the daemon reaches it as
``\\\\sambatest\\share`` with the password in a 0600 file, and every test works under the scratch
folder ``conformance`` of that share. ``read_back`` and ``write_direct`` go through a separate
smbprotocol session (its own connection cache), independent of rdbss.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import smbclient

from rdbss.testing.backend import SMB_SERVER, BackendSetup, smb_config, write_password_file
from rdbss.testing.servers import SambaServer, require_or_skip

__all__ = ["SCRATCH", "SERVER", "DirectSmb", "backend", "smb_config", "write_password_file"]

SERVER = SMB_SERVER
SCRATCH = "conformance"


class DirectSmb:
    """An smbprotocol session of its own on ``srv``: the independent reader and writer."""

    def __init__(self, srv: SambaServer) -> None:
        self.srv = srv
        self.cache: dict[str, Any] = {}
        smbclient.register_session(
            srv.host,
            username=srv.user,
            password=srv.password,
            port=srv.port,
            connection_cache=self.cache,
            connection_timeout=30,
        )
        self.kw: dict[str, Any] = {"port": srv.port, "connection_cache": self.cache}

    def unc(self, rel: str) -> str:
        return rf"{self.srv.unc_root}\{rel}" if rel else self.srv.unc_root

    def read(self, rel: str) -> bytes:
        with smbclient.open_file(self.unc(rel), mode="rb", share_access="rwd", **self.kw) as f:
            data: bytes = f.read()
            return data

    def write(self, rel: str, data: bytes) -> None:
        with smbclient.open_file(self.unc(rel), mode="wb", share_access="rwd", **self.kw) as f:
            f.write(data)

    def mkdir(self, rel: str) -> None:
        smbclient.mkdir(self.unc(rel), **self.kw)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the server may be gone already
            smbclient.reset_connection_cache(connection_cache=self.cache)


@contextlib.contextmanager
def backend(base: Path) -> Iterator[BackendSetup]:
    require_or_skip(SambaServer.missing_binaries(), "Samba (smbd)")
    with SambaServer(base / "smb") as srv:
        password_file = write_password_file(base / "smb-password", srv.password)
        direct = DirectSmb(srv)
        try:
            direct.mkdir(SCRATCH)
            yield BackendSetup(
                minirdr="smb",
                config=smb_config(srv, password_file),
                root=rf"\\{SERVER}\{srv.share_name}\{SCRATCH}",
                read_back=lambda rel: direct.read(rf"{SCRATCH}\{rel}"),
                write_direct=lambda rel, data: direct.write(rf"{SCRATCH}\{rel}", data),
                host_path=lambda rel: srv.share_path.joinpath(SCRATCH, *rel.split("\\")),
            )
        finally:
            direct.close()

"""Sequential throughput of the SMB mini-redirector against smbprotocol used directly, measured
in the same run against the same private Samba smbd: a whole-file write and a whole-file read in
1 MiB chunks (rdbss: ``Client.write_handle`` / ``Client.readinto`` on one handle; direct:
``smbclient.open_file`` unbuffered, one SMB2 WRITE / READ per chunk, its own connection). Both
sides sign every message (SMB 3.1.1, AES-GMAC). Every transfer is checked byte for byte. Not a
test.

    python -m benchmarks.proto_smb [SIZE_MIB]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import smbclient

from benchmarks.common import REPEATS, alternating, render
from rdbss.testing.backend import smb_config, write_password_file
from rdbss.testing.daemon import running_daemon
from rdbss.testing.servers import SambaServer
from rdbss.wire import Access, CreateDisposition, CreateOptions

CHUNK = 1 << 20


def run(size_mib: int = 64) -> list[tuple[str, float, float]]:
    """Rows of (operation, rdbss MiB/s, smbprotocol-direct MiB/s)."""
    data = os.urandom(size_mib << 20)
    view = memoryview(data)
    with tempfile.TemporaryDirectory(prefix="rdbss-bench-smb-") as tmp:
        base = Path(tmp)
        with SambaServer(base / "smb") as srv:
            password_file = write_password_file(base / "pw", srv.password)
            config = smb_config(srv, password_file, timeout=60.0)
            cache: dict[str, Any] = {}
            smbclient.register_session(
                srv.host,
                username=srv.user,
                password=srv.password,
                port=srv.port,
                connection_cache=cache,
            )
            kw: dict[str, Any] = {"port": srv.port, "connection_cache": cache}
            try:
                with (
                    running_daemon(extra_config=config) as daemon,
                    daemon.client(timeout=60.0) as client,
                ):
                    unc = r"\\sambatest\share"

                    def rdbss_write(i: int) -> None:
                        h = client.create(
                            rf"{unc}\rdbss-{i}.bin",
                            access=Access.GENERIC_WRITE,
                            disposition=CreateDisposition.FILE_OVERWRITE_IF,
                            options=CreateOptions.FILE_NON_DIRECTORY_FILE,
                        )
                        try:
                            for offset in range(0, len(data), CHUNK):
                                chunk = view[offset : offset + CHUNK]
                                assert client.write_handle(h.fobx, offset, chunk) == len(chunk)
                        finally:
                            client.close_handle(h.fobx)

                    def direct_write(i: int) -> None:
                        path = rf"{srv.unc_root}\direct-{i}.bin"
                        with smbclient.open_file(path, mode="wb", buffering=0, **kw) as f:
                            for offset in range(0, len(data), CHUNK):
                                chunk = view[offset : offset + CHUNK]
                                done = 0
                                while done < len(chunk):
                                    done += f.write(chunk[done:])

                    def rdbss_read(i: int) -> None:
                        h = client.create(rf"{unc}\rdbss-{i}.bin", access=Access.GENERIC_READ)
                        try:
                            parts = []
                            offset = 0
                            buffer = bytearray(CHUNK)  # large reads: shared memory, this host
                            while count := client.readinto(h.fobx, offset, buffer):
                                parts.append(bytes(buffer[:count]))
                                offset += count
                        finally:
                            client.close_handle(h.fobx)
                        assert b"".join(parts) == data

                    def direct_read(i: int) -> None:
                        path = rf"{srv.unc_root}\direct-{i}.bin"
                        with smbclient.open_file(path, mode="rb", buffering=0, **kw) as f:
                            parts = []
                            while part := f.read(CHUNK):
                                parts.append(part)
                        assert b"".join(parts) == data

                    # warmed up, each side in turn (as proto_sftp and proto_webdav)
                    write_rdbss, write_direct = alternating(rdbss_write, direct_write, REPEATS)
                    for i in range(REPEATS):
                        for name in (f"rdbss-{i}.bin", f"direct-{i}.bin"):
                            assert (srv.share_path / name).read_bytes() == data
                    read_rdbss, read_direct = alternating(rdbss_read, direct_read, 0)
            finally:
                smbclient.reset_connection_cache(connection_cache=cache)
    return [
        ("sequential write", size_mib / write_rdbss, size_mib / write_direct),
        ("sequential read", size_mib / read_rdbss, size_mib / read_direct),
    ]


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    print(f"smb (Samba smbd on loopback, signed SMB 3.1.1), {size} MiB, 1 MiB chunks, median of 3")
    print(render(run(size)))

"""Sequential throughput of the WebDAV mini-redirector against httpx used directly, measured in
the same run against the same private wsgidav server: a whole-file write (rdbss: 4 MiB writes
into the staging file, one PUT at close; direct: one PUT) and a whole-file read (rdbss: 4 MiB
reads, a ranged GET for the first and one streamed GET for the rest; direct: one streamed GET).
Every transfer is checked byte for byte. Not a test.

    python -m benchmarks.proto_webdav [SIZE_MIB]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import httpx

from benchmarks.common import REPEATS, median_seconds, render
from tests.conformance.backend_webdav import webdav_config, write_password_file
from tests.daemon import running_daemon
from tests.servers.fixtures import WebDavServer

SHARE = "bench"


def run(size_mib: int = 64) -> list[tuple[str, float, float]]:
    """Rows of (operation, rdbss MiB/s, httpx-direct MiB/s)."""
    data = os.urandom(size_mib << 20)
    with tempfile.TemporaryDirectory(prefix="rdbss-bench-dav-") as tmp:
        base = Path(tmp)
        with WebDavServer(base / "dav") as srv:
            (srv.root_dir / SHARE).mkdir()
            password_file = write_password_file(base / "pw", srv.password)
            config = webdav_config(srv, password_file, timeout=120.0)
            auth = httpx.DigestAuth(srv.user, srv.password)
            with (
                running_daemon(extra_config=config) as daemon,
                daemon.client(timeout=120.0) as client,
                httpx.Client(base_url=srv.url, auth=auth, timeout=120.0) as http,
            ):
                unc = rf"\\davtest\{SHARE}"

                def rdbss_write(i: int) -> None:
                    assert client.write_bytes(rf"{unc}\rdbss-{i}.bin", data) == len(data)

                def direct_write(i: int) -> None:
                    response = http.put(f"/{SHARE}/direct-{i}.bin", content=data)
                    assert response.status_code in (200, 201, 204), response.status_code

                def rdbss_read(i: int) -> None:
                    assert client.read_bytes(rf"{unc}\rdbss-{i}.bin") == data

                def direct_read(i: int) -> None:
                    with http.stream("GET", f"/{SHARE}/direct-{i}.bin") as response:
                        got = b"".join(response.iter_bytes(1 << 20))
                    assert got == data

                write_rdbss = median_seconds(rdbss_write)
                write_direct = median_seconds(direct_write)
                for i in range(REPEATS):
                    assert (srv.root_dir / SHARE / f"rdbss-{i}.bin").read_bytes() == data
                read_rdbss = median_seconds(rdbss_read)
                read_direct = median_seconds(direct_read)
    return [
        ("sequential write", size_mib / write_rdbss, size_mib / write_direct),
        ("sequential read", size_mib / read_rdbss, size_mib / read_direct),
    ]


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    print(f"webdav (wsgidav on loopback), {size} MiB, median of {REPEATS}")
    print(render(run(size), "httpx"))

"""Sequential throughput of the WebDAV mini-redirector against httpx used directly, measured in
the same run against the same private wsgidav server: a whole-file write (rdbss: 4 MiB writes
staged and streamed as one chunked PUT that ends at the close; direct: one PUT) and a whole-file
read (rdbss: 4 MiB reads, a ranged GET for the first and one streamed GET for the rest; direct:
one streamed GET). Both sides are warmed up first (the Digest challenge is cached, so no body
is sent twice) and alternate, one transfer each in turn, so a change in the machine's load hits
both alike. Every transfer is checked byte for byte. Not a test.

    python -m benchmarks.proto_webdav [SIZE_MIB]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

from benchmarks.common import REPEATS, render, timed
from rdbss.testing.backend import webdav_config, write_password_file
from rdbss.testing.daemon import running_daemon
from rdbss.testing.servers import WebDavServer

SHARE = "bench"


def run(size_mib: int = 64) -> list[tuple[str, float, float]]:
    """Rows of (operation, rdbss MiB/s, httpx-direct MiB/s)."""
    data = os.urandom(size_mib << 20)
    times: dict[str, list[float]] = {k: [] for k in ("rw", "dw", "rr", "dr")}
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

                client.write_bytes(rf"{unc}\warm-up.bin", b"connect first")
                assert http.put(f"/{SHARE}/warm-up.bin", content=b"x").status_code < 300
                for i in range(REPEATS):
                    timed(times["rw"], rdbss_write, i)
                    timed(times["dw"], direct_write, i)
                    assert (srv.root_dir / SHARE / f"rdbss-{i}.bin").read_bytes() == data
                for i in range(REPEATS):
                    timed(times["rr"], rdbss_read, i)
                    timed(times["dr"], direct_read, i)
    med = {k: statistics.median(v) for k, v in times.items()}
    return [
        ("sequential write", size_mib / med["rw"], size_mib / med["dw"]),
        ("sequential read", size_mib / med["rr"], size_mib / med["dr"]),
    ]


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    print(f"webdav (wsgidav on loopback), {size} MiB, median of {REPEATS}")
    print(render(run(size), "httpx"))

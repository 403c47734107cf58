"""Sequential reading through the blocking client's file objects (``Client.open``), with and
without read-ahead, against reading the same file directly with ``open()`` in the same run.
Through the sockets (shared memory off: with it, reads of 256 KiB and more take that path, see
``sequential.py``), and with shared memory for the buffered case.
Rows of (operation, rdbss MiB/s, direct MiB/s). Not a test."""

from __future__ import annotations

import os

from benchmarks.common import median_seconds
from rdbss.client import Client
from rdbss.testing.daemon import running_daemon


def run(size_mib: int = 64) -> list[tuple[str, float, float]]:
    size = size_mib << 20
    rows = []
    with running_daemon() as d:
        path = d.share_dir / "seq.bin"
        path.write_bytes(os.urandom(size))
        unc = d.share + r"\seq.bin"
        with Client(d.runtime_dir, timeout=60, shared_memory=False) as c:
            for block, buffering in ((1 << 20, -1), (64 << 10, 0)):

                def direct(_: int, block: int = block) -> None:
                    with open(path, "rb", buffering=0) as f:
                        while f.read(block):
                            pass

                base = size / median_seconds(direct) / (1 << 20)
                kind = "buffered" if buffering else "unbuffered"
                for read_ahead in (0, 4):

                    def through(
                        _: int, block: int = block, ra: int = read_ahead, buf: int = buffering
                    ) -> None:
                        with c.open(unc, "rb", buffering=buf, read_ahead=ra) as f:
                            while f.read(block):
                                pass

                    mine = size / median_seconds(through) / (1 << 20)
                    label = f"read {block >> 10} KiB {kind}, ahead {read_ahead}"
                    rows.append((label, mine, base))
        with Client(d.runtime_dir, timeout=60) as c:  # shared memory (the default here)

            def shared(_: int) -> None:
                with c.open(unc, "rb") as f:
                    while f.read(1 << 20):
                        pass

            def direct_mib(_: int) -> None:
                with open(path, "rb", buffering=0) as f:
                    while f.read(1 << 20):
                        pass

            base = size / median_seconds(direct_mib) / (1 << 20)
            mine = size / median_seconds(shared) / (1 << 20)
            rows.append(("read 1024 KiB buffered, shared memory", mine, base))
    return rows

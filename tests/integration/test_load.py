"""Load one ordinary client can make must not take the daemon down for the others: many
change-notify waits on a large folder, and a client that never reads its answers."""

from __future__ import annotations

import asyncio
import os
import threading
import time

from rdbss import requests as rq
from rdbss.aio import AsyncClient
from rdbss.wire import Access, CreateOptions, NtStatusError
from tests.daemon import Daemon, UnreadingClient, rss_bytes, running_daemon

NAMES = 0x1 | 0x2  # FILE_NOTIFY_CHANGE_FILE_NAME | DIR_NAME
DIR = {"access": Access.FILE_LIST_DIRECTORY, "options": CreateOptions.FILE_DIRECTORY_FILE}


def test_200_waits_on_a_2000_entry_folder_leave_other_clients_alone(daemon: Daemon) -> None:
    big = daemon.share_dir / "big"
    big.mkdir()
    for i in range(2000):
        (big / f"entry-{i:04}").write_bytes(b"")
    (daemon.share_dir / "small.txt").write_bytes(b"0123456789")
    minirdr_pid = daemon.child_pid("local")
    errors: list[BaseException] = []
    reads = 0
    stop = threading.Event()

    def other_client() -> None:
        nonlocal reads
        with daemon.client(timeout=5.0) as c:
            while not stop.is_set():
                try:
                    assert c.read_bytes(daemon.share + r"\small.txt") == b"0123456789"
                    reads += 1
                except (NtStatusError, OSError, AssertionError) as exc:
                    errors.append(exc)
                time.sleep(0.005)

    async def waits() -> list[object]:
        async with AsyncClient(daemon.runtime_dir, timeout=60.0) as c:
            handles = [await c.create(daemon.share + r"\big", **DIR) for _ in range(200)]
            pending = [
                asyncio.ensure_future(c.run(rq.notify(h.fobx, NAMES, 60_000))) for h in handles
            ]
            await asyncio.sleep(3.0)  # the waits are pending while the other client reads
            assert not any(p.done() for p in pending), [p.result() for p in pending if p.done()]
            (big / "new-entry").write_bytes(b"")
            done = await asyncio.wait_for(asyncio.gather(*pending), 20.0)
            for h in handles:
                await c.close_handle(h.fobx)
            return list(done)

    reader = threading.Thread(target=other_client)
    reader.start()
    try:
        answers = asyncio.run(waits())
    finally:
        stop.set()
        reader.join(10.0)
    assert not errors, errors[:5]
    assert reads > 50, reads
    assert daemon.child_pid("local") == minirdr_pid, "the mini-redirector was restarted"
    assert len(answers) == 200
    assert all("new-entry" in str(a) for a in answers), answers[:3]


def test_a_client_that_never_reads_its_answers_keeps_core_memory_bounded() -> None:
    """2,000 reads of 128 KiB sent and never read: the core holds about the configured limit
    (max_client_unread_mib), refuses the rest with STATUS_QUOTA_EXCEEDED, and another client
    keeps working meanwhile."""
    with running_daemon(daemon_extra="max_client_unread_mib = 16") as d:
        (d.share_dir / "big.bin").write_bytes(os.urandom(128 << 10))
        (d.share_dir / "small.txt").write_bytes(b"0123456789")
        core = d.processes()["core"]
        with d.client(timeout=5.0) as other:
            for _ in range(20):  # warm up the paths measured
                other.read_bytes(d.share + r"\small.txt")
            idle = rss_bytes(core)
            flooder = UnreadingClient(d.runtime_dir)
            try:
                fobx = flooder.open(d.share + r"\big.bin")
                flooder.flood(fobx, 2000, 128 << 10)
                deadline = time.monotonic() + 8.0
                peak = 0
                while time.monotonic() < deadline:
                    assert other.read_bytes(d.share + r"\small.txt") == b"0123456789"
                    peak = max(peak, rss_bytes(core))
                    time.sleep(0.02)
                with other.open(d.share + r"\big.bin", "rb") as f:
                    assert len(f.read()) == 128 << 10
            finally:
                flooder.close()
        grown = (peak - idle) / (1 << 20)
        # the limit, the answers already running (a window of 32) and ZeroMQ's buffers; the
        # unbounded core grew by the whole 250 MiB
        assert grown < 16 + 32 * 0.125 + 40, f"the core grew by {grown:.0f} MiB"

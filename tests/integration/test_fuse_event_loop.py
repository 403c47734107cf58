"""The mount's daemon requests of reading awaited on its event loop (rdbss.fuse_kernel): a
reader's open, a folder's listing and the stat of an unknown name go to a real daemon as one
compound each, sent on a client of the pool and awaited on trio, with no worker thread; while
another request of the pool is in flight they run in a thread as before. The pyfuse3
operations are called directly (no kernel mount), the worker threads and the pool's sent
messages counted."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("pyfuse3")
import pyfuse3
import trio

from rdbss.fuse_kernel import ROOT, InodeTable, KernelCache, KernelOps
from rdbss.fuse_ops import PathOps
from tests.daemon import Daemon, running_daemon

FILES = 5
BIG = os.urandom(100 << 10)  # more than a small file's open reads, less than its first read


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with running_daemon() as running:
        folder = running.share_dir / "loop"
        folder.mkdir()
        for i in range(FILES):
            (folder / f"f{i}").write_bytes(b"%d" % i * 1000)
        (folder / "big").write_bytes(BIG)
        yield running


def _kernel_ops(daemon: Daemon) -> KernelOps:
    ops = PathOps(daemon.share, runtime_dir=daemon.runtime_dir, attr_timeout=30.0)
    kernel = KernelCache(
        InodeTable(),
        attr_timeout=30.0,
        entry_timeout=30.0,
        inval_inode=lambda ino: None,
        inval_entry=lambda parent, name: None,
    )
    return KernelOps(ops, kernel, threads=4)


class ThreadCount:
    """Counts the calls that go to a worker thread (``trio.to_thread.run_sync``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        real = trio.to_thread.run_sync

        async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls.append(getattr(func, "func", func).__name__)
            return await real(func, *args, **kwargs)

        monkeypatch.setattr(trio.to_thread, "run_sync", counted)


async def _read_whole(kops: KernelOps, name: bytes) -> bytes:
    entry = await kops.lookup(await _folder(kops), name)
    info = await kops.open(entry.st_ino, os.O_RDONLY, None)
    data = await kops.read(info.fh, 0, 128 << 10)
    await kops.flush(info.fh)
    await kops.release(info.fh)
    return data


async def _folder(kops: KernelOps) -> int:
    return int((await kops.lookup(ROOT, b"loop")).st_ino)


def test_small_reads_and_a_listing_need_no_worker_thread(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the pool has a client and the folder's listing is known, each small file's
    lookup, open, read, flush and release run on the event loop, and its open is one daemon
    request; a listing done on the loop feeds the cache as one done in a thread does."""
    kops = _kernel_ops(daemon)
    try:
        kops.ops.list("/")  # in this thread: the pool's first client is made
        threads = ThreadCount(monkeypatch)

        async def main() -> tuple[dict[str, Any] | None, list[bytes], int]:
            listed = await kops._list_here("/loop")
            before = kops.ops.pool.requests_sent()
            data = [await _read_whole(kops, b"f%d" % i) for i in range(FILES)]
            return listed, data, kops.ops.pool.requests_sent() - before

        listed, data, requests = trio.run(main)
        assert listed is not None and sorted(listed) == ["big", *(f"f{i}" for i in range(FILES))]
        assert data == [b"%d" % i * 1000 for i in range(FILES)]
        assert threads.calls == []
        assert requests == FILES  # one compound per open, nothing for the rest
    finally:
        kops.ops.destroy()


def test_a_larger_file_is_opened_with_its_first_read_on_the_event_loop(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader's open of a file too large to be read whole is its open and first read in one
    compound from the event loop; the reads that first read covers ask nothing, and only the
    release (the daemon handle's close) takes a worker thread."""
    kops = _kernel_ops(daemon)
    try:
        kops.ops.list("/")
        kops.ops.list("/loop")
        threads = ThreadCount(monkeypatch)

        async def main() -> tuple[bytes, int]:
            entry = await kops.lookup(await _folder(kops), b"big")
            before = kops.ops.pool.requests_sent()
            info = await kops.open(entry.st_ino, os.O_RDONLY, None)
            opening = kops.ops.pool.requests_sent() - before
            data = await kops.read(info.fh, 0, len(BIG))
            await kops.flush(info.fh)
            await kops.release(info.fh)
            return data, opening

        data, requests = trio.run(main)
        assert data == BIG
        assert threads.calls == ["release"]
        assert requests == 1  # the open with its first read
    finally:
        kops.ops.destroy()


def test_lookups_of_unknown_names_need_no_worker_thread(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lookups the cache cannot answer go to the daemon from the event loop: the first name
    of a folder as a stat, the next one as a listing of the folder (which then answers the
    rest, names that are not there too), as they would in a thread."""
    kops = _kernel_ops(daemon)
    try:
        kops.ops.list("/")
        threads = ThreadCount(monkeypatch)

        async def main() -> tuple[list[int], int, int]:
            folder = await _folder(kops)
            before = kops.ops.pool.requests_sent()
            sizes = [(await kops.lookup(folder, b"f%d" % i)).st_size for i in range(FILES)]
            with pytest.raises(pyfuse3.FUSEError) as missing:
                await kops.lookup(folder, b"absent")
            return sizes, missing.value.errno, kops.ops.pool.requests_sent() - before

        sizes, code, requests = trio.run(main)
        assert sizes == [len(b"%d" % i * 1000) for i in range(FILES)]
        assert code == errno.ENOENT
        assert threads.calls == []
        assert requests == 2  # a stat of the first name, then the folder's listing
    finally:
        kops.ops.destroy()


def test_with_a_request_in_flight_the_open_runs_in_a_thread(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader's open while another request of the pool is in flight (its only client is
    busy) goes to a worker thread, as parallel programs' requests do, and reads the file all
    the same."""
    kops = _kernel_ops(daemon)
    try:
        kops.ops.list("/")
        kops.ops.list("/loop")
        threads = ThreadCount(monkeypatch)

        async def main() -> bytes:
            with kops.ops.pool.lease():  # the only client made so far is busy
                return await _read_whole(kops, b"f1")

        assert trio.run(main) == b"1" * 1000
        assert threads.calls == ["open"]
    finally:
        kops.ops.destroy()

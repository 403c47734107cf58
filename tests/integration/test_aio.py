"""The asyncio client against a real daemon: many requests in flight, the same results and
errors as the blocking client, deadlines."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

import pytest
import zmq

from rdbss.aio import AsyncClient
from rdbss.wire import NtStatus, NtStatusError
from tests.daemon import Daemon

S = NtStatus


def test_many_reads_in_flight_return_the_right_bytes(daemon: Daemon) -> None:
    data = os.urandom(256 * 4096)
    (daemon.share_dir / "aio.bin").write_bytes(data)

    async def main() -> list[bytes]:
        async with AsyncClient(daemon.runtime_dir, timeout=10) as c:
            h = await c.create(daemon.share + r"\aio.bin")
            blocks = await asyncio.gather(
                *(c.read_handle(h.fobx, i * 4096, 4096) for i in reversed(range(256)))
            )
            await c.close_handle(h.fobx)
            return blocks

    blocks = asyncio.run(main())
    assert b"".join(reversed(blocks)) == data


def test_whole_files_and_listing(daemon: Daemon) -> None:
    data = os.urandom(3 * (1 << 20) + 5)

    async def main() -> tuple[bytes, list[str], int]:
        async with AsyncClient(daemon.runtime_dir) as c:
            assert await c.ping()
            n = await c.write_bytes(daemon.share + r"\aio-big.bin", data)
            back = await c.read_bytes(daemon.share + r"\aio-big.bin")
            names = await c.listdir(daemon.share, "aio-*")
            size = (await c.stat(daemon.share + r"\aio-big.bin")).size
            assert n == len(data)
            return back, names, size

    back, names, size = asyncio.run(main())
    assert back == data and size == len(data) and "aio-big.bin" in names
    assert (daemon.share_dir / "aio-big.bin").read_bytes() == data


def test_errors_are_the_same_exceptions(daemon: Daemon) -> None:
    async def main() -> None:
        async with AsyncClient(daemon.runtime_dir) as c:
            with pytest.raises(FileNotFoundError) as info:
                await c.stat(daemon.share + r"\nope")
            assert isinstance(info.value, NtStatusError)
            assert info.value.status == S.STATUS_OBJECT_NAME_NOT_FOUND
            results = await asyncio.gather(
                c.stat(daemon.share), c.stat(daemon.share + r"\nope"), return_exceptions=True
            )
            assert not isinstance(results[0], BaseException)
            assert isinstance(results[1], FileNotFoundError)

    asyncio.run(main())


def test_requests_after_close_fail_clearly(daemon: Daemon) -> None:
    async def main() -> None:
        c = AsyncClient(daemon.runtime_dir)
        await c.close()
        with pytest.raises(NtStatusError) as info:
            await c.ping()
        assert info.value.status == S.STATUS_INVALID_HANDLE

    asyncio.run(main())


def test_security_of_an_open_handle(daemon: Daemon) -> None:
    path = daemon.share_dir / "secure.txt"
    path.write_bytes(b"x")
    os.chmod(path, 0o640)

    async def main() -> tuple[dict, dict]:
        async with AsyncClient(daemon.runtime_dir, timeout=10) as c:
            h = await c.create(daemon.share + r"\secure.txt", access=0x00060080)
            try:
                await c.set_security(h.fobx, 0x4, {"mode": 0o600})
                after = await c.query_security(h.fobx)
                owner_only = await c.query_security(h.fobx, 0x1)
            finally:
                await c.close_handle(h.fobx)
            return after, owner_only

    after, owner_only = asyncio.run(main())
    assert after["mode"] & 0o7777 == 0o600 and path.stat().st_mode & 0o7777 == 0o600
    assert after["owner"] == f"S-1-22-1-{os.getuid()}" and set(owner_only) >= {"owner"}
    assert "dacl" not in owner_only


def test_requests_of_one_turn_travel_together_and_are_answered_each_on_its_own(
    daemon: Daemon,
) -> None:
    """What tasks ask in one turn of the event loop leaves as RequestBundles: a bad item fails
    alone, writes carry their data, and a request cancelled before its turn ends never runs."""
    (daemon.share_dir / "bundle.bin").write_bytes(b"0123456789" * 300)

    async def main() -> None:
        async with AsyncClient(daemon.runtime_dir, timeout=10) as c:
            h = await c.create(daemon.share + r"\bundle.bin", access=0x12019F | 0x2)  # read, write
            outcomes = await asyncio.gather(
                *(c.read_handle(h.fobx, 10 * i, 10) for i in range(300)),
                c.read_handle(999_999, 0, 10),  # no such handle: only this one fails
                c.write_handle(h.fobx, 0, b"ABCDEFGHIJ"),
                return_exceptions=True,
            )
            reads, bad, wrote = outcomes[:300], outcomes[300], outcomes[301]
            assert all(r == (b"0123456789" if i else r) for i, r in enumerate(reads))
            assert reads[0] in (b"0123456789", b"ABCDEFGHIJ")  # the write may come first
            assert isinstance(bad, NtStatusError) and bad.status == S.STATUS_INVALID_HANDLE
            assert wrote == 10
            # cancelled in the same turn it was asked: never sent, so never run
            task = asyncio.ensure_future(c.write_handle(h.fobx, 0, b"XXXXXXXXXX"))
            await asyncio.sleep(0)  # the task runs up to its await: queued, not yet sent
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await c.read_handle(h.fobx, 0, 10) == b"ABCDEFGHIJ"
            await c.close_handle(h.fobx)

    asyncio.run(main())


def test_the_clients_own_deadlines_end_waits_for_a_daemon_that_never_answers(
    tmp_path: Path,
) -> None:
    """A daemon that takes requests and never answers (frozen): each request gives up at its
    own deadline (plus the client's grace) with STATUS_IO_TIMEOUT, a short one asked after a
    long one first, and closing the client ends the rest."""
    lock = os.open(tmp_path / "daemon.lock", os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # what a live daemon holds
    (tmp_path / "daemon.pid").write_text(str(os.getpid()))
    zctx = zmq.Context()
    silent = zctx.socket(zmq.ROUTER)
    silent.bind(f"ipc://{tmp_path / 'rdbss.sock'}")

    async def main() -> None:
        c = AsyncClient(tmp_path, timeout=30, shared_memory=False)
        long = asyncio.ensure_future(c.read_handle(1, 0, 10))
        await asyncio.sleep(0.05)
        c.timeout = 0.2
        with pytest.raises(NtStatusError) as info:
            await asyncio.wait_for(c.read_handle(1, 0, 10), 20)
        assert info.value.status == NtStatus.STATUS_IO_TIMEOUT
        assert "no answer from the daemon in 2.2 s" in str(info.value)
        assert not long.done()  # its deadline is its own
        await c.close()
        with pytest.raises(NtStatusError) as info:
            await long
        assert info.value.status == NtStatus.STATUS_CANCELLED
        assert c._timer is None

    try:
        asyncio.run(main())
        assert silent.poll(1000)  # the requests did reach the "daemon"
    finally:
        silent.close(0)
        zctx.term()
        os.close(lock)

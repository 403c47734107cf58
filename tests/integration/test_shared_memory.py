"""The shared-memory data path through a real daemon: large reads land in the client's arena
(mapped by the mini-redirector process), the bytes are right, short reads at the end of the
file are counted, and a bad hint is refused without harm."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rdbss import requests as rq
from rdbss import shm
from rdbss.aio import AsyncClient
from rdbss.wire import IrpMj, LowIoParameters, NtStatus, NtStatusError, RxContext
from tests.daemon import Daemon, running_daemon
from tests.reliability.test_faulty import failing_reads, faulty_config

pytestmark = pytest.mark.skipif(not shm.available(), reason="no writable /dev/shm")
SIZE = 10 * (1 << 20) + 123  # not a multiple of a slot: the last piece is short


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with running_daemon() as d:
        (d.share_dir / "big.bin").write_bytes(os.urandom(SIZE))
        yield d


def _mapped_by(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_a_large_read_goes_through_the_clients_arena(daemon: Daemon) -> None:
    want = (daemon.share_dir / "big.bin").read_bytes()
    minirdr = daemon.child_pid("local")
    with daemon.client() as c, c.open(daemon.share + r"\big.bin", "rb") as f:
        buffer = bytearray(16 << 20)
        n = f.readinto(buffer)
        assert n == SIZE and buffer[:n] == want
        arena = c._arena
        assert arena is not None and arena.name in _mapped_by(minirdr)
        assert f.readinto(buffer) == 0  # at the end
    assert not arena.path.exists()  # closed with the client


def test_the_async_client_reads_pieces_in_flight_through_shared_memory(daemon: Daemon) -> None:
    want = (daemon.share_dir / "big.bin").read_bytes()

    async def main() -> tuple[int, bytes, str]:
        async with AsyncClient(daemon.runtime_dir) as c:
            h = await c.create(daemon.share + r"\big.bin")
            out = bytearray(SIZE + 4096)
            n = await c.readinto(h.fobx, 0, out)
            assert c._arena is not None
            name = c._arena.name
            middle = bytearray(1 << 20)
            assert await c.readinto(h.fobx, 3 << 20, middle) == 1 << 20
            assert middle == want[3 << 20 : 4 << 20]
            await c.close_handle(h.fobx)
            return n, bytes(out[:n]), name

    n, data, name = asyncio.run(main())
    assert n == SIZE and data == want
    assert name in _mapped_by(daemon.child_pid("local"))


def test_without_shared_memory_the_same_bytes_come_through_the_sockets(daemon: Daemon) -> None:
    want = (daemon.share_dir / "big.bin").read_bytes()

    async def main() -> bytes:
        async with AsyncClient(daemon.runtime_dir, shared_memory=False) as c:
            h = await c.create(daemon.share + r"\big.bin")
            out = bytearray(SIZE)
            assert await c.readinto(h.fobx, 0, out) == SIZE
            assert c._arena is None
            await c.close_handle(h.fobx)
            return bytes(out)

    assert asyncio.run(main()) == want


def test_a_hint_naming_no_arena_is_refused_and_the_daemon_goes_on(daemon: Daemon) -> None:
    with daemon.client() as c:
        h = c.create(daemon.share + r"\big.bin")
        for args in (
            {"shm": "rdbss-1-ffffffffffffffff", "shm_off": 0},
            {"shm": "../../../etc/shadow", "shm_off": 0},
        ):
            ctx = RxContext(
                0,
                IrpMj.READ,
                fobx=h.fobx,
                lowio=LowIoParameters(offset=0, length=1 << 20),
                args=args,
                timeout_ms=5000,
            )
            with pytest.raises(NtStatusError) as info:
                c.call(ctx)
            assert info.value.status == NtStatus.STATUS_INVALID_PARAMETER
        assert len(c.run(rq.read(h.fobx, 0, 10, 5000))) == 10
        c.close_handle(h.fobx)


def test_shared_memory_reads_stay_right_with_the_cores_read_cache() -> None:
    """With caching = "exclusive" the core widens reads to whole cache blocks and keeps the
    bytes itself: a shared-memory read then comes back in the answer (never written past the
    client's slot) and the bytes are right, served from the cache the second time."""
    with running_daemon(local_extra='caching = "exclusive"') as d:
        want = os.urandom(SIZE)
        (d.share_dir / "cached.bin").write_bytes(want)
        with d.client() as c:
            h = c.create(d.share + r"\cached.bin")
            for _ in range(2):
                buffer = bytearray(512 << 10)  # widened to blocks (<= 1 MiB): cached
                assert c.readinto(h.fobx, 12345, buffer) == len(buffer)
                assert buffer == want[12345 : 12345 + len(buffer)]
            assert c.status()["buffering"]["cache_hits"] > 0
            c.close_handle(h.fobx)


def test_zero_copy_views_show_the_slot_the_minirdr_filled(daemon: Daemon) -> None:
    want = (daemon.share_dir / "big.bin").read_bytes()

    async def main() -> None:
        async with AsyncClient(daemon.runtime_dir) as c:
            h = await c.create(daemon.share + r"\big.bin")
            async with c.read_view(h.fobx, 1 << 20, 2 << 20) as view:
                assert c._arena is not None
                slot_bytes = c._arena.slot_bytes
                # the view is of the arena itself, not a copy of it
                assert view.obj is not None and len(view) == 2 << 20
                assert bytes(view) == want[1 << 20 : 3 << 20]
            async with c.read_view(h.fobx, SIZE - 100, 4096) as tail:
                assert bytes(tail) == want[-100:]  # short at the end of the file
            async with c.read_view(h.fobx, 0, slot_bytes + 1) as big:  # over a slot: sockets
                assert bytes(big) == want[: slot_bytes + 1]
            assert c._slots is not None and c._slots.qsize() == c._arena.slots  # all returned
            await c.close_handle(h.fobx)

    asyncio.run(main())


def test_whole_file_reads_fill_one_buffer_through_shared_memory(daemon: Daemon) -> None:
    want = (daemon.share_dir / "big.bin").read_bytes()
    with daemon.client() as c:
        assert c.read_bytes(daemon.share + r"\big.bin") == want
        assert c._arena is not None  # it went through the arena
        with c.open(daemon.share + r"\big.bin", "rb", buffering=0) as f:
            f.seek(SIZE - 1000)
            assert f.readall() == want[-1000:]  # small: through the sockets


@pytest.mark.parametrize("change", [+(1 << 20) + 7, -(3 << 20)])
def test_a_whole_file_read_sees_the_file_grown_or_shrunk_since_the_open(
    daemon: Daemon, change: int
) -> None:
    path = daemon.share_dir / f"changing{change}.bin"
    path.write_bytes(os.urandom(SIZE))
    with (
        daemon.client() as c,
        c.open(daemon.share + rf"\changing{change}.bin", "rb", buffering=0) as f,
    ):
        if change > 0:
            with path.open("ab") as grow:
                grow.write(os.urandom(change))
        else:
            os.truncate(path, SIZE + change)
        got = f.readall()
        assert type(got) is bytes
        assert got == path.read_bytes() and len(got) == SIZE + change
        assert f.readall() == b""


def test_a_failed_piece_of_a_large_read_retires_the_slots_still_in_flight(tmp_path: Path) -> None:
    """A large read keeps two slot-sized reads in flight; when one fails, the other may still
    be filling its slot on the daemon, so the arena goes (its file too) rather than being
    filled again, and the next large read gets a new one and the right bytes."""
    folder = tmp_path / "flaky"
    folder.mkdir()
    payload = os.urandom(3 * shm.SLOT_BYTES)
    (folder / "f.bin").write_bytes(payload)
    rules = failing_reads(every=3, count=1)
    with running_daemon(faulty_config(folder, rules)) as d, d.client() as c:
        h = c.create(r"\\flaky\data\f.bin")
        first = bytearray(shm.SLOT_BYTES)
        assert c.readinto(h.fobx, 0, first) == len(first)  # the 1st read: makes the arena
        arena = c._arena
        assert arena is not None and arena.path.exists()
        buffer = bytearray(len(payload))
        with pytest.raises(NtStatusError) as failed:  # the 3rd read fails, the 4th is in flight
            c.readinto(h.fobx, 0, buffer)
        assert failed.value.status == NtStatus.STATUS_DEVICE_NOT_READY
        assert c._arena is None and not arena.path.exists()
        assert not c._outstanding
        assert c.readinto(h.fobx, 0, buffer) == len(payload) and buffer == payload
        assert c._arena is not None and c._arena is not arena
        c.close_handle(h.fobx)

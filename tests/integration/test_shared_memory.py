"""The shared-memory data path through a real daemon: large reads land in the client's arena
(mapped by the mini-redirector process) and large writes take their bytes from it, the bytes
are right, short reads at the end of the file are counted, writes the core keeps are copied
out, and a bad hint is refused without harm."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rdbss import requests as rq
from rdbss import shm
from rdbss.aio import AsyncClient
from rdbss.client import Client
from rdbss.wire import (
    Access,
    CreateDisposition,
    IrpMj,
    LowIoParameters,
    NtStatus,
    NtStatusError,
    RxContext,
)
from tests.daemon import Daemon, running_daemon
from tests.reliability.test_faulty import failing_reads, faulty_config

pytestmark = pytest.mark.skipif(not shm.available(), reason="no writable /dev/shm")
SIZE = 10 * (1 << 20) + 123  # not a multiple of a slot: the last piece is short
OVERWRITE_IF = CreateDisposition.FILE_OVERWRITE_IF


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
            assert c._slots is not None
            name = c._slots.arena.name
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
            assert c._slots is None
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
                assert c._slots is not None
                slot_bytes = c._slots.arena.slot_bytes
                # the view is of the arena itself, not a copy of it
                assert view.obj is not None and len(view) == 2 << 20
                assert bytes(view) == want[1 << 20 : 3 << 20]
            async with c.read_view(h.fobx, SIZE - 100, 4096) as tail:
                assert bytes(tail) == want[-100:]  # short at the end of the file
            async with c.read_view(h.fobx, 0, slot_bytes + 1) as big:  # over a slot: sockets
                assert bytes(big) == want[: slot_bytes + 1]
            assert c._slots.idle == c._slots.arena.slots  # all returned
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


# ------------------------------------------------------------------------------ writes
def _create_for_write(c: Client, unc: str) -> int:
    return c.create(
        unc, access=Access.GENERIC_READ | Access.GENERIC_WRITE, disposition=OVERWRITE_IF
    ).fobx


def test_a_large_write_goes_through_the_clients_arena(daemon: Daemon) -> None:
    data = os.urandom(SIZE)
    tail = os.urandom(300_000)
    with daemon.client() as c:
        fobx = _create_for_write(c, daemon.share + r"\written.bin")
        assert c.write_handle(fobx, 0, data) == SIZE
        arena = c._arena  # made for the write: nothing was read
        assert arena is not None and arena.name in _mapped_by(daemon.child_pid("local"))
        assert c.write_handle(fobx, -1, tail) == len(tail)  # an append, through the slot too
        c.close_handle(fobx)
    assert (daemon.share_dir / "written.bin").read_bytes() == data + tail


def test_the_async_client_writes_large_pieces_through_shared_memory(daemon: Daemon) -> None:
    data = os.urandom(SIZE)

    async def main() -> str:
        async with AsyncClient(daemon.runtime_dir) as c:
            h = await c.create(
                daemon.share + r"\awritten.bin",
                access=Access.GENERIC_READ | Access.GENERIC_WRITE,
                disposition=OVERWRITE_IF,
            )
            assert await c.write_handle(h.fobx, 0, data) == SIZE
            assert c._slots is not None
            name = c._slots.arena.name
            # appends go one after the other, each after the last, though they use slots
            assert await c.write_handle(h.fobx, -1, data) == SIZE
            assert c._slots.idle == c._slots.arena.slots
            await c.close_handle(h.fobx)
            return name

    name = asyncio.run(main())
    assert name in _mapped_by(daemon.child_pid("local"))
    assert (daemon.share_dir / "awritten.bin").read_bytes() == data + data


def test_a_file_object_writes_large_chunks_through_shared_memory(daemon: Daemon) -> None:
    data = os.urandom(SIZE)
    with daemon.client() as c:
        assert c.write_bytes(daemon.share + r"\whole.bin", data) == SIZE
        assert c._arena is not None
    assert (daemon.share_dir / "whole.bin").read_bytes() == data


def test_writes_the_core_keeps_are_copied_out_of_the_arena() -> None:
    """With write-behind the core keeps the bytes of a write and acknowledges it at once: a
    shared-memory write is copied out of the slot then, so the next write reusing the slot
    cannot change what the first one wrote."""
    extra = "close_delay = 0\nwrite_behind = 60"
    with running_daemon(daemon_extra=extra, local_extra='caching = "exclusive"') as d:
        first, second = os.urandom(1 << 20), os.urandom(1 << 20)
        with d.client() as c:
            fobx = _create_for_write(c, d.share + r"\kept.bin")
            before = c.status()["buffering"]["deferred_writes"]
            assert c.write_handle(fobx, 0, first) == len(first)
            assert c.write_handle(fobx, len(first), second) == len(second)  # the same slot
            assert c.status()["buffering"]["deferred_writes"] == before + 2
            assert c._arena is not None
            c.close_handle(fobx)
        assert (d.share_dir / "kept.bin").read_bytes() == first + second


@pytest.mark.parametrize(
    ("args", "with_payload"),
    [
        ({"shm": "rdbss-1-ffffffffffffffff", "shm_off": 0}, False),  # no such arena
        ({"shm": "../../../etc/shadow", "shm_off": 0}, False),
        ({"shm": "ARENA", "shm_off": 1 << 40}, False),  # outside the arena
        ({"shm": "ARENA", "shm_off": 0}, True),  # the bytes twice: which to write?
    ],
)
def test_bad_shared_memory_writes_are_refused_and_nothing_is_written(
    daemon: Daemon, args: dict[str, object], with_payload: bool
) -> None:
    target = daemon.share_dir / "untouched.bin"
    target.write_bytes(b"before")
    with daemon.client() as c:
        c.readinto(  # makes the client's arena, so that "ARENA" names a real one
            c.create(daemon.share + r"\big.bin").fobx, 0, bytearray(shm.MIN_READ_BYTES)
        )
        assert c._arena is not None
        if args["shm"] == "ARENA":
            args = {**args, "shm": c._arena.name}
        fobx = c.create(
            daemon.share + r"\untouched.bin", access=Access.GENERIC_READ | Access.GENERIC_WRITE
        ).fobx
        ctx = RxContext(
            0,
            IrpMj.WRITE,
            fobx=fobx,
            lowio=LowIoParameters(offset=0, length=1 << 20),
            args=args,
            timeout_ms=5000,
        )
        with pytest.raises(NtStatusError) as info:
            c.call(ctx, b"x" * (1 << 20) if with_payload else None)
        assert info.value.status == NtStatus.STATUS_INVALID_PARAMETER
        assert c.write_handle(fobx, 0, b"after") == 5  # the daemon goes on
        c.close_handle(fobx)
    assert target.read_bytes() == b"aftere"


LATE_WRITE = """
[[minirdr.rules]]
routine = "MRxLowIOSubmit"
lowio_op = "WRITE"
action = "delay"
delay_ms = 1500
jitter_ms = 0
count = 1
"""


@pytest.mark.parametrize("kind", ["blocking", "asyncio"])
def test_a_write_given_up_on_never_writes_the_next_writes_bytes(tmp_path: Path, kind: str) -> None:
    """A write that timed out may still run in the mini-redirector (a routine already running
    is not interrupted): here it runs after a 1.5 s injected delay. Its slot must not hold the
    next write's bytes by then, so the client retires that arena and the next write gets a new
    one: the late write still writes its own bytes."""
    folder = tmp_path / "flaky"
    folder.mkdir()
    # the asyncio client's second write is one 1 MiB write per slot from separate tasks, all
    # in flight (slots are handed out in turn), so without retiring the arena one of them is
    # the late write's
    first, second = b"a" * (1 << 20), os.urandom(shm.SLOTS << 20)
    unc = r"\\flaky\data\late.bin"
    with running_daemon(faulty_config(folder, LATE_WRITE)) as d:
        if kind == "blocking":
            with d.client(timeout=0.5) as c:
                fobx = _create_for_write(c, unc)
                with pytest.raises(NtStatusError) as info:
                    c.write_handle(fobx, 0, first)
                assert info.value.status == NtStatus.STATUS_IO_TIMEOUT
                assert c._arena is None  # retired
                c.timeout = 10.0  # the next write waits behind the late one on the connection
                assert c.write_handle(fobx, len(first), second) == len(second)
                c.close_handle(fobx)
        else:

            async def main() -> None:
                async with AsyncClient(d.runtime_dir, timeout=0.5) as c:
                    h = await c.create(
                        unc,
                        access=Access.GENERIC_READ | Access.GENERIC_WRITE,
                        disposition=OVERWRITE_IF,
                    )
                    with pytest.raises(NtStatusError) as info:
                        await c.write_handle(h.fobx, 0, first)
                    assert info.value.status == NtStatus.STATUS_IO_TIMEOUT
                    c.timeout = 10.0
                    counts = await asyncio.gather(
                        *(
                            c.write_handle(h.fobx, (k + 1) << 20, second[k << 20 : (k + 1) << 20])
                            for k in range(shm.SLOTS)
                        )
                    )
                    assert counts == [1 << 20] * shm.SLOTS
                    await c.close_handle(h.fobx)

            asyncio.run(main())
    assert (folder / "late.bin").read_bytes() == first + second


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


def test_a_read_the_core_timed_out_retires_its_arena(tmp_path: Path) -> None:
    """A read of one slot that the core answered STATUS_IO_TIMEOUT at its deadline is over for
    the client but still running in the mini-redirector (here: 1.5 s of injected delay), which
    will fill its slot later: that slot is never handed to another read."""
    folder = tmp_path / "flaky"
    folder.mkdir()
    (folder / "slow.bin").write_bytes(os.urandom(1 << 20))
    rules = LATE_WRITE.replace('"WRITE"', '"READ"')
    with running_daemon(faulty_config(folder, rules)) as d, d.client(timeout=0.5) as c:
        fobx = c.create(r"\\flaky\data\slow.bin").fobx
        buffer = bytearray(1 << 20)  # one slot: nothing else in flight when it fails
        with pytest.raises(NtStatusError) as info:
            c.readinto(fobx, 0, buffer)
        assert info.value.status == NtStatus.STATUS_IO_TIMEOUT
        assert c._arena is None  # retired
        c.timeout = 10.0
        assert c.readinto(fobx, 0, buffer) == len(buffer)
        assert buffer == (folder / "slow.bin").read_bytes()
        c.close_handle(fobx)

"""Cancellation contract (see docs/routines.md, The routines): a request a mini-redirector
answered STATUS_PENDING (a change-notify wait, a waiting byte-range lock) is dropped by its
cancel routine when the client cancels it: it ends at once, the mini-redirector holds it no more
(its own count, reported with its heartbeats), and a cancelled lock waiter never gets the range.
Run for every backend that registers the operation; the client cancels by cancelling the asyncio
task awaiting the call."""

from __future__ import annotations

import asyncio
import time

import pytest

from rdbss.aio import AsyncClient
from rdbss.testing.suite.harness import ConformanceBackend, opened, wait_until
from rdbss.wire import Access, CreateOptions, LowIoOp, NtStatus, NtStatusError, Routine

S = NtStatus
LOWIO = Routine.MRxLowIOSubmit
RW = Access.GENERIC_READ | Access.GENERIC_WRITE


def held(backend: ConformanceBackend) -> int:
    """Requests the mini-redirector under test holds (queued or STATUS_PENDING)."""
    for peer in backend.client.status()["peers"]:
        if peer["name"] == backend.minirdr:
            return int(peer.get("pending", -1))
    pytest.fail(f"{backend.minirdr} is no longer registered with the core")


def settled(backend: ConformanceBackend, *, steady_s: float = 1.0, timeout: float = 10.0) -> int:
    """``held`` once it has kept one value for ``steady_s`` (several heartbeats): the count comes
    with heartbeats, so right after other work it can still include requests already done."""
    deadline = time.monotonic() + timeout
    value, since = held(backend), time.monotonic()
    while time.monotonic() - since < steady_s:
        if time.monotonic() > deadline:
            pytest.fail(f"{backend.minirdr}'s count of held requests did not settle ({value})")
        time.sleep(0.05)
        now = held(backend)
        if now != value:
            value, since = now, time.monotonic()
    return value


async def until(backend: ConformanceBackend, count: int, what: str) -> None:
    await asyncio.to_thread(wait_until, lambda: held(backend) == count, 10.0, what)


def test_a_cancelled_notify_is_dropped_by_the_minirdr(backend: ConformanceBackend) -> None:
    backend.requires(LOWIO, LowIoOp.NOTIFY_CHANGE_DIRECTORY)
    d = backend.fresh_dir()
    before = settled(backend)

    async def scenario() -> None:
        async with AsyncClient(backend.runtime_dir, timeout=30) as c:
            h = await c.create(
                d.unc, access=Access.FILE_LIST_DIRECTORY, options=CreateOptions.FILE_DIRECTORY_FILE
            )
            watching = asyncio.create_task(c.watch(h.fobx))
            await until(backend, before + 1, "the notify to be pending in the mini-redirector")
            watching.cancel()
            with pytest.raises(asyncio.CancelledError):
                await watching
            # dropped now, not at its 30 s deadline
            await until(backend, before, "the mini-redirector to let go of the notify")
            await c.close_handle(h.fobx)

    asyncio.run(scenario())
    assert backend.pending() == 0


def test_a_cancelled_waiting_lock_is_never_granted(backend: ConformanceBackend) -> None:
    backend.requires(LOWIO, LowIoOp.EXCLUSIVELOCK)
    backend.requires(LOWIO, LowIoOp.UNLOCK)
    backend.requires(LOWIO, LowIoOp.WRITE)
    d = backend.fresh_dir()
    d.put("locked.bin", bytes(100))
    a = backend.client
    before = settled(backend)

    async def scenario() -> None:
        async with (
            AsyncClient(backend.runtime_dir, timeout=30) as b,
            AsyncClient(backend.runtime_dir, timeout=30) as c,
        ):
            hb = await b.create(d.path("locked.bin"), access=RW)
            hc = await c.create(d.path("locked.bin"), access=RW)
            with opened(a, d.path("locked.bin"), access=RW) as ha:
                a.lock(ha.fobx, 0, 10)
                b_waits = asyncio.create_task(b.lock(hb.fobx, 0, 10, wait=True))
                await until(backend, before + 1, "B's lock to wait")
                c_waits = asyncio.create_task(c.lock(hc.fobx, 0, 10, wait=True))
                await until(backend, before + 2, "C's lock to wait")
                b_waits.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await b_waits
                await until(backend, before + 1, "B's lock to be withdrawn")
                a.unlock(ha.fobx, 0, 10)
                await asyncio.wait_for(c_waits, 10.0)  # C gets the range, B never does
                with pytest.raises(NtStatusError) as info:
                    await b.write_handle(hb.fobx, 2, b"B")
                assert info.value.status == S.STATUS_FILE_LOCK_CONFLICT
                assert await c.write_handle(hc.fobx, 2, b"C") == 1
            await b.close_handle(hb.fobx)
            await c.close_handle(hc.fobx)

    asyncio.run(scenario())
    assert d.get("locked.bin")[:4] == b"\0\0C\0"

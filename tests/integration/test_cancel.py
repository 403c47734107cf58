"""Cancellation through a real daemon: a client cancels its own pending requests (RxCancel), the
mini-redirector lets go of what they held, and nobody can cancel another client's requests.
Real processes, real sockets; the mini-redirector's count of requests it holds comes from its
heartbeats (its real watch and lock-waiter tables)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rdbss.aio import AsyncClient
from rdbss.client import Client
from rdbss.wire import (
    Access,
    CreateOptions,
    CreateParameters,
    IrpMj,
    IrpMn,
    LowIoParameters,
    NtStatus,
    NtStatusError,
    RxCancel,
    RxContext,
)
from tests.daemon import Daemon, running_daemon, wait_until
from tests.rawclient import RawClient, raw_client

S = NtStatus
RW = Access.GENERIC_READ | Access.GENERIC_WRITE
DIRECTORY = {"access": Access.FILE_LIST_DIRECTORY, "options": CreateOptions.FILE_DIRECTORY_FILE}


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with running_daemon() as d:
        yield d


def held_by(d: Daemon, name: str = "local") -> int:
    """Requests the mini-redirector holds (queued or STATUS_PENDING), from its heartbeats."""
    with d.client() as c:
        return next(int(p["pending"]) for p in c.status()["peers"] if p["name"] == name)


def notify(request_id: int, fobx: int, timeout_ms: int = 30_000) -> RxContext:
    return RxContext(
        request_id,
        IrpMj.DIRECTORY_CONTROL,
        IrpMn.NOTIFY_CHANGE_DIRECTORY,
        fobx=fobx,
        timeout_ms=timeout_ms,
        lowio=LowIoParameters(completion_filter=0x3),
    )


def fresh_dir(d: Daemon, name: str) -> str:
    (d.share_dir / name).mkdir()
    return rf"{d.share}\{name}"


def open_raw_dir(raw: RawClient, path: str, request_id: int) -> int:
    raw.send(
        RxContext(
            request_id,
            IrpMj.CREATE,
            path=path,
            create=CreateParameters(
                desired_access=Access.FILE_LIST_DIRECTORY,
                create_options=CreateOptions.FILE_DIRECTORY_FILE,
            ),
        )
    )
    done = raw.receive(10)
    assert done is not None and done.status == S.STATUS_SUCCESS, done
    fobx: int = done.result["fobx"]
    return fobx


def test_cancelling_the_awaiting_task_cancels_the_watch_on_the_daemon(daemon: Daemon) -> None:
    folder = fresh_dir(daemon, "aio-watch")

    async def scenario() -> float:
        async with AsyncClient(daemon.runtime_dir, timeout=30) as c:
            handle = await c.create(folder, **DIRECTORY)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(c.watch(handle.fobx), 1.0)
            started = time.monotonic()
            # the mini-redirector let go of the watch at once, not at its 30 s deadline
            await asyncio.to_thread(wait_until, lambda: held_by(daemon) == 0, 5.0)
            status = await c.status()
            assert status["pending"] == 0
            await c.close_handle(handle.fobx)
            return time.monotonic() - started

    assert asyncio.run(scenario()) < 5.0


def test_a_cancel_answers_status_cancelled_promptly(daemon: Daemon) -> None:
    folder = fresh_dir(daemon, "raw-watch")
    with raw_client(daemon) as raw:
        fobx = open_raw_dir(raw, folder, 1)
        raw.send(notify(2, fobx))
        wait_until(lambda: held_by(daemon) == 1, 5.0)
        assert raw.receive(0.2) is None  # still waiting
        started = time.monotonic()
        raw.send(RxCancel(2))
        done = raw.receive(5.0)
        assert done is not None
        assert (done.request_id, done.status) == (2, S.STATUS_CANCELLED)
        assert time.monotonic() - started < 1.0  # confirmed by the mini-redirector, no grace
        wait_until(lambda: held_by(daemon) == 0, 5.0)
        # a change now reaches nobody: the watch is gone (no second answer for request 2)
        (daemon.share_dir / "raw-watch" / "late.txt").write_bytes(b"x")
        assert raw.receive(1.0) is None


def test_a_client_cannot_cancel_another_clients_request(daemon: Daemon) -> None:
    folder = fresh_dir(daemon, "other-watch")
    with raw_client(daemon) as owner, raw_client(daemon) as intruder:
        fobx = open_raw_dir(owner, folder, 1)
        owner.send(notify(2, fobx))
        wait_until(lambda: held_by(daemon) == 1, 5.0)
        intruder.send(RxCancel(2))  # the same request id, from another client
        assert intruder.receive(1.0) is None  # a cancel is never answered itself
        assert owner.receive(0.5) is None and held_by(daemon) == 1  # still waiting
        (daemon.share_dir / "other-watch" / "new.txt").write_bytes(b"x")
        done = owner.receive(5.0)
        assert done is not None and done.request_id == 2 and done.status == S.STATUS_SUCCESS
        assert done.result["changes"] == [{"action": "added", "name": "new.txt"}]


def test_cancelling_an_unknown_or_finished_request_is_ignored(daemon: Daemon) -> None:
    with raw_client(daemon) as raw:
        raw.send(RxCancel(424242))
        raw.send(RxCancel(1, "gone"))
        assert raw.receive(0.5) is None
        folder = fresh_dir(daemon, "finished")
        fobx = open_raw_dir(raw, folder, 1)
        raw.send(RxCancel(1))  # the create finished: nothing happens to its handle
        raw.send(RxContext(3, IrpMj.CLOSE, fobx=fobx))
        done = raw.receive(5.0)
        assert done is not None and (done.request_id, done.status) == (3, S.STATUS_SUCCESS)
    with daemon.client() as c:
        assert c.ping()


def test_a_malformed_cancel_answers_invalid_parameter(daemon: Daemon) -> None:
    import msgpack

    with raw_client(daemon) as raw:
        raw.sock.send(msgpack.packb({"k": "cancel", "v": 1, "id": 5, "rs": "because"}))
        done = raw.receive(5.0)
        assert done is not None and done.request_id == 5
        assert done.status == S.STATUS_INVALID_PARAMETER and "expected one of" in done.message


def test_a_cancelled_waiting_lock_is_never_granted(daemon: Daemon) -> None:
    path = rf"{daemon.share}\locked.bin"
    (daemon.share_dir / "locked.bin").write_bytes(bytes(100))

    async def scenario(a: Client) -> None:
        ha = a.create(path, access=RW)
        a.lock(ha.fobx, 0, 10)
        async with (
            AsyncClient(daemon.runtime_dir, timeout=30) as b,
            AsyncClient(daemon.runtime_dir, timeout=30) as c,
        ):
            hb = await b.create(path, access=RW)
            hc = await c.create(path, access=RW)
            b_waits = asyncio.create_task(b.lock(hb.fobx, 0, 10, wait=True))
            await asyncio.to_thread(wait_until, lambda: held_by(daemon) == 1, 5.0)
            c_waits = asyncio.create_task(c.lock(hc.fobx, 0, 10, wait=True))
            await asyncio.to_thread(wait_until, lambda: held_by(daemon) == 2, 5.0)
            b_waits.cancel()
            with pytest.raises(asyncio.CancelledError):
                await b_waits
            await asyncio.to_thread(wait_until, lambda: held_by(daemon) == 1, 5.0)
            a.unlock(ha.fobx, 0, 10)
            await asyncio.wait_for(c_waits, 5.0)  # the next waiter gets it, not the cancelled
            with pytest.raises(NtStatusError) as info:
                await b.write_handle(hb.fobx, 2, b"B")
            assert info.value.status == S.STATUS_FILE_LOCK_CONFLICT
            await c.write_handle(hc.fobx, 2, b"C")
            await b.close_handle(hb.fobx)
            await c.close_handle(hc.fobx)
        a.close_handle(ha.fobx)

    with daemon.client(timeout=30) as a:
        asyncio.run(scenario(a))
    assert (daemon.share_dir / "locked.bin").read_bytes()[:4] == b"\0\0C\0"


def test_keyboard_interrupt_during_a_blocking_watch_cancels_it(daemon: Daemon) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    folder = fresh_dir(daemon, "interrupted")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with daemon.client(timeout=30) as c:
            handle = c.create(folder, **DIRECTORY)
            timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            try:
                with pytest.raises(KeyboardInterrupt):
                    c.watch(handle.fobx)
            finally:
                timer.cancel()
            wait_until(lambda: held_by(daemon) == 0, 5.0)
            # the client goes on: the late STATUS_CANCELLED is skipped, not taken for this answer
            assert c.stat(folder).is_dir
            c.close_handle(handle.fobx)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_closing_an_async_client_cancels_what_it_left_in_flight(daemon: Daemon) -> None:
    folder = fresh_dir(daemon, "closed-watch")

    async def scenario() -> None:
        c = AsyncClient(daemon.runtime_dir, timeout=30)
        h = await c.create(folder, **DIRECTORY)
        watching = asyncio.create_task(c.watch(h.fobx))
        await asyncio.to_thread(wait_until, lambda: held_by(daemon) == 1, 5.0)
        await c.close()
        with pytest.raises(NtStatusError) as info:
            await watching
        assert info.value.status == S.STATUS_CANCELLED
        await asyncio.to_thread(wait_until, lambda: held_by(daemon) == 0, 5.0)

    asyncio.run(scenario())


def test_many_cancels_leave_nothing_behind(daemon: Daemon) -> None:
    folder = fresh_dir(daemon, "many")

    async def scenario() -> dict[str, Any]:
        async with AsyncClient(daemon.runtime_dir, timeout=30) as c:
            handles = [await c.create(folder, **DIRECTORY) for _ in range(10)]
            tasks = [asyncio.create_task(c.watch(h.fobx)) for h in handles]
            await asyncio.sleep(0.5)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(wait_until, lambda: held_by(daemon) == 0, 5.0)
            for h in handles:
                await c.close_handle(h.fobx)
            return await c.status()

    status = asyncio.run(scenario())
    assert status["pending"] == 0 and status["cancelling"] == 0

"""Deadlines and cancels drop work a mini-redirector has not started: with the ``faulty``
mini-redirector one request holds its connection's worker (an injected delay) and a write waits
behind it; when that write is cancelled, or its deadline passes, it never reaches the backend.
Real daemon, real processes; the backend is checked directly on disk."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rdbss.wire import (
    Access,
    CreateParameters,
    IrpMj,
    LowIoParameters,
    NtStatus,
    NtStatusError,
    RxCancel,
    RxContext,
)
from tests.daemon import Daemon, running_daemon, wait_until
from tests.rawclient import raw_client
from tests.reliability.test_faulty import FLAKY, faulty_config

S = NtStatus
RW = Access.GENERIC_READ | Access.GENERIC_WRITE
ORIGINAL = b"original contents"
DELAY = [{"routine": "MRxQueryFileInfo", "action": "delay", "delay_ms": 3000, "count": 1}]


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[tuple[Daemon, Path]]:
    folder = tmp_path / "flaky"
    folder.mkdir()
    (folder / "a.txt").write_bytes(ORIGINAL)
    with running_daemon(faulty_config(folder)) as d:
        yield d, folder


def held_by(d: Daemon, name: str) -> int:
    with d.client() as c:
        return next(int(p["pending"]) for p in c.status()["peers"] if p["name"] == name)


def hold_the_connection(d: Daemon) -> tuple[threading.Thread, list[float]]:
    """A query on \\\\flaky delayed 3 s: it holds the connection's worker meanwhile."""
    outcome: list[float] = []
    c = d.client(timeout=10.0)
    handle = c.create(FLAKY + r"\a.txt")
    c.set_faults("flaky", DELAY)

    def slow() -> None:
        try:
            started = time.monotonic()
            c.query_info(handle.fobx)
            outcome.append(time.monotonic() - started)
            c.close_handle(handle.fobx)
        finally:
            c.close()

    t = threading.Thread(target=slow)
    t.start()
    wait_until(lambda: held_by(d, "flaky") >= 1, 5.0)  # the query is running
    return t, outcome


def test_a_write_whose_deadline_passes_in_the_queue_never_lands(
    flaky: tuple[Daemon, Path],
) -> None:
    d, folder = flaky
    with d.client(timeout=1.0) as writer:
        handle = writer.create(FLAKY + r"\a.txt", access=RW)
        t, outcome = hold_the_connection(d)
        with pytest.raises(NtStatusError) as info:
            writer.write_handle(handle.fobx, 0, b"LATE")
        assert info.value.status == S.STATUS_IO_TIMEOUT
        t.join(10)
        assert outcome and outcome[0] >= 2.5  # the delay really held the worker
        # anything queued behind the write on the same worker runs after its turn came
        assert writer.read_handle(handle.fobx, 0, 100) == ORIGINAL
        writer.close_handle(handle.fobx)
    assert (folder / "a.txt").read_bytes() == ORIGINAL
    wait_until(lambda: held_by(d, "flaky") == 0, 5.0)
    assert "dropped before it ran" in d.log()


def test_a_cancelled_queued_write_is_answered_at_once_and_never_runs(
    flaky: tuple[Daemon, Path],
) -> None:
    d, folder = flaky
    with raw_client(d) as raw:
        raw.send(
            RxContext(
                1,
                IrpMj.CREATE,
                path=FLAKY + r"\a.txt",
                create=CreateParameters(desired_access=RW, share_access=7),
            )
        )
        opened = raw.receive(10)
        assert opened is not None and opened.status == S.STATUS_SUCCESS
        fobx = opened.result["fobx"]
        t, _ = hold_the_connection(d)
        write = LowIoParameters(offset=0, length=4)
        raw.send(RxContext(2, IrpMj.WRITE, fobx=fobx, timeout_ms=20_000, lowio=write), b"GONE")
        time.sleep(0.2)
        started = time.monotonic()
        raw.send(RxCancel(2))
        done = raw.receive(2.5)  # well before the 3 s delay ends
        assert done is not None and (done.request_id, done.status) == (2, S.STATUS_CANCELLED)
        assert time.monotonic() - started < 1.5
        t.join(10)
        read = LowIoParameters(offset=0, length=100)
        raw.send(RxContext(3, IrpMj.READ, fobx=fobx, lowio=read))
        done = raw.receive(10)
        assert done is not None and done.request_id == 3 and done.status == S.STATUS_SUCCESS
    assert (folder / "a.txt").read_bytes() == ORIGINAL

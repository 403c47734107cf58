"""The mini-redirector host's cancel bookkeeping, driven without sockets: a recording bridge
stands in for the bus, a real local mini-redirector on a temporary folder does the work. Checks
the order of events a worker thread sees: taken from the queue, running, gone pending."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rdbss.actors.minirdr_host import MiniRdrHost, execute
from rdbss.minirdrs.local import LocalMiniRdr
from rdbss.testing.bridge import RecordingBridge
from rdbss.wire import (
    Access,
    Codec,
    CreateOptions,
    CreateParameters,
    IrpMj,
    LowIoOp,
    LowIoParameters,
    NtStatus,
    NtStatusError,
    Routine,
    RxCancel,
    RxCompletion,
    RxContext,
)
from rdbss.wire.rxcontext import MAX_TEXT_LEN

S = NtStatus
_ids = itertools.count(100)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[MiniRdrHost, RecordingBridge, Path]]:
    (tmp_path / "d").mkdir()
    rdr = LocalMiniRdr("local", {"server": "local", "shares": {"data": str(tmp_path)}})
    bridge = RecordingBridge()
    yield MiniRdrHost(bridge, rdr), bridge, tmp_path  # type: ignore[arg-type]
    rdr.close()


def _open(host: MiniRdrHost, name: str, access: int = Access.GENERIC_READ, options: int = 0) -> int:
    """A SrvOpen of ``name`` in the share, made by the host's mini-redirector."""
    create = RxContext(
        next(_ids),
        IrpMj.CREATE,
        routine=Routine.MRxCreate,
        srv_call="local",
        net_root="data",
        path=name,
        fobx=1,
        create=CreateParameters(desired_access=access, create_options=options),
    )
    answer = execute(host.minirdr, create, None)
    assert answer is not None and answer[0].status == S.STATUS_SUCCESS
    srv_open: int = answer[0].result["srv_open"]
    return srv_open


def _lowio(major: int, srv_open: int, lowio: LowIoParameters, **fields: Any) -> RxContext:
    """A low I/O request on a SrvOpen, as the core sends it."""
    return RxContext(
        next(_ids),
        major,
        routine=Routine.MRxLowIOSubmit,
        srv_call="local",
        net_root="data",
        srv_open=srv_open,
        lowio=lowio,
        **fields,
    )


def watch_dir(host: MiniRdrHost) -> RxContext:
    srv_open = _open(host, "d", Access.FILE_LIST_DIRECTORY, CreateOptions.FILE_DIRECTORY_FILE)
    notify = LowIoParameters(operation=LowIoOp.NOTIFY_CHANGE_DIRECTORY, completion_filter=3)
    return _lowio(IrpMj.DIRECTORY_CONTROL, srv_open, notify, fobx=1, timeout_ms=30_000)


def queue(host: MiniRdrHost, ctx: RxContext) -> None:
    """What on_message does for a request bound for a worker (without starting the worker)."""
    host._queued[ctx.request_id] = float("inf")


def test_a_cancel_while_running_applies_once_the_request_goes_pending(host: Any) -> None:
    h, bridge, _ = host
    ctx = watch_dir(h)
    queue(h, ctx)
    assert h.begin(ctx) is True  # the worker takes it
    h.cancel(RxCancel(ctx.request_id))  # arrives while it runs: nothing to cancel yet
    assert bridge.sent == [] and h.pending_count() == 1
    assert execute(h.minirdr, ctx, None) is None  # it went STATUS_PENDING
    h.ran(ctx, pending=True)  # the cancel routine runs now
    assert [(d.request_id, d.status) for d in bridge.sent] == [(ctx.request_id, S.STATUS_CANCELLED)]
    assert h.pending_count() == 0


def test_a_cancelled_queued_request_is_answered_at_once_and_skipped(host: Any) -> None:
    h, bridge, _ = host
    ctx = watch_dir(h)
    queue(h, ctx)
    assert h.pending_count() == 1
    h.cancel(RxCancel(ctx.request_id, "gone"))
    assert [(d.request_id, d.status) for d in bridge.sent] == [(ctx.request_id, S.STATUS_CANCELLED)]
    assert h.begin(ctx) is False  # never run, never answered twice
    assert h.pending_count() == 0 and h.minirdr.pending_requests() == 0


def test_a_request_whose_deadline_passed_in_the_queue_is_not_run(host: Any) -> None:
    h, _bridge, _ = host
    ctx = watch_dir(h)
    h._queued[ctx.request_id] = 0.0  # its deadline is long past
    verdict = h.begin(ctx)
    assert isinstance(verdict, RxCompletion) and verdict.status == S.STATUS_IO_TIMEOUT
    assert h.minirdr.pending_requests() == 0 and h.pending_count() == 0


def test_a_cancel_for_nothing_held_is_ignored(host: Any) -> None:
    h, bridge, _ = host
    h.cancel(RxCancel(424242))
    assert bridge.sent == []


def _read(srv_open: int, offset: int, length: int, **fields: Any) -> RxContext:
    lowio = LowIoParameters(operation=LowIoOp.READ, offset=offset, length=length)
    return _lowio(IrpMj.READ, srv_open, lowio, **fields)


def test_large_answers_of_a_compound_leave_as_soon_as_they_are_ready(host: Any) -> None:
    """Separate reads the core sent together: each large answer goes out on its own as soon as
    it is read (so the core forwards it while the rest run); the small ones together."""
    from rdbss.wire import Compound, CompoundCompletion

    minirdr_host, bridge, root = host
    (root / "f.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    srv_open = _open(minirdr_host, "f.bin")
    reads = [_read(srv_open, 0, 100), _read(srv_open, 0, 256 << 10), _read(srv_open, 100, 10)]
    minirdr_host.on_message(Compound(0, reads), None)
    first, last = bridge.sent
    assert isinstance(first, RxCompletion) and first.request_id == reads[1].request_id
    assert isinstance(last, CompoundCompletion)
    assert [d.request_id for d in last.items] == [reads[0].request_id, reads[2].request_id]


def test_large_shared_memory_reads_of_an_all_read_compound_copy_on_the_pool(host: Any) -> None:
    from rdbss import shm
    from rdbss.wire import Compound

    if not shm.available():
        pytest.skip("no writable /dev/shm")
    minirdr_host, bridge, root = host
    data = bytes(range(256)) * (8 << 12)  # 8 MiB
    (root / "big.bin").write_bytes(data)
    srv_open = _open(minirdr_host, "big.bin")
    arena = shm.Arena(slots=2, slot_bytes=4 << 20)
    try:
        reads = [_read(srv_open, k << 22, 4 << 20, args=arena.args(k)) for k in range(2)]
        minirdr_host.on_message(Compound(0, reads), None)
        assert minirdr_host._pool is not None
        minirdr_host._pool.shutdown(wait=True)  # both copies done, their answers posted
        minirdr_host._pool = None
        answers = {d.request_id: d for d in bridge.sent}
        for k, ctx in enumerate(reads):
            done = answers[ctx.request_id]
            assert done.status == S.STATUS_SUCCESS and done.result == {"shm": 4 << 20}
            assert bytes(arena.view(k, 4 << 20)) == data[k << 22 : (k + 1) << 22]
        assert minirdr_host.pending_count() == 0
    finally:
        arena.close()


class Quoting(LocalMiniRdr):
    """Fails the way a backend quoting a server's reply might: a NUL and a huge text."""

    def query_file_info(self, ctx: RxContext) -> Any:
        if ctx.fobx == 1:
            raise NtStatusError(S.STATUS_ACCESS_DENIED, "the server said: bad\x00name")
        raise RuntimeError("x" * (200 << 10))


def test_an_error_text_from_a_backend_always_decodes(tmp_path: Path) -> None:
    """A completion the core cannot decode would leave its request waiting for its deadline:
    the host makes every error text printable and within the schema's length."""
    minirdr = Quoting("local", {"server": "local", "shares": {"data": str(tmp_path)}})
    codec = Codec()
    messages = []
    for fobx in (1, 2):
        done = codec.decode(codec.encode(answer_of(minirdr, fobx)))
        assert isinstance(done, RxCompletion) and done.status != S.STATUS_SUCCESS
        assert "\x00" not in done.message and len(done.message) <= MAX_TEXT_LEN
        messages.append(done.message)
    assert "bad\\x00name" in messages[0]  # escaped, still readable


def answer_of(minirdr: LocalMiniRdr, fobx: int) -> RxCompletion:
    ctx = RxContext(fobx, IrpMj.QUERY_INFORMATION, routine=Routine.MRxQueryFileInfo, fobx=fobx)
    answer = execute(minirdr, ctx, None)
    assert answer is not None
    return answer[0]


class Lost(LocalMiniRdr):
    """A mini-redirector whose connection is seen lost: it counts the routines it runs."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.ran: list[str] = []

    def connection_lost(self, ctx: RxContext) -> bool:
        return True

    def set_file_info(self, ctx: RxContext) -> Any:
        self.ran.append("set_file_info")
        return super().set_file_info(ctx)

    def close_srv_open(self, ctx: RxContext) -> Any:
        self.ran.append("close_srv_open")
        return super().close_srv_open(ctx)


def test_a_request_on_a_connection_seen_lost_is_answered_unsent_without_running(
    tmp_path: Path,
) -> None:
    """Nothing of it can reach the server: the answer is the lost connection, marked unsent
    (the core may send it again); a close still runs, to say what the loss took."""
    from rdbss.model.idempotent import unsent

    minirdr = Lost("local", {"server": "local", "shares": {"data": str(tmp_path)}})
    ctx = RxContext(7, IrpMj.SET_INFORMATION, routine=Routine.MRxSetFileInfo, fobx=1)
    answer = execute(minirdr, ctx, None)
    assert answer is not None
    done = answer[0]
    assert done.status == S.STATUS_CONNECTION_DISCONNECTED and unsent(done)
    assert minirdr.ran == []
    close = RxContext(8, IrpMj.CLOSE, routine=Routine.MRxCloseSrvOpen, srv_open=1)
    answer = execute(minirdr, close, None)
    assert answer is not None and not unsent(answer[0])
    assert minirdr.ran == ["close_srv_open"]

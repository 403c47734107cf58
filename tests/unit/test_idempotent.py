"""The table of requests the core sends again after a lost connection (model/idempotent.py):
reads and opens that create nothing are; anything that may change the server is not, and no
request is retried without a lost connection, beyond the bound or past its deadline."""

from __future__ import annotations

import pytest

from rdbss import requests as rq
from rdbss.model.idempotent import (
    CONNECTION_LOST,
    MAX_RETRIES,
    MIN_ATTEMPT_MS,
    is_idempotent,
    may_retry,
    replayable,
    resent_if_unsent,
    resent_whole_if_unsent,
    unsent,
)
from rdbss.wire import (
    CreateParameters,
    IrpMj,
    LowIoOp,
    LowIoParameters,
    NtStatus,
    Routine,
    RxContext,
)
from rdbss.wire.constants import CreateDisposition, CreateOptions, FileInformationClass
from rdbss.wire.rxcontext import InfoParameters, QueryDirectoryParameters, RxCompletion

S = NtStatus
D = CreateDisposition


def _create(disposition: int, options: int = 0) -> RxContext:
    return RxContext(
        1,
        IrpMj.CREATE,
        routine=Routine.MRxCreate,
        create=CreateParameters(disposition=disposition, create_options=options),
    )


def _lowio(op: int) -> RxContext:
    return RxContext(1, IrpMj.READ, routine=Routine.MRxLowIOSubmit, lowio=LowIoParameters(op))


@pytest.mark.parametrize(
    ("ctx", "expected"),
    [
        (_create(D.FILE_OPEN), True),
        (_create(D.FILE_OPEN, CreateOptions.FILE_DIRECTORY_FILE), True),
        (_create(D.FILE_OPEN, CreateOptions.FILE_DELETE_ON_CLOSE), False),
        (_create(D.FILE_CREATE), False),
        (_create(D.FILE_OPEN_IF), False),
        (_create(D.FILE_OVERWRITE), False),
        (_create(D.FILE_OVERWRITE_IF), False),
        (_create(D.FILE_SUPERSEDE), False),
        (_lowio(LowIoOp.READ), True),
        (_lowio(LowIoOp.WRITE), False),
        (_lowio(LowIoOp.SHAREDLOCK), False),
        (_lowio(LowIoOp.EXCLUSIVELOCK), False),
        (_lowio(LowIoOp.UNLOCK), False),
        (_lowio(LowIoOp.FSCTL), False),
        (_lowio(LowIoOp.NOTIFY_CHANGE_DIRECTORY), False),
        (RxContext(1, IrpMj.READ, routine=Routine.MRxLowIOSubmit), False),  # no operation
    ],
)
def test_opens_and_low_io(ctx: RxContext, expected: bool) -> None:
    assert is_idempotent(ctx) is expected


@pytest.mark.parametrize(
    "routine",
    [
        Routine.MRxQueryOpen,
        Routine.MRxQueryFileInfo,
        Routine.MRxQueryVolumeInfo,
        Routine.MRxQuerySdInfo,
        Routine.MRxIsValidDirectory,
    ],
)
def test_queries_of_state_are_idempotent(routine: Routine) -> None:
    assert is_idempotent(RxContext(1, 0, routine=routine))


@pytest.mark.parametrize(
    "routine",
    [
        Routine.MRxSetFileInfo,
        Routine.MRxSetEaInfo,
        Routine.MRxQueryEaInfo,
        Routine.MRxSetSdInfo,
        Routine.MRxQueryQuotaInfo,
        Routine.MRxSetQuotaInfo,
        Routine.MRxSetVolumeInfo,
        Routine.MRxFlush,
        Routine.MRxCleanupFobx,
        Routine.MRxCloseSrvOpen,
        Routine.MRxDevFcbXXXControlFile,
        None,
    ],
)
def test_what_may_change_the_server_is_not(routine: Routine | None) -> None:
    ctx = RxContext(1, 0, routine=routine)
    if routine == Routine.MRxSetFileInfo:  # even setting times again is not retried
        ctx.info = InfoParameters(FileInformationClass.FileBasicInformation)
    assert not is_idempotent(ctx)


def test_a_directory_query_only_when_it_starts_the_enumeration() -> None:
    first = RxContext(
        1, 0, routine=Routine.MRxQueryDirectory, query_directory=QueryDirectoryParameters()
    )
    assert is_idempotent(first)
    assert not is_idempotent(first, enumerating=True)  # would start over: entries twice
    restart = RxContext(
        1,
        0,
        routine=Routine.MRxQueryDirectory,
        query_directory=QueryDirectoryParameters(restart_scan=True),
    )
    assert is_idempotent(restart, enumerating=True)


def test_retries_need_a_lost_connection_and_are_bounded_by_count_and_time() -> None:
    assert {
        S.STATUS_CONNECTION_DISCONNECTED,
        S.STATUS_CONNECTION_RESET,
        S.STATUS_USER_SESSION_DELETED,
    } <= CONNECTION_LOST
    lost = S.STATUS_CONNECTION_DISCONNECTED
    assert may_retry(lost, 0, 5_000)
    assert may_retry(lost, MAX_RETRIES - 1, 5_000)
    assert not may_retry(lost, MAX_RETRIES, 5_000)
    assert not may_retry(lost, 0, MIN_ATTEMPT_MS - 1)
    # a slow or refused request is not a lost connection: never sent again
    for status in (S.STATUS_IO_TIMEOUT, S.STATUS_ACCESS_DENIED, S.STATUS_CONNECTION_REFUSED):
        assert not may_retry(status, 0, 5_000)


def test_a_compound_is_sent_again_whole_only_when_it_reads_and_leaves_no_handle() -> None:
    stat = rq.stat_items(r"\\s\share\f", 1000)
    read = rq.read(7, 0, 10, 1000)
    assert replayable([r.ctx for r in stat])
    assert replayable([r.ctx for r in stat + stat + [read]])  # stat_many, reads on a handle
    opened = rq.create(r"\\s\share\f", 1000)
    assert not replayable([opened.ctx])  # the handle it makes would outlive a second try
    assert not replayable([opened.ctx, rq.related(rq.read(0, 0, 10, 1000)).ctx])
    write = rq.create(r"\\s\share\f", 1000, disposition=D.FILE_OVERWRITE_IF)
    closing = rq.related(rq.close(0, 1000))
    assert not replayable([write.ctx, closing.ctx])  # it may have truncated the file
    assert not replayable([rq.write(7, 0, b"x", 1000).ctx])
    assert not replayable([rq.close(7, 1000).ctx])  # closes a handle from before


@pytest.mark.parametrize(
    ("ctx", "expected"),
    [
        (_create(D.FILE_CREATE), True),
        (_create(D.FILE_OVERWRITE_IF), True),
        (_create(D.FILE_OPEN, CreateOptions.FILE_DELETE_ON_CLOSE), True),
        (_lowio(LowIoOp.WRITE), True),
        (RxContext(1, 0, routine=Routine.MRxSetFileInfo), True),
        (_lowio(LowIoOp.SHAREDLOCK), False),
        (_lowio(LowIoOp.UNLOCK), False),
        (_lowio(LowIoOp.FSCTL), False),
        (RxContext(1, 0, routine=Routine.MRxFlush), False),
        (RxContext(1, 0, routine=Routine.MRxSetEaInfo), False),
        (RxContext(1, 0, routine=Routine.MRxCloseSrvOpen), False),
    ],
)
def test_what_never_reached_the_server_is_sent_again_unless_its_meaning_died(
    ctx: RxContext, expected: bool
) -> None:
    """A create, a write or a set-information that found its connection seen lost goes again;
    a flush (the writes before it may have died), locks and controls do not."""
    assert resent_if_unsent(ctx) is expected


def test_only_an_answer_marked_unsent_is_unsent() -> None:
    lost = S.STATUS_CONNECTION_DISCONNECTED
    assert unsent(RxCompletion(1, lost, result={"unsent": True}))
    assert not unsent(RxCompletion(1, lost))
    assert not unsent(RxCompletion(1, lost, result={"unsent": 1}))
    assert not unsent(RxCompletion(1, lost, result=[True]))


def test_a_compound_that_never_reached_the_server_goes_again_unless_it_flushes_or_locks() -> None:
    write = rq.write_file_items("x", b"data", 1000)
    assert resent_whole_if_unsent([r.ctx for r in write])
    assert resent_whole_if_unsent([r.ctx for r in rq.read_file_items("x", 1000)])
    flushing = [rq.write(1, 0, b"d", 1000).ctx, rq.flush(1, 1000).ctx]
    assert not resent_whole_if_unsent(flushing)
    locking = rq.lock(1, 0, 10, 1000, exclusive=True).ctx
    assert not resent_whole_if_unsent([locking])
    slotted = rq.write(1, 0, b"d", 1000).ctx
    slotted.args = {"shm": 1}
    assert not resent_whole_if_unsent([slotted])

"""Low I/O operations a mini-redirector may leave NULL (docs/routines.md, Low I/O): byte-range
locks between two clients (SHAREDLOCK / EXCLUSIVELOCK / UNLOCK with SL_FAIL_IMMEDIATELY) and
change notification. Each test runs only when the operations it needs are registered."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from rdbss.testing.suite.harness import (
    EXCLUSIVE_LOCK,
    Background,
    ConformanceBackend,
    Scratch,
    assert_status,
    call_status,
    lock_status,
    opened,
    raw,
    read_status,
    status_text,
    unlock_status,
    wait_until,
)
from rdbss.wire import (
    Access,
    CreateDisposition,
    CreateOptions,
    IrpMj,
    IrpMn,
    LowIoOp,
    LowIoParameters,
    NtStatus,
    Routine,
    RxCompletion,
)

S = NtStatus
LOWIO = Routine.MRxLowIOSubmit
RW = Access.GENERIC_READ | Access.GENERIC_WRITE
FILE_NOTIFY_CHANGE_FILE_NAME = 0x1
FILE_NOTIFY_CHANGE_DIR_NAME = 0x2
STATUS_NOTIFY_ENUM_DIR = 0x0000010C  # too many changes to list: enumerate the directory again
OK = S.STATUS_SUCCESS
NOT_GRANTED = S.STATUS_LOCK_NOT_GRANTED


def _locked_file(backend: ConformanceBackend) -> Scratch:
    d = backend.fresh_dir()
    d.put("locked.bin", bytes(200))
    return d


# ================================================================================ locks
def test_exclusive_lock_conflicts_between_clients(backend: ConformanceBackend) -> None:
    backend.requires(LOWIO, LowIoOp.EXCLUSIVELOCK)
    d = _locked_file(backend)
    a = backend.client
    with backend.connect() as b, opened(a, d.path("locked.bin"), access=RW) as ha:
        with opened(b, d.path("locked.bin"), access=RW) as hb:
            assert_status(lock_status(a, ha.fobx, 0, 10, exclusive=True), OK, "A locks 0+10")
            assert_status(
                lock_status(b, hb.fobx, 0, 10, exclusive=True), NOT_GRANTED, "B locks 0+10"
            )
            assert_status(lock_status(b, hb.fobx, 9, 5, exclusive=True), NOT_GRANTED, "B locks 9+5")
            assert_status(
                lock_status(b, hb.fobx, 10, 10, exclusive=True), OK, "B locks the adjacent 10+10"
            )
            assert_status(
                lock_status(a, ha.fobx, 15, 1, exclusive=True), NOT_GRANTED, "A locks into B's"
            )
        # B's handle is closed: its locks went with it
        assert_status(lock_status(a, ha.fobx, 10, 10, exclusive=True), OK, "after B closed")


def test_shared_locks_coexist(backend: ConformanceBackend) -> None:
    backend.requires(LOWIO, LowIoOp.SHAREDLOCK)
    backend.requires(LOWIO, LowIoOp.EXCLUSIVELOCK)
    d = _locked_file(backend)
    a = backend.client
    with (
        backend.connect() as b,
        opened(a, d.path("locked.bin"), access=RW) as ha,
        opened(b, d.path("locked.bin"), access=RW) as hb,
    ):
        assert_status(lock_status(a, ha.fobx, 0, 10, exclusive=False), OK, "A shares 0+10")
        assert_status(lock_status(b, hb.fobx, 0, 10, exclusive=False), OK, "B shares 0+10")
        assert_status(lock_status(b, hb.fobx, 5, 10, exclusive=False), OK, "B shares 5+10")
        assert_status(
            lock_status(b, hb.fobx, 0, 10, exclusive=True), NOT_GRANTED, "B exclusive over shared"
        )
        assert_status(
            lock_status(a, ha.fobx, 0, 10, exclusive=True), NOT_GRANTED, "A exclusive over B's"
        )
        assert_status(lock_status(a, ha.fobx, 50, 10, exclusive=True), OK, "A locks 50+10")
        assert_status(
            lock_status(b, hb.fobx, 55, 1, exclusive=False), NOT_GRANTED, "B shares into A's"
        )


def test_unlock_then_lock(backend: ConformanceBackend) -> None:
    backend.requires(LOWIO, LowIoOp.EXCLUSIVELOCK)
    backend.requires(LOWIO, LowIoOp.UNLOCK)
    d = _locked_file(backend)
    a = backend.client
    with (
        backend.connect() as b,
        opened(a, d.path("locked.bin"), access=RW) as ha,
        opened(b, d.path("locked.bin"), access=RW) as hb,
    ):
        assert_status(lock_status(a, ha.fobx, 0, 10, exclusive=True), OK, "A locks 0+10")
        assert_status(lock_status(b, hb.fobx, 0, 10, exclusive=True), NOT_GRANTED, "B locks")
        assert_status(
            unlock_status(b, hb.fobx, 0, 10), S.STATUS_RANGE_NOT_LOCKED, "B unlocks A's lock"
        )
        assert_status(unlock_status(a, ha.fobx, 0, 10), OK, "A unlocks 0+10")
        assert_status(lock_status(b, hb.fobx, 0, 10, exclusive=True), OK, "B locks after unlock")
        assert_status(
            unlock_status(a, ha.fobx, 0, 10), S.STATUS_RANGE_NOT_LOCKED, "A unlocks again"
        )
        assert_status(lock_status(a, ha.fobx, 0, 10, exclusive=True), NOT_GRANTED, "A re-locks")


def test_io_in_a_range_locked_by_another_handle_conflicts(backend: ConformanceBackend) -> None:
    """Byte-range locks are mandatory on Windows: another handle's reads and writes of an
    exclusively locked range fail with STATUS_FILE_LOCK_CONFLICT; the owner's succeed."""
    backend.requires(LOWIO, LowIoOp.EXCLUSIVELOCK)
    backend.requires(LOWIO, LowIoOp.READ)
    backend.requires(LOWIO, LowIoOp.WRITE)
    d = _locked_file(backend)
    a = backend.client
    with (
        backend.connect() as b,
        opened(a, d.path("locked.bin"), access=RW) as ha,
        opened(b, d.path("locked.bin"), access=RW) as hb,
    ):
        assert_status(lock_status(a, ha.fobx, 0, 10, exclusive=True), OK, "A locks 0+10")
        done, _ = call_status(
            b, raw(IrpMj.WRITE, hb.fobx, lowio=LowIoParameters(offset=2, length=3)), b"BBB"
        )
        assert_status(done.status, S.STATUS_FILE_LOCK_CONFLICT, "B writes into A's lock")
        status, _ = read_status(b, hb.fobx, 0, 5)
        assert_status(status, S.STATUS_FILE_LOCK_CONFLICT, "B reads A's lock")
        assert a.write_handle(ha.fobx, 2, b"AAA") == 3
        assert b.write_handle(hb.fobx, 100, b"CCC") == 3
    assert d.get("locked.bin")[:10] == b"\0\0AAA\0\0\0\0\0"
    assert d.get("locked.bin")[100:103] == b"CCC"


# ================================================================================ notify
def _mentions(result: Any, name: str) -> bool:
    """Whether ``name`` appears as a string anywhere in a completion result."""
    if isinstance(result, str):
        return result == name or result.endswith("\\" + name)
    if isinstance(result, dict):
        return any(_mentions(v, name) for v in result.values())
    if isinstance(result, list | tuple):
        return any(_mentions(v, name) for v in result)
    return False


def test_change_notification_completes_on_a_create(backend: ConformanceBackend) -> None:
    """A pending IRP_MN_NOTIFY_CHANGE_DIRECTORY on a watched folder stays pending until a file
    is created in it, then completes naming that file (or with STATUS_NOTIFY_ENUM_DIR)."""
    backend.requires(LOWIO, LowIoOp.NOTIFY_CHANGE_DIRECTORY)
    d = backend.fresh_dir()
    c = backend.client
    with (
        backend.connect() as watcher,
        opened(
            watcher,
            d.unc,
            access=Access.FILE_LIST_DIRECTORY,
            options=CreateOptions.FILE_DIRECTORY_FILE,
        ) as h,
    ):
        pending_before = backend.pending()
        ctx = raw(
            IrpMj.DIRECTORY_CONTROL,
            h.fobx,
            minor=IrpMn.NOTIFY_CHANGE_DIRECTORY,
            lowio=LowIoParameters(
                completion_filter=FILE_NOTIFY_CHANGE_FILE_NAME | FILE_NOTIFY_CHANGE_DIR_NAME
            ),
        )
        notify = Background(lambda: call_status(watcher, ctx))
        wait_until(
            lambda: notify.done or backend.pending() > pending_before,
            5.0,
            "the notify request to reach the mini-redirector",
        )
        time.sleep(0.3)
        if notify.done:
            done, _ = notify.result(1.0)
            pytest.fail(f"the notify completed before any change: {status_text(done.status)}")
        # the watch may take a moment to be armed on the server: keep making changes
        created: list[str] = []
        end = time.monotonic() + 8.0
        for i in itertools.count():
            name = f"new-{i}.txt"
            with opened(c, d.path(name), access=RW, disposition=CreateDisposition.FILE_CREATE):
                created.append(name)
            step_end = time.monotonic() + 1.0
            while not notify.done and time.monotonic() < step_end:
                time.sleep(0.02)
            if notify.done or time.monotonic() >= end:
                break
        done_msg: tuple[RxCompletion, Any] = notify.result(2.0)
        done = done_msg[0]
        if done.status == STATUS_NOTIFY_ENUM_DIR:
            return
        assert_status(done.status, S.STATUS_SUCCESS, "the notify after a create")
        assert any(_mentions(done.result, name) for name in created), (
            f"the notify result does not name a created file {created}: {done.result!r}"
        )


def test_unlock_all_releases_every_lock_of_the_handle(backend: ConformanceBackend) -> None:
    backend.requires(LOWIO, LowIoOp.EXCLUSIVELOCK)
    backend.requires(LOWIO, LowIoOp.UNLOCK_MULTIPLE)
    d = _locked_file(backend)
    a = backend.client
    with (
        backend.connect() as b,
        opened(a, d.path("locked.bin"), access=RW) as ha,
        opened(b, d.path("locked.bin"), access=RW) as hb,
    ):
        assert_status(lock_status(a, ha.fobx, 0, 10, exclusive=True), OK, "A locks 0+10")
        assert_status(lock_status(a, ha.fobx, 50, 10, exclusive=True), OK, "A locks 50+10")
        assert_status(lock_status(b, hb.fobx, 100, 10, exclusive=True), OK, "B locks 100+10")
        done, _ = call_status(a, raw(IrpMj.LOCK_CONTROL, ha.fobx, minor=IrpMn.UNLOCK_ALL))
        assert_status(done.status, OK, "A unlocks all")
        assert_status(lock_status(b, hb.fobx, 0, 10, exclusive=True), OK, "B locks 0+10")
        assert_status(lock_status(b, hb.fobx, 50, 10, exclusive=True), OK, "B locks 50+10")
        # only A's locks went: B's own lock still holds against A
        assert_status(
            lock_status(a, ha.fobx, 100, 10, exclusive=True), NOT_GRANTED, "A locks into B's"
        )


def test_waiting_lock_is_granted_when_the_conflict_goes(backend: ConformanceBackend) -> None:
    """Without SL_FAIL_IMMEDIATELY a conflicting lock waits (within the request's deadline)
    and is granted once the other handle unlocks."""
    backend.requires(LOWIO, LowIoOp.EXCLUSIVELOCK)
    backend.requires(LOWIO, LowIoOp.UNLOCK)
    d = _locked_file(backend)
    a = backend.client
    with (
        backend.connect() as b,
        opened(a, d.path("locked.bin"), access=RW) as ha,
        opened(b, d.path("locked.bin"), access=RW) as hb,
    ):
        assert_status(lock_status(a, ha.fobx, 0, 10, exclusive=True), OK, "A locks 0+10")
        lowio = LowIoParameters(offset=0, length=10, flags=EXCLUSIVE_LOCK)  # no fail-immediately
        waiting = Background(
            lambda: call_status(b, raw(IrpMj.LOCK_CONTROL, hb.fobx, minor=IrpMn.LOCK, lowio=lowio))
        )
        time.sleep(0.5)
        if waiting.done:
            done, _ = waiting.result(1.0)
            pytest.fail(f"B's lock did not wait for A's: {status_text(done.status)}")
        assert_status(unlock_status(a, ha.fobx, 0, 10), OK, "A unlocks while B waits")
        done, _ = waiting.result(8.0)
        assert_status(done.status, OK, "B's waiting lock after A unlocked")
        assert_status(
            lock_status(a, ha.fobx, 0, 10, exclusive=True), NOT_GRANTED, "A locks B's range"
        )

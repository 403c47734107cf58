"""Requests the server may keep pending: byte-range locks that wait (LOCK, MS-SMB2 2.2.26) and
change notifications (CHANGE_NOTIFY, 2.2.35), and their cancellation (CANCEL, 2.2.30).

The server answers such a request STATUS_PENDING (an interim response, MS-SMB2 3.3.4.2) and
the outcome later. The mini-redirector answers STATUS_PENDING too and waits on a thread of its
own, so the connection's other requests go on meanwhile (the unlock that will grant a waiting
lock is not queued behind it); the outcome completes the request later. Past the request's
deadline (STATUS_IO_TIMEOUT), or when the core cancels it, an SMB2 CANCEL goes to the server.
Immediate locks, unlocks and UNLOCK_MULTIPLE are plain round trips. The rules the answers
keep: see docs/routines.md, Low I/O and Change notify.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from rdbss.minirdrs.base import Result
from rdbss.minirdrs.common.notify import (
    FILE_NOTIFY_VALID_MASK,
    notify_result,
    parse_notify_information,
)
from rdbss.minirdrs.smb.opens import SmbSrvOpen, roundtrip, send, show
from rdbss.minirdrs.smb.structures import (
    LOCK_EXCLUSIVE,
    LOCK_FAIL_IMMEDIATELY,
    LOCK_SHARED,
    LOCK_UNLOCK,
    change_notify_buffer,
    change_notify_request,
    lock_element,
)
from rdbss.wire.rxcontext import RxContext
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.smb")
S = NtStatus

#: a pending wait's cancel: its event, and the status to end it with (appended before setting)
Cancel = tuple[threading.Event, list[int]]
#: LowIoContext lock flags: SL_FAIL_IMMEDIATELY.
SL_FAIL_IMMEDIATELY = 0x1
#: How long before the request's own deadline a waiting request gives up.
MARGIN_S = 1.0
#: How often a waiting request looks whether it was cancelled.
CANCEL_POLL_S = 0.05


class Waits:
    """The pending waits by request id, and the threads that finish them."""

    def __init__(self, complete_later: Callable[[RxContext, Result], None]) -> None:
        self._complete_later = complete_later
        self._lock = threading.Lock()
        self._waits: dict[int, Cancel] = {}

    def in_background(
        self, ctx: RxContext, outcome: Callable[[Cancel], Result], name: str
    ) -> Result:
        """Run ``outcome`` on a thread of its own, cancellable through its ``Cancel``, and
        complete the request with what it gives; STATUS_PENDING now."""
        cancel: Cancel = (threading.Event(), [])
        with self._lock:
            self._waits[ctx.request_id] = cancel

        def wait() -> None:
            try:
                result = outcome(cancel)
            except NtStatusError as exc:
                result = Result(status=exc.status, message=exc.strerror or "")
            except Exception as exc:  # never leave the request without an answer
                log.exception("%s failed", name)
                result = Result(status=S.STATUS_INTERNAL_ERROR, message=str(exc))
            finally:
                with self._lock:
                    self._waits.pop(ctx.request_id, None)
            self._complete_later(ctx, result)

        threading.Thread(target=wait, name=name, daemon=True).start()
        return Result(status=S.STATUS_PENDING)

    def cancel(self, request_id: int, status: int) -> bool:
        """A waiting lock or change notification: its thread sends the SMB2 CANCEL and
        completes it."""
        with self._lock:
            entry = self._waits.get(request_id)
        if entry is None:
            return False
        event, status_box = entry
        if not event.is_set():
            status_box.append(status)
            event.set()
        return True

    def pending(self) -> int:
        with self._lock:
            return len(self._waits)


def await_final(
    op: SmbSrvOpen,
    request: Any,
    answer: Callable[[Any], Any],
    wait_s: float,
    what: str,
    waited_for: str = "granted",
    cancel: Cancel | None = None,
) -> Any:
    """Wait for a sent request the server may keep pending: the server answers PENDING and then
    the outcome, which ``answer`` unpacks. Past ``wait_s`` (STATUS_IO_TIMEOUT), or when the
    request is cancelled (``cancel``: its event, then the status), it is cancelled on the
    server with an SMB2 CANCEL. Runs on its own thread: no watchdog, deadlines of its own."""
    link = op.link
    deadline = time.monotonic() + wait_s
    cancelled, status = cancel if cancel is not None else (threading.Event(), [])
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or cancelled.is_set():
            break
        if not request.response_event.wait(min(remaining, CANCEL_POLL_S)):
            continue
        with request.response_event_lock:
            response = request.response
            pending = response is not None and response["status"].get_value() == S.STATUS_PENDING
            if pending:
                request.response_event.clear()
        if pending:
            link.check_connection(what)  # or woken by a dying connection?
            continue
        return link.mapped(what, lambda: answer(request))

    # Still waiting at the deadline or cancelled: cancel on the server (SMB2 CANCEL), then
    # take whatever the server says last (granted meanwhile: the lock is held).
    def cancel_on_server() -> Any:
        request.cancel()
        request.response_event.wait(MARGIN_S)
        return answer(request)

    try:
        return link.mapped(what, cancel_on_server)
    except NtStatusError as exc:
        if exc.status == S.STATUS_CANCELLED and cancelled.is_set():
            raise NtStatusError(
                status[0] if status else S.STATUS_CANCELLED, f"{what}: cancelled"
            ) from None
        if exc.status == S.STATUS_CANCELLED:
            raise NtStatusError(
                S.STATUS_IO_TIMEOUT, f"{what}: not {waited_for} within {wait_s:.1f} s"
            ) from None
        raise


def _wait_s(ctx: RxContext) -> float:
    return max(0.0, ctx.timeout_ms / 1000.0 - MARGIN_S)


# --------------------------------------------------------------------------------------------
# Byte-range locks
# --------------------------------------------------------------------------------------------


def _check_range(offset: int, length: int) -> None:
    if offset < 0 or length < 0 or offset + length > 0xFFFFFFFFFFFFFFFF:
        raise NtStatusError(S.STATUS_INVALID_PARAMETER, f"bad lock range {offset}+{length}")


def lock_range(op: SmbSrvOpen, ctx: RxContext, shared: bool, waits: Waits) -> Result:
    lowio = ctx.lowio
    assert lowio is not None
    _check_range(lowio.offset, lowio.length)
    immediate = bool(lowio.flags & SL_FAIL_IMMEDIATELY)
    flags = LOCK_SHARED if shared else LOCK_EXCLUSIVE
    if immediate:
        flags |= LOCK_FAIL_IMMEDIATELY
    element = lock_element(lowio.offset, lowio.length, flags)
    message, answer = op.handle.lock([element], send=False)
    what = f"cannot lock {show(op.path)} at {lowio.offset}+{lowio.length}"
    lock = (lowio.offset, lowio.length, shared)
    if immediate:
        roundtrip(op, what, message, answer)
        op.locks.append(lock)
        return Result()
    wait_s = _wait_s(ctx)
    request = op.link.call(what, lambda: send(op, message))

    def outcome(cancel: Cancel) -> Result:
        await_final(op, request, answer, wait_s, what, cancel=cancel)
        op.locks.append(lock)
        return Result()

    return waits.in_background(ctx, outcome, "smb-lock-wait")


def unlock(op: SmbSrvOpen, offset: int, length: int) -> Result:
    _check_range(offset, length)
    element = lock_element(offset, length, LOCK_UNLOCK)
    message, answer = op.handle.lock([element], send=False)
    roundtrip(op, f"cannot unlock {show(op.path)} at {offset}+{length}", message, answer)
    for i, (o, n, _shared) in enumerate(op.locks):
        if (o, n) == (offset, length):
            del op.locks[i]
            break
    return Result()


def unlock_all(op: SmbSrvOpen) -> Result:
    """UNLOCK_MULTIPLE: release every lock this handle holds (SMB2 has no "unlock all")."""
    while op.locks:
        offset, length, _shared = op.locks[-1]
        element = lock_element(offset, length, LOCK_UNLOCK)
        message, answer = op.handle.lock([element], send=False)
        try:
            roundtrip(op, f"cannot unlock {show(op.path)}", message, answer)
        except NtStatusError as exc:
            if exc.status != S.STATUS_RANGE_NOT_LOCKED:
                raise
        op.locks.pop()
    return Result()


# --------------------------------------------------------------------------------------------
# Change notification: the server's own SMB2 CHANGE_NOTIFY
# --------------------------------------------------------------------------------------------


def notify(op: SmbSrvOpen, ctx: RxContext, waits: Waits) -> Result:
    """Send SMB2 CHANGE_NOTIFY and wait for it in the background. The server keeps the changes
    of a handle between two notifies, completes a pending one with STATUS_NOTIFY_CLEANUP when
    the handle is closed, and with STATUS_NOTIFY_ENUM_DIR when more changed than fits."""
    lowio = ctx.lowio
    assert lowio is not None
    if not op.is_dir:
        raise NtStatusError(S.STATUS_INVALID_PARAMETER, f"{show(op.path)} is not a directory")
    completion_filter = lowio.completion_filter & FILE_NOTIFY_VALID_MASK
    if not completion_filter:
        raise NtStatusError(S.STATUS_INVALID_PARAMETER, "an empty completion filter")
    message = change_notify_request(op.handle.file_id, completion_filter, lowio.watch_tree)
    what = f"cannot watch {show(op.path)}"
    request = op.link.call(what, lambda: send(op, message))
    wait_s = _wait_s(ctx)

    def answer(sent: Any) -> bytes:
        return change_notify_buffer(op.link.connection.receive(sent))

    def outcome(cancel: Cancel) -> Result:
        data = await_final(op, request, answer, wait_s, what, "changed", cancel)
        return notify_result(parse_notify_information(data))

    return waits.in_background(ctx, outcome, "smb-notify-wait")

"""Byte-range locks of the local mini-redirector, kept here: the local file system has no
Windows locks. Locks belong to a handle (the Fobx), since the core may give one SrvOpen to
several handles (collapsing); they are kept by file (device, inode), so two opens of one file
see each other's locks. A lock that cannot be granted at once waits (STATUS_PENDING) until an
unlock grants it, or gives up just before its request's deadline (STATUS_IO_TIMEOUT), or is
cancelled."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rdbss.minirdrs.base import Result
from rdbss.minirdrs.common.locks import FileLocks, Lock
from rdbss.wire.constants import LowIoOp
from rdbss.wire.rxcontext import LowIoParameters, RxContext
from rdbss.wire.status import NtStatus

S = NtStatus
_SL_FAIL_IMMEDIATELY = 0x01
_LOCK_MARGIN_S = 0.5  # a waiting lock gives up this long before its deadline

FileKey = tuple[int, int]
Token = tuple[int, int]  # (request id, owner)


def lock_owner(ctx: RxContext) -> int:
    """Locks belong to a handle (the Fobx), not to the SrvOpen several handles may share;
    a request without a handle (never from the core) owns by its SrvOpen."""
    if ctx.fobx is not None:
        return ctx.fobx
    return -int(ctx.srv_open or 1)


class RangeLocks:
    """The lock table of every file, and the waiting lock requests. Thread-safe: the timers
    of waiting locks run on their own threads."""

    def __init__(self, complete_later: Callable[[RxContext, Result], None]) -> None:
        self._complete_later = complete_later
        self.lock = threading.RLock()
        self._files: dict[FileKey, FileLocks] = {}
        self._waiters: dict[Token, tuple[RxContext, FileKey]] = {}

    @property
    def pending(self) -> int:
        with self.lock:
            return len(self._waiters)

    def request(self, ctx: RxContext, key: FileKey, owner: int, lowio: LowIoParameters) -> Result:
        """SHAREDLOCK, EXCLUSIVELOCK, UNLOCK_SINGLE or UNLOCK_ALL (UNLOCK_MULTIPLE) of ``owner``."""
        with self.lock:
            if lowio.operation in (LowIoOp.SHAREDLOCK, LowIoOp.EXCLUSIVELOCK):
                return self._lock_range(ctx, key, owner, lowio)
            if lowio.operation == LowIoOp.UNLOCK:
                locks = self._files.get(key, FileLocks())
                self._granted(key, locks.unlock(owner, lowio.offset, lowio.length))
                return Result()
            self.release(key, owner)
            return Result()

    def _lock_range(
        self, ctx: RxContext, key: FileKey, owner: int, lowio: LowIoParameters
    ) -> Result:
        locks = self._files.setdefault(key, FileLocks())
        lock = Lock(owner, lowio.offset, lowio.length, lowio.operation == LowIoOp.EXCLUSIVELOCK)
        if lowio.flags & _SL_FAIL_IMMEDIATELY:
            locks.lock(lock)
            return Result()
        token = (ctx.request_id, owner)
        if locks.lock(lock, token):
            return Result()
        # wait (STATUS_PENDING) until an unlock grants it, or give up just before the deadline
        self._waiters[token] = (ctx, key)
        wait_s = max(0.0, ctx.timeout_ms / 1000.0 - _LOCK_MARGIN_S)
        timer = threading.Timer(wait_s, self._timed_out, args=(token,))
        timer.daemon = True
        timer.start()
        return Result(status=S.STATUS_PENDING)

    def _timed_out(self, token: Token) -> None:
        self._stop_waiting(
            token, Result(status=S.STATUS_IO_TIMEOUT, message="the lock was not granted in time")
        )

    def _stop_waiting(self, token: Token, result: Result) -> bool:
        """A waiting lock gives up (deadline or cancel): it never gets the range, and the
        waiters it held back (arrival order) are granted if they can be now."""
        with self.lock:
            entry = self._waiters.pop(token, None)
            if entry is None:
                return False  # granted or ended meanwhile
            ctx, key = entry
            locks = self._files.get(key)
            if locks is not None:
                locks.cancel(token)
                self._granted(key, locks.grant_waiting())
        self._complete_later(ctx, result)
        return True

    def cancel(self, request_id: int, status: int) -> bool:
        with self.lock:
            token = next((t for t in self._waiters if t[0] == request_id), None)
        result = Result(status=status, message="cancelled")
        return token is not None and self._stop_waiting(token, result)

    def _granted(self, key: FileKey, tokens: list[Any]) -> None:
        for token in tokens:
            entry = self._waiters.pop(token, None)
            if entry is not None:
                self._complete_later(entry[0], Result())
        locks = self._files.get(key)
        if locks is not None and locks.empty:
            del self._files[key]

    def release(self, key: FileKey, owner: int) -> None:
        """UNLOCK_ALL, and at close: drop the owner's locks, cancel its waiting ones."""
        with self.lock:
            locks = self._files.get(key)
            if locks is None:
                return
            for token, (ctx, _) in list(self._waiters.items()):
                if token[1] == owner:
                    del self._waiters[token]
                    self._complete_later(ctx, Result(status=S.STATUS_CANCELLED, message="closed"))
            self._granted(key, locks.unlock_all(owner))

    def check_io(
        self, key: Callable[[], FileKey], owner: int, offset: int, length: int, write: bool
    ) -> None:
        """Mandatory byte-range locks: I/O into a range another handle locked conflicts.
        ``key`` is only called when some file has locks at all."""
        if self._files:
            locks = self._files.get(key())
            if locks is not None:
                locks.check_io(owner, max(offset, 0), length, write)

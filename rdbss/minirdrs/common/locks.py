"""Byte-range locks with Windows semantics, for a mini-redirector that has to keep them itself
(the local one). Pure code: no threads, no clocks; the caller decides when a waiting lock gives
up and calls ``cancel``.

- A lock is (owner, offset, length, exclusive); the owner is an open (SrvOpen id).
- Shared locks coexist with shared locks of any owner; an exclusive lock conflicts with every
  lock of another owner on an overlapping range, and with the same owner's shared locks... except
  that Windows lets an owner take a shared lock inside its own exclusive one, and an exclusive
  inside its own exclusive one (locks stack).
- A zero-length lock conflicts with nothing.
- Mandatory: a read of a range another owner holds exclusively, or a write of a range another
  owner holds at all, is refused (STATUS_FILE_LOCK_CONFLICT).
- Unlock must name an existing lock exactly (offset and length, same owner), else
  STATUS_RANGE_NOT_LOCKED. Releasing locks grants waiting ones in arrival order.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from rdbss.wire.status import NtStatus, NtStatusError


@dataclass(frozen=True, slots=True)
class Lock:
    owner: int
    offset: int
    length: int
    exclusive: bool

    def overlaps(self, offset: int, length: int) -> bool:
        if self.length == 0 or length == 0:
            return False
        return self.offset < offset + length and offset < self.offset + self.length


@dataclass(slots=True)
class Waiter:
    lock: Lock
    token: Hashable  # the caller's handle on the waiting request


@dataclass
class FileLocks:
    """The locks of one file."""

    held: list[Lock] = field(default_factory=list)
    waiting: list[Waiter] = field(default_factory=list)

    def _conflicts(self, lock: Lock) -> bool:
        for other in self.held:
            if not other.overlaps(lock.offset, lock.length):
                continue
            if other.owner == lock.owner:
                if other.exclusive:
                    continue  # inside one's own exclusive lock anything stacks
                if lock.exclusive:
                    return True  # exclusive over one's own shared lock
                continue
            if lock.exclusive or other.exclusive:
                return True
        return False

    def lock(self, lock: Lock, token: Hashable | None = None) -> bool:
        """Grant ``lock`` now (True), or queue it under ``token`` (False). With no token (fail
        immediately) a conflict raises STATUS_LOCK_NOT_GRANTED."""
        if lock.offset < 0 or lock.length < 0:
            raise NtStatusError(NtStatus.STATUS_INVALID_PARAMETER, "negative lock range")
        if not self._conflicts(lock) and not any(
            w.lock.overlaps(lock.offset, lock.length) for w in self.waiting
        ):
            self.held.append(lock)
            return True
        if token is None:
            raise NtStatusError(
                NtStatus.STATUS_LOCK_NOT_GRANTED,
                f"bytes {lock.offset}+{lock.length} are locked by another open",
            )
        self.waiting.append(Waiter(lock, token))
        return False

    def unlock(self, owner: int, offset: int, length: int) -> list[Hashable]:
        """Release one lock; returns the tokens of waiting locks that are now granted."""
        for i, held in enumerate(self.held):
            if (held.owner, held.offset, held.length) == (owner, offset, length):
                del self.held[i]
                return self._grant()
        raise NtStatusError(
            NtStatus.STATUS_RANGE_NOT_LOCKED, f"no lock of this open at {offset}+{length}"
        )

    def unlock_all(self, owner: int) -> list[Hashable]:
        """Release every lock of ``owner`` (UNLOCK_ALL, and at close); drops its waiters too."""
        self.held = [h for h in self.held if h.owner != owner]
        self.waiting = [w for w in self.waiting if w.lock.owner != owner]
        return self._grant()

    def cancel(self, token: Hashable) -> bool:
        """A waiting lock gives up (deadline, cancel); True if it was still waiting. Waiters
        it held back may be grantable now: see ``grant_waiting``."""
        for i, waiter in enumerate(self.waiting):
            if waiter.token == token:
                del self.waiting[i]
                return True
        return False

    def grant_waiting(self) -> list[Hashable]:
        """Grant what can be granted now (after a waiter gave up); their tokens."""
        return self._grant()

    def _grant(self) -> list[Hashable]:
        granted: list[Hashable] = []
        progress = True
        while progress:
            progress = False
            for i, waiter in enumerate(self.waiting):
                earlier = self.waiting[:i]
                blocked = any(
                    w.lock.overlaps(waiter.lock.offset, waiter.lock.length) for w in earlier
                )
                if not blocked and not self._conflicts(waiter.lock):
                    self.held.append(waiter.lock)
                    granted.append(waiter.token)
                    del self.waiting[i]
                    progress = True
                    break
        return granted

    def check_io(self, owner: int, offset: int, length: int, write: bool) -> None:
        """Mandatory locking: refuse I/O into a range another open locked."""
        for held in self.held:
            if held.owner == owner or not held.overlaps(offset, length):
                continue
            if write or held.exclusive:
                raise NtStatusError(
                    NtStatus.STATUS_FILE_LOCK_CONFLICT,
                    f"bytes {offset}+{length} are locked by another open",
                )

    @property
    def empty(self) -> bool:
        return not self.held and not self.waiting

"""Read leases for clients on the daemon's host (see docs/caching.md, Read leases). Pure code.

While an Fcb's buffering state has READCACHING, a client that asked for it (``args={"lease":
True}`` on its create) may keep what it reads of the file and serve it again with no message
at all. The core keeps one *epoch* per leased Fcb in a table the clients map read-only
(rdbss/epochs.py); a grant names the Fcb's slot and its epoch, and a client's cached bytes are
good exactly while the slot still holds that epoch. A break bumps the epoch, and the core breaks
before anything that could change what a read returns proceeds: a write, an open that writes,
deletes or overwrites, a rename, a delete, a change of size, the loss of the mini-redirector or
connection, and the loss of READCACHING itself.

Epochs only grow, also across the Fcbs that use a slot one after the other: a slot taken by a
new Fcb is bumped first, so an old grant on it never matches again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rdbss.model.buffering import FcbState
from rdbss.model.sharing import data_access
from rdbss.wire.constants import CreateDisposition, CreateOptions, FileInformationClass

#: epoch slots in the table by default (8 bytes each)
DEFAULT_SLOTS = 4096

#: dispositions that replace a file's data even without write access asked
_REPLACING = frozenset(
    {
        CreateDisposition.FILE_SUPERSEDE,
        CreateDisposition.FILE_OVERWRITE,
        CreateDisposition.FILE_OVERWRITE_IF,
    }
)
#: set-information classes after which a leased read could answer differently
_BREAKING_INFO = frozenset(
    {
        FileInformationClass.FileRenameInformation,
        FileInformationClass.FileDispositionInformation,
        FileInformationClass.FileEndOfFileInformation,
        FileInformationClass.FileAllocationInformation,
    }
)


def asked(args: Mapping[str, Any] | None) -> bool:
    """Whether a create's arguments ask for a read lease."""
    return args is not None and args.get("lease") is True


def may_grant(
    buffering: int, *, directory: bool, access: int, local: bool, delete_pending: bool
) -> bool:
    """A lease is granted to a handle that reads a file (not a directory) whose buffering state
    has READCACHING, from a client of this host (only it can map the epoch table), while no
    delete is pending on the file."""
    return (
        local
        and not directory
        and not delete_pending
        and bool(buffering & FcbState.READCACHING_ENABLED)
        and data_access(access)[0]
    )


def open_breaks(access: int, disposition: int, options: int) -> bool:
    """Whether an open of a leased file breaks its leases before it proceeds: it may write or
    delete it, or replaces its data."""
    _reads, writes, deletes = data_access(access)
    return (
        writes
        or deletes
        or disposition in _REPLACING
        or bool(options & CreateOptions.FILE_DELETE_ON_CLOSE)
    )


def info_breaks(info_class: int) -> bool:
    """Whether setting this information breaks the file's leases (rename, delete, size)."""
    return info_class in _BREAKING_INFO


class EpochSlots:
    """The slots of the epoch table: which Fcb (by its serial) holds which slot, and each
    slot's epoch. Every method that changes an epoch returns ``(slot, epoch)`` for the caller
    to store in the shared table."""

    def __init__(self, capacity: int = DEFAULT_SLOTS) -> None:
        if capacity <= 0:
            raise ValueError("the epoch table needs at least one slot")
        self.capacity = capacity
        self.epochs = [0] * capacity
        self.slot_of: dict[int, int] = {}
        self._free = list(range(capacity - 1, -1, -1))  # popped from the end: slot 0 first

    def __len__(self) -> int:
        return len(self.slot_of)

    def grant(
        self, key: int, in_use: Callable[[int], bool] | None = None
    ) -> tuple[int, int] | None:
        """The slot and epoch a new grant on ``key`` carries: its slot, or a free one (bumped
        first). When none is free, slots whose key ``in_use`` says is gone are released first;
        None when the table is still full."""
        slot = self.slot_of.get(key)
        if slot is not None:
            return slot, self.epochs[slot]
        if not self._free and in_use is not None:
            for gone in [k for k in self.slot_of if not in_use(k)]:
                self.release(gone)
        if not self._free:
            return None
        slot = self._free.pop()
        self.slot_of[key] = slot
        return self._bump(slot)

    def bump(self, key: int) -> tuple[int, int] | None:
        """Break ``key``'s grants: its slot's new epoch, or None when it holds no slot."""
        slot = self.slot_of.get(key)
        return None if slot is None else self._bump(slot)

    def release(self, key: int) -> tuple[int, int] | None:
        """``key`` is gone: its grants break and its slot is free again."""
        slot = self.slot_of.pop(key, None)
        if slot is None:
            return None
        self._free.append(slot)
        return self._bump(slot)

    def _bump(self, slot: int) -> tuple[int, int]:
        self.epochs[slot] += 1
        return slot, self.epochs[slot]

"""The epoch table of read leases (rdbss/model/leases.py): a file in /dev/shm that the core
writes and the clients of its host map read-only.

The file is ``rdbss-epochs-<core pid>-<random>``, mode 0600 (private to the daemon's user:
only its own clients can map it), made on the first grant. It holds a magic number and then
one 8-byte epoch per slot, in native byte order; each is stored and loaded whole (aligned
8-byte words), so a client sees an epoch before or after a bump, never a mix. The core bumps an
epoch before it sends what the bump protects against (a write, say) on its way, and the
system call that sends it orders the store before it.

A client opens only a regular file of its own user that nobody else may read, named as above,
with the magic number and a whole number of slots. The core unlinks its table when it stops,
after breaking every grant; a client's mapping of it stays valid, and a new core makes a new
table. Tables of cores that are gone are swept when a core makes one.
"""

from __future__ import annotations

import contextlib
import re

from rdbss import shm
from rdbss.wire.status import NtStatus, NtStatusError

NAME = re.compile(r"rdbss-epochs-([0-9]{1,10})-([0-9a-f]{16})")
MAGIC = int.from_bytes(b"RDBSSEP1", "little")
WORD = 8


class EpochTable:
    """The core's side: made with ``slots`` epochs, all 0."""

    def __init__(self, slots: int) -> None:
        shm.sweep_stale(NAME)
        self.slots = slots
        self.name, self._map = shm.make_private("rdbss-epochs", WORD * (slots + 1))
        self.path = shm.SHM_DIR / self.name
        self._words = memoryview(self._map).cast("Q")
        self._words[0] = MAGIC

    def store(self, slot: int, epoch: int) -> None:
        self._words[slot + 1] = epoch

    def close(self) -> None:
        self.path.unlink(missing_ok=True)
        self._words.release()
        with contextlib.suppress(BufferError):
            self._map.close()


class EpochView:
    """A client's read-only view of a core's table."""

    def __init__(self, name: str) -> None:
        if NAME.fullmatch(name) is None:
            raise NtStatusError(NtStatus.STATUS_INVALID_PARAMETER, "bad epoch table name")
        self.name = name
        self._map = shm.map_private(name, writable=False, what="epoch table")
        if len(self._map) % WORD or len(self._map) < 2 * WORD:
            self._map.close()
            raise NtStatusError(NtStatus.STATUS_INVALID_PARAMETER, f"{name}: not an epoch table")
        self._words = memoryview(self._map).cast("Q")
        if self._words[0] != MAGIC:
            self.close()
            raise NtStatusError(NtStatus.STATUS_INVALID_PARAMETER, f"{name}: not an epoch table")
        self.slots = len(self._words) - 1

    def load(self, slot: int) -> int:
        return self._words[slot + 1]

    def close(self) -> None:
        self._words.release()
        with contextlib.suppress(BufferError):
            self._map.close()

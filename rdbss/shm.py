"""The shared-memory data path for large reads and writes on this host.

A local client makes an arena: a file in /dev/shm (tmpfs, mode 0600, named
``rdbss-<pid>-<random>``) cut into slots. A READ that carries ``args={"shm": name, "shm_off":
offset}`` asks the mini-redirector to put the bytes into the arena at that offset instead of
sending them back through the sockets: the local mini-redirector reads the file straight into
the shared pages (one copy instead of one per socket hop); others copy their result in. The
completion says where the bytes are (``result={"shm": n}``); an answer that carries a payload
instead (the core's cache, a mini-redirector on another host) is used as it is, so the shared
path is only ever a hint for reads.

A WRITE that carries the same arguments and no payload takes its ``lowio.length`` bytes from the
slot, which the client filled before sending it: the mini-redirector host hands the slot to the
routine as its payload. Where the bytes must leave the shared pages (a mini-redirector on another
host, or a write the core keeps for write-behind), the core copies them out of the arena and
sends them as a payload.

Only for clients and mini-redirectors on the daemon's host: the core drops the hint of a READ
for remote peers, and refuses a WRITE with the hint from a remote client. The server side opens
only regular files in /dev/shm named as above, owned by its own user and not readable by
others, and checks every range against the file's size.

A slot is used again only once its request has settled: a request that timed out or was
cancelled may still be running in the mini-redirector, which would then read or fill a slot
that holds another request's bytes. Clients retire the whole arena then (``settled``): the
mini-redirector's mapping of the old file stays valid, and the next request makes a new one.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import stat
import threading
from collections import OrderedDict
from pathlib import Path

from rdbss.wire.status import NtStatus, NtStatusError

SHM_DIR = Path("/dev/shm")
NAME = re.compile(r"rdbss-([0-9]{1,10})-([0-9a-f]{16})")
SLOT_BYTES = 4 << 20
SLOTS = 8
MIN_READ_BYTES = 256 << 10  # smaller reads go through the sockets (a slot costs a round trip)
MIN_WRITE_BYTES = 256 << 10  # likewise for writes
MAX_MAPS = 32  # arenas a mini-redirector process keeps mapped at once


def available() -> bool:
    return SHM_DIR.is_dir() and os.access(SHM_DIR, os.W_OK)


def settled(exc: BaseException) -> bool:
    """Whether a shared-memory request that raised ``exc`` is over for the mini-redirector too,
    so that its slot can be used again: a status it answered, not a deadline, a cancel (the
    caller's, or a task's), or anything else that ended the wait before the answer came."""
    return isinstance(exc, NtStatusError) and exc.status not in _UNSETTLED


_UNSETTLED = frozenset({NtStatus.STATUS_IO_TIMEOUT, NtStatus.STATUS_CANCELLED})


class Arena:
    """The client's side: one shared file, ``slots`` slots of ``slot_bytes``. Not thread-safe;
    each client object owns its arena."""

    def __init__(self, slots: int = SLOTS, slot_bytes: int = SLOT_BYTES) -> None:
        sweep_stale()
        self.slot_bytes = slot_bytes
        self.slots = slots
        self.name, self._map = make_private("rdbss", slots * slot_bytes)
        self.path = SHM_DIR / self.name
        self._view = memoryview(self._map)
        self.free = list(range(slots))

    def args(self, slot: int) -> dict[str, str | int]:
        """The READ arguments that target ``slot``."""
        return {"shm": self.name, "shm_off": slot * self.slot_bytes}

    def view(self, slot: int, length: int) -> memoryview:
        start = slot * self.slot_bytes
        return self._view[start : start + min(length, self.slot_bytes)]

    def close(self) -> None:
        self.path.unlink(missing_ok=True)
        self._view.release()
        with contextlib.suppress(BufferError):  # a view still held by the caller
            self._map.close()


def sweep_stale(pattern: re.Pattern[str] = NAME) -> int:
    """Remove the files named by ``pattern`` (its first group the pid of the process that made
    it: an arena, by default) of processes that are gone (one that crashed leaves its file)."""
    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(SHM_DIR):
            match = pattern.fullmatch(entry.name)
            if match is None:
                continue
            pid = int(match.group(1))
            if pid == os.getpid() or Path(f"/proc/{pid}").exists():
                continue
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_uid == os.getuid():
                    os.unlink(entry.path)
                    removed += 1
    return removed


class Maps:
    """The mini-redirector's side: arenas mapped on first use (bounded, least recently used
    dropped first), every access checked."""

    def __init__(self, limit: int = MAX_MAPS) -> None:
        self._maps: OrderedDict[str, mmap.mmap] = OrderedDict()
        self._lock = threading.Lock()
        self._limit = limit

    def target(self, args: object, length: int) -> memoryview | None:
        """The slice of an arena a READ asks to be filled (or a WRITE takes its bytes from),
        or None for a request without the hint. STATUS_INVALID_PARAMETER for a hint that names
        no acceptable arena or range."""
        if not isinstance(args, dict) or "shm" not in args:
            return None
        name, offset = args.get("shm"), args.get("shm_off")
        if not isinstance(name, str) or NAME.fullmatch(name) is None:
            raise NtStatusError(NtStatus.STATUS_INVALID_PARAMETER, "bad shared-memory name")
        if type(offset) is not int or offset < 0 or length <= 0:
            raise NtStatusError(NtStatus.STATUS_INVALID_PARAMETER, "bad shared-memory range")
        with self._lock:
            mapped = self._maps.get(name)
            if mapped is None:
                mapped = self._open(name)
                self._maps[name] = mapped
                while len(self._maps) > self._limit:
                    _, old = self._maps.popitem(last=False)
                    with contextlib.suppress(BufferError):
                        old.close()
            self._maps.move_to_end(name)
            if offset + length > len(mapped):
                raise NtStatusError(
                    NtStatus.STATUS_INVALID_PARAMETER,
                    f"shared-memory range {offset}+{length} is outside the arena",
                )
            return memoryview(mapped)[offset : offset + length]

    @staticmethod
    def _open(name: str) -> mmap.mmap:
        return map_private(name)

    def close(self) -> None:
        with self._lock:
            for mapped in self._maps.values():
                with contextlib.suppress(BufferError):
                    mapped.close()
            self._maps.clear()


def make_private(prefix: str, size: int) -> tuple[str, mmap.mmap]:
    """Make a new file ``<prefix>-<pid>-<random>`` of ``size`` bytes in SHM_DIR, mode 0600 (only
    this user's processes may map it), and map it; its name and the mapping."""
    name = f"{prefix}-{os.getpid()}-{os.urandom(8).hex()}"
    path = SHM_DIR / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
        return name, mmap.mmap(fd, size)
    except OSError:
        path.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def map_private(name: str, *, writable: bool = True, what: str = "arena") -> mmap.mmap:
    """Map the file ``name`` of SHM_DIR, which must be a regular file of this user that nobody
    else may read or write, and not empty. STATUS_INVALID_PARAMETER otherwise."""
    flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(SHM_DIR / name, flags)
    except OSError as exc:
        raise NtStatusError(
            NtStatus.STATUS_INVALID_PARAMETER, f"shared memory {name}: {exc.strerror}"
        ) from None
    try:
        info = os.fstat(fd)
        if (
            not stat.S_ISREG(info.st_mode)
            or info.st_uid != os.getuid()
            or stat.S_IMODE(info.st_mode) & 0o077
            or info.st_size == 0
        ):
            raise NtStatusError(
                NtStatus.STATUS_INVALID_PARAMETER,
                f"shared memory {name} is not a private {what} of this user",
            )
        access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
        return mmap.mmap(fd, info.st_size, access=access)
    finally:
        os.close(fd)

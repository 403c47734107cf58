"""Mount a share (or a folder in it) of the rdbss daemon with FUSE, so every program can use it.

    from rdbss.fuse_mount import mount
    mount(r"\\\\local\\data", "/mnt/data")        # blocks until `fusermount3 -u /mnt/data`

or ``rdbss mount '\\\\local\\data' /mnt/data``. Built on mfusepy (ctypes over libfuse3's
high-level API): a path-based, multi-threaded file system whose calls are requests to the
daemon through one ``rdbss.client.Client``. Each open file (FUSE file handle) keeps one daemon
handle (FOBX) until release, so reads and writes go at their offsets, appends and ``echo > f``
work, and a file stays usable after it is renamed. Failures are the NTSTATUS of the daemon
turned into the errno of the matching OSError (ENOENT, EEXIST, ENOTEMPTY, EACCES...).

The rules it keeps, and why:
- Close-to-open: FUSE ``flush``, which close(2) waits for, sends what the handle gathered and
  flushes the daemon handle if it wrote (WebDAV uploads its staged file then, the core sends
  its deferred writes), so when close returns the server has the file, and a failure there is
  close's error. ``release`` only closes the daemon handle.
- Times are set through a writable handle already open on the path (MS-FSA 2.1.5.14.2: an SMB
  server then keeps them instead of stamping the last write's time when that handle closes), a
  delete or rename refused for READONLY clears it and tries again, a chown to the user's own
  ids succeeds, modes are kept where the backend keeps them: as the Linux CIFS client does.
- Names and attributes learned from any answer are kept for ``attr_timeout`` (rdbss.fuse_cache),
  the same window the kernel gets for its entry and attribute caches.
- Large I/O: a reader's open brings the first 128 KiB with it (one compound), a sequential
  reader is served from a 4 MiB window fetched in one request, sequential writes are gathered
  into 4 MiB daemon writes; both go through shared memory with a daemon on this host.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import mfusepy  # type: ignore[import-untyped,unused-ignore]

from rdbss import requests as rq
from rdbss import shm
from rdbss.client import Client, FileInfo
from rdbss.config import Config, load_config
from rdbss.fuse_cache import AttrCache, chown_allowed, parent_of
from rdbss.wire import (
    Access,
    CreateDisposition,
    CreateOptions,
    FileAttributes,
    FileInformationClass,
    NtStatus,
    NtStatusError,
    error_for_status,
)

__all__ = ["RdbssOperations", "cmd_mount", "mount"]

log = logging.getLogger("rdbss.fuse")

# utimensat(2) special nanosecond values; libfuse3 passes them with tv_sec = 0.
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
BLOCK = 512
IO_SIZE = 1 << 20  # st_blksize (what cp and friends use as their buffer size), max_write
#: How long the kernel and the mount trust a name's attributes (seconds), by default: a change
#: made behind the mount's back is seen after at most this long (``-o attr_timeout=``).
ATTR_TIMEOUT_S = 1.0
READ_AHEAD_BYTES = 4 << 20  # what one read fetches for a sequential reader (shared memory)
FIRST_READ = 128 << 10  # read with the open of a reader: the kernel's first read-ahead
GATHER_BYTES = 4 << 20  # sequential writes gathered into one daemon write of up to this much
MAX_BACKGROUND = 64  # the kernel's asynchronous requests in flight (read-ahead, writeback)
FUSE_CAP_WRITEBACK_CACHE = 1 << 16  # fuse_common.h
FUSE_READDIR_PLUS = 1 << 0  # fuse.h: enum fuse_readdir_flags
FUSE_FILL_DIR_PLUS = 1 << 1  # fuse.h: enum fuse_fill_dir_flags
NORMAL = int(FileAttributes.NORMAL)
#: What a backend that keeps no permission bits answers a mode change with.
_NO_MODES = frozenset(
    {
        NtStatus.STATUS_NOT_IMPLEMENTED,
        NtStatus.STATUS_NOT_SUPPORTED,
        NtStatus.STATUS_INVALID_PARAMETER,
    }
)

F = TypeVar("F", bound=Callable[..., Any])


def _errno_of(exc: BaseException) -> int:
    code = getattr(exc, "errno", None)
    return code if isinstance(code, int) and code > 0 else errno.EIO


def _fuse_errors(func: F) -> F:
    """Turn every failure into the FuseOSError of its errno (NtStatusError is an OSError whose
    errno is the one of its OSError subclass; anything else is EIO)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except mfusepy.FuseOSError:
            raise
        except OSError as exc:
            log.debug("%s%r: %s", func.__name__, args[1:], exc)
            raise mfusepy.FuseOSError(_errno_of(exc)) from exc
        except Exception as exc:
            log.exception("%s%r failed", func.__name__, args[1:])
            raise mfusepy.FuseOSError(errno.EIO) from exc

    return cast(F, wrapper)


def _forgets(*, tree: bool = False) -> Callable[[F], F]:
    """After a change by path (done or failed), the cache forgets every path it was given
    again (and with ``tree`` what is under them): a lookup or a listing running meanwhile, in
    another thread, may have learned the state from before the change."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(self: RdbssOperations, *args: Any) -> Any:
            try:
                return func(self, *args)
            finally:
                for arg in args:
                    if isinstance(arg, str) and arg.startswith("/"):
                        (self.cache.forget_tree if tree else self.cache.forget)(arg)

        return cast(F, wrapper)

    return decorate


def normalize_unc(path: str) -> str:
    r"""``//server/share/dir`` or ``\\server\share\dir\`` -> ``\\server\share\dir``."""
    parts = [p for p in path.replace("/", "\\").split("\\") if p]
    if len(parts) < 2:
        raise error_for_status(
            NtStatus.STATUS_OBJECT_PATH_SYNTAX_BAD,
            f"not a share name (\\\\server\\share): {path!r}",
        )
    return "\\\\" + "\\".join(parts)


@dataclass(slots=True, eq=False)
class _Open:
    """One FUSE file handle: its daemon handle (FOBX), the writes gathered but not sent yet
    (``pending`` at ``pending_at``), the read-ahead window (``ahead`` at ``ahead_at``)."""

    fobx: int
    path: str
    writable: bool
    dirty: bool = False  # written (or truncated) since the last flush
    pending: bytearray | None = None
    pending_at: int = 0
    ahead: bytes = b""
    ahead_at: int = 0
    ahead_ends_file: bool = False  # the window reaches the end of the file
    next_read: int = -1  # where a sequential reader reads next
    attrs: dict[str, Any] | None = None  # from the open, while the handle has not changed it
    lock: threading.Lock = field(default_factory=threading.Lock)


class RdbssOperations(mfusepy.Operations):  # type: ignore[misc]
    """The FUSE operations of one mounted share folder ``root`` (a UNC name)."""

    use_ns = True  # times are nanosecond ints (st_mtime etc. and utimens)

    def __init__(
        self,
        root: str,
        *,
        runtime_dir: str | Path | None = None,
        config: Config | None = None,
        timeout: float | None = None,
        attr_timeout: float = ATTR_TIMEOUT_S,
        entry_timeout: float | None = None,
        writeback_cache: bool = False,
    ) -> None:
        self.root = normalize_unc(root)
        self._runtime_dir = runtime_dir
        self._config = config
        self._timeout = timeout
        self._lock = threading.Lock()
        self._client: Client | None = None
        self._client_pid = -1
        self._opens: dict[int, _Open] = {}
        self._by_path: dict[str, list[_Open]] = {}
        self._next_fh = 1
        self._uid = os.getuid()
        self._gid = os.getgid()
        self.attr_timeout = attr_timeout
        self.entry_timeout = attr_timeout if entry_timeout is None else entry_timeout
        self.writeback_cache = writeback_cache
        self.cache = AttrCache(attr_timeout)
        self._modes_kept = True  # until the backend says it keeps no permission bits

    # ------------------------------------------------------------------ plumbing
    @property
    def client(self) -> Client:
        """Made on first use, so it belongs to the process that serves requests (libfuse forks
        when not in the foreground)."""
        pid = os.getpid()
        with self._lock:
            if self._client is None or self._client_pid != pid:
                self._client = Client(self._runtime_dir, config=self._config, timeout=self._timeout)
                self._client_pid = pid
            return self._client

    def init_with_config(self, conn: Any, config: Any) -> None:
        """The kernel's caches and I/O sizes (see the module docstring and README)."""
        if config is not None:
            config.entry_timeout = self.entry_timeout
            config.attr_timeout = self.attr_timeout
            config.negative_timeout = 0.0  # missing names: the mount's cache knows them
        if conn is not None:
            conn.max_write = IO_SIZE
            conn.max_background = MAX_BACKGROUND
            conn.congestion_threshold = MAX_BACKGROUND * 3 // 4
            if self.writeback_cache and conn.capable & FUSE_CAP_WRITEBACK_CACHE:
                conn.want |= FUSE_CAP_WRITEBACK_CACHE
            else:
                conn.want &= ~FUSE_CAP_WRITEBACK_CACHE

    def _unc(self, path: str) -> str:
        rest = path.strip("/")
        return self.root if not rest else self.root + "\\" + rest.replace("/", "\\")

    def _add(self, fobx: int, path: str, writable: bool) -> int:
        opened = _Open(fobx, path, writable)
        with self._lock:
            fh = self._next_fh
            self._next_fh += 1
            self._opens[fh] = opened
            self._by_path.setdefault(path, []).append(opened)
            return fh

    def _get(self, fh: int | None) -> _Open | None:
        if fh is None:
            return None
        with self._lock:
            return self._opens.get(fh)

    def _open_of(self, fh: int) -> _Open:
        found = self._get(fh)
        if found is None:
            raise mfusepy.FuseOSError(errno.EBADF)
        return found

    def _opens_at(self, path: str) -> list[_Open]:
        with self._lock:
            return list(self._by_path.get(path, ()))

    def _settle(self, path: str) -> None:
        """Send the gathered writes of every handle open on ``path`` (a stat, a set-info or a
        rename by path must see them)."""
        for opened in self._opens_at(path):
            with opened.lock:
                self._send_pending(opened)

    def _attrs(self, info: FileInfo) -> dict[str, Any]:
        mode = info.extra.get("mode")
        if isinstance(mode, int) and not isinstance(mode, bool):
            perm = stat.S_IMODE(mode)
        else:
            perm = 0o755 if info.is_dir else 0o644
            if info.attributes & FileAttributes.READONLY:
                perm &= ~0o222
        nlink = info.extra.get("nlink")
        allocation = info.extra.get("allocation_size")
        size = 0 if info.is_dir else info.size
        if not isinstance(allocation, int) or allocation < 0:
            allocation = size
        return {
            "st_mode": (stat.S_IFDIR if info.is_dir else stat.S_IFREG) | perm,
            "st_nlink": nlink if isinstance(nlink, int) and nlink > 0 else 2 if info.is_dir else 1,
            "st_size": size,
            "st_blocks": (allocation + BLOCK - 1) // BLOCK,
            "st_blksize": IO_SIZE,
            "st_uid": self._uid,
            "st_gid": self._gid,
            "st_atime": info.last_access_time,
            "st_mtime": info.last_write_time,
            "st_ctime": info.change_time or info.last_write_time,
        }

    def _learn(self, path: str, info: FileInfo) -> dict[str, Any]:
        attrs = self._attrs(info)
        self.cache.put(path, attrs)
        return attrs

    def _access(self, flags: int) -> tuple[int, bool]:
        kind = flags & os.O_ACCMODE
        if kind == os.O_WRONLY:
            if self.writeback_cache:  # the kernel reads to fill partly written pages
                return Access.GENERIC_READ | Access.GENERIC_WRITE, True
            return Access.GENERIC_WRITE | Access.FILE_READ_ATTRIBUTES, True
        if kind == os.O_RDWR:
            return Access.GENERIC_READ | Access.GENERIC_WRITE, True
        return Access.GENERIC_READ, False

    # ------------------------------------------------------------------ attributes
    @_fuse_errors
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        opened = self._get(fh)
        if opened is not None:
            with opened.lock:
                if opened.attrs is not None:
                    return opened.attrs  # what the open said, nothing written since
                self._send_pending(opened)
            return self._learn(path, self.client.query_info(opened.fobx))
        cached = self.cache.get(path)
        if cached is not None:
            return cached
        if self.cache.known_missing(path):
            raise mfusepy.FuseOSError(errno.ENOENT)
        if path != "/" and self.cache.note_lookup(path):
            # names looked up one by one in a folder (cp -r, a build, git): one listing
            # answers this one and the next
            with contextlib.suppress(OSError):
                self._list(parent_of(path))
            cached = self.cache.get(path)
            if cached is not None:
                return cached
            if self.cache.known_missing(path):
                raise mfusepy.FuseOSError(errno.ENOENT)
        self._settle(path)
        try:
            info = self.client.stat(self._unc(path))
        except FileNotFoundError:
            self.cache.put(path, None)
            raise
        return self._learn(path, info)

    @_fuse_errors
    def readdir(self, path: str, fh: int) -> list[Any]:
        """The names with their whole attributes: ``_Fuse`` hands them to the kernel as
        readdirplus entries, so ``ls -l`` and ``find`` need no lookup per name."""
        children = self._list(path)
        prefix = path.rstrip("/") + "/"
        with self._lock:  # a file open for writing here: its size may not be in the listing
            busy = {p[len(prefix) :] for p in self._by_path if p.startswith(prefix)}
        return [".", "..", *((n, None if n in busy else a, 0) for n, a in children.items())]

    def _list(self, path: str) -> dict[str, dict[str, Any]]:
        """The children of folder ``path`` with their attributes, which feed the cache (what
        readdirplus would give the kernel), but for files open for writing through the mount
        (their size may not be in the listing yet: those are asked again)."""
        children: dict[str, dict[str, Any]] = {}
        for info in self.client.scandir(self._unc(path)):
            if info.name not in (".", ".."):
                children[info.name] = self._attrs(info)
        prefix = path.rstrip("/") + "/"
        with self._lock:
            busy = [p[len(prefix) :] for p, opens in self._by_path.items() if p.startswith(prefix)]
        self.cache.put_listing(path, children, busy=busy)
        return children

    @_fuse_errors
    def statfs(self, path: str) -> dict[str, int]:
        volume = self.client.volume(self.root)
        frsize = int(volume.get("bytes_per_sector", BLOCK)) * int(
            volume.get("sectors_per_allocation_unit", 8)
        )
        frsize = frsize or 4096
        return {
            "f_bsize": IO_SIZE,
            "f_frsize": frsize,
            "f_blocks": int(volume.get("total_bytes", 0)) // frsize,
            "f_bfree": int(volume.get("free_bytes", 0)) // frsize,
            "f_bavail": int(volume.get("avail_bytes", volume.get("free_bytes", 0))) // frsize,
            "f_namemax": int(volume.get("max_name_length", 255)),
        }

    @_fuse_errors
    @_forgets()
    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        now = time.time_ns()
        atime, mtime = times if times is not None else (UTIME_NOW, UTIME_NOW)

        def pick(value: int) -> int:  # 0 leaves the time alone (FileBasicInformation)
            if value == UTIME_OMIT:
                return 0
            if value == UTIME_NOW:
                return now
            return max(int(value), 1)

        self._set_basic(path, last_access_time=pick(atime), last_write_time=pick(mtime))
        return 0

    @_fuse_errors
    @_forgets()
    def chmod(self, path: str, mode: int) -> int:
        """The permission bits where the backend keeps them (local folders, SFTP); elsewhere
        only the write bit means something: it is the READONLY attribute."""
        self._settle(path)
        info = self.client.stat(self._unc(path))
        self.cache.forget(path)
        if self._modes_kept and isinstance(info.extra.get("mode"), int):
            try:
                self.client.set_security(self._unc(path), mode=stat.S_IMODE(mode))
                return 0
            except NtStatusError as exc:
                if exc.status not in _NO_MODES:
                    raise
                self._modes_kept = False  # a backend that shows a mode but cannot keep one
        readonly = not mode & 0o200
        if readonly == bool(info.attributes & FileAttributes.READONLY):
            return 0  # nothing a share keeps changes (a backend without the attribute too)
        attributes = info.attributes & ~(FileAttributes.READONLY | FileAttributes.NORMAL)
        attributes |= FileAttributes.READONLY if readonly else 0
        self._set_basic(path, attributes=int(attributes) or NORMAL)
        return 0

    @_fuse_errors
    def chown(self, path: str, uid: int, gid: int) -> int:
        if not chown_allowed(uid, gid, self._uid, self._gid):
            raise mfusepy.FuseOSError(errno.EPERM)
        return 0

    def _set_basic(self, path: str, **args: int) -> None:
        """FileBasicInformation (times, attributes) through a writable handle already open on
        ``path`` when there is one, as the Linux CIFS client does: times set on the handle
        that writes stay (MS-FSA 2.1.5.14.2), where a handle of their own would see them stamped
        again when the writing handle closes."""
        self.cache.forget(path)
        for opened in self._opens_at(path):
            if opened.writable:
                with opened.lock:
                    self._send_pending(opened)
                    opened.attrs = None
                    self.client.set_info(
                        opened.fobx, FileInformationClass.FileBasicInformation, **args
                    )
                return
        handle = self.client.create(self._unc(path), access=Access.FILE_WRITE_ATTRIBUTES)
        try:
            self.client.set_info(handle.fobx, FileInformationClass.FileBasicInformation, **args)
        finally:
            self.client.close_handle(handle.fobx)

    # ------------------------------------------------------------------ files
    @_fuse_errors
    def open(self, path: str, flags: int) -> int:
        access, writable = self._access(flags)
        truncate = writable and bool(flags & os.O_TRUNC)
        if writable:
            self._settle(path)
            self.cache.forget(path)
        timeout_ms = int(self.client.timeout * 1000)
        create = rq.create(
            self._unc(path),
            timeout_ms,
            access=access,
            disposition=CreateDisposition.FILE_OVERWRITE
            if truncate
            else CreateDisposition.FILE_OPEN,
            options=CreateOptions.FILE_NON_DIRECTORY_FILE,
        )
        if writable:
            handle = self.client.run(create)
            fh = self._add(handle.fobx, path, writable)
            self._open_of(fh).attrs = None if truncate else self._attrs(handle.info)
            self.cache.forget(path)  # what a lookup learned meanwhile
            return fh
        # a reader: the open and the first read in one round trip (a compound with a related
        # read), so a small file costs one request and a large one starts its read-ahead
        outcomes = self.client.compound([create, rq.related(rq.read(0, 0, FIRST_READ, timeout_ms))])
        handle = outcomes[0].unwrap()
        fh = self._add(handle.fobx, path, writable)
        opened = self._open_of(fh)
        opened.attrs = self._learn(path, handle.info)
        first = outcomes[1]
        if first.ok and isinstance(first.value, bytes):
            opened.ahead, opened.ahead_at = first.value, 0
            opened.ahead_ends_file = len(first.value) < FIRST_READ
            opened.next_read = len(first.value)
        return fh

    @_fuse_errors
    @_forgets()
    def create(self, path: str, mode: int, flags: int) -> int:
        access, _ = self._access(flags)
        if flags & os.O_EXCL:
            disposition = CreateDisposition.FILE_CREATE
        elif flags & os.O_TRUNC:
            disposition = CreateDisposition.FILE_OVERWRITE_IF
        else:
            disposition = CreateDisposition.FILE_OPEN_IF
        self.cache.forget(path)
        handle = self.client.create(
            self._unc(path),
            access=access | Access.GENERIC_WRITE,  # the creator may write even a 0444 file
            disposition=disposition,
            options=CreateOptions.FILE_NON_DIRECTORY_FILE,
        )
        fh = self._add(handle.fobx, path, True)
        self._open_of(fh).attrs = self._attrs(handle.info)
        kept = handle.info.extra.get("mode")
        wanted = stat.S_IMODE(mode)
        if self._modes_kept and isinstance(kept, int) and stat.S_IMODE(kept) != wanted:
            # the backend keeps modes: the exec bit (and 0600, 0444...) as asked
            try:
                self.client.set_security(handle.fobx, mode=wanted)
            except NtStatusError as exc:
                if exc.status in _NO_MODES:
                    self._modes_kept = False
        return fh

    @_fuse_errors
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        opened = self._open_of(fh)
        with opened.lock:
            self._send_pending(opened)
            window = opened.ahead
            start = offset - opened.ahead_at
            whole = start + size <= len(window) or opened.ahead_ends_file
            at_end = opened.ahead_ends_file and start == len(window)  # grown since? ask
            if 0 <= start < len(window) and whole:
                data = window[start : start + size]
            elif offset == opened.next_read and size < READ_AHEAD_BYTES and not at_end:
                # a sequential reader: one large read (shared memory) serves the next ones
                buffer = bytearray(READ_AHEAD_BYTES)
                count = self.client.readinto(opened.fobx, offset, buffer)
                opened.ahead, opened.ahead_at = bytes(memoryview(buffer)[:count]), offset
                opened.ahead_ends_file = count < READ_AHEAD_BYTES
                data = opened.ahead[:size]
            else:
                opened.ahead = b""
                if size >= shm.MIN_READ_BYTES:
                    buffer = bytearray(size)
                    count = self.client.readinto(opened.fobx, offset, buffer)
                    data = bytes(memoryview(buffer)[:count])
                else:
                    data = self.client.read_handle(opened.fobx, offset, size)
            opened.next_read = offset + len(data)
            return data

    @_fuse_errors
    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        opened = self._open_of(fh)
        with opened.lock:
            opened.dirty = True
            opened.attrs = None
            opened.ahead = b""
            pending = opened.pending
            if pending is not None and opened.pending_at + len(pending) == offset:
                pending += data
            else:
                self._send_pending(opened)
                opened.pending, opened.pending_at = bytearray(data), offset
            if len(opened.pending or b"") >= GATHER_BYTES:
                self._send_pending(opened)
        self.cache.forget(path)
        return len(data)

    def _send_pending(self, opened: _Open) -> None:
        """Send the writes gathered on ``opened`` (its lock held): sequential writes go to the
        daemon in large pieces (the shared-memory path from 256 KiB on)."""
        data, opened.pending = opened.pending, None
        if not data:
            return
        view = memoryview(data)
        done = 0
        while done < len(view):
            written = self.client.write_handle(opened.fobx, opened.pending_at + done, view[done:])
            if written <= 0:
                raise mfusepy.FuseOSError(errno.EIO)
            done += written

    @_fuse_errors
    @_forgets()
    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        self.cache.forget(path)
        opened = self._get(fh)
        if opened is None:
            writers = [o for o in self._opens_at(path) if o.writable]
            opened = writers[0] if writers else None
        if opened is not None and opened.writable:
            with opened.lock:
                self._send_pending(opened)
                opened.ahead = b""
                opened.dirty = True
                opened.attrs = None
                self.client.set_info(
                    opened.fobx, FileInformationClass.FileEndOfFileInformation, size=length
                )
        else:
            self._settle(path)
            self.client.truncate(self._unc(path), length)
        return 0

    @_fuse_errors
    def flush(self, path: str, fh: int) -> int:
        """close(2) waits for this: what the handle wrote reaches the server (WebDAV uploads
        its staged file, the core sends its deferred writes) and a failure is close's error."""
        opened = self._get(fh)
        if opened is None:
            return 0
        with opened.lock:
            self._send_pending(opened)
            if opened.dirty:
                opened.dirty = False
                self.client.flush_handle(opened.fobx)
        self.cache.forget(opened.path)
        return 0

    @_fuse_errors
    def fsync(self, path: str, datasync: int, fh: int) -> int:
        opened = self._open_of(fh)
        with opened.lock:
            self._send_pending(opened)
            opened.dirty = False
            self.client.flush_handle(opened.fobx)
        return 0

    @_fuse_errors
    def release(self, path: str, fh: int) -> int:
        with self._lock:
            opened = self._opens.pop(fh, None)
            if opened is not None:
                self._drop_path_entry(opened)
        if opened is not None:
            with opened.lock:
                with contextlib.suppress(OSError):  # flush reported it; the handle goes anyway
                    self._send_pending(opened)
                # flush did the work close(2) waits for: the close itself need not be waited on
                self.client.close_handle(opened.fobx, wait=opened.dirty)
            self.cache.forget(opened.path)
        return 0

    def _drop_path_entry(self, opened: _Open) -> None:
        """Forget ``opened`` in the by-path index (self._lock held)."""
        opens = self._by_path.get(opened.path)
        if opens is not None:
            with contextlib.suppress(ValueError):
                opens.remove(opened)
            if not opens:
                del self._by_path[opened.path]

    # ------------------------------------------------------------------ names
    @_fuse_errors
    @_forgets()
    def mkdir(self, path: str, mode: int) -> int:
        self.cache.forget(path)
        self.client.mkdir(self._unc(path))
        return 0

    @_fuse_errors
    @_forgets(tree=True)
    def rmdir(self, path: str) -> int:
        self.cache.forget_tree(path)
        self._writable_again(path, lambda: self.client.rmdir(self._unc(path)))
        return 0

    @_fuse_errors
    @_forgets()
    def unlink(self, path: str) -> int:
        self.cache.forget(path)
        self._writable_again(path, lambda: self.client.remove(self._unc(path)))
        return 0

    def _writable_again(self, path: str, change: Callable[[], None]) -> None:
        """Run ``change`` (a delete or a rename onto ``path``); refused because ``path`` is
        read-only (a 0444 file: git's packs and objects), clear READONLY and try once more, as
        the Linux CIFS client does, so ``rm -rf`` and ``git gc`` work as on a local disk. If
        the second try fails too, the attribute is put back."""
        try:
            change()
            return
        except PermissionError:
            try:
                info = self.client.stat(self._unc(path))
            except OSError:
                info = None
            if info is None or not info.attributes & FileAttributes.READONLY:
                raise
        readonly = info.attributes & ~FileAttributes.NORMAL
        self._set_basic(path, attributes=int(readonly & ~FileAttributes.READONLY) or NORMAL)
        try:
            change()
        except OSError:
            with contextlib.suppress(OSError):
                self._set_basic(path, attributes=int(readonly))
            raise

    @_fuse_errors
    @_forgets(tree=True)
    def rename(self, old: str, new: str) -> int:
        """rename(2): replaces an existing file (a read-only one too); a directory replaces an
        empty directory."""
        self._settle(old)
        self.cache.forget_tree(old)
        self.cache.forget_tree(new)
        src, dst = self._unc(old), self._unc(new)
        try:
            self._writable_again(new, lambda: self.client.rename(src, dst, replace=True))
        except PermissionError:
            # shares refuse to replace a directory; POSIX allows it when it is empty
            try:
                replace_dir = self.client.stat(src).is_dir and self.client.stat(dst).is_dir
            except OSError:
                replace_dir = False
            if not replace_dir:
                raise
            self.client.rmdir(dst)  # ENOTEMPTY when not empty, as rename(2) says
            self.client.rename(src, dst, replace=True)
        with self._lock:  # handles open on the old name now write the new one
            for opened in list(self._opens.values()):
                if opened.path == old or opened.path.startswith(old.rstrip("/") + "/"):
                    self._drop_path_entry(opened)
                    opened.path = new + opened.path[len(old) :]
                    self._by_path.setdefault(opened.path, []).append(opened)
        return 0

    def destroy(self, path: str) -> None:
        with self._lock:
            client, self._client = self._client, None
            opens = list(self._opens.values())
            self._opens.clear()
            self._by_path.clear()
        if client is None or self._client_pid != os.getpid():
            return
        for opened in opens:
            with contextlib.suppress(OSError):
                client.close_handle(opened.fobx, wait=False)
        client.close()


class _Fuse(mfusepy.FUSE):  # type: ignore[misc]
    """mfusepy's FUSE, but a listing's entries carry their whole attributes to the kernel
    (FUSE_FILL_DIR_PLUS when it asks for readdirplus): it then knows every name and its
    attributes for ``entry_timeout`` / ``attr_timeout`` without a lookup each."""

    def readdir_fuse_3(
        self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any, flags: int
    ) -> int:
        decoded = None if path is None else path.decode(self.encoding, self.errors)
        plus = FUSE_FILL_DIR_PLUS if flags & FUSE_READDIR_PLUS else 0
        for item in self.operations.readdir(decoded, fip.contents.fh):
            name, attrs = (item, None) if isinstance(item, str) else item[:2]
            st = None
            if attrs is not None:
                st = mfusepy.c_stat()
                mfusepy.set_st_attrs(st, attrs, use_ns=True)
            if filler(buf, name.encode(self.encoding, self.errors), st, 0, plus if st else 0):
                break
        return 0


def mount(
    unc_share: str,
    mountpoint: str,
    *,
    runtime_dir: str | Path | None = None,
    config: Config | None = None,
    timeout: float | None = None,
    foreground: bool = True,
    options: Mapping[str, str | int | bool] | None = None,
) -> None:
    r"""Mount ``unc_share`` (``\\server\share`` or a folder in it) at ``mountpoint``.

    In the foreground (the default) this returns when the file system is unmounted
    (``fusermount3 -u MOUNTPOINT``, or SIGINT/SIGTERM to this process); otherwise libfuse
    detaches into the background once mounted. ``options`` are extra ``-o`` mount options
    (``{"allow_other": True}``...); the mount's own are ``attr_timeout`` and ``entry_timeout``
    (seconds, see ATTR_TIMEOUT_S) and ``writeback_cache``. Fails before mounting if the daemon
    is not running, the share folder does not exist or an option of the mount's is bad.
    """
    root = normalize_unc(unc_share)
    extra = dict(options or {})
    attr_timeout = _seconds(extra.pop("attr_timeout", ATTR_TIMEOUT_S), "attr_timeout")
    entry = extra.pop("entry_timeout", None)
    entry_timeout = attr_timeout if entry is None else _seconds(entry, "entry_timeout")
    writeback = extra.pop("writeback_cache", False) not in (False, "0", "no", "false")
    with Client(runtime_dir, config=config, timeout=timeout) as client:
        if not client.stat(root).is_dir:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", root)
    if not os.path.isdir(mountpoint):
        raise NotADirectoryError(errno.ENOTDIR, "the mount point is not a directory", mountpoint)
    operations = RdbssOperations(
        root,
        runtime_dir=runtime_dir,
        config=config,
        timeout=timeout,
        attr_timeout=attr_timeout,
        entry_timeout=entry_timeout,
        writeback_cache=writeback,
    )
    fuse_options: dict[str, Any] = {
        "fsname": "rdbss:" + root.replace("\\", "/"),
        "subtype": "rdbss",
    }
    fuse_options.update(extra)
    _Fuse(operations, mountpoint, foreground=foreground, nothreads=False, **fuse_options)


def _seconds(value: object, name: str) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds >= 0:
        raise error_for_status(
            NtStatus.STATUS_INVALID_PARAMETER,
            f"-o {name}={value}: give a number of seconds, 0 or more (0: nothing is cached)",
        )
    return seconds


def _parse_options(text: str | None) -> dict[str, str | bool]:
    parsed: dict[str, str | bool] = {}
    for item in (text or "").split(","):
        if item.strip():
            key, sep, value = item.strip().partition("=")
            parsed[key] = value if sep else True
    return parsed


def cmd_mount(args: argparse.Namespace) -> int:
    """``rdbss mount SHARE MOUNTPOINT [-o opt,...] [--background]`` (see rdbss.cli)."""
    config = load_config(Path(args.config) if args.config else None)
    mount(
        args.share,
        args.mountpoint,
        config=config,
        timeout=getattr(args, "timeout", None),
        foreground=not getattr(args, "background", False),
        options=_parse_options(getattr(args, "options", None)),
    )
    return 0

"""The operations of a mounted share folder, by mount path (``/dir/name``): what the kernel
front end (rdbss.fuse_kernel) runs in worker threads, each a request to the daemon; the
compounds of reading (``reader_open_now``, ``list_now``, ``stat_items``) are also given out for
the front end to send from its event loop, with what to make of their answers
(``reader_opened``, ``small_opened``, ``listed``, ``stat_answered``), which never wait. Failures are
the NTSTATUS of the daemon turned into the errno of the matching OSError (ENOENT, EEXIST,
ENOTEMPTY, EACCES...); the front end hands that errno to the kernel.

Requests run in parallel through a pool of clients (``ClientPool``): a path operation takes any
free client; a FUSE file handle keeps the daemon handle (FOBX) it opened until release, and the
client that opened it, since the daemon answers a handle only on the connection that opened it.
Reads and writes go at their offsets, appends and ``echo > f`` work, and a file stays usable
after it is renamed. A handle's reads, gathered writes and flush are rdbss.fuse_handles's
``OpenFile``; the compounds that change names are there too.

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
- Few requests per file: what goes together travels in one compound message. A reader's open
  of a file the cache knows to be small reads it whole and closes it (its reads, flush and
  release then ask nothing); a listing is an open, two queries and a close; a flush carries
  the last small writes, the flush and a query of the attributes; mkdir, unlink, rmdir and
  rename are an open, the change and a close. Names made, removed or renamed through the
  mount change the cached listing of their folder rather than drop it.
- Large I/O: a reader's open brings the first 128 KiB with it (one compound); a sequential
  reader is served from a window (``read_ahead_kb``, 4 MiB by default) fetched in one request,
  and the next window is asked for in the background once half of this one is read, so the
  daemon works while the kernel copies; sequential writes are gathered into 4 MiB pieces,
  each written in the background (one in flight) while the next gathers; a piece that failed
  is the error of the handle's next write or flush (so of close(2)). Both go through shared
  memory with a daemon on this host.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from rdbss import requests as rq
from rdbss.client import Client, FileInfo, Handle
from rdbss.config import Config
from rdbss.fuse_cache import AttrCache, chown_allowed, parent_of
from rdbss.fuse_handles import (
    OpenFile,
    delete,
    fail,
    list_folder,
    list_items,
    on_handle,
    rename,
)
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

__all__ = ["ClientPool", "PathOps", "normalize_unc"]

log = logging.getLogger("rdbss.fuse")

BLOCK = 512
IO_SIZE = 1 << 20  # st_blksize (what cp and friends use as their buffer size)
#: How long the kernel and the mount trust a name's attributes (seconds), by default: a change
#: made behind the mount's back is seen after at most this long (``-o attr_timeout=``).
ATTR_TIMEOUT_S = 1.0
READ_AHEAD_BYTES = 4 << 20  # what one read fetches for a sequential reader (shared memory)
FIRST_READ = 128 << 10  # read with the open of a reader: the kernel's first read-ahead
#: A reader's open of a file the cache knows to be smaller than this reads it whole and closes
#: it in the same compound: the handle's reads are served from memory, its close asks nothing.
SMALL_OPEN = rq.SMALL_READ_BYTES
#: Clients in the pool: requests to the daemon in flight at once. The core serves up to 8
#: requests of one client beside other clients' (docs/routines.md, Connections).
POOL_SIZE = 6
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


def _forgets(*, tree: bool = False) -> Callable[[F], F]:
    """After a change by path (done or failed), the cache forgets every path it was given
    again (and with ``tree`` what is under them): a lookup or a listing running meanwhile, in
    another thread, may have learned the state from before the change."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(self: PathOps, *args: Any) -> Any:
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


class ClientPool:
    """Up to ``size`` clients, made on first need. ``lease()`` lends a free one (waiting for
    one when all are busy); a client serves one request at a time, so the pool's size is how
    many requests of the mount are in flight at once."""

    def __init__(self, make: Callable[[], Client], size: int = POOL_SIZE) -> None:
        self._make = make
        self._size = max(1, size)
        self._free: list[Client] = []
        self._all: list[Client] = []
        self._count = 0
        self._waiting = 0  # threads waiting for a client
        self._cond = threading.Condition()
        self._closed = False

    @contextlib.contextmanager
    def lease(self) -> Iterator[Client]:
        client = self._take()
        try:
            yield client
        finally:
            self.give_back(client)

    @contextlib.contextmanager
    def lease_now(self) -> Iterator[Client | None]:
        """Lend a client when every client is free (no request of the pool in flight, none
        waiting for a client), else None; never waits, so an event loop may ask. One request
        at a time is what an event loop serves best: with several in flight, worker threads
        overlap one's socket waits with another's work, which one event loop cannot."""
        with self._cond:
            idle = len(self._free) == self._count and not self._waiting and not self._closed
            client = self._free.pop() if idle and self._free else None
        try:
            yield client
        finally:
            if client is not None:
                self.give_back(client)

    def give_back(self, client: Client) -> None:
        with self._cond:
            if not self._closed:
                self._free.append(client)
                self._cond.notify()

    def _take(self) -> Client:
        with self._cond:
            while True:
                if self._closed:
                    raise error_for_status(NtStatus.STATUS_REDIRECTOR_NOT_STARTED, "unmounted")
                if self._free:
                    return self._free.pop()
                if self._count < self._size:
                    self._count += 1  # this place is taken while the client connects
                    break
                self._waiting += 1
                try:
                    self._cond.wait()
                finally:
                    self._waiting -= 1
        try:
            client = self._make()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._all.append(client)
        return client

    def requests_sent(self) -> int:
        """How many request messages the pool's clients have sent (a compound is one)."""
        with self._cond:
            return sum(client.requests_sent for client in self._all)

    def close(self) -> list[Client]:
        """Stop lending; the clients made, for the caller to close."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            made = list(self._all)
            self._all.clear()
            self._free.clear()
            return made


class PathOps:
    """The operations of one mounted share folder ``root`` (a UNC name), by mount path. Every
    method may run in any thread, many at once."""

    def __init__(
        self,
        root: str,
        *,
        runtime_dir: str | Path | None = None,
        config: Config | None = None,
        timeout: float | None = None,
        attr_timeout: float = ATTR_TIMEOUT_S,
        writeback_cache: bool = False,
        read_ahead: int = READ_AHEAD_BYTES,
        pool_size: int = POOL_SIZE,
    ) -> None:
        self.root = normalize_unc(root)
        self._runtime_dir = runtime_dir
        self._config = config
        self._timeout = timeout
        self._lock = threading.Lock()
        self.pool = ClientPool(self.new_client, pool_size)
        self._opens: dict[int, OpenFile] = {}
        self._by_path: dict[str, list[OpenFile]] = {}
        self._next_fh = 1
        self._uid = os.getuid()
        self._gid = os.getgid()
        self.writeback_cache = writeback_cache
        self.read_ahead = max(FIRST_READ, read_ahead)
        self.cache = AttrCache(attr_timeout)
        self._modes_kept = True  # until the backend says it keeps no permission bits
        self._fetcher = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="ahead")

    # ------------------------------------------------------------------ plumbing
    def new_client(self) -> Client:
        return Client(self._runtime_dir, config=self._config, timeout=self._timeout)

    def _unc(self, path: str) -> str:
        rest = path.strip("/")
        return self.root if not rest else self.root + "\\" + rest.replace("/", "\\")

    def _add(self, fobx: int, path: str, writable: bool, client: Client) -> OpenFile:
        return self._enter(OpenFile(fobx, path, writable, client, self.read_ahead, self._fetcher))

    def _enter(self, opened: OpenFile) -> OpenFile:
        """Give ``opened`` its FUSE file handle number."""
        with self._lock:
            opened.fh = self._next_fh
            self._next_fh += 1
            self._opens[opened.fh] = opened
            self._by_path.setdefault(opened.path, []).append(opened)
        return opened

    def _get(self, fh: int | None) -> OpenFile | None:
        if fh is None:
            return None
        with self._lock:
            return self._opens.get(fh)

    def _open_of(self, fh: int) -> OpenFile:
        found = self._get(fh)
        if found is None:
            raise fail(errno.EBADF)
        return found

    def _opens_at(self, path: str) -> list[OpenFile]:
        with self._lock:
            return list(self._by_path.get(path, ()))

    def is_open(self, path: str) -> bool:
        with self._lock:
            return path in self._by_path

    def _settle(self, path: str) -> None:
        """Send the gathered writes of every handle open on ``path`` (a stat, a set-info or a
        rename by path must see them)."""
        for opened in self._opens_at(path):
            opened.settle()

    def _touch(self, path: str, keep: OpenFile | None = None) -> None:
        """The file at ``path`` changed through ``keep`` (or by its name): what the other handles
        open on it learned of its attributes at their open is stale."""
        with self._lock:
            for opened in self._by_path.get(path, ()):
                if opened is not keep:
                    opened.attrs = None

    def _detach(self, path: str) -> None:
        """The name ``path`` was removed, or replaced by a rename, through the mount: the
        handles open on it still read and write their file, but name nothing any more, so
        lookups of ``path`` no longer find them and what they learn is not cached under it
        (self._lock held)."""
        for opened in self._by_path.pop(path, ()):
            opened.unlinked = True

    def attrs_of(self, info: FileInfo) -> dict[str, Any]:
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

    def _learn(self, path: str, info: FileInfo, since: int | None = None) -> dict[str, Any]:
        """The attributes of ``info``, kept by the cache (from an answer to a request sent at
        the cache's token ``since``: ``AttrCache.put``)."""
        attrs = self.attrs_of(info)
        self.cache.put(path, attrs, since)
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
    def getattr(self, path: str) -> dict[str, Any]:
        opens = self._opens_at(path)
        if opens:  # a handle open on it knows best (and a writer's size is in no listing)
            if len(opens) == 1:
                with opens[0].lock:
                    if opens[0].attrs is not None:
                        return opens[0].attrs  # what the open said, nothing written since
            # what one learned at its open another may have changed since, and each may have
            # writes gathered: the server says, once they are sent, through a handle that
            # has a daemon handle (a small file read whole has none: then by name, below)
            live = [o for o in opens if not o.in_memory]
            if live:
                self._settle(path)
                asked = next((o for o in live if o.writable), live[0])
                return self._learn(path, asked.client.query_info(asked.fobx))
        cached = self.cache.get(path)
        if cached is not None:
            return cached
        if self.cache.known_missing(path):
            raise fail(errno.ENOENT)
        if path != "/" and self.cache.note_lookup(path):
            # names looked up one by one in a folder (cp -r, a build, git): one listing
            # answers this one and the next
            with contextlib.suppress(OSError):
                self.list(parent_of(path))
            cached = self.cache.get(path)
            if cached is not None:
                return cached
            if self.cache.known_missing(path):
                raise fail(errno.ENOENT)
        since = self.cache.begin()
        try:
            with self.pool.lease() as client:
                info = client.stat(self._unc(path))
        except FileNotFoundError:
            self.cache.put(path, None, since)
            raise
        return self._learn(path, info, since)

    def handle_getattr(self, fh: int) -> dict[str, Any]:
        """The attributes of the file open as ``fh`` (its name may be gone), from the handle:
        what it knows, else asked through it. Nothing is cached by name."""
        opened = self._open_of(fh)
        with opened.lock:
            attrs = opened.attrs
            if attrs is None and not opened.in_memory:
                opened.send_pending()
                return self.attrs_of(opened.client.query_info(opened.fobx))
        return attrs if attrs is not None else self.getattr(opened.path)  # (read whole: by name)

    def stat_items(self, path: str, timeout_ms: int) -> Sequence[rq.Request[Any]]:
        """The compound of a stat of ``path`` (an open for attributes and the close), for an
        event loop to send (``getattr`` in a thread takes ``Client.stat``)."""
        return rq.stat_items(self._unc(path), timeout_ms)

    def stat_answered(
        self, path: str, outcomes: Sequence[rq.Outcome[Any]], since: int | None = None
    ) -> dict[str, Any]:
        """The attributes the outcomes of ``stat_items`` (sent at the cache's token ``since``)
        found, learned by the cache (a name not found too), as ``getattr`` learns them. Never
        waits."""
        if isinstance(outcomes[0].error(), FileNotFoundError):
            self.cache.put(path, None, since)
        handle: Handle = outcomes[0].unwrap()
        return self._learn(path, handle.info, since)

    def peek(self, path: str) -> dict[str, Any] | None:
        """What ``getattr`` answers without a request (None: it must ask). Never waits: the
        kernel front end calls it on its event loop."""
        opens = self._opens_at(path)
        if opens:
            return opens[0].attrs if len(opens) == 1 else None  # (several: ``getattr`` asks)
        cached = self.cache.get(path)
        if cached is None and self.cache.known_missing(path):
            raise fail(errno.ENOENT)
        return cached

    def read_now(self, fh: int, offset: int, size: int) -> bytes | None:
        """What ``read`` answers from the handle's window without a request (None: it must
        ask, or the handle is busy). Never waits: the kernel front end calls it on its event
        loop."""
        opened = self._get(fh)
        return None if opened is None else opened.read_now(offset, size)

    def write_now(self, fh: int, offset: int, data: bytes) -> bool:
        """Gather ``data`` after the handle's pending writes when that needs no request (False:
        ``write`` must run). Never waits, as ``read_now``."""
        opened = self._get(fh)
        if opened is None or not opened.gather_now(offset, data):
            return False
        self._changed_through(opened)
        return True

    def _changed_through(self, opened: OpenFile) -> None:
        """``opened`` wrote, truncated or set information of its file."""
        if not opened.unlinked:
            self.cache.forget_attrs(opened.path)
            self._touch(opened.path, opened)

    def list(self, path: str) -> dict[str, dict[str, Any]]:
        """The children of folder ``path`` with their attributes, which feed the cache (what
        readdirplus gives the kernel), but for files open through the mount (their size may
        not be in the listing yet: those are asked again). The writes the handles of its files
        gathered go first: a listing hands the kernel sizes (readdirplus), which it keeps, and
        a file opened for appending writes at the size the kernel has."""
        for opened in self._writers_in(path):
            opened.settle()
        since = self.cache.begin()
        with self.pool.lease() as client:
            entries = list_folder(client, self._unc(path))
        return self.listed(path, entries, since)

    def _writers_in(self, folder: str) -> Sequence[OpenFile]:
        """The handles of files right in ``folder`` with writes gathered or being sent."""
        with self._lock:
            return [
                opened
                for path, opens in self._by_path.items()
                if parent_of(path) == folder
                for opened in opens
                if opened.pending or opened.sending is not None
            ]

    def list_now(self, path: str, timeout_ms: int) -> Sequence[rq.Request[Any]] | None:
        """The compound of a listing of ``path``, for an event loop to send (``listed`` of its
        outcomes' ``folder_listed``); None when a handle of a file in it has writes to send
        first (``list`` sends them, in a thread)."""
        if self._writers_in(path):
            return None
        return list_items(self._unc(path), timeout_ms)

    def listed(
        self, path: str, entries: Iterable[FileInfo], since: int | None = None
    ) -> dict[str, dict[str, Any]]:
        """The children of ``path`` from its listing's entries (sent at the cache's token
        ``since``), put in the cache (as ``list``). Never waits."""
        children: dict[str, dict[str, Any]] = {}
        for info in entries:
            if info.name not in (".", ".."):
                children[info.name] = self.attrs_of(info)
        prefix = path.rstrip("/") + "/"
        with self._lock:
            busy = [p[len(prefix) :] for p in self._by_path if p.startswith(prefix)]
        return self.cache.put_listing(path, children, busy=busy, since=since)

    def statfs(self) -> dict[str, int]:
        with self.pool.lease() as client:
            query = rq.query_volume(0, int(client.timeout * 1000))
            volume = on_handle(client, self.root, Access.FILE_READ_ATTRIBUTES, 0, query)[0]
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

    @_forgets()
    def utimens(self, path: str, atime: int, mtime: int) -> None:
        """Times in nanoseconds; 0 leaves that time alone (FileBasicInformation)."""
        self._set_basic(path, last_access_time=atime, last_write_time=mtime)

    @_forgets()
    def chmod(self, path: str, mode: int) -> None:
        """The permission bits where the backend keeps them (local folders, SFTP); elsewhere
        only the write bit means something: it is the READONLY attribute."""
        self._settle(path)
        with self.pool.lease() as client:
            info = client.stat(self._unc(path))
            self.cache.forget(path)
            if self._modes_kept and isinstance(info.extra.get("mode"), int):
                try:
                    client.set_security(self._unc(path), mode=stat.S_IMODE(mode))
                    return
                except NtStatusError as exc:
                    if exc.status not in _NO_MODES:
                        raise
                    self._modes_kept = False  # a backend that shows a mode but cannot keep one
        readonly = not mode & 0o200
        if readonly == bool(info.attributes & FileAttributes.READONLY):
            return  # nothing a share keeps changes (a backend without the attribute too)
        attributes = info.attributes & ~(FileAttributes.READONLY | FileAttributes.NORMAL)
        attributes |= FileAttributes.READONLY if readonly else 0
        self._set_basic(path, attributes=int(attributes) or NORMAL)

    def chown(self, path: str, uid: int, gid: int) -> None:
        if not chown_allowed(uid, gid, self._uid, self._gid):
            raise fail(errno.EPERM)

    def _set_basic(self, path: str, client: Client | None = None, **args: int) -> None:
        """FileBasicInformation (times, attributes) through a writable handle already open on
        ``path`` when there is one, as the Linux CIFS client does: times set on the handle
        that writes stay (MS-FSA 2.1.5.14.2), where a handle of their own would see them stamped
        again when the writing handle closes."""
        self.cache.forget(path)
        self._touch(path)
        for opened in self._opens_at(path):
            if opened.writable:
                opened.set_info(FileInformationClass.FileBasicInformation, **args)
                return
        if client is None:
            with self.pool.lease() as leased:
                self._set_basic(path, leased, **args)
            return
        handle = client.create(self._unc(path), access=Access.FILE_WRITE_ATTRIBUTES)
        try:
            client.set_info(handle.fobx, FileInformationClass.FileBasicInformation, **args)
        finally:
            client.close_handle(handle.fobx)

    # ------------------------------------------------------------------ files
    def open(self, path: str, flags: int) -> tuple[int, dict[str, Any] | None]:
        """A FUSE file handle, and the file's attributes as the open found them (None when
        the open truncated it)."""
        access, writable = self._access(flags)
        truncate = writable and bool(flags & os.O_TRUNC)
        self._settle(path)  # a reader too sees what other handles here wrote
        if writable:
            self.cache.forget_attrs(path)
        else:
            small = self._open_small(path)
            if small is not None:
                return small.fh, small.attrs
        with self.pool.lease() as client:
            timeout_ms = int(client.timeout * 1000)
            if not writable:
                since = self.cache.begin()
                outcomes = client.compound(self.reader_open_items(path, timeout_ms))
                opened = self.reader_opened(path, client, outcomes, since)
                return opened.fh, opened.attrs
            create = rq.create(
                self._unc(path),
                timeout_ms,
                access=access,
                disposition=CreateDisposition.FILE_OVERWRITE
                if truncate
                else CreateDisposition.FILE_OPEN,
                options=CreateOptions.FILE_NON_DIRECTORY_FILE,
            )
            handle = client.run(create)
            if truncate:
                self._touch(path)
            opened = self._add(handle.fobx, path, writable, client)
            opened.attrs = None if truncate else self.attrs_of(handle.info)
            self.cache.forget_attrs(path)  # what a lookup learned meanwhile
            return opened.fh, opened.attrs

    def reader_open_items(self, path: str, timeout_ms: int) -> Sequence[rq.Request[Any]]:
        """A reader's open and its first read in one compound (a related read), so a small
        file costs one request and a large one starts its read-ahead."""
        create = rq.create(
            self._unc(path),
            timeout_ms,
            access=Access.GENERIC_READ,
            options=CreateOptions.FILE_NON_DIRECTORY_FILE,
        )
        return [create, rq.related(rq.read(0, 0, FIRST_READ, timeout_ms))]

    def reader_open_now(
        self, path: str, timeout_ms: int, *, small: bool
    ) -> Sequence[rq.Request[Any]] | None:
        """The compound of a reader's open when it may run on an event loop (no handle here
        has writes of this path to send first; None: ``open`` in a thread):
        ``small_open_items`` for a file ``known_small``, else ``reader_open_items``."""
        if any(opened.writable for opened in self._opens_at(path)):
            return None
        if small:
            return self.small_open_items(path, timeout_ms)
        return self.reader_open_items(path, timeout_ms)

    def reader_opened(
        self,
        path: str,
        client: Client,
        outcomes: Sequence[rq.Outcome[Any]],
        since: int | None = None,
    ) -> OpenFile:
        """The handle of a reader's open from the outcomes of ``reader_open_items`` (sent at
        the cache's token ``since``), its first read kept as the start of its read-ahead
        window. Never waits."""
        handle = outcomes[0].unwrap()
        opened = self._add(handle.fobx, path, False, client)
        opened.attrs = self._learn(path, handle.info, since)
        first = outcomes[1]
        if first.ok and isinstance(first.value, bytes):
            opened.ahead, opened.ahead_at = first.value, 0
            opened.ahead_ends_file = len(first.value) < FIRST_READ
            opened.next_read = len(first.value)
        return opened

    def _open_small(self, path: str) -> OpenFile | None:
        """A reader's open of a file the cache knows to be small: the open, a read of the
        whole file and the close in one compound; the handle then holds the file's bytes and
        asks nothing more. None when the cache knows no size, or the file has grown past
        ``SMALL_OPEN`` since (then it is opened as any other)."""
        if not self.known_small(path):
            return None
        since = self.cache.begin()
        with self.pool.lease() as client:
            items = self.small_open_items(path, int(client.timeout * 1000))
            return self.small_opened(path, client, client.compound(items), since)

    def small_open_items(self, path: str, timeout_ms: int) -> Sequence[rq.Request[Any]]:
        """The compound of a small file's open: an open, a read of the whole file, the close."""
        return rq.read_file_items(self._unc(path), timeout_ms, SMALL_OPEN)

    def known_small(self, path: str) -> bool:
        """Whether the cache knows ``path`` to be a file smaller than ``SMALL_OPEN``."""
        known = self.cache.get(path)
        return (
            known is not None and stat.S_ISREG(known["st_mode"]) and known["st_size"] < SMALL_OPEN
        )

    def small_opened(
        self,
        path: str,
        client: Client,
        outcomes: Sequence[rq.Outcome[Any]],
        since: int | None = None,
    ) -> OpenFile | None:
        """The handle of a small file's open from the outcomes of ``small_open_items`` (sent
        at the cache's token ``since``; None: the file has grown past ``SMALL_OPEN``, so it
        must be opened as any other). Never waits."""
        handle = outcomes[0].unwrap()
        data: bytes = outcomes[1].unwrap()
        if outcomes[2].error() is not None:
            log.debug("%s: the close of a small file's open: %s", path, outcomes[2].message)
        if len(data) >= SMALL_OPEN:
            return None
        opened = OpenFile(
            0, path, False, client, 0, in_memory=True, ahead=data, ahead_ends_file=True
        )
        opened.next_read = len(data)
        opened.attrs = self._learn(path, handle.info, since)
        self._enter(opened)
        return opened

    def create(self, path: str, mode: int, flags: int) -> tuple[int, dict[str, Any]]:
        """A file opened or made for writing; its name joins its folder's listing in the
        cache (so the next lookups there still ask nothing)."""
        try:
            fh, attrs = self._create(path, mode, flags)
        except BaseException:
            self.cache.forget(path)
            raise
        self.cache.added(path, attrs)
        return fh, attrs

    def _create(self, path: str, mode: int, flags: int) -> tuple[int, dict[str, Any]]:
        access, _ = self._access(flags)
        if flags & os.O_EXCL:
            disposition = CreateDisposition.FILE_CREATE
        elif flags & os.O_TRUNC:
            disposition = CreateDisposition.FILE_OVERWRITE_IF
        else:
            disposition = CreateDisposition.FILE_OPEN_IF
        with self.pool.lease() as client:
            handle = client.create(
                self._unc(path),
                access=access | Access.GENERIC_WRITE,  # the creator may write even a 0444 file
                disposition=disposition,
                options=CreateOptions.FILE_NON_DIRECTORY_FILE,
            )
            self._touch(path)
            opened = self._add(handle.fobx, path, True, client)
        attrs = self.attrs_of(handle.info)
        opened.attrs = attrs
        kept = handle.info.extra.get("mode")
        wanted = stat.S_IMODE(mode)
        if self._modes_kept and isinstance(kept, int) and stat.S_IMODE(kept) != wanted:
            # the backend keeps modes: the exec bit (and 0600, 0444...) as asked
            try:
                opened.client.set_security(handle.fobx, mode=wanted)
                attrs = {**attrs, "st_mode": stat.S_IFMT(attrs["st_mode"]) | wanted}
                opened.attrs = attrs
            except NtStatusError as exc:
                if exc.status in _NO_MODES:
                    self._modes_kept = False
        return opened.fh, attrs

    def read(self, fh: int, offset: int, size: int) -> bytes:
        return self._open_of(fh).read(offset, size)

    def write(self, fh: int, offset: int, data: bytes) -> int:
        opened = self._open_of(fh)
        opened.write(offset, data)
        self._changed_through(opened)
        return len(data)

    @_forgets()
    def truncate(self, path: str, length: int, fh: int | None = None) -> None:
        self.cache.forget(path)
        opened = self._get(fh)
        if opened is None:
            writers = [o for o in self._opens_at(path) if o.writable]
            opened = writers[0] if writers else None
        if opened is not None and opened.writable:
            opened.truncate(length)
            self._changed_through(opened)
        else:
            self._settle(path)
            with self.pool.lease() as client:
                client.truncate(self._unc(path), length)
            self._touch(path)

    def flush(self, fh: int) -> None:
        """close(2) waits for this: what the handle wrote reaches the server (WebDAV uploads
        its staged file, the core sends its deferred writes) and a failure is close's error."""
        opened = self._get(fh)
        if opened is None or not opened.writable:
            return
        if not opened.flush(self.attrs_of) or opened.unlinked:
            return  # nothing written: what the handle learned at its open may be stale
        self._touch(opened.path, opened)
        attrs = opened.attrs
        if attrs is not None:
            # newer than any listing or stat still in flight (AttrCache.changed)
            self.cache.changed(opened.path, attrs)
        else:
            self.cache.forget_attrs(opened.path)

    def fsync(self, fh: int) -> None:
        self._open_of(fh).fsync()

    def release_now(self, fh: int) -> bool:
        """Forget a handle whose file was closed at its open (``_open_small``), without a
        request (False: ``release`` must run). Never waits, as ``read_now``."""
        with self._lock:
            opened = self._opens.get(fh)
            if opened is None or not opened.in_memory:
                return False
            del self._opens[fh]
            self._drop_path_entry(opened)
        return True

    def release(self, fh: int) -> str | None:
        """Close the handle; the path it had (None for an unknown handle)."""
        with self._lock:
            opened = self._opens.pop(fh, None)
            if opened is not None:
                self._drop_path_entry(opened)
        if opened is None:
            return None
        opened.close()
        if opened.writable and opened.dirty and not opened.unlinked:
            # what its last flush found is in the cache already; nothing is put here: the
            # kernel does not wait for a release, so a rename of the path may have run since
            self.cache.forget_attrs(opened.path)
        return opened.path

    def _drop_path_entry(self, opened: OpenFile) -> None:
        """Forget ``opened`` in the by-path index (self._lock held)."""
        opens = self._by_path.get(opened.path)
        if opens is not None:
            with contextlib.suppress(ValueError):
                opens.remove(opened)
            if not opens:
                del self._by_path[opened.path]

    # ------------------------------------------------------------------ names
    def mkdir(self, path: str, mode: int) -> dict[str, Any]:
        """The folder made and closed in one compound, whose create answers its attributes;
        a new folder is known to be empty (lookups in it ask nothing)."""
        try:
            with self.pool.lease() as client:
                timeout_ms = int(client.timeout * 1000)
                create = rq.create(
                    self._unc(path),
                    timeout_ms,
                    access=Access.FILE_LIST_DIRECTORY,
                    disposition=CreateDisposition.FILE_CREATE,
                    options=CreateOptions.FILE_DIRECTORY_FILE,
                )
                outcomes = client.compound([create, rq.related(rq.close(0, timeout_ms))])
            handle = outcomes[0].unwrap()
        except BaseException:
            self.cache.forget(path)
            raise
        attrs = self.attrs_of(handle.info)
        self.cache.added(path, attrs)
        self.cache.put_listing(path, {})
        return attrs

    def rmdir(self, path: str) -> None:
        self._remove(path, folder=True)

    def unlink(self, path: str) -> None:
        self._remove(path, folder=False)

    def _remove(self, path: str, *, folder: bool) -> None:
        """Delete ``path``; its name then leaves its folder's listing in the cache (a failure
        forgets the listing)."""
        self.cache.forget_under(path)
        try:
            with self.pool.lease() as client:
                change = functools.partial(delete, client, self._unc(path), folder=folder)
                self._writable_again(client, path, change)
        except BaseException:
            self.cache.forget_tree(path)
            raise
        with self._lock:
            self._detach(path)
        self.cache.removed(path)

    def _writable_again(self, client: Client, path: str, change: Callable[[], None]) -> None:
        """Run ``change`` (a delete or a rename onto ``path``); refused because ``path`` is
        read-only (a 0444 file: git's packs and objects), clear READONLY and try once more, as
        the Linux CIFS client does, so ``rm -rf`` and ``git gc`` work as on a local disk. If
        the second try fails too, the attribute is put back."""
        try:
            change()
            return
        except PermissionError:
            try:
                info = client.stat(self._unc(path))
            except OSError:
                info = None
            if info is None or not info.attributes & FileAttributes.READONLY:
                raise
        readonly = info.attributes & ~FileAttributes.NORMAL
        self._set_basic(path, client, attributes=int(readonly & ~FileAttributes.READONLY) or NORMAL)
        try:
            change()
        except OSError:
            with contextlib.suppress(OSError):
                self._set_basic(path, client, attributes=int(readonly))
            raise

    def rename(self, old: str, new: str) -> None:
        """rename(2): replaces an existing file (a read-only one too); a directory replaces an
        empty directory. The cache's listings of both folders change by these names (a
        failure forgets them)."""
        self._settle(old)
        self.cache.forget_under(old)
        self.cache.forget_under(new)
        try:
            self._rename(old, new)
        except BaseException:
            self.cache.forget_tree(old)
            self.cache.forget_tree(new)
            raise
        self.cache.renamed(old, new)

    def _rename(self, old: str, new: str) -> None:
        src, dst = self._unc(old), self._unc(new)
        with self.pool.lease() as client:
            try:
                self._writable_again(client, new, lambda: rename(client, src, dst))
            except PermissionError:
                # shares refuse to replace a directory; POSIX allows it when it is empty
                try:
                    replace_dir = client.stat(src).is_dir and client.stat(dst).is_dir
                except OSError:
                    replace_dir = False
                if not replace_dir:
                    raise
                delete(client, dst, folder=True)  # ENOTEMPTY when not empty, as rename(2) says
                rename(client, src, dst)
        with self._lock:  # handles open on the old name now write the new one
            if old != new:
                self._detach(new)  # the file it named is gone from it
            for opened in list(self._opens.values()):
                if opened.unlinked:
                    continue
                if opened.path == old or opened.path.startswith(old.rstrip("/") + "/"):
                    self._drop_path_entry(opened)
                    opened.path = new + opened.path[len(old) :]
                    self._by_path.setdefault(opened.path, []).append(opened)

    def destroy(self) -> None:
        with self._lock:
            opens = list(self._opens.values())
            self._opens.clear()
            self._by_path.clear()
        for opened in opens:
            if opened.in_memory:
                continue
            with contextlib.suppress(OSError):
                opened.client.close_handle(opened.fobx, wait=False)
        self._fetcher.shutdown(wait=True, cancel_futures=True)
        for client in self.pool.close():
            with contextlib.suppress(Exception):
                client.close()

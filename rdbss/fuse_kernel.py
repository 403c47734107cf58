"""The mount's kernel side: inode numbers for mount paths, what the kernel caches and when it
is told to forget it, and the pyfuse3 (libfuse3 low-level) operations that run rdbss.fuse_ops
on the event loop or in worker threads.

- ``InodeTable`` gives each mount path an inode number and counts the kernel's references
  (lookups, readdirplus entries, creates) until it forgets them. Pure; unit-tested alone.
- ``KernelCache`` decides the kernel's timeouts and ``keep_cache`` and tells the kernel to drop
  names and attributes when something changed behind its back: a change-notify watch (``-o
  notify``) reports a name, or an open finds a file changed since the kernel cached its pages.
  The calls to the kernel are given as functions, so the rules are tested without a mount.
- ``KernelOps`` is the pyfuse3 ``Operations``: a request the mount's caches answer runs on the
  event loop; the daemon requests of reading (a reader's open, a listing, a stat the cache
  cannot answer) go out as one compound each, while no other request of the pool is in
  flight, and are awaited on the event loop (``_here``), which spares two thread switches
  per request; every
  other request runs the blocking path operation in a worker thread (``trio.to_thread``), so
  requests to the daemon go out in parallel, one per client of the pool.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import pyfuse3
import trio

from rdbss import requests as rq
from rdbss.client import GRACE_S, LINK_CHECK_S, Client
from rdbss.fuse_cache import parent_of
from rdbss.fuse_handles import folder_listed
from rdbss.fuse_ops import PathOps
from rdbss.requests import Outcome
from rdbss.wire import NtStatus, error_for_status

__all__ = ["ROOT", "InodeTable", "KernelCache", "KernelOps"]

log = logging.getLogger("rdbss.fuse")

ROOT = 1  # FUSE_ROOT_ID
T = TypeVar("T")


def child_path(folder: str, name: str) -> str:
    return folder.rstrip("/") + "/" + name


class InodeTable:
    """Mount paths and their inode numbers, with the kernel's reference count of each. An
    inode is never numbered again (so no generation numbers are needed); one whose path was
    removed keeps serving its open handles until the kernel forgets it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ino: dict[str, int] = {"/": ROOT}
        self._path: dict[int, str] = {ROOT: "/"}
        self._refs: dict[int, int] = {}
        self._next = ROOT + 1

    def path(self, ino: int) -> str | None:
        with self._lock:
            return self._path.get(ino)

    def ino(self, path: str) -> int | None:
        with self._lock:
            return self._ino.get(path)

    def number(self, path: str) -> int:
        """The inode of ``path``, given a number if it has none (no reference counted)."""
        with self._lock:
            ino = self._ino.get(path)
            if ino is None:
                ino = self._next
                self._next += 1
                self._ino[path] = ino
                self._path[ino] = path
            return ino

    def ref(self, ino: int) -> None:
        """The kernel holds one more reference to ``ino`` (a lookup answered)."""
        with self._lock:
            self._refs[ino] = self._refs.get(ino, 0) + 1

    def forget(self, ino: int, count: int) -> None:
        """The kernel dropped ``count`` references; with none left the inode goes."""
        if ino == ROOT:
            return
        with self._lock:
            left = self._refs.get(ino, 0) - count
            if left > 0:
                self._refs[ino] = left
                return
            self._refs.pop(ino, None)
            path = self._path.pop(ino, None)
            if path is not None and self._ino.get(path) == ino:
                del self._ino[path]

    def removed(self, path: str) -> None:
        """``path`` is gone: a new file by that name gets a new inode."""
        with self._lock:
            ino = self._ino.pop(path, None)
            if ino is not None and ino not in self._refs:
                self._path.pop(ino, None)

    def moved(self, old: str, new: str) -> None:
        """``old`` (and what is under it) is now ``new``; what ``new`` was is gone."""
        self.removed(new)
        prefix = old.rstrip("/") + "/"
        with self._lock:
            moving = [(p, i) for p, i in self._ino.items() if p == old or p.startswith(prefix)]
            for path, _ in moving:
                del self._ino[path]
            for path, ino in moving:
                moved_to = new + path[len(old) :]
                self._ino[moved_to] = ino
                self._path[ino] = moved_to

    def paths_under(self, folder: str) -> list[str]:
        prefix = folder.rstrip("/") + "/"
        with self._lock:
            return [p for p in self._ino if p.startswith(prefix) and p != folder]

    def __len__(self) -> int:
        with self._lock:
            return len(self._path)


class KernelCache:
    """What the kernel may keep, and telling it to forget. ``inval_inode(ino)`` drops an inode's
    attributes and pages, ``inval_entry(parent_ino, name)`` a name in a folder; both are called
    from threads that serve no FUSE request (the kernel may wait for one while it invalidates).
    """

    def __init__(
        self,
        inodes: InodeTable,
        *,
        attr_timeout: float,
        entry_timeout: float,
        inval_inode: Callable[[int], None],
        inval_entry: Callable[[int, bytes], None],
    ) -> None:
        self.inodes = inodes
        self.attr_timeout = attr_timeout
        self.entry_timeout = entry_timeout
        self._inval_inode = inval_inode
        self._inval_entry = inval_entry
        self._lock = threading.Lock()
        self._versions: dict[int, tuple[int, int]] = {}  # ino -> (size, mtime) of its pages

    def keep_pages(self, ino: int, attrs: dict[str, Any]) -> bool:
        """Whether an open may keep the pages the kernel has of ``ino`` (``keep_cache``): the
        file has the size and time it had when they were read, so nobody changed it since
        (close-to-open: an open that finds it changed drops them)."""
        version = (int(attrs.get("st_size", -1)), int(attrs.get("st_mtime", -1)))
        with self._lock:
            same = self._versions.get(ino) == version
            self._versions[ino] = version
        return same

    def forget_pages(self, ino: int) -> None:
        with self._lock:
            self._versions.pop(ino, None)

    def changed(self, path: str) -> None:
        """``path`` changed behind the kernel's back: its name in its folder and its inode's
        attributes and pages are forgotten, and so is the folder's inode (its times)."""
        folder_ino = self.inodes.ino(parent_of(path))
        name = path.rstrip("/").rpartition("/")[2]
        if folder_ino is not None and name:
            self._call(self._inval_entry, folder_ino, os.fsencode(name))
            self._call(self._inval_inode, folder_ino)
        ino = self.inodes.ino(path)
        if ino is not None:
            self.forget_pages(ino)
            self._call(self._inval_inode, ino)

    def changed_all(self, folder: str = "/") -> None:
        """Too many changes to name (a watch overflowed, or was lost): every name the kernel
        knows under ``folder``."""
        for path in self.inodes.paths_under(folder):
            self.changed(path)
        ino = self.inodes.ino(folder)
        if ino is not None:
            self._call(self._inval_inode, ino)

    @staticmethod
    def _call(func: Callable[..., None], *args: Any) -> None:
        try:
            func(*args)
        except OSError as exc:  # ENOENT: the kernel had forgotten it already
            if exc.errno != errno.ENOENT:
                log.debug("invalidating %r: %s", args, exc)


def _entry(ino: int, attrs: dict[str, Any], entry_timeout: float, attr_timeout: float) -> Any:
    entry = pyfuse3.EntryAttributes()
    entry.st_ino = ino
    entry.generation = 0
    entry.entry_timeout = entry_timeout
    entry.attr_timeout = attr_timeout
    entry.st_mode = attrs["st_mode"]
    entry.st_nlink = attrs["st_nlink"]
    entry.st_uid = attrs["st_uid"]
    entry.st_gid = attrs["st_gid"]
    entry.st_rdev = 0
    entry.st_size = attrs["st_size"]
    entry.st_blksize = attrs["st_blksize"]
    entry.st_blocks = attrs["st_blocks"]
    entry.st_atime_ns = attrs["st_atime"]
    entry.st_mtime_ns = attrs["st_mtime"]
    entry.st_ctime_ns = attrs["st_ctime"]
    return entry


def _errno_of(exc: BaseException) -> int:
    code = getattr(exc, "errno", None)
    return code if isinstance(code, int) and code > 0 else errno.EIO


@contextlib.contextmanager
def _errors_to_kernel(what: object, *args: Any) -> Iterator[None]:
    """An OSError raised inside is the kernel's errno (FUSEError); anything else is EIO, and
    logged."""
    try:
        yield
    except pyfuse3.FUSEError:
        raise
    except OSError as exc:
        log.debug("%s%r: %s", what, args, exc)
        raise pyfuse3.FUSEError(_errno_of(exc)) from exc
    except Exception as exc:
        log.exception("%s%r failed", what, args)
        raise pyfuse3.FUSEError(errno.EIO) from exc


async def _compound_here(
    client: Client, items: Sequence[rq.Request[Any]]
) -> list[Outcome[Any]] | None:
    """``items`` sent as one compound on ``client`` and its answer awaited on the event loop
    (the client's descriptor readable), not in a thread; None when it cannot be sent at once
    (no connection yet). Waits as ``Client.compound`` does: the request's timeout and the
    client's grace, the link's news looked at in between."""
    request_id = client.send_compound_now(items)
    if request_id is None:
        return None
    deadline = trio.current_time() + client.timeout + GRACE_S
    answered = ran_out = False
    try:
        while True:
            outcomes = client.compound_answer_now(request_id, items, link=ran_out)
            if outcomes is not None:
                answered = True
                return outcomes
            left = deadline - trio.current_time()
            if left <= 0:
                raise error_for_status(
                    NtStatus.STATUS_IO_TIMEOUT,
                    f"no answer from the daemon in {client.timeout + GRACE_S:.1f} s",
                )
            with trio.move_on_after(min(left, LINK_CHECK_S)) as waited:
                await trio.lowlevel.wait_readable(client.fileno())
            ran_out = waited.cancelled_caught
    finally:
        if not answered:
            client.abandon([request_id])


class KernelOps(pyfuse3.Operations):
    """The pyfuse3 operations of a mount: inodes to paths, then ``PathOps`` on the event loop
    (what its caches answer, the daemon requests of reading) or in a worker thread."""

    supports_dot_lookup = False
    enable_acl = False

    def __init__(self, ops: PathOps, kernel: KernelCache, *, threads: int) -> None:
        super().__init__()
        self.ops = ops
        self.kernel = kernel
        self.inodes = kernel.inodes
        self.enable_writeback_cache = ops.writeback_cache
        self._limiter = trio.CapacityLimiter(threads)
        self._dirs: dict[int, list[tuple[str, str, dict[str, Any]]]] = {}
        self._dir_paths: dict[int, str] = {}
        self._file_inodes: dict[int, tuple[int, bool]] = {}  # fh -> (inode, writable)
        self._next_dir = 1

    # ------------------------------------------------------------------ plumbing
    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in a worker thread; an OSError is the kernel's errno."""
        with _errors_to_kernel(getattr(func, "__name__", func), *args):
            return await trio.to_thread.run_sync(
                functools.partial(func, *args), limiter=self._limiter
            )

    async def _here(
        self,
        what: str,
        path: str,
        items_of: Callable[[int], Sequence[rq.Request[Any]] | None],
        done: Callable[[Client, list[Outcome[Any]]], T | None],
    ) -> T | None:
        """A daemon request on the event loop, with no worker thread: the compound
        ``items_of(timeout_ms)`` sent on a client of the pool while no other request of the
        pool is in flight (``ClientPool.lease_now``), its answer awaited here, then
        ``done(client, outcomes)`` (which never waits). None when that cannot be (another
        request in flight, ``items_of`` or ``done`` say None, no connection): the caller then
        runs the request in a thread."""
        with self.ops.pool.lease_now() as client:
            if client is None:
                return None
            with _errors_to_kernel(what, path):
                items = items_of(int(client.timeout * 1000))
                outcomes = None if items is None else await _compound_here(client, items)
                return None if outcomes is None else done(client, outcomes)

    def _path(self, ino: int) -> str:
        path = self.inodes.path(ino)
        if path is None:
            raise pyfuse3.FUSEError(errno.ESTALE)
        return path

    def _child(self, parent: int, name: bytes) -> str:
        return child_path(self._path(parent), os.fsdecode(name))

    def _attr(self, path: str, attrs: dict[str, Any], *, ref: bool, listed: bool = False) -> Any:
        """The kernel's entry for ``path``; ``listed``: the attributes come from a listing,
        which may not have the size of a file being written through the mount yet."""
        ino = self.inodes.number(path)
        if ref:
            self.inodes.ref(ino)
        busy = listed and self.ops.is_open(path)
        attr_timeout = 0.0 if busy else self.kernel.attr_timeout
        return _entry(ino, attrs, self.kernel.entry_timeout, attr_timeout)

    async def _getattr(self, path: str) -> dict[str, Any]:
        """From the caches on the event loop when they know, else a request awaited there
        (``_getattr_here``), else in a thread."""
        known = self._peek(path)
        if known is None:
            known = await self._getattr_here(path)
        return known if known is not None else await self._run(self.ops.getattr, path)

    def _peek(self, path: str) -> dict[str, Any] | None:
        try:
            return self.ops.peek(path)
        except OSError as exc:
            raise pyfuse3.FUSEError(_errno_of(exc)) from None

    async def _getattr_here(self, path: str) -> dict[str, Any] | None:
        """What ``PathOps.getattr`` asks the daemon, awaited on the event loop (``_here``): a
        listing of the folder when its names are being looked up one by one, else a stat of
        the name. None when that cannot be (a handle is open on it, another request in flight): then
        ``PathOps.getattr`` runs in a thread."""
        if self.ops.is_open(path):
            return None
        if path != "/" and self.ops.cache.note_lookup(path):
            with contextlib.suppress(pyfuse3.FUSEError):  # a failed listing: stat it alone
                await self._list_here(parent_of(path))
            known = self._peek(path)
            if known is not None:
                return known
        since = self.ops.cache.begin()
        return await self._here(
            "getattr",
            path,
            lambda ms: self.ops.stat_items(path, ms),
            lambda client, outcomes: self.ops.stat_answered(path, outcomes, since),
        )

    # ------------------------------------------------------------------ names
    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> Any:
        if name in (b".", b".."):
            raise pyfuse3.FUSEError(errno.ENOENT)  # supports_dot_lookup is off
        path = self._child(parent_inode, name)
        attrs = await self._getattr(path)
        return self._attr(path, attrs, ref=True)

    async def forget(self, inode_list: Iterable[tuple[int, int]]) -> None:
        for ino, count in inode_list:
            self.inodes.forget(ino, count)
            if self.inodes.path(ino) is None:
                self.kernel.forget_pages(ino)

    async def getattr(self, inode: int, ctx: Any = None) -> Any:
        path = self._path(inode)
        fh = self._detached_handle(inode, path)
        if fh is not None:  # fstat of a file whose name is gone: its handle says
            attrs = await self._run(self.ops.handle_getattr, fh)
            return _entry(inode, attrs, 0.0, 0.0)
        attrs = await self._getattr(path)
        return self._attr(path, attrs, ref=False)

    def _detached_handle(self, inode: int, path: str) -> int | None:
        """A FUSE file handle open on ``inode`` when its name ``path`` was removed or replaced
        through the mount (the name now numbers another inode, or none), else None."""
        if self.inodes.ino(path) == inode:
            return None
        return next((fh for fh, (ino, _) in self._file_inodes.items() if ino == inode), None)

    async def setattr(self, inode: int, attr: Any, fields: Any, fh: int | None, ctx: Any) -> Any:
        path = self._path(inode)

        def change() -> dict[str, Any]:
            if fields.update_size:
                self.ops.truncate(path, attr.st_size, fh)
            if fields.update_mode:
                self.ops.chmod(path, attr.st_mode)
            if fields.update_uid or fields.update_gid:
                uid = attr.st_uid if fields.update_uid else -1
                gid = attr.st_gid if fields.update_gid else -1
                self.ops.chown(path, uid, gid)
            if fields.update_atime or fields.update_mtime:
                atime = max(attr.st_atime_ns, 1) if fields.update_atime else 0
                mtime = max(attr.st_mtime_ns, 1) if fields.update_mtime else 0
                self.ops.utimens(path, atime, mtime)
            return self.ops.getattr(path)

        detached = self._detached_handle(inode, path)
        if detached is not None:  # ftruncate of a file whose name is gone: through its handle
            if fields.update_size:
                await self._run(self.ops.truncate, path, attr.st_size, fh or detached)
            attrs = await self._run(self.ops.handle_getattr, fh or detached)
            return _entry(inode, attrs, 0.0, 0.0)
        attrs = await self._run(change)
        return self._attr(path, attrs, ref=False)

    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: Any) -> Any:
        path = self._child(parent_inode, name)
        attrs = await self._run(self.ops.mkdir, path, mode)
        return self._attr(path, attrs, ref=True)

    async def unlink(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        path = self._child(parent_inode, name)
        await self._run(self.ops.unlink, path)
        self.inodes.removed(path)

    async def rmdir(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        path = self._child(parent_inode, name)
        await self._run(self.ops.rmdir, path)
        self.inodes.removed(path)

    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: Any,
    ) -> None:
        if flags:  # RENAME_EXCHANGE, RENAME_NOREPLACE: no share keeps those promises
            raise pyfuse3.FUSEError(errno.EINVAL)
        old = self._child(parent_inode_old, name_old)
        new = self._child(parent_inode_new, name_new)
        await self._run(self.ops.rename, old, new)
        self.inodes.moved(old, new)

    # ------------------------------------------------------------------ folders
    async def opendir(self, inode: int, ctx: Any) -> int:
        path = self._path(inode)
        fh = self._next_dir
        self._next_dir += 1
        self._dir_paths[fh] = path
        return fh

    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        """Readdirplus: every name with its attributes, so ``ls -l`` and ``find`` need no
        lookup per name. The listing is taken at the first call and served from there."""
        entries = self._dirs.get(fh)
        if entries is None or start_id == 0:
            folder = self._dir_paths[fh]
            children = await self._list_here(folder)
            if children is None:
                children = await self._run(self.ops.list, folder)
            here = await self._getattr(folder)
            entries = [(".", folder, here), ("..", parent_of(folder), here)]
            entries += [(n, child_path(folder, n), a) for n, a in children.items()]
            self._dirs[fh] = entries
        for index in range(start_id, len(entries)):
            name, path, attrs = entries[index]
            entry = self._attr(path, attrs, ref=False, listed=True)
            if not pyfuse3.readdir_reply(token, os.fsencode(name), entry, index + 1):
                return
            if index >= 2:  # the kernel keeps no reference for "." and ".."
                self.inodes.ref(entry.st_ino)

    async def _list_here(self, folder: str) -> dict[str, dict[str, Any]] | None:
        """A listing of ``folder`` in one compound awaited on the event loop (``_here``); None
        when that cannot be (another request in flight, a folder larger than the compound): then
        ``PathOps.list`` runs in a thread."""

        since = self.ops.cache.begin()

        def listed(client: Client, outcomes: list[Outcome[Any]]) -> dict[str, Any] | None:
            entries = folder_listed(outcomes)
            return None if entries is None else self.ops.listed(folder, entries, since)

        return await self._here("list", folder, lambda ms: self.ops.list_now(folder, ms), listed)

    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)
        self._dir_paths.pop(fh, None)

    async def statfs(self, ctx: Any) -> Any:
        found = await self._run(self.ops.statfs)
        data = pyfuse3.StatvfsData()
        for key, value in found.items():
            setattr(data, key, value)
        return data

    async def access(self, inode: int, mode: int, ctx: Any) -> bool:
        return True  # the server decides, when the request reaches it

    # ------------------------------------------------------------------ files
    async def open(self, inode: int, flags: int, ctx: Any) -> Any:
        path = self._path(inode)
        writable = flags & os.O_ACCMODE != os.O_RDONLY
        found = None if writable else await self._open_reader_here(path)
        fh, attrs = found if found is not None else await self._run(self.ops.open, path, flags)
        self._file_inodes[fh] = (inode, writable)
        keep = attrs is not None and self.kernel.keep_pages(inode, attrs)
        if attrs is None or writable:
            self.kernel.forget_pages(inode)  # what this handle writes changes them
        return pyfuse3.FileInfo(fh=fh, keep_cache=keep)

    async def _open_reader_here(self, path: str) -> tuple[int, dict[str, Any] | None] | None:
        """A reader's open awaited on the event loop (``_here``): a file the cache knows small
        is read whole and closed in the same compound, any other opened with its first read.
        None when that cannot be (another request in flight, a handle here has writes of
        the file to send first, a small file grew): then ``PathOps.open`` runs in a thread."""
        small = self.ops.known_small(path)
        opened_by = self.ops.small_opened if small else self.ops.reader_opened
        since = self.ops.cache.begin()
        opened = await self._here(
            "open",
            path,
            lambda ms: self.ops.reader_open_now(path, ms, small=small),
            lambda client, outcomes: opened_by(path, client, outcomes, since),
        )
        return None if opened is None else (opened.fh, opened.attrs)

    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: Any
    ) -> tuple[Any, Any]:
        path = self._child(parent_inode, name)
        fh, attrs = await self._run(self.ops.create, path, mode, flags)
        entry = self._attr(path, attrs, ref=True)
        self._file_inodes[fh] = (entry.st_ino, True)
        self.kernel.forget_pages(entry.st_ino)
        return pyfuse3.FileInfo(fh=fh), entry

    async def read(self, fh: int, off: int, size: int) -> bytes:
        data = self.ops.read_now(fh, off, size)  # from the window: no thread needed
        return data if data is not None else await self._run(self.ops.read, fh, off, size)

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        if self.ops.write_now(fh, off, buf):  # gathered: no thread needed
            return len(buf)
        return await self._run(self.ops.write, fh, off, buf)

    async def flush(self, fh: int) -> None:
        if not self._file_inodes.get(fh, (0, True))[1]:
            return  # a reader's close sends nothing: no thread needed
        await self._run(self.ops.flush, fh)

    async def fsync(self, fh: int, datasync: bool) -> None:
        await self._run(self.ops.fsync, fh)

    async def release(self, fh: int) -> None:
        inode, writable = self._file_inodes.pop(fh, (0, False))
        if not self.ops.release_now(fh):  # a small file's handle, closed at its open
            await self._run(self.ops.release, fh)
        if writable:
            self.kernel.forget_pages(inode)  # what it wrote: the next open reads again

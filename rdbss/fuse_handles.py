"""The mount's file handles and the compounds it sends the daemon (rdbss.fuse_ops uses both).

``OpenFile`` is one FUSE file handle: its daemon handle (FOBX) and the client that opened it
(the daemon answers a handle only on the connection that opened it), a sequential reader's
windows and the writes gathered for the daemon. Its rules:
- A sequential reader is served from a window (``read_ahead`` bytes) fetched in one request;
  the next window is asked for in the background once half of this one is read, so the daemon
  works while the kernel copies.
- Writes are gathered; every ``GATHER_BYTES`` piece goes to the daemon in the background, one
  piece in flight, while the next gathers. A piece that failed is the error of the handle's
  next write, flush or fsync, and of every one after: what the handle wrote is not all on the
  server, so close(2) must not return 0.
- A flush sends the last (small) writes, the flush and a query of the attributes in one
  compound, whose items run in order on the handle.
- A handle made by reading a small file whole at its open (``in_memory``) has no daemon
  handle left: its reads come from memory and its close asks nothing.

The functions below it are requests of the mount that take one compound each: a folder's
listing, a delete, a rename, a request on a path's own short-lived handle.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

from rdbss import requests as rq
from rdbss import shm
from rdbss.client import Client, FileInfo
from rdbss.requests import Outcome
from rdbss.wire import Access, CreateOptions, FileInformationClass

__all__ = [
    "GATHER_BYTES",
    "LIST_BATCH",
    "OpenFile",
    "delete",
    "fail",
    "list_folder",
    "on_handle",
    "rename",
]

log = logging.getLogger("rdbss.fuse")

GATHER_BYTES = 4 << 20  # sequential writes gathered into one daemon write of up to this much
#: Gathered writes smaller than this travel in the flush's compound (larger ones go through
#: shared memory first).
FLUSH_WITH_DATA = shm.MIN_WRITE_BYTES
#: Entries one query of a listing asks for; a listing is one compound of an open, two queries
#: and a close, complete when a query says there is no more (else it is listed again in turns).
#: The answers of both queries travel in one message header, which holds at most 1 MiB
#: (``rdbss.wire.codec.Limits.max_header_bytes``): 2048 entries of at most about 400 bytes (a
#: 255-byte name and its attributes) fit.
LIST_BATCH = 1024


def fail(code: int) -> OSError:
    """The OSError of ``code`` (what the front end hands the kernel)."""
    return OSError(code, os.strerror(code))


def _errno_of(exc: OSError) -> int:
    return exc.errno if isinstance(exc.errno, int) and exc.errno > 0 else errno.EIO


def _timeout_ms(client: Client) -> int:
    return int(client.timeout * 1000)


@dataclass(slots=True, eq=False)
class OpenFile:
    """One FUSE file handle: its daemon handle (FOBX) and the client that opened it, the writes
    gathered but not sent yet (``pending`` at ``pending_at``) and the piece being sent
    (``sending``), the read-ahead window (``ahead`` at ``ahead_at``) and the next window being
    fetched (``coming``). ``workers`` run the background reads and writes."""

    fobx: int
    path: str
    writable: bool
    client: Client
    read_ahead: int
    workers: Executor | None = None
    dirty: bool = False  # written (or truncated) since the last flush
    pending: bytearray | None = None
    pending_at: int = 0
    ahead: bytes = b""
    ahead_at: int = 0
    ahead_ends_file: bool = False  # the window reaches the end of the file
    coming: Future[bytes] | None = None  # the next window, asked for in the background
    coming_at: int = 0
    next_read: int = -1  # where a sequential reader reads next
    attrs: dict[str, Any] | None = None  # from the open, while the handle has not changed it
    in_memory: bool = False  # read whole at the open and closed then: no daemon handle left
    unlinked: bool = False  # its name was removed or replaced through the mount since
    sending: Future[None] | None = None  # a gathered piece being written in the background
    failed: int = 0  # the errno of a background write that failed: every later write says it
    lock: threading.Lock = field(default_factory=threading.Lock)
    fh: int = 0  # its FUSE file handle

    # ------------------------------------------------------------------ reads
    def read_now(self, offset: int, size: int) -> bytes | None:
        """What ``read`` answers from the window without a request (None: it must ask, or
        the handle is busy). Never waits."""
        if self.in_memory:  # its bytes never change
            return self.ahead[offset : offset + size]
        if not self.lock.acquire(blocking=False):
            return None
        try:
            start = offset - self.ahead_at
            window = self.ahead
            if self.pending or not 0 <= start < len(window):
                return None
            if start + size > len(window) and not self.ahead_ends_file:
                return None
            data = window[start : start + size]
            self.next_read = offset + len(data)
            self._fetch_next()
            return data
        finally:
            self.lock.release()

    def read(self, offset: int, size: int) -> bytes:
        if self.in_memory:
            return self.ahead[offset : offset + size]
        with self.lock:
            self.send_pending()
            window = self.ahead
            start = offset - self.ahead_at
            whole = start + size <= len(window) or self.ahead_ends_file
            at_end = self.ahead_ends_file and start == len(window)  # grown since? ask
            if 0 <= start < len(window) and whole:
                data = window[start : start + size]
            elif offset == self.next_read and size < self.read_ahead and not at_end:
                # a sequential reader: one large read (shared memory) serves the next ones
                self.ahead = self._window(offset)
                self.ahead_at = offset
                self.ahead_ends_file = len(self.ahead) < self.read_ahead
                data = self.ahead[:size]
            else:
                self.drop_ahead()
                if size >= shm.MIN_READ_BYTES:
                    data = fetch(self.client, self.fobx, offset, size)
                else:
                    data = self.client.read_handle(self.fobx, offset, size)
            self.next_read = offset + len(data)
            self._fetch_next()
            return data

    def _window(self, offset: int) -> bytes:
        """The window at ``offset``: the one fetched in the background if it is that one."""
        coming, self.coming = self.coming, None
        if coming is not None and self.coming_at == offset:
            return coming.result()
        if coming is not None:
            with contextlib.suppress(Exception):
                coming.result()  # the handle's client serves one request at a time anyway
        return fetch(self.client, self.fobx, offset, self.read_ahead)

    def _fetch_next(self) -> None:
        """A sequential reader past half of its window: ask for the next one in the background
        (the lock held)."""
        window = self.ahead
        end = self.ahead_at + len(window)
        if (
            self.workers is not None
            and self.coming is None
            and window
            and not self.ahead_ends_file
            and len(window) >= self.read_ahead
            and self.next_read - self.ahead_at >= len(window) // 2
        ):
            self.coming_at = end
            self.coming = self.workers.submit(fetch, self.client, self.fobx, end, self.read_ahead)

    def drop_ahead(self) -> None:
        """Forget the windows (a write or a truncate made them stale; a random reader)."""
        self.ahead = b""
        coming, self.coming = self.coming, None
        if coming is not None:
            with contextlib.suppress(Exception):
                coming.result()  # let it end before the handle changes or goes

    # ------------------------------------------------------------------ writes
    def gather_now(self, offset: int, data: bytes) -> bool:
        """Gather ``data`` after the pending writes when that needs no request (False:
        ``write`` must run). Never waits."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            pending = self.pending
            if (
                pending is None
                or self.failed
                or self.coming is not None
                or self.pending_at + len(pending) != offset
                or len(pending) + len(data) >= GATHER_BYTES
            ):
                return False
            pending += data
            self.dirty = True
            self.attrs = None
            self.ahead = b""
            return True
        finally:
            self.lock.release()

    def write(self, offset: int, data: bytes) -> None:
        with self.lock:
            if self.sending is not None and self.sending.done():
                self._wait_sent()  # a failed piece is this write's error
            if self.failed:
                raise fail(self.failed)
            self.dirty = True
            self.attrs = None
            self.drop_ahead()
            pending = self.pending
            if pending is not None and self.pending_at + len(pending) == offset:
                pending += data
            else:
                if pending is not None:  # not where the gathered writes end: they go first
                    self.send_pending()
                self.pending, self.pending_at = bytearray(data), offset
            if len(self.pending or b"") >= GATHER_BYTES:
                self._send_behind()

    def _send_behind(self) -> None:
        """Send the gathered writes in the background (the lock held), one piece in flight at
        a time: the kernel's next writes gather while the daemon writes this one."""
        self._wait_sent()
        data, self.pending = self.pending, None
        if data and self.workers is not None:
            self.sending = self.workers.submit(
                write_all, self.client, self.fobx, self.pending_at, data
            )
        elif data:
            write_all(self.client, self.fobx, self.pending_at, data)

    def _wait_sent(self) -> None:
        """Wait for the piece being written in the background (the lock held); raise its
        error, and every time after."""
        sending, self.sending = self.sending, None
        if sending is not None:
            try:
                sending.result()
            except OSError as exc:
                self.failed = _errno_of(exc)
            except Exception:
                log.exception("%s: a write in the background", self.path)
                self.failed = errno.EIO
        if self.failed:
            raise fail(self.failed)

    def send_pending(self) -> None:
        """Send the gathered writes (the lock held), after the piece in flight: sequential
        writes go to the daemon in large pieces (shared memory from 256 KiB on)."""
        self._wait_sent()
        data, self.pending = self.pending, None
        if data:
            write_all(self.client, self.fobx, self.pending_at, data)

    def settle(self) -> None:
        """Send the gathered writes (a stat, a set-info or a rename by path must see them)."""
        with self.lock:
            self.send_pending()

    def flush(self, attrs_of: Callable[[FileInfo], dict[str, Any]]) -> bool:
        """What the handle wrote reaches the server: the piece in flight, then the rest with
        the flush and a query of the attributes (``attrs_of`` makes ``attrs`` of them) in one
        compound; a failure of any is raised. False when it had written nothing since its
        last flush (nothing sent, ``attrs`` as they were)."""
        with self.lock:
            self._wait_sent()
            data = self.pending
            if data is not None and len(data) >= FLUSH_WITH_DATA:
                self.send_pending()
                data = None
            if not (self.dirty or data):
                return False
            self.pending = None
            timeout_ms = _timeout_ms(self.client)
            items: list[rq.Request[Any]] = []
            if data:
                items.append(rq.write(self.fobx, self.pending_at, bytes(data), timeout_ms))
            items += [rq.flush(self.fobx, timeout_ms), rq.query_info(self.fobx, timeout_ms)]
            outcomes = self.client.compound(items)
            if data and outcomes[0].ok and int(outcomes[0].value or 0) < len(data):
                self.failed = errno.EIO  # a short write: the rest is not on the server
            for outcome in outcomes[:-1]:
                error = outcome.error()
                if error is not None:
                    raise error
            if self.failed:
                raise fail(self.failed)
            self.dirty = False
            info = outcomes[-1]
            self.attrs = attrs_of(info.value) if info.ok and info.value is not None else None
            return True

    def fsync(self) -> None:
        """What the handle wrote reaches stable storage; a reader's fsync has nothing to do
        (a small file read whole has no daemon handle left to ask)."""
        if not self.writable:
            return
        with self.lock:
            self.send_pending()
            self.dirty = False
            self.client.flush_handle(self.fobx)

    def truncate(self, length: int) -> None:
        with self.lock:
            self.send_pending()
            self.drop_ahead()
            self.dirty = True
            self.attrs = None
            self.client.set_info(
                self.fobx, FileInformationClass.FileEndOfFileInformation, size=length
            )

    def set_info(self, info_class: int, **args: Any) -> None:
        """Set information through this handle, after the gathered writes."""
        with self.lock:
            self.send_pending()
            self.attrs = None
            self.client.set_info(self.fobx, info_class, **args)

    def close(self) -> None:
        """Close the daemon handle (not waited for when a flush did the work close(2) waits
        for); a write that fails now was reported by that flush."""
        if self.in_memory:
            return
        with self.lock:
            self.drop_ahead()
            with contextlib.suppress(OSError):
                self.send_pending()
            self.client.close_handle(self.fobx, wait=self.dirty)


# --------------------------------------------------------------------------- one compound each
def write_all(client: Client, fobx: int, offset: int, data: bytearray) -> None:
    """Write ``data`` at ``offset`` through the daemon handle, all of it (EIO when the daemon
    takes none of a piece)."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        written = client.write_handle(fobx, offset + done, view[done:])
        if written <= 0:
            raise fail(errno.EIO)
        done += written


def fetch(client: Client, fobx: int, offset: int, size: int) -> bytes:
    """Read up to ``size`` bytes at ``offset`` (shared memory with a daemon on this host)."""
    buffer = bytearray(size)
    count = client.readinto(fobx, offset, buffer)
    return bytes(memoryview(buffer)[:count])


def on_handle(
    client: Client, unc: str, access: int, options: int, *related: rq.Request[Any]
) -> list[Any]:
    """Open ``unc``, run ``related`` requests on the handle and close it, in one compound:
    what the ``related`` requests answered. Raises the first error in the order they ran."""
    timeout_ms = _timeout_ms(client)
    items = [rq.create(unc, timeout_ms, access=access, options=options)]
    items += [rq.related(request) for request in related]
    values = [o.unwrap() for o in client.compound([*items, rq.related(rq.close(0, timeout_ms))])]
    return values[1:-1]


def delete(client: Client, unc: str, *, folder: bool) -> None:
    """Delete a file, or an empty folder (an open for delete-on-close, and its close)."""
    kind = CreateOptions.FILE_DIRECTORY_FILE if folder else CreateOptions.FILE_NON_DIRECTORY_FILE
    on_handle(client, unc, Access.DELETE, kind | CreateOptions.FILE_DELETE_ON_CLOSE)


def rename(client: Client, src: str, dst: str) -> None:
    """Rename ``src`` to ``dst``, replacing it (an open, FileRenameInformation, a close)."""
    request = rq.set_info(
        0, _timeout_ms(client), FileInformationClass.FileRenameInformation, target=dst, replace=True
    )
    on_handle(client, src, Access.DELETE, CreateOptions.NONE, request)


def list_folder(client: Client, unc: str) -> list[FileInfo]:
    """The entries of folder ``unc``: one compound (an open, two queries, a close), or, when
    the second query still found entries, the folder listed again in turns."""
    listed = folder_listed(client.compound(list_items(unc, _timeout_ms(client))))
    return list(client.scandir(unc)) if listed is None else listed


def list_items(unc: str, timeout_ms: int) -> list[rq.Request[Any]]:
    """A folder's listing as one compound: an open, two queries and the close."""
    items = rq.list_items(unc, timeout_ms, max_entries=LIST_BATCH)
    return [*items, rq.related(rq.close(0, timeout_ms))]


def folder_listed(outcomes: Sequence[Outcome[Any]]) -> list[FileInfo] | None:
    """The entries the outcomes of ``list_items`` found; None when the second query still
    found some (the folder is larger than the compound: it must be listed again in turns)."""
    outcomes[0].unwrap()
    first: list[FileInfo] | None = outcomes[1].unwrap()
    second: list[FileInfo] | None = outcomes[2].unwrap()
    if first is None:
        return []
    return None if second else first

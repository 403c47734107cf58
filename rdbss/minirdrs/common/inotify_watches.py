"""Change notification for folders on this host through the kernel's inotify: no polling, so the
cost of a pending notify is a kernel watch and a few bytes, however large its folder.

One inotify descriptor per mini-redirector, read by one thread. A watched handle (the first
notify on it) gets kernel watches on its folder (and every folder below it, bounded, for a
``watch_tree`` notify; folders made later are added as they come); the kernel's events for it
are kept from then on (so changes between two notifies of a handle are never lost, as
FILE_NOTIFY_INFORMATION buffering on Windows) and a pending notify completes as soon as one
passes its completion filter. Handles watching the same folder share its kernel watch. A pending
notify completes with STATUS_IO_TIMEOUT just before its deadline, with STATUS_NOTIFY_CLEANUP
when its handle is cleaned up, and with STATUS_NOTIFY_ENUM_DIR when more changes came than one
answer holds or the kernel's queue overflowed (list the folder again).

Events map to FILE_ACTION_*: a name made or moved in is "added", one deleted or moved out is
"removed" (as the polling backends report them), a file's data written is "modified" for
FILE_NOTIFY_CHANGE_SIZE / LAST_WRITE, its attributes or times changed is "modified" for
FILE_NOTIFY_CHANGE_ATTRIBUTES / LAST_WRITE. The caps of ``WatchLimits`` hold as for polling; the
kernel's own limit (fs.inotify.max_user_watches) reached answers STATUS_INSUFFICIENT_RESOURCES.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from inotify_simple import INotify
from inotify_simple import flags as F

from rdbss.minirdrs.base import Result
from rdbss.minirdrs.common.notify import (
    ACTION_NAMES,
    ADDED,
    FILE_NOTIFY_CHANGE_ATTRIBUTES,
    FILE_NOTIFY_CHANGE_DIR_NAME,
    FILE_NOTIFY_CHANGE_FILE_NAME,
    FILE_NOTIFY_CHANGE_LAST_WRITE,
    FILE_NOTIFY_CHANGE_SIZE,
    MAX_CHANGES,
    MAX_ENTRIES,
    MODIFIED,
    REMOVED,
    WatchLimits,
    checked_filter,
    client_of,
    notify_result,
    watch_key,
)
from rdbss.wire.rxcontext import RxContext
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.notify")
S = NtStatus

MASK = (
    F.CREATE
    | F.DELETE
    | F.MOVED_FROM
    | F.MOVED_TO
    | F.MODIFY
    | F.ATTRIB
    | F.DONT_FOLLOW
    | F.ONLYDIR
    | F.EXCL_UNLINK
)
READ_MS = 200  # the reader wakes at least this often (deadlines, stop)
MAX_KEPT = 4 * MAX_CHANGES  # events kept for one handle; more: STATUS_NOTIFY_ENUM_DIR
_DATA = FILE_NOTIFY_CHANGE_SIZE | FILE_NOTIFY_CHANGE_LAST_WRITE
_ATTRS = FILE_NOTIFY_CHANGE_ATTRIBUTES | FILE_NOTIFY_CHANGE_LAST_WRITE


class Change(NamedTuple):
    action: int
    name: str  # relative to the watched folder, backslashes
    flags: int  # the FILE_NOTIFY_CHANGE_* bits that select it


def change_of(mask: int, name: str) -> Change | None:
    """The change one inotify event reports (pure); None for an event no filter selects."""
    is_dir = bool(mask & F.ISDIR)
    name_flag = FILE_NOTIFY_CHANGE_DIR_NAME if is_dir else FILE_NOTIFY_CHANGE_FILE_NAME
    if mask & (F.CREATE | F.MOVED_TO):
        return Change(ADDED, name, name_flag)
    if mask & (F.DELETE | F.MOVED_FROM):
        return Change(REMOVED, name, name_flag)
    if is_dir:
        return None  # a folder's own data or times: not reported (as FILE_ACTION_MODIFIED)
    if mask & F.MODIFY:
        return Change(MODIFIED, name, _DATA)
    if mask & F.ATTRIB:
        return Change(MODIFIED, name, _ATTRS)
    return None


def selected(kept: list[Change], completion_filter: int) -> list[dict[str, object]]:
    """The kept changes a filter selects, as FILE_NOTIFY_INFORMATION records (a change repeated
    back to back once)."""
    out: list[dict[str, object]] = []
    last: tuple[int, str] | None = None
    for change in kept:
        if change.flags & completion_filter and (change.action, change.name) != last:
            out.append({"action": ACTION_NAMES[change.action], "name": change.name})
            last = (change.action, change.name)
    return out


@dataclass(slots=True, eq=False)
class _Pending:
    ctx: RxContext
    completion_filter: int
    deadline: float


@dataclass(slots=True, eq=False)
class _Handle:
    key: int
    client: str
    srv_open: int
    root: str  # the watched folder on this host
    tree: bool
    wds: set[int] = field(default_factory=set)
    kept: list[Change] = field(default_factory=list)
    overflow: bool = False
    pending: _Pending | None = None


class InotifyWatches:
    """The change notifications of one mini-redirector (see the module docstring)."""

    def __init__(
        self,
        complete: Callable[[RxContext, Result], None],
        *,
        name: str,
        limits: WatchLimits | None = None,
        margin_s: float = 0.5,
    ) -> None:
        self._complete = complete
        self._name = name
        self.limits = limits or WatchLimits()
        self._margin_s = margin_s
        self._lock = threading.Lock()
        self._inotify: INotify | None = None
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        self._handles: dict[int, _Handle] = {}
        self._wd_path: dict[int, str] = {}
        self._wd_users: dict[int, set[int]] = {}

    def notify(
        self, ctx: RxContext, folder: str, *, completion_filter: int, tree: bool, what: str
    ) -> Result:
        """Answer a notify at once (changes kept since this handle's last answer) or keep it
        pending and answer STATUS_PENDING."""
        completion_filter = checked_filter(completion_filter)
        key = watch_key(ctx)
        with self._lock:
            handle = self._handles.get(key)
            if handle is not None and handle.pending is not None:
                raise NtStatusError(
                    S.STATUS_INVALID_PARAMETER, f"{what}: a notify is already pending here"
                )
            if handle is None:
                self.limits.admit((h.client for h in self._handles.values()), client_of(ctx), what)
                handle = _Handle(key, client_of(ctx), int(ctx.srv_open or 0), folder, tree)
                self._watch(handle, folder, what, first=True)
                self._handles[key] = handle
                self._start_reader()
            else:
                self._drain()
                if tree and not handle.tree:
                    handle.tree = True
                    self._watch(handle, folder, what, first=False)
            if handle.overflow:
                handle.overflow = False
                handle.kept.clear()
                return Result(
                    status=S.STATUS_NOTIFY_ENUM_DIR, message="too many changes; list again"
                )
            found = selected(handle.kept, completion_filter)
            handle.kept.clear()
            if found:
                return notify_result(found)
            deadline = time.monotonic() + max(0.0, ctx.timeout_ms / 1000.0 - self._margin_s)
            handle.pending = _Pending(ctx, completion_filter, deadline)
        return Result(status=S.STATUS_PENDING)

    # ---------------------------------------------------------------- kernel watches (lock held)
    def _start_reader(self) -> None:
        if self._reader is None or not self._reader.is_alive():
            self._reader = threading.Thread(
                target=self._read, name=f"{self._name}-inotify", daemon=True
            )
            self._reader.start()

    def _add(self, handle: _Handle, path: str) -> None:
        assert self._inotify is not None
        wd = self._inotify.add_watch(path, MASK)
        self._wd_path.setdefault(wd, path)
        self._wd_users.setdefault(wd, set()).add(handle.key)
        handle.wds.add(wd)

    def _watch(self, handle: _Handle, folder: str, what: str, *, first: bool) -> None:
        """Kernel watches on the handle's folder (and, for a tree, the folders below it)."""
        if self._inotify is None:
            self._inotify = INotify()
        try:
            if first:
                self._add(handle, folder)
            if handle.tree:
                self._add_below(handle, folder)
        except OSError as exc:
            self._drop(handle)
            if exc.errno == errno.ENOSPC:
                raise NtStatusError(
                    S.STATUS_INSUFFICIENT_RESOURCES,
                    f"{what}: the kernel's inotify watches are used up "
                    "(fs.inotify.max_user_watches); close handles that watch folders",
                ) from None
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise NtStatusError(S.STATUS_DELETE_PENDING, f"{what} is gone") from None
            raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{what}: cannot watch: {exc}") from None

    def _add_below(self, handle: _Handle, folder: str) -> None:
        """Watches on the folders below ``folder`` (symbolic links not followed, bounded); a
        folder that goes away meanwhile is skipped."""
        count = 0
        for top, dirs, _files in os.walk(folder, followlinks=False):
            for name in dirs:
                count += 1
                if count > MAX_ENTRIES:
                    return
                try:
                    self._add(handle, os.path.join(top, name))
                except OSError as exc:
                    if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                        raise

    def _drop(self, handle: _Handle) -> None:
        for wd in handle.wds:
            users = self._wd_users.get(wd)
            if users is None:
                continue
            users.discard(handle.key)
            if not users:
                del self._wd_users[wd]
                self._wd_path.pop(wd, None)
                if self._inotify is not None:
                    # a folder gone away: the kernel dropped its watch already
                    with contextlib.suppress(OSError):
                        self._inotify.rm_watch(wd)
        handle.wds.clear()

    # ---------------------------------------------------------------- the reader thread
    def _read(self) -> None:
        inotify = self._inotify
        assert inotify is not None
        poller = select.poll()
        poller.register(inotify.fileno(), select.POLLIN)
        while not self._stop.is_set():
            poller.poll(READ_MS)  # the read itself is under the lock: see _drain
            done: list[tuple[RxContext, Result]] = []
            with self._lock:
                if self._stop.is_set():
                    return
                self._drain()
                self._answer(done)
                # the thread reads while any handle is watched (its changes are kept)
                idle = not self._handles
                if idle:
                    self._reader = None
            for ctx, result in done:
                self._complete(ctx, result)
            if idle:
                return

    def _drain(self) -> None:
        """Take the events the kernel has queued (lock held): by the reader, and by a notify
        before it looks at what its handle kept, so a change made just before is never
        missed. Every read is under the lock, so events are taken in the kernel's order."""
        if self._inotify is None:
            return
        try:
            events = self._inotify.read(timeout=0)
        except (OSError, ValueError):  # ValueError: closed meanwhile
            log.exception("inotify read failed")
            return
        try:
            self._dispatch(events)
        except Exception:  # the thread must outlive any one event
            log.exception("inotify event failed")

    def _dispatch(self, events: list[Any]) -> None:
        grown: list[tuple[_Handle, str]] = []
        for event in events:
            wd: int = event.wd
            mask: int = event.mask
            name: str = event.name
            if mask & F.Q_OVERFLOW:
                for handle in self._handles.values():
                    handle.overflow = True
                continue
            path = self._wd_path.get(wd)
            if path is None:
                continue
            if mask & F.IGNORED:  # the folder went away, its watch with it
                for key in self._wd_users.pop(wd, set()):
                    h = self._handles.get(key)
                    if h is not None:
                        h.wds.discard(wd)
                del self._wd_path[wd]
                continue
            if not name:
                continue
            change = change_of(mask, name)
            for key in self._wd_users.get(wd, ()):
                found = self._handles.get(key)
                if found is None:
                    continue
                handle = found
                if change is not None:
                    rel = os.path.relpath(os.path.join(path, name), handle.root)
                    handle.kept.append(change._replace(name=rel.replace(os.sep, "\\")))
                    if len(handle.kept) > MAX_KEPT:
                        handle.kept.clear()
                        handle.overflow = True
                if handle.tree and mask & F.ISDIR and mask & (F.CREATE | F.MOVED_TO):
                    grown.append((handle, os.path.join(path, name)))
        for handle, folder in grown:
            try:
                self._add(handle, folder)
                self._add_below(handle, folder)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    log.warning("cannot watch %s: %s", folder, exc)

    def _answer(self, done: list[tuple[RxContext, Result]]) -> None:
        now = time.monotonic()
        for handle in self._handles.values():
            pending = handle.pending
            if pending is None:
                continue
            if handle.overflow:
                handle.overflow = False
                handle.kept.clear()
                result = Result(status=S.STATUS_NOTIFY_ENUM_DIR, message="too many changes")
            else:
                found = selected(handle.kept, pending.completion_filter)
                if found:
                    handle.kept.clear()
                    result = notify_result(found)
                elif now >= pending.deadline:
                    result = Result(status=S.STATUS_IO_TIMEOUT, message="no change in time")
                else:
                    continue
            handle.pending = None
            done.append((pending.ctx, result))

    # ---------------------------------------------------------------- handle life
    def end(self, *, fobx: int | None = None, srv_open: int | None = None) -> None:
        """Handle cleanup (``fobx``) or close (``srv_open``): a pending notify completes with
        STATUS_NOTIFY_CLEANUP, and the handle's watches go."""
        ended: list[RxContext] = []
        with self._lock:
            gone = [
                h
                for k, h in self._handles.items()
                if (fobx is not None and k == fobx)
                or (srv_open is not None and (h.srv_open == srv_open or k == -srv_open))
            ]
            for handle in gone:
                # a close ends the pending notify of every handle of the open; only the
                # handle without a FOBX of its own is forgotten by it
                if fobx is not None or handle.key == -int(srv_open or 0):
                    del self._handles[handle.key]
                    self._drop(handle)
                if handle.pending is not None:
                    ended.append(handle.pending.ctx)
                    handle.pending = None
        for ctx in ended:
            self._complete(ctx, Result(status=S.STATUS_NOTIFY_CLEANUP))

    def cancel(self, request_id: int, status: int) -> bool:
        """The cancel routine of a pending notify: it completes with ``status``; the handle's
        watches stay, so changes until its next notify are not lost. False: not pending."""
        with self._lock:
            handle = next(
                (
                    h
                    for h in self._handles.values()
                    if h.pending is not None and h.pending.ctx.request_id == request_id
                ),
                None,
            )
            if handle is None or handle.pending is None:
                return False
            pending, handle.pending = handle.pending, None
        self._complete(pending.ctx, Result(status=status, message="cancelled"))
        return True

    def close(self) -> None:
        """Process shutdown: pending notifies die with the process."""
        self._stop.set()
        with self._lock:
            self._handles.clear()
            self._wd_users.clear()
            self._wd_path.clear()
            if self._inotify is not None:
                self._inotify.close()
                self._inotify = None

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(1 for h in self._handles.values() if h.pending is not None)

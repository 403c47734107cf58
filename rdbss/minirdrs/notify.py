"""Change notification by comparing folder snapshots (IRP_MN_NOTIFY_CHANGE_DIRECTORY), for
every mini-redirector whose server cannot tell it about changes (local folders, SFTP, WebDAV).

A snapshot maps names (relative to the watched folder; the whole tree, bounded, with
``watch_tree``) to (is_dir, size, mtime_ns, mode). ``changes`` lists what differs, filtered by
the FILE_NOTIFY_CHANGE_* completion filter, as FILE_NOTIFY_INFORMATION would: an action and a
name relative to the watched folder. Pure so far.

``PollingWatches`` runs the pending notifies of one mini-redirector: the first notify on a handle
takes its baseline snapshot (so changes between two notifies of a handle are never lost), a
notify that finds nothing new answers STATUS_PENDING, and a polling thread per connection (the
``group``) lists the watched folders every ``interval_s`` seconds through the mini-redirector's
own ``Lister`` and completes a watch (``complete_later``) when its filter sees a change, with
STATUS_IO_TIMEOUT just before the request's deadline, or with STATUS_NOTIFY_CLEANUP when its
handle is cleaned up. The listing calls run on that thread, never on the socket thread or the
connection's worker, so a slow server delays only the notifications of its own connection.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from rdbss.minirdrs.base import Result
from rdbss.wire.rxcontext import RxContext
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.notify")
S = NtStatus

FILE_NOTIFY_CHANGE_FILE_NAME = 0x001
FILE_NOTIFY_CHANGE_DIR_NAME = 0x002
FILE_NOTIFY_CHANGE_ATTRIBUTES = 0x004
FILE_NOTIFY_CHANGE_SIZE = 0x008
FILE_NOTIFY_CHANGE_LAST_WRITE = 0x010
FILE_NOTIFY_VALID_MASK = 0xFFF

# FILE_ACTION_* of FILE_NOTIFY_INFORMATION
ADDED, REMOVED, MODIFIED, RENAMED_OLD_NAME, RENAMED_NEW_NAME = 1, 2, 3, 4, 5
ACTION_NAMES = {
    ADDED: "added",
    REMOVED: "removed",
    MODIFIED: "modified",
    RENAMED_OLD_NAME: "renamed_old_name",
    RENAMED_NEW_NAME: "renamed_new_name",
}
MAX_CHANGES = 256  # more than this in one answer: STATUS_NOTIFY_ENUM_DIR (enumerate again)


class Entry(NamedTuple):
    is_dir: bool
    size: int
    mtime_ns: int
    mode: int


Snapshot = Mapping[str, Entry]


def changes(before: Snapshot, after: Snapshot, completion_filter: int) -> list[dict[str, object]]:
    """What changed between two snapshots, in name order, as the filter asks."""
    out: list[dict[str, object]] = []

    def wanted_name(entry: Entry) -> bool:
        flag = FILE_NOTIFY_CHANGE_DIR_NAME if entry.is_dir else FILE_NOTIFY_CHANGE_FILE_NAME
        return bool(completion_filter & flag)

    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old is None and new is not None:
            if wanted_name(new):
                out.append({"action": ACTION_NAMES[ADDED], "name": name})
        elif new is None and old is not None:
            if wanted_name(old):
                out.append({"action": ACTION_NAMES[REMOVED], "name": name})
        elif old is not None and new is not None and old != new:
            modified = (
                (completion_filter & FILE_NOTIFY_CHANGE_SIZE and old.size != new.size)
                or (
                    completion_filter & FILE_NOTIFY_CHANGE_LAST_WRITE
                    and old.mtime_ns != new.mtime_ns
                )
                or (completion_filter & FILE_NOTIFY_CHANGE_ATTRIBUTES and old.mode != new.mode)
            )
            if modified and not new.is_dir:
                out.append({"action": ACTION_NAMES[MODIFIED], "name": name})
    return out


def parse_notify_information(data: bytes | memoryview) -> list[dict[str, object]]:
    """FILE_NOTIFY_INFORMATION records (what an SMB2 CHANGE_NOTIFY answers) as changes;
    STATUS_INVALID_NETWORK_RESPONSE for a malformed buffer."""
    out: list[dict[str, object]] = []
    offset = 0
    while offset + 12 <= len(data):
        following, action, length = struct.unpack_from("<III", data, offset)
        name = bytes(data[offset + 12 : offset + 12 + length])
        if len(name) != length or length % 2:
            raise NtStatusError(S.STATUS_INVALID_NETWORK_RESPONSE, "malformed notify record")
        out.append(
            {
                "action": ACTION_NAMES.get(action, str(action)),
                "name": name.decode("utf-16-le", "replace"),
            }
        )
        if not following:
            return out
        if following < 12 + length or len(out) > 65536:
            raise NtStatusError(S.STATUS_INVALID_NETWORK_RESPONSE, "malformed notify records")
        offset += following
    if data:
        raise NtStatusError(S.STATUS_INVALID_NETWORK_RESPONSE, "truncated notify records")
    return out


# ------------------------------------------------------------------------------ polling
#: Lists one folder below the watched one ("" = the watched folder itself, deeper levels joined
#: with backslashes): (name, Entry) for each child. Raises NtStatusError; a folder that is gone
#: (STATUS_OBJECT_NAME_NOT_FOUND / STATUS_OBJECT_PATH_NOT_FOUND) counts as empty.
Lister = Callable[[str], Iterable[tuple[str, Entry]]]

MAX_ENTRIES = 20_000  # bound on a watched tree's snapshot
_GONE = frozenset({S.STATUS_OBJECT_NAME_NOT_FOUND, S.STATUS_OBJECT_PATH_NOT_FOUND})


def snapshot(lister: Lister, tree: bool, max_entries: int = MAX_ENTRIES) -> dict[str, Entry]:
    """Names below the watched folder (the whole tree, bounded, with ``tree``)."""
    out: dict[str, Entry] = {}
    pending = [""]
    while pending and len(out) < max_entries:
        folder = pending.pop()
        try:
            children = list(lister(folder))
        except NtStatusError as exc:
            if exc.status in _GONE:
                continue  # the folder went away: its names are gone from the snapshot
            raise
        for name, entry in children:
            rel = f"{folder}\\{name}" if folder else name
            out[rel] = entry
            if tree and entry.is_dir:
                pending.append(rel)
    return out


def notify_result(found: list[dict[str, object]]) -> Result:
    if len(found) > MAX_CHANGES:
        return Result(status=S.STATUS_NOTIFY_ENUM_DIR, message="too many changes; list again")
    return Result(information=len(found), result={"changes": found})


@dataclass(slots=True, eq=False)
class _Watch:
    """A pending IRP_MN_NOTIFY_CHANGE_DIRECTORY."""

    ctx: RxContext
    key: int
    srv_open: int
    group: str
    lister: Lister
    completion_filter: int
    tree: bool
    deadline: float


class PollingWatches:
    """The pending change notifications of one mini-redirector (see the module docstring)."""

    def __init__(
        self,
        complete: Callable[[RxContext, Result], None],
        *,
        interval_s: float,
        name: str,
        margin_s: float = 0.5,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("the notify polling interval must be positive")
        self._complete = complete
        self.interval_s = interval_s
        self._name = name
        self._margin_s = margin_s
        self._lock = threading.Lock()
        self._watches: dict[int, _Watch] = {}
        self._baselines: dict[int, dict[str, Entry]] = {}
        self._pollers: dict[str, threading.Thread] = {}
        self._stop = threading.Event()

    @staticmethod
    def key_of(ctx: RxContext) -> int:
        """One watch per handle: the FOBX (or, without one, the SRV_OPEN, negated)."""
        return ctx.fobx if ctx.fobx is not None else -int(ctx.srv_open or 0)

    def notify(
        self,
        ctx: RxContext,
        lister: Lister,
        *,
        group: str,
        completion_filter: int,
        tree: bool,
        what: str,
    ) -> Result:
        """Answer a notify at once (changes since this handle's last look) or register it and
        answer STATUS_PENDING."""
        completion_filter &= FILE_NOTIFY_VALID_MASK
        if not completion_filter:
            raise NtStatusError(S.STATUS_INVALID_PARAMETER, "an empty completion filter")
        key = self.key_of(ctx)
        with self._lock:
            if key in self._watches:
                raise NtStatusError(
                    S.STATUS_INVALID_PARAMETER, f"{what}: a notify is already pending here"
                )
            baseline = self._baselines.get(key)
        if baseline is None:  # the watch starts with the first notify on a handle
            baseline = snapshot(lister, tree)
            with self._lock:
                self._baselines[key] = baseline
            now = baseline
        else:
            now = snapshot(lister, tree)
        found = changes(baseline, now, completion_filter)
        if found:  # changed between two notifies of this handle: not lost
            with self._lock:
                self._baselines[key] = now
            return notify_result(found)
        deadline = time.monotonic() + max(0.0, ctx.timeout_ms / 1000.0 - self._margin_s)
        watch = _Watch(
            ctx, key, int(ctx.srv_open or 0), group, lister, completion_filter, tree, deadline
        )
        with self._lock:
            self._watches[key] = watch
            poller = self._pollers.get(group)
            if poller is None or not poller.is_alive():
                poller = threading.Thread(
                    target=self._poll, args=(group,), name=f"{self._name}-notify", daemon=True
                )
                self._pollers[group] = poller
                poller.start()
        return Result(status=S.STATUS_PENDING)

    def _poll(self, group: str) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                watches = [w for w in self._watches.values() if w.group == group]
                if not watches:
                    if self._pollers.get(group) is threading.current_thread():
                        del self._pollers[group]
                    return
            for watch in watches:
                try:
                    self._look(watch)
                except Exception:  # the thread must outlive any one watch
                    log.exception("notify poll failed")
                    self._finish(watch, Result(status=S.STATUS_INTERNAL_ERROR))

    def _look(self, watch: _Watch) -> None:
        try:
            now = snapshot(watch.lister, watch.tree)
        except NtStatusError as exc:
            self._finish(watch, Result(status=exc.status, message=exc.strerror or ""))
            return
        with self._lock:
            baseline = self._baselines.get(watch.key, now)
        found = changes(baseline, now, watch.completion_filter)
        if found:
            self._finish(watch, notify_result(found), now)
        elif time.monotonic() >= watch.deadline:
            self._finish(watch, Result(status=S.STATUS_IO_TIMEOUT, message="no change in time"))

    def _finish(
        self, watch: _Watch, result: Result, baseline: dict[str, Entry] | None = None
    ) -> None:
        with self._lock:
            if self._watches.get(watch.key) is not watch:
                return  # ended meanwhile (cleanup, close)
            del self._watches[watch.key]
            if baseline is not None:
                self._baselines[watch.key] = baseline
        self._complete(watch.ctx, result)

    def end(self, *, fobx: int | None = None, srv_open: int | None = None) -> None:
        """Handle cleanup (``fobx``) or close (``srv_open``): a pending notify completes with
        STATUS_NOTIFY_CLEANUP, and the handle's baseline goes."""
        with self._lock:
            keys = [
                k
                for k, w in self._watches.items()
                if (fobx is not None and k == fobx)
                or (srv_open is not None and w.srv_open == srv_open)
            ]
            ended = [self._watches.pop(k) for k in keys]
            if fobx is not None:
                self._baselines.pop(fobx, None)
            if srv_open is not None:
                self._baselines.pop(-srv_open, None)
        for watch in ended:
            self._complete(watch.ctx, Result(status=S.STATUS_NOTIFY_CLEANUP))

    def cancel(self, request_id: int, status: int) -> bool:
        """The cancel routine of a pending notify: it completes with ``status``; the handle's
        baseline stays, so changes until its next notify are not lost. False: not pending."""
        with self._lock:
            watch = next(
                (w for w in self._watches.values() if w.ctx.request_id == request_id), None
            )
            if watch is None:
                return False
            del self._watches[watch.key]
        self._complete(watch.ctx, Result(status=status, message="cancelled"))
        return True

    def close(self) -> None:
        """Process shutdown: stop polling; pending notifies die with the process."""
        self._stop.set()
        with self._lock:
            self._watches.clear()
            self._baselines.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._watches)

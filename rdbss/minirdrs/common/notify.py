"""Change notification (IRP_MN_NOTIFY_CHANGE_DIRECTORY) by comparing folder snapshots, for the
mini-redirectors whose server cannot tell them about changes (SFTP, WebDAV); the limits every
kind of watch keeps (local shares use the kernel's inotify:
``rdbss.minirdrs.common.inotify_watches``).

A snapshot maps names (relative to the watched folder; the whole tree, bounded, with
``watch_tree``) to (is_dir, size, mtime_ns, mode). ``changes`` lists what differs, filtered by
the FILE_NOTIFY_CHANGE_* completion filter, as FILE_NOTIFY_INFORMATION would: an action and a
name relative to the watched folder. Pure so far.

``PollingWatches`` runs the pending notifies of one mini-redirector: the first notify on a handle
takes its baseline (so changes between two notifies of a handle are never lost), a notify that
finds nothing new answers STATUS_PENDING, and a polling thread per connection (the ``group``)
lists each watched folder once per round through the mini-redirector's own ``Lister`` and
completes a watch (``complete_later``) when its filter sees a change, with STATUS_IO_TIMEOUT
just before the request's deadline, or with STATUS_NOTIFY_CLEANUP when its handle is cleaned up.
The listing calls run on that thread, never on the socket thread or the connection's worker, so a
slow server delays only the notifications of its own connection.

The cost of polling must not grow with the number of waits: all the handles watching one folder
share its snapshot (one listing per folder per round, and a handle whose baseline is that very
snapshot is not compared again); the round interval adapts, never less than ``interval_s`` and
at least ``ADAPT`` times what the last round cost (so polling takes at most a tenth of a core,
however many folders are watched), up to ``MAX_INTERVAL_S``. ``WatchLimits`` caps the handles
watched per client and per mini-redirector: past a cap a new watch is refused with
STATUS_INSUFFICIENT_RESOURCES, and the watches already running are unaffected.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

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


# ------------------------------------------------------------------------------ limits
DEFAULT_MAX_WATCHES = 8192  # handles watched by one mini-redirector
DEFAULT_MAX_WATCHES_PER_CLIENT = 1024  # handles watched by one client in one mini-redirector


@dataclass(frozen=True, slots=True)
class WatchLimits:
    """Caps on the handles one mini-redirector watches (each holds a baseline or kernel
    watches): in all, and per client."""

    total: int = DEFAULT_MAX_WATCHES
    per_client: int = DEFAULT_MAX_WATCHES_PER_CLIENT

    @classmethod
    def from_config(cls, config: Mapping[str, Any], kind: str) -> WatchLimits:
        """The ``max_watches`` and ``max_watches_per_client`` options of a mini-redirector."""
        values = []
        for key, default in (
            ("max_watches", DEFAULT_MAX_WATCHES),
            ("max_watches_per_client", DEFAULT_MAX_WATCHES_PER_CLIENT),
        ):
            value = config.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 20:
                raise ValueError(f"{kind} mini-redirector: {key!r} must be a count (1 to 2**20)")
            values.append(value)
        return cls(*values)

    def admit(self, owners: Iterable[str], client: str, what: str) -> None:
        """Refuse a new watch for ``client`` when the watches' ``owners`` (one client name per
        watched handle) are at a cap: STATUS_INSUFFICIENT_RESOURCES, saying which."""
        watched = list(owners)
        if len(watched) >= self.total:
            raise NtStatusError(
                S.STATUS_INSUFFICIENT_RESOURCES,
                f"{what}: this mini-redirector watches {len(watched)} handles, its limit "
                "(max_watches); close handles that watch folders, or raise the limit",
            )
        mine = sum(1 for owner in watched if owner == client)
        if mine >= self.per_client:
            raise NtStatusError(
                S.STATUS_INSUFFICIENT_RESOURCES,
                f"{what}: this client watches {mine} handles here, its limit "
                "(max_watches_per_client); close handles that watch folders, or raise the limit",
            )


def client_of(ctx: RxContext) -> str:
    """The client a request came from (the core's ``origin`` is ``CLIENT:ID``)."""
    return (ctx.origin or "").partition(":")[0]


def watch_key(ctx: RxContext) -> int:
    """One watch per handle: the FOBX (or, without one, the SRV_OPEN, negated)."""
    return ctx.fobx if ctx.fobx is not None else -int(ctx.srv_open or 0)


def checked_filter(completion_filter: int) -> int:
    completion_filter &= FILE_NOTIFY_VALID_MASK
    if not completion_filter:
        raise NtStatusError(S.STATUS_INVALID_PARAMETER, "an empty completion filter")
    return completion_filter


# ------------------------------------------------------------------------------ polling
def notify_interval(config: Mapping[str, Any], kind: str, default: float) -> float:
    """The ``notify_interval`` option: the least seconds between two looks at a watched folder
    (polling backends; the interval adapts upwards to what a round costs)."""
    value = config.get("notify_interval", default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise ValueError(
            f"{kind} mini-redirector: 'notify_interval' must be seconds (0 < s <= 3600)"
        )
    return float(value)


#: Lists one folder below the watched one ("" = the watched folder itself, deeper levels joined
#: with backslashes): (name, Entry) for each child. Raises NtStatusError; a folder that is gone
#: (STATUS_OBJECT_NAME_NOT_FOUND / STATUS_OBJECT_PATH_NOT_FOUND) counts as empty.
Lister = Callable[[str], Iterable[tuple[str, Entry]]]

MAX_ENTRIES = 20_000  # bound on a watched tree's snapshot
ADAPT = 10.0  # the next round waits at least this many times what the last one cost
MAX_INTERVAL_S = 5.0  # the adaptive interval never grows past this
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


def next_interval(interval_s: float, round_cost_s: float) -> float:
    """The adaptive polling interval (see the module docstring)."""
    return min(max(interval_s, MAX_INTERVAL_S), max(interval_s, ADAPT * round_cost_s))


#: a watched folder: (group, the backend's name for the folder, whole tree)
FolderKey = tuple[str, str, bool]


@dataclass(slots=True, eq=False)
class _Folder:
    """One watched folder's latest snapshot, shared by every handle watching it."""

    lister: Lister
    snapshot: dict[str, Entry] | None = None
    taken: float = float("-inf")  # monotonic


@dataclass(slots=True, eq=False)
class _Handle:
    """A watched handle: its client, its folder and its baseline (the snapshot its last answer
    ended at)."""

    client: str
    folder: FolderKey
    baseline: dict[str, Entry]


@dataclass(slots=True, eq=False)
class _Watch:
    """A pending IRP_MN_NOTIFY_CHANGE_DIRECTORY."""

    ctx: RxContext
    key: int
    srv_open: int
    group: str
    folder: FolderKey
    completion_filter: int
    deadline: float


class PollingWatches:
    """The pending change notifications of one mini-redirector (see the module docstring)."""

    def __init__(
        self,
        complete: Callable[[RxContext, Result], None],
        *,
        interval_s: float,
        name: str,
        limits: WatchLimits | None = None,
        margin_s: float = 0.5,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("the notify polling interval must be positive")
        self._complete = complete
        self.interval_s = interval_s
        self.limits = limits or WatchLimits()
        self._name = name
        self._margin_s = margin_s
        self._lock = threading.Lock()
        self._watches: dict[int, _Watch] = {}
        self._handles: dict[int, _Handle] = {}
        self._folders: dict[FolderKey, _Folder] = {}
        self._pollers: dict[str, threading.Thread] = {}
        self._stop = threading.Event()

    key_of = staticmethod(watch_key)

    def notify(
        self,
        ctx: RxContext,
        lister: Lister,
        *,
        group: str,
        folder: str,
        completion_filter: int,
        tree: bool,
        what: str,
    ) -> Result:
        """Answer a notify at once (changes since this handle's last look) or register it and
        answer STATUS_PENDING."""
        completion_filter = checked_filter(completion_filter)
        key = self.key_of(ctx)
        fkey: FolderKey = (group, folder, tree)
        with self._lock:
            if key in self._watches:
                raise NtStatusError(
                    S.STATUS_INVALID_PARAMETER, f"{what}: a notify is already pending here"
                )
            handle = self._handles.get(key)
            if handle is None:
                self.limits.admit((h.client for h in self._handles.values()), client_of(ctx), what)
            shared = self._folders.setdefault(fkey, _Folder(lister))
        # a new handle may start from a snapshot a moment old (it then reports a little more);
        # a handle's next notify must see everything up to now
        now = self._look(fkey, shared, fresh_s=self.interval_s if handle is None else 0.0)
        with self._lock:
            if handle is None or handle.folder != fkey:
                # the watch starts with the first notify on a handle
                handle = _Handle(client_of(ctx), fkey, now)
                self._handles[key] = handle
            found = changes(handle.baseline, now, completion_filter)
            if found:  # changed between two notifies of this handle: not lost
                handle.baseline = now
                return notify_result(found)
            deadline = time.monotonic() + max(0.0, ctx.timeout_ms / 1000.0 - self._margin_s)
            self._watches[key] = _Watch(
                ctx, key, int(ctx.srv_open or 0), group, fkey, completion_filter, deadline
            )
            poller = self._pollers.get(group)
            if poller is None or not poller.is_alive():
                poller = threading.Thread(
                    target=self._poll, args=(group,), name=f"{self._name}-notify", daemon=True
                )
                self._pollers[group] = poller
                poller.start()
        return Result(status=S.STATUS_PENDING)

    def _look(self, fkey: FolderKey, folder: _Folder, fresh_s: float = 0.0) -> dict[str, Entry]:
        """The folder's snapshot: the shared one when taken within ``fresh_s``, else a new one
        (the same object when nothing changed, so handles at that baseline skip comparing)."""
        taken = time.monotonic()
        if folder.snapshot is not None and taken - folder.taken < fresh_s:
            return folder.snapshot
        now = snapshot(folder.lister, fkey[2])
        with self._lock:
            if folder.snapshot is not None and now == folder.snapshot:
                now = folder.snapshot
            folder.snapshot, folder.taken = now, taken
        return now

    def _poll(self, group: str) -> None:
        wait = self.interval_s
        while not self._stop.wait(wait):
            started = time.monotonic()
            with self._lock:
                watches = [w for w in self._watches.values() if w.group == group]
                if not watches:
                    if self._pollers.get(group) is threading.current_thread():
                        del self._pollers[group]
                    return
                folders = {w.folder: self._folders[w.folder] for w in watches}
            looked: dict[FolderKey, dict[str, Entry] | NtStatusError] = {}
            for fkey, folder in folders.items():
                try:
                    looked[fkey] = self._look(fkey, folder)
                except NtStatusError as exc:
                    looked[fkey] = exc
                except Exception:  # the thread must outlive any one folder
                    log.exception("notify poll failed")
                    looked[fkey] = NtStatusError(S.STATUS_INTERNAL_ERROR, "notify poll failed")
            for watch in watches:
                self._check(watch, looked[watch.folder])
            cost = time.monotonic() - started
            with self._lock:
                soonest = min((w.deadline for w in self._watches.values()), default=None)
            wait = next_interval(self.interval_s, cost)
            if soonest is not None:
                wait = max(0.01, min(wait, soonest - time.monotonic()))

    def _check(self, watch: _Watch, now: dict[str, Entry] | NtStatusError) -> None:
        if isinstance(now, NtStatusError):
            self._finish(watch, Result(status=now.status, message=now.strerror or ""))
            return
        with self._lock:
            handle = self._handles.get(watch.key)
        if handle is None or handle.baseline is now:
            found = []
        else:
            found = changes(handle.baseline, now, watch.completion_filter)
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
            handle = self._handles.get(watch.key)
            if baseline is not None and handle is not None:
                handle.baseline = baseline
        self._complete(watch.ctx, result)

    def _forget(self, key: int) -> None:
        """Drop a handle (lock held), and its folder when no other handle watches it."""
        handle = self._handles.pop(key, None)
        if handle is not None and not any(
            h.folder == handle.folder for h in self._handles.values()
        ):
            self._folders.pop(handle.folder, None)

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
                self._forget(fobx)
            if srv_open is not None:
                self._forget(-srv_open)
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
            self._handles.clear()
            self._folders.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._watches)

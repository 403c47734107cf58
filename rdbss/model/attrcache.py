"""The core's attribute cache: file information (size, attributes, the four times...) that a
create, a stat or a directory listing brought back, kept so that a later stat of the same file
is answered by the core with no round trip to the mini-redirector or its server. Pure code: the
core says when it may cache, when something changed, and what time it is.

Caching attributes is safe only where the core is the only writer (a mini-redirector with
``caching = "exclusive"``: its grant has FILESIZECACHEING and FILETIMECACHEING): what the core
learned then stays true until the core itself changes the file, or its age passes ``max_age_s``
(the bound on how long a change made behind the core's back goes unseen).

Entries are keyed by (NetRoot, lower-cased share-relative path), as the core's Fcbs are, and
keep the path as it was learned: a lookup with another spelling misses (on a case-sensitive
server it may be another file), while an invalidation reaches every spelling.

What invalidates what (the core calls these when it sends the request and again when it
completes, so a fill racing with either loses):

- a write, a change of the end of file or allocation, a change of times or attributes, the
  close of a handle that could write: the file's entry (``changed``);
- a create that may make, overwrite or supersede the file: its entry and the parent folder's
  (whose times change) go; the create's own answer fills it again (``created``);
- a delete: the entry, everything under it, and the parent's (``deleted``);
- a rename: the source and the target with everything under them, and both parents
  (``renamed``);
- a mini-redirector or connection lost: every entry of its NetRoots (``drop_net_root``).

Each invalidation also bumps the NetRoot's epoch: a fill carries the epoch read when its request
was sent, and fills nothing when something in that NetRoot changed meanwhile (a listing sent
before a write and answered after it must not bring the old size back).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rdbss.model.buffering import FcbState
from rdbss.wire.constants import CreateOptions, FileInformationClass, IrpMj

#: The grant bits that let the core keep attributes: sizes and times only it changes.
ATTRIBUTE_BITS = FcbState.FILESIZECACHEING_ENABLED | FcbState.FILETIMECACHEING_ENABLED
#: Keys of an answer that describe the answer (a handle, a place in a listing), not the file.
_PER_ANSWER = frozenset({"srv_open", "fobx", "file_index", "position"})


#: Requests on a handle that leave the file's attributes as they are (a read's access time
#: aside, as SMB clients ignore it too); any other (writes, set-info, EAs, security, control
#: codes that may copy into the file...) changes them.
_KEEPS_ATTRIBUTES = frozenset(
    {
        IrpMj.READ,
        IrpMj.QUERY_INFORMATION,
        IrpMj.QUERY_EA,
        IrpMj.FLUSH_BUFFERS,
        IrpMj.QUERY_VOLUME_INFORMATION,
        IrpMj.DIRECTORY_CONTROL,
        IrpMj.LOCK_CONTROL,
        IrpMj.QUERY_SECURITY,
        IrpMj.QUERY_QUOTA,
    }
)
#: The query-info classes a kept entry answers on an open handle: its attributes, size and
#: times, nothing per handle (position, name as opened, EA size...).
ANSWERED_CLASSES = frozenset(
    {
        FileInformationClass.FileBasicInformation,
        FileInformationClass.FileStandardInformation,
        FileInformationClass.FileNetworkOpenInformation,
    }
)

#: The query-info classes whose answer is kept: mini-redirectors answer every class of
#: FILE_INFO_CLASSES with the whole file information map (rdbss/minirdrs/base.py).
LEARNED_CLASSES = ANSWERED_CLASSES | {FileInformationClass.FileAllInformation}


def changes_attributes(major: int) -> bool:
    """Whether a request on a handle may change the file's size, times or attributes."""
    return major not in _KEEPS_ATTRIBUTES


def answers_open(info: dict[str, object], create_options: int) -> bool:
    """Whether a kept entry answers a stat with these create options as the server would:
    FILE_DIRECTORY_FILE of a file or FILE_NON_DIRECTORY_FILE of a folder is an error only the
    server words, so those go to it."""
    directory = bool(info.get("directory"))
    if create_options & CreateOptions.FILE_DIRECTORY_FILE and not directory:
        return False
    return not (create_options & CreateOptions.FILE_NON_DIRECTORY_FILE and directory)


def may_cache_attributes(grant: int) -> bool:
    """Whether a mini-redirector's grant (or an Fcb's buffering state) lets attributes be kept."""
    return grant & ATTRIBUTE_BITS == ATTRIBUTE_BITS


def parent_of(path: str) -> str:
    """The share-relative path of the folder holding ``path`` ("" for the share root)."""
    return path.rpartition("\\")[0]


def child_of(folder: str, name: str) -> str:
    """The share-relative path of ``name`` in ``folder``."""
    return f"{folder}\\{name}" if folder else name


@dataclass(slots=True)
class AttrStats:
    hits: int = 0
    misses: int = 0
    fills: int = 0
    stale_fills: int = 0  # fills refused because something changed since the request left
    expired: int = 0
    invalidations: int = 0


@dataclass(slots=True)
class Entry:
    path: str  # as learned (the key is lower-cased)
    info: dict[str, Any]
    at: float  # when it was learned (the core's clock)


class AttrCache:
    """An LRU of file information by (NetRoot, path), at most ``max_entries`` (0: off), each
    answering for ``max_age_s`` seconds."""

    def __init__(self, max_entries: int, max_age_s: float) -> None:
        self.max_entries = max(0, max_entries)
        self.max_age_s = max_age_s
        self.stats = AttrStats()
        self._entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._epochs: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.max_age_s > 0

    def __len__(self) -> int:
        return len(self._entries)

    def epoch(self, net_root: str) -> int:
        """The NetRoot's epoch now: read it when a request that may fill is sent."""
        return self._epochs.get(net_root.lower(), 0)

    # ------------------------------------------------------------------ lookups and fills
    def lookup(self, net_root: str, path: str, now: float) -> dict[str, Any] | None:
        """A copy of the file's information, or None (unknown, another spelling, too old)."""
        key = (net_root.lower(), path.lower())
        entry = self._entries.get(key)
        if entry is None or entry.path != path:
            self.stats.misses += 1
            return None
        if now - entry.at > self.max_age_s:
            del self._entries[key]
            self.stats.expired += 1
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return dict(entry.info)

    def fill(self, net_root: str, path: str, info: dict[str, Any], now: float, epoch: int) -> bool:
        """Keep what an answer said about ``path``, unless the NetRoot changed since ``epoch``
        (then nothing is kept). The info's ``name`` becomes the path, as a create answers it."""
        if not self.enabled:
            return False
        if self.epoch(net_root) != epoch:
            self.stats.stale_fills += 1
            return False
        self._put(net_root, path, info, now)
        return True

    def fill_listing(
        self,
        net_root: str,
        folder: str,
        entries: Iterable[dict[str, Any]],
        now: float,
        epoch: int,
        skip: frozenset[str] = frozenset(),
    ) -> int:
        """Keep the entries of a listing of ``folder`` (each with its bare ``name``), except
        the lower-cased paths in ``skip`` (files whose size the core may be changing) and the
        folder's own ``.`` and ``..``. How many were kept."""
        if not self.enabled:
            return 0
        if self.epoch(net_root) != epoch:
            self.stats.stale_fills += 1
            return 0
        kept = 0
        for info in entries:
            name = info.get("name")
            if not isinstance(name, str) or not name or name in (".", "..") or "\\" in name:
                continue
            path = child_of(folder, name)
            if path.lower() in skip:
                continue
            self._put(net_root, path, info, now)
            kept += 1
        return kept

    def _put(self, net_root: str, path: str, info: dict[str, Any], now: float) -> None:
        kept = {k: v for k, v in info.items() if k not in _PER_ANSWER}
        kept["name"] = path
        key = (net_root.lower(), path.lower())
        self._entries[key] = Entry(path, kept, now)
        self._entries.move_to_end(key)
        self.stats.fills += 1
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    # ------------------------------------------------------------------ invalidation
    def changed(self, net_root: str, path: str) -> None:
        """The file's size, times or attributes changed (or may have): its entry goes."""
        self._bump(net_root)
        if self._entries.pop((net_root.lower(), path.lower()), None) is not None:
            self.stats.invalidations += 1

    def created(self, net_root: str, path: str) -> None:
        """A create may make, overwrite or supersede ``path``: its entry and the parent
        folder's go (the folder's times change); the create's answer may then fill it."""
        if path:
            self.changed(net_root, parent_of(path))
        self.changed(net_root, path)

    def deleted(self, net_root: str, path: str) -> None:
        """``path`` was (or is about to be) deleted: it, everything under it, its parent."""
        self._drop_tree(net_root, path)
        if path:
            self.changed(net_root, parent_of(path))

    def renamed(self, net_root: str, source: str, target: str) -> None:
        """``source`` became ``target`` (which it may have replaced)."""
        self.deleted(net_root, source)
        self.deleted(net_root, target)

    def drop_net_root(self, net_root: str) -> None:
        """Everything of the NetRoot goes (its mini-redirector or connection was lost)."""
        key = net_root.lower()
        self._bump(net_root)
        for k in [k for k in self._entries if k[0] == key]:
            del self._entries[k]
            self.stats.invalidations += 1

    def clear(self) -> None:
        for net_root in {k[0] for k in self._entries}:
            self._bump(net_root)
        self.stats.invalidations += len(self._entries)
        self._entries.clear()

    def _drop_tree(self, net_root: str, path: str) -> None:
        self.changed(net_root, path)
        root = net_root.lower()
        below = path.lower() + "\\" if path else ""
        for k in [k for k in self._entries if k[0] == root and k[1].startswith(below)]:
            del self._entries[k]
            self.stats.invalidations += 1

    def _bump(self, net_root: str) -> None:
        key = net_root.lower()
        self._epochs[key] = self._epochs.get(key, 0) + 1

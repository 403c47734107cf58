"""Change notification by comparing folder snapshots (IRP_MN_NOTIFY_CHANGE_DIRECTORY). Pure
code: the mini-redirector takes the snapshots and decides when to look.

A snapshot maps share-relative names (below the watched folder; the whole tree with
``watch_tree``) to (is_dir, size, mtime_ns, mode). ``changes`` lists what differs, filtered by
the FILE_NOTIFY_CHANGE_* completion filter, as FILE_NOTIFY_INFORMATION would: an action and a
name relative to the watched folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

FILE_NOTIFY_CHANGE_FILE_NAME = 0x001
FILE_NOTIFY_CHANGE_DIR_NAME = 0x002
FILE_NOTIFY_CHANGE_ATTRIBUTES = 0x004
FILE_NOTIFY_CHANGE_SIZE = 0x008
FILE_NOTIFY_CHANGE_LAST_WRITE = 0x010
FILE_NOTIFY_VALID_MASK = 0xFFF

# FILE_ACTION_* of FILE_NOTIFY_INFORMATION
ADDED, REMOVED, MODIFIED = 1, 2, 3
ACTION_NAMES = {ADDED: "added", REMOVED: "removed", MODIFIED: "modified"}
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

"""Snapshot comparison for change notification."""

from __future__ import annotations

from rdbss.minirdrs.notify import (
    FILE_NOTIFY_CHANGE_DIR_NAME,
    FILE_NOTIFY_CHANGE_FILE_NAME,
    FILE_NOTIFY_CHANGE_LAST_WRITE,
    FILE_NOTIFY_CHANGE_SIZE,
    Entry,
    changes,
)

F = Entry(False, 10, 100, 0o644)
D = Entry(True, 0, 100, 0o755)


def test_names_added_and_removed_by_kind() -> None:
    before = {"keep": F, "gone.txt": F, "olddir": D}
    after = {"keep": F, "new.txt": F, "newdir": D}
    both = FILE_NOTIFY_CHANGE_FILE_NAME | FILE_NOTIFY_CHANGE_DIR_NAME
    assert changes(before, after, both) == [
        {"action": "removed", "name": "gone.txt"},
        {"action": "added", "name": "new.txt"},
        {"action": "added", "name": "newdir"},
        {"action": "removed", "name": "olddir"},
    ]
    assert changes(before, after, FILE_NOTIFY_CHANGE_DIR_NAME) == [
        {"action": "added", "name": "newdir"},
        {"action": "removed", "name": "olddir"},
    ]


def test_modifications_as_the_filter_asks() -> None:
    before = {"f": F}
    bigger = {"f": F._replace(size=11)}
    touched = {"f": F._replace(mtime_ns=200)}
    assert changes(before, bigger, FILE_NOTIFY_CHANGE_FILE_NAME) == []
    assert changes(before, bigger, FILE_NOTIFY_CHANGE_SIZE) == [{"action": "modified", "name": "f"}]
    assert changes(before, touched, FILE_NOTIFY_CHANGE_SIZE) == []
    assert changes(before, touched, FILE_NOTIFY_CHANGE_LAST_WRITE) == [
        {"action": "modified", "name": "f"}
    ]
    assert changes(before, before, 0xFFF) == []

"""Snapshot comparison for change notification."""

from __future__ import annotations

import pytest

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


# ------------------------------------------------------------------------------ polling
import threading  # noqa: E402
import time  # noqa: E402

from rdbss.minirdrs.base import Result  # noqa: E402
from rdbss.minirdrs.notify import (  # noqa: E402
    PollingWatches,
    parse_notify_information,
    snapshot,
)
from rdbss.wire.rxcontext import RxContext  # noqa: E402
from rdbss.wire.status import NtStatus, NtStatusError  # noqa: E402


class _Folder:
    """A fake listing (the lister a mini-redirector hands in), changed by the test."""

    def __init__(self) -> None:
        self.tree: dict[str, dict[str, Entry]] = {"": {}}
        self.fail: int | None = None

    def __call__(self, sub: str) -> list[tuple[str, Entry]]:
        if self.fail is not None:
            raise NtStatusError(self.fail, "listing failed")
        if sub not in self.tree:
            raise NtStatusError(NtStatus.STATUS_OBJECT_PATH_NOT_FOUND, sub)
        return list(self.tree[sub].items())


def _watches() -> tuple[PollingWatches, list[tuple[RxContext, Result]], threading.Event]:
    done: list[tuple[RxContext, Result]] = []
    event = threading.Event()

    def complete(ctx: RxContext, result: Result) -> None:
        done.append((ctx, result))
        event.set()

    return PollingWatches(complete, interval_s=0.02, name="t"), done, event


def _ctx(fobx: int, timeout_ms: int = 5000) -> RxContext:
    return RxContext(request_id=fobx, major=0x0C, fobx=fobx, srv_open=fobx, timeout_ms=timeout_ms)


def test_snapshot_walks_the_tree_and_skips_vanished_folders() -> None:
    folder = _Folder()
    folder.tree[""] = {"a": F, "sub": D, "gone": D}
    folder.tree["sub"] = {"deep": F}
    assert set(snapshot(folder, tree=False)) == {"a", "sub", "gone"}
    assert set(snapshot(folder, tree=True)) == {"a", "sub", "gone", "sub\\deep"}


def test_a_pending_watch_completes_on_a_change_and_keeps_later_ones() -> None:
    watches, done, event = _watches()
    folder = _Folder()
    both = FILE_NOTIFY_CHANGE_FILE_NAME | FILE_NOTIFY_CHANGE_DIR_NAME
    first = watches.notify(_ctx(1), folder, group="g", completion_filter=both, tree=False, what="")
    assert first.status == NtStatus.STATUS_PENDING
    folder.tree[""]["new.txt"] = F
    assert event.wait(5)
    assert done[0][1].result == {"changes": [{"action": "added", "name": "new.txt"}]}
    # nothing pending: a change now is answered by the next notify at once
    del folder.tree[""]["new.txt"]
    again = watches.notify(_ctx(1), folder, group="g", completion_filter=both, tree=False, what="")
    assert again.result == {"changes": [{"action": "removed", "name": "new.txt"}]}
    watches.close()


def test_cleanup_deadline_and_listing_failures_complete_a_watch() -> None:
    watches, done, event = _watches()
    folder = _Folder()
    names = FILE_NOTIFY_CHANGE_FILE_NAME
    watches.notify(_ctx(1), folder, group="g", completion_filter=names, tree=False, what="")
    with pytest.raises(NtStatusError):  # one pending notify per handle
        watches.notify(_ctx(1), folder, group="g", completion_filter=names, tree=False, what="")
    watches.end(fobx=1)
    assert done[-1][1].status == NtStatus.STATUS_NOTIFY_CLEANUP
    event.clear()
    watches.notify(_ctx(2, 600), folder, group="g", completion_filter=names, tree=False, what="")
    assert event.wait(5) and done[-1][1].status == NtStatus.STATUS_IO_TIMEOUT
    event.clear()
    watches.notify(_ctx(3), folder, group="h", completion_filter=names, tree=False, what="")
    folder.fail = NtStatus.STATUS_CONNECTION_DISCONNECTED
    assert event.wait(5) and done[-1][1].status == NtStatus.STATUS_CONNECTION_DISCONNECTED
    deadline = time.monotonic() + 5
    while watches.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watches.pending == 0
    with pytest.raises(NtStatusError):  # an empty filter
        watches.notify(_ctx(4), folder, group="g", completion_filter=0, tree=False, what="")
    watches.close()


def test_file_notify_information_records() -> None:
    def record(action: int, name: str, last: bool) -> bytes:
        raw = name.encode("utf-16-le")
        size = 12 + len(raw)
        size += -size % 4
        following = 0 if last else size
        return (
            following.to_bytes(4, "little")
            + action.to_bytes(4, "little")
            + len(raw).to_bytes(4, "little")
            + raw
        ).ljust(size, b"\0")

    data = record(1, "a.txt", False) + record(4, "old", False) + record(5, "new", True)
    assert parse_notify_information(data) == [
        {"action": "added", "name": "a.txt"},
        {"action": "renamed_old_name", "name": "old"},
        {"action": "renamed_new_name", "name": "new"},
    ]
    assert parse_notify_information(b"") == []
    backwards = (4).to_bytes(4, "little") + (1).to_bytes(4, "little") + bytes(4) + data
    for bad in (data[:15], backwards):
        with pytest.raises(NtStatusError):
            parse_notify_information(bad)


def test_the_network_backends_take_a_notify_interval() -> None:
    from rdbss.minirdrs.sftp import SftpMiniRdr
    from rdbss.minirdrs.webdav import WebDavMiniRdr

    for cls in (SftpMiniRdr, WebDavMiniRdr):
        rdr = cls("x", {"notify_interval": 0.25})
        try:
            assert rdr._watches.interval_s == 0.25
        finally:
            rdr.close()
        for bad in (0, -1.0, "1", True, 86400):
            with pytest.raises(ValueError, match="notify_interval"):
                cls("x", {"notify_interval": bad})

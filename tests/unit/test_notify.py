"""Snapshot comparison for change notification."""

from __future__ import annotations

import pytest

from rdbss.minirdrs.common.notify import (
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
from rdbss.minirdrs.common.notify import (  # noqa: E402
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
    first = watches.notify(
        _ctx(1), folder, group="g", folder="f", completion_filter=both, tree=False, what=""
    )
    assert first.status == NtStatus.STATUS_PENDING
    folder.tree[""]["new.txt"] = F
    assert event.wait(5)
    assert done[0][1].result == {"changes": [{"action": "added", "name": "new.txt"}]}
    # nothing pending: a change now is answered by the next notify at once
    del folder.tree[""]["new.txt"]
    again = watches.notify(
        _ctx(1), folder, group="g", folder="f", completion_filter=both, tree=False, what=""
    )
    assert again.result == {"changes": [{"action": "removed", "name": "new.txt"}]}
    watches.close()


def test_cleanup_deadline_and_listing_failures_complete_a_watch() -> None:
    watches, done, event = _watches()
    folder = _Folder()
    names = FILE_NOTIFY_CHANGE_FILE_NAME
    watches.notify(
        _ctx(1), folder, group="g", folder="f", completion_filter=names, tree=False, what=""
    )
    with pytest.raises(NtStatusError):  # one pending notify per handle
        watches.notify(
            _ctx(1), folder, group="g", folder="f", completion_filter=names, tree=False, what=""
        )
    watches.end(fobx=1)
    assert done[-1][1].status == NtStatus.STATUS_NOTIFY_CLEANUP
    event.clear()
    watches.notify(
        _ctx(2, 600), folder, group="g", folder="f", completion_filter=names, tree=False, what=""
    )
    assert event.wait(5) and done[-1][1].status == NtStatus.STATUS_IO_TIMEOUT
    event.clear()
    watches.notify(
        _ctx(3), folder, group="h", folder="f", completion_filter=names, tree=False, what=""
    )
    folder.fail = NtStatus.STATUS_CONNECTION_DISCONNECTED
    assert event.wait(5) and done[-1][1].status == NtStatus.STATUS_CONNECTION_DISCONNECTED
    deadline = time.monotonic() + 5
    while watches.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watches.pending == 0
    with pytest.raises(NtStatusError):  # an empty filter
        watches.notify(
            _ctx(4), folder, group="g", folder="f", completion_filter=0, tree=False, what=""
        )
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
    from rdbss.minirdrs.sftp.minirdr import SftpMiniRdr
    from rdbss.minirdrs.webdav.minirdr import WebDavMiniRdr

    for cls in (SftpMiniRdr, WebDavMiniRdr):
        rdr = cls("x", {"notify_interval": 0.25})
        try:
            assert rdr._watches.interval_s == 0.25
        finally:
            rdr.close()
        for bad in (0, -1.0, "1", True, 86400):
            with pytest.raises(ValueError, match="notify_interval"):
                cls("x", {"notify_interval": bad})


# ------------------------------------------------------------------------------ shared polling
from rdbss.minirdrs.common.notify import (  # noqa: E402
    ADAPT,
    MAX_INTERVAL_S,
    WatchLimits,
    next_interval,
)


class _CountingFolder(_Folder):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __call__(self, sub: str) -> list[tuple[str, Entry]]:
        self.calls += 1
        return super().__call__(sub)


def test_waits_on_one_folder_share_one_listing_per_round() -> None:
    """200 waits on one folder: one listing per round, not one per wait."""
    done: list[tuple[RxContext, Result]] = []
    watches = PollingWatches(lambda c, r: done.append((c, r)), interval_s=0.2, name="t")
    folder = _CountingFolder()
    folder.tree[""] = {f"f{i}": F for i in range(2000)}
    names = FILE_NOTIFY_CHANGE_FILE_NAME
    for i in range(1, 201):
        ctx = _ctx(i, 30_000)
        ctx.origin = f"c{i % 2}:{i}"
        r = watches.notify(
            ctx, folder, group="g", folder="f", completion_filter=names, tree=False, what=""
        )
        assert r.status == NtStatus.STATUS_PENDING
    assert folder.calls < 10, folder.calls  # registrations share the fresh snapshot
    time.sleep(1.0)
    before = folder.calls
    time.sleep(1.0)
    assert folder.calls - before <= 1.0 / 0.2 + 1, folder.calls  # one per round
    folder.tree[""]["new"] = F
    deadline = time.monotonic() + 5
    while len(done) < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(done) == 200
    assert all(r.result == {"changes": [{"action": "added", "name": "new"}]} for _, r in done)
    watches.close()


def test_the_interval_adapts_to_the_cost_of_a_round() -> None:
    assert next_interval(1.0, 0.001) == 1.0
    assert next_interval(0.1, 0.1) == pytest.approx(ADAPT * 0.1)
    assert next_interval(0.1, 100.0) == MAX_INTERVAL_S
    assert next_interval(10.0, 0.0) == 10.0  # a configured interval above the cap stays


def test_watch_caps_refuse_a_new_handle_with_a_named_status() -> None:
    watches = PollingWatches(lambda c, r: None, interval_s=1.0, name="t",
                             limits=WatchLimits(total=3, per_client=2))  # fmt: skip
    folder = _Folder()

    def watch(fobx: int, client: str) -> Result:
        ctx = _ctx(fobx)
        ctx.origin = f"{client}:{fobx}"
        return watches.notify(ctx, folder, group="g", folder="f", completion_filter=1,
                              tree=False, what="\\d")  # fmt: skip

    assert watch(1, "a").status == NtStatus.STATUS_PENDING
    assert watch(2, "a").status == NtStatus.STATUS_PENDING
    with pytest.raises(NtStatusError, match="max_watches_per_client") as exc:
        watch(3, "a")
    assert exc.value.status == NtStatus.STATUS_INSUFFICIENT_RESOURCES
    assert watch(3, "b").status == NtStatus.STATUS_PENDING
    with pytest.raises(NtStatusError, match="max_watches"):
        watch(4, "c")
    watches.end(fobx=1)  # a closed handle frees its place
    assert watch(4, "c").status == NtStatus.STATUS_PENDING
    watches.close()
    for bad in ({"max_watches": 0}, {"max_watches_per_client": "9"}, {"max_watches": True}):
        with pytest.raises(ValueError, match="max_watches"):
            WatchLimits.from_config(bad, "sftp")

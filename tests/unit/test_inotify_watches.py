"""Change notification through the kernel's inotify (local shares), on real folders."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from rdbss.minirdrs.base import Result
from rdbss.minirdrs.common.inotify_watches import InotifyWatches
from rdbss.minirdrs.common.notify import (
    FILE_NOTIFY_CHANGE_DIR_NAME,
    FILE_NOTIFY_CHANGE_FILE_NAME,
    FILE_NOTIFY_CHANGE_SIZE,
    WatchLimits,
)
from rdbss.wire.rxcontext import RxContext
from rdbss.wire.status import NtStatus, NtStatusError

NAMES = FILE_NOTIFY_CHANGE_FILE_NAME | FILE_NOTIFY_CHANGE_DIR_NAME


class _Done:
    def __init__(self) -> None:
        self.items: list[tuple[RxContext, Result]] = []
        self.cond = threading.Condition()

    def __call__(self, ctx: RxContext, result: Result) -> None:
        with self.cond:
            self.items.append((ctx, result))
            self.cond.notify_all()

    def wait(self, count: int, timeout: float = 5.0) -> list[tuple[RxContext, Result]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= count, timeout), self.items
            return list(self.items)


def _ctx(fobx: int, timeout_ms: int = 10_000, client: str = "c") -> RxContext:
    return RxContext(request_id=fobx, major=0x0C, fobx=fobx, srv_open=fobx,
                     timeout_ms=timeout_ms, origin=f"{client}:{fobx}")  # fmt: skip


@pytest.fixture
def watches() -> tuple[InotifyWatches, _Done]:
    done = _Done()
    w = InotifyWatches(done, name="t", limits=WatchLimits(total=500, per_client=300))
    yield w, done  # type: ignore[misc]
    w.close()


def test_a_pending_notify_completes_on_a_change_and_later_ones_are_kept(
    tmp_path: Path, watches: tuple[InotifyWatches, _Done]
) -> None:
    w, done = watches
    folder = str(tmp_path)
    first = w.notify(_ctx(1), folder, completion_filter=NAMES, tree=False, what="\\")
    assert first.status == NtStatus.STATUS_PENDING
    (tmp_path / "new.txt").write_bytes(b"x")
    ((_, result),) = done.wait(1)
    assert result.result == {"changes": [{"action": "added", "name": "new.txt"}]}
    # nothing pending: a change now is kept for the handle's next notify
    (tmp_path / "new.txt").unlink()
    time.sleep(0.3)
    again = w.notify(_ctx(1), folder, completion_filter=NAMES, tree=False, what="\\")
    assert again.result == {"changes": [{"action": "removed", "name": "new.txt"}]}


def test_the_filter_a_tree_and_the_deadline(
    tmp_path: Path, watches: tuple[InotifyWatches, _Done]
) -> None:
    w, done = watches
    (tmp_path / "grows").write_bytes(b"1")
    w.notify(_ctx(1), str(tmp_path), completion_filter=FILE_NOTIFY_CHANGE_SIZE, tree=False,
             what="\\")  # fmt: skip
    w.notify(_ctx(2), str(tmp_path), completion_filter=NAMES, tree=True, what="\\")
    (tmp_path / "other").write_bytes(b"")  # a name: completes 2, not 1
    done.wait(1)
    assert [c.fobx for c, _ in done.items] == [2]
    with open(tmp_path / "grows", "ab") as f:
        f.write(b"more")
    items = done.wait(2)
    assert items[1][1].result == {"changes": [{"action": "modified", "name": "grows"}]}
    # the tree: a folder made after the watch started is watched too
    w.notify(_ctx(2), str(tmp_path), completion_filter=NAMES, tree=True, what="\\")
    os.mkdir(tmp_path / "sub")
    done.wait(3)
    time.sleep(0.3)
    w.notify(_ctx(2), str(tmp_path), completion_filter=NAMES, tree=True, what="\\")
    (tmp_path / "sub" / "deep").write_bytes(b"")
    items = done.wait(4)
    assert {"action": "added", "name": "sub\\deep"} in items[3][1].result["changes"]
    w.notify(_ctx(3, timeout_ms=700), str(tmp_path), completion_filter=NAMES, tree=False, what="\\")
    assert done.wait(5)[4][1].status == NtStatus.STATUS_IO_TIMEOUT


def test_cleanup_cancel_and_refusals(tmp_path: Path, watches: tuple[InotifyWatches, _Done]) -> None:
    w, done = watches
    w.notify(_ctx(1), str(tmp_path), completion_filter=NAMES, tree=False, what="\\")
    with pytest.raises(NtStatusError):  # one pending notify per handle
        w.notify(_ctx(1), str(tmp_path), completion_filter=NAMES, tree=False, what="\\")
    w.end(fobx=1)
    assert done.wait(1)[0][1].status == NtStatus.STATUS_NOTIFY_CLEANUP
    w.notify(_ctx(2), str(tmp_path), completion_filter=NAMES, tree=False, what="\\")
    assert w.cancel(2, NtStatus.STATUS_CANCELLED)
    assert done.wait(2)[1][1].status == NtStatus.STATUS_CANCELLED
    assert not w.cancel(2, NtStatus.STATUS_CANCELLED)
    with pytest.raises(NtStatusError) as exc:
        w.notify(_ctx(3), str(tmp_path / "missing"), completion_filter=NAMES, tree=False,
                 what="\\missing")  # fmt: skip
    assert exc.value.status == NtStatus.STATUS_DELETE_PENDING
    with pytest.raises(NtStatusError):
        w.notify(_ctx(4), str(tmp_path), completion_filter=0, tree=False, what="\\")


def test_many_waits_on_a_large_folder_cost_one_kernel_watch(
    tmp_path: Path, watches: tuple[InotifyWatches, _Done]
) -> None:
    """200 waits on a 2,000-entry folder: registration lists nothing, one change completes
    them all; past the per-client cap a new wait is refused with a named status."""
    w, done = watches
    for i in range(2000):
        (tmp_path / f"f{i}").write_bytes(b"")
    start = time.process_time()
    for fobx in range(1, 201):
        r = w.notify(_ctx(fobx), str(tmp_path), completion_filter=NAMES, tree=False, what="\\")
        assert r.status == NtStatus.STATUS_PENDING
    assert len(w._wd_path) == 1
    assert time.process_time() - start < 1.0  # no listing per wait
    (tmp_path / "new").write_bytes(b"")
    assert len(done.wait(200)) == 200
    for fobx in range(201, 301):
        w.notify(_ctx(fobx), str(tmp_path), completion_filter=NAMES, tree=False, what="\\")
    with pytest.raises(NtStatusError, match="max_watches_per_client") as exc:
        w.notify(_ctx(301), str(tmp_path), completion_filter=NAMES, tree=False, what="\\")
    assert exc.value.status == NtStatus.STATUS_INSUFFICIENT_RESOURCES
    assert w.notify(_ctx(302, client="other"), str(tmp_path), completion_filter=NAMES,
                    tree=False, what="\\").status == NtStatus.STATUS_PENDING  # fmt: skip

"""OpenTable and OpenBase (rdbss/minirdrs/base.py): the SrvOpen table every backend keeps."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from rdbss.minirdrs.base import OpenBase, OpenTable
from rdbss.wire.status import NtStatus, NtStatusError


@dataclass(slots=True, kw_only=True)
class _Open(OpenBase[str]):
    handle: int = 0


def test_add_gives_the_open_its_id() -> None:
    table: OpenTable[_Open] = OpenTable()
    op = _Open("s", "a", False)
    assert op.srv_open == 0
    srv_open = table.add(op)
    assert op.srv_open == srv_open == 1
    assert table.pop(op.srv_open) is op


def test_ids_start_at_one_and_grow() -> None:
    table: OpenTable[_Open] = OpenTable()
    first = table.add(_Open("s", "a", False))
    second = table.add(_Open("s", "b", False))
    assert (first, second) == (1, 2)
    assert table.get(first).path == "a"
    assert table.find(second) is not None
    assert len(table) == 2


def test_unknown_ids_are_invalid_handles() -> None:
    table: OpenTable[_Open] = OpenTable()
    assert table.find(None) is None
    assert table.find(7) is None
    for call in (table.get, table.pop):
        with pytest.raises(NtStatusError) as err:
            call(7)
        assert err.value.status == NtStatus.STATUS_INVALID_HANDLE
    with pytest.raises(NtStatusError):
        table.get(None)


def test_pop_forgets() -> None:
    table: OpenTable[_Open] = OpenTable()
    op = _Open("s", "a", False, handle=5)
    srv_open = table.add(op)
    assert table.pop(srv_open) is op
    assert table.find(srv_open) is None
    with pytest.raises(NtStatusError):
        table.pop(srv_open)


def test_delete_pending_is_per_share_and_path() -> None:
    share, other = "share", "other"
    table: OpenTable[_Open] = OpenTable()
    op = _Open(share, "dir\\a", False)
    table.add(op)
    table.add(_Open(share, "dir\\b", False))
    assert not table.delete_pending_at(share, "dir\\a")
    table.mark_delete_pending(op)
    assert op.delete_pending
    assert table.delete_pending_at(share, "dir\\a")
    assert not table.delete_pending_at(share, "dir\\b")
    assert not table.delete_pending_at(other, "dir\\a")
    table.mark_delete_pending(op, False)
    assert not table.delete_pending_at(share, "dir\\a")


def test_delete_pending_ends_with_its_open_and_follows_a_rename() -> None:
    table: OpenTable[_Open] = OpenTable()
    op = _Open("s", "d\\a", False)
    table.add(op)
    table.mark_delete_pending(op)
    assert table.delete_pending_paths("s") == {"d\\a"}
    table.renamed("s", "d", "e")
    assert table.delete_pending_at("s", "e\\a")
    assert not table.delete_pending_at("s", "d\\a")
    table.pop(op.srv_open)
    assert not table.delete_pending_at("s", "e\\a")
    assert table.delete_pending_paths("s") == frozenset()


def test_an_open_added_delete_pending_counts_and_clear_forgets_it() -> None:
    table: OpenTable[_Open] = OpenTable()
    op = _Open("s", "a", False, delete_pending=True)
    table.add(op)
    assert table.delete_pending_at("s", "a")
    table.clear()
    assert not table.delete_pending_at("s", "a")


def test_marking_an_open_not_in_the_table_is_kept_for_its_add() -> None:
    table: OpenTable[_Open] = OpenTable()
    op = _Open("s", "a", False)
    table.mark_delete_pending(op)
    assert not table.delete_pending_at("s", "a")
    table.add(op)
    assert table.delete_pending_at("s", "a")


def test_renamed_moves_the_open_and_what_is_under_it() -> None:
    table: OpenTable[_Open] = OpenTable()
    ops = [_Open("s", p, False) for p in ("d", "d\\x", "d\\x\\y", "dd", "e")]
    elsewhere = _Open("t", "d", False)
    for op in [*ops, elsewhere]:
        table.add(op)
    table.renamed("s", "d", "n\\m")
    assert [op.path for op in ops] == ["n\\m", "n\\m\\x", "n\\m\\x\\y", "dd", "e"]
    assert elsewhere.path == "d"


def test_clear_answers_what_was_open() -> None:
    table: OpenTable[_Open] = OpenTable()
    ops = [_Open("s", str(i), False) for i in range(3)]
    for op in ops:
        table.add(op)
    assert table.values() == ops
    assert table.clear() == ops
    assert len(table) == 0
    assert table.add(_Open("s", "again", False)) == 4  # ids are never reused


def test_open_base_defaults() -> None:
    op = OpenBase("s", "", True)
    assert (op.can_read, op.can_write, op.append_only, op.delete_pending) == (
        False,
        False,
        False,
        False,
    )


def test_concurrent_adds_get_distinct_ids() -> None:
    table: OpenTable[_Open] = OpenTable()
    ids: list[int] = []

    def add_many() -> None:
        for _ in range(200):
            ids.append(table.add(_Open("s", "x", False)))

    threads = [threading.Thread(target=add_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ids) == list(range(1, 801))

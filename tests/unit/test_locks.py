"""Byte-range lock table (Windows semantics)."""

from __future__ import annotations

import pytest

from rdbss.minirdrs.common.locks import FileLocks, Lock
from rdbss.wire import NtStatus, NtStatusError

S = NtStatus


def status_of(fn) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(NtStatusError) as info:
        fn()
    return info.value.status


def test_exclusive_conflicts_and_shared_coexist() -> None:
    f = FileLocks()
    assert f.lock(Lock(1, 0, 10, exclusive=True))
    assert status_of(lambda: f.lock(Lock(2, 5, 10, exclusive=False))) == S.STATUS_LOCK_NOT_GRANTED
    assert f.lock(Lock(2, 10, 10, exclusive=True))  # adjacent, not overlapping
    g = FileLocks()
    assert g.lock(Lock(1, 0, 10, False)) and g.lock(Lock(2, 0, 10, False))
    assert status_of(lambda: g.lock(Lock(3, 0, 1, True))) == S.STATUS_LOCK_NOT_GRANTED
    assert g.lock(Lock(3, 0, 0, True))  # zero length conflicts with nothing


def test_own_locks_stack_inside_an_exclusive_one() -> None:
    f = FileLocks()
    assert f.lock(Lock(1, 0, 100, True))
    assert f.lock(Lock(1, 10, 10, False)) and f.lock(Lock(1, 20, 10, True))
    g = FileLocks()
    assert g.lock(Lock(1, 0, 100, False))
    assert status_of(lambda: g.lock(Lock(1, 10, 10, True))) == S.STATUS_LOCK_NOT_GRANTED


def test_unlock_needs_the_exact_range_and_grants_waiters_in_order() -> None:
    f = FileLocks()
    f.lock(Lock(1, 0, 10, True))
    assert not f.lock(Lock(2, 0, 10, True), token="w2")
    assert not f.lock(Lock(3, 0, 10, False), token="w3")
    assert status_of(lambda: f.unlock(1, 0, 5)) == S.STATUS_RANGE_NOT_LOCKED
    assert status_of(lambda: f.unlock(2, 0, 10)) == S.STATUS_RANGE_NOT_LOCKED
    assert f.unlock(1, 0, 10) == ["w2"]  # first come first served
    assert f.unlock(2, 0, 10) == ["w3"]
    assert f.cancel("nope") is False


def test_a_new_lock_does_not_overtake_waiters() -> None:
    f = FileLocks()
    f.lock(Lock(1, 0, 10, True))
    assert not f.lock(Lock(2, 0, 10, True), token="w2")
    assert status_of(lambda: f.lock(Lock(3, 5, 1, False))) == S.STATUS_LOCK_NOT_GRANTED
    assert f.cancel("w2")
    assert f.unlock_all(1) == []
    assert f.empty


def test_mandatory_io_checks() -> None:
    f = FileLocks()
    f.lock(Lock(1, 0, 10, True))
    f.lock(Lock(1, 20, 10, False))
    f.check_io(1, 0, 30, write=True)  # the owner may
    assert status_of(lambda: f.check_io(2, 5, 1, write=False)) == S.STATUS_FILE_LOCK_CONFLICT
    f.check_io(2, 20, 5, write=False)  # reading under a shared lock is fine
    assert status_of(lambda: f.check_io(2, 25, 1, write=True)) == S.STATUS_FILE_LOCK_CONFLICT
    f.check_io(2, 10, 10, write=True)  # the gap


def test_a_withdrawn_waiter_lets_the_ones_it_held_back_through() -> None:
    f = FileLocks()
    assert f.lock(Lock(1, 0, 5, True))
    assert not f.lock(Lock(2, 0, 10, True), "b")  # conflicts with the held lock
    assert not f.lock(Lock(3, 6, 4, True), "c")  # free, but behind b's overlapping wait
    assert f.grant_waiting() == []
    assert f.cancel("b")
    assert f.grant_waiting() == ["c"]  # granted now, without waiting for an unlock
    assert f.unlock(1, 0, 5) == []  # and b is never granted
    assert [lock.owner for lock in f.held] == [3]

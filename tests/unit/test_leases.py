"""Read leases: the grant and break rules and the epoch slots (rdbss/model/leases.py), the
epoch table in /dev/shm (rdbss/epochs.py) and the client's lease cache (rdbss/leases.py)."""

from __future__ import annotations

import os

import pytest

from rdbss import shm
from rdbss.epochs import EpochTable, EpochView
from rdbss.leases import LeaseCache
from rdbss.model.buffering import HANDLE_BITS, FcbState
from rdbss.model.leases import EpochSlots, asked, info_breaks, may_grant, open_breaks
from rdbss.wire import Access, CreateDisposition, CreateOptions, FileInformationClass, NtStatusError

F = FcbState
R = int(Access.GENERIC_READ)
W = int(Access.GENERIC_WRITE)
FULL = F.READCACHING_ENABLED | F.READBUFFERING_ENABLED | int(HANDLE_BITS)


def grantable(
    buffering: int = FULL,
    *,
    directory: bool = False,
    access: int = R,
    local: bool = True,
    delete_pending: bool = False,
) -> bool:
    return may_grant(
        buffering,
        directory=directory,
        access=access,
        local=local,
        delete_pending=delete_pending,
    )


# ------------------------------------------------------------------------------ rules
def test_a_lease_is_asked_only_by_lease_true() -> None:
    assert asked({"lease": True})
    assert not asked(None)
    assert not asked({})
    assert not asked({"lease": 1})
    assert not asked({"shm": "x"})


def test_a_lease_needs_read_caching_a_reader_a_file_and_a_local_client() -> None:
    assert grantable()
    assert not grantable(buffering=int(HANDLE_BITS))  # a writer among several: no caching
    assert not grantable(directory=True)
    assert not grantable(access=int(Access.FILE_READ_ATTRIBUTES))
    assert not grantable(local=False)
    assert not grantable(delete_pending=True)
    assert grantable(access=R | W)  # a writer alone may hold one: its own writes break it


@pytest.mark.parametrize(
    ("access", "disposition", "options", "breaks"),
    [
        (R, CreateDisposition.FILE_OPEN, 0, False),
        (R, CreateDisposition.FILE_OPEN_IF, 0, False),
        (int(Access.FILE_READ_ATTRIBUTES), CreateDisposition.FILE_OPEN, 0, False),
        (W, CreateDisposition.FILE_OPEN, 0, True),
        (int(Access.FILE_APPEND_DATA), CreateDisposition.FILE_OPEN, 0, True),
        (int(Access.DELETE), CreateDisposition.FILE_OPEN, 0, True),
        (int(Access.GENERIC_ALL), CreateDisposition.FILE_OPEN, 0, True),
        (R, CreateDisposition.FILE_OVERWRITE_IF, 0, True),
        (R, CreateDisposition.FILE_SUPERSEDE, 0, True),
        (R, CreateDisposition.FILE_OPEN, int(CreateOptions.FILE_DELETE_ON_CLOSE), True),
    ],
)
def test_opens_that_may_change_the_data_break(
    access: int, disposition: int, options: int, breaks: bool
) -> None:
    assert open_breaks(access, disposition, options) is breaks


def test_rename_delete_and_size_changes_break_other_information_does_not() -> None:
    FIC = FileInformationClass
    for info in (
        FIC.FileRenameInformation,
        FIC.FileDispositionInformation,
        FIC.FileEndOfFileInformation,
        FIC.FileAllocationInformation,
    ):
        assert info_breaks(info)
    assert not info_breaks(FIC.FileBasicInformation)


# ------------------------------------------------------------------------------ slots
def test_a_grant_takes_a_slot_and_bumps_it_and_the_same_fcb_keeps_it() -> None:
    slots = EpochSlots(4)
    assert slots.grant(7) == (0, 1)
    assert slots.grant(7) == (0, 1)
    assert slots.grant(8) == (1, 1)
    assert len(slots) == 2


def test_a_break_bumps_only_that_fcb_and_an_unleased_fcb_is_a_no_op() -> None:
    slots = EpochSlots(4)
    slots.grant(7)
    slots.grant(8)
    assert slots.bump(7) == (0, 2)
    assert slots.grant(7) == (0, 2)  # a new grant carries the new epoch
    assert slots.epochs[1] == 1
    assert slots.bump(99) is None


def test_a_released_slot_is_bumped_and_never_matches_an_old_grant_again() -> None:
    slots = EpochSlots(1)
    slot, old = slots.grant(7) or (0, 0)
    assert slots.release(7) == (slot, old + 1)
    assert slots.release(7) is None
    again = slots.grant(8)
    assert again is not None and again[0] == slot and again[1] > old + 1


def test_a_full_table_reclaims_the_slots_of_fcbs_gone_or_refuses() -> None:
    slots = EpochSlots(2)
    slots.grant(1)
    slots.grant(2)
    assert slots.grant(3) is None
    assert slots.grant(3, in_use=lambda serial: True) is None
    given = slots.grant(3, in_use=lambda serial: serial != 1)
    assert given is not None and given[0] == 0 and given[1] == 3  # granted, released, granted
    assert set(slots.slot_of) == {2, 3}


def test_a_table_needs_a_slot() -> None:
    with pytest.raises(ValueError):
        EpochSlots(0)


# ------------------------------------------------------------------------------ the table
needs_shm = pytest.mark.skipif(not shm.available(), reason="no writable /dev/shm")


@needs_shm
def test_the_table_is_private_and_a_view_sees_every_store() -> None:
    table = EpochTable(8)
    try:
        assert os.stat(table.path).st_mode & 0o777 == 0o600
        view = EpochView(table.name)
        assert view.slots == 8 and view.load(3) == 0
        table.store(3, (1 << 63) + 5)
        assert view.load(3) == (1 << 63) + 5
        view.close()
    finally:
        table.close()
    assert not table.path.exists()


@needs_shm
def test_a_view_refuses_what_is_not_a_private_epoch_table() -> None:
    with pytest.raises(NtStatusError, match="bad epoch table name"):
        EpochView("../etc/passwd")
    name = f"rdbss-epochs-{os.getpid()}-{os.urandom(8).hex()}"
    path = shm.SHM_DIR / name
    try:
        path.write_bytes(b"\0" * 64)
        os.chmod(path, 0o600)
        with pytest.raises(NtStatusError, match="not an epoch table"):
            EpochView(name)  # no magic number
        os.chmod(path, 0o644)
        with pytest.raises(NtStatusError, match="not a private epoch table"):
            EpochView(name)
    finally:
        path.unlink(missing_ok=True)
    with pytest.raises(NtStatusError):
        EpochView(name)  # gone


@needs_shm
def test_tables_of_cores_that_are_gone_are_swept() -> None:
    dead = shm.SHM_DIR / f"rdbss-epochs-999999999-{os.urandom(8).hex()}"
    dead.write_bytes(b"\0" * 16)
    table = EpochTable(1)
    try:
        assert not dead.exists()
        assert table.path.exists()
    finally:
        table.close()
        dead.unlink(missing_ok=True)


# ------------------------------------------------------------------------------ client cache
@needs_shm
def test_the_client_serves_a_range_only_under_the_granted_epoch() -> None:
    table = EpochTable(4)
    try:
        table.store(2, 5)
        cache = LeaseCache(1 << 20)
        assert not cache.hold(1, {"table": table.name, "slot": 9, "epoch": 5})  # no such slot
        assert not cache.hold(1, {"table": "rdbss-epochs-1-0000000000000000", "slot": 2})
        assert cache.hold(1, {"table": table.name, "slot": 2, "epoch": 5})
        assert cache.lookup(1, 0, 10) is None  # not read yet
        cache.fill(1, 0, b"abc", 64 << 10)  # short: the file ends at 3
        assert cache.lookup(1, 0, 10) == b"abc"
        assert cache.lookup(1, 5, 10) == b""
        assert cache.stats.hits == 2 and cache.stats.misses == 1
        table.store(2, 6)  # broken
        assert cache.lookup(1, 0, 10) is None
        assert not cache.valid(1) and 1 not in cache.held and cache.blocks.bytes == 0
        cache.fill(1, 0, b"abc", 64 << 10)  # a read answered after the break fills nothing
        assert cache.blocks.bytes == 0 and cache.stats.breaks == 1
        cache.clear()
    finally:
        table.close()

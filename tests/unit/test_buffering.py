"""The pure buffering logic: grants by caching level, the oplock-like narrowing by the handles
open on a file, the collapse and conflict rules, and the read cache's blocks, end-of-file
marks, invalidation and byte cap."""

from __future__ import annotations

import pytest

from rdbss.model.buffering import (
    BUFFERING_STATE_MASK,
    HANDLE_BITS,
    FcbState,
    collapsible_onto,
    compute_buffering_state,
    conflicts,
    describe,
    grant_for,
    lost,
    may_collapse,
)
from rdbss.model.filecache import BLOCK, MAX_FILL, ReadCache
from rdbss.wire import Access, CreateDisposition, CreateOptions, ShareAccess

F = FcbState
R = Access.GENERIC_READ
W = Access.GENERIC_WRITE
RW = R | W
ALL = ShareAccess.ALL
D = CreateDisposition


def test_grants_by_caching_level() -> None:
    assert grant_for("off") == F.COLLAPSING_ENABLED | F.OPENSHARING_ENABLED
    assert grant_for("handles") & F.DELAY_CLOSE
    assert not grant_for("handles") & F.READCACHING_ENABLED
    assert grant_for("exclusive") == BUFFERING_STATE_MASK
    # a kind that cannot collapse (its mask leaves the handle bits out) gets none of them
    assert not grant_for("exclusive", int(BUFFERING_STATE_MASK & ~HANDLE_BITS)) & HANDLE_BITS
    with pytest.raises(ValueError, match="caching must be one of"):
        grant_for("always")


def test_one_handle_keeps_the_whole_grant() -> None:
    grant = grant_for("exclusive")
    assert compute_buffering_state(grant, [RW]) == grant
    assert compute_buffering_state(grant, []) == grant


def test_readers_share_read_caching_but_lose_write_caching() -> None:
    state = compute_buffering_state(grant_for("exclusive"), [R, R, Access.FILE_READ_DATA])
    assert state & F.READCACHING_ENABLED and state & F.COLLAPSING_ENABLED
    assert not state & (F.WRITECACHING_ENABLED | F.WRITEBUFFERING_ENABLED)


def test_a_writer_among_several_handles_turns_caching_off() -> None:
    state = compute_buffering_state(grant_for("exclusive"), [R, RW])
    assert state == grant_for("exclusive") & HANDLE_BITS
    # attribute-only handles count as handles but not as writers
    state = compute_buffering_state(grant_for("exclusive"), [R, Access.FILE_READ_ATTRIBUTES])
    assert state & F.READCACHING_ENABLED


def test_a_lock_turns_data_caching_off_but_keeps_collapsing() -> None:
    state = compute_buffering_state(grant_for("exclusive"), [RW], locked=True)
    assert not state & (F.READCACHING_ENABLED | F.WRITECACHING_ENABLED)
    assert state & F.COLLAPSING_ENABLED


def test_lost_and_describe() -> None:
    old = F.READCACHING_ENABLED | F.COLLAPSING_ENABLED
    assert lost(old, F.COLLAPSING_ENABLED) == F.READCACHING_ENABLED
    assert lost(F.COLLAPSING_ENABLED, old) == 0
    assert describe(old) == ["COLLAPSING", "READCACHING"]


@pytest.mark.parametrize(
    ("disposition", "options", "ok"),
    [
        (D.FILE_OPEN, 0, True),
        (D.FILE_OPEN_IF, CreateOptions.FILE_NON_DIRECTORY_FILE, True),
        (D.FILE_CREATE, 0, False),
        (D.FILE_OVERWRITE_IF, 0, False),
        (D.FILE_SUPERSEDE, 0, False),
        (D.FILE_OPEN, CreateOptions.FILE_DELETE_ON_CLOSE, False),
        (D.FILE_OPEN, CreateOptions.FILE_OPEN_FOR_BACKUP_INTENT, False),
        (D.FILE_OPEN, CreateOptions.FILE_DIRECTORY_FILE, False),
    ],
)
def test_which_opens_may_collapse(disposition: int, options: int, ok: bool) -> None:
    assert may_collapse(disposition, options) is ok


def test_collapse_needs_the_same_access_sharing_and_options() -> None:
    assert collapsible_onto(R, ALL, 0, R, ALL, 0)
    assert not collapsible_onto(R, ALL, 0, RW, ALL, 0)  # the handle would gain write rights
    assert not collapsible_onto(R, ShareAccess.FILE_SHARE_READ, 0, R, ALL, 0)
    assert not collapsible_onto(R, ALL, CreateOptions.FILE_WRITE_THROUGH, R, ALL, 0)


def test_what_conflicts_with_a_delayed_close() -> None:
    held = (int(RW), int(ShareAccess.FILE_SHARE_READ))
    assert not conflicts(R, ALL, D.FILE_OPEN, held)
    assert conflicts(RW, ALL, D.FILE_OPEN, held)  # the kept open does not share writing
    assert conflicts(R, ALL, D.FILE_OVERWRITE_IF, held)  # replaces the file
    assert conflicts(Access.DELETE, ALL, D.FILE_OPEN, (int(R), int(ALL)))  # deletes it
    assert not conflicts(Access.FILE_READ_ATTRIBUTES, 0, D.FILE_OPEN, held)


# ------------------------------------------------------------------------------ read cache
def test_a_widened_read_fills_blocks_and_later_reads_hit() -> None:
    cache = ReadCache(1 << 20)
    assert cache.lookup(1, 10, 5) is None
    assert ReadCache.widen(10, 5) == (0, BLOCK)
    assert ReadCache.widen(BLOCK - 1, 2) == (0, 2 * BLOCK)
    assert ReadCache.widen(0, 0) is None
    assert ReadCache.widen(0, MAX_FILL) == (0, MAX_FILL)
    assert ReadCache.widen(1, MAX_FILL) is None  # large reads are not cached
    data = bytes(range(256)) * (BLOCK // 256) * 2
    cache.fill(1, 0, data, 2 * BLOCK)
    assert cache.lookup(1, BLOCK - 3, 6) == data[BLOCK - 3 : BLOCK + 3]
    assert cache.lookup(2, 0, 1) is None  # another Fcb
    assert cache.lookup(1, 2 * BLOCK, 1) is None  # not read yet: unknown, not end of file
    assert cache.stats.hits == 1


def test_a_short_answer_records_the_end_of_the_file() -> None:
    cache = ReadCache(1 << 20)
    cache.fill(1, 0, b"abc", BLOCK)
    assert cache.lookup(1, 1, 100) == b"bc"
    assert cache.lookup(1, 3, 10) == b""  # end of file
    cache.fill(2, 0, b"x" * BLOCK, 2 * BLOCK)  # ends exactly at a block boundary
    assert cache.lookup(2, BLOCK, 10) == b""
    assert cache.lookup(2, BLOCK - 1, 10) == b"x"


def test_writes_drop_the_blocks_they_touch_and_the_end_of_file() -> None:
    cache = ReadCache(1 << 20)
    cache.fill(1, 0, b"a" * (2 * BLOCK + 10), 3 * BLOCK)
    cache.invalidate(1, BLOCK + 5, 1)
    assert cache.lookup(1, 0, 10) == b"a" * 10
    assert cache.lookup(1, BLOCK, 10) is None
    assert cache.lookup(1, 2 * BLOCK, 5) is None  # the end-of-file block went too
    cache.invalidate(1, -1, 10)  # an append: everything
    assert cache.lookup(1, 0, 10) is None and cache.bytes == 0


def test_the_byte_cap_evicts_least_recently_used_blocks() -> None:
    cache = ReadCache(2 * BLOCK)
    cache.fill(1, 0, b"1" * BLOCK, BLOCK)
    cache.fill(2, 0, b"2" * BLOCK, BLOCK)
    assert cache.lookup(1, 0, 1) == b"1"  # 1 is now the most recently used
    cache.fill(3, 0, b"3" * BLOCK, BLOCK)
    assert cache.bytes == 2 * BLOCK
    assert cache.lookup(2, 0, 1) is None
    assert cache.lookup(1, 0, 1) == b"1" and cache.lookup(3, 0, 1) == b"3"
    cache.purge(1)
    assert cache.cached(1) == 0 and cache.cached(3) == BLOCK
    assert ReadCache(0).limit == 0
    off = ReadCache(0)
    off.fill(1, 0, b"x", BLOCK)
    assert off.lookup(1, 0, 1) is None

"""The pure rules of a client's compound (rdbss/model/compound.py): which create and close pair
is a stat, which related items a mini-redirector may send at once, and where a long batch may
be cut."""

from __future__ import annotations

from typing import Any

from rdbss.model.compound import (
    RELATED_IN_BATCH,
    ChainKind,
    chain_of,
    rides_with_create,
    split_batch,
    stat_pair,
)
from rdbss.wire import IrpMj, IrpMn, LowIoOp, LowIoParameters, Routine, RxContext, RxFlags

REL = int(RxFlags.RELATED)


def item(major: int, related: bool = False) -> RxContext:
    return RxContext(0, major, flags=REL if related else 0)


def test_a_create_and_its_related_close_is_a_stat() -> None:
    items = [item(IrpMj.CREATE), item(IrpMj.CLOSE, related=True)]
    assert stat_pair(items, 0)


def test_a_stat_may_be_followed_by_another_create_chain() -> None:
    items = [
        item(IrpMj.CREATE),
        item(IrpMj.CLOSE, related=True),
        item(IrpMj.CREATE),
        item(IrpMj.READ, related=True),
    ]
    assert stat_pair(items, 0)


def test_not_a_stat() -> None:
    # nothing after the create
    assert not stat_pair([item(IrpMj.CREATE)], 0)
    # an unrelated close (another handle's)
    assert not stat_pair([item(IrpMj.CREATE), item(IrpMj.CLOSE)], 0)
    # a read between the create and its close
    read_first = [item(IrpMj.CREATE), item(IrpMj.READ, True), item(IrpMj.CLOSE, True)]
    assert not stat_pair(read_first, 0)
    # a related item after the close would act on the closed handle
    after = [item(IrpMj.CREATE), item(IrpMj.CLOSE, True), item(IrpMj.READ, True)]
    assert not stat_pair(after, 0)


def test_which_related_items_ride_with_their_create() -> None:
    assert IrpMj.READ in RELATED_IN_BATCH and IrpMj.CLOSE in RELATED_IN_BATCH
    assert IrpMj.SET_INFORMATION not in RELATED_IN_BATCH  # waits for the create's answer
    assert rides_with_create(item(IrpMj.READ, True))
    assert rides_with_create(item(IrpMj.CLOSE, True))
    assert not rides_with_create(item(IrpMj.SET_INFORMATION, True))
    assert not rides_with_create(item(IrpMj.LOCK_CONTROL, True))


def test_a_directory_query_rides_with_its_create_and_a_change_notify_waits() -> None:
    query = RxContext(0, IrpMj.DIRECTORY_CONTROL, minor=IrpMn.QUERY_DIRECTORY, flags=REL)
    notify = RxContext(0, IrpMj.DIRECTORY_CONTROL, minor=IrpMn.NOTIFY_CHANGE_DIRECTORY, flags=REL)
    assert rides_with_create(query)
    assert not rides_with_create(notify)  # a wait of its own: never held up with a create


def parts(flags: list[bool], limit: int) -> list[list[int]]:
    batch = list(enumerate(flags))
    return [[i for i, _ in p] for p in split_batch(batch, limit, lambda x: x[1])]


def test_a_short_batch_is_one_part() -> None:
    assert parts([False, True, False], 4) == [[0, 1, 2]]
    assert parts([], 4) == [[]]


def test_a_long_batch_is_cut_before_an_unrelated_item() -> None:
    # 0 create, 1-2 related, 3 create, 4 related: a cut at 3 keeps both chains whole
    assert parts([False, True, True, False, True], 4) == [[0, 1, 2], [3, 4]]
    assert parts([False] * 5, 2) == [[0, 1], [2, 3], [4]]


def test_a_chain_longer_than_a_part_is_cut_at_the_limit() -> None:
    assert parts([False, True, True, True, True], 2) == [[0, 1], [2, 3], [4]]


def test_payloads_over_the_compound_limit_are_cut_apart() -> None:
    """Two writes whose payloads together exceed the limit go in two messages; an item
    heavier than the limit alone still goes (alone); a chain is kept whole where it can be."""
    sizes = {0: 64, 1: 1, 2: 0, 3: 30, 4: 30, 5: 10}
    related = {3: False, 4: True, 5: True}
    batch = list(range(6))

    def cut(limit_bytes: int) -> list[list[int]]:
        return list(
            split_batch(batch, 128, lambda i: related.get(i, False), sizes.__getitem__, limit_bytes)
        )

    assert cut(64) == [[0], [1, 2], [3, 4], [5]]  # 3+4+5 = 70: the chain cannot stay whole
    assert cut(70) == [[0, 1, 2], [3, 4, 5]]
    assert cut(40) == [[0], [1, 2], [3], [4, 5]]  # cut before the chain, which still won't fit
    assert cut(1000) == [batch]


def routine(name: Routine, **fields: Any) -> RxContext:
    return RxContext(0, 0, routine=name, flags=REL, **fields)


def io(operation: LowIoOp, offset: int, length: int) -> RxContext:
    lowio = LowIoParameters(operation=operation, offset=offset, length=length)
    return routine(Routine.MRxLowIOSubmit, lowio=lowio)


CLOSE = routine(Routine.MRxCloseSrvOpen)
QUERY = routine(Routine.MRxQueryFileInfo)
K = ChainKind


def test_reads_writes_queries_and_a_last_close_are_a_chain() -> None:
    related = [io(LowIoOp.READ, 0, 100), io(LowIoOp.WRITE, 5, 3), QUERY, CLOSE]
    assert chain_of(related, [None, 3, None, None], 1000, 10) == [
        K.READ,
        K.WRITE,
        K.QUERY_INFO,
        K.CLOSE,
    ]
    assert chain_of([CLOSE], [None], 1000, 1000) == [K.CLOSE]


def test_what_is_not_a_chain() -> None:
    def chain(*related: RxContext, sizes: list[int | None] | None = None) -> object:
        return chain_of(list(related), sizes or [None] * len(related), 1000, 1000)

    assert chain(io(LowIoOp.READ, 0, 1001), CLOSE) is None  # over the server's limit
    assert chain(io(LowIoOp.READ, 0, 0), CLOSE) is None  # empty: answered without the server
    assert chain(io(LowIoOp.READ, -1, 5), CLOSE) is None
    assert chain(io(LowIoOp.WRITE, -1, 1), CLOSE, sizes=[1, None]) is None  # at the end of file
    assert chain(io(LowIoOp.WRITE, 0, 1), CLOSE) is None  # no data
    assert chain(io(LowIoOp.UNLOCK, 0, 1), CLOSE) is None
    assert chain(CLOSE, QUERY) is None  # an item after the close
    assert chain(QUERY) is None  # no close: the chain's open would outlive it
    assert chain(routine(Routine.MRxFlush), CLOSE) is None
    assert chain(routine(Routine.MRxCloseSrvOpen, args={"shm": 1})) is None
    big = 1 << 20  # a pipelined transfer, within the limit
    assert chain_of([io(LowIoOp.READ, 0, big), CLOSE], [None, None], big, big) is None

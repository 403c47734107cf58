"""The rules of a client's compound (a chain of requests sent as one message, as SMB2 compounded
requests, MS-SMB2 3.2.4.1.4): which related items may travel with their create, which create and
close pair is a stat, and where a long batch may be cut. Pure code."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from rdbss.wire.constants import IrpMj, RxFlags
from rdbss.wire.rxcontext import RxContext

T = TypeVar("T")

_RELATED = int(RxFlags.RELATED)

#: Related items that may travel in the same message as their create (the mini-redirector
#: resolves the handle itself); others wait for the create's answer.
RELATED_IN_BATCH = frozenset(
    {
        IrpMj.READ,
        IrpMj.WRITE,
        IrpMj.QUERY_INFORMATION,
        IrpMj.QUERY_VOLUME_INFORMATION,
        IrpMj.QUERY_EA,
        IrpMj.FLUSH_BUFFERS,
        IrpMj.CLOSE,
    }
)


def stat_pair(items: Sequence[RxContext], index: int) -> bool:
    """Whether the create at ``index`` is followed by its related close and nothing after that
    acts on its handle (no related item before the next create): a candidate query open."""
    if index + 1 >= len(items):
        return False
    close = items[index + 1]
    if close.major != IrpMj.CLOSE or not close.flags & _RELATED:
        return False
    for item in items[index + 2 :]:
        if item.major == IrpMj.CREATE:
            return True
        if item.flags & _RELATED:
            return False
    return True


def split_batch(batch: list[T], limit: int, related: Callable[[T], bool]) -> Iterator[list[T]]:
    """Parts of at most ``limit`` requests, cut before an item that is not ``related`` where
    possible (a related item must travel with its create)."""
    start = 0
    while len(batch) - start > limit:
        cut = start + limit
        while cut > start + 1 and related(batch[cut]):
            cut -= 1
        if cut == start + 1 and related(batch[cut]):
            cut = start + limit  # one chain longer than a whole part: no clean cut exists
        yield batch[start:cut]
        start = cut
    yield batch[start:]

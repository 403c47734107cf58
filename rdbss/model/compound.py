"""The rules of a client's compound (a chain of requests sent as one message, as SMB2 compounded
requests, MS-SMB2 3.2.4.1.4): which related items may travel with their create, which create and
close pair is a stat, and where a long batch may be cut. Pure code."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from rdbss.model.pipelining import pipelines
from rdbss.wire.constants import IrpMj, IrpMn, LowIoOp, Routine, RxFlags
from rdbss.wire.rxcontext import RxContext

T = TypeVar("T")

_RELATED = int(RxFlags.RELATED)

#: Related items that may travel in the same message as their create (the mini-redirector
#: resolves the handle itself), besides a directory query (``rides_with_create``); others wait
#: for the create's answer.
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

_DIRECTORY_CONTROL = int(IrpMj.DIRECTORY_CONTROL)
_QUERY_DIRECTORY = int(IrpMn.QUERY_DIRECTORY)


def rides_with_create(item: RxContext) -> bool:
    """Whether a related item may travel in the same message as its create: the majors of
    ``RELATED_IN_BATCH``, and a directory query (a listing's first batches on the handle its
    create opens: the mini-redirector keys the enumeration by that handle, so later queries
    on it go on where these stopped). A change notification waits for the create's answer."""
    major = item.major
    if major == _DIRECTORY_CONTROL:
        return item.minor == _QUERY_DIRECTORY
    return major in RELATED_IN_BATCH


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


def split_batch(
    batch: list[T],
    limit: int,
    related: Callable[[T], bool],
    weight: Callable[[T], int] | None = None,
    max_weight: int = 0,
) -> Iterator[list[T]]:
    """Parts of at most ``limit`` requests and, with ``weight``, at most ``max_weight`` of it
    together (a compound's payloads must fit its receiver's limit: one larger is refused and
    its requests would wait out their deadlines; an item heavier alone is a part alone), cut
    before an item that is not ``related`` where possible (a related item must travel with its
    create)."""
    if not batch:
        yield batch
        return
    start = 0
    while start < len(batch):
        end = start + 1
        total = weight(batch[start]) if weight is not None else 0
        while end < len(batch) and end - start < limit:
            more = weight(batch[end]) if weight is not None else 0
            if weight is not None and total + more > max_weight:
                break
            total += more
            end += 1
        if end < len(batch):
            cut = end
            while cut > start + 1 and related(batch[cut]):
                cut -= 1
            if cut > start + 1 or not related(batch[cut]):
                end = cut  # else one chain longer than a whole part: no clean cut exists
        yield batch[start:end]
        start = end


class ChainKind(enum.Enum):
    """What one related item of a chain (``chain_of``) does with its create's open."""

    READ = "read"
    WRITE = "write"
    QUERY_INFO = "query-info"
    CLOSE = "close"


def chain_of(
    related: Sequence[RxContext],
    payload_sizes: Sequence[int | None],
    max_read: int,
    max_write: int,
) -> list[ChainKind] | None:
    """The related items after a create as a chain a mini-redirector may send at once: READs
    and WRITEs at an explicit offset of 1 to ``max_read`` / ``max_write`` bytes that are not
    pipelined transfers (each goes as ONE request to the server), file-information queries,
    and the close, last (required: the open a chain makes never outlives it). None for
    anything else (a shared-memory item, an append at the end of file, an empty or
    out-of-range transfer, no close, an item after the close): those run one by one, where
    each check answers as usual."""
    kinds: list[ChainKind] = []
    for index, (ctx, size) in enumerate(zip(related, payload_sizes, strict=True)):
        if ctx.args:
            return None  # shared memory: the host's own path
        if ctx.routine == Routine.MRxCloseSrvOpen and index == len(related) - 1:
            kinds.append(ChainKind.CLOSE)
        elif ctx.routine == Routine.MRxQueryFileInfo:
            kinds.append(ChainKind.QUERY_INFO)
        elif ctx.routine == Routine.MRxLowIOSubmit and ctx.lowio is not None:
            lowio = ctx.lowio
            length = lowio.length if lowio.operation == LowIoOp.READ else size
            limit = max_read if lowio.operation == LowIoOp.READ else max_write
            if lowio.operation not in (LowIoOp.READ, LowIoOp.WRITE) or length is None:
                return None
            if lowio.offset < 0 or lowio.length < 0 or not 0 < length <= limit:
                return None
            if pipelines(lowio.offset, length, append_only=False):
                return None
            kinds.append(ChainKind.READ if lowio.operation == LowIoOp.READ else ChainKind.WRITE)
        else:
            return None
    return kinds if kinds and kinds[-1] is ChainKind.CLOSE else None

"""A small file read whole (a create that opens an existing file for reading, a READ and the
close, in one compound) served on the connection's event loop alone: the server's requests
are made first, in one coroutine and without a thread hop, then the create's rules run on the
loop thread over what they answered (``SftpMiniRdr.start_direct_compound``).

The requests are the chain's on a worker (rdbss/minirdrs/sftp/chain.py), in the same order,
less one: the name's lookup (the parent's realpath with the name's lstat, ``alocate``), the
open, then the READ and the close sent at once. The create answers the lookup's stat, made one
round trip before the open, instead of a second lstat sent with the open: the READ's data are
never older than the attributes the create reports, and a reader that caches pages by size
and time drops them at its next open when the file changed in between. The open is made only
when the lookup found a regular file, as on a worker: nothing else is opened ahead of the
create's rules (a FIFO would block the server). What the create's rules decide afterwards
cannot ask for another request: the compound's shape (``small_read``) leaves the create only
one outcome that reaches the server, an open for reading of the file the lookup found.

Each step's failure is kept as that step's answer and raised where the routine on a worker
would have met it, so the statuses are the same on both paths.
"""

from __future__ import annotations

import asyncio
import contextvars
import stat
from dataclasses import dataclass

import asyncssh

from rdbss.minirdrs.common.args import components
from rdbss.minirdrs.primitives import ChainItem
from rdbss.minirdrs.sftp.attrs import mode_of
from rdbss.minirdrs.sftp.chain import achain
from rdbss.minirdrs.sftp.errors import fail
from rdbss.minirdrs.sftp.remote import Open, Target, alocate
from rdbss.minirdrs.sftp.session import Share
from rdbss.model.compound import ChainKind, chain_of
from rdbss.model.create import data_access
from rdbss.wire.constants import CreateDisposition, CreateOptions, Routine
from rdbss.wire.rxcontext import Compound
from rdbss.wire.status import NtStatus, NtStatusError

#: create options the read of a small file may carry: none that changes what the open does
_PLAIN_OPTIONS = (
    CreateOptions.FILE_NON_DIRECTORY_FILE
    | CreateOptions.FILE_SEQUENTIAL_ONLY
    | CreateOptions.FILE_RANDOM_ACCESS
    | CreateOptions.FILE_WRITE_THROUGH
)


@dataclass(slots=True)
class SmallRead:
    """A compound ``small_read`` accepted: where, and the READ's range."""

    rel: str
    parts: list[str]
    offset: int
    length: int


def small_read(cx: Compound, max_read: int) -> SmallRead | None:
    """``cx`` as a small file read whole: exactly a create that opens an existing entry for
    reading only (FILE_OPEN, no write, append, delete-on-close nor directory option), a RELATED
    READ of 1 to ``max_read`` bytes and the RELATED close. None for anything else."""
    if len(cx.items) != 3 or cx.payloads:
        return None
    create, read, close = cx.items
    params = create.create
    if create.routine != Routine.MRxCreate or params is None:
        return None
    if read.routine != Routine.MRxLowIOSubmit or close.routine != Routine.MRxCloseSrvOpen:
        return None
    if chain_of([read, close], [None, None], max_read, 0) != [ChainKind.READ, ChainKind.CLOSE]:
        return None  # (it checks the RELATED items' kinds and the READ's range)
    can_read, can_write, _ = data_access(params.desired_access)
    if (
        params.disposition != CreateDisposition.FILE_OPEN
        or not can_read
        or can_write
        or params.create_options & ~_PLAIN_OPTIONS
    ):
        return None
    assert read.lowio is not None  # chain_of: a READ
    try:
        rel = "\\".join(components(create.path or ""))
    except NtStatusError:
        return None  # the create on the worker answers why
    parts = rel.split("\\") if rel else []
    return SmallRead(rel, parts, read.lowio.offset, read.lowio.length)


@dataclass(slots=True)
class Prefetched:
    """What the server answered for a ``SmallRead``, step by step (a step's exception is its
    answer; a step not made is None)."""

    rel: str
    lookup: Target | BaseException
    #: the open (a record made as the create's open makes it) and its stat
    opened: tuple[Open, asyncssh.SFTPAttrs] | BaseException | None = None
    #: the READ's answer and the close's (``achain``'s answers)
    chain: list[object] | None = None
    read: ChainItem | None = None

    def matches(self, items: list[ChainItem]) -> bool:
        """``items`` are what this prefetch sent (the READ may have been refused by its
        checks, so only the close is left)."""
        close = ChainItem(ChainKind.CLOSE)
        return items in ([self.read, close], [close])

    def answers(self, items: list[ChainItem]) -> list[object]:
        assert self.chain is not None
        return self.chain if len(items) == 2 else self.chain[1:]


#: the prefetch the routines running on the loop thread answer from (``SftpMiniRdr``'s
#: ``lookup``, ``open`` and ``run_chain``); None on every other path
prefetched: contextvars.ContextVar[Prefetched | None] = contextvars.ContextVar(
    "rdbss_sftp_prefetched", default=None
)


async def aprefetch(share: Share, want: SmallRead, deadline: float) -> Prefetched | None:
    """The requests of ``want``, each step's answer kept; None when the name is neither a
    regular file nor absent (a folder, a link: the worker's path answers it). ``deadline``:
    the loop's time by which every step must be answered (else the step answers TimeoutError)."""
    try:
        async with asyncio.timeout_at(deadline):
            await share.conn.transfers.settled()  # the ordering barrier, as ``_call``'s
            target = await alocate(share, want.parts, want.rel, expect=True)
    except Exception as exc:
        return Prefetched(want.rel, exc)
    got = Prefetched(want.rel, target)
    if target.attrs is None:
        return got  # the create answers OBJECT_NAME_NOT_FOUND from the lookup alone
    if not stat.S_ISREG(mode_of(target.attrs)):
        return None
    op = Open(share, want.rel, False, True, False, False, remote=target.remote)
    try:
        async with asyncio.timeout_at(deadline):
            try:
                op.file = await share.conn.client().open(
                    target.remote, asyncssh.FXF_READ, encoding=None, block_size=0
                )  # unsplit, as the chain's open (rdbss/minirdrs/sftp/chain.py)
            except asyncssh.SFTPError as exc:
                fail(exc, "cannot open", want.rel)
    except Exception as exc:
        got.opened = exc
        return got
    got.opened = op, target.attrs
    got.read = ChainItem(ChainKind.READ, want.offset, want.length)
    try:
        async with asyncio.timeout_at(deadline):
            got.chain = await achain(op, [got.read, ChainItem(ChainKind.CLOSE)])
    except TimeoutError as exc:
        got.chain = [exc, exc]
    return got


def refused(what: str) -> NtStatusError:
    """A routine on the loop thread that would need a request the prefetch did not make: a
    bug of ``small_read``'s rules, answered as such rather than waiting on the loop itself."""
    return NtStatusError(
        NtStatus.STATUS_INTERNAL_ERROR,
        f"{what}: the SFTP direct path needs a request it did not make (please report this)",
    )

"""A small file read whole (a create that opens an existing file for reading, a READ and the
close, maybe after the closes of other handles the core sent with it) served on the
connection's event loop alone: the server's requests are made first, in one coroutine and
without a thread hop; then the compound's routines run on the loop thread over what the server
answered (``SftpMiniRdr.start_direct_compound``).

The requests are the worker's: the closes' (pipelined with what follows), the name's lookup
(the parent's realpath with the name's lstat, ``alocate``), the open, then the READ and the
close sent at once (rdbss/minirdrs/sftp/chain.py). It leaves out the lstat a worker sends with
the open: the create answers the lookup's, made one round trip before the open, so the READ's
data are never older than the attributes the create reports, and a reader that caches pages by
size and time drops them at its next open when the file changed in between. Nothing is opened
before the lookup says the name is a regular file (the OPEN of a FIFO would block the server);
anything else goes to the worker. What the routines decide afterwards cannot ask for another
request: the compound's shape (``wanted``) leaves the create only one outcome that reaches the
server.

A folder's listing is not served here but on the worker, in its order: served here, beside
the worker's requests that came after it, it made git's sequences over the FUSE mount fail
now and then (tests/integration/test_fuse.py, git gc twice), for a reason not yet found.

Each step's failure is kept as that step's answer and raised where the routine on a worker
would have met it, so the statuses are the same on both paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import stat
from dataclasses import dataclass, field

import asyncssh

from rdbss.minirdrs.common.args import components
from rdbss.minirdrs.primitives import ChainItem
from rdbss.minirdrs.sftp.attrs import mode_of
from rdbss.minirdrs.sftp.chain import achain
from rdbss.minirdrs.sftp.errors import fail
from rdbss.minirdrs.sftp.remote import Open, Target, aclose_handle, alocate
from rdbss.minirdrs.sftp.session import Share
from rdbss.model.compound import ChainKind, chain_of
from rdbss.model.create import data_access
from rdbss.wire.constants import CreateDisposition, CreateOptions, Routine, RxFlags
from rdbss.wire.rxcontext import Compound, RxContext
from rdbss.wire.status import NtStatus, NtStatusError

_CLOSING = (Routine.MRxCleanupFobx, Routine.MRxCloseSrvOpen)
#: create options the read of a small file may carry: none that changes what the open does
_PLAIN_OPTIONS = (
    CreateOptions.FILE_NON_DIRECTORY_FILE
    | CreateOptions.FILE_SEQUENTIAL_ONLY
    | CreateOptions.FILE_RANDOM_ACCESS
    | CreateOptions.FILE_WRITE_THROUGH
)


@dataclass(slots=True)
class Wanted:
    """A compound ``wanted`` accepted: the name and the READ's range."""

    rel: str
    parts: list[str]
    offset: int = 0
    length: int = 0
    #: the SrvOpens the compound closes before its create (the core's delayed closes)
    closes: list[int] = field(default_factory=list)


def _create_index(cx: Compound) -> int | None:
    """Where the compound's create is, after the closes of other handles before it."""
    start = 0
    while start < len(cx.items) and cx.items[start].routine in _CLOSING:
        if cx.items[start].flags & RxFlags.RELATED:
            return None
        start += 1
    return start if start < len(cx.items) else None


def create_of(cx: Compound) -> RxContext | None:
    """The compound's create (``wanted``'s rules), whose share and deadline the direct path
    takes; None when it has none where ``wanted`` looks."""
    start = _create_index(cx)
    return None if start is None else cx.items[start]


def wanted(cx: Compound, max_read: int) -> Wanted | None:
    """``cx`` as a small file read whole, else None: after the closes of other handles
    (MRxCleanupFobx, MRxCloseSrvOpen: the core's delayed closes, sent with its next message),
    a create that opens an existing entry for reading only (FILE_OPEN; no write, append,
    delete-on-close nor directory option), a RELATED READ of 1 to ``max_read`` bytes and the
    RELATED close."""
    if cx.payloads:
        return None
    start = _create_index(cx)
    if start is None:
        return None
    closes = [int(ctx.srv_open or 0) for ctx in cx.items[:start]]
    if len(cx.items) - start != 3:
        return None
    create, *related = cx.items[start:]
    params = create.create
    if create.routine != Routine.MRxCreate or params is None or create.args:
        return None
    can_read, can_write, _ = data_access(params.desired_access)
    if (
        params.disposition != CreateDisposition.FILE_OPEN
        or not can_read
        or can_write
        or params.create_options & ~_PLAIN_OPTIONS
    ):
        return None
    if chain_of(related, [None, None], max_read, 0) != [ChainKind.READ, ChainKind.CLOSE]:
        return None  # (it checks the RELATED items' kinds and the READ's range)
    try:
        rel = "\\".join(components(create.path or ""))
    except NtStatusError:
        return None  # the create on the worker answers why
    parts = rel.split("\\") if rel else []
    lowio = related[0].lowio
    assert lowio is not None  # chain_of: a READ
    return Wanted(rel, parts, lowio.offset, lowio.length, closes)


@dataclass(slots=True)
class Prefetched:
    """What the server answered for a ``Wanted``, step by step (a step's exception is its
    answer; a step not made is None)."""

    rel: str
    lookup: Target | BaseException
    #: the open (a record made as the create's open makes it; the create answers the
    #: lookup's stat)
    opened: Open | BaseException | None = None
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


async def aprefetch(
    share: Share, want: Wanted, deadline: float, closing: list[Open]
) -> Prefetched | None:
    """The requests of ``want``, each step's answer kept; None when the name is neither a
    regular file nor absent (a folder, a link: the worker's path answers it). ``deadline``:
    the loop's time by which every step must be answered (else the step answers TimeoutError).
    ``closing``: the opens of ``want.closes`` whose server handle is to be closed, sent first."""
    sftp = share.conn.client()
    closes: list[asyncio.Future[None]] = []
    target: Target | Exception
    try:
        async with asyncio.timeout_at(deadline):
            await share.conn.transfers.settled()  # the ordering barrier, as ``_call``'s
            closes = [asyncio.ensure_future(_close_early(op)) for op in closing]
            target = await alocate(share, want.parts, want.rel, expect=True)
    except Exception as exc:
        target = exc
    await _closed(closing, closes, deadline)
    got = Prefetched(want.rel, target)
    if isinstance(target, Exception) or target.attrs is None:
        return got  # the create answers from the lookup alone (OBJECT_NAME_NOT_FOUND...)
    if not stat.S_ISREG(mode_of(target.attrs)):
        return None
    op = Open(share, want.rel, False, True, False, False, remote=target.remote)
    try:
        async with asyncio.timeout_at(deadline):
            try:
                op.file = await sftp.open(
                    target.remote, asyncssh.FXF_READ, encoding=None, block_size=0
                )  # unsplit, as the chain's open (rdbss/minirdrs/sftp/chain.py)
            except asyncssh.SFTPError as exc:
                fail(exc, "cannot open", want.rel)
    except Exception as exc:
        got.opened = exc
        return got
    got.opened = op
    got.read = ChainItem(ChainKind.READ, want.offset, want.length)
    try:
        async with asyncio.timeout_at(deadline):
            got.chain = await achain(op, [got.read, ChainItem(ChainKind.CLOSE)])
    except TimeoutError as exc:
        got.chain = [exc, exc]
    return got


async def _close_early(op: Open) -> None:
    """Close ``op``'s server handle ahead of its MRxCloseSrvOpen, which then answers the
    outcome kept on ``op`` (rdbss/minirdrs/sftp/remote.py ``Open.closed_early``)."""
    op.closed_early = True
    try:
        await aclose_handle(op)
    except Exception as exc:
        op.close_error = exc


async def _closed(closing: list[Open], closes: list[asyncio.Future[None]], deadline: float) -> None:
    """Wait for the early closes (a close with no answer by ``deadline`` fails so)."""
    if not closes:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout_at(deadline):
            await asyncio.wait(closes)
    for op, close in zip(closing, closes, strict=True):
        if not close.done():
            close.cancel()
            op.close_error = TimeoutError("the server did not answer the close")


def refused(what: str) -> NtStatusError:
    """A routine on the loop thread that would need a request the prefetch did not make: a
    bug of ``wanted``'s rules, answered as such rather than waiting on the loop itself."""
    return NtStatusError(
        NtStatus.STATUS_INTERNAL_ERROR,
        f"{what}: the SFTP direct path needs a request it did not make (please report this)",
    )

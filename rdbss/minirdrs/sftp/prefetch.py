"""Two compounds served on the connection's event loop alone: a small file read whole (a
create that opens an existing file for reading, a READ and the close) and a folder's listing
(a create of the folder, one or two query-directory requests and maybe the close). The
server's requests are made first, in one coroutine and without a thread hop; then the
compound's routines run on the loop thread over what the server answered
(``SftpMiniRdr.start_direct_compound``).

The requests are the worker's, in the same order: the name's lookup (the parent's realpath
with the name's lstat, ``alocate``); for a small read the open, then the READ and the close
sent at once (rdbss/minirdrs/sftp/chain.py); for a listing the folder's entries (``alist``).
A small read leaves out the lstat a worker sends with the open: the create answers the
lookup's, made one round trip before the open, so the READ's data are never older than the
attributes the create reports, and a reader that caches pages by size and time drops them at
its next open when the file changed in between. Nothing is opened before the lookup says what
the name is: a small read opens only a regular file (a FIFO would block the server), a listing
lists only a folder; anything else goes to the worker. What the routines decide afterwards
cannot ask for another request: the compound's shape (``wanted``) leaves the create only one
outcome that reaches the server.

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
from rdbss.minirdrs.sftp.remote import Open, Target, alist, alocate
from rdbss.minirdrs.sftp.session import Share
from rdbss.model.compound import ChainKind, chain_of
from rdbss.model.create import data_access
from rdbss.wire.constants import CreateDisposition, CreateOptions, Routine, RxFlags
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
class Wanted:
    """A compound ``wanted`` accepted: the name, and the READ's range (a small read) or
    ``listing`` (a folder's listing)."""

    rel: str
    parts: list[str]
    listing: bool = False
    offset: int = 0
    length: int = 0


def wanted(cx: Compound, max_read: int) -> Wanted | None:
    """``cx`` as what the direct path serves, else None. Both start with a create that opens
    an existing entry without writing (FILE_OPEN; no write, append or delete-on-close):

    - a small file read whole: the create (not for a folder), a RELATED READ of 1 to
      ``max_read`` bytes and the RELATED close;
    - a folder's listing: the create (for a folder), one or two RELATED query-directory
      requests, then the RELATED close or nothing (the handle stays open)."""
    if not 2 <= len(cx.items) <= 4 or cx.payloads:
        return None
    create, *related = cx.items
    params = create.create
    if create.routine != Routine.MRxCreate or params is None or create.args:
        return None
    can_read, can_write, _ = data_access(params.desired_access)
    options = params.create_options
    if (
        params.disposition != CreateDisposition.FILE_OPEN
        or not can_read
        or can_write
        or options & ~(_PLAIN_OPTIONS | CreateOptions.FILE_DIRECTORY_FILE)
    ):
        return None
    listing = bool(options & CreateOptions.FILE_DIRECTORY_FILE)
    if listing:
        if related[-1].routine == Routine.MRxCloseSrvOpen:
            if not related[-1].flags & RxFlags.RELATED:
                return None
            related = related[:-1]
        if not 1 <= len(related) <= 2 or any(
            ctx.routine != Routine.MRxQueryDirectory or not ctx.flags & RxFlags.RELATED or ctx.args
            for ctx in related
        ):
            return None
    elif chain_of(related, [None] * len(related), max_read, 0) != [
        ChainKind.READ,
        ChainKind.CLOSE,
    ]:
        return None  # (it checks the RELATED items' kinds and the READ's range)
    try:
        rel = "\\".join(components(create.path or ""))
    except NtStatusError:
        return None  # the create on the worker answers why
    parts = rel.split("\\") if rel else []
    if listing:
        return Wanted(rel, parts, listing=True)
    lowio = related[0].lowio
    assert lowio is not None  # chain_of: a READ
    return Wanted(rel, parts, offset=lowio.offset, length=lowio.length)


@dataclass(slots=True)
class Prefetched:
    """What the server answered for a ``Wanted``, step by step (a step's exception is its
    answer; a step not made is None)."""

    rel: str
    lookup: Target | BaseException
    #: the open (a record made as the create's open makes it) and its stat
    opened: tuple[Open, asyncssh.SFTPAttrs] | BaseException | None = None
    #: the READ's answer and the close's (``achain``'s answers)
    chain: list[object] | None = None
    read: ChainItem | None = None
    #: a folder's entries (``alist``'s answer)
    listing: list[tuple[str, asyncssh.SFTPAttrs]] | BaseException | None = None

    def matches(self, items: list[ChainItem]) -> bool:
        """``items`` are what this prefetch sent (the READ may have been refused by its
        checks, so only the close is left)."""
        close = ChainItem(ChainKind.CLOSE)
        return items in ([self.read, close], [close])

    def answers(self, items: list[ChainItem]) -> list[object]:
        assert self.chain is not None
        return self.chain if len(items) == 2 else self.chain[1:]


#: the prefetch the routines running on the loop thread answer from (``SftpMiniRdr``'s
#: ``lookup``, ``open``, ``run_chain`` and ``list_dir``); None on every other path
prefetched: contextvars.ContextVar[Prefetched | None] = contextvars.ContextVar(
    "rdbss_sftp_prefetched", default=None
)


async def aprefetch(share: Share, want: Wanted, deadline: float) -> Prefetched | None:
    """The requests of ``want``, each step's answer kept; None when the name is not what
    ``want`` serves nor absent (a folder to read, a file to list, a link: the worker's path
    answers it). ``deadline``: the loop's time by which every step must be answered (else the
    step answers TimeoutError)."""
    try:
        async with asyncio.timeout_at(deadline):
            await share.conn.transfers.settled()  # the ordering barrier, as ``_call``'s
            target = await alocate(share, want.parts, want.rel, expect=True)
    except Exception as exc:
        return Prefetched(want.rel, exc)
    got = Prefetched(want.rel, target)
    if target.attrs is None:
        return got  # the create answers OBJECT_NAME_NOT_FOUND from the lookup alone
    mode = mode_of(target.attrs)
    if not (stat.S_ISDIR(mode) if want.listing else stat.S_ISREG(mode)):
        return None
    if want.listing:
        folder = Open(share, want.rel, True, True, False, False, remote=target.remote)
        try:
            async with asyncio.timeout_at(deadline):
                got.listing = await alist(folder)
        except Exception as exc:
            got.listing = exc
        return got
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
    bug of ``wanted``'s rules, answered as such rather than waiting on the loop itself."""
    return NtStatusError(
        NtStatus.STATUS_INTERNAL_ERROR,
        f"{what}: the SFTP direct path needs a request it did not make (please report this)",
    )

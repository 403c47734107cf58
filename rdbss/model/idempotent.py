"""Which requests the core sends again, unasked, after the connection under them was lost and is
being built again; everything else fails with the network status and the caller decides.

A request is idempotent here when sending it a second time cannot change what the server holds,
nor what its answer means, even if the first one reached the server before the connection
dropped (the client cannot tell whether it did). That is: it only reads.

- MRxCreate with FILE_OPEN and without FILE_DELETE_ON_CLOSE: opening an existing file changes
  nothing. FILE_CREATE would fail the second time (OBJECT_NAME_COLLISION); FILE_OPEN_IF,
  FILE_OVERWRITE(_IF) and FILE_SUPERSEDE may have created or truncated the file the first time,
  and the second answer would say FILE_OPENED where the first created it; delete-on-close
  deletes the file when the server drops the lost first open.
- MRxQueryOpen, MRxQueryFileInfo, MRxQueryVolumeInfo, MRxQuerySdInfo, MRxIsValidDirectory:
  they read state.
- MRxQueryDirectory only when it starts an enumeration (restart scan, or the handle's first
  query): the enumeration's position dies with the connection, so a continuation sent again on
  the re-opened handle would start over and return entries twice.
- MRxLowIOSubmit READ: a read at an explicit offset.

Never retried: writes (another writer may have written the range meanwhile, and an append would
land twice), every set-information class (rename, delete, size, times), EAs and quotas (their
queries keep a position too), locks and unlocks, flush (on a re-opened handle it would report
success for writes that died with the connection), FSCTL/IOCTL, change notifications, cleanup
and close.

A request the mini-redirector never sent is another matter: when it found its connection known
lost already (the keepalive or the transport saw it go), it answers the lost connection marked
``UNSENT`` without running the routine (rdbss/minirdrs/base.py ``connection_lost``). Nothing of
it reached the server, so the core sends it again on the connection built again whatever it
does, when ``resent_if_unsent``: a create of any disposition, a write, a set-information. Not a
flush (the writes before it may have died with the connection: success on a re-opened handle
would hide that), nor locks (the locks held before died with it), nor EAs, quotas, controls or
change notifications: those answer the status as before.

A client's compound is sent again whole (``replayable``) when each of its items is one of these
reads and every create in it is closed again by a related close in the same compound (a stat):
no handle it made outlives it, so nothing of the first attempt is left behind.

The retry itself is bounded (``MAX_RETRIES``) and must fit in the request's own deadline
(``may_retry``): a retry never makes a request answer later than its caller asked. Pure code.
"""

from __future__ import annotations

from collections.abc import Sequence

from rdbss.wire.constants import (
    CreateDisposition,
    CreateOptions,
    IrpMj,
    IrpMn,
    LowIoOp,
    Routine,
    RxFlags,
)
from rdbss.wire.rxcontext import RxCompletion, RxContext
from rdbss.wire.status import NtStatus

S = NtStatus

#: Completions that mean the connection under a NetRoot is gone (not a slow or failed request):
#: the core tears the connection down and builds it again on the next request.
CONNECTION_LOST = frozenset(
    {
        S.STATUS_CONNECTION_DISCONNECTED,
        S.STATUS_CONNECTION_RESET,
        S.STATUS_CONNECTION_ABORTED,
        S.STATUS_USER_SESSION_DELETED,
        S.STATUS_NETWORK_NAME_DELETED,
        S.STATUS_NETWORK_SESSION_EXPIRED,
    }
)

#: How many times one request is sent again after a lost connection: a connection that is lost
#: again at once (a server that crashes on every connect) fails the request instead of looping.
MAX_RETRIES = 2
#: Below this much time left before its deadline, a request is not sent again: a reconnect and
#: the request itself would not fit, and the caller gets the real cause instead of a timeout.
MIN_ATTEMPT_MS = 200

#: Routines that only read, whatever their arguments (a tuple: it is asked on every request,
#: and comparing is cheaper than hashing an enum member).
READ_ONLY_ROUTINES = (
    Routine.MRxQueryFileInfo,
    Routine.MRxQueryOpen,
    Routine.MRxQueryVolumeInfo,
    Routine.MRxQuerySdInfo,
    Routine.MRxIsValidDirectory,
)
#: Low I/O operations that only read.
READ_ONLY_LOWIO = (int(LowIoOp.READ),)
_LOWIO, _OPEN, _QUERY_DIRECTORY_ROUTINE = (
    Routine.MRxLowIOSubmit,
    Routine.MRxCreate,
    Routine.MRxQueryDirectory,
)


def is_idempotent(ctx: RxContext, *, enumerating: bool = False) -> bool:
    """Whether ``ctx`` (addressed to a mini-redirector: its routine set) may be sent again after
    its connection was lost. ``enumerating``: its handle has already queried its directory."""
    routine = ctx.routine
    if routine == _LOWIO:
        return ctx.lowio is not None and ctx.lowio.operation in READ_ONLY_LOWIO
    if routine == _OPEN:
        return _opens_only(ctx)
    if routine == _QUERY_DIRECTORY_ROUTINE:
        query = ctx.query_directory
        return not enumerating or (query is not None and query.restart_scan)
    return routine in READ_ONLY_ROUTINES


#: Client requests (major functions) that only read, on a handle or on the volume.
READ_ONLY_MAJORS = frozenset(
    {
        int(IrpMj.READ),
        int(IrpMj.QUERY_INFORMATION),
        int(IrpMj.QUERY_VOLUME_INFORMATION),
        int(IrpMj.QUERY_SECURITY),
    }
)
# plain ints: enum arithmetic and hashing cost a microsecond per item of every compound
_CREATE, _CLOSE, _DIRECTORY = int(IrpMj.CREATE), int(IrpMj.CLOSE), int(IrpMj.DIRECTORY_CONTROL)
_QUERY_DIRECTORY = int(IrpMn.QUERY_DIRECTORY)
_RELATED = int(RxFlags.RELATED)
_FILE_OPEN = int(CreateDisposition.FILE_OPEN)
_DELETE_ON_CLOSE = int(CreateOptions.FILE_DELETE_ON_CLOSE)


def _opens_only(ctx: RxContext) -> bool:
    create = ctx.create
    return (
        create is not None
        and create.disposition == _FILE_OPEN
        and not create.create_options & _DELETE_ON_CLOSE
    )


def replayable(items: Sequence[RxContext]) -> bool:
    """Whether a client's compound (its items as the client sent them) may be sent again whole
    after a lost connection: every item reads, every create only opens and is closed by a
    related close before the next create, and no close closes a handle from before the
    compound; a directory query only on the compound's own (new) handle."""
    open_create = False  # a create whose related close has not come yet
    for item in items:
        major = item.major
        if major in READ_ONLY_MAJORS:
            continue
        if major == _CREATE:
            if open_create or not _opens_only(item):
                return False
            open_create = True
        elif major == _CLOSE:
            if not (item.flags & _RELATED and open_create):
                return False
            open_create = False
        elif major != _DIRECTORY or not item.flags & _RELATED or item.minor != _QUERY_DIRECTORY:
            return False
    return not open_create


#: The key a mini-redirector sets (True) in the result of a lost connection's answer when the
#: request never left it: it found the connection lost before sending anything.
UNSENT = "unsent"
_WRITE = int(LowIoOp.WRITE)
_SET_FILE_INFO = Routine.MRxSetFileInfo


def unsent(done: RxCompletion) -> bool:
    """Whether ``done`` is a lost connection's answer to a request that never reached the
    server (``UNSENT``)."""
    result = done.result
    return isinstance(result, dict) and result.get(UNSENT) is True


def resent_if_unsent(ctx: RxContext) -> bool:
    """Whether ``ctx`` (addressed to a mini-redirector) is sent again after a lost connection
    when its answer says it never reached the server (``unsent``): a create, a write, a
    set-information."""
    routine = ctx.routine
    if routine == _LOWIO:
        return ctx.lowio is not None and ctx.lowio.operation == _WRITE
    return routine in (_OPEN, _SET_FILE_INFO)


#: Client compound items (major functions) a compound may hold to be sent again whole when none
#: of them reached the server: the creates, reads, writes, queries, set-information, listings
#: and closes ``resent_if_unsent`` and ``is_idempotent`` cover between them.
_UNSENT_MAJORS = frozenset(
    {
        _CREATE,
        _CLOSE,
        _DIRECTORY,
        int(IrpMj.READ),
        int(IrpMj.WRITE),
        int(IrpMj.QUERY_INFORMATION),
        int(IrpMj.SET_INFORMATION),
        int(IrpMj.QUERY_VOLUME_INFORMATION),
    }
)


def resent_whole_if_unsent(items: Sequence[RxContext]) -> bool:
    """Whether a client's compound (its items as the client sent them) is sent again whole when
    every item's answer says it never reached the server (``unsent``): creates, reads, writes,
    queries, set-information, directory queries and closes only, none through shared memory
    (what the core does with a slot on the first attempt is not undone). A flush, a lock or a
    control keeps the compound's answer as it is."""
    return all(
        item.major in _UNSENT_MAJORS
        and not item.args
        and (item.major != _DIRECTORY or item.minor == _QUERY_DIRECTORY)
        for item in items
    )


def may_retry(status: int, retries: int, left_ms: float) -> bool:
    """Whether a request that was sent ``retries`` times again already, has ``left_ms`` before
    its deadline and just failed with ``status`` is sent once more (it must be idempotent too)."""
    return status in CONNECTION_LOST and retries < MAX_RETRIES and left_ms >= MIN_ATTEMPT_MS

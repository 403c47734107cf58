"""The mini-redirector dispatch interface (MINIRDR_DISPATCH).

A mini-redirector subclasses ``MiniRdr`` and overrides the routines it implements. The process
host registers exactly the overridden ones with the core (RxRegisterMinirdr); a routine left at
the base is never called: the core answers STATUS_NOT_IMPLEMENTED without sending it. Low I/O is
one entry, ``low_io_submit``, keyed by ``ctx.lowio.operation``; ``lowio_ops`` says which
operations are implemented.

Routines run in the mini-redirector's own process. They return a ``Result`` or raise
``NtStatusError``; any other exception becomes STATUS_INTERNAL_ERROR for that one request.
The requests of one connection (SrvCall) run in the order they were sent, except those that
answer STATUS_PENDING: the core relies on it (deferred writes are sent just before the request
that must see them). Byte-range locks belong to the handle (``ctx.fobx``), not to the SrvOpen:
the core may give one SrvOpen to several handles (open collapsing).

Result conventions (structured results travel as msgpack maps):
- times are POSIX nanoseconds (``creation_time``, ``last_access_time``, ``last_write_time``,
  ``change_time``); sizes in bytes; ``attributes`` are FILE_ATTRIBUTE_* bits.
- MRxCreate answers ``information`` = CreateInformation (FILE_OPENED, FILE_CREATED...),
  ``result`` = {"srv_open": int, "directory": bool, **file info}.
- MRxQueryOpen (rdbss's IRP_MJ_QUERY_OPEN) gets a create's context (path, ``create`` with
  FILE_READ_ATTRIBUTES, FILE_OPEN) and answers what MRxCreate would, statuses included, but
  opens nothing: ``information`` = FILE_OPENED, ``result`` = {"directory": bool, **file info}.
- MRxQueryFileInfo answers the file info map (``name``, ``size``, ``allocation_size``,
  ``attributes``, the four times, ``directory``, ``delete_pending``, ``nlink``, ``file_id``...;
  ``rdbss.minirdrs.common.fileinfo.file_info`` builds it from a stat result).
- Every backend keeps its SrvOpens in an ``OpenTable`` of ``OpenBase`` records: the id it
  hands out in MRxCreate's ``srv_open``, and what delete-pending and rename rules need.
- MRxQueryDirectory answers {"entries": [file info + "name"...]}; STATUS_NO_MORE_FILES at the end,
  STATUS_NO_SUCH_FILE when the first query matches nothing.
- MRxQueryVolumeInfo answers the volume map (``total_bytes``, ``free_bytes``, ``avail_bytes``,
  ``bytes_per_sector``, ``sectors_per_allocation_unit``, ``fs_name``, ``label``, ``serial``,
  ``max_name_length``, ``fs_attributes``, ``device_characteristics``).
- MRxQuerySdInfo takes the SecurityInformation bits as ``ctx.info.info_class`` and answers the
  security structure of ``rdbss.minirdrs.common.security`` (``owner``, ``group``, ``dacl``...);
  MRxSetSdInfo takes the same bits and the fields to set as ``ctx.info.args``.
- MRxQueryQuotaInfo answers {"entries": [quota entry...]} (``rdbss.minirdrs.common.quota``),
  optionally for ``ctx.info.args["sids"]``; MRxSetQuotaInfo takes ``ctx.info.args["entries"]``.
- LOWIO_OP_NOTIFY_CHANGE_DIRECTORY answers {"changes": [{"action", "name"}...]} (or
  STATUS_NOTIFY_ENUM_DIR), usually after STATUS_PENDING;
  ``rdbss.minirdrs.common.notify.PollingWatches`` does it for a mini-redirector
  that can only list folders.
- MRxLowIOSubmit is called as ``low_io_submit(ctx, payload)``: ``payload`` is the WRITE data
  (a memoryview of the received frame) and None otherwise. READ answers the bytes as ``payload``
  (``information`` = byte count); WRITE answers ``information`` = bytes written.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from rdbss.model.buffering import BUFFERING_STATE_MASK
from rdbss.wire.constants import FileInformationClass, FsInformationClass, LowIoOp, Routine
from rdbss.wire.rxcontext import Compound, LowIoParameters, RxContext
from rdbss.wire.status import NtStatus, NtStatusError

#: The FileInformationClass values MRxQueryFileInfo answers (one map holds them all).
FILE_INFO_CLASSES: frozenset[int] = frozenset(
    {
        FileInformationClass.FileBasicInformation,
        FileInformationClass.FileStandardInformation,
        FileInformationClass.FileNetworkOpenInformation,
        FileInformationClass.FileAllInformation,
        FileInformationClass.FileInternalInformation,
        FileInformationClass.FileNameInformation,
        FileInformationClass.FileAttributeTagInformation,
        FileInformationClass.FilePositionInformation,
    }
)
#: The FsInformationClass values MRxQueryVolumeInfo answers.
VOLUME_INFO_CLASSES: frozenset[int] = frozenset(
    {
        FsInformationClass.FileFsSizeInformation,
        FsInformationClass.FileFsFullSizeInformation,
        FsInformationClass.FileFsVolumeInformation,
        FsInformationClass.FileFsAttributeInformation,
        FsInformationClass.FileFsDeviceInformation,
    }
)


@dataclass(slots=True)
class Result:
    status: int = NtStatus.STATUS_SUCCESS
    information: int = 0
    result: Any = None
    payload: bytes | bytearray | memoryview | None = None
    message: str = ""


#: Routine name -> method name: the routines RDBSS calls (see docs/routines.md, The routines).
ROUTINE_METHODS: dict[Routine, str] = {
    Routine.MRxStart: "start",
    Routine.MRxStop: "stop",
    Routine.MRxCreateSrvCall: "create_srv_call",
    Routine.MRxSrvCallWinnerNotify: "srv_call_winner_notify",
    Routine.MRxCreateVNetRoot: "create_v_net_root",
    Routine.MRxFinalizeSrvCall: "finalize_srv_call",
    Routine.MRxFinalizeNetRoot: "finalize_net_root",
    Routine.MRxFinalizeVNetRoot: "finalize_v_net_root",
    Routine.MRxExtractNetRootName: "extract_net_root_name",
    Routine.MRxPreparseName: "preparse_name",
    Routine.MRxGetConnectionId: "get_connection_id",
    Routine.MRxCreate: "create",
    Routine.MRxQueryOpen: "query_open",
    Routine.MRxCollapseOpen: "collapse_open",
    Routine.MRxShouldTryToCollapseThisOpen: "should_try_to_collapse_this_open",
    Routine.MRxFlush: "flush",
    Routine.MRxZeroExtend: "zero_extend",
    Routine.MRxTruncate: "truncate",
    Routine.MRxCleanupFobx: "cleanup_fobx",
    Routine.MRxCloseSrvOpen: "close_srv_open",
    Routine.MRxDeallocateForFcb: "deallocate_for_fcb",
    Routine.MRxDeallocateForFobx: "deallocate_for_fobx",
    Routine.MRxIsLockRealizable: "is_lock_realizable",
    Routine.MRxForceClosed: "force_closed",
    Routine.MRxAreFilesAliased: "are_files_aliased",
    Routine.MRxQueryDirectory: "query_directory",
    Routine.MRxQueryFileInfo: "query_file_info",
    Routine.MRxSetFileInfo: "set_file_info",
    Routine.MRxSetFileInfoAtCleanup: "set_file_info_at_cleanup",
    Routine.MRxQueryEaInfo: "query_ea_info",
    Routine.MRxSetEaInfo: "set_ea_info",
    Routine.MRxQuerySdInfo: "query_sd_info",
    Routine.MRxSetSdInfo: "set_sd_info",
    Routine.MRxQueryQuotaInfo: "query_quota_info",
    Routine.MRxSetQuotaInfo: "set_quota_info",
    Routine.MRxQueryVolumeInfo: "query_volume_info",
    Routine.MRxSetVolumeInfo: "set_volume_info",
    Routine.MRxIsValidDirectory: "is_valid_directory",
    Routine.MRxComputeNewBufferingState: "compute_new_buffering_state",
    Routine.MRxLowIOSubmit: "low_io_submit",
    Routine.MRxExtendForCache: "extend_for_cache",
    Routine.MRxExtendForNonCache: "extend_for_non_cache",
    Routine.MRxCompleteBufferingStateChangeRequest: "complete_buffering_state_change_request",
    Routine.MRxDevFcbXXXControlFile: "dev_fcb_control",
}

#: Connection routines are asynchronous by contract: the host runs them on a connection worker so
#: a slow set-up never blocks the process's other work.
CONNECTION_ROUTINES: frozenset[Routine] = frozenset(
    {
        Routine.MRxCreateSrvCall,
        Routine.MRxSrvCallWinnerNotify,
        Routine.MRxCreateVNetRoot,
        Routine.MRxFinalizeSrvCall,
        Routine.MRxFinalizeNetRoot,
        Routine.MRxFinalizeVNetRoot,
    }
)


T = TypeVar("T")
ShareT = TypeVar("ShareT")

#: Every low I/O operation: what a backend with byte-range locks and change notify offers.
ALL_LOWIO_OPS: frozenset[LowIoOp] = frozenset(
    {
        LowIoOp.READ,
        LowIoOp.WRITE,
        LowIoOp.SHAREDLOCK,
        LowIoOp.EXCLUSIVELOCK,
        LowIoOp.UNLOCK,
        LowIoOp.UNLOCK_MULTIPLE,
        LowIoOp.NOTIFY_CHANGE_DIRECTORY,
    }
)

#: The largest single READ a mini-redirector answers (STATUS_INVALID_PARAMETER above it).
MAX_READ_BYTES = 64 << 20


@dataclass(slots=True)
class OpenBase(Generic[ShareT]):
    """What every backend's SrvOpen record holds: the share and share-relative path it opened
    (backslashes, ``""`` for the root), its kind, the data access it was granted and whether
    its file is to be deleted when it closes. A backend subclasses it for its handle (a
    descriptor, a remote handle, a spool)."""

    share: ShareT
    path: str
    is_dir: bool
    can_read: bool = False
    can_write: bool = False
    #: FILE_APPEND_DATA without FILE_WRITE_DATA: writes go to the end of the file
    append_only: bool = False
    delete_pending: bool = False
    #: its id in the OpenTable that holds it (set by ``OpenTable.add``; 0 before)
    srv_open: int = 0


OpenT = TypeVar("OpenT", bound=OpenBase[Any])


class OpenTable(Generic[OpenT]):
    """The SrvOpens of one mini-redirector by the id it hands out (from 1). Thread-safe: its
    own lock guards the table (the host may run routines and timers on several threads)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._opens: dict[int, OpenT] = {}
        #: the delete-pending ones among them: every create asks about its name, so the
        #: question costs what few opens are delete-pending, not every open of the process
        self._pending: dict[int, OpenT] = {}
        self._ids = itertools.count(1)

    def add(self, op: OpenT) -> int:
        """Keep ``op``; its new SrvOpen id (also in ``op.srv_open``)."""
        with self.lock:
            srv_open = next(self._ids)
            op.srv_open = srv_open
            self._opens[srv_open] = op
            if op.delete_pending:
                self._pending[srv_open] = op
        return srv_open

    def find(self, srv_open: int | None) -> OpenT | None:
        """The open with id ``srv_open``, or None."""
        if srv_open is None:
            return None
        with self.lock:
            return self._opens.get(srv_open)

    def get(self, srv_open: int | None) -> OpenT:
        """The open with id ``srv_open``; STATUS_INVALID_HANDLE when there is none."""
        op = self.find(srv_open)
        if op is None:
            raise NtStatusError(NtStatus.STATUS_INVALID_HANDLE, f"unknown srv_open {srv_open!r}")
        return op

    def pop(self, srv_open: int | None) -> OpenT:
        """Forget the open with id ``srv_open`` and answer it; STATUS_INVALID_HANDLE when
        there is none."""
        with self.lock:
            op = self._opens.pop(srv_open, None) if srv_open is not None else None
            if op is not None:
                self._pending.pop(op.srv_open, None)
        if op is None:
            raise NtStatusError(NtStatus.STATUS_INVALID_HANDLE, f"unknown srv_open {srv_open!r}")
        return op

    def mark_delete_pending(self, op: OpenT, pending: bool = True) -> None:
        """Set (or clear) the delete-pending state of ``op``: its file goes when it closes,
        and until then no new open of that name succeeds (``delete_pending_at``)."""
        with self.lock:
            op.delete_pending = pending
            if pending and self._opens.get(op.srv_open) is op:
                self._pending[op.srv_open] = op
            else:
                self._pending.pop(op.srv_open, None)

    def delete_pending_at(self, share: object, path: str) -> bool:
        """Some open of ``path`` in ``share`` is delete-pending."""
        with self.lock:
            return any(
                op.delete_pending and op.share is share and op.path == path
                for op in self._pending.values()
            )

    def delete_pending_paths(self, share: object) -> frozenset[str]:
        """The paths in ``share`` that some delete-pending open names (``delete_pending_at``
        for many names at once: a listing's entries)."""
        with self.lock:
            return frozenset(
                op.path for op in self._pending.values() if op.delete_pending and op.share is share
            )

    def renamed(self, share: object, old: str, new: str) -> None:
        """``old`` in ``share`` is now called ``new``: point every open at or under it there."""
        prefix = old + "\\"
        with self.lock:
            for op in self._opens.values():
                if op.share is not share:
                    continue
                if op.path == old:
                    op.path = new
                elif op.path.startswith(prefix):
                    op.path = new + "\\" + op.path[len(prefix) :]

    def values(self) -> list[OpenT]:
        """The opens now (a copy)."""
        with self.lock:
            return list(self._opens.values())

    def clear(self) -> list[OpenT]:
        """Forget every open; the opens that were there."""
        with self.lock:
            opens = list(self._opens.values())
            self._opens.clear()
            self._pending.clear()
        return opens

    def __len__(self) -> int:
        with self.lock:
            return len(self._opens)


#: FileFsVolume/Size/Attribute/DeviceInformation values shared by the POSIX-backed
#: mini-redirectors (local, SFTP, WebDAV)
BYTES_PER_SECTOR = 512
FILE_CASE_SENSITIVE_SEARCH = 0x1
FILE_CASE_PRESERVED_NAMES = 0x2
FILE_UNICODE_ON_DISK = 0x4
FILE_REMOTE_DEVICE = 0x10


def lowio_of(ctx: RxContext) -> LowIoParameters:
    """A low I/O request's parameters; STATUS_INVALID_PARAMETER when it carries none."""
    if ctx.lowio is None:
        raise NtStatusError(NtStatus.STATUS_INVALID_PARAMETER, "low I/O request without parameters")
    return ctx.lowio


def volume_info_class(ctx: RxContext) -> int:
    """MRxQueryVolumeInfo's information class; STATUS_INVALID_PARAMETER for one not offered."""
    info_class = ctx.info.info_class if ctx.info is not None else None
    if info_class not in VOLUME_INFO_CLASSES:
        raise NtStatusError(NtStatus.STATUS_INVALID_PARAMETER, f"volume info class {info_class!r}")
    return int(info_class)


def posix_volume(
    *,
    total: int,
    free: int,
    avail: int,
    block: int,
    fs_name: str,
    label: str,
    serial: int,
    max_name_length: int,
) -> Result:
    """The volume answer of a POSIX-like file system (case-sensitive, case-preserving, Unicode
    names, a remote device); ``block`` 0 when the backend does not say (8 sectors then)."""
    return Result(
        result={
            "total_bytes": total,
            "free_bytes": free,
            "avail_bytes": avail,
            "bytes_per_sector": BYTES_PER_SECTOR,
            "sectors_per_allocation_unit": max(1, block // BYTES_PER_SECTOR) if block else 8,
            "fs_name": fs_name,
            "label": label,
            "serial": serial,
            "max_name_length": max_name_length,
            "fs_attributes": FILE_CASE_SENSITIVE_SEARCH
            | FILE_CASE_PRESERVED_NAMES
            | FILE_UNICODE_ON_DISK,
            "device_characteristics": FILE_REMOTE_DEVICE,
        }
    )


def info_setter(ctx: RxContext, setters: Mapping[int, T]) -> tuple[int, T, Mapping[str, Any]]:
    """MRxSetFileInfo's common first step: the information class, the mini-redirector's setter
    for it and the request's arguments; STATUS_INVALID_PARAMETER without a class or for a class
    the mini-redirector does not set."""
    if ctx.info is None:
        raise NtStatusError(
            NtStatus.STATUS_INVALID_PARAMETER, "set info without an information class"
        )
    setter = setters.get(ctx.info.info_class)
    if setter is None:
        raise NtStatusError(
            NtStatus.STATUS_INVALID_PARAMETER, f"file info class {ctx.info.info_class!r}"
        )
    args = ctx.info.args if isinstance(ctx.info.args, Mapping) else {}
    return ctx.info.info_class, setter, args


#: MRxSetFileInfo: each information class and the method a mini-redirector implements it with,
#: called as ``method(open, args)``
SETTER_METHODS: Mapping[int, str] = {
    FileInformationClass.FileBasicInformation: "_set_basic",
    FileInformationClass.FileEndOfFileInformation: "_set_end_of_file",
    FileInformationClass.FileAllocationInformation: "_set_allocation",
    FileInformationClass.FileRenameInformation: "_set_rename",
    FileInformationClass.FileDispositionInformation: "_set_disposition",
}


def set_file_info_with(minirdr: MiniRdr, op: object, ctx: RxContext) -> Result:
    """MRxSetFileInfo through the mini-redirector's ``_set_basic``, ``_set_end_of_file``...
    methods (SETTER_METHODS) on ``op``, its open."""
    _, method, args = info_setter(ctx, SETTER_METHODS)
    getattr(minirdr, method)(op, args)
    return Result()


def _not_implemented(self: MiniRdr, ctx: RxContext, *rest: Any) -> Result:
    raise NtStatusError(NtStatus.STATUS_NOT_IMPLEMENTED, "routine not implemented")


class MiniRdr:
    """Base class of every mini-redirector. See the module docstring for the conventions."""

    #: Short protocol name used in config files ("local", "smb", ...).
    kind: ClassVar[str] = ""
    #: RDBSS_MANAGE_* flags (see docs/routines.md, The routines); informational here.
    mrx_flags: ClassVar[int] = 0
    #: Which LowIoContext.Operation values ``low_io_submit`` handles.
    lowio_ops: ClassVar[frozenset[LowIoOp]] = frozenset()
    #: The FCB_STATE buffering bits this kind can honour at all; the ``caching`` option grants
    #: a part of them (model/buffering.py). Leaving out COLLAPSING_ENABLED is the static form
    #: of MRxShouldTryToCollapseThisOpen saying "never collapse" (no round trip per create).
    buffering_mask: ClassVar[int] = int(BUFFERING_STATE_MASK)
    #: True when routines may block on a network: the host then runs each connection's routines on
    #: that connection's own worker. False (local disk) runs them on the socket thread.
    blocking: ClassVar[bool] = True

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        self.name = name
        self.config = dict(config)
        self._completion_sink: Callable[[RxContext, Result], None] | None = None

    # Low I/O is asynchronous (see docs/routines.md, Low I/O): a routine may answer
    # Result(status=STATUS_PENDING) and finish later, from any thread, with complete_later
    # (RxLowIoCompletion).
    def attach_completion(self, sink: Callable[[RxContext, Result], None]) -> None:
        """Set by the host: where later completions go."""
        self._completion_sink = sink

    def complete_later(self, ctx: RxContext, result: Result) -> None:
        """Finish a request this mini-redirector answered STATUS_PENDING. Thread-safe."""
        if self._completion_sink is None:
            raise RuntimeError("no host attached: cannot complete a pending request")
        self._completion_sink(ctx, result)

    # The server names this instance claims; "*" asks the connection manager to try it for any.
    def servers(self) -> list[str]:
        return ["*"]

    @classmethod
    def implemented_routines(cls) -> list[Routine]:
        found = []
        for routine, method in ROUTINE_METHODS.items():
            if getattr(cls, method) is not getattr(MiniRdr, method):
                found.append(routine)
        return found

    def registration_routines(self) -> list[Routine]:
        """What the host registers (RxRegisterMinirdr): the implemented routines. A wrapper
        (the ``faulty`` mini-redirector) reports its inner one's."""
        return self.implemented_routines()

    def registration_lowio_ops(self) -> frozenset[LowIoOp]:
        return self.lowio_ops

    def registration_buffering_mask(self) -> int:
        return self.buffering_mask

    def close(self) -> None:
        """Release everything (process shutdown). Not a routine."""

    # Cancellation (see docs/routines.md, Low I/O): the host calls this for a request the
    # mini-redirector answered STATUS_PENDING when the core cancels it (the client asked, its
    # deadline passed, the client is gone). Requests still queued are dropped by the host
    # without reaching the routine.
    def cancel(self, request_id: int, status: int = NtStatus.STATUS_CANCELLED) -> bool:
        """The cancel routine (MRxCancelRoutine, set by RxSetMinirdrCancelRoutine): if request
        ``request_id`` is pending here, complete it now with ``status`` through
        ``complete_later`` and free what it held (a watch, a lock waiter), and answer True.
        False when no such request is pending (it finished, or it runs synchronously: that
        cannot be interrupted). Called on the host's I/O thread: must not block. Not a routine."""
        return False

    def pending_requests(self) -> int:
        """How many requests answered STATUS_PENDING this mini-redirector still holds."""
        return 0

    def connection_lost(self, ctx: RxContext) -> bool:
        """Whether the connection ``ctx`` goes through is known lost already (its keepalive or
        its transport saw it go), so that nothing of ``ctx`` could reach the server. The host
        then answers STATUS_CONNECTION_DISCONNECTED marked unsent without running the routine,
        and the core may send it again on the connection built again whatever it does
        (rdbss/model/idempotent.py ``UNSENT``). Asked before every routine but the connection
        routines, cleanups and closes: must be cheap and must not block. Not a routine."""
        return False

    def start_direct(
        self, ctx: RxContext, done: Callable[[Result | Exception | None], None]
    ) -> bool:
        """The direct path of a blocking mini-redirector whose routines wait on its own event
        loop: start ``ctx`` on that loop, without the connection's worker (two thread hops
        fewer), and call ``done`` there with its Result, the exception it raised, or None to
        have the worker run it after all. False: not taken (the worker runs it). The host
        calls it on its I/O thread, only while the connection's worker holds no request: it
        must not block. Not a routine."""
        return False

    def start_direct_compound(
        self, cx: Compound, here: Callable[[], None], worker: Callable[[], None]
    ) -> bool:
        """The direct path for a whole compound (``start_direct``'s rules): start what it
        needs of the server on the mini-redirector's loop, then call ``here()`` on that loop
        (it runs the compound's routines there and answers them, so they must not block:
        they answer from what was fetched) or ``worker()`` to have the connection's worker
        run it after all. False: not taken (the worker runs it). Not a routine."""
        return False

    def prepare_read_into(
        self, ctx: RxContext, length: int
    ) -> Callable[[memoryview], Result] | None:
        """A large shared-memory READ, in two halves: checks now (on the host's I/O thread, in
        order with the requests around it) and a copy that may run on another thread at the
        same time as other reads (``copy(target)``, answering like ``read_into``; it must hold
        what it reads from, e.g. a duplicated descriptor, as a close may come meanwhile).
        None (the default): not supported; the READ goes through ``read_into``. Not a
        routine."""
        return None

    def read_into(self, ctx: RxContext, target: memoryview) -> Result | None:
        """The shared-memory data path (rdbss.shm): do the READ of ``ctx`` straight into
        ``target`` (len(target) == the read's length) and answer ``information`` = bytes read,
        no payload. None (the default): not supported here; the host then runs the READ as usual
        and copies its payload into the target. Not a routine."""
        return None

    def create_with_related(
        self,
        create: RxContext,
        related: list[RxContext],
        payloads: list[memoryview | None],
    ) -> list[Result | Exception] | None:
        """A compound's create and the RELATED items after it (``payloads``: each one's
        payload), taken at once (e.g. sent to the server as one exchange). Answers one outcome
        per item, create first, each what the routine would have answered alone (a Result, or
        the exception it would have raised); related items whose create failed are answered
        by the host with the create's status whatever they hold here. A related item finds
        the create's SrvOpen in ``result["srv_open"]`` as usual. None (the default): not taken;
        the host runs the items one by one. Not a routine."""
        return None

    # --- every routine, not implemented at the base ------------------------------------------
    start = _not_implemented
    stop = _not_implemented
    create_srv_call = _not_implemented
    srv_call_winner_notify = _not_implemented
    create_v_net_root = _not_implemented
    finalize_srv_call = _not_implemented
    finalize_net_root = _not_implemented
    finalize_v_net_root = _not_implemented
    extract_net_root_name = _not_implemented
    preparse_name = _not_implemented
    get_connection_id = _not_implemented
    create = _not_implemented
    query_open = _not_implemented
    collapse_open = _not_implemented
    should_try_to_collapse_this_open = _not_implemented
    flush = _not_implemented
    zero_extend = _not_implemented
    truncate = _not_implemented
    cleanup_fobx = _not_implemented
    close_srv_open = _not_implemented
    deallocate_for_fcb = _not_implemented
    deallocate_for_fobx = _not_implemented
    is_lock_realizable = _not_implemented
    force_closed = _not_implemented
    are_files_aliased = _not_implemented
    query_directory = _not_implemented
    query_file_info = _not_implemented
    set_file_info = _not_implemented
    set_file_info_at_cleanup = _not_implemented
    query_ea_info = _not_implemented
    set_ea_info = _not_implemented
    query_sd_info = _not_implemented
    set_sd_info = _not_implemented
    query_quota_info = _not_implemented
    set_quota_info = _not_implemented
    query_volume_info = _not_implemented
    set_volume_info = _not_implemented
    is_valid_directory = _not_implemented
    compute_new_buffering_state = _not_implemented
    low_io_submit = _not_implemented
    extend_for_cache = _not_implemented
    extend_for_non_cache = _not_implemented
    complete_buffering_state_change_request = _not_implemented
    dev_fcb_control = _not_implemented


class QuietConnections(MiniRdr):
    """The connection routines with nothing to do: a mini-redirector whose SrvCall needs no
    notice of winning and whose NetRoot, VNetRoot and SrvCall hold nothing to release when
    they go (see docs/routines.md, Connections). Being defined here (not at ``MiniRdr``),
    they are registered like any routine a subclass implements; a subclass overrides any of
    them that does have work."""

    def srv_call_winner_notify(self, ctx: RxContext) -> Result:
        return Result()

    def finalize_v_net_root(self, ctx: RxContext) -> Result:
        return Result()

    def finalize_net_root(self, ctx: RxContext) -> Result:
        return Result()

    def finalize_srv_call(self, ctx: RxContext) -> Result:
        return Result()

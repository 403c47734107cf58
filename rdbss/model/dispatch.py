"""Which mini-redirector routine serves a client request (what RxFsdDispatch decides). Pure code."""

from __future__ import annotations

from rdbss.model.structs import Fcb
from rdbss.wire.constants import (
    Access,
    CreateDisposition,
    CreateOptions,
    IrpMj,
    IrpMn,
    LowIoOp,
    Routine,
)
from rdbss.wire.rxcontext import CreateParameters, RxContext
from rdbss.wire.status import NtStatus, NtStatusError

_BY_MAJOR: dict[int, Routine] = {
    IrpMj.CREATE: Routine.MRxCreate,
    IrpMj.QUERY_INFORMATION: Routine.MRxQueryFileInfo,
    IrpMj.SET_INFORMATION: Routine.MRxSetFileInfo,
    IrpMj.QUERY_EA: Routine.MRxQueryEaInfo,
    IrpMj.SET_EA: Routine.MRxSetEaInfo,
    IrpMj.FLUSH_BUFFERS: Routine.MRxFlush,
    IrpMj.QUERY_VOLUME_INFORMATION: Routine.MRxQueryVolumeInfo,
    IrpMj.SET_VOLUME_INFORMATION: Routine.MRxSetVolumeInfo,
    IrpMj.QUERY_SECURITY: Routine.MRxQuerySdInfo,
    IrpMj.SET_SECURITY: Routine.MRxSetSdInfo,
    IrpMj.QUERY_QUOTA: Routine.MRxQueryQuotaInfo,
    IrpMj.SET_QUOTA: Routine.MRxSetQuotaInfo,
    IrpMj.CLEANUP: Routine.MRxCleanupFobx,
    IrpMj.CLOSE: Routine.MRxCloseSrvOpen,
}

#: What an open may ask for and still be a query open (MRxQueryOpen): attributes, nothing else.
QUERY_OPEN_ACCESS = int(Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE)
_QUERY_OPEN_OPTIONS = int(
    CreateOptions.FILE_DIRECTORY_FILE
    | CreateOptions.FILE_NON_DIRECTORY_FILE
    | CreateOptions.FILE_SEQUENTIAL_ONLY
    | CreateOptions.FILE_RANDOM_ACCESS
)


def is_query_open(params: CreateParameters | None) -> bool:
    """Whether a create followed by its close only asks what the file is (IRP_MJ_QUERY_OPEN):
    FILE_OPEN for FILE_READ_ATTRIBUTES, with no option that does something to the file."""
    return (
        params is not None
        and params.disposition == CreateDisposition.FILE_OPEN
        and params.desired_access & ~QUERY_OPEN_ACCESS == 0
        and params.desired_access != 0
        and params.create_options & ~_QUERY_OPEN_OPTIONS == 0
    )


def answers_for_open_file(fcb: Fcb) -> bool:
    """Whether a query open of a file open here (its Fcb) may go to the mini-redirector: the
    server shows what a create would answer when no write is deferred, in flight to it or
    failed, and no delete is pending (a create answers STATUS_DELETE_PENDING). Share access
    is no reason: an attribute-only open is never checked against the file's other opens."""
    return (
        not fcb.delete_pending and not fcb.dirty and fcb.flushing == 0 and fcb.write_error is None
    )


_LOCK_OPS: dict[int, LowIoOp] = {
    IrpMn.UNLOCK_SINGLE: LowIoOp.UNLOCK,
    IrpMn.UNLOCK_ALL: LowIoOp.UNLOCK_MULTIPLE,
}


def routine_for(ctx: RxContext) -> tuple[Routine, LowIoOp | None]:
    """The routine (and low I/O operation) that serves a file-object request."""
    major = ctx.major
    if major == IrpMj.READ:
        return Routine.MRxLowIOSubmit, LowIoOp.READ
    if major == IrpMj.WRITE:
        return Routine.MRxLowIOSubmit, LowIoOp.WRITE
    if major == IrpMj.LOCK_CONTROL:
        if ctx.minor == IrpMn.LOCK:
            exclusive = ctx.lowio is not None and ctx.lowio.flags & 0x2
            return Routine.MRxLowIOSubmit, (
                LowIoOp.EXCLUSIVELOCK if exclusive else LowIoOp.SHAREDLOCK
            )
        op = _LOCK_OPS.get(ctx.minor)
        if op is None:
            raise NtStatusError(NtStatus.STATUS_INVALID_PARAMETER, "unknown lock minor function")
        return Routine.MRxLowIOSubmit, op
    if major == IrpMj.DIRECTORY_CONTROL:
        if ctx.minor == IrpMn.NOTIFY_CHANGE_DIRECTORY:
            return Routine.MRxLowIOSubmit, LowIoOp.NOTIFY_CHANGE_DIRECTORY
        return Routine.MRxQueryDirectory, None
    if major in (IrpMj.FILE_SYSTEM_CONTROL, IrpMj.DEVICE_CONTROL):
        op = LowIoOp.FSCTL if major == IrpMj.FILE_SYSTEM_CONTROL else LowIoOp.IOCTL
        if ctx.fobx is None:
            return Routine.MRxDevFcbXXXControlFile, op
        return Routine.MRxLowIOSubmit, op
    routine = _BY_MAJOR.get(major)
    if routine is None:
        raise NtStatusError(
            NtStatus.STATUS_INVALID_DEVICE_REQUEST, f"unsupported major function 0x{major:02x}"
        )
    return routine, None

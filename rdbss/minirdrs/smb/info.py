"""QUERY_INFO (MS-SMB2 2.2.37) and SET_INFO (2.2.39) on an SMB handle: file information (the
SMB2_0_INFO_FILE classes), extended attributes (FileFullEaInformation), the server's own
security descriptor (SMB2_0_INFO_SECURITY), the share's quota entries (SMB2_0_INFO_QUOTA, on
the share's quota file as a Windows client opens it) and the volume (SMB2_0_INFO_FILESYSTEM,
the four classes in one unrelated compound). Whatever the server decides, it decides: its
NtStatus comes back unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from smbprotocol.exceptions import SMBResponseException
from smbprotocol.open import ImpersonationLevel
from smbprotocol.open import Open as SmbOpen

from rdbss.minirdrs.base import FILE_INFO_CLASSES, FILE_REMOTE_DEVICE, Result
from rdbss.minirdrs.common.args import TIME_ARGS, arg_bool, arg_int, arg_str, components
from rdbss.minirdrs.common.eas import pack_full_ea, parse_full_ea
from rdbss.minirdrs.common.eas import parse_set as parse_eas
from rdbss.minirdrs.common.quota import (
    pack_quota_entries,
    parse_query_args,
    parse_quota_information,
)
from rdbss.minirdrs.common.quota import query_quota_info as quota_query_buffer
from rdbss.minirdrs.common.security import (
    ALL_INFORMATION,
    check_query_information,
    pack_descriptor,
    parse_descriptor,
)
from rdbss.minirdrs.smb.opens import (
    SmbSrvOpen,
    query_file,
    query_info,
    set_file,
    set_info,
    show,
)
from rdbss.minirdrs.smb.status import STATUS_NO_EAS_ON_FILE
from rdbss.minirdrs.smb.structures import (
    FILE_ALL_INFORMATION,
    FILE_FULL_EA_INFORMATION,
    FILE_QUOTA_INFORMATION,
    SHARE_ALL,
    SL_RESTART_SCAN,
    SMB2_0_INFO_FILE,
    SMB2_0_INFO_FILESYSTEM,
    SMB2_0_INFO_QUOTA,
    SMB2_0_INFO_SECURITY,
    RawInfo,
    ns_to_filetime,
    pack_basic,
    pack_disposition,
    pack_rename,
    pack_size,
    parse_all_information,
    parse_volume,
    query_info_buffer,
    query_info_request,
    set_info_request,
    smb_file_info,
)
from rdbss.wire.constants import (
    Access,
    CreateDisposition,
    FileAttributes,
    FileInformationClass,
    FsInformationClass,
)
from rdbss.wire.rxcontext import RxContext
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus
Info = FileInformationClass
FsInfo = FsInformationClass

#: The file a client opens on a share to read and write its quota entries.
QUOTA_FILE = "$Extend\\$Quota:$Q:$INDEX_ALLOCATION"
MAX_QUOTA_ROUNDS = 64
#: The volume classes one query asks for, in one compound.
VOLUME_QUERIES = (
    FsInfo.FileFsVolumeInformation,
    FsInfo.FileFsDeviceInformation,
    FsInfo.FileFsAttributeInformation,
    FsInfo.FileFsFullSizeInformation,
)


def _error(status: int, message: str) -> NtStatusError:
    return NtStatusError(status, message)


# --------------------------------------------------------------------------------------------
# File information
# --------------------------------------------------------------------------------------------


def query_all(op: SmbSrvOpen) -> RawInfo:
    data = query_file(op, FILE_ALL_INFORMATION, f"cannot query {show(op.path)}")
    return parse_all_information(data)


def query_file_info(op: SmbSrvOpen, ctx: RxContext) -> Result:
    info_class = ctx.info.info_class if ctx.info is not None else None
    if info_class not in FILE_INFO_CLASSES:
        raise _error(S.STATUS_INVALID_PARAMETER, f"file info class {info_class!r}")
    info = smb_file_info(query_all(op), op.path, delete_pending=op.delete_pending)
    info["position"] = 0
    return Result(result=info)


def set_basic(op: SmbSrvOpen, args: Mapping[str, Any]) -> None:
    ctime, atime, mtime, chtime = (ns_to_filetime(arg_int(args, k, default=0)) for k in TIME_ARGS)
    attributes = arg_int(args, "attributes", default=0)
    if attributes < 0 or attributes > 0xFFFFFFFF:
        raise _error(S.STATUS_INVALID_PARAMETER, f"attributes {attributes!r}")
    if attributes & FileAttributes.DIRECTORY and not op.is_dir:
        raise _error(S.STATUS_INVALID_PARAMETER, "attributes: DIRECTORY on a file")
    buffer = pack_basic((ctime, atime, mtime, chtime), attributes)
    set_file(op, Info.FileBasicInformation, buffer, "cannot set attributes of")


def _size(op: SmbSrvOpen, args: Mapping[str, Any], what: str) -> bytes:
    size = arg_int(args, "size")
    if size < 0:
        raise _error(S.STATUS_INVALID_PARAMETER, "argument 'size' must not be negative")
    if op.is_dir:
        raise _error(S.STATUS_INVALID_PARAMETER, f"{what} of a directory")
    return pack_size(size)


def set_end_of_file(op: SmbSrvOpen, args: Mapping[str, Any]) -> None:
    buffer = _size(op, args, "end of file")
    set_file(op, Info.FileEndOfFileInformation, buffer, "cannot set the size of")


def set_allocation(op: SmbSrvOpen, args: Mapping[str, Any]) -> None:
    buffer = _size(op, args, "allocation size")
    set_file(op, Info.FileAllocationInformation, buffer, "cannot set the allocation of")


def set_rename(op: SmbSrvOpen, args: Mapping[str, Any]) -> str | None:
    """Rename the open's file; its new name (None when it keeps its name)."""
    target = "\\".join(components(arg_str(args, "target")))
    replace = arg_bool(args, "replace", default=False)
    if not target:
        raise _error(S.STATUS_INVALID_PARAMETER, "cannot rename onto the share root")
    if not op.path:
        raise _error(S.STATUS_ACCESS_DENIED, "the share root cannot be renamed")
    if target == op.path:
        return None
    request = set_info_request(
        op.handle.file_id, Info.FileRenameInformation, pack_rename(target, replace)
    )
    set_info(op, f"cannot rename {show(op.path)} to {show(target)}", request)
    return target


def set_disposition(op: SmbSrvOpen, args: Mapping[str, Any]) -> bool:
    """Ask the server to delete the open's file when it closes (or not); what was asked."""
    delete = arg_bool(args, "delete")
    if delete and not op.path:
        raise _error(S.STATUS_ACCESS_DENIED, "the share root cannot be deleted")
    set_file(op, Info.FileDispositionInformation, pack_disposition(delete), "cannot delete")
    return delete


# --------------------------------------------------------------------------------------------
# Extended attributes (FileFullEaInformation)
# --------------------------------------------------------------------------------------------


def query_ea_info(op: SmbSrvOpen) -> Result:
    request = query_info_request(op.handle.file_id, SMB2_0_INFO_FILE, FILE_FULL_EA_INFORMATION)
    request["flags"] = SL_RESTART_SCAN
    try:
        data = query_info(op, f"cannot read the EAs of {show(op.path)}", request)
    except NtStatusError as exc:
        if exc.status == STATUS_NO_EAS_ON_FILE:
            return Result(result={"eas": {}})
        raise
    return Result(result={"eas": parse_full_ea(data)})


def set_ea_info(op: SmbSrvOpen, ctx: RxContext) -> Result:
    changes = parse_eas(ctx.info.args if ctx.info is not None else None)
    set_file(op, FILE_FULL_EA_INFORMATION, pack_full_ea(changes), "cannot set EAs of")
    return Result()


# --------------------------------------------------------------------------------------------
# Security: the server's own security descriptor
# --------------------------------------------------------------------------------------------


def query_sd_info(op: SmbSrvOpen, ctx: RxContext) -> Result:
    info = check_query_information(
        ctx.info.info_class if ctx.info is not None else None, ALL_INFORMATION
    )
    request = query_info_request(op.handle.file_id, SMB2_0_INFO_SECURITY, 0)
    request["additional_information"] = info
    data = query_info(op, f"cannot query the security of {show(op.path)}", request)
    return Result(result=parse_descriptor(data))


def set_sd_info(op: SmbSrvOpen, ctx: RxContext) -> Result:
    info = check_query_information(
        ctx.info.info_class if ctx.info is not None else None, ALL_INFORMATION
    )
    buffer = pack_descriptor(info, ctx.info.args if ctx.info is not None else None)
    request = set_info_request(op.handle.file_id, 0, buffer, SMB2_0_INFO_SECURITY)
    request["additional_information"] = info
    set_info(op, f"cannot change the security of {show(op.path)}", request)
    return Result()


# --------------------------------------------------------------------------------------------
# Quota: the server's quota entries
# --------------------------------------------------------------------------------------------


def _quota_file(op: SmbSrvOpen, access: int) -> SmbOpen:
    """Open the share's quota file (what a Windows client opens for quotas)."""
    handle = SmbOpen(op.tree, QUOTA_FILE)
    try:
        op.link.call(
            "cannot open the quota file of the share",
            lambda: handle.create(
                ImpersonationLevel.Impersonation,
                access | Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE,
                0,
                SHARE_ALL,
                int(CreateDisposition.FILE_OPEN),
                0,
            ),
        )
    except NtStatusError as exc:
        if exc.status in (S.STATUS_OBJECT_NAME_NOT_FOUND, S.STATUS_OBJECT_PATH_NOT_FOUND):
            raise _error(
                S.STATUS_NOT_SUPPORTED, f"share {op.share!r}: the server offers no quotas"
            ) from None
        raise
    return handle


def _close_quota_file(op: SmbSrvOpen, handle: SmbOpen) -> None:
    with contextlib.suppress(NtStatusError):
        op.link.call("cannot close the quota file", handle.close)


def query_quota_info(op: SmbSrvOpen, ctx: RxContext) -> Result:
    """Every quota entry of the share (or those of ``sids``); an empty list when the server
    keeps none (Samba without a quota source answers STATUS_NO_MORE_ENTRIES)."""
    sids = parse_query_args(ctx.info.args if ctx.info is not None else None)
    handle = _quota_file(op, Access.FILE_READ_DATA)
    entries: list[dict[str, Any]] = []
    try:
        for round_ in range(MAX_QUOTA_ROUNDS):
            request = query_info_request(handle.file_id, SMB2_0_INFO_QUOTA, FILE_QUOTA_INFORMATION)
            request["buffer"] = quota_query_buffer(sids, restart=round_ == 0)
            try:
                data = query_info(op, "cannot query the quota entries", request)
            except NtStatusError as exc:
                if exc.status == S.STATUS_NO_MORE_ENTRIES:
                    break
                raise
            batch = parse_quota_information(data)
            entries += batch
            if sids is not None or not batch:
                break  # a SID list is answered in one go
    finally:
        _close_quota_file(op, handle)
    return Result(result={"entries": entries})


def set_quota_info(op: SmbSrvOpen, ctx: RxContext) -> Result:
    args = ctx.info.args if ctx.info is not None else None
    buffer = pack_quota_entries(args.get("entries") if isinstance(args, Mapping) else None)
    handle = _quota_file(op, Access.FILE_WRITE_DATA)
    try:
        request = set_info_request(
            handle.file_id, FILE_QUOTA_INFORMATION, buffer, SMB2_0_INFO_QUOTA
        )
        set_info(op, "cannot set quota entries", request)
    finally:
        _close_quota_file(op, handle)
    return Result()


# --------------------------------------------------------------------------------------------
# Volume
# --------------------------------------------------------------------------------------------


def volume(op: SmbSrvOpen) -> dict[str, Any]:
    requests = [
        query_info_request(op.handle.file_id, SMB2_0_INFO_FILESYSTEM, int(cls))
        for cls in VOLUME_QUERIES
    ]
    answers = op.link.call("cannot query the volume", lambda: op.link.exchange(op.tree, requests))
    buffers: dict[int, bytes] = {}
    for cls, answer in zip(VOLUME_QUERIES, answers, strict=True):
        if isinstance(answer, SMBResponseException):
            if cls == FsInfo.FileFsFullSizeInformation:
                raise _error(int(answer.status), "cannot query the volume size")
            continue
        buffers[int(cls)] = query_info_buffer(answer)
    result: dict[str, Any] = {
        "fs_name": "",
        "label": op.share,
        "serial": 0,
        "max_name_length": 255,
        "fs_attributes": 0,
        "device_characteristics": 0,
    }
    result.update(parse_volume(buffers))
    result["device_characteristics"] |= FILE_REMOTE_DEVICE
    return result

"""MRxSetFileInfo on the server: times and attributes, size, rename and disposition.

SFTP v3 sets both times at once, in whole seconds, and uid and gid together; the arguments are
checked before any request goes out, so a bad one answers without a round trip.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from typing import Any

import asyncssh

from rdbss.minirdrs.common.args import TIME_ARGS, arg_bool, arg_int, arg_str, components, show
from rdbss.minirdrs.sftp.attrs import mode_of
from rdbss.minirdrs.sftp.errors import fail, is_lost
from rdbss.minirdrs.sftp.remote import (
    Open,
    acheck_deletable,
    achmod_readonly,
    alocate,
    arepin,
    lstat_or_none,
)
from rdbss.wire.constants import FileAttributes, FileInformationClass
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus
Info = FileInformationClass


def check_set_args(op: Open, info_class: int, args: Mapping[str, Any]) -> None:
    """Argument checks that need no server (so they answer without a round trip)."""
    if info_class == Info.FileBasicInformation:
        for key in TIME_ARGS:
            arg_int(args, key, default=0)
        attributes = arg_int(args, "attributes", default=0)
        if attributes & FileAttributes.DIRECTORY and not op.is_dir:
            raise NtStatusError(S.STATUS_INVALID_PARAMETER, "attributes: DIRECTORY on a file")
    elif info_class in (Info.FileEndOfFileInformation, Info.FileAllocationInformation):
        if arg_int(args, "size") < 0:
            raise NtStatusError(S.STATUS_INVALID_PARAMETER, "argument 'size' must not be negative")
        what = "end of file" if info_class == Info.FileEndOfFileInformation else "allocation"
        if op.is_dir:
            raise NtStatusError(S.STATUS_INVALID_PARAMETER, f"{what} of a directory")
        if not op.can_write or op.file is None:
            raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(op.path)} is not open for writing")
    elif info_class == Info.FileRenameInformation:
        components(arg_str(args, "target"))
        arg_bool(args, "replace", default=False)
    elif info_class == Info.FileDispositionInformation:
        arg_bool(args, "delete")


async def aset_basic(op: Open, args: Mapping[str, Any]) -> None:
    times = {key: arg_int(args, key, default=0) for key in TIME_ARGS}
    attributes = arg_int(args, "attributes", default=0)
    atime_ns, mtime_ns = times["last_access_time"], times["last_write_time"]
    if atime_ns <= 0 and mtime_ns <= 0 and not attributes:
        return
    sftp = op.conn.client()
    try:
        current = await sftp.stat(op.remote)
        if atime_ns > 0 or mtime_ns > 0:
            # SFTP v3 sets both times at once, in whole seconds
            atime = atime_ns // 1_000_000_000 if atime_ns > 0 else int(current.atime or 0)
            mtime = mtime_ns // 1_000_000_000 if mtime_ns > 0 else int(current.mtime or 0)
            await sftp.setstat(op.remote, asyncssh.SFTPAttrs(atime=atime, mtime=mtime))
            if op.file is not None:  # a handle that can write keeps them (arepin)
                op.pinned_times = (atime, mtime)
        if attributes:
            await achmod_readonly(
                sftp, op, current, readonly=bool(attributes & FileAttributes.READONLY)
            )
    except asyncssh.SFTPError as exc:
        fail(exc, "cannot set attributes of", op.path)


async def aset_end_of_file(op: Open, args: Mapping[str, Any]) -> None:
    assert op.file is not None
    try:
        await op.file.truncate(arg_int(args, "size"))
        await arepin(op)
    except asyncssh.SFTPError as exc:
        fail(exc, "cannot set the size of", op.path)


async def aset_allocation(op: Open, args: Mapping[str, Any]) -> None:
    assert op.file is not None
    size = arg_int(args, "size")
    try:
        if size < ((await op.file.stat()).size or 0):
            await op.file.truncate(size)
            await arepin(op)
    except asyncssh.SFTPError as exc:
        fail(exc, "cannot set the allocation of", op.path)


async def acheck_disposition(op: Open, args: Mapping[str, Any]) -> bool:
    """Whether FileDispositionInformation asks to delete; refuses what cannot be deleted."""
    delete = arg_bool(args, "delete")
    if delete:
        await acheck_deletable(op)
    return delete


async def arename(op: Open, args: Mapping[str, Any]) -> tuple[str, str] | None:
    """Rename on the server; the new share-relative path and server path, None when the
    target is the name the open has already."""
    parts = components(arg_str(args, "target"))
    target_rel = "\\".join(parts)
    replace = arg_bool(args, "replace", default=False)
    if not target_rel:
        raise NtStatusError(S.STATUS_INVALID_PARAMETER, "cannot rename onto the share root")
    if not op.path:
        raise NtStatusError(S.STATUS_ACCESS_DENIED, "the share root cannot be renamed")
    if target_rel == op.path:
        return None
    sftp = op.conn.client()
    target = await alocate(op.share, parts, target_rel)
    existing = target.attrs
    if existing is not None:
        if not replace:
            raise NtStatusError(
                S.STATUS_OBJECT_NAME_COLLISION, f"{show(target_rel)} already exists"
            )
        if stat.S_ISDIR(mode_of(existing)):
            raise NtStatusError(
                S.STATUS_ACCESS_DENIED, f"{show(target_rel)} is a directory: cannot replace it"
            )
    what = f"cannot rename {show(op.path)} to"
    try:
        if existing is not None:
            await sftp.posix_rename(op.remote, target.remote)
        else:
            await sftp.rename(op.remote, target.remote)
    except asyncssh.SFTPOpUnsupported:
        raise NtStatusError(
            S.STATUS_NOT_SUPPORTED,
            f"{what} {show(target_rel)}: the server cannot replace (no posix-rename)",
        ) from None
    except asyncssh.SFTPError as exc:
        if is_lost(exc):
            raise
        if isinstance(exc, asyncssh.SFTPFailure) and await lstat_or_none(
            sftp, target.remote, target_rel
        ):
            raise NtStatusError(
                S.STATUS_OBJECT_NAME_COLLISION, f"{show(target_rel)} already exists"
            ) from None
        fail(exc, what, target_rel)
    return target_rel, target.remote

"""MRxCreate on the server: open what is there, or make it (see docs/routines.md, "Create,
collapsing and close"). One round trip where the answers do not depend on each other: the
lookup's requests are pipelined, and so are an open and the stat that reports its size.
"""

from __future__ import annotations

import asyncio
import stat
from typing import Any

import asyncssh

from rdbss.minirdrs.common.args import show
from rdbss.minirdrs.sftp.attrs import info_of, mode_of
from rdbss.minirdrs.sftp.errors import fail, is_lost
from rdbss.minirdrs.sftp.remote import (
    Open,
    Target,
    aabandon,
    acheck_deletable,
    achmod_readonly,
    alocate,
    aopen_and_stat,
    lstat_or_none,
    pflags_of,
)
from rdbss.minirdrs.sftp.session import Share
from rdbss.model.create import (
    INFORMATION,
    OVERWRITING,
    check_open_existing,
    create_action,
    data_access,
)
from rdbss.wire.constants import CreateDisposition, CreateOptions, FileAttributes
from rdbss.wire.rxcontext import CreateParameters
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus
D = CreateDisposition


async def acreate(
    share: Share,
    parts: list[str],
    rel: str,
    params: CreateParameters,
    disposition: D,
    options: int,
) -> tuple[Open, int, dict[str, Any]]:
    """The open, its CreateInformation and its file info (the action as the create rules of
    rdbss/model/create.py decide it)."""
    target = await alocate(share, parts, rel)
    created = target.attrs is None
    action = create_action(disposition, not created, rel)
    if created:
        op, attrs = await _acreate_new(share, rel, target, params, options)
    else:
        op, attrs = await _aopen_existing(share, rel, target, params, disposition, options)
    try:
        if options & CreateOptions.FILE_DELETE_ON_CLOSE:
            await acheck_deletable(op)
            op.delete_pending = True
    except BaseException:
        await aabandon(op, created=created)
        raise
    info = info_of(attrs, rel, op.remote, delete_pending=op.delete_pending)
    return op, int(INFORMATION[action]), info


async def _acreate_new(
    share: Share,
    rel: str,
    target: Target,
    params: CreateParameters,
    options: int,
) -> tuple[Open, asyncssh.SFTPAttrs]:
    sftp = share.conn.client()
    can_read, can_write, append_only = data_access(params.desired_access)
    readonly = bool(params.file_attributes & FileAttributes.READONLY)
    remote = target.remote
    try:
        if options & CreateOptions.FILE_DIRECTORY_FILE:
            mkdir = asyncio.ensure_future(sftp.mkdir(remote))
            lstat = asyncio.ensure_future(sftp.lstat(remote))
            try:
                await mkdir
            finally:
                attrs_or_exc = (await asyncio.gather(lstat, return_exceptions=True))[0]
            if isinstance(attrs_or_exc, BaseException):
                raise attrs_or_exc
            attrs = attrs_or_exc
            op = Open(share, rel, True, can_read, can_write, remote=remote)
        else:
            pflags = asyncssh.FXF_CREAT | asyncssh.FXF_EXCL
            pflags |= pflags_of(can_read, can_write, append_only)
            create_attrs = asyncssh.SFTPAttrs(permissions=0o444) if readonly else None
            handle, attrs = await aopen_and_stat(
                sftp, remote, pflags, create_attrs or asyncssh.SFTPAttrs()
            )
            op = Open(
                share, rel, False, can_read, can_write, append_only, remote=remote, file=handle
            )
            readonly = False  # applied by the open itself
    except asyncssh.SFTPError as exc:
        if is_lost(exc):
            raise
        # v3 says "Failure" for EEXIST too: did someone make it meanwhile?
        if isinstance(
            exc, asyncssh.SFTPFailure | asyncssh.SFTPPermissionDenied
        ) and await lstat_or_none(sftp, remote, rel):
            raise NtStatusError(
                S.STATUS_OBJECT_NAME_COLLISION, f"{show(rel)} already exists"
            ) from None
        if isinstance(exc, asyncssh.SFTPNoSuchFile):
            raise NtStatusError(
                S.STATUS_OBJECT_PATH_NOT_FOUND, f"{show(rel)}: parent folder not found"
            ) from None
        fail(exc, "cannot create", rel)
    if readonly:
        try:
            attrs = await achmod_readonly(sftp, op, attrs, readonly=True)
        except BaseException:
            await aabandon(op, created=True)
            raise
    return op, attrs


def check_existing(
    rel: str, attrs: asyncssh.SFTPAttrs, disposition: D, options: int, can_write: bool
) -> bool:
    """What an open (a create or a query open) refuses for an entry that exists, before
    opening it: a symbolic link (not followed, as with O_NOFOLLOW), then the kind checks of
    ``check_open_existing``; True when it is a directory."""
    mode = mode_of(attrs)
    if stat.S_ISLNK(mode):
        raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(rel)} is a symbolic link")
    return check_open_existing(
        rel,
        options,
        disposition,
        can_write,
        is_dir=stat.S_ISDIR(mode),
        is_regular=stat.S_ISREG(mode),
    )


async def _aopen_existing(
    share: Share,
    rel: str,
    target: Target,
    params: CreateParameters,
    disposition: D,
    options: int,
) -> tuple[Open, asyncssh.SFTPAttrs]:
    sftp = share.conn.client()
    attrs = target.attrs
    assert attrs is not None
    can_read, can_write, append_only = data_access(params.desired_access)
    if check_existing(rel, attrs, disposition, options, can_write):
        op = Open(share, rel, True, can_read, can_write, remote=target.remote)
        return op, attrs
    overwrite = disposition in OVERWRITING
    if (can_write or overwrite) and not mode_of(attrs) & 0o222:
        raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(rel)} is read-only")
    op = Open(share, rel, False, can_read, can_write, append_only, remote=target.remote)
    if can_read or can_write or overwrite:
        pflags = pflags_of(can_read, can_write or overwrite, append_only)
        if overwrite:
            pflags |= asyncssh.FXF_TRUNC
        try:
            op.file, attrs = await aopen_and_stat(sftp, target.remote, pflags, asyncssh.SFTPAttrs())
        except asyncssh.SFTPError as exc:
            fail(exc, "cannot open", rel)
        if not stat.S_ISREG(mode_of(attrs)):  # replaced since the lstat
            await aabandon(op, created=False)
            raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(rel)} is not a regular file")
    if overwrite and params.file_attributes & FileAttributes.READONLY:
        try:
            attrs = await achmod_readonly(sftp, op, attrs, readonly=True)
        except BaseException:
            await aabandon(op, created=False)
            raise
    return op, attrs

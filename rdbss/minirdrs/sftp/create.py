"""MRxCreate on the server: open what is there, or make it (see docs/routines.md, "Create,
collapsing and close"). One round trip where the answers do not depend on each other: the
lookup's requests are pipelined, and so are an open and the stat that reports its size.
"""

from __future__ import annotations

import asyncio
import stat
from typing import Any

import asyncssh

from rdbss.minirdrs.local import LocalMiniRdr, _show
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
from rdbss.wire.constants import CreateDisposition, CreateInformation, CreateOptions, FileAttributes
from rdbss.wire.rxcontext import CreateParameters
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus
D = CreateDisposition

_OVERWRITING = frozenset({D.FILE_SUPERSEDE, D.FILE_OVERWRITE, D.FILE_OVERWRITE_IF})
_CREATING = frozenset({D.FILE_SUPERSEDE, D.FILE_CREATE, D.FILE_OPEN_IF, D.FILE_OVERWRITE_IF})
_OVERWRITE_INFORMATION = {
    D.FILE_SUPERSEDE: CreateInformation.FILE_SUPERSEDED,
    D.FILE_OVERWRITE: CreateInformation.FILE_OVERWRITTEN,
    D.FILE_OVERWRITE_IF: CreateInformation.FILE_OVERWRITTEN,
}


async def acreate(
    share: Share,
    parts: list[str],
    rel: str,
    params: CreateParameters,
    disposition: D,
    options: int,
) -> tuple[Open, int, dict[str, Any]]:
    """The open, its CreateInformation and its file info."""
    target = await alocate(share, parts, rel)
    created = target.attrs is None
    if created:
        op, attrs = await _acreate_new(share, rel, target, params, disposition, options)
        information = int(CreateInformation.FILE_CREATED)
    else:
        op, attrs, information = await _aopen_existing(
            share, rel, target, params, disposition, options
        )
    try:
        if options & CreateOptions.FILE_DELETE_ON_CLOSE:
            await acheck_deletable(op)
            op.delete_pending = True
    except BaseException:
        await aabandon(op, created=created)
        raise
    return op, information, info_of(attrs, rel, op.remote, delete_pending=op.delete_pending)


async def _acreate_new(
    share: Share,
    rel: str,
    target: Target,
    params: CreateParameters,
    disposition: D,
    options: int,
) -> tuple[Open, asyncssh.SFTPAttrs]:
    sftp = share.conn.client()
    if disposition not in _CREATING:
        raise NtStatusError(S.STATUS_OBJECT_NAME_NOT_FOUND, f"{_show(rel)} not found")
    can_read, can_write, append_only = LocalMiniRdr._data_access(params.desired_access)
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
            op = Open(share, rel, remote, True, can_read, can_write)
        else:
            pflags = asyncssh.FXF_CREAT | asyncssh.FXF_EXCL
            pflags |= pflags_of(can_read, can_write, append_only)
            create_attrs = asyncssh.SFTPAttrs(permissions=0o444) if readonly else None
            handle, attrs = await aopen_and_stat(
                sftp, remote, pflags, create_attrs or asyncssh.SFTPAttrs()
            )
            op = Open(share, rel, remote, False, can_read, can_write, append_only, handle)
            readonly = False  # applied by the open itself
    except asyncssh.SFTPError as exc:
        if is_lost(exc):
            raise
        # v3 says "Failure" for EEXIST too: did someone make it meanwhile?
        if isinstance(
            exc, asyncssh.SFTPFailure | asyncssh.SFTPPermissionDenied
        ) and await lstat_or_none(sftp, remote, rel):
            raise NtStatusError(
                S.STATUS_OBJECT_NAME_COLLISION, f"{_show(rel)} already exists"
            ) from None
        if isinstance(exc, asyncssh.SFTPNoSuchFile):
            raise NtStatusError(
                S.STATUS_OBJECT_PATH_NOT_FOUND, f"{_show(rel)}: parent folder not found"
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
    """What a create refuses for an entry that exists, before opening it (collision, a
    symbolic link, a directory for a file or the reverse...); True when it is a directory."""
    mode = mode_of(attrs)
    if disposition == D.FILE_CREATE:
        raise NtStatusError(S.STATUS_OBJECT_NAME_COLLISION, f"{_show(rel)} already exists")
    if stat.S_ISLNK(mode):
        raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{_show(rel)} is a symbolic link")
    if stat.S_ISDIR(mode):
        LocalMiniRdr._check_open_dir(rel, options, disposition, can_write)
        return True
    if options & CreateOptions.FILE_DIRECTORY_FILE:
        raise NtStatusError(S.STATUS_NOT_A_DIRECTORY, f"{_show(rel)} is not a directory")
    if not stat.S_ISREG(mode):
        raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{_show(rel)} is not a regular file")
    return False


async def _aopen_existing(
    share: Share,
    rel: str,
    target: Target,
    params: CreateParameters,
    disposition: D,
    options: int,
) -> tuple[Open, asyncssh.SFTPAttrs, int]:
    sftp = share.conn.client()
    attrs = target.attrs
    assert attrs is not None
    can_read, can_write, append_only = LocalMiniRdr._data_access(params.desired_access)
    if check_existing(rel, attrs, disposition, options, can_write):
        op = Open(share, rel, target.remote, True, can_read, can_write)
        return op, attrs, int(CreateInformation.FILE_OPENED)
    overwrite = disposition in _OVERWRITING
    if (can_write or overwrite) and not mode_of(attrs) & 0o222:
        raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{_show(rel)} is read-only")
    op = Open(share, rel, target.remote, False, can_read, can_write, append_only)
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
            raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{_show(rel)} is not a regular file")
    if overwrite and params.file_attributes & FileAttributes.READONLY:
        try:
            attrs = await achmod_readonly(sftp, op, attrs, readonly=True)
        except BaseException:
            await aabandon(op, created=False)
            raise
    information = _OVERWRITE_INFORMATION.get(disposition, CreateInformation.FILE_OPENED)
    return op, attrs, int(information)

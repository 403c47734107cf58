"""Operations on the server's files: where a name is (its parent resolved inside the share),
opening, listing, deleting and closing, as coroutines on the connection's SFTP client.

Paths: ctx.path (already normalized by the core) is checked again (no ``..``, NUL, ``:``) and
joined under the share's folder, resolved once with ``realpath`` when the VNetRoot is made. The
parent of every name is resolved on the server too, and must stay inside the share's folder; a
name that is itself a symbolic link cannot be opened (as with O_NOFOLLOW locally).

One round trip per step: independent requests are pipelined (OpenSSH answers them in order),
e.g. an open and the stat that reports the opened file's size go out together. SFTP v3 reports
most failures as a bare "Failure", so the callers look before they act (collision, non-empty
directory, read-only file...) and look again after a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import stat
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import cast

import asyncssh

from rdbss.minirdrs.base import OpenBase
from rdbss.minirdrs.common.args import show
from rdbss.minirdrs.common.notify import Entry
from rdbss.minirdrs.common.security import PosixChange, PosixSecurity
from rdbss.minirdrs.sftp.attrs import entry_of, mode_of, security_of
from rdbss.minirdrs.sftp.errors import fail, is_lost
from rdbss.minirdrs.sftp.folders import afolder
from rdbss.minirdrs.sftp.session import Conn, Share
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus


@dataclass(slots=True, kw_only=True)
class Open(OpenBase[Share]):
    """One SrvOpen: an open file or directory of a share, with its server path and handle."""

    remote: str  # the server path (its parent resolved)
    file: asyncssh.SFTPClientFile | None = None  # None: a directory or an attributes-only open
    # (atime, mtime) in whole seconds, set explicitly through this handle: they stick until it
    # is closed (MS-FSA 2.1.5.14.2), so every later write or size change puts them back
    pinned_times: tuple[int, int] | None = None
    # a pipelined write that failed after its request was answered (cancelled): reported by the
    # next flush or close of this open
    write_error: tuple[int, str] | None = None
    #: the handle was closed ahead of the MRxCloseSrvOpen that answers it (the direct path:
    #: rdbss/minirdrs/sftp/prefetch.py), with ``close_error`` when the server refused
    closed_early: bool = False
    close_error: BaseException | None = None

    @property
    def conn(self) -> Conn:
        return self.share.conn


@dataclass(slots=True)
class Target:
    remote: str
    attrs: asyncssh.SFTPAttrs | None  # lstat of the name itself; None: nothing there


def join(parent: str, name: str) -> str:
    return parent.rstrip("/") + "/" + name if parent != "/" else "/" + name


def within(root: str, real: str) -> bool:
    return real == root or root == "/" or real.startswith(root.rstrip("/") + "/")


def is_dot(name: str) -> bool:
    return name in (".", "..")


def pflags_of(can_read: bool, can_write: bool, append_only: bool) -> int:
    pflags = 0
    if can_read or not can_write:
        pflags |= asyncssh.FXF_READ
    if can_write:
        pflags |= asyncssh.FXF_WRITE
    if append_only:
        pflags |= asyncssh.FXF_APPEND
    return pflags


async def lstat_or_none(
    sftp: asyncssh.SFTPClient, remote: str, rel: str
) -> asyncssh.SFTPAttrs | None:
    try:
        return await sftp.lstat(remote)
    except asyncssh.SFTPNoSuchFile:
        return None
    except asyncssh.SFTPError as exc:
        fail(exc, "cannot query", rel)


def _raise_lost(*outcomes: object) -> None:
    """Raise what ended a request's connection (or cancelled it) among gathered outcomes."""
    for got in outcomes:
        if isinstance(got, BaseException) and (is_lost(got) or not isinstance(got, Exception)):
            raise got


def _check_inside(share: Share, real: object, rel: str) -> None:
    if isinstance(real, str) and not within(share.root, real):
        raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(rel)} leads outside the share")


async def alocate(share: Share, parts: list[str], rel: str, *, expect: bool = False) -> Target:
    """Where ``parts`` is on the server and what is there (lstat); the parent is resolved
    and must be a folder inside the share (else OBJECT_PATH_NOT_FOUND / ACCESS_DENIED).
    One round trip: the three requests are pipelined.

    ``expect``: the name is expected to exist (a stat, an open of an existing file): the
    parent's realpath and the name's lstat only, as the server's work grows with each request.
    An lstat that succeeded went through the parent, so the parent is a folder; when it did
    not succeed, the three requests go again (a second round trip) to say why."""
    sftp = share.conn.client()
    if not parts:
        try:
            return Target(share.root, await sftp.stat(share.root))
        except asyncssh.SFTPNoSuchFile:
            raise NtStatusError(
                S.STATUS_BAD_NETWORK_NAME, f"the folder of share {share.name!r} is gone"
            ) from None
    name = parts[-1]
    if len(parts) == 1:
        remote = join(share.root, name)
        return Target(remote, await lstat_or_none(sftp, remote, rel))
    unresolved = share.root + "/" + "/".join(parts[:-1])
    if expect:
        real, found = await asyncio.gather(
            sftp.realpath(unresolved),
            sftp.lstat(join(unresolved, name)),
            return_exceptions=True,
        )
        _raise_lost(real, found)
        if isinstance(real, str) and isinstance(found, asyncssh.SFTPAttrs):
            _check_inside(share, real, rel)
            return Target(join(real, name), found)
    real_task = asyncio.ensure_future(sftp.realpath(unresolved))
    parent_task = asyncio.ensure_future(sftp.stat(unresolved))
    entry_task = asyncio.ensure_future(lstat_or_none(sftp, join(unresolved, name), rel))
    real, parent, entry = await asyncio.gather(
        real_task, parent_task, entry_task, return_exceptions=True
    )
    _raise_lost(real, parent, entry)
    _check_inside(share, real, rel)
    if isinstance(real, asyncssh.SFTPNoSuchFile) or isinstance(parent, asyncssh.SFTPNoSuchFile):
        raise NtStatusError(S.STATUS_OBJECT_PATH_NOT_FOUND, f"{show(rel)}: parent folder not found")
    for got in (real, parent, entry):
        if isinstance(got, asyncssh.SFTPError):
            fail(got, "cannot query", rel)
        if isinstance(got, BaseException):
            raise got
    assert isinstance(real, str) and isinstance(parent, asyncssh.SFTPAttrs)
    if not stat.S_ISDIR(mode_of(parent)):
        raise NtStatusError(S.STATUS_OBJECT_PATH_NOT_FOUND, f"{show(rel)}: parent is not a folder")
    attrs = entry if isinstance(entry, asyncssh.SFTPAttrs) else None
    return Target(join(real, name), attrs)


def unresolved(share: Share, parts: list[str]) -> str:
    """The server path of ``parts`` as named, its parent not resolved."""
    return share.root + "/" + "/".join(parts) if parts else share.root


async def awhere(sftp: asyncssh.SFTPClient, share: Share, parts: list[str]) -> str:
    """The server path of a name whose parent this request's lookup checked already (inside
    the share, a folder): the parent resolved (``realpath``), pipelined with the request it
    goes with; a name in the share's folder needs no request."""
    if len(parts) <= 1:
        return join(share.root, parts[0]) if parts else share.root
    return join(await sftp.realpath(unresolved(share, parts[:-1])), parts[-1])


async def aopen_and_stat(
    sftp: asyncssh.SFTPClient,
    remote: str,
    pflags: int,
    attrs: asyncssh.SFTPAttrs,
    *,
    unsplit: bool = False,
) -> tuple[asyncssh.SFTPClientFile, asyncssh.SFTPAttrs]:
    """Open, and lstat the opened file in the same round trip (OpenSSH answers in order).
    ``unsplit``: each read or write of the handle goes as ONE request, sent the moment it
    starts (asyncssh's block size 0); else asyncssh splits one into parallel requests of the
    server's limit, sent from tasks of their own."""

    async def do_open() -> asyncssh.SFTPClientFile:
        block_size = 0 if unsplit else -1
        return await sftp.open(remote, pflags, attrs, encoding=None, block_size=block_size)

    open_task = asyncio.ensure_future(do_open())
    stat_task = asyncio.ensure_future(sftp.lstat(remote))
    try:
        handle = await open_task
    except BaseException:
        stat_task.cancel()
        with contextlib.suppress(BaseException):
            await stat_task
        raise
    try:
        return handle, await stat_task
    except BaseException:
        with contextlib.suppress(Exception):
            await handle.close()
        raise


async def astat(op: Open) -> asyncssh.SFTPAttrs:
    """The attributes of an open: through its handle when it has one."""
    try:
        if op.file is not None:
            return await op.file.stat()
        return await op.conn.client().stat(op.remote)
    except asyncssh.SFTPError as exc:
        fail(exc, "cannot query", op.path)


async def achmod_readonly(
    sftp: asyncssh.SFTPClient, remote: str, rel: str, attrs: asyncssh.SFTPAttrs, *, readonly: bool
) -> asyncssh.SFTPAttrs:
    """FILE_ATTRIBUTE_READONLY as the write permission bits: set or clear them."""
    mode = mode_of(attrs)
    new = mode & ~0o222 if readonly else mode | 0o200
    if new == mode:
        return attrs
    try:
        await sftp.setstat(remote, asyncssh.SFTPAttrs(permissions=stat.S_IMODE(new)))
    except asyncssh.SFTPError as exc:
        fail(exc, "cannot set attributes of", rel)
    attrs.permissions = new
    return attrs


async def arepin(op: Open) -> None:
    """After a change through ``op`` that moves the file's times (a write, a size change):
    the times set explicitly on the handle go back (SFTP v3: both at once)."""
    if op.pinned_times is not None and op.file is not None:
        atime, mtime = op.pinned_times
        await op.file.setstat(asyncssh.SFTPAttrs(atime=atime, mtime=mtime))


async def ais_empty(sftp: asyncssh.SFTPClient, remote: str) -> bool:
    listing = cast(AsyncGenerator[asyncssh.SFTPName, None], sftp.scandir(remote))
    async with contextlib.aclosing(listing) as entries:
        async for entry in entries:
            if not is_dot(str(entry.filename)):
                return False
    return True


async def alist(op: Open) -> list[tuple[str, asyncssh.SFTPAttrs]]:
    """The entries of an open directory with their attributes (from the listing itself; a
    symbolic link is described by what it points to when that stays in the share), in as few
    round trips as SFTP allows (rdbss/minirdrs/sftp/folders.py)."""
    sftp = op.conn.client()
    try:
        names = await afolder(sftp, op.remote)
    except asyncssh.SFTPError as exc:
        fail(exc, "cannot list", op.path)
    found = [(str(n.filename), n.attrs) for n in names if not is_dot(str(n.filename))]
    links = [i for i, (_, attrs) in enumerate(found) if stat.S_ISLNK(mode_of(attrs))]
    if links:
        resolved = await asyncio.gather(
            *(afollow(op.share, join(op.remote, found[i][0])) for i in links),
            return_exceptions=True,
        )
        for i, got in zip(links, resolved, strict=True):
            if isinstance(got, asyncssh.SFTPAttrs):
                found[i] = (found[i][0], got)
            elif isinstance(got, BaseException) and is_lost(got):
                raise got
    return found


async def afollow(share: Share, remote: str) -> asyncssh.SFTPAttrs | None:
    """What the symbolic link ``remote`` points to (realpath and stat pipelined); None when it
    leads outside the share or nowhere."""
    sftp = share.conn.client()
    real_task = asyncio.ensure_future(sftp.realpath(remote))
    stat_task = asyncio.ensure_future(sftp.stat(remote))
    real, attrs = await asyncio.gather(real_task, stat_task, return_exceptions=True)
    if isinstance(real, str) and isinstance(attrs, asyncssh.SFTPAttrs):
        return attrs if within(share.root, real) else None
    for got in (real, attrs):
        if isinstance(got, BaseException) and is_lost(got):
            raise got
    return None


async def aclose_handle(op: Open) -> None:
    handle, op.file = op.file, None
    if handle is not None:
        try:
            await handle.close()
        except asyncssh.SFTPError as exc:
            fail(exc, "cannot close", op.path)


def report_write_error(op: Open) -> None:
    """Raise (once) the failure of a pipelined write of ``op`` whose request was answered
    before it failed."""
    if op.write_error is not None:
        status, message = op.write_error
        op.write_error = None
        raise NtStatusError(status, f"an earlier write of {show(op.path)} failed: {message}")


async def aremove(sftp: asyncssh.SFTPClient, remote: str, rel: str, *, is_dir: bool) -> None:
    """Remove a file or an empty directory; OBJECT_NAME_NOT_FOUND when it is gone already."""
    try:
        if is_dir:
            await sftp.rmdir(remote)
        else:
            await sftp.remove(remote)
    except asyncssh.SFTPNoSuchFile:
        raise NtStatusError(S.STATUS_OBJECT_NAME_NOT_FOUND, f"{show(rel)} is gone") from None
    except asyncssh.SFTPError as exc:
        if is_lost(exc):
            raise
        if is_dir and isinstance(exc, asyncssh.SFTPFailure):
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                if not await ais_empty(sftp, remote):
                    raise NtStatusError(
                        S.STATUS_DIRECTORY_NOT_EMPTY, f"{show(rel)} is not empty"
                    ) from None
        fail(exc, "cannot delete", rel)


async def acollision(
    sftp: asyncssh.SFTPClient, exc: asyncssh.SFTPError, remote: str, rel: str
) -> None:
    """After a failed create or rename: v3 says "Failure" for EEXIST too, so look whether the
    name exists now (OBJECT_NAME_COLLISION); a missing parent is OBJECT_PATH_NOT_FOUND."""
    if is_lost(exc):
        raise exc
    if isinstance(
        exc, asyncssh.SFTPFailure | asyncssh.SFTPPermissionDenied
    ) and await lstat_or_none(sftp, remote, rel):
        raise NtStatusError(S.STATUS_OBJECT_NAME_COLLISION, f"{show(rel)} already exists") from None
    if isinstance(exc, asyncssh.SFTPNoSuchFile):
        raise NtStatusError(
            S.STATUS_OBJECT_PATH_NOT_FOUND, f"{show(rel)}: parent folder not found"
        ) from None


async def aentries(conn: Conn, remote: str, rel: str) -> list[tuple[str, Entry]]:
    """A folder's entries as the change-notify poller compares them."""
    try:
        names = await afolder(conn.client(), remote)
    except asyncssh.SFTPNoSuchFile:
        raise NtStatusError(S.STATUS_OBJECT_PATH_NOT_FOUND, f"{show(rel)} is gone") from None
    except asyncssh.SFTPError as exc:
        fail(exc, "cannot list", rel)
    return [(str(n.filename), entry_of(n.attrs)) for n in names if not is_dot(str(n.filename))]


async def aset_security(op: Open, change_of: Callable[[PosixSecurity], PosixChange]) -> None:
    """Apply the change ``change_of`` makes of the open's owner, group and mode (SFTP v3 sets
    uid and gid together)."""
    sftp = op.conn.client()
    try:
        attrs = await astat(op)
        change = change_of(security_of(attrs))
        if change.uid is not None or change.gid is not None:
            uid = change.uid if change.uid is not None else attrs.uid
            gid = change.gid if change.gid is not None else attrs.gid
            await sftp.setstat(op.remote, asyncssh.SFTPAttrs(uid=uid, gid=gid))
        if change.permissions is not None:
            await sftp.setstat(op.remote, asyncssh.SFTPAttrs(permissions=change.permissions))
    except asyncssh.SFTPError as exc:
        fail(exc, "cannot change the security of", op.path)

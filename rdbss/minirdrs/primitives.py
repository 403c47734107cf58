"""The primitives a POSIX-like backend gives PosixMiniRdr (rdbss/minirdrs/posix.py): the
whole contract between the shared semantics and a backend (a local folder, an SFTP server, a
WebDAV server, an in-memory dict in tests/unit/test_posix_minirdr.py), one method each, with
its contract in its docstring. A backend overrides every method of REQUIRED_PRIMITIVES; the
others have defaults it may override when it can do better (fsspec's AbstractFileSystem makes
the same split: a few required methods carry a file system, the rest are derived).

Paths. Every primitive gets the share (the backend's own share object, from ``share_of``) and a
share-relative path: backslashes, no empty, ``.`` or ``..`` component (rdbss/minirdrs/common/
args.py ``components`` checked it), ``""`` for the share root. The backend maps it to its own
location (a host path, a remote path, a URL) and refuses one that leads outside the share
(STATUS_ACCESS_DENIED).

Errors. A primitive raises ``NtStatusError`` (an OSError subclass) with the status it means
(its message names the share-relative path, never a host path or a URL), or another
``OSError``: the base maps that with ``status_from_errno`` (ENOENT -> OBJECT_NAME_NOT_FOUND,
EACCES/EPERM -> ACCESS_DENIED, EEXIST -> OBJECT_NAME_COLLISION, ENOTEMPTY ->
DIRECTORY_NOT_EMPTY, ENOSPC -> DISK_FULL...) and names the path itself. Anything else is a
bug (STATUS_INTERNAL_ERROR for that one request).

Stats. ``lookup``, ``fstat`` and ``list_dir`` answer ``StatLike`` objects: an ``os.stat_result``
or anything with its fields (``st_mode`` with the S_IFDIR/S_IFREG kind and the permission
bits, ``st_size``, ``st_blocks``, ``st_nlink``, ``st_ino``, the ``*_ns`` times). A backend
without modes fills 0o755/0o644. ``file_info`` turns one into the file info map.

What the base learned travels with the request, so a backend keeps no note of its own between
two primitives of one request: ``open`` gets the stat the base's lookup (or ``mkdir``) answered
in ``OpenRequest.found``, a stat may carry whatever the backend needs besides the ``st_*``
fields (a resolved server path, a WebDAV entry), and ``open`` answers the stat it learned with
the open, so the create's answer needs no ``fstat``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rdbss.minirdrs.base import OpenBase
from rdbss.minirdrs.common.fileinfo import StatLike, file_info
from rdbss.model.compound import ChainKind
from rdbss.wire.rxcontext import RxContext
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus


@dataclass(frozen=True, slots=True)
class OpenRequest:
    """What ``open`` is asked for: the entry's kind, the data access granted to the open, what
    the open does to the entry, and what the base knows of it already."""

    directory: bool
    can_read: bool
    can_write: bool
    append_only: bool = False
    create: bool = False  # a new file, exclusively
    truncate: bool = False  # overwrite or supersede: the file becomes empty
    #: FILE_ATTRIBUTE_READONLY is to be set (a create or an overwrite asking for it): an open
    #: that sets it itself (a mode given with the open) answers a stat showing it; otherwise
    #: the base calls ``set_readonly`` after the open
    readonly: bool = False
    #: what the base's lookup found at the name (for a directory just made: what ``mkdir``
    #: answered); None for a new file, or when the base knows nothing
    found: StatLike | None = None

    @property
    def writes(self) -> bool:
        """The open touches the file's data for writing (granted, or truncating it)."""
        return self.can_write or self.truncate


@dataclass(frozen=True, slots=True)
class ChainItem:
    """One related item of a chain (``run_chain``) that goes to the server, its checks passed:
    a READ of ``length`` bytes at ``offset``, a WRITE of ``data`` at ``offset`` (None: at the
    end of an append-only open), a query of the file's stat, or the close of the handle."""

    kind: ChainKind
    offset: int | None = 0
    length: int = 0
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Volume:
    """``statvfs``'s answer, in bytes (``block`` 0 when the backend does not know it)."""

    total: int
    free: int
    avail: int
    block: int
    serial: int
    max_name_length: int = 255


ShareT = TypeVar("ShareT")
OpenT = TypeVar("OpenT", bound=OpenBase[Any])


class PosixPrimitives(Generic[ShareT, OpenT]):
    """The primitives; see the module docstring for paths, errors and stats."""

    # --- required -----------------------------------------------------------------------------
    def share_of(self, ctx: RxContext) -> ShareT:
        """The share a request names (``ctx.srv_call``, ``ctx.net_root``);
        STATUS_BAD_NETWORK_NAME when there is none."""
        raise NotImplementedError

    def lookup(self, share: ShareT, rel: str, *, follow: bool = True) -> StatLike | None:
        """What ``rel`` names; None when nothing is there (also when a parent is missing or is
        not a directory). ``follow``: a symbolic link is followed while it stays in the share
        (STATUS_ACCESS_DENIED when it leads out); ``follow=False`` describes the last
        component itself (what rename and delete act on)."""
        raise NotImplementedError

    def open(self, share: ShareT, rel: str, how: OpenRequest) -> tuple[OpenT, StatLike | None]:
        """Open ``rel`` and answer the backend's open record (an ``OpenBase`` subclass built
        from ``share``, ``rel``, ``how.directory``, ``how.can_read``, ``how.can_write`` and
        ``how.append_only``, holding whatever handle the backend needs) with the entry's stat
        after the open when the open learned it without asking again (a stat sent along with
        the open, ``how.found`` for an open that changes nothing), else None: the base then
        asks ``fstat``. The stat answered must be the entry's now, as ``fstat`` would answer
        it. ``how.found`` spares a backend looking the name up again. ``how.create``: make a
        new file, exclusively (OBJECT_NAME_COLLISION when something appeared meanwhile);
        ``how.directory``: a directory (``mkdir`` made it first when it is new);
        ``how.truncate``: the file becomes empty. The data is opened for reading when
        ``how.can_read`` and for writing when ``how.writes``; an open with neither (attributes
        only) must succeed on an entry the backend cannot read."""
        raise NotImplementedError

    def fstat(self, op: OpenT) -> StatLike:
        """The open entry's stat now (after this open's own writes)."""
        raise NotImplementedError

    def close_handle(self, op: OpenT) -> None:
        """Release what ``open`` took. Called once, at close (or to undo a failed create);
        for a backend that writes back at close (a spool), its failure is the close's
        status."""
        raise NotImplementedError

    def read_at(self, op: OpenT, offset: int, length: int) -> bytes:
        """Up to ``length`` (> 0, at most MAX_READ_BYTES) bytes at ``offset`` (>= 0): fewer
        only at the end of the file, ``b""`` past it (the base answers STATUS_END_OF_FILE)."""
        raise NotImplementedError

    def write_at(self, op: OpenT, offset: int | None, data: memoryview) -> int:
        """Write all of ``data`` at ``offset``, or at the end of the file when ``offset`` is
        None (an append-only open, or WRITE at offset -1); answers ``len(data)``."""
        raise NotImplementedError

    def read_later(self, ctx: RxContext, op: OpenT, offset: int, length: int) -> bool:
        """Optional: take the READ ``ctx`` (as ``read_at``, checked already) to answer it later
        through ``complete_later`` (the routine answers STATUS_PENDING), and answer True; False
        (the default): ``read_at`` does it now."""
        return False

    def write_later(self, ctx: RxContext, op: OpenT, offset: int | None, data: memoryview) -> bool:
        """Optional: take the write ``ctx`` of ``data`` at ``offset`` (as ``write_at``) to answer
        it later through ``complete_later`` (the routine answers STATUS_PENDING), and answer
        True; False (the default): ``write_at`` does it now. ``data`` is valid during the call
        only."""
        return False

    def list_dir(self, op: OpenT) -> list[tuple[str, StatLike | None]]:
        """The names in the open directory, without ``.`` and ``..``, in any order, each with
        its stat when the listing gave it (None: the base asks ``child_stat`` for the
        entries it describes)."""
        raise NotImplementedError

    def mkdir(self, share: ShareT, rel: str) -> StatLike | None:
        """Make the directory ``rel`` (its parent exists; nothing is there yet); answer its
        stat when that came along (the base gives it to the ``open`` that follows as
        ``how.found``), else None."""
        raise NotImplementedError

    def rename(self, op: OpenT, target: str, *, replace: bool, existing: StatLike | None) -> None:
        """Move the entry ``op`` opened (not what a link points to) to ``target``, replacing
        the file there when ``replace``. ``existing``: what the base's lookup found at
        ``target`` (not following a link), None when nothing was there. The base checked
        before: ``op`` is not the root, the target's parent exists, an existing target is
        allowed (``replace``) and is not a directory. The base then moves the opens at or
        under the old name (``op`` among them) to the new one."""
        raise NotImplementedError

    def unlink(self, op: OpenT) -> None:
        """Remove the file ``op`` opened, its handle closed already (FileNotFoundError, or
        OBJECT_NAME_NOT_FOUND, when it is gone already: the base takes that as done)."""
        raise NotImplementedError

    def rmdir(self, op: OpenT) -> None:
        """Remove the empty directory ``op`` opened (as ``unlink`` for one gone already;
        DIRECTORY_NOT_EMPTY when something appeared in it)."""
        raise NotImplementedError

    def set_size(self, op: OpenT, size: int) -> None:
        """Truncate or extend (with zeros) the open file to ``size`` bytes."""
        raise NotImplementedError

    def statvfs(self, share: ShareT) -> Volume:
        """The share's volume figures."""
        raise NotImplementedError

    # --- optional -----------------------------------------------------------------------------
    def set_times(self, op: OpenT, atime_ns: int | None, mtime_ns: int | None) -> None:
        """Set the last access and last write times (POSIX ns); None leaves one as it is.
        Default: STATUS_NOT_SUPPORTED."""
        raise NtStatusError(S.STATUS_NOT_SUPPORTED, "this server cannot set file times")

    def set_readonly(self, op: OpenT, readonly: bool) -> None:
        """FILE_ATTRIBUTE_READONLY: clear (or give back the owner's) write bits. Default: a
        store without the attribute accepts ``readonly=False`` (nothing to do) and answers
        STATUS_NOT_SUPPORTED for True."""
        if readonly:
            raise NtStatusError(S.STATUS_NOT_SUPPORTED, "this server has no read-only attribute")

    def child_stat(self, op: OpenT, name: str, rel: str) -> StatLike | None:
        """The stat of entry ``name`` (share-relative ``rel``) of the open directory, for a
        listing; None when it is gone. Default: ``lookup(op.share, rel)``."""
        return self.lookup(op.share, rel)

    def is_empty(self, op: OpenT) -> bool:
        """The open directory has no entry. Default: ``not list_dir(op)``."""
        return not self.list_dir(op)

    def file_info(self, st: StatLike, rel: str, *, delete_pending: bool = False) -> dict[str, Any]:
        """The file info map of a stat (rdbss/minirdrs/base.py's conventions). Default:
        rdbss/minirdrs/common/fileinfo.py."""
        return file_info(st, rel, delete_pending=delete_pending)

    def share_label(self, share: ShareT) -> str:
        """The volume label of a share. Default: ``str(share)``."""
        return str(share)

    def chain_limits(self, create: RxContext) -> tuple[int, int] | None:
        """The longest READ and WRITE one request of a chain may carry for ``create``
        (rdbss/model/compound.py ``chain_of``); None (the default): chains are not taken, the
        compound's items run one by one."""
        return None

    def run_chain(self, create: RxContext, op: OpenT, items: list[ChainItem]) -> list[object]:
        """Send ``items`` for the open ``create`` just made, in order, at once, and answer each
        as its primitive would: READ the bytes (``read_at``), WRITE the count (``write_at``),
        QUERY_INFO the stat (``fstat``), CLOSE None (``close_handle``), or the exception it
        raised. Default: those primitives, one by one."""
        answers: list[object] = []
        for item in items:
            try:
                if item.kind is ChainKind.READ:
                    assert item.offset is not None
                    answers.append(self.read_at(op, item.offset, item.length))
                elif item.kind is ChainKind.WRITE:
                    answers.append(self.write_at(op, item.offset, memoryview(item.data)))
                elif item.kind is ChainKind.QUERY_INFO:
                    answers.append(self.fstat(op))
                else:
                    self.close_handle(op)
                    answers.append(None)
            except Exception as exc:
                answers.append(exc)
        return answers


#: the primitives every backend provides (the rest have defaults)
REQUIRED_PRIMITIVES: tuple[str, ...] = (
    "share_of",
    "lookup",
    "open",
    "fstat",
    "close_handle",
    "read_at",
    "write_at",
    "list_dir",
    "mkdir",
    "rename",
    "unlink",
    "rmdir",
    "set_size",
    "statvfs",
)

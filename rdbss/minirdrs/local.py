"""The local mini-redirector: serves configured local folders as ``\\\\<server>\\<share>``.

Config: ``{"server": "local", "shares": {"data": "/abs/path", ...}}``, optionally
``"aliases": ["other"]``: more server names for the same shares (each its own connection).
Share names are case-insensitive, as on Windows; file names are whatever the host file system
makes them (case sensitive on Linux, which the volume attributes say).

Every share-relative path is checked before use: NUL, ``:`` (alternate data streams) and ``..``
are refused, and the host location, resolved with ``realpath``, must stay inside the share's
folder, so no symbolic link leads out of it. Files stay open as descriptors (``O_CLOEXEC``,
``O_NOFOLLOW``) keyed by the SRV_OPEN id this class hands out. Error messages name the
share-relative path, never the host path of a share.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import stat
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rdbss.minirdrs.base import FILE_INFO_CLASSES as _FILE_INFO_CLASSES
from rdbss.minirdrs.base import (
    MAX_READ_BYTES,
    MiniRdr,
    OpenBase,
    OpenTable,
    Result,
    lowio_of,
    posix_volume,
    set_file_info_with,
    volume_info_class,
)
from rdbss.minirdrs.common.args import TIME_ARGS, arg_bool, arg_int, arg_str, components, show
from rdbss.minirdrs.common.eas import parse_set as parse_eas
from rdbss.minirdrs.common.fileinfo import file_info
from rdbss.minirdrs.common.inotify_watches import InotifyWatches
from rdbss.minirdrs.common.listing import Enumerations
from rdbss.minirdrs.common.locks import FileLocks, Lock
from rdbss.minirdrs.common.notify import WatchLimits, notify_interval
from rdbss.minirdrs.common.security import (
    POSIX_INFORMATION,
    PosixSecurity,
    check_query_information,
    posix_change,
    posix_descriptor,
)
from rdbss.minirdrs.common.shares import MAX_SHARE_NAME_CHARS, check_share_name
from rdbss.minirdrs.common.wildcard import is_name_in_expression
from rdbss.model.create import (
    INFORMATION,
    Action,
    check_create_parameters,
    check_open_existing,
    data_access,
    decide_create,
)
from rdbss.model.dispatch import is_query_open
from rdbss.wire.constants import (
    CreateDisposition,
    CreateInformation,
    CreateOptions,
    FileAttributes,
    FileInformationClass,
    FsctlCode,
    FsInformationClass,
    LowIoOp,
)
from rdbss.wire.rxcontext import CreateParameters, LowIoParameters, RxContext
from rdbss.wire.status import NtStatus, NtStatusError, status_from_errno

S = NtStatus
D = CreateDisposition
Info = FileInformationClass
FsInfo = FsInformationClass

_SL_FAIL_IMMEDIATELY = 0x01
_EA_PREFIX = "user."
_LOCK_MARGIN_S = 0.5  # a waiting lock gives up this long before its deadline
FS_NAME = "rdbss-local"

_O_PATH = getattr(os, "O_PATH", 0)
_O_COMMON = os.O_CLOEXEC | os.O_NOFOLLOW
# plain ints: IntFlag arithmetic costs a microsecond, and a create tests these
_DELETE_ON_CLOSE = int(CreateOptions.FILE_DELETE_ON_CLOSE)
_DIRECTORY_FILE = int(CreateOptions.FILE_DIRECTORY_FILE)

__all__ = [
    "MAX_READ_BYTES",
    "MAX_SHARE_NAME_CHARS",
    "LocalMiniRdr",
    "check_share_name",
    "file_info",
    "posix_security",
]


@dataclass(slots=True)
class _Share:
    name: str  # as configured
    root: str  # absolute, user-expanded host folder


@dataclass(slots=True, kw_only=True)
class _Open(OpenBase[_Share]):
    """One SRV_OPEN: an open file or directory of a share, as a host descriptor."""

    fd: int
    path_only: bool = False  # an O_PATH descriptor (attributes-only open of an unreadable file)
    delete_pending: bool = False
    #: who took byte-range locks through it: handles (Fobx ids), since the core may give one
    #: SrvOpen to several handles (collapsing) and a lock belongs to a handle
    lock_owners: set[int] = field(default_factory=set)


def _error(status: int, message: str) -> NtStatusError:
    return NtStatusError(status, message)


def _os_error(exc: OSError, what: str, rel: str) -> NtStatusError:
    """An NtStatusError for a failed host call, without the host path."""
    reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
    return _error(status_from_errno(exc.errno), f"{what} {show(rel)}: {reason}")


def _within(root: str, real: str) -> bool:
    """``real`` (normalized, absolute) is ``root`` or under it."""
    return real == root or real.startswith(root if root.endswith("/") else root + "/")


def _resolve_below(root: str, parts: list[str]) -> tuple[str, os.stat_result | None]:
    """``os.path.realpath(root/parts...)`` for a ``root`` that is resolved already: one lstat
    per component below it (realpath walks every component from /), and realpath itself as
    soon as a component is a symbolic link. Like realpath, what does not exist is kept as
    named. Also the lstat of the last component when it was taken (it exists and is no link),
    else None."""
    current = root
    st: os.stat_result | None = None
    for i, part in enumerate(parts):
        candidate = current + part if current.endswith("/") else current + "/" + part
        try:
            st = os.lstat(candidate)
        except OSError:
            return os.path.join(candidate, *parts[i + 1 :]), None
        if stat.S_ISLNK(st.st_mode):
            return os.path.realpath(os.path.join(root, *parts)), None
        current = candidate
    return current, st


def posix_security(st: os.stat_result) -> PosixSecurity:
    """Owner, group and mode of a stat result, with the names this host knows for them."""
    try:
        owner: str | None = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = None
    try:
        group: str | None = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = None
    return PosixSecurity(st.st_uid, st.st_gid, st.st_mode, owner, group)


def _lstat(host: str) -> os.stat_result | None:
    """lstat, or None when nothing is there (or a parent is not a directory)."""
    try:
        return os.lstat(host)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _is_dir_empty(fd_or_path: int | str) -> bool:
    with os.scandir(fd_or_path) as entries:
        return next(entries, None) is None


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


class LocalMiniRdr(MiniRdr):
    """Serves local folders as the shares of one server name."""

    kind: ClassVar[str] = "local"
    blocking: ClassVar[bool] = False
    lowio_ops: ClassVar[frozenset[LowIoOp]] = frozenset(
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

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, config)
        server = config.get("server", "local")
        if not isinstance(server, str) or not server:
            raise ValueError("local mini-redirector: 'server' must be a non-empty string")
        self.server = server
        # share name -> (resolved folder, its device and inode): see _real_root
        self._real_roots: dict[str, tuple[str, tuple[int, int]]] = {}
        aliases = config.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
            raise ValueError("local mini-redirector: 'aliases' must be a list of server names")
        # other names for the same folders (each is its own SrvCall, i.e. its own connection)
        self._names = {name.lower() for name in [server, *aliases]}
        self.aliases = list(aliases)
        shares = config.get("shares", {})
        if not isinstance(shares, Mapping):
            raise ValueError("local mini-redirector: 'shares' must be a map of name -> folder")
        self._lock = threading.RLock()
        self._shares: dict[str, _Share] = {}
        self._opens: OpenTable[_Open] = OpenTable()
        # byte-range locks by file (st_dev, st_ino); waiting lock requests by token
        self._file_locks: dict[tuple[int, int], FileLocks] = {}
        self._lock_waiters: dict[tuple[int, int], tuple[RxContext, tuple[int, int]]] = {}
        # change notification: the kernel's (inotify), no polling; ``notify_interval`` is
        # checked (one option for every kind) but has nothing to time here
        notify_interval(config, "local", 1.0)
        self._watches = InotifyWatches(
            self.complete_later,
            name=f"local-{name}",
            limits=WatchLimits.from_config(config, "local"),
        )
        self._enumerations: Enumerations[None] = Enumerations()
        for share, folder in shares.items():
            if not isinstance(folder, str) or not folder:
                raise ValueError(f"local mini-redirector: share {share!r} needs a folder path")
            try:
                check_share_name(share)
            except NtStatusError as exc:
                raise ValueError(f"local mini-redirector: {exc.strerror}") from None
            if share.lower() in self._shares:
                raise ValueError(f"local mini-redirector: share {share!r} given twice")
            self._shares[share.lower()] = _Share(share, self._host_folder(folder))

    def servers(self) -> list[str]:
        return [self.server, *self.aliases]

    def close(self) -> None:
        """Close every open, deleting what was delete-pending as closing its handle would."""
        self._watches.close()
        opens = self._opens.clear()
        with self._lock:
            self._enumerations.clear()
        for op in opens:
            _close_quietly(op.fd)
            if op.delete_pending:
                with contextlib.suppress(NtStatusError):
                    self._delete(op)

    # --- shares and paths ---------------------------------------------------------------------
    @staticmethod
    def _host_folder(folder: str) -> str:
        return os.path.abspath(os.path.expanduser(folder))

    def _share(self, name: str | None) -> _Share:
        with self._lock:
            share = self._shares.get(name.lower()) if isinstance(name, str) else None
        if share is None:
            raise _error(S.STATUS_BAD_NETWORK_NAME, f"no share named {name!r}")
        return share

    @staticmethod
    def _root(share: _Share) -> str:
        root = os.path.realpath(share.root)
        if not os.path.isdir(root):
            raise _error(S.STATUS_BAD_NETWORK_NAME, f"the folder of share {share.name!r} is gone")
        return root

    def _host_path(self, share: _Share, rel: str) -> str:
        """The fully resolved host path of ``rel``; ACCESS_DENIED if it leaves the share."""
        return self._host_entry_stat(share, rel)[0]

    def _host_entry_stat(self, share: _Share, rel: str) -> tuple[str, os.stat_result | None]:
        """``_host_path``, and the lstat of what it names when resolving it took one (a path
        with no symbolic link in it, below the share root), else None."""
        parts = components(rel)
        root = self._real_root(share)
        real, st = _resolve_below(root, parts)
        if not _within(root, real):
            raise _error(S.STATUS_ACCESS_DENIED, f"{show(rel)} leads outside the share")
        return real, st

    def _real_root(self, share: _Share) -> str:
        """``_root(share)``, resolved once and then kept while the share's folder is the same
        directory (one stat a request instead of an lstat per component from /)."""
        try:
            info = os.stat(share.root)
        except OSError:
            info = None
        if info is not None and stat.S_ISDIR(info.st_mode):
            known = self._real_roots.get(share.name)
            if known is not None and known[1] == (info.st_dev, info.st_ino):
                return known[0]
        root = self._root(share)  # raises when the folder is gone
        try:
            moved = os.stat(root)
        except OSError:
            return root
        self._real_roots[share.name] = (root, (moved.st_dev, moved.st_ino))
        return root

    def _host_entry(self, share: _Share, rel: str) -> str:
        """The host path of the directory entry ``rel`` itself: its parent resolved, its last
        component not followed (so deleting or renaming a link acts on the link)."""
        parts = components(rel)
        if not parts:
            raise _error(S.STATUS_ACCESS_DENIED, "the share root cannot be renamed or deleted")
        root = self._root(share)
        parent = os.path.realpath(os.path.join(root, *parts[:-1]))
        if not _within(root, parent):
            raise _error(S.STATUS_ACCESS_DENIED, f"{show(rel)} leads outside the share")
        return os.path.join(parent, parts[-1])

    @staticmethod
    def _check_parent(host: str, rel: str) -> None:
        try:
            parent_is_dir = stat.S_ISDIR(os.stat(os.path.dirname(host)).st_mode)
        except OSError:
            parent_is_dir = False
        if not parent_is_dir:
            raise _error(S.STATUS_OBJECT_PATH_NOT_FOUND, f"{show(rel)}: parent folder not found")

    # --- the SRV_OPEN table -------------------------------------------------------------------
    def _open_of(self, ctx: RxContext) -> _Open:
        return self._opens.get(ctx.srv_open)

    # --- connections --------------------------------------------------------------------------
    def create_srv_call(self, ctx: RxContext) -> Result:
        if not isinstance(ctx.srv_call, str) or ctx.srv_call.lower() not in self._names:
            raise _error(S.STATUS_BAD_NETWORK_PATH, f"server {ctx.srv_call!r} is not served here")
        return Result()

    def srv_call_winner_notify(self, ctx: RxContext) -> Result:
        return Result()

    def create_v_net_root(self, ctx: RxContext) -> Result:
        if ctx.srv_call is not None and ctx.srv_call.lower() not in self._names:
            raise _error(S.STATUS_BAD_NETWORK_PATH, f"server {ctx.srv_call!r} is not served here")
        share = self._share(ctx.net_root)
        self._root(share)
        return Result()

    def finalize_v_net_root(self, ctx: RxContext) -> Result:
        return Result()

    def finalize_net_root(self, ctx: RxContext) -> Result:
        return Result()

    def finalize_srv_call(self, ctx: RxContext) -> Result:
        return Result()

    # --- create -------------------------------------------------------------------------------
    def create(self, ctx: RxContext) -> Result:
        share = self._share(ctx.net_root)
        rel = "\\".join(components(ctx.path or ""))
        params = ctx.create or CreateParameters()
        host = self._host_path(share, rel)
        disposition, options = check_create_parameters(params)
        if self._opens.delete_pending_at(share, rel):
            raise _error(S.STATUS_DELETE_PENDING, f"{show(rel)} is being deleted")
        st = _lstat(host)
        if st is None:
            op = self._create_new(share, rel, host, params, disposition, options)
            information = int(CreateInformation.FILE_CREATED)
        else:
            op, information = self._open_existing(share, rel, host, st, params, disposition)
        try:
            if options & _DELETE_ON_CLOSE:
                self._check_deletable(op)
                self._opens.mark_delete_pending(op)
            info = file_info(os.fstat(op.fd), rel, delete_pending=op.delete_pending)
        except NtStatusError:
            self._abandon(op, created=st is None)
            raise
        except OSError as exc:
            self._abandon(op, created=st is None)
            raise _os_error(exc, "cannot open", rel) from None
        srv_open = self._opens.add(op)
        return Result(
            information=information,
            result={**info, "srv_open": srv_open, "directory": op.is_dir},
        )

    def query_open(self, ctx: RxContext) -> Result:
        """MRxQueryOpen: what ``create`` answers for FILE_READ_ATTRIBUTES and FILE_OPEN (the
        same checks, in the same order, so the same status), from an lstat instead of an open
        descriptor, and no SrvOpen to close afterwards."""
        share = self._share(ctx.net_root)
        rel = "\\".join(components(ctx.path or ""))
        params = ctx.create or CreateParameters()
        host, resolved = self._host_entry_stat(share, rel)
        disposition, options = check_create_parameters(params)
        if not is_query_open(params):
            raise _error(
                S.STATUS_INVALID_PARAMETER, "MRxQueryOpen answers an open for attributes only"
            )
        if self._opens.delete_pending_at(share, rel):
            raise _error(S.STATUS_DELETE_PENDING, f"{show(rel)} is being deleted")
        st = resolved or _lstat(host)  # (the share root itself: no component to lstat)
        if st is None:
            self._check_parent(host, rel)
            raise _error(S.STATUS_OBJECT_NAME_NOT_FOUND, f"{show(rel)} not found")
        is_dir = check_open_existing(
            rel,
            options,
            disposition,
            False,
            is_dir=stat.S_ISDIR(st.st_mode),
            is_regular=stat.S_ISREG(st.st_mode),
        )
        return Result(
            information=int(CreateInformation.FILE_OPENED),
            result={**file_info(st, rel), "directory": is_dir},
        )

    def _abandon(self, op: _Open, *, created: bool) -> None:
        """Undo a create that failed after opening: close, and remove what it made."""
        _close_quietly(op.fd)
        if created:
            with contextlib.suppress(NtStatusError):
                self._delete(op)

    def _create_new(
        self,
        share: _Share,
        rel: str,
        host: str,
        params: CreateParameters,
        disposition: D,
        options: int,
    ) -> _Open:
        self._check_parent(host, rel)
        can_read, can_write, append_only = data_access(params.desired_access)
        decide_create(rel, disposition, options, can_write, exists=False)
        readonly = bool(params.file_attributes & FileAttributes.READONLY)
        try:
            if options & _DIRECTORY_FILE:
                os.mkdir(host, 0o777)
                fd = os.open(host, os.O_RDONLY | os.O_DIRECTORY | _O_COMMON)
                is_dir = True
            else:
                flags = os.O_CREAT | os.O_EXCL | os.O_NONBLOCK | _O_COMMON
                fd = os.open(host, flags | self._rw_flags(can_read, can_write), 0o666)
                is_dir = False
        except OSError as exc:
            raise _os_error(exc, "cannot create", rel) from None
        op = _Open(share, rel, is_dir, can_read, can_write, append_only, fd=fd)
        if readonly:
            self._make_readonly(op, created=True)
        return op

    def _make_readonly(self, op: _Open, *, created: bool) -> None:
        """Apply FILE_ATTRIBUTE_READONLY (clear the write bits) to a just-opened entry."""
        try:
            os.chmod(op.fd, stat.S_IMODE(os.fstat(op.fd).st_mode) & ~0o222)
        except OSError as exc:
            self._abandon(op, created=created)
            raise _os_error(exc, "cannot set attributes of", op.path) from None

    def _open_existing(
        self,
        share: _Share,
        rel: str,
        host: str,
        st: os.stat_result,
        params: CreateParameters,
        disposition: D,
    ) -> tuple[_Open, int]:
        options = int(params.create_options)
        can_read, can_write, append_only = data_access(params.desired_access)
        is_dir = stat.S_ISDIR(st.st_mode)
        action = decide_create(
            rel,
            disposition,
            options,
            can_write,
            exists=True,
            is_dir=is_dir,
            is_regular=stat.S_ISREG(st.st_mode),
        )
        if is_dir:
            op = self._open_dir(share, rel, host, can_read, can_write)
            return op, int(INFORMATION[action])
        overwrite = action is not Action.OPEN
        if (can_write or overwrite) and not st.st_mode & 0o222:
            raise _error(S.STATUS_ACCESS_DENIED, f"{show(rel)} is read-only")
        flags = os.O_NONBLOCK | _O_COMMON | self._rw_flags(can_read, can_write or overwrite)
        if overwrite:
            flags |= os.O_TRUNC
        fd, path_only = self._open_fd(host, rel, flags, wants_data=can_read or can_write)
        op = _Open(share, rel, False, can_read, can_write, append_only, fd=fd, path_only=path_only)
        try:
            is_regular = stat.S_ISREG(os.fstat(fd).st_mode)
        except OSError:
            is_regular = False
        if not is_regular:  # replaced since the lstat
            _close_quietly(fd)
            raise _error(S.STATUS_ACCESS_DENIED, f"{show(rel)} is not a regular file")
        if overwrite and params.file_attributes & FileAttributes.READONLY:
            self._make_readonly(op, created=False)
        return op, int(INFORMATION[action])

    def _open_dir(
        self, share: _Share, rel: str, host: str, can_read: bool, can_write: bool
    ) -> _Open:
        fd, path_only = self._open_fd(
            host, rel, os.O_RDONLY | os.O_DIRECTORY | _O_COMMON, wants_data=can_read
        )
        return _Open(share, rel, True, can_read, can_write, fd=fd, path_only=path_only)

    @staticmethod
    def _open_fd(host: str, rel: str, flags: int, *, wants_data: bool) -> tuple[int, bool]:
        """os.open; an attributes-only open of an unreadable entry falls back to O_PATH."""
        try:
            return os.open(host, flags), False
        except PermissionError as exc:
            if wants_data or not _O_PATH or flags & (os.O_WRONLY | os.O_RDWR):
                raise _os_error(exc, "cannot open", rel) from None
            try:
                return os.open(host, _O_PATH | _O_COMMON), True
            except OSError as exc2:
                raise _os_error(exc2, "cannot open", rel) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _error(S.STATUS_ACCESS_DENIED, f"{show(rel)} is a symbolic link") from None
            raise _os_error(exc, "cannot open", rel) from None

    @staticmethod
    def _rw_flags(can_read: bool, can_write: bool) -> int:
        if can_write:
            return os.O_RDWR if can_read else os.O_WRONLY
        return os.O_RDONLY

    def _check_deletable(self, op: _Open) -> None:
        """Refuse what cannot be marked delete-pending: the share root, a non-empty directory,
        a read-only file."""
        if not op.path:
            raise _error(S.STATUS_ACCESS_DENIED, "the share root cannot be deleted")
        try:
            if op.is_dir:
                if not op.path_only and not _is_dir_empty(op.fd):
                    raise _error(S.STATUS_DIRECTORY_NOT_EMPTY, f"{show(op.path)} is not empty")
            elif not os.fstat(op.fd).st_mode & 0o222:
                raise _error(S.STATUS_CANNOT_DELETE, f"{show(op.path)} is read-only")
        except NtStatusError:
            raise
        except OSError as exc:
            raise _os_error(exc, "cannot delete", op.path) from None

    # --- low I/O ------------------------------------------------------------------------------
    def low_io_submit(
        self, ctx: RxContext, payload: bytes | bytearray | memoryview | None = None
    ) -> Result:
        op = self._open_of(ctx)
        lowio = lowio_of(ctx)
        if lowio.operation == LowIoOp.NOTIFY_CHANGE_DIRECTORY:
            return self._notify(ctx, op, lowio.completion_filter, lowio.watch_tree)
        if op.is_dir:
            raise _error(S.STATUS_INVALID_DEVICE_REQUEST, f"{show(op.path)} is a directory")
        owner = self._lock_owner(ctx)
        if lowio.operation in (LowIoOp.READ, LowIoOp.WRITE):
            write = lowio.operation == LowIoOp.WRITE
            length = len(payload) if write and payload is not None else lowio.length
            self._check_io_locks(op, owner, lowio.offset, length, write)
        if lowio.operation == LowIoOp.READ:
            return self._read(op, lowio.offset, lowio.length)
        if lowio.operation == LowIoOp.WRITE:
            if lowio.length < 0:
                raise _error(S.STATUS_INVALID_PARAMETER, f"negative length {lowio.length}")
            return self._write(op, lowio.offset, payload)
        with self._lock:  # the lock table is shared with the waiting locks' timers
            if lowio.operation in (LowIoOp.SHAREDLOCK, LowIoOp.EXCLUSIVELOCK):
                op.lock_owners.add(owner)
                return self._lock_range(ctx, op, owner)
            if lowio.operation == LowIoOp.UNLOCK:
                key = self._file_key(op)
                locks = self._file_locks.get(key, FileLocks())
                self._granted(key, locks.unlock(owner, lowio.offset, lowio.length))
                return Result()
            if lowio.operation == LowIoOp.UNLOCK_MULTIPLE:
                self._release_locks(op, owner)
                return Result()
        raise _error(
            S.STATUS_INVALID_DEVICE_REQUEST, f"low I/O operation {lowio.operation!r} not supported"
        )

    # --- change notification (the kernel's inotify, read by one thread) ----------------------
    def _notify(self, ctx: RxContext, op: _Open, completion_filter: int, tree: bool) -> Result:
        if not op.is_dir:
            raise _error(S.STATUS_INVALID_PARAMETER, f"{show(op.path)} is not a directory")
        folder = self._host_entry(op.share, op.path) if op.path else self._root(op.share)
        return self._watches.notify(
            ctx, folder, completion_filter=completion_filter, tree=tree, what=show(op.path)
        )

    # --- byte-range locks (kept here: the local file system has no Windows locks) ------------
    @staticmethod
    def _lock_owner(ctx: RxContext) -> int:
        """Locks belong to a handle (the Fobx), not to the SrvOpen several handles may share;
        a request without a handle (never from the core) owns by its SrvOpen."""
        if ctx.fobx is not None:
            return ctx.fobx
        return -int(ctx.srv_open or 1)

    @staticmethod
    def _file_key(op: _Open) -> tuple[int, int]:
        st = os.fstat(op.fd)
        return st.st_dev, st.st_ino

    def _lock_range(self, ctx: RxContext, op: _Open, owner: int) -> Result:
        lowio = ctx.lowio
        assert lowio is not None
        key = self._file_key(op)
        locks = self._file_locks.setdefault(key, FileLocks())
        lock = Lock(owner, lowio.offset, lowio.length, lowio.operation == LowIoOp.EXCLUSIVELOCK)
        if lowio.flags & _SL_FAIL_IMMEDIATELY:
            locks.lock(lock)
            return Result()
        token = (ctx.request_id, owner)
        if locks.lock(lock, token):
            return Result()
        # wait (STATUS_PENDING) until an unlock grants it, or give up just before the deadline
        self._lock_waiters[token] = (ctx, key)
        wait_s = max(0.0, ctx.timeout_ms / 1000.0 - _LOCK_MARGIN_S)
        timer = threading.Timer(wait_s, self._lock_timed_out, args=(token,))
        timer.daemon = True
        timer.start()
        return Result(status=S.STATUS_PENDING)

    def _lock_timed_out(self, token: tuple[int, int]) -> None:
        self._stop_waiting(
            token, Result(status=S.STATUS_IO_TIMEOUT, message="the lock was not granted in time")
        )

    def _stop_waiting(self, token: tuple[int, int], result: Result) -> bool:
        """A waiting lock gives up (deadline or cancel): it never gets the range, and the
        waiters it held back (arrival order) are granted if they can be now."""
        with self._lock:
            entry = self._lock_waiters.pop(token, None)
            if entry is None:
                return False  # granted or ended meanwhile
            ctx, key = entry
            locks = self._file_locks.get(key)
            if locks is not None:
                locks.cancel(token)
                self._granted(key, locks.grant_waiting())
        self.complete_later(ctx, result)
        return True

    # --- cancellation (the cancel routine of a pending notify or lock) ------------------------
    def cancel(self, request_id: int, status: int = S.STATUS_CANCELLED) -> bool:
        if self._watches.cancel(request_id, status):
            return True
        with self._lock:
            token = next((t for t in self._lock_waiters if t[0] == request_id), None)
        result = Result(status=status, message="cancelled")
        return token is not None and self._stop_waiting(token, result)

    def pending_requests(self) -> int:
        with self._lock:
            waiting = len(self._lock_waiters)
        return self._watches.pending + waiting

    def _granted(self, key: tuple[int, int], tokens: list[Any]) -> None:
        for token in tokens:
            entry = self._lock_waiters.pop(token, None)
            if entry is not None:
                self.complete_later(entry[0], Result())
        locks = self._file_locks.get(key)
        if locks is not None and locks.empty:
            del self._file_locks[key]

    def _release_locks(self, op: _Open, owner: int) -> None:
        """UNLOCK_ALL, and at close: drop the open's locks, cancel its waiting ones."""
        try:
            key = self._file_key(op)
        except OSError:
            return
        locks = self._file_locks.get(key)
        if locks is None:
            return
        for token, (ctx, _) in list(self._lock_waiters.items()):
            if token[1] == owner:
                del self._lock_waiters[token]
                self.complete_later(ctx, Result(status=S.STATUS_CANCELLED, message="closed"))
        self._granted(key, locks.unlock_all(owner))

    def _check_io_locks(self, op: _Open, owner: int, offset: int, length: int, write: bool) -> None:
        """Mandatory byte-range locks: I/O into a range another open locked conflicts."""
        if self._file_locks:
            locks = self._file_locks.get(self._file_key(op))
            if locks is not None:
                locks.check_io(owner, max(offset, 0), length, write)

    def prepare_read_into(
        self, ctx: RxContext, length: int
    ) -> Callable[[memoryview], Result] | None:
        """A large shared-memory read: checked here, copied on a pool thread from a duplicate of
        the descriptor (a close of the handle meanwhile leaves it valid)."""
        op, lowio = self._shared_read_of(ctx, length)
        if not op.can_read:
            raise _error(S.STATUS_ACCESS_DENIED, f"{show(op.path)} is not open for reading")
        offset = lowio.offset
        if offset < 0 or not 0 < length <= MAX_READ_BYTES:
            raise _error(S.STATUS_INVALID_PARAMETER, f"bad read range {offset}+{length}")
        try:
            fd = os.dup(op.fd)
        except OSError as exc:
            raise _os_error(exc, "cannot read", op.path) from None
        path = op.path

        def copy(target: memoryview) -> Result:
            try:
                return self._read_into(fd, path, offset, target)
            finally:
                os.close(fd)

        return copy

    def read_into(self, ctx: RxContext, target: memoryview) -> Result | None:
        """The shared-memory path: the file's bytes go straight into the client's arena."""
        op, lowio = self._shared_read_of(ctx, len(target))
        return self._read(op, lowio.offset, len(target), into=target)

    def _shared_read_of(self, ctx: RxContext, length: int) -> tuple[_Open, LowIoParameters]:
        """The open and parameters of a shared-memory READ of ``length`` bytes, checked."""
        op = self._open_of(ctx)
        lowio = lowio_of(ctx)
        if op.is_dir:
            raise _error(S.STATUS_INVALID_DEVICE_REQUEST, f"{show(op.path)} is a directory")
        self._check_io_locks(op, self._lock_owner(ctx), lowio.offset, length, False)
        return op, lowio

    def _read(self, op: _Open, offset: int, length: int, into: memoryview | None = None) -> Result:
        if not op.can_read:
            raise _error(S.STATUS_ACCESS_DENIED, f"{show(op.path)} is not open for reading")
        if offset < 0 or length < 0:
            raise _error(S.STATUS_INVALID_PARAMETER, f"bad read range {offset}+{length}")
        if length > MAX_READ_BYTES:
            raise _error(
                S.STATUS_INVALID_PARAMETER, f"read of {length} bytes over {MAX_READ_BYTES}"
            )
        if length == 0:
            return Result(information=0, payload=b"")
        if into is not None:
            return self._read_into(op.fd, op.path, offset, into)
        chunks: list[bytes] = []
        done = 0
        try:
            while done < length:
                chunk = os.pread(op.fd, length - done, offset + done)
                if not chunk:
                    break
                chunks.append(chunk)
                done += len(chunk)
        except OSError as exc:
            raise _os_error(exc, "cannot read", op.path) from None
        if not done:
            raise _error(S.STATUS_END_OF_FILE, f"{show(op.path)}: offset {offset} is past EOF")
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return Result(information=done, payload=data)

    @staticmethod
    def _read_into(fd: int, rel: str, offset: int, into: memoryview) -> Result:
        done = 0
        try:
            while done < len(into):
                n = os.preadv(fd, [into[done:]], offset + done)
                if not n:
                    break
                done += n
        except OSError as exc:
            raise _os_error(exc, "cannot read", rel) from None
        if not done:
            raise _error(S.STATUS_END_OF_FILE, f"{show(rel)}: offset {offset} is past EOF")
        return Result(information=done)

    def _write(
        self, op: _Open, offset: int, payload: bytes | bytearray | memoryview | None
    ) -> Result:
        if not op.can_write:
            raise _error(S.STATUS_ACCESS_DENIED, f"{show(op.path)} is not open for writing")
        if offset < -1:
            raise _error(S.STATUS_INVALID_PARAMETER, f"bad write offset {offset}")
        if payload is None:
            raise _error(S.STATUS_INVALID_PARAMETER, "write without data")
        view = memoryview(payload).cast("B")
        try:
            if offset == -1 or op.append_only:
                offset = os.fstat(op.fd).st_size
            written = 0
            while written < len(view):
                written += os.pwrite(op.fd, view[written:], offset + written)
        except OSError as exc:
            raise _os_error(exc, "cannot write", op.path) from None
        return Result(information=written)

    # --- extended attributes: kept as "user." xattrs (where Samba keeps them too) ---------------
    def query_ea_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        target: int | str = op.fd if not op.path_only else self._host_entry(op.share, op.path)
        try:
            names = [n for n in os.listxattr(target) if n.startswith(_EA_PREFIX)]
            eas = {n[len(_EA_PREFIX) :]: os.getxattr(target, n) for n in names}
        except OSError as exc:
            if exc.errno == errno.ENOTSUP:
                raise _error(S.STATUS_NOT_SUPPORTED, "no extended attributes here") from None
            raise _os_error(exc, "cannot read the EAs of", op.path) from None
        return Result(result={"eas": eas})

    def set_ea_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        changes = parse_eas(ctx.info.args if ctx.info is not None else None)
        target: int | str = op.fd if not op.path_only else self._host_entry(op.share, op.path)
        try:
            for name, value in changes.items():
                if value is None:
                    with contextlib.suppress(OSError):  # deleting an absent EA is fine
                        os.removexattr(target, _EA_PREFIX + name)
                else:
                    os.setxattr(target, _EA_PREFIX + name, value)
        except OSError as exc:
            if exc.errno == errno.ENOTSUP:
                raise _error(S.STATUS_NOT_SUPPORTED, "no extended attributes here") from None
            if exc.errno == errno.ENOSPC or exc.errno == errno.E2BIG:
                raise _error(S.STATUS_EA_TOO_LARGE, "the EAs do not fit") from None
            raise _os_error(exc, "cannot set the EAs of", op.path) from None
        return Result()

    # --- security: the POSIX owner, group and mode as a security descriptor ------------------
    def _fd_path(self, op: _Open) -> str:
        """A path naming exactly the open file (also for an O_PATH descriptor)."""
        return f"/proc/self/fd/{op.fd}"

    def query_sd_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        info = check_query_information(
            ctx.info.info_class if ctx.info is not None else None, POSIX_INFORMATION
        )
        try:
            st = os.fstat(op.fd)
        except OSError as exc:
            raise _os_error(exc, "cannot query the security of", op.path) from None
        return Result(result=posix_descriptor(info, posix_security(st)))

    def set_sd_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        info = ctx.info.info_class if ctx.info is not None else None
        args = ctx.info.args if ctx.info is not None else None
        try:
            st = os.fstat(op.fd)
            change = posix_change(info, args, posix_security(st))
            if change.uid is not None or change.gid is not None:
                uid = -1 if change.uid is None else change.uid
                gid = -1 if change.gid is None else change.gid
                os.chown(self._fd_path(op), uid, gid)
            if change.permissions is not None:
                os.chmod(self._fd_path(op), change.permissions)
        except NtStatusError:
            raise
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise _error(
                    S.STATUS_ACCESS_DENIED,
                    f"cannot change the security of {show(op.path)}: "
                    f"{os.strerror(exc.errno)} (only the owner may chmod, only root may chown)",
                ) from None
            raise _os_error(exc, "cannot change the security of", op.path) from None
        return Result()

    def flush(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        if op.path_only:
            return Result()
        try:
            os.fsync(op.fd)
        except OSError as exc:
            raise _os_error(exc, "cannot flush", op.path) from None
        return Result()

    # --- file information ---------------------------------------------------------------------
    def query_file_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        info_class = ctx.info.info_class if ctx.info is not None else None
        if info_class not in _FILE_INFO_CLASSES:
            raise _error(S.STATUS_INVALID_PARAMETER, f"file info class {info_class!r}")
        try:
            st = os.fstat(op.fd)
        except OSError as exc:
            raise _os_error(exc, "cannot query", op.path) from None
        info = file_info(st, op.path, delete_pending=op.delete_pending)
        info["position"] = 0
        return Result(result=info)

    def set_file_info(self, ctx: RxContext) -> Result:
        return set_file_info_with(self, self._open_of(ctx), ctx)

    def _set_basic(self, op: _Open, args: Mapping[str, Any]) -> None:
        times = {key: arg_int(args, key, default=0) for key in TIME_ARGS}
        attributes = arg_int(args, "attributes", default=0)
        if attributes & FileAttributes.DIRECTORY and not op.is_dir:
            raise _error(S.STATUS_INVALID_PARAMETER, "attributes: DIRECTORY on a file")
        target: int | str = self._host_path(op.share, op.path) if op.path_only else op.fd
        try:
            st = os.stat(target)
            atime = times["last_access_time"] if times["last_access_time"] > 0 else st.st_atime_ns
            mtime = times["last_write_time"] if times["last_write_time"] > 0 else st.st_mtime_ns
            if times["last_access_time"] > 0 or times["last_write_time"] > 0:
                os.utime(target, ns=(atime, mtime))
            if attributes:
                if attributes & FileAttributes.READONLY:
                    mode = st.st_mode & ~0o222
                else:
                    mode = st.st_mode | 0o200
                if mode != st.st_mode:
                    os.chmod(target, stat.S_IMODE(mode))
        except OSError as exc:
            raise _os_error(exc, "cannot set attributes of", op.path) from None

    def _writable_file(self, op: _Open, what: str) -> None:
        if op.is_dir:
            raise _error(S.STATUS_INVALID_PARAMETER, f"{what} of a directory")
        if not op.can_write:
            raise _error(S.STATUS_ACCESS_DENIED, f"{show(op.path)} is not open for writing")

    def _set_end_of_file(self, op: _Open, args: Mapping[str, Any]) -> None:
        size = arg_int(args, "size")
        if size < 0:
            raise _error(S.STATUS_INVALID_PARAMETER, "argument 'size' must not be negative")
        self._writable_file(op, "end of file")
        try:
            os.ftruncate(op.fd, size)
        except OSError as exc:
            raise _os_error(exc, "cannot set the size of", op.path) from None

    def _set_allocation(self, op: _Open, args: Mapping[str, Any]) -> None:
        size = arg_int(args, "size")
        if size < 0:
            raise _error(S.STATUS_INVALID_PARAMETER, "argument 'size' must not be negative")
        self._writable_file(op, "allocation size")
        try:
            if size < os.fstat(op.fd).st_size:
                os.ftruncate(op.fd, size)
        except OSError as exc:
            raise _os_error(exc, "cannot set the allocation of", op.path) from None

    def _set_rename(self, op: _Open, args: Mapping[str, Any]) -> None:
        target_rel = "\\".join(components(arg_str(args, "target")))
        replace = arg_bool(args, "replace", default=False)
        if not target_rel:
            raise _error(S.STATUS_INVALID_PARAMETER, "cannot rename onto the share root")
        if target_rel == op.path:
            return
        source = self._host_entry(op.share, op.path)
        target = self._host_entry(op.share, target_rel)
        self._check_parent(target, target_rel)
        existing = _lstat(target)
        if existing is not None:
            if not replace:
                raise _error(S.STATUS_OBJECT_NAME_COLLISION, f"{show(target_rel)} already exists")
            if stat.S_ISDIR(existing.st_mode):
                raise _error(
                    S.STATUS_ACCESS_DENIED, f"{show(target_rel)} is a directory: cannot replace it"
                )
        try:
            os.rename(source, target)
        except OSError as exc:
            raise _os_error(exc, f"cannot rename {show(op.path)} to", target_rel) from None
        self._opens.renamed(op.share, op.path, target_rel)

    def _set_disposition(self, op: _Open, args: Mapping[str, Any]) -> None:
        delete = arg_bool(args, "delete")
        if delete:
            self._check_deletable(op)
        self._opens.mark_delete_pending(op, delete)

    # --- directories --------------------------------------------------------------------------
    def query_directory(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        if not op.is_dir:
            raise _error(S.STATUS_INVALID_PARAMETER, f"{show(op.path)} is not a directory")

        def describe(name: str, _: None) -> dict[str, Any] | None:
            rel = f"{op.path}\\{name}" if op.path else name
            st = self._entry_stat(op, name, rel)
            if st is None:
                return None  # gone since the listing
            return file_info(st, rel, delete_pending=self._opens.delete_pending_at(op.share, rel))

        return self._enumerations.query(
            ctx, show(op.path), lambda pattern: self._matching(op, pattern), describe
        )

    def _matching(self, op: _Open, pattern: str) -> list[tuple[str, None]]:
        if op.path_only:
            raise _error(S.STATUS_ACCESS_DENIED, f"{show(op.path)} cannot be listed")
        try:
            names = os.listdir(op.fd)
        except OSError as exc:
            raise _os_error(exc, "cannot list", op.path) from None
        return [(n, None) for n in sorted(names) if is_name_in_expression(pattern, n)]

    def _entry_stat(self, op: _Open, name: str, rel: str) -> os.stat_result | None:
        """The entry's stat, following a link only when it stays in the share; None if gone."""
        try:
            st = os.stat(name, dir_fd=op.fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                with contextlib.suppress(NtStatusError, OSError):
                    st = os.stat(self._host_path(op.share, rel))
            return st
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _os_error(exc, "cannot query", rel) from None

    def cleanup_fobx(self, ctx: RxContext) -> Result:
        """A handle closes: its enumeration, pending notify and byte-range locks end now, even
        when its SrvOpen stays open for other handles or for a delayed close."""
        self._enumerations.forget_fobx(ctx.fobx)
        self._watches.end(fobx=ctx.fobx)
        op = self._opens.find(ctx.srv_open)
        with self._lock:
            if op is not None and ctx.fobx is not None and ctx.fobx in op.lock_owners:
                op.lock_owners.discard(ctx.fobx)
                self._release_locks(op, ctx.fobx)
        return Result()

    # --- volume -------------------------------------------------------------------------------
    def query_volume_info(self, ctx: RxContext) -> Result:
        share = self._open_of(ctx).share if ctx.srv_open is not None else self._share(ctx.net_root)
        volume_info_class(ctx)
        root = self._root(share)
        try:
            vfs = os.statvfs(root)
        except OSError as exc:
            raise _os_error(exc, "cannot query the volume of", "") from None
        frsize = vfs.f_frsize or vfs.f_bsize
        return posix_volume(
            total=vfs.f_blocks * frsize,
            free=vfs.f_bfree * frsize,
            avail=vfs.f_bavail * frsize,
            block=frsize,
            fs_name=FS_NAME,
            label=share.name,
            serial=zlib.crc32(os.fsencode(root)),
            max_name_length=vfs.f_namemax,
        )

    # --- close --------------------------------------------------------------------------------
    def close_srv_open(self, ctx: RxContext) -> Result:
        op = self._opens.pop(ctx.srv_open)
        self._enumerations.forget_srv_open(ctx.srv_open)
        self._watches.end(srv_open=ctx.srv_open)
        with self._lock:
            for owner in op.lock_owners:
                self._release_locks(op, owner)
            op.lock_owners.clear()
        _close_quietly(op.fd)
        if op.delete_pending:
            try:
                self._delete(op)
            except NtStatusError as exc:
                return Result(status=exc.status, message=exc.strerror or "")
        return Result()

    def _delete(self, op: _Open) -> None:
        host = self._host_entry(op.share, op.path)
        try:
            if op.is_dir:
                os.rmdir(host)
            else:
                os.unlink(host)
        except FileNotFoundError:
            pass  # already gone: what was asked for
        except OSError as exc:
            raise _os_error(exc, "cannot delete", op.path) from None

    # --- management (device FCB) --------------------------------------------------------------
    def dev_fcb_control(self, ctx: RxContext) -> Result:
        code = ctx.lowio.code if ctx.lowio is not None else None
        args = ctx.args if isinstance(ctx.args, Mapping) else {}
        if code == FsctlCode.RDBSS_LIST_SHARES:
            return Result(result=self._list_shares())
        if code == FsctlCode.RDBSS_ADD_SHARE:
            self._add_share(arg_str(args, "share"), arg_str(args, "path"))
            return Result(result=self._list_shares())
        if code == FsctlCode.RDBSS_REMOVE_SHARE:
            self._remove_share(arg_str(args, "share"))
            return Result(result=self._list_shares())
        raise _error(S.STATUS_INVALID_DEVICE_REQUEST, f"control code {code!r} not supported")

    def _list_shares(self) -> dict[str, Any]:
        with self._lock:
            shares = {share.name: share.root for share in self._shares.values()}
        return {"server": self.server, "shares": shares}

    def _add_share(self, name: str, folder: str) -> None:
        check_share_name(name)
        root = self._host_folder(folder) if folder else ""
        if not root or not os.path.isdir(root):
            raise _error(S.STATUS_OBJECT_PATH_NOT_FOUND, f"folder {folder!r} is not a directory")
        with self._lock:
            if name.lower() in self._shares:
                raise _error(S.STATUS_OBJECT_NAME_COLLISION, f"share {name!r} already exists")
            self._shares[name.lower()] = _Share(name, root)

    def _remove_share(self, name: str) -> None:
        with self._lock:
            if self._shares.pop(name.lower(), None) is None:
                raise _error(S.STATUS_BAD_NETWORK_NAME, f"no share named {name!r}")

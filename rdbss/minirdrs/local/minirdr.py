"""The local mini-redirector: serves configured local folders as ``\\\\<server>\\<share>``.

Config: ``{"server": "local", "shares": {"data": "/abs/path", ...}}``, optionally
``"aliases": ["other"]``: more server names for the same shares (each its own connection).
Share names are case-insensitive, as on Windows; file names are whatever the host file system
makes them (case sensitive on Linux, which the volume attributes say).

The routines' semantics are PosixMiniRdr's (rdbss/minirdrs/posix.py); this class provides its
primitives on host descriptors, plus what only a local folder has: the kernel's change
notification (inotify), byte-range locks kept here (local/locks.py), extended attributes and
the POSIX security descriptor (local/metadata.py), shared-memory reads straight from the
descriptor, and share management. Paths are checked and resolved by local/shares.py. Files
stay open as descriptors (``O_CLOEXEC``, ``O_NOFOLLOW``) keyed by the SRV_OPEN id.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rdbss.minirdrs.base import (
    ALL_LOWIO_OPS,
    MAX_READ_BYTES,
    OpenBase,
    QuietConnections,
    Result,
    lowio_of,
)
from rdbss.minirdrs.common.args import arg_str, show
from rdbss.minirdrs.common.fileinfo import StatLike
from rdbss.minirdrs.common.fileio import pread_full
from rdbss.minirdrs.common.inotify_watches import InotifyWatches
from rdbss.minirdrs.common.notify import WatchLimits, notify_interval
from rdbss.minirdrs.local.locks import RangeLocks, lock_owner
from rdbss.minirdrs.local.metadata import (
    os_error,
    query_eas,
    query_security,
    set_eas,
    set_security,
)
from rdbss.minirdrs.local.shares import Share, Shares
from rdbss.minirdrs.posix import OpenRequest, PosixMiniRdr, Volume
from rdbss.wire.constants import FsctlCode, LowIoOp
from rdbss.wire.rxcontext import LowIoParameters, RxContext
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus

FS_NAME = "rdbss-local"
_O_PATH = getattr(os, "O_PATH", 0)
_O_COMMON = os.O_CLOEXEC | os.O_NOFOLLOW


@dataclass(slots=True, kw_only=True)
class _Open(OpenBase[Share]):
    """One SRV_OPEN: an open file or directory of a share, as a host descriptor."""

    fd: int
    path_only: bool = False  # an O_PATH descriptor (attributes-only open of an unreadable file)
    #: who took byte-range locks through it: handles (Fobx ids), since the core may give one
    #: SrvOpen to several handles (collapsing) and a lock belongs to a handle
    lock_owners: set[int] = field(default_factory=set)


def _lstat(host: str) -> os.stat_result | None:
    """lstat, or None when nothing is there (or a parent is not a directory)."""
    try:
        return os.lstat(host)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _rw_flags(can_read: bool, can_write: bool) -> int:
    if can_write:
        return os.O_RDWR if can_read else os.O_WRONLY
    return os.O_RDONLY


def _read_into(fd: int, rel: str, offset: int, into: memoryview) -> Result:
    done = 0
    try:
        while done < len(into):
            n = os.preadv(fd, [into[done:]], offset + done)
            if not n:
                break
            done += n
    except OSError as exc:
        raise os_error(exc, "cannot read", rel) from None
    if not done:
        raise NtStatusError(S.STATUS_END_OF_FILE, f"{show(rel)}: offset {offset} is past EOF")
    return Result(information=done)


class LocalMiniRdr(QuietConnections, PosixMiniRdr[Share, _Open]):
    """Serves local folders as the shares of one server name."""

    kind: ClassVar[str] = "local"
    fs_name: ClassVar[str] = FS_NAME
    blocking: ClassVar[bool] = False
    lowio_ops: ClassVar[frozenset[LowIoOp]] = ALL_LOWIO_OPS

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, config)
        server = config.get("server", "local")
        if not isinstance(server, str) or not server:
            raise ValueError("local mini-redirector: 'server' must be a non-empty string")
        self.server = server
        aliases = config.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
            raise ValueError("local mini-redirector: 'aliases' must be a list of server names")
        # other names for the same folders (each is its own SrvCall, i.e. its own connection)
        self._names = {name.lower() for name in [server, *aliases]}
        self.aliases = list(aliases)
        self._shares = Shares(config.get("shares", {}))
        self._locks = RangeLocks(self.complete_later)
        self._resolved = threading.local()  # see _host_path
        # change notification: the kernel's (inotify), no polling; ``notify_interval`` is
        # checked (one option for every kind) but has nothing to time here
        notify_interval(config, "local", 1.0)
        self._watches = InotifyWatches(
            self.complete_later,
            name=f"local-{name}",
            limits=WatchLimits.from_config(config, "local"),
        )

    def servers(self) -> list[str]:
        return [self.server, *self.aliases]

    def close(self) -> None:
        self._watches.close()
        super().close()

    # --- connections --------------------------------------------------------------------------
    def create_srv_call(self, ctx: RxContext) -> Result:
        if not isinstance(ctx.srv_call, str) or ctx.srv_call.lower() not in self._names:
            raise NtStatusError(
                S.STATUS_BAD_NETWORK_PATH, f"server {ctx.srv_call!r} is not served here"
            )
        return Result()

    def create_v_net_root(self, ctx: RxContext) -> Result:
        if ctx.srv_call is not None and ctx.srv_call.lower() not in self._names:
            raise NtStatusError(
                S.STATUS_BAD_NETWORK_PATH, f"server {ctx.srv_call!r} is not served here"
            )
        self._shares.root(self._shares.get(ctx.net_root))
        return Result()

    # --- the primitives of PosixMiniRdr -------------------------------------------------------
    def share_of(self, ctx: RxContext) -> Share:
        return self._shares.get(ctx.net_root)

    def share_label(self, share: Share) -> str:
        return share.name

    def lookup(self, share: Share, rel: str, *, follow: bool = True) -> os.stat_result | None:
        if not follow:
            return _lstat(self._shares.host_entry(share, rel))
        host, resolved = self._shares.host_entry_stat(share, rel)
        self._resolved.last = (share, rel, host)
        return resolved or _lstat(host)  # (the share root itself: no component to lstat)

    def _host_path(self, share: Share, rel: str) -> str:
        """The resolved host path of ``rel``: the one the last ``lookup`` on this thread
        resolved (a create looks up, then opens), else resolved now."""
        last = getattr(self._resolved, "last", None)
        if last is not None and last[0] is share and last[1] == rel:
            return str(last[2])
        return self._shares.host_path(share, rel)

    def open(self, share: Share, rel: str, how: OpenRequest) -> tuple[_Open, None]:
        host = self._host_path(share, rel)
        if how.directory:
            flags = os.O_RDONLY | os.O_DIRECTORY | _O_COMMON
            fd, path_only = self._open_fd(host, rel, flags, wants_data=how.can_read)
        elif how.create:
            flags = os.O_CREAT | os.O_EXCL | os.O_NONBLOCK | _O_COMMON
            fd = os.open(host, flags | _rw_flags(how.can_read, how.can_write), 0o666)
            path_only = False
        else:
            flags = os.O_NONBLOCK | _O_COMMON | _rw_flags(how.can_read, how.writes)
            if how.truncate:
                flags |= os.O_TRUNC
            fd, path_only = self._open_fd(
                host, rel, flags, wants_data=how.can_read or how.can_write
            )
        op = _Open(
            share,
            rel,
            how.directory,
            how.can_read,
            how.can_write,
            how.append_only,
            fd=fd,
            path_only=path_only,
        )
        return op, None  # the create's answer comes from fstat: one system call

    @staticmethod
    def _open_fd(host: str, rel: str, flags: int, *, wants_data: bool) -> tuple[int, bool]:
        """os.open; an attributes-only open of an unreadable entry falls back to O_PATH."""
        try:
            return os.open(host, flags), False
        except PermissionError:
            if wants_data or not _O_PATH or flags & (os.O_WRONLY | os.O_RDWR):
                raise
            return os.open(host, _O_PATH | _O_COMMON), True
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise NtStatusError(
                    S.STATUS_ACCESS_DENIED, f"{show(rel)} is a symbolic link"
                ) from None
            raise

    def fstat(self, op: _Open) -> os.stat_result:
        return os.fstat(op.fd)

    def close_handle(self, op: _Open) -> None:
        with contextlib.suppress(OSError):
            os.close(op.fd)

    def read_at(self, op: _Open, offset: int, length: int) -> bytes:
        return pread_full(op.fd, offset, length)

    def write_at(self, op: _Open, offset: int | None, data: memoryview) -> int:
        if offset is None:
            offset = os.fstat(op.fd).st_size
        written = 0
        while written < len(data):
            written += os.pwrite(op.fd, data[written:], offset + written)
        return written

    def list_dir(self, op: _Open) -> list[tuple[str, StatLike | None]]:
        if op.path_only:
            raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(op.path)} cannot be listed")
        return [(name, None) for name in os.listdir(op.fd)]

    def child_stat(self, op: _Open, name: str, rel: str) -> os.stat_result | None:
        """The entry's stat, following a link only when it stays in the share; None if
        gone."""
        try:
            st = os.stat(name, dir_fd=op.fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                with contextlib.suppress(NtStatusError, OSError):
                    st = os.stat(self._shares.host_path(op.share, rel))
            return st
        except (FileNotFoundError, NotADirectoryError):
            return None

    def is_empty(self, op: _Open) -> bool:
        if op.path_only:
            return True  # cannot be listed: the delete itself finds out
        with os.scandir(op.fd) as entries:
            return next(entries, None) is None

    def mkdir(self, share: Share, rel: str) -> None:
        os.mkdir(self._shares.host_path(share, rel), 0o777)

    def rename(self, op: _Open, target: str, *, replace: bool, existing: StatLike | None) -> None:
        share = op.share
        os.rename(self._shares.host_entry(share, op.path), self._shares.host_entry(share, target))

    def unlink(self, op: _Open) -> None:
        os.unlink(self._shares.host_entry(op.share, op.path))

    def rmdir(self, op: _Open) -> None:
        os.rmdir(self._shares.host_entry(op.share, op.path))

    def set_size(self, op: _Open, size: int) -> None:
        os.ftruncate(op.fd, size)

    def _target(self, op: _Open) -> int | str:
        """What names the open file for a call that takes a path or a descriptor."""
        return self._shares.host_path(op.share, op.path) if op.path_only else op.fd

    def set_times(self, op: _Open, atime_ns: int | None, mtime_ns: int | None) -> None:
        target = self._target(op)
        st = os.stat(target)
        os.utime(
            target,
            ns=(
                st.st_atime_ns if atime_ns is None else atime_ns,
                st.st_mtime_ns if mtime_ns is None else mtime_ns,
            ),
        )

    def set_readonly(self, op: _Open, readonly: bool) -> None:
        target = self._target(op)
        mode = os.stat(target).st_mode
        new = mode & ~0o222 if readonly else mode | 0o200
        if new != mode:
            os.chmod(target, stat.S_IMODE(new))

    def statvfs(self, share: Share) -> Volume:
        root = self._shares.root(share)
        vfs = os.statvfs(root)
        frsize = vfs.f_frsize or vfs.f_bsize
        return Volume(
            total=vfs.f_blocks * frsize,
            free=vfs.f_bfree * frsize,
            avail=vfs.f_bavail * frsize,
            block=frsize,
            serial=zlib.crc32(os.fsencode(root)),
            max_name_length=vfs.f_namemax,
        )

    # --- low I/O: byte-range locks and change notification -----------------------------------
    def check_io(self, ctx: RxContext, op: _Open, offset: int, length: int, write: bool) -> None:
        self._locks.check_io(lambda: self._file_key(op), lock_owner(ctx), offset, length, write)

    def lowio_other(self, ctx: RxContext, op: _Open, lowio: LowIoParameters) -> Result:
        if lowio.operation == LowIoOp.NOTIFY_CHANGE_DIRECTORY:
            host = self._shares.host_entry(op.share, op.path) if op.path else None
            folder = host or self._shares.root(op.share)
            return self._watches.notify(
                ctx,
                folder,
                completion_filter=lowio.completion_filter,
                tree=lowio.watch_tree,
                what=show(op.path),
            )
        locking = (LowIoOp.SHAREDLOCK, LowIoOp.EXCLUSIVELOCK, LowIoOp.UNLOCK)
        if lowio.operation not in (*locking, LowIoOp.UNLOCK_MULTIPLE):
            return super().lowio_other(ctx, op, lowio)
        owner = lock_owner(ctx)
        with self._locks.lock:
            if lowio.operation in (LowIoOp.SHAREDLOCK, LowIoOp.EXCLUSIVELOCK):
                op.lock_owners.add(owner)
            try:
                key = self._file_key(op)
            except OSError:
                if lowio.operation == LowIoOp.UNLOCK_MULTIPLE:
                    return Result()
                raise
            return self._locks.request(ctx, key, owner, lowio)

    @staticmethod
    def _file_key(op: _Open) -> tuple[int, int]:
        st = os.fstat(op.fd)
        return st.st_dev, st.st_ino

    def _release_locks(self, op: _Open, owner: int) -> None:
        try:
            key = self._file_key(op)
        except OSError:
            return
        self._locks.release(key, owner)

    def cancel(self, request_id: int, status: int = S.STATUS_CANCELLED) -> bool:
        if self._watches.cancel(request_id, status):
            return True
        return self._locks.cancel(request_id, status)

    def pending_requests(self) -> int:
        return self._watches.pending + self._locks.pending

    def end_fobx(self, ctx: RxContext) -> None:
        """A handle's pending notify and byte-range locks end with it."""
        self._watches.end(fobx=ctx.fobx)
        op = self._opens.find(ctx.srv_open)
        with self._locks.lock:
            if op is not None and ctx.fobx is not None and ctx.fobx in op.lock_owners:
                op.lock_owners.discard(ctx.fobx)
                self._release_locks(op, ctx.fobx)

    def end_srv_open(self, srv_open: int | None, op: _Open) -> None:
        self._watches.end(srv_open=srv_open)
        with self._locks.lock:
            for owner in op.lock_owners:
                self._release_locks(op, owner)
            op.lock_owners.clear()

    # --- shared-memory reads ------------------------------------------------------------------
    def prepare_read_into(
        self, ctx: RxContext, length: int
    ) -> Callable[[memoryview], Result] | None:
        """A large shared-memory read: checked here, copied on a pool thread from a duplicate of
        the descriptor (a close of the handle meanwhile leaves it valid)."""
        op, lowio = self._shared_read_of(ctx, length)
        if not op.can_read:
            raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(op.path)} is not open for reading")
        offset = lowio.offset
        if offset < 0 or not 0 < length <= MAX_READ_BYTES:
            raise NtStatusError(S.STATUS_INVALID_PARAMETER, f"bad read range {offset}+{length}")
        try:
            fd = os.dup(op.fd)
        except OSError as exc:
            raise os_error(exc, "cannot read", op.path) from None
        path = op.path

        def copy(target: memoryview) -> Result:
            try:
                return _read_into(fd, path, offset, target)
            finally:
                os.close(fd)

        return copy

    def read_into(self, ctx: RxContext, target: memoryview) -> Result | None:
        """The shared-memory path: the file's bytes go straight into the client's arena."""
        op, lowio = self._shared_read_of(ctx, len(target))
        self._check_read(op, lowio.offset, len(target))
        if not target:
            return Result(information=0, payload=b"")
        return _read_into(op.fd, op.path, lowio.offset, target)

    def _shared_read_of(self, ctx: RxContext, length: int) -> tuple[_Open, LowIoParameters]:
        """The open and parameters of a shared-memory READ of ``length`` bytes, checked."""
        op = self._open_of(ctx)
        lowio = lowio_of(ctx)
        if op.is_dir:
            raise NtStatusError(S.STATUS_INVALID_DEVICE_REQUEST, f"{show(op.path)} is a directory")
        self.check_io(ctx, op, lowio.offset, length, False)
        return op, lowio

    # --- extended attributes, security, flush -------------------------------------------------
    def _named(self, op: _Open) -> int | str:
        return op.fd if not op.path_only else self._shares.host_entry(op.share, op.path)

    def query_ea_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        return Result(result={"eas": query_eas(self._named(op), op.path)})

    def set_ea_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        set_eas(self._named(op), op.path, ctx.info.args if ctx.info is not None else None)
        return Result()

    def query_sd_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        info_class = ctx.info.info_class if ctx.info is not None else None
        return Result(result=query_security(op.fd, op.path, info_class))

    def set_sd_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        info = ctx.info.info_class if ctx.info is not None else None
        set_security(op.fd, op.path, info, ctx.info.args if ctx.info is not None else None)
        return Result()

    def flush(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        if op.path_only:
            return Result()
        try:
            os.fsync(op.fd)
        except OSError as exc:
            raise os_error(exc, "cannot flush", op.path) from None
        return Result()

    # --- management (device FCB) --------------------------------------------------------------
    def dev_fcb_control(self, ctx: RxContext) -> Result:
        code = ctx.lowio.code if ctx.lowio is not None else None
        args = ctx.args if isinstance(ctx.args, Mapping) else {}
        if code == FsctlCode.RDBSS_LIST_SHARES:
            return Result(result=self._list_shares())
        if code == FsctlCode.RDBSS_ADD_SHARE:
            self._shares.add(arg_str(args, "share"), arg_str(args, "path"))
            return Result(result=self._list_shares())
        if code == FsctlCode.RDBSS_REMOVE_SHARE:
            self._shares.remove(arg_str(args, "share"))
            return Result(result=self._list_shares())
        raise NtStatusError(S.STATUS_INVALID_DEVICE_REQUEST, f"control code {code!r} not supported")

    def _list_shares(self) -> dict[str, Any]:
        return {"server": self.server, "shares": self._shares.listing()}

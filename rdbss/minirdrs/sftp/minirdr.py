"""The SFTP mini-redirector: serves folders of SSH servers (OpenSSH sshd) as
``\\\\<server>\\<share>``, with asyncssh.

Configuration: see :mod:`rdbss.minirdrs.sftp.config`. The package, by concern:
- :mod:`~rdbss.minirdrs.sftp.session`: one SSH connection and one SFTP client per SrvCall
  (server name), and how a routine waits for a coroutine with a deadline;
  :mod:`~rdbss.minirdrs.sftp.loop`: the private event loop asyncssh runs on.
- :mod:`~rdbss.minirdrs.sftp.remote`: the server's files (lookup inside the share, open, list,
  delete, close); :mod:`~rdbss.minirdrs.sftp.create` and :mod:`~rdbss.minirdrs.sftp.setinfo`:
  MRxCreate and MRxSetFileInfo on them.
- :mod:`~rdbss.minirdrs.sftp.attrs`: SFTP attributes as file info;
  :mod:`~rdbss.minirdrs.sftp.errors`: asyncssh failures as NTSTATUS values.

Semantics follow the local mini-redirector (rdbss/minirdrs/local.py) and the create rules of
rdbss/model/create.py. What SFTP v3 changes:
- statuses: v3 reports most failures as a bare "Failure", so the routines look before they act
  (collision, non-empty directory, read-only file...) and look again after a failure.
- times have whole-second precision; there is no creation time (the change time is reported)
  and no inode number (``file_id`` is a hash of the server path, so it changes on rename).
- no byte-range locks: SFTP has none, so no lock operation is registered.
- change notification: SFTP cannot tell us about changes, so a pending notify polls the
  folder's listing.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, TypeVar, cast

import asyncssh

from rdbss.minirdrs.base import FILE_INFO_CLASSES as _FILE_INFO_CLASSES
from rdbss.minirdrs.base import (
    MAX_READ_BYTES,
    MiniRdr,
    OpenTable,
    Result,
    info_setter,
    lowio_of,
    posix_volume,
    volume_info_class,
)
from rdbss.minirdrs.common.args import components, show
from rdbss.minirdrs.common.listing import Enumerations
from rdbss.minirdrs.common.notify import Entry, Lister, PollingWatches, WatchLimits, notify_interval
from rdbss.minirdrs.common.security import (
    POSIX_INFORMATION,
    check_query_information,
    posix_change,
    posix_descriptor,
)
from rdbss.minirdrs.sftp import setinfo
from rdbss.minirdrs.sftp.attrs import entry_of, info_of, security_of
from rdbss.minirdrs.sftp.config import SftpConfigError, parse_config
from rdbss.minirdrs.sftp.create import acreate, check_existing
from rdbss.minirdrs.sftp.errors import fail
from rdbss.minirdrs.sftp.remote import Open, aclose, alist, alocate, arepin, astat, is_dot, join
from rdbss.minirdrs.sftp.session import CLOSE_WAIT_S, Conn, Sessions, Share
from rdbss.model.create import check_create_parameters, create_action, data_access
from rdbss.model.dispatch import is_query_open
from rdbss.wire.constants import CreateInformation, FileInformationClass, LowIoOp
from rdbss.wire.rxcontext import CreateParameters, RxContext
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.minirdr.sftp")

S = NtStatus
Info = FileInformationClass
T = TypeVar("T")

FS_NAME = "rdbss-sftp"
#: Seconds between two listings of a folder with a pending change notification.
NOTIFY_INTERVAL_S = 1.0


def _error(status: int, message: str) -> NtStatusError:
    return NtStatusError(status, message)


class SftpMiniRdr(MiniRdr):
    """Serves folders of SSH servers over SFTP (asyncssh)."""

    kind: ClassVar[str] = "sftp"
    blocking: ClassVar[bool] = True
    lowio_ops: ClassVar[frozenset[LowIoOp]] = frozenset(
        {LowIoOp.READ, LowIoOp.WRITE, LowIoOp.NOTIFY_CHANGE_DIRECTORY}
    )

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, config)
        try:
            self.settings = parse_config(config)
        except SftpConfigError as exc:
            raise ValueError(str(exc)) from None
        # SFTP cannot tell us about changes: pending notifies poll the folder's listing
        self._watches = PollingWatches(
            self.complete_later,
            interval_s=notify_interval(config, "sftp", NOTIFY_INTERVAL_S),
            limits=WatchLimits.from_config(config, "sftp"),
            name=f"sftp-{name}",
        )
        self.timeout = self.settings.timeout
        self._sessions = Sessions(name, self.settings)
        self._opens: OpenTable[Open] = OpenTable()
        self._enumerations: Enumerations[asyncssh.SFTPAttrs] = Enumerations()
        # asyncssh logs every connect and SFTP session at INFO; keep the daemon log for ours
        aslog = logging.getLogger("asyncssh")
        if aslog.level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
            aslog.setLevel(logging.WARNING)

    def servers(self) -> list[str]:
        return [server.name for server in self.settings.servers.values()]

    # --- plumbing -----------------------------------------------------------------------------
    def _run(self, conn: Conn, factory: Callable[[], Awaitable[T]], ctx: RxContext, what: str) -> T:
        return self._sessions.run(conn, factory, self._sessions.deadline(ctx), what)

    # --- connections --------------------------------------------------------------------------
    def create_srv_call(self, ctx: RxContext) -> Result:
        self._sessions.connect(ctx)
        return Result()

    def srv_call_winner_notify(self, ctx: RxContext) -> Result:
        return Result()

    def create_v_net_root(self, ctx: RxContext) -> Result:
        self._sessions.check_share(ctx)
        return Result()

    def finalize_v_net_root(self, ctx: RxContext) -> Result:
        return Result()

    def finalize_net_root(self, ctx: RxContext) -> Result:
        return Result()

    def finalize_srv_call(self, ctx: RxContext) -> Result:
        """Drop the server's connection. Opens made on it stay in the table, dead: the core
        still closes them (MRxCloseSrvOpen), and each close reports what was lost."""
        try:
            self._sessions.finalize(ctx.srv_call)
        except Exception:  # finalize never fails
            log.exception("finalize of SrvCall %r failed", ctx.srv_call)
        return Result()

    def cancel(self, request_id: int, status: int = S.STATUS_CANCELLED) -> bool:
        """The cancel routine of a pending change notification (the polling watch ends)."""
        return self._watches.cancel(request_id, status)

    def pending_requests(self) -> int:
        return self._watches.pending

    def close(self) -> None:
        """Close every open (deleting what was delete-pending, as closing its handle would) and
        every connection, then stop the event loop."""
        self._watches.close()
        opens = self._opens.clear()
        self._enumerations.clear()
        for op in opens:
            if op.conn.alive:
                with contextlib.suppress(Exception):
                    self._sessions.run(op.conn, self._closer(op), CLOSE_WAIT_S, "close")
        self._sessions.close()

    # --- create -------------------------------------------------------------------------------
    def create(self, ctx: RxContext) -> Result:
        share = self._sessions.share_of(ctx)
        parts = components(ctx.path or "")
        rel = "\\".join(parts)
        params = ctx.create or CreateParameters()
        disposition, options = check_create_parameters(params)
        if self._opens.delete_pending_at(share, rel):
            raise _error(S.STATUS_DELETE_PENDING, f"{show(rel)} is being deleted")
        op, information, info = self._run(
            share.conn,
            lambda: acreate(share, parts, rel, params, disposition, options),
            ctx,
            f"cannot open {show(rel)}",
        )
        srv_open = self._opens.add(op)
        return Result(
            information=information,
            result={**info, "srv_open": srv_open, "directory": op.is_dir},
        )

    def query_open(self, ctx: RxContext) -> Result:
        """MRxQueryOpen: what ``create`` answers for FILE_READ_ATTRIBUTES and FILE_OPEN (the
        same checks, in the same order, so the same status) from the lookup alone: one round
        trip (an LSTAT of a name in the share's folder, a STAT of the share's folder, or for a
        deeper name the lookup's REALPATH, STAT and LSTAT pipelined), no handle to close."""
        share = self._sessions.share_of(ctx)
        parts = components(ctx.path or "")
        rel = "\\".join(parts)
        params = ctx.create or CreateParameters()
        disposition, options = check_create_parameters(params)
        if not is_query_open(params):
            raise _error(
                S.STATUS_INVALID_PARAMETER, "MRxQueryOpen answers an open for attributes only"
            )
        if self._opens.delete_pending_at(share, rel):
            raise _error(S.STATUS_DELETE_PENDING, f"{show(rel)} is being deleted")
        target = self._run(
            share.conn, lambda: alocate(share, parts, rel), ctx, f"cannot open {show(rel)}"
        )
        create_action(disposition, target.attrs is not None, rel)  # FILE_OPEN: NOT_FOUND
        assert target.attrs is not None
        can_write = data_access(params.desired_access)[1]
        is_dir = check_existing(rel, target.attrs, disposition, options, can_write)
        return Result(
            information=int(CreateInformation.FILE_OPENED),
            result={**info_of(target.attrs, rel, target.remote), "directory": is_dir},
        )

    # --- low I/O ------------------------------------------------------------------------------
    def low_io_submit(
        self, ctx: RxContext, payload: bytes | bytearray | memoryview | None = None
    ) -> Result:
        op = self._opens.get(ctx.srv_open)
        lowio = lowio_of(ctx)
        if lowio.operation == LowIoOp.NOTIFY_CHANGE_DIRECTORY:
            if not op.is_dir:
                raise _error(S.STATUS_INVALID_PARAMETER, f"{show(op.path)} is not a directory")
            return self._watches.notify(
                ctx,
                self._lister(op),
                group=op.conn.server.name.lower(),
                folder=op.remote,
                completion_filter=lowio.completion_filter,
                tree=lowio.watch_tree,
                what=show(op.path),
            )
        if op.is_dir:
            raise _error(S.STATUS_INVALID_DEVICE_REQUEST, f"{show(op.path)} is a directory")
        if lowio.operation == LowIoOp.READ:
            return self._read(ctx, op, lowio.offset, lowio.length)
        if lowio.operation == LowIoOp.WRITE:
            if lowio.length < 0:
                raise _error(S.STATUS_INVALID_PARAMETER, f"negative length {lowio.length}")
            return self._write(ctx, op, lowio.offset, payload)
        raise _error(
            S.STATUS_INVALID_DEVICE_REQUEST, f"low I/O operation {lowio.operation!r} not supported"
        )

    def _lister(self, op: Open) -> Lister:
        """Lists a folder below the watched one on the server (one readdir; called from the
        notify poller's thread, the SFTP calls run on the connection's event loop)."""

        async def readdir(remote: str, rel: str) -> list[tuple[str, Entry]]:
            try:
                names = await op.conn.client().readdir(remote)
            except asyncssh.SFTPNoSuchFile:
                raise _error(S.STATUS_OBJECT_PATH_NOT_FOUND, f"{show(rel)} is gone") from None
            except asyncssh.SFTPError as exc:
                fail(exc, "cannot list", rel)
            return [
                (str(n.filename), entry_of(n.attrs)) for n in names if not is_dot(str(n.filename))
            ]

        def list_folder(sub: str) -> list[tuple[str, Entry]]:
            remote = op.remote
            for part in sub.split("\\") if sub else []:
                remote = join(remote, part)
            rel = "\\".join(p for p in (op.path, sub) if p)
            return self._sessions.run(
                op.conn,
                lambda: readdir(remote, rel),
                self.timeout,
                f"cannot list {show(rel)}",
            )

        return list_folder

    def _read(self, ctx: RxContext, op: Open, offset: int, length: int) -> Result:
        if not op.can_read or op.file is None:
            raise _error(S.STATUS_ACCESS_DENIED, f"{show(op.path)} is not open for reading")
        if offset < 0 or length < 0:
            raise _error(S.STATUS_INVALID_PARAMETER, f"bad read range {offset}+{length}")
        if length > MAX_READ_BYTES:
            raise _error(
                S.STATUS_INVALID_PARAMETER, f"read of {length} bytes over {MAX_READ_BYTES}"
            )
        if length == 0:
            return Result(information=0, payload=b"")
        handle = op.file

        async def read() -> bytes:
            try:
                # asyncssh pipelines a large read as parallel requests of the server's limit
                return cast(bytes, await handle.read(length, offset))
            except asyncssh.SFTPError as exc:
                fail(exc, "cannot read", op.path)

        data = self._run(op.conn, read, ctx, f"cannot read {show(op.path)}")
        if not data:
            raise _error(S.STATUS_END_OF_FILE, f"{show(op.path)}: offset {offset} is past EOF")
        return Result(information=len(data), payload=data)

    def _write(
        self,
        ctx: RxContext,
        op: Open,
        offset: int,
        payload: bytes | bytearray | memoryview | None,
    ) -> Result:
        if not op.can_write or op.file is None:
            raise _error(S.STATUS_ACCESS_DENIED, f"{show(op.path)} is not open for writing")
        if offset < -1:
            raise _error(S.STATUS_INVALID_PARAMETER, f"bad write offset {offset}")
        if payload is None:
            raise _error(S.STATUS_INVALID_PARAMETER, "write without data")
        data = bytes(payload)
        handle = op.file

        async def write() -> int:
            try:
                where = offset
                if op.append_only:
                    where = 0  # opened with FXF_APPEND: the server writes at its end
                elif offset == -1:
                    where = (await handle.stat()).size or 0
                if data:
                    await handle.write(data, where)
                    await arepin(op)
                return len(data)
            except asyncssh.SFTPError as exc:
                fail(exc, "cannot write", op.path)

        written = self._run(op.conn, write, ctx, f"cannot write {show(op.path)}")
        return Result(information=written)

    def flush(self, ctx: RxContext) -> Result:
        op = self._opens.get(ctx.srv_open)
        handle = op.file
        if handle is None or not op.can_write:
            return Result()

        async def fsync() -> None:
            try:
                await handle.fsync()
            except asyncssh.SFTPOpUnsupported:
                pass  # no fsync@openssh.com: the server's own write-back is all there is
            except asyncssh.SFTPError as exc:
                fail(exc, "cannot flush", op.path)

        self._run(op.conn, fsync, ctx, f"cannot flush {show(op.path)}")
        return Result()

    # --- file information ---------------------------------------------------------------------
    def query_file_info(self, ctx: RxContext) -> Result:
        op = self._opens.get(ctx.srv_open)
        info_class = ctx.info.info_class if ctx.info is not None else None
        if info_class not in _FILE_INFO_CLASSES:
            raise _error(S.STATUS_INVALID_PARAMETER, f"file info class {info_class!r}")
        attrs = self._run(op.conn, lambda: astat(op), ctx, f"cannot query {show(op.path)}")
        info = info_of(attrs, op.path, op.remote, delete_pending=op.delete_pending)
        info["position"] = 0
        return Result(result=info)

    # --- security: the server's uid, gid and permissions as a security descriptor ----------
    def query_sd_info(self, ctx: RxContext) -> Result:
        op = self._opens.get(ctx.srv_open)
        info = check_query_information(
            ctx.info.info_class if ctx.info is not None else None, POSIX_INFORMATION
        )
        attrs = self._run(
            op.conn, lambda: astat(op), ctx, f"cannot query the security of {show(op.path)}"
        )
        if attrs.uid is None or attrs.gid is None or attrs.permissions is None:
            raise _error(
                S.STATUS_NOT_SUPPORTED,
                f"{show(op.path)}: the server sends no owner, group or permissions",
            )
        return Result(result=posix_descriptor(info, security_of(attrs)))

    def set_sd_info(self, ctx: RxContext) -> Result:
        op = self._opens.get(ctx.srv_open)
        info = ctx.info.info_class if ctx.info is not None else None
        args = ctx.info.args if ctx.info is not None else None
        check_query_information(info, POSIX_INFORMATION)  # answers bad bits without a round trip

        async def apply() -> None:
            sftp = op.conn.client()
            try:
                attrs = await astat(op)
                change = posix_change(info, args, security_of(attrs))
                if change.uid is not None or change.gid is not None:
                    # SFTP v3 sets uid and gid together
                    uid = change.uid if change.uid is not None else attrs.uid
                    gid = change.gid if change.gid is not None else attrs.gid
                    await sftp.setstat(op.remote, asyncssh.SFTPAttrs(uid=uid, gid=gid))
                if change.permissions is not None:
                    await sftp.setstat(
                        op.remote, asyncssh.SFTPAttrs(permissions=change.permissions)
                    )
            except asyncssh.SFTPError as exc:
                fail(exc, "cannot change the security of", op.path)

        self._run(op.conn, apply, ctx, f"cannot change the security of {show(op.path)}")
        return Result()

    def set_file_info(self, ctx: RxContext) -> Result:
        op = self._opens.get(ctx.srv_open)
        setters: dict[int, Callable[[Open, Mapping[str, Any]], Awaitable[None]]] = {
            Info.FileBasicInformation: setinfo.aset_basic,
            Info.FileEndOfFileInformation: setinfo.aset_end_of_file,
            Info.FileAllocationInformation: setinfo.aset_allocation,
            Info.FileRenameInformation: self._aset_rename,
            Info.FileDispositionInformation: self._aset_disposition,
        }
        info_class, setter, args = info_setter(ctx, setters)
        setinfo.check_set_args(op, info_class, args)
        self._run(
            op.conn,
            lambda: setter(op, args),
            ctx,
            f"cannot set information of {show(op.path)}",
        )
        return Result()

    async def _aset_rename(self, op: Open, args: Mapping[str, Any]) -> None:
        renamed = await setinfo.arename(op, args)
        if renamed is not None:
            self._renamed(op.share, op.path, *renamed)

    def _renamed(self, share: Share, old: str, new: str, new_remote: str) -> None:
        """Point every open at or under ``old`` in ``share`` at its new name and server path."""
        prefix = old + "\\"
        with self._opens.lock:
            for other in self._opens.values():
                if other.share is not share:
                    continue
                if other.path == old:
                    other.remote = new_remote
                elif other.path.startswith(prefix):
                    rest = other.path[len(prefix) :]
                    other.remote = new_remote + "/" + rest.replace("\\", "/")
            self._opens.renamed(share, old, new)

    async def _aset_disposition(self, op: Open, args: Mapping[str, Any]) -> None:
        self._opens.mark_delete_pending(op, await setinfo.acheck_disposition(op, args))

    # --- directories --------------------------------------------------------------------------
    def query_directory(self, ctx: RxContext) -> Result:
        op = self._opens.get(ctx.srv_open)
        if not op.is_dir:
            raise _error(S.STATUS_INVALID_PARAMETER, f"{show(op.path)} is not a directory")

        def load(pattern: str) -> list[tuple[str, asyncssh.SFTPAttrs]]:
            return self._run(
                op.conn, lambda: alist(op, pattern), ctx, f"cannot list {show(op.path)}"
            )

        def describe(name: str, attrs: asyncssh.SFTPAttrs) -> dict[str, Any]:
            rel = f"{op.path}\\{name}" if op.path else name
            return info_of(
                attrs,
                rel,
                join(op.remote, name),
                delete_pending=self._opens.delete_pending_at(op.share, rel),
            )

        return self._enumerations.query(ctx, show(op.path), load, describe)

    def cleanup_fobx(self, ctx: RxContext) -> Result:
        self._enumerations.forget_fobx(ctx.fobx)
        self._watches.end(fobx=ctx.fobx)
        return Result()

    # --- volume -------------------------------------------------------------------------------
    def query_volume_info(self, ctx: RxContext) -> Result:
        if ctx.srv_open is not None:
            share = self._opens.get(ctx.srv_open).share
        else:
            share = self._sessions.share_of(ctx)
        volume_info_class(ctx)

        async def statvfs() -> asyncssh.SFTPVFSAttrs:
            try:
                return await share.conn.client().statvfs(share.root)
            except asyncssh.SFTPOpUnsupported:
                raise _error(
                    S.STATUS_NOT_IMPLEMENTED, "the server has no statvfs@openssh.com"
                ) from None
            except asyncssh.SFTPError as exc:
                fail(exc, "cannot query the volume of", "")

        vfs = self._run(share.conn, statvfs, ctx, "cannot query the volume")
        frsize = vfs.frsize or vfs.bsize
        server = share.conn.server
        return posix_volume(
            total=vfs.blocks * frsize,
            free=vfs.bfree * frsize,
            avail=vfs.bavail * frsize,
            block=frsize,
            fs_name=FS_NAME,
            label=share.name,
            serial=zlib.crc32(f"{server.host}:{server.port}:{share.root}".encode()),
            max_name_length=vfs.namemax or 255,
        )

    # --- close --------------------------------------------------------------------------------
    def close_srv_open(self, ctx: RxContext) -> Result:
        op = self._opens.pop(ctx.srv_open)
        self._enumerations.forget_srv_open(ctx.srv_open)
        self._watches.end(srv_open=ctx.srv_open)
        if op.file is None and not op.delete_pending:
            return Result()
        if op.conn.lost:
            if op.delete_pending:  # the delete did not happen: say so
                return Result(
                    status=S.STATUS_CONNECTION_DISCONNECTED,
                    message=f"cannot delete {show(op.path)}: the connection was lost",
                )
            # every write was acknowledged by the server before it was answered: nothing is lost
            return Result()
        try:
            self._run(op.conn, self._closer(op), ctx, f"close {show(op.path)}")
        except NtStatusError as exc:
            return Result(status=exc.status, message=exc.strerror or "")
        return Result()

    @staticmethod
    def _closer(op: Open) -> Callable[[], Awaitable[None]]:
        return lambda: aclose(op)

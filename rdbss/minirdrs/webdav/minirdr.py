"""The WebDAV mini-redirector's routines (``WebDavMiniRdr``); the package docstring says what
it serves and how."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

from rdbss.minirdrs.base import FILE_INFO_CLASSES as _FILE_INFO_CLASSES
from rdbss.minirdrs.base import (
    MiniRdr,
    OpenTable,
    Result,
    lowio_of,
    posix_volume,
    set_file_info_with,
    volume_info_class,
)
from rdbss.minirdrs.common.args import TIME_ARGS, arg_bool, arg_int, arg_str, components, show
from rdbss.minirdrs.common.listing import Enumerations
from rdbss.minirdrs.common.notify import Entry, Lister, PollingWatches, WatchLimits, notify_interval
from rdbss.minirdrs.common.setup import AUTHENTICATE, SHARE_CHECK, SetupDeadline
from rdbss.minirdrs.common.shares import check_share_name
from rdbss.minirdrs.common.wildcard import is_name_in_expression
from rdbss.minirdrs.webdav import reads, spool
from rdbss.minirdrs.webdav.config import NOTIFY_INTERVAL_S, WebDavConfig
from rdbss.minirdrs.webdav.connect import connect, probe
from rdbss.minirdrs.webdav.errors import error, fail
from rdbss.minirdrs.webdav.handle import DavShare, Open
from rdbss.minirdrs.webdav.props import QUOTA_BODY, DavEntry, file_id, file_info
from rdbss.minirdrs.webdav.session import Session
from rdbss.model.buffering import BUFFERING_STATE_MASK, HANDLE_BITS
from rdbss.model.create import (
    INFORMATION,
    Action,
    check_create_parameters,
    check_open_existing,
    create_action,
    data_access,
    decide_create,
)
from rdbss.model.dispatch import is_query_open
from rdbss.wire.constants import (
    CreateDisposition,
    CreateInformation,
    CreateOptions,
    FileAttributes,
    LowIoOp,
)
from rdbss.wire.rxcontext import CreateParameters, RxContext
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.minirdr.webdav")

S = NtStatus
D = CreateDisposition

FS_NAME = "rdbss-webdav"
MAX_NAME_LENGTH = 255


class WebDavMiniRdr(MiniRdr):
    """Serves the collections of configured WebDAV servers as shares."""

    kind: ClassVar[str] = "webdav"
    blocking: ClassVar[bool] = True
    #: MRxCloseSrvOpen uploads the staged writes: a close must never be delayed (the user
    #: expects the data on the server once the file is closed), so no collapsing either.
    buffering_mask: ClassVar[int] = int(BUFFERING_STATE_MASK & ~HANDLE_BITS)
    lowio_ops: ClassVar[frozenset[LowIoOp]] = frozenset(
        {LowIoOp.READ, LowIoOp.WRITE, LowIoOp.NOTIFY_CHANGE_DIRECTORY}
    )

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, config)
        parsed = WebDavConfig.parse(config)
        # WebDAV (RFC 4918) has no change notification: pending notifies poll with PROPFIND
        self._watches = PollingWatches(
            self.complete_later,
            interval_s=notify_interval(config, "webdav", NOTIFY_INTERVAL_S),
            limits=WatchLimits.from_config(config, "webdav"),
            name=f"webdav-{name}",
        )
        self.timeout = parsed.timeout
        self._configs = dict(parsed.servers)
        self._staging = spool.StagingFolder(parsed.staging_parent)
        self._lock = threading.RLock()
        self._servers: dict[str, Session] = {}
        self._opens: OpenTable[Open] = OpenTable()
        self._shares: dict[tuple[str, str], DavShare] = {}
        self._enumerations: Enumerations[DavEntry] = Enumerations()
        # httpx logs every request at INFO; this process's log is the daemon's log.
        for noisy in ("httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)

    def servers(self) -> list[str]:
        return [c.name for c in self._configs.values()]

    def cancel(self, request_id: int, status: int = S.STATUS_CANCELLED) -> bool:
        """The cancel routine of a pending change notification (the polling watch ends)."""
        return self._watches.cancel(request_id, status)

    def pending_requests(self) -> int:
        return self._watches.pending

    def close(self) -> None:
        """Process shutdown: upload what is still staged and delete what was delete-pending
        (as closing each handle would), then drop every connection and the staging folder."""
        self._watches.close()
        opens = self._opens.clear()
        with self._lock:
            self._enumerations.clear()
            servers = list(self._servers.values())
            self._servers.clear()
        for op in opens:
            try:
                self._finish(op)
            except NtStatusError as exc:
                log.error(
                    "closing %s on %s at shutdown failed: %s",
                    show(op.path),
                    op.server.name,
                    exc.strerror,
                )
            except Exception:
                log.exception("closing %s at shutdown failed", show(op.path))
        for server in servers:
            server.close()
        self._staging.remove()

    # --- tables -----------------------------------------------------------------------------
    def _server(self, name: str | None) -> Session:
        with self._lock:
            server = self._servers.get(name.lower()) if isinstance(name, str) else None
        if server is None:
            if isinstance(name, str) and name.lower() in self._configs:
                raise error(S.STATUS_CONNECTION_DISCONNECTED, f"no connection to server {name!r}")
            raise error(S.STATUS_BAD_NETWORK_PATH, f"server {name!r} is not served here")
        return server

    def _open_of(self, ctx: RxContext) -> Open:
        return self._opens.get(ctx.srv_open)

    # --- connections --------------------------------------------------------------------------
    def create_srv_call(self, ctx: RxContext) -> Result:
        name = ctx.srv_call
        config = self._configs.get(name.lower()) if isinstance(name, str) else None
        if config is None:
            raise error(S.STATUS_BAD_NETWORK_PATH, f"server {name!r} is not served here")
        with self._lock:
            existing = self._servers.get(config.name.lower())
        if existing is not None and existing.dead is None:
            # still good? (the connection manager builds it again)
            probe(existing, SetupDeadline.of(ctx, config.name, AUTHENTICATE))
            return Result()
        server = connect(config, self.timeout, SetupDeadline.of(ctx, config.name))
        with self._lock:
            old = self._servers.get(config.name.lower())
            self._servers[config.name.lower()] = server
        if old is not None:
            old.close()  # dead: its opens keep answering its status
        log.info("connected to webdav server %s", config.name)
        return Result()

    def srv_call_winner_notify(self, ctx: RxContext) -> Result:
        return Result()

    def create_v_net_root(self, ctx: RxContext) -> Result:
        server = self._server(ctx.srv_call)
        share = check_share_name(ctx.net_root)
        url = server.url(share, [], collection=True)
        what = f"cannot connect to share {share!r} on {server.name!r}"
        setup = SetupDeadline.of(ctx, server.name, SHARE_CHECK)
        try:
            entries = server.propfind(url, 0, what, timeout=setup.enter(SHARE_CHECK))
            setup.check()
        except NtStatusError as exc:
            if exc.status == S.STATUS_IO_TIMEOUT:
                raise setup.expired() from None
            raise
        if not entries:
            raise error(S.STATUS_BAD_NETWORK_NAME, f"no share named {share!r} on {server.name!r}")
        if not entries[0].is_dir:
            raise error(
                S.STATUS_BAD_NETWORK_NAME, f"{share!r} on {server.name!r} is not a collection"
            )
        return Result()

    def finalize_v_net_root(self, ctx: RxContext) -> Result:
        return Result()

    def finalize_net_root(self, ctx: RxContext) -> Result:
        return Result()

    def finalize_srv_call(self, ctx: RxContext) -> Result:
        try:
            key = ctx.srv_call.lower() if isinstance(ctx.srv_call, str) else ""
            with self._lock:
                server = self._servers.get(key)
                in_use = any(op.server is server for op in self._opens.values())
                if server is not None and not in_use:  # open handles keep their connection
                    del self._servers[key]
                else:
                    server = None
            if server is not None:
                server.close()
        except Exception:  # finalize never fails
            log.exception("finalize of SrvCall %s failed", ctx.srv_call)
        return Result()

    # --- create -------------------------------------------------------------------------------
    def _target(self, ctx: RxContext) -> tuple[Session, DavShare, list[str], CreateParameters]:
        """A create's server, share, name components and parameters."""
        server = self._server(ctx.srv_call)
        name = check_share_name(ctx.net_root)
        key = (server.name.lower(), name)
        with self._lock:
            share = self._shares.setdefault(key, DavShare(*key))
        return server, share, components(ctx.path or ""), ctx.create or CreateParameters()

    def create(self, ctx: RxContext) -> Result:
        server, share, parts, params = self._target(ctx)
        rel = "\\".join(parts)
        disposition, options = check_create_parameters(params)
        if self._opens.delete_pending_at(share, rel):
            raise error(S.STATUS_DELETE_PENDING, f"{show(rel)} is being deleted")
        entry = server.stat(share.name, parts, rel)
        created = entry is None
        if entry is None:
            op = self._create_new(server, share, parts, rel, params, disposition, options)
            information = int(CreateInformation.FILE_CREATED)
        else:
            op, information = self._open_existing(
                server, share, parts, rel, entry, params, disposition, options
            )
        if options & CreateOptions.FILE_DELETE_ON_CLOSE:
            try:
                self._check_deletable(op)
            except NtStatusError:
                if created:
                    with contextlib.suppress(NtStatusError):
                        self._delete(op)
                raise
            op.delete_pending = True
        op.fobx = ctx.fobx
        self._adopt_orphan(op)
        with self._opens.lock:
            op.srv_open = self._opens.add(op)
        return Result(
            information=information,
            result={**self._info(op), "srv_open": op.srv_open, "directory": op.is_dir},
        )

    def query_open(self, ctx: RxContext) -> Result:
        """MRxQueryOpen: what ``create`` answers for FILE_READ_ATTRIBUTES and FILE_OPEN (the
        same checks, in the same order, so the same status) from one PROPFIND Depth 0, and no
        SrvOpen to close afterwards. A name that is not there costs one more PROPFIND (of its
        parent), as in ``create``, to tell OBJECT_NAME_NOT_FOUND from OBJECT_PATH_NOT_FOUND."""
        server, share, parts, params = self._target(ctx)
        rel = "\\".join(parts)
        disposition, options = check_create_parameters(params)
        if not is_query_open(params):
            raise error(
                S.STATUS_INVALID_PARAMETER, "MRxQueryOpen answers an open for attributes only"
            )
        if self._opens.delete_pending_at(share, rel):
            raise error(S.STATUS_DELETE_PENDING, f"{show(rel)} is being deleted")
        entry = server.stat(share.name, parts, rel)
        if entry is None:
            self._check_missing(server, share, parts, rel)
            raise error(S.STATUS_OBJECT_NAME_NOT_FOUND, f"{show(rel)} not found")
        check_open_existing(rel, options, disposition, False, is_dir=entry.is_dir)
        info = file_info(entry, rel, ident=file_id(str(server.config.url), share.name, rel))
        return Result(
            information=int(CreateInformation.FILE_OPENED),
            result={**info, "directory": entry.is_dir},
        )

    def _adopt_orphan(self, op: Open) -> None:
        """The core re-opens a handle by path (same FOBX) after its connection was lost: the
        SrvOpen it had on the dead connection is never closed, so its staged data (writes not
        uploaded yet) moves to the new SrvOpen instead of being lost."""
        if op.fobx is None:
            return
        with self._opens.lock:
            for old in self._opens.values():
                if (
                    old.fobx == op.fobx
                    and old.server is not op.server
                    and old.server.dead is not None
                    and old.share is op.share
                    and old.path == op.path
                ):
                    self._opens.pop(old.srv_open)
                    self._enumerations.forget_srv_open(old.srv_open)
                    break
            else:
                return
        old.drop_stream()
        spool.end_upload(old)  # its connection is gone: the stage stays dirty unless it got there
        if old.stage is not None:
            if op.stage is not None:
                op.stage.close()
            op.stage, old.stage = old.stage, None
            op.written_ns = old.written_ns
        op.delete_pending = op.delete_pending or old.delete_pending
        log.info("re-opened %s on %s: kept its staged data", show(op.path), op.server.name)

    @staticmethod
    def _check_missing(server: Session, share: DavShare, parts: list[str], rel: str) -> None:
        """What a create of a name that is not there checks before the disposition: the share
        is still there (for the root) and so is the parent folder (OBJECT_PATH_NOT_FOUND)."""
        if not parts:
            raise error(S.STATUS_BAD_NETWORK_NAME, f"share {share.name!r} is gone")
        server.check_parent(share.name, parts, rel)

    def _create_new(
        self,
        server: Session,
        share: DavShare,
        parts: list[str],
        rel: str,
        params: CreateParameters,
        disposition: D,
        options: int,
    ) -> Open:
        self._check_missing(server, share, parts, rel)
        create_action(disposition, False, rel)
        if params.file_attributes & FileAttributes.READONLY:
            raise error(S.STATUS_NOT_SUPPORTED, "WebDAV has no read-only attribute")
        can_read, can_write, append_only = data_access(params.desired_access)
        is_dir = bool(options & CreateOptions.FILE_DIRECTORY_FILE)
        what = f"cannot create {show(rel)}"
        url = server.url(share.name, parts, collection=is_dir)
        if is_dir:
            response = server.request("MKCOL", url, what)
        else:
            # If-None-Match: * so a file someone else made meanwhile is not clobbered
            response = server.request("PUT", url, what, headers={"If-None-Match": "*"}, content=b"")
        if response.status_code not in (200, 201, 204):
            raise fail(response, "MKCOL" if is_dir else "PUT", what)
        entry = server.stat(share.name, parts, rel)
        if entry is None:
            now = time.time_ns()
            path = server.decoded_path(share.name, parts)
            entry = DavEntry(path, is_dir, 0, now, now)
        return Open(
            share=share,
            path=rel,
            is_dir=is_dir,
            can_read=can_read,
            can_write=can_write,
            append_only=append_only,
            server=server,
            entry=entry,
            empty_on_server=not is_dir,
            streamable=not is_dir,
        )

    def _open_existing(
        self,
        server: Session,
        share: DavShare,
        parts: list[str],
        rel: str,
        entry: DavEntry,
        params: CreateParameters,
        disposition: D,
        options: int,
    ) -> tuple[Open, int]:
        can_read, can_write, append_only = data_access(params.desired_access)
        is_dir = entry.is_dir
        action = decide_create(rel, disposition, options, can_write, exists=True, is_dir=is_dir)
        overwrite = action is not Action.OPEN  # (never a directory: decide_create refuses it)
        if overwrite and params.file_attributes & FileAttributes.READONLY:
            raise error(S.STATUS_NOT_SUPPORTED, "WebDAV has no read-only attribute")
        if overwrite:
            what = f"cannot overwrite {show(rel)}"
            url = server.url(share.name, parts, collection=False)
            response = server.request("PUT", url, what, content=b"")
            if response.status_code not in (200, 201, 204):
                raise fail(response, "PUT", what)
            entry = server.stat(share.name, parts, rel) or replace(
                entry, size=0, last_modified_ns=time.time_ns()
            )
        op = Open(
            share=share,
            path=rel,
            is_dir=is_dir,
            can_read=can_read,
            can_write=can_write,
            append_only=append_only and not is_dir,
            server=server,
            entry=entry,
            empty_on_server=overwrite,
            streamable=overwrite,
        )
        return op, int(INFORMATION[action])

    def _check_deletable(self, op: Open) -> None:
        if not op.path:
            raise error(S.STATUS_ACCESS_DENIED, "the share root cannot be deleted")
        if op.is_dir and op.server.children(op.share.name, op.parts, op.path):
            raise error(S.STATUS_DIRECTORY_NOT_EMPTY, f"{show(op.path)} is not empty")

    def _info(self, op: Open) -> dict[str, Any]:
        size = op.stage.size() if op.stage is not None else None
        return file_info(
            op.entry,
            op.path,
            size=size,
            last_write_ns=op.written_ns,
            delete_pending=op.delete_pending,
            ident=file_id(str(op.server.config.url), op.share.name, op.path),
        )

    # --- low I/O ------------------------------------------------------------------------------
    def low_io_submit(
        self, ctx: RxContext, payload: bytes | bytearray | memoryview | None = None
    ) -> Result:
        op = self._open_of(ctx)
        lowio = lowio_of(ctx)
        if lowio.operation == LowIoOp.NOTIFY_CHANGE_DIRECTORY:
            if not op.is_dir:
                raise error(S.STATUS_INVALID_PARAMETER, f"{show(op.path)} is not a directory")
            return self._watches.notify(
                ctx,
                self._lister(op),
                group=op.server.name.lower(),
                folder=f"{op.share.name}\\{op.path}",
                completion_filter=lowio.completion_filter,
                tree=lowio.watch_tree,
                what=show(op.path),
            )
        if op.is_dir:
            raise error(S.STATUS_INVALID_DEVICE_REQUEST, f"{show(op.path)} is a directory")
        if lowio.operation == LowIoOp.READ:
            return reads.read(op, lowio.offset, lowio.length)
        if lowio.operation == LowIoOp.WRITE:
            if lowio.length < 0:
                raise error(S.STATUS_INVALID_PARAMETER, f"negative length {lowio.length}")
            return self._write(op, lowio.offset, payload)
        raise error(
            S.STATUS_INVALID_DEVICE_REQUEST, f"low I/O operation {lowio.operation!r} not supported"
        )

    @staticmethod
    def _lister(op: Open) -> Lister:
        """Lists a collection below the watched one (one PROPFIND, Depth 1; called from the
        notify poller's thread). WebDAV gives no mode: only names, sizes and last-modified
        times (to the second, as HTTP dates go) are compared."""

        def list_folder(sub: str) -> list[tuple[str, Entry]]:
            parts = op.parts + (sub.split("\\") if sub else [])
            children = op.server.children(
                op.share.name, parts, "\\".join(parts), gone=S.STATUS_OBJECT_PATH_NOT_FOUND
            )
            return [
                (
                    name,
                    Entry(
                        entry.is_dir,
                        0 if entry.is_dir else entry.size or 0,
                        entry.last_modified_ns or 0,
                        0,
                    ),
                )
                for name, entry in children.items()
            ]

        return list_folder

    def read_into(self, ctx: RxContext, target: memoryview) -> Result | None:
        """The shared-memory path: a streamed read copies the body straight into the client's
        arena; other reads are copied there from their answer."""
        op = self._open_of(ctx)
        lowio = lowio_of(ctx)
        if op.is_dir:
            raise error(S.STATUS_INVALID_DEVICE_REQUEST, f"{show(op.path)} is a directory")
        return reads.read(op, lowio.offset, len(target), into=target)

    def _write(
        self, op: Open, offset: int, payload: bytes | bytearray | memoryview | None
    ) -> Result:
        if not op.can_write:
            raise error(S.STATUS_ACCESS_DENIED, f"{show(op.path)} is not open for writing")
        if offset < -1:
            raise error(S.STATUS_INVALID_PARAMETER, f"bad write offset {offset}")
        if payload is None:
            raise error(S.STATUS_INVALID_PARAMETER, "write without data")
        view = memoryview(payload).cast("B")
        if not len(view):
            return Result(information=0)
        return Result(information=spool.write(op, self._staging, offset, view))

    def flush(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        if not op.is_dir:
            spool.upload(op)
        return Result()

    # --- file information ---------------------------------------------------------------------
    def query_file_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        info_class = ctx.info.info_class if ctx.info is not None else None
        if info_class not in _FILE_INFO_CLASSES:
            raise error(S.STATUS_INVALID_PARAMETER, f"file info class {info_class!r}")
        if op.stage is None:
            fresh = op.server.stat(op.share.name, op.parts, op.path)
            if fresh is not None and fresh.is_dir == op.is_dir:
                op.entry = fresh
        info = self._info(op)
        info["position"] = 0
        return Result(result=info)

    def set_file_info(self, ctx: RxContext) -> Result:
        return set_file_info_with(self, self._open_of(ctx), ctx)

    @staticmethod
    def _set_basic(op: Open, args: Mapping[str, Any]) -> None:
        times = {key: arg_int(args, key, default=0) for key in TIME_ARGS}
        attributes = arg_int(args, "attributes", default=0)
        if attributes & FileAttributes.DIRECTORY and not op.is_dir:
            raise error(S.STATUS_INVALID_PARAMETER, "attributes: DIRECTORY on a file")
        if any(value > 0 for value in times.values()):
            raise error(S.STATUS_NOT_SUPPORTED, "WebDAV cannot set file times")
        if attributes & FileAttributes.READONLY:
            raise error(S.STATUS_NOT_SUPPORTED, "WebDAV has no read-only attribute")
        # other attribute bits: nowhere to keep them; accepted and ignored

    def _writable_file(self, op: Open, what: str, size: int) -> spool.Stage:
        if op.is_dir:
            raise error(S.STATUS_INVALID_PARAMETER, f"{what} of a directory")
        if not op.can_write:
            raise error(S.STATUS_ACCESS_DENIED, f"{show(op.path)} is not open for writing")
        # nothing to fetch for a truncation to 0
        return spool.stage_of(op, self._staging, fill=size > 0)

    def _set_end_of_file(self, op: Open, args: Mapping[str, Any]) -> None:
        size = arg_int(args, "size")
        if size < 0:
            raise error(S.STATUS_INVALID_PARAMETER, "argument 'size' must not be negative")
        fresh = op.stage is None
        stage = self._writable_file(op, "end of file", size)
        if (fresh and size == 0) or size != stage.size():
            spool.truncate(op, stage, size)

    def _set_allocation(self, op: Open, args: Mapping[str, Any]) -> None:
        size = arg_int(args, "size")
        if size < 0:
            raise error(S.STATUS_INVALID_PARAMETER, "argument 'size' must not be negative")
        fresh = op.stage is None
        stage = self._writable_file(op, "allocation size", size)
        if (fresh and size == 0) or size < stage.size():
            spool.truncate(op, stage, size)

    def _set_rename(self, op: Open, args: Mapping[str, Any]) -> None:
        target_parts = components(arg_str(args, "target"))
        target_rel = "\\".join(target_parts)
        replace_existing = arg_bool(args, "replace", default=False)
        if not target_rel:
            raise error(S.STATUS_INVALID_PARAMETER, "cannot rename onto the share root")
        if not op.path:
            raise error(S.STATUS_ACCESS_DENIED, "the share root cannot be renamed")
        if target_rel == op.path:
            return
        server = op.server
        server.check_parent(op.share.name, target_parts, target_rel)
        existing = server.stat(op.share.name, target_parts, target_rel)
        if existing is not None:
            if not replace_existing:
                raise error(S.STATUS_OBJECT_NAME_COLLISION, f"{show(target_rel)} already exists")
            if existing.is_dir:
                raise error(
                    S.STATUS_ACCESS_DENIED, f"{show(target_rel)} is a directory: cannot replace it"
                )
        spool.end_upload(op)  # the streamed PUT goes to the old name: end it before the MOVE
        source = op.url()
        target = server.url(op.share.name, target_parts, collection=op.is_dir)
        what = f"cannot rename {show(op.path)} to {show(target_rel)}"
        response = server.request(
            "MOVE",
            source,
            what,
            headers={"Destination": str(target), "Overwrite": "T" if replace_existing else "F"},
        )
        if response.status_code not in (200, 201, 204):
            raise fail(response, "MOVE", what)
        self._renamed(op, target_rel)

    def _renamed(self, moved: Open, new: str) -> None:
        """Point every open at or under the moved name at its new name; their reads start
        again from the server (a stream reads the old URL)."""
        self._opens.renamed(moved.share, moved.path, new)
        prefix = new + "\\"
        for other in self._opens.values():
            if other.share is moved.share and (other.path == new or other.path.startswith(prefix)):
                other.drop_stream()
                other.next_read = None

    def _set_disposition(self, op: Open, args: Mapping[str, Any]) -> None:
        delete = arg_bool(args, "delete")
        if delete:
            self._check_deletable(op)
        self._opens.mark_delete_pending(op, delete)

    # --- directories --------------------------------------------------------------------------
    def query_directory(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        if not op.is_dir:
            raise error(S.STATUS_INVALID_PARAMETER, f"{show(op.path)} is not a directory")

        def load(pattern: str) -> list[tuple[str, DavEntry]]:
            children = op.server.children(op.share.name, op.parts, op.path)
            return [(n, children[n]) for n in sorted(children) if is_name_in_expression(pattern, n)]

        def describe(name: str, entry: DavEntry) -> dict[str, Any]:
            rel = f"{op.path}\\{name}" if op.path else name
            return file_info(
                entry,
                rel,
                delete_pending=self._opens.delete_pending_at(op.share, rel),
                ident=file_id(str(op.server.config.url), op.share.name, rel),
            )

        return self._enumerations.query(ctx, show(op.path), load, describe)

    def cleanup_fobx(self, ctx: RxContext) -> Result:
        self._enumerations.forget_fobx(ctx.fobx)
        self._watches.end(fobx=ctx.fobx)
        return Result()

    # --- volume -------------------------------------------------------------------------------
    def query_volume_info(self, ctx: RxContext) -> Result:
        if ctx.srv_open is not None:
            op = self._open_of(ctx)
            server, share = op.server, op.share.name
        else:
            server, share = self._server(ctx.srv_call), check_share_name(ctx.net_root)
        volume_info_class(ctx)
        url = server.url(share, [], collection=True)
        what = f"cannot query the volume of share {share!r}"
        entries = server.propfind(url, 0, what, body=QUOTA_BODY)
        if not entries:
            raise error(S.STATUS_BAD_NETWORK_NAME, f"{what}: the share is gone")
        available, used = entries[0].quota_available, entries[0].quota_used
        if available is None:
            raise error(S.STATUS_NOT_SUPPORTED, f"{what}: the server reports no quota")
        return posix_volume(
            total=available + (used or 0),
            free=available,
            avail=available,
            block=0,
            fs_name=FS_NAME,
            label=share,
            serial=zlib.crc32(f"{server.config.url}{share}".encode()),
            max_name_length=MAX_NAME_LENGTH,
        )

    # --- close --------------------------------------------------------------------------------
    def close_srv_open(self, ctx: RxContext) -> Result:
        op = self._opens.pop(ctx.srv_open)
        self._enumerations.forget_srv_open(ctx.srv_open)
        self._watches.end(srv_open=ctx.srv_open)
        try:
            self._finish(op)
        except NtStatusError as exc:
            return Result(status=exc.status, message=exc.strerror or "")
        return Result()

    def _finish(self, op: Open) -> None:
        """What closing an open does: delete it if delete-pending, else upload staged data."""
        try:
            if op.delete_pending:
                spool.end_upload(op)  # the PUT must not bring the file back after the DELETE
                self._delete(op)
            elif op.stage is not None and op.stage.dirty:
                try:
                    spool.upload(op)
                except NtStatusError as exc:
                    raise error(
                        exc.status,
                        f"{exc.strerror}; the data written through this handle did not reach "
                        "the server",
                    ) from None
        finally:
            spool.end_upload(op)  # before its staging file closes
            op.drop_stream()
            if op.stage is not None:
                op.stage.close()
                op.stage = None

    @staticmethod
    def _delete(op: Open) -> None:
        what = f"cannot delete {show(op.path)}"
        if op.is_dir:
            # DELETE of a collection is recursive in WebDAV: never take what appeared since
            try:
                children = op.server.children(op.share.name, op.parts, op.path)
            except NtStatusError as exc:
                if exc.status == S.STATUS_OBJECT_NAME_NOT_FOUND:
                    return  # already gone: what was asked for
                raise
            if children:
                raise error(S.STATUS_DIRECTORY_NOT_EMPTY, f"{what}: not empty")
        url = op.url()
        response = op.server.request("DELETE", url, what)
        if response.status_code in (200, 202, 204, 404):  # 404: already gone, what was asked
            return
        raise fail(response, "DELETE", what)

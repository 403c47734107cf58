"""The WebDAV mini-redirector's routines (``WebDavMiniRdr``); the package docstring says what
it serves and how."""

from __future__ import annotations

import contextlib
import itertools
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
    Result,
    lowio_of,
    posix_volume,
    set_file_info_with,
    volume_info_class,
)
from rdbss.minirdrs.listing import Enumerations
from rdbss.minirdrs.local import (
    LocalMiniRdr,
    _arg_bool,
    _arg_int,
    _arg_str,
    _components,
    _show,
    check_share_name,
)
from rdbss.minirdrs.notify import Entry, Lister, PollingWatches, WatchLimits, notify_interval
from rdbss.minirdrs.setup import AUTHENTICATE, SHARE_CHECK, SetupDeadline
from rdbss.minirdrs.webdav import reads, spool
from rdbss.minirdrs.webdav.config import NOTIFY_INTERVAL_S, WebDavConfig
from rdbss.minirdrs.webdav.connect import connect, probe
from rdbss.minirdrs.webdav.errors import error, fail
from rdbss.minirdrs.webdav.handle import Open
from rdbss.minirdrs.webdav.props import QUOTA_BODY, DavEntry, file_id, file_info
from rdbss.minirdrs.webdav.session import Session
from rdbss.minirdrs.wildcard import is_name_in_expression
from rdbss.model.buffering import BUFFERING_STATE_MASK, HANDLE_BITS
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
_OVERWRITING = frozenset({D.FILE_SUPERSEDE, D.FILE_OVERWRITE, D.FILE_OVERWRITE_IF})
_CREATING = frozenset({D.FILE_SUPERSEDE, D.FILE_CREATE, D.FILE_OPEN_IF, D.FILE_OVERWRITE_IF})
_TIME_ARGS = ("creation_time", "last_access_time", "last_write_time", "change_time")


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
        self._opens: dict[int, Open] = {}
        self._enumerations: Enumerations[DavEntry] = Enumerations()
        self._ids = itertools.count(1)
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
        with self._lock:
            opens = list(self._opens.values())
            self._opens.clear()
            self._enumerations.clear()
            servers = list(self._servers.values())
            self._servers.clear()
        for op in opens:
            try:
                self._finish(op)
            except NtStatusError as exc:
                log.error(
                    "closing %s on %s at shutdown failed: %s",
                    _show(op.path),
                    op.server.name,
                    exc.strerror,
                )
            except Exception:
                log.exception("closing %s at shutdown failed", _show(op.path))
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
        with self._lock:
            op = self._opens.get(ctx.srv_open) if ctx.srv_open is not None else None
        if op is None:
            raise error(S.STATUS_INVALID_HANDLE, f"unknown srv_open {ctx.srv_open!r}")
        return op

    def _delete_pending_at(self, server: Session, share: str, rel: str) -> bool:
        with self._lock:
            return any(
                op.delete_pending
                and op.server.name.lower() == server.name.lower()
                and op.share == share
                and op.path == rel
                for op in self._opens.values()
            )

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
    def _target(self, ctx: RxContext) -> tuple[Session, str, list[str], CreateParameters]:
        """A create's server, share, name components and parameters."""
        server = self._server(ctx.srv_call)
        share = check_share_name(ctx.net_root)
        return server, share, _components(ctx.path or ""), ctx.create or CreateParameters()

    def create(self, ctx: RxContext) -> Result:
        server, share, parts, params = self._target(ctx)
        rel = "\\".join(parts)
        disposition, options = LocalMiniRdr._check_create_parameters(params)
        if self._delete_pending_at(server, share, rel):
            raise error(S.STATUS_DELETE_PENDING, f"{_show(rel)} is being deleted")
        entry = server.stat(share, parts, rel)
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
        with self._lock:
            srv_open = next(self._ids)
            self._opens[srv_open] = op
        return Result(
            information=information,
            result={**self._info(op), "srv_open": srv_open, "directory": op.is_dir},
        )

    def query_open(self, ctx: RxContext) -> Result:
        """MRxQueryOpen: what ``create`` answers for FILE_READ_ATTRIBUTES and FILE_OPEN (the
        same checks, in the same order, so the same status) from one PROPFIND Depth 0, and no
        SrvOpen to close afterwards. A name that is not there costs one more PROPFIND (of its
        parent), as in ``create``, to tell OBJECT_NAME_NOT_FOUND from OBJECT_PATH_NOT_FOUND."""
        server, share, parts, params = self._target(ctx)
        rel = "\\".join(parts)
        disposition, options = LocalMiniRdr._check_create_parameters(params)
        if not is_query_open(params):
            raise error(
                S.STATUS_INVALID_PARAMETER, "MRxQueryOpen answers an open for attributes only"
            )
        if self._delete_pending_at(server, share, rel):
            raise error(S.STATUS_DELETE_PENDING, f"{_show(rel)} is being deleted")
        entry = server.stat(share, parts, rel)
        if entry is None:
            if not parts:
                raise error(S.STATUS_BAD_NETWORK_NAME, f"share {share!r} is gone")
            server.check_parent(share, parts, rel)
            raise error(S.STATUS_OBJECT_NAME_NOT_FOUND, f"{_show(rel)} not found")
        if entry.is_dir:
            LocalMiniRdr._check_open_dir(rel, options, disposition, False)
        elif options & CreateOptions.FILE_DIRECTORY_FILE:
            raise error(S.STATUS_NOT_A_DIRECTORY, f"{_show(rel)} is not a directory")
        info = file_info(entry, rel, ident=file_id(str(server.config.url), share, rel))
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
        with self._lock:
            for srv_open, old in list(self._opens.items()):
                if (
                    old.fobx == op.fobx
                    and old.server is not op.server
                    and old.server.dead is not None
                    and old.server.name.lower() == op.server.name.lower()
                    and old.share == op.share
                    and old.path == op.path
                ):
                    del self._opens[srv_open]
                    self._enumerations.forget_srv_open(srv_open)
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
        log.info("re-opened %s on %s: kept its staged data", _show(op.path), op.server.name)

    def _create_new(
        self,
        server: Session,
        share: str,
        parts: list[str],
        rel: str,
        params: CreateParameters,
        disposition: D,
        options: int,
    ) -> Open:
        if not parts:
            raise error(S.STATUS_BAD_NETWORK_NAME, f"share {share!r} is gone")
        server.check_parent(share, parts, rel)
        if disposition not in _CREATING:
            raise error(S.STATUS_OBJECT_NAME_NOT_FOUND, f"{_show(rel)} not found")
        if params.file_attributes & FileAttributes.READONLY:
            raise error(S.STATUS_NOT_SUPPORTED, "WebDAV has no read-only attribute")
        can_read, can_write, append_only = LocalMiniRdr._data_access(params.desired_access)
        is_dir = bool(options & CreateOptions.FILE_DIRECTORY_FILE)
        what = f"cannot create {_show(rel)}"
        if is_dir:
            url = server.url(share, parts, collection=True)
            response = server.request("MKCOL", url, what)
            if response.status_code not in (200, 201, 204):
                raise fail(response, "MKCOL", what)
        else:
            url = server.url(share, parts, collection=False)
            # If-None-Match: * so a file someone else made meanwhile is not clobbered
            response = server.request("PUT", url, what, headers={"If-None-Match": "*"}, content=b"")
            if response.status_code not in (200, 201, 204):
                raise fail(response, "PUT", what)
        entry = server.stat(share, parts, rel)
        if entry is None:
            now = time.time_ns()
            path = server.decoded_path(share, parts)
            entry = DavEntry(path, is_dir, 0, now, now)
        return Open(
            server,
            share,
            rel,
            entry,
            is_dir,
            can_read,
            can_write,
            append_only=append_only,
            empty_on_server=not is_dir,
            streamable=not is_dir,
        )

    def _open_existing(
        self,
        server: Session,
        share: str,
        parts: list[str],
        rel: str,
        entry: DavEntry,
        params: CreateParameters,
        disposition: D,
        options: int,
    ) -> tuple[Open, int]:
        can_read, can_write, append_only = LocalMiniRdr._data_access(params.desired_access)
        if disposition == D.FILE_CREATE:
            raise error(S.STATUS_OBJECT_NAME_COLLISION, f"{_show(rel)} already exists")
        if entry.is_dir:
            LocalMiniRdr._check_open_dir(rel, options, disposition, can_write)
            op = Open(server, share, rel, entry, True, can_read, can_write)
            return op, int(CreateInformation.FILE_OPENED)
        if options & CreateOptions.FILE_DIRECTORY_FILE:
            raise error(S.STATUS_NOT_A_DIRECTORY, f"{_show(rel)} is not a directory")
        if params.file_attributes & FileAttributes.READONLY and disposition in _OVERWRITING:
            raise error(S.STATUS_NOT_SUPPORTED, "WebDAV has no read-only attribute")
        overwrite = disposition in _OVERWRITING
        if overwrite:
            what = f"cannot overwrite {_show(rel)}"
            url = server.url(share, parts, collection=False)
            response = server.request("PUT", url, what, content=b"")
            if response.status_code not in (200, 201, 204):
                raise fail(response, "PUT", what)
            entry = server.stat(share, parts, rel) or replace(
                entry, size=0, last_modified_ns=time.time_ns()
            )
        op = Open(
            server,
            share,
            rel,
            entry,
            False,
            can_read,
            can_write,
            append_only=append_only,
            empty_on_server=overwrite,
            streamable=overwrite,
        )
        information = {
            D.FILE_SUPERSEDE: CreateInformation.FILE_SUPERSEDED,
            D.FILE_OVERWRITE: CreateInformation.FILE_OVERWRITTEN,
            D.FILE_OVERWRITE_IF: CreateInformation.FILE_OVERWRITTEN,
        }.get(disposition, CreateInformation.FILE_OPENED)
        return op, int(information)

    def _check_deletable(self, op: Open) -> None:
        if not op.path:
            raise error(S.STATUS_ACCESS_DENIED, "the share root cannot be deleted")
        if op.is_dir and op.server.children(op.share, op.parts, op.path):
            raise error(S.STATUS_DIRECTORY_NOT_EMPTY, f"{_show(op.path)} is not empty")

    def _info(self, op: Open) -> dict[str, Any]:
        size = op.stage.size() if op.stage is not None else None
        return file_info(
            op.entry,
            op.path,
            size=size,
            last_write_ns=op.written_ns,
            delete_pending=op.delete_pending,
            ident=file_id(str(op.server.config.url), op.share, op.path),
        )

    # --- low I/O ------------------------------------------------------------------------------
    def low_io_submit(
        self, ctx: RxContext, payload: bytes | bytearray | memoryview | None = None
    ) -> Result:
        op = self._open_of(ctx)
        lowio = lowio_of(ctx)
        if lowio.operation == LowIoOp.NOTIFY_CHANGE_DIRECTORY:
            if not op.is_dir:
                raise error(S.STATUS_INVALID_PARAMETER, f"{_show(op.path)} is not a directory")
            return self._watches.notify(
                ctx,
                self._lister(op),
                group=op.server.name.lower(),
                folder=f"{op.share}\\{op.path}",
                completion_filter=lowio.completion_filter,
                tree=lowio.watch_tree,
                what=_show(op.path),
            )
        if op.is_dir:
            raise error(S.STATUS_INVALID_DEVICE_REQUEST, f"{_show(op.path)} is a directory")
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
                op.share, parts, "\\".join(parts), gone=S.STATUS_OBJECT_PATH_NOT_FOUND
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
            raise error(S.STATUS_INVALID_DEVICE_REQUEST, f"{_show(op.path)} is a directory")
        return reads.read(op, lowio.offset, len(target), into=target)

    def _write(
        self, op: Open, offset: int, payload: bytes | bytearray | memoryview | None
    ) -> Result:
        if not op.can_write:
            raise error(S.STATUS_ACCESS_DENIED, f"{_show(op.path)} is not open for writing")
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
            fresh = op.server.stat(op.share, op.parts, op.path)
            if fresh is not None and fresh.is_dir == op.is_dir:
                op.entry = fresh
        info = self._info(op)
        info["position"] = 0
        return Result(result=info)

    def set_file_info(self, ctx: RxContext) -> Result:
        return set_file_info_with(self, self._open_of(ctx), ctx)

    @staticmethod
    def _set_basic(op: Open, args: Mapping[str, Any]) -> None:
        times = {key: _arg_int(args, key, default=0) for key in _TIME_ARGS}
        attributes = _arg_int(args, "attributes", default=0)
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
            raise error(S.STATUS_ACCESS_DENIED, f"{_show(op.path)} is not open for writing")
        # nothing to fetch for a truncation to 0
        return spool.stage_of(op, self._staging, fill=size > 0)

    def _set_end_of_file(self, op: Open, args: Mapping[str, Any]) -> None:
        size = _arg_int(args, "size")
        if size < 0:
            raise error(S.STATUS_INVALID_PARAMETER, "argument 'size' must not be negative")
        fresh = op.stage is None
        stage = self._writable_file(op, "end of file", size)
        if (fresh and size == 0) or size != stage.size():
            spool.truncate(op, stage, size)

    def _set_allocation(self, op: Open, args: Mapping[str, Any]) -> None:
        size = _arg_int(args, "size")
        if size < 0:
            raise error(S.STATUS_INVALID_PARAMETER, "argument 'size' must not be negative")
        fresh = op.stage is None
        stage = self._writable_file(op, "allocation size", size)
        if (fresh and size == 0) or size < stage.size():
            spool.truncate(op, stage, size)

    def _set_rename(self, op: Open, args: Mapping[str, Any]) -> None:
        target_parts = _components(_arg_str(args, "target"))
        target_rel = "\\".join(target_parts)
        replace_existing = _arg_bool(args, "replace", default=False)
        if not target_rel:
            raise error(S.STATUS_INVALID_PARAMETER, "cannot rename onto the share root")
        if not op.path:
            raise error(S.STATUS_ACCESS_DENIED, "the share root cannot be renamed")
        if target_rel == op.path:
            return
        server = op.server
        server.check_parent(op.share, target_parts, target_rel)
        existing = server.stat(op.share, target_parts, target_rel)
        if existing is not None:
            if not replace_existing:
                raise error(S.STATUS_OBJECT_NAME_COLLISION, f"{_show(target_rel)} already exists")
            if existing.is_dir:
                raise error(
                    S.STATUS_ACCESS_DENIED, f"{_show(target_rel)} is a directory: cannot replace it"
                )
        spool.end_upload(op)  # the streamed PUT goes to the old name: end it before the MOVE
        source = server.url(op.share, op.parts, collection=op.is_dir)
        target = server.url(op.share, target_parts, collection=op.is_dir)
        what = f"cannot rename {_show(op.path)} to {_show(target_rel)}"
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
        """Point every open at or under the moved name at its new name."""
        old = moved.path
        prefix = old + "\\"
        with self._lock:
            others = [o for o in self._opens.values() if o is not moved]
        for other in [moved, *others]:
            if other.server.name.lower() != moved.server.name.lower():
                continue
            if other.share != moved.share:
                continue
            if other.path == old:
                other.path = new
            elif other.path.startswith(prefix):
                other.path = new + "\\" + other.path[len(prefix) :]
            else:
                continue
            other.drop_stream()
            other.next_read = None

    def _set_disposition(self, op: Open, args: Mapping[str, Any]) -> None:
        delete = _arg_bool(args, "delete")
        if delete:
            self._check_deletable(op)
        op.delete_pending = delete

    # --- directories --------------------------------------------------------------------------
    def query_directory(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        if not op.is_dir:
            raise error(S.STATUS_INVALID_PARAMETER, f"{_show(op.path)} is not a directory")

        def load(pattern: str) -> list[tuple[str, DavEntry]]:
            children = op.server.children(op.share, op.parts, op.path)
            return [(n, children[n]) for n in sorted(children) if is_name_in_expression(pattern, n)]

        def describe(name: str, entry: DavEntry) -> dict[str, Any]:
            rel = f"{op.path}\\{name}" if op.path else name
            return file_info(
                entry,
                rel,
                delete_pending=self._delete_pending_at(op.server, op.share, rel),
                ident=file_id(str(op.server.config.url), op.share, rel),
            )

        return self._enumerations.query(ctx, _show(op.path), load, describe)

    def cleanup_fobx(self, ctx: RxContext) -> Result:
        self._enumerations.forget_fobx(ctx.fobx)
        self._watches.end(fobx=ctx.fobx)
        return Result()

    # --- volume -------------------------------------------------------------------------------
    def query_volume_info(self, ctx: RxContext) -> Result:
        if ctx.srv_open is not None:
            op = self._open_of(ctx)
            server, share = op.server, op.share
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
        with self._lock:
            op = self._opens.pop(ctx.srv_open, None) if ctx.srv_open is not None else None
        if op is not None:
            self._enumerations.forget_srv_open(ctx.srv_open)
            self._watches.end(srv_open=ctx.srv_open)
        if op is None:
            raise error(S.STATUS_INVALID_HANDLE, f"unknown srv_open {ctx.srv_open!r}")
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
        what = f"cannot delete {_show(op.path)}"
        if op.is_dir:
            # DELETE of a collection is recursive in WebDAV: never take what appeared since
            try:
                children = op.server.children(op.share, op.parts, op.path)
            except NtStatusError as exc:
                if exc.status == S.STATUS_OBJECT_NAME_NOT_FOUND:
                    return  # already gone: what was asked for
                raise
            if children:
                raise error(S.STATUS_DIRECTORY_NOT_EMPTY, f"{what}: not empty")
        url = op.server.url(op.share, op.parts, collection=op.is_dir)
        response = op.server.request("DELETE", url, what)
        if response.status_code in (200, 202, 204, 404):  # 404: already gone, what was asked
            return
        raise fail(response, "DELETE", what)

"""The WebDAV mini-redirector's routines (``WebDavMiniRdr``): ``PosixMiniRdr``'s on WebDAV
primitives (a PROPFIND for a lookup, MKCOL, MOVE, DELETE, reads by ranged GETs, writes through
a staging file uploaded at flush and close), and what is WebDAV's own: the connections, change
notification by polling, the shared-memory read path. The package docstring says what it
serves and how.

Where WebDAV differs from the base: a create or query open of a top-level name does not look up
the share root again (it was checked when the VNetRoot was made, and a PUT says 409 if it is
gone); a create that would set FILE_ATTRIBUTE_READONLY is refused before anything is made;
setting any time (creation and change time too) is STATUS_NOT_SUPPORTED.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

from rdbss.minirdrs.base import FILE_INFO_CLASSES, QuietConnections, Result, lowio_of
from rdbss.minirdrs.common.args import components, show
from rdbss.minirdrs.common.fileinfo import StatLike
from rdbss.minirdrs.common.notify import Entry, Lister
from rdbss.minirdrs.common.setup import AUTHENTICATE, SHARE_CHECK, SetupDeadline
from rdbss.minirdrs.common.shares import check_share_name
from rdbss.minirdrs.polled import PolledNotifyMiniRdr
from rdbss.minirdrs.posix import OpenRequest, Volume, current_request
from rdbss.minirdrs.primitives import ChainItem
from rdbss.minirdrs.webdav import chain, reads, spool
from rdbss.minirdrs.webdav.config import NOTIFY_INTERVAL_S, WebDavConfig
from rdbss.minirdrs.webdav.connect import connect, probe
from rdbss.minirdrs.webdav.errors import error, fail
from rdbss.minirdrs.webdav.handle import DavShare, DavStat, Open
from rdbss.minirdrs.webdav.props import QUOTA_BODY, DavEntry, put_entry
from rdbss.minirdrs.webdav.session import Session
from rdbss.minirdrs.webdav.staging import StagingFolder
from rdbss.model.buffering import BUFFERING_STATE_MASK, HANDLE_BITS
from rdbss.model.compound import ChainKind
from rdbss.wire.constants import FileAttributes, LowIoOp
from rdbss.wire.rxcontext import RxContext
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.minirdr.webdav")

S = NtStatus

MAX_NAME_LENGTH = 255
_SETTABLE_ELSEWHERE = ("creation_time", "change_time")  # times the base leaves alone


def _parts(rel: str) -> list[str]:
    return rel.split("\\") if rel else []


class WebDavMiniRdr(QuietConnections, PolledNotifyMiniRdr[DavShare, Open]):
    """Serves the collections of configured WebDAV servers as shares."""

    kind: ClassVar[str] = "webdav"
    fs_name: ClassVar[str] = "rdbss-webdav"
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
        self.start_watches(config, NOTIFY_INTERVAL_S)
        self.timeout = parsed.timeout
        self._configs = dict(parsed.servers)
        self._staging = StagingFolder(parsed.staging_parent)
        self._lock = threading.RLock()
        self._servers: dict[str, Session] = {}
        self._shares: dict[tuple[str, str], DavShare] = {}
        # httpx logs every request at INFO; this process's log is the daemon's log.
        for noisy in ("httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)

    def servers(self) -> list[str]:
        return [c.name for c in self._configs.values()]

    def close(self) -> None:
        """Process shutdown: upload what is still staged and delete what was delete-pending
        (as closing each handle would), then drop every connection and the staging folder."""
        self._watches.close()
        opens = self._opens.clear()
        self._enumerations.clear()
        with self._lock:
            servers = list(self._servers.values())
            self._servers.clear()
        for op in opens:
            try:
                self.close_handle(op)
                if op.delete_pending:
                    self._delete(op)
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
        if old.delete_pending:
            self._opens.mark_delete_pending(op)
        log.info("re-opened %s on %s: kept its staged data", show(op.path), op.server.name)

    # --- primitives -----------------------------------------------------------------------------
    def share_of(self, ctx: RxContext) -> DavShare:
        server = self._server(ctx.srv_call)
        name = check_share_name(ctx.net_root)
        key = (server.name.lower(), name)
        with self._lock:
            return self._shares.setdefault(key, DavShare(*key))

    def _session(self, share: DavShare) -> Session:
        return self._server(share.server)

    def _stat(self, share: DavShare, server: Session, entry: DavEntry) -> DavStat:
        return DavStat(entry, (str(server.config.url), share.name))

    def lookup(self, share: DavShare, rel: str, *, follow: bool = True) -> StatLike | None:
        """One PROPFIND, Depth 0; STATUS_BAD_NETWORK_NAME when the share itself is gone. In a
        chain whose GET went first (chain.py): that GET's answer."""
        got = chain.fetched.get()
        if got is not None and got.share is share and got.rel == rel:
            return None if got.entry is None else self._stat(share, self._session(share), got.entry)
        server = self._session(share)
        entry = server.stat(share.name, _parts(rel), rel)
        if entry is None:
            if not rel:
                raise error(S.STATUS_BAD_NETWORK_NAME, f"share {share.name!r} is gone")
            return None
        return self._stat(share, server, entry)

    def parent_known(self, share: DavShare, rel: str) -> bool:
        """A top-level name's parent is the share root, checked at MRxCreateVNetRoot."""
        return "\\" not in rel

    def file_info(self, st: StatLike, rel: str, *, delete_pending: bool = False) -> dict[str, Any]:
        if not isinstance(st, DavStat):
            raise TypeError(f"not a WebDAV stat: {type(st).__name__}")
        return st.info(rel, delete_pending=delete_pending)

    @staticmethod
    def _refuse_readonly() -> None:
        """WebDAV has no read-only attribute: a create of a folder that would set it makes
        nothing (the open of a file is told by ``how.readonly``)."""
        ctx = current_request()
        params = ctx.create if ctx is not None else None
        if params is not None and params.file_attributes & FileAttributes.READONLY:
            raise error(S.STATUS_NOT_SUPPORTED, "WebDAV has no read-only attribute")

    def mkdir(self, share: DavShare, rel: str) -> None:
        self._refuse_readonly()
        server = self._session(share)
        what = f"cannot create {show(rel)}"
        url = server.url(share.name, _parts(rel), collection=True)
        response = server.request("MKCOL", url, what)
        if response.status_code not in (200, 201, 204):
            raise fail(response, "MKCOL", what)

    def open(self, share: DavShare, rel: str, how: OpenRequest) -> tuple[Open, None]:
        """A file made empty here (created, overwritten: a PUT of nothing) or what the lookup
        of this create found (``how.found``); the new properties are looked up after a change.
        The create's answer is the open's own (``fstat`` asks nothing)."""
        server = self._session(share)
        parts = _parts(rel)
        entry = how.found.entry if isinstance(how.found, DavStat) else None
        if how.readonly:  # before anything is made
            raise error(S.STATUS_NOT_SUPPORTED, "WebDAV has no read-only attribute")
        if how.create or how.truncate:
            entry = self._put_empty(server, share, rel, how, entry)
        elif entry is None:  # a directory mkdir just made, or a name nobody looked up
            entry = server.stat(share.name, parts, rel)
            if entry is None and how.directory:
                now = time.time_ns()
                entry = DavEntry(server.decoded_path(share.name, parts), True, 0, now, now)
            elif entry is None:
                raise error(S.STATUS_OBJECT_NAME_NOT_FOUND, f"{show(rel)} not found")
        empty = how.create or how.truncate
        op = Open(
            share=share,
            path=rel,
            is_dir=how.directory,
            can_read=how.can_read,
            can_write=how.can_write,
            append_only=how.append_only,
            server=server,
            entry=entry,
            empty_on_server=empty,
            streamable=empty,
        )
        ctx = current_request()
        op.fobx = ctx.fobx if ctx is not None else None
        self._adopt_orphan(op)
        return op, None

    @staticmethod
    def _put_empty(
        server: Session, share: DavShare, rel: str, how: OpenRequest, found: DavEntry | None
    ) -> DavEntry:
        """Create or overwrite ``rel`` as an empty file (a PUT of nothing): its properties as
        the PUT's answer gives them (props.put_entry: its strong ETag and Date), else as a
        PROPFIND then finds them."""
        parts = _parts(rel)
        what = f"cannot {'create' if how.create else 'overwrite'} {show(rel)}"
        # If-None-Match: * so a file someone else made meanwhile is not clobbered
        headers = {"If-None-Match": "*"} if how.create else None
        url = server.url(share.name, parts, collection=False)
        response = server.request("PUT", url, what, headers=headers, content=b"")
        if response.status_code not in (200, 201, 204):
            raise fail(response, "PUT", what)
        path = server.decoded_path(share.name, parts)
        etag = response.headers.get("etag")
        made = put_entry(
            path, response.status_code == 201, etag, response.headers.get("date"), found
        )
        if made is not None:
            server.stored(path, 0, etag, made.creation_ns)
            return made
        changed = server.stat(share.name, parts, rel)
        now = time.time_ns()
        if changed is not None:
            return changed
        if found is not None:
            return replace(found, size=0, last_modified_ns=now)
        return DavEntry(path, False, 0, now, now)

    # --- chains: a small file's create, reads and close in one GET (chain.py) ---------------
    def chain_limits(self, create: RxContext) -> tuple[int, int] | None:
        return chain.MAX_CHAIN_READ, 0  # writes stay one by one (staged, uploaded at close)

    def create_with_related(
        self,
        create: RxContext,
        related: list[RxContext],
        payloads: list[memoryview | None],
    ) -> list[Result | Exception] | None:
        """A read of an existing file's start (chain.py ``read_window``): its GET first, then
        the base's chain with that GET's answer for the lookup and the reads. None (one by
        one) for any other chain."""
        window = chain.read_window(
            create, related, [None if p is None else len(p) for p in payloads]
        )
        if not window:
            return None
        try:
            share = self.share_of(create)
            rel = "\\".join(components(create.path or ""))
            server = self._session(share)
        except NtStatusError:
            return None  # the create alone answers it
        token = chain.fetched.set(chain.fetch(server, share, rel, window))
        try:
            return super().create_with_related(create, related, payloads)
        finally:
            chain.fetched.reset(token)

    def run_chain(self, create: RxContext, op: Open, items: list[ChainItem]) -> list[object]:
        """The READs from the GET's bytes when it brought this file's; the rest as alone."""
        got = chain.fetched.get()
        head = got.head if got is not None and got.share is op.share else None
        if head is None or got is None or got.rel != op.path or op.stage is not None:
            return super().run_chain(create, op, items)
        answers: list[object] = []
        for item in items:
            if item.kind is ChainKind.READ and item.offset is not None:
                answers.append(head[item.offset : item.offset + item.length])
            else:
                answers.extend(super().run_chain(create, op, [item]))
        return answers

    def fstat(self, op: Open) -> StatLike:
        return op.stat()

    def close_handle(self, op: Open) -> None:
        """Upload what this open staged (unless it is to be deleted), end its streams and
        drop its staging file."""
        try:
            if not (op.delete_pending or op.orphaned) and op.stage is not None and op.stage.dirty:
                try:
                    spool.upload(op)
                except NtStatusError as exc:
                    raise error(
                        exc.status,
                        f"{exc.strerror}; the data written through this handle did not reach "
                        "the server",
                    ) from None
        finally:
            spool.end_upload(op)  # before its staging file closes (and before a DELETE)
            op.drop_stream()
            if op.stage is not None:
                op.stage.close()
                op.stage = None

    def read_at(self, op: Open, offset: int, length: int) -> bytes:
        return reads.read_at(op, offset, length)

    def write_at(self, op: Open, offset: int | None, data: memoryview) -> int:
        if not len(data):
            return 0
        return spool.write(op, self._staging, -1 if offset is None else offset, data)

    def list_dir(self, op: Open) -> list[tuple[str, StatLike | None]]:
        """The server's entries, but a file with data staged by an open here shows that open's
        size and write time, as its own queries do (the server has not seen them yet)."""
        children = op.server.children(op.share.name, op.parts, op.path)
        prefix = op.path + "\\" if op.path else ""
        staged = {
            other.path: other
            for other in self._opens.values()
            if other.share is op.share and other.stage is not None and not other.orphaned
        }
        listed: list[tuple[str, StatLike | None]] = []
        for name, entry in children.items():
            other = staged.get(prefix + name)
            listed.append((name, other.stat() if other else self._stat(op.share, op.server, entry)))
        return listed

    def rename(self, op: Open, target: str, *, replace: bool, existing: StatLike | None) -> None:
        share, rel, server, is_dir = op.share, op.path, op.server, op.is_dir
        for other in self._opens.values():
            if other.share is share and other.path == rel:
                spool.end_upload(other)  # a streamed PUT goes to the old name: end it before
        source = server.url(share.name, _parts(rel), collection=is_dir)
        destination = server.url(share.name, _parts(target), collection=is_dir)
        what = f"cannot rename {show(rel)} to {show(target)}"
        response = server.request(
            "MOVE",
            source,
            what,
            headers={"Destination": str(destination), "Overwrite": "T" if replace else "F"},
        )
        if response.status_code not in (200, 201, 204):
            raise fail(response, "MOVE", what)
        self._orphan(share, target, op)  # the opens of what the move replaced

    def renamed(self, share: DavShare, old: str, new: str) -> None:
        """The opens at or under the new name read again from the server (a stream reads the
        old URL)."""
        prefix = new + "\\"
        for op in self._opens.values():
            if op.share is share and (op.path == new or op.path.startswith(prefix)):
                op.drop_stream()
                op.next_read = None

    def _remove(self, share: DavShare, rel: str, *, collection: bool) -> None:
        server = self._session(share)
        what = f"cannot delete {show(rel)}"
        url = server.url(share.name, _parts(rel), collection=collection)
        response = server.request("DELETE", url, what)
        if response.status_code not in (200, 202, 204, 404):  # 404: already gone, as asked
            raise fail(response, "DELETE", what)

    def unlink(self, op: Open) -> None:
        self._remove(op.share, op.path, collection=False)
        self._orphan(op.share, op.path, op)

    def _orphan(self, share: DavShare, rel: str, keep: Open) -> None:
        """The resource at ``rel`` was deleted or replaced through ``keep``: the other opens of
        it write nowhere from now on (their close would PUT it back)."""
        for other in self._opens.values():
            if other is not keep and other.share is share and other.path == rel:
                spool.abandon(other)

    def rmdir(self, op: Open) -> None:
        share, rel = op.share, op.path
        # DELETE of a collection is recursive in WebDAV: never take what appeared since
        if self._session(share).children(share.name, _parts(rel), rel):
            raise error(S.STATUS_DIRECTORY_NOT_EMPTY, f"cannot delete {show(rel)}: not empty")
        self._remove(share, rel, collection=True)

    def set_size(self, op: Open, size: int) -> None:
        fresh = op.stage is None
        # nothing to fetch for a truncation to 0
        stage = spool.stage_of(op, self._staging, fill=size > 0)
        if (fresh and size == 0) or size != stage.size():
            spool.truncate(op, stage, size)

    def set_readonly(self, op: Open, readonly: bool) -> None:
        if readonly:
            raise error(S.STATUS_NOT_SUPPORTED, "WebDAV has no read-only attribute")
        # other attribute bits: nowhere to keep them; accepted and ignored

    def set_times(self, op: Open, atime_ns: int | None, mtime_ns: int | None) -> None:
        raise error(S.STATUS_NOT_SUPPORTED, "WebDAV cannot set file times")

    def _set_basic(self, op: Open, args: Mapping[str, Any]) -> None:
        super()._set_basic(op, args)
        if any(isinstance(args.get(k), int) and args[k] > 0 for k in _SETTABLE_ELSEWHERE):
            raise error(S.STATUS_NOT_SUPPORTED, "WebDAV cannot set file times")

    def statvfs(self, share: DavShare) -> Volume:
        server = self._session(share)
        url = server.url(share.name, [], collection=True)
        what = f"cannot query the volume of share {share.name!r}"
        entries = server.propfind(url, 0, what, body=QUOTA_BODY)
        if not entries:
            raise error(S.STATUS_BAD_NETWORK_NAME, f"{what}: the share is gone")
        available, used = entries[0].quota_available, entries[0].quota_used
        if available is None:
            raise error(S.STATUS_NOT_SUPPORTED, f"{what}: the server reports no quota")
        return Volume(
            total=available + (used or 0),
            free=available,
            avail=available,
            block=0,
            serial=zlib.crc32(f"{server.config.url}{share.name}".encode()),
            max_name_length=MAX_NAME_LENGTH,
        )

    def share_label(self, share: DavShare) -> str:
        return share.name

    # --- routines the base leaves to the backend, or that WebDAV does its own way -------------
    def query_file_info(self, ctx: RxContext) -> Result:
        """As the base, with the properties asked from the server again (one PROPFIND) unless
        this open has staged data."""
        op = self._opens.find(ctx.srv_open)
        info_class = ctx.info.info_class if ctx.info is not None else None
        if op is not None and op.stage is None and info_class in FILE_INFO_CLASSES:
            fresh = op.server.stat(op.share.name, op.parts, op.path)
            if fresh is not None and fresh.is_dir == op.is_dir:
                op.entry = fresh
        return super().query_file_info(ctx)

    def flush(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        if not (op.is_dir or op.orphaned):
            spool.upload(op)
        return Result()

    def read_into(self, ctx: RxContext, target: memoryview) -> Result | None:
        """The shared-memory path: a streamed read copies the body straight into the client's
        arena; other reads are copied there from their answer."""
        op = self._open_of(ctx)
        offset = lowio_of(ctx).offset
        if op.is_dir:
            raise error(S.STATUS_INVALID_DEVICE_REQUEST, f"{show(op.path)} is a directory")
        self._check_read(op, offset, len(target))
        if not len(target):
            return Result(information=0)
        got = reads.read_into(op, offset, target)
        if not got:
            raise error(S.STATUS_END_OF_FILE, f"{show(op.path)}: offset {offset} is past EOF")
        return Result(information=got)

    def notify_place(self, op: Open) -> tuple[str, str]:
        return op.server.name.lower(), f"{op.share.name}\\{op.path}"

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

"""The SMB mini-redirector's routines: serves the shares of configured SMB2/3 servers (Samba,
Windows) as ``\\\\<server>\\<share>``, through smbprotocol (the options: config.py).

Each SrvCall is one ``SmbLink`` (link.py): its own connection, session and tree connects,
signing required, no oplocks or leases (smbprotocol cannot take a break). One session means one
user per server at a time: a share configured for another user answers
STATUS_NETWORK_CREDENTIAL_CONFLICT while a share of that server is connected. A set-up
(MRxCreateSrvCall, MRxCreateVNetRoot) keeps the deadline its RX_CONTEXT carries
(rdbss/minirdrs/setup.py); a negotiate below ``min_dialect``, or unable to give the encryption
asked for, answers STATUS_DOWNGRADE_DETECTED. Routines follow the dispatch interface's
conventions (rdbss/minirdrs/base.py); whatever the server decides (access, sharing, names,
locks) it decides, and its NTSTATUS comes back unchanged. A lost connection answers
STATUS_CONNECTION_DISCONNECTED and the SrvCall stays dead: its handles and the requests on it
answer the same at once.

MRxCreate is one related compound CREATE + QUERY_INFO, MRxQueryOpen (a stat) one compound
CREATE + QUERY_INFO + CLOSE (compound.py), and a compound's create with a related READ or WRITE
and close (a small file read or written whole) one CREATE + QUERY_INFO + READ/WRITE + CLOSE
(fused.py): one exchange with the server each, packed with struct (packed.py). The create rules
it checks before asking the server: see docs/routines.md, Create, collapsing and close.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

from smbprotocol.open import Open as SmbOpen

from rdbss.minirdrs.base import (
    ALL_LOWIO_OPS,
    VOLUME_INFO_CLASSES,
    MiniRdr,
    OpenTable,
    Result,
    lowio_of,
    set_file_info_with,
)
from rdbss.minirdrs.common.args import components, show
from rdbss.minirdrs.common.setup import TREE_CONNECT, SetupDeadline
from rdbss.minirdrs.common.shares import check_share_name
from rdbss.minirdrs.smb import compound, directory, fused, info, io, packed, waits
from rdbss.minirdrs.smb.config import Credentials, ServerConfig, SmbConfig
from rdbss.minirdrs.smb.link import SmbLink
from rdbss.minirdrs.smb.opens import SmbSrvOpen, close_quietly, renamed, set_file
from rdbss.minirdrs.smb.status import create_error
from rdbss.minirdrs.smb.structures import (
    SHARE_ALL,
    pack_disposition,
    parse_all_information,
    smb_file_info,
)
from rdbss.model.buffering import BUFFERING_STATE_MASK, HANDLE_BITS
from rdbss.model.create import check_create_parameters, data_access
from rdbss.model.dispatch import is_query_open
from rdbss.wire.constants import (
    Access,
    CreateInformation,
    CreateOptions,
    FileInformationClass,
    LowIoOp,
)
from rdbss.wire.rxcontext import CreateParameters, RxContext
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.smb")
S = NtStatus


class SmbMiniRdr(MiniRdr):
    """Serves the shares of the configured SMB servers."""

    kind: ClassVar[str] = "smb"
    blocking: ClassVar[bool] = True
    #: Byte-range locks and share modes belong to an SMB open: two handles sharing one would
    #: not lock each other out, so opens never collapse (and closes are never delayed).
    buffering_mask: ClassVar[int] = int(BUFFERING_STATE_MASK & ~HANDLE_BITS)
    lowio_ops: ClassVar[frozenset[LowIoOp]] = ALL_LOWIO_OPS

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, config)
        parsed = SmbConfig.parse(config)
        self.timeout = parsed.timeout
        self.keepalive_interval = parsed.keepalive_interval
        self._servers: Mapping[str, ServerConfig] = parsed.servers
        self._lock = threading.Lock()  # the links
        self._links: dict[str, SmbLink] = {}
        self._stopping = threading.Event()
        if self.keepalive_interval > 0:
            threading.Thread(target=self._keepalive_loop, name="smb-keepalive", daemon=True).start()
        self._opens: OpenTable[SmbSrvOpen] = OpenTable()
        self._waits = waits.Waits(self.complete_later)

    def servers(self) -> list[str]:
        return [server.name for server in self._servers.values()]

    def _keepalive_loop(self) -> None:
        """Echo idle links so a dead server is found before the next request needs it."""
        while not self._stopping.wait(self.keepalive_interval / 2):
            with self._lock:
                links = list(self._links.values())
            for link in links:
                try:
                    link.keepalive(self.keepalive_interval)
                except Exception:  # the loop must outlive any one link
                    log.exception("keepalive failed")

    def close(self) -> None:
        self._stopping.set()
        with self._lock:
            links = list(self._links.values())
            self._links.clear()
        self._opens.clear()
        for link in links:
            link.close()

    # --- lookups ------------------------------------------------------------------------------
    def _server(self, name: str | None) -> ServerConfig:
        server = self._servers.get(name.lower()) if isinstance(name, str) else None
        if server is None:
            raise NtStatusError(S.STATUS_BAD_NETWORK_PATH, f"server {name!r} is not served here")
        return server

    def _link(self, ctx: RxContext) -> SmbLink:
        server = self._server(ctx.srv_call)
        with self._lock:
            link = self._links.get(server.name.lower())
        if link is None:
            raise NtStatusError(
                S.STATUS_CONNECTION_DISCONNECTED, f"not connected to server {server.name!r}"
            )
        link.check_alive()
        return link

    def _open_of(self, ctx: RxContext) -> SmbSrvOpen:
        op = self._opens.get(ctx.srv_open)
        if op.closed:
            raise NtStatusError(
                S.STATUS_FILE_CLOSED, f"{show(op.path)}: its share was disconnected"
            )
        op.link.check_alive()
        return op

    # --- connections --------------------------------------------------------------------------
    def connection_lost(self, ctx: RxContext) -> bool:
        """The link is there and dead (lost, timed out or finalized: ``SmbLink.check_alive``
        would refuse)."""
        srv_call = ctx.srv_call
        server = self._servers.get(srv_call.lower()) if isinstance(srv_call, str) else None
        if server is None:
            return False
        with self._lock:
            link = self._links.get(server.name.lower())
        return link is not None and link.dead is not None

    def create_srv_call(self, ctx: RxContext) -> Result:
        server = self._server(ctx.srv_call)
        key = server.name.lower()
        with self._lock:
            old = self._links.get(key)
        if old is not None and old.dead is None:
            return Result()  # already connected (the connection manager asked again)
        link = SmbLink(server, self.timeout)
        link.connect(server.read_password(), SetupDeadline.of(ctx, server.name))
        with self._lock:
            old = self._links.get(key)
            self._links[key] = link
        if old is not None:
            old.close()
        return Result()

    def srv_call_winner_notify(self, ctx: RxContext) -> Result:
        self._link(ctx)
        return Result()

    def create_v_net_root(self, ctx: RxContext) -> Result:
        """Connect the share, as the user its configuration names. A connection has one session,
        so one user: a share that needs another user while the server's connection has a share
        connected answers STATUS_NETWORK_CREDENTIAL_CONFLICT (what Windows reports as error
        1219); with none connected, the connection is made again as that user."""
        link = self._link(ctx)
        server = link.server
        share = check_share_name(ctx.net_root)
        setup = SetupDeadline.of(ctx, server.name, TREE_CONNECT)
        credentials = server.credentials_for(share)
        if not credentials.same_user(link.username):
            if link.trees:
                in_use = ", ".join(sorted(link.trees))
                raise NtStatusError(
                    S.STATUS_NETWORK_CREDENTIAL_CONFLICT,
                    f"share {share!r} of server {server.name!r} is configured for user "
                    f"{credentials.username!r}, but the connection to that server is in use "
                    f"by user {link.username!r} (share(s) {in_use}): one server, one user at a "
                    "time; close the files of the other share(s) and let them disconnect first",
                )
            link = self._reconnect_as(link, credentials, setup)
        link.tree(share, setup)
        return Result()

    def _reconnect_as(
        self, old: SmbLink, credentials: Credentials, setup: SetupDeadline
    ) -> SmbLink:
        """A new connection to ``old``'s server as another user, in its place."""
        server = old.server
        link = SmbLink(server, self.timeout)
        link.connect(credentials.read_password(f"server {server.name!r}"), setup, credentials)
        with self._lock:
            self._links[server.name.lower()] = link
        old.close()
        return link

    def finalize_v_net_root(self, ctx: RxContext) -> Result:
        return Result()  # the tree connect belongs to the NetRoot

    def finalize_net_root(self, ctx: RxContext) -> Result:
        """Disconnect the share. Handles still on it (the core finalizes only idle NetRoots)
        are closed, and answer STATUS_FILE_CLOSED until the core closes them too."""
        with contextlib.suppress(Exception):
            server = self._server(ctx.srv_call)
            share = (ctx.net_root or "").lower()
            with self._lock:
                link = self._links.get(server.name.lower())
            if link is None:
                return Result()
            for op in self._opens.values():
                if op.link is not link or op.share.lower() != share or op.closed:
                    continue
                op.closed = True
                close_quietly(op)
            link.disconnect_tree(share)
        return Result()

    def finalize_srv_call(self, ctx: RxContext) -> Result:
        """Drop the connection (idle, lost or a losing candidate). Its handles stay known, dead
        with it, so their close still succeeds; the core re-opens them on a new SrvCall."""
        with contextlib.suppress(Exception):
            server = self._server(ctx.srv_call)
            with self._lock:
                link = self._links.pop(server.name.lower(), None)
            if link is not None:
                link.close()
        return Result()

    # --- create -------------------------------------------------------------------------------
    def _create_target(self, ctx: RxContext) -> tuple[SmbLink, str, str, CreateParameters]:
        """The link, share, share-relative path and parameters of a create."""
        link = self._link(ctx)
        share = check_share_name(ctx.net_root)
        rel = "\\".join(components(ctx.path or ""))
        return link, share, rel, ctx.create or CreateParameters()

    def create(self, ctx: RxContext) -> Result:
        creating = self._creating(ctx)
        go = compound.open_and_query(
            creating.link, creating.tree, creating.handle, creating.message, creating.answer
        )
        try:
            data = creating.link.call(f"cannot open {show(creating.rel)}", go)
        except NtStatusError as exc:
            raise create_error(exc, creating.disposition) from None
        return self._opened(creating, data)

    def _creating(self, ctx: RxContext) -> fused.Creating:
        """The checks of a create and its SMB2 CREATE, not sent yet."""
        link, share, rel, params = self._create_target(ctx)
        disposition, options = check_create_parameters(params)
        delete_on_close = bool(options & CreateOptions.FILE_DELETE_ON_CLOSE)
        if delete_on_close and not rel:
            raise NtStatusError(S.STATUS_ACCESS_DENIED, "the share root cannot be deleted")
        tree = link.tree(share)
        handle = SmbOpen(tree, rel)
        # FILE_READ_ATTRIBUTES is not subject to sharing and lets every handle answer queries.
        access = (params.desired_access | Access.FILE_READ_ATTRIBUTES) & 0xFFFFFFFF
        attributes = params.file_attributes & 0xFFFFFFFF
        share_access = params.share_access & SHARE_ALL
        create_options = int(options) & 0x00FFFFFF
        create_msg = packed.create_body(
            rel, access, attributes, share_access, int(disposition), create_options
        )
        # what smbprotocol's Open.create keeps of its request
        handle.desired_access, handle.share_mode = access, share_access
        handle.create_options, handle.file_attributes = create_options, attributes
        handle.create_disposition = int(disposition)
        connection = link.connection

        def create_answer(request: Any) -> None:
            packed.take_create(connection, handle, request)

        return fused.Creating(
            link,
            share,
            rel,
            params,
            int(disposition),
            delete_on_close,
            tree,
            handle,
            create_msg,
            create_answer,
        )

    def _opened(self, creating: fused.Creating, data: bytes) -> Result:
        """MRxCreate's answer once the server opened the file (``data``: FileAllInformation)."""
        raw = parse_all_information(data)
        can_read, can_write, append_only = data_access(creating.params.desired_access)
        op = SmbSrvOpen(
            creating.share,
            creating.rel,
            raw.directory,
            can_read,
            can_write,
            append_only,
            creating.delete_on_close,
            link=creating.link,
            tree=creating.tree,
            handle=creating.handle,
        )
        if creating.delete_on_close and op.is_dir:
            # The server only finds out at close that a directory is not empty (and then keeps
            # it quietly): ask now, as the local mini-redirector does, so the caller hears it.
            try:
                set_file(
                    op,
                    FileInformationClass.FileDispositionInformation,
                    pack_disposition(True),
                    "cannot delete",
                )
            except NtStatusError:
                close_quietly(op)
                raise
        srv_open = self._opens.add(op)
        file_info = smb_file_info(raw, creating.rel, delete_pending=op.delete_pending)
        return Result(
            information=int(creating.handle.create_action),
            result={**file_info, "srv_open": srv_open, "directory": op.is_dir},
        )

    def create_with_related(
        self,
        create: RxContext,
        related: list[RxContext],
        payloads: list[memoryview | None],
    ) -> list[Result | Exception] | None:
        """A create with a related READ or WRITE (or neither) and a related close, as a small
        file is read or written whole: one related compound CREATE + QUERY_INFO + READ/WRITE +
        CLOSE (MS-SMB2 3.2.4.1.4), each item answered as alone (fused.py). Any other chain, or
        one the server could not take in one exchange, runs item by item (None)."""
        if not fused.shaped(related):
            return None
        try:
            creating = self._creating(create)
        except NtStatusError as exc:
            return [exc]
        if creating.delete_on_close:
            return None
        return fused.run(creating, related, payloads, self._opened, self._opens)

    def query_open(self, ctx: RxContext) -> Result:
        """MRxQueryOpen: what ``create`` answers for an open for attributes (FILE_OPEN), the
        same checks in the same order and the server's own status, from ONE related compound
        CREATE + QUERY_INFO + CLOSE (MS-SMB2 3.2.4.1.4): a stat is one exchange with the
        server, and no SrvOpen is left to close."""
        link, share, rel, params = self._create_target(ctx)
        disposition, options = check_create_parameters(params)
        if not is_query_open(params):
            raise NtStatusError(
                S.STATUS_INVALID_PARAMETER, "MRxQueryOpen answers an open for attributes only"
            )
        tree = link.tree(share)
        request = packed.create_body(
            rel,
            params.desired_access | Access.FILE_READ_ATTRIBUTES,
            params.file_attributes,
            params.share_access,
            int(disposition),
            int(options),
        )
        try:
            data = link.call(f"cannot open {show(rel)}", compound.query_open(link, tree, request))
        except NtStatusError as exc:
            raise create_error(exc, disposition) from None
        raw = parse_all_information(data)
        return Result(
            information=int(CreateInformation.FILE_OPENED),
            result={**smb_file_info(raw, rel), "directory": raw.directory},
        )

    # --- low I/O ------------------------------------------------------------------------------
    def low_io_submit(
        self, ctx: RxContext, payload: bytes | bytearray | memoryview | None = None
    ) -> Result:
        op = self._open_of(ctx)
        lowio = lowio_of(ctx)
        operation = lowio.operation
        if operation == LowIoOp.NOTIFY_CHANGE_DIRECTORY:
            return waits.notify(op, ctx, self._waits)
        if op.is_dir:
            raise NtStatusError(S.STATUS_INVALID_DEVICE_REQUEST, f"{show(op.path)} is a directory")
        if operation == LowIoOp.READ:
            return io.read(op, lowio.offset, lowio.length)
        if operation == LowIoOp.WRITE:
            if lowio.length < 0:
                raise NtStatusError(S.STATUS_INVALID_PARAMETER, f"negative length {lowio.length}")
            return io.write(op, lowio.offset, payload)
        if operation in (LowIoOp.SHAREDLOCK, LowIoOp.EXCLUSIVELOCK):
            return waits.lock_range(op, ctx, operation == LowIoOp.SHAREDLOCK, self._waits)
        if operation == LowIoOp.UNLOCK:
            return waits.unlock(op, lowio.offset, lowio.length)
        if operation == LowIoOp.UNLOCK_MULTIPLE:
            return waits.unlock_all(op)
        raise NtStatusError(
            S.STATUS_INVALID_DEVICE_REQUEST, f"low I/O operation {operation!r} not supported"
        )

    def cancel(self, request_id: int, status: int = S.STATUS_CANCELLED) -> bool:
        """A waiting lock or change notification: its thread sends the SMB2 CANCEL and
        completes it."""
        return self._waits.cancel(request_id, status)

    def pending_requests(self) -> int:
        return self._waits.pending()

    def flush(self, ctx: RxContext) -> Result:
        return io.flush(self._open_of(ctx))

    # --- information --------------------------------------------------------------------------
    def query_file_info(self, ctx: RxContext) -> Result:
        return info.query_file_info(self._open_of(ctx), ctx)

    def set_file_info(self, ctx: RxContext) -> Result:
        return set_file_info_with(self, self._open_of(ctx), ctx)

    # MRxSetFileInfo's setters (rdbss/minirdrs/base.py SETTER_METHODS), called as (open, args)
    _set_basic = staticmethod(info.set_basic)
    _set_end_of_file = staticmethod(info.set_end_of_file)
    _set_allocation = staticmethod(info.set_allocation)

    def _set_rename(self, op: SmbSrvOpen, args: Mapping[str, Any]) -> None:
        old = op.path
        new = info.set_rename(op, args)
        if new is not None:
            renamed(self._opens, op, old, new)

    def _set_disposition(self, op: SmbSrvOpen, args: Mapping[str, Any]) -> None:
        self._opens.mark_delete_pending(op, info.set_disposition(op, args))

    def query_ea_info(self, ctx: RxContext) -> Result:
        return info.query_ea_info(self._open_of(ctx))

    def set_ea_info(self, ctx: RxContext) -> Result:
        return info.set_ea_info(self._open_of(ctx), ctx)

    def query_sd_info(self, ctx: RxContext) -> Result:
        return info.query_sd_info(self._open_of(ctx), ctx)

    def set_sd_info(self, ctx: RxContext) -> Result:
        return info.set_sd_info(self._open_of(ctx), ctx)

    def query_quota_info(self, ctx: RxContext) -> Result:
        return info.query_quota_info(self._open_of(ctx), ctx)

    def set_quota_info(self, ctx: RxContext) -> Result:
        return info.set_quota_info(self._open_of(ctx), ctx)

    def query_volume_info(self, ctx: RxContext) -> Result:
        info_class = ctx.info.info_class if ctx.info is not None else None
        if info_class not in VOLUME_INFO_CLASSES:
            raise NtStatusError(S.STATUS_INVALID_PARAMETER, f"volume info class {info_class!r}")
        if ctx.srv_open is not None:
            return Result(result=info.volume(self._open_of(ctx)))
        # No handle: ask through a short-lived open of the share root.
        root_ctx = RxContext(
            request_id=ctx.request_id,
            major=ctx.major,
            srv_call=ctx.srv_call,
            net_root=ctx.net_root,
            path="",
            create=CreateParameters(
                desired_access=int(Access.FILE_READ_ATTRIBUTES), share_access=SHARE_ALL
            ),
        )
        srv_open = self.create(root_ctx).result["srv_open"]
        try:
            return Result(result=info.volume(self._opens.get(srv_open)))
        finally:
            close_quietly(self._opens.pop(srv_open))

    # --- directories --------------------------------------------------------------------------
    def query_directory(self, ctx: RxContext) -> Result:
        return directory.query_directory(self._open_of(ctx), ctx)

    def cleanup_fobx(self, ctx: RxContext) -> Result:
        directory.forget_cursor(self._opens.find(ctx.srv_open), ctx.fobx)
        return Result()

    # --- close --------------------------------------------------------------------------------
    def close_srv_open(self, ctx: RxContext) -> Result:
        op = self._opens.pop(ctx.srv_open)
        if op.link.dead is not None or op.closed:
            if op.delete_pending and not op.closed:
                raise NtStatusError(
                    S.STATUS_CONNECTION_DISCONNECTED,
                    f"{show(op.path)} was not deleted: the connection was lost",
                )
            return Result()  # the handle died with its connection (or its share)
        try:
            op.link.call(f"cannot close {show(op.path)}", op.handle.close)
        except NtStatusError as exc:
            if exc.status == S.STATUS_FILE_CLOSED:
                return Result()
            raise
        return Result()

"""The SMB mini-redirector: serves the shares of configured SMB2/3 servers (Samba, Windows) as
``\\\\<server>\\<share>``, through smbprotocol.

Config (the ``[[minirdr]]`` table)::

    [[minirdr]]
    name = "smb"
    kind = "smb"
    timeout = 30.0                     # seconds: each request (a set-up has connect_timeout)
    [minirdr.servers.sambatest]        # \\\\sambatest\\<share> reaches this server
    host = "127.0.0.1"
    port = 445
    username = "root"
    password_file = "/path/to/file"    # or password_env = "VAR", or password = "..."
    encrypt = false                    # request SMB3 encryption for the whole session
    min_dialect = "3.0"                # optional: a server negotiating less is refused
    [minirdr.servers.sambatest.shares.other]   # optional: a share reached as another user
    username = "bob"
    password_file = "/path/to/bob"

Each SrvCall is one ``SmbLink`` (smb_link.py): its own connection, session and tree connects,
signing required, no oplocks or leases (smbprotocol cannot take a break). One session means one
user per server at a time: a share configured for another user answers
STATUS_NETWORK_CREDENTIAL_CONFLICT while a share of that server is connected. A set-up
(MRxCreateSrvCall, MRxCreateVNetRoot) keeps the deadline its RX_CONTEXT carries
(rdbss/minirdrs/setup.py); a negotiate below ``min_dialect``, or unable to give the encryption
asked for, answers STATUS_DOWNGRADE_DETECTED. Routines follow
local.py's semantics; whatever the server decides (access, sharing, names, locks) it decides,
and its NTSTATUS comes back unchanged. A lost connection answers STATUS_CONNECTION_DISCONNECTED
and the SrvCall stays dead: its handles and the requests on it answer the same at once.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from smbprotocol.change_notify import SMB2ChangeNotifyRequest, SMB2ChangeNotifyResponse
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.open import ImpersonationLevel, SMB2LockElement
from smbprotocol.open import Open as SmbOpen

from rdbss.minirdrs.base import FILE_INFO_CLASSES as _FILE_INFO_CLASSES
from rdbss.minirdrs.base import MAX_READ_BYTES, MiniRdr, Result, lowio_of, set_file_info_with
from rdbss.minirdrs.base import VOLUME_INFO_CLASSES as _VOLUME_INFO_CLASSES
from rdbss.minirdrs.common.args import arg_bool as _arg_bool
from rdbss.minirdrs.common.args import arg_int as _arg_int
from rdbss.minirdrs.common.args import arg_str as _arg_str
from rdbss.minirdrs.common.args import components as _components
from rdbss.minirdrs.common.args import show as _show
from rdbss.minirdrs.common.eas import pack_full_ea, parse_full_ea
from rdbss.minirdrs.common.eas import parse_set as parse_eas
from rdbss.minirdrs.common.notify import (
    FILE_NOTIFY_VALID_MASK,
    notify_result,
    parse_notify_information,
)
from rdbss.minirdrs.common.quota import (
    pack_quota_entries,
    parse_query_args,
    parse_quota_information,
    query_quota_info,
)
from rdbss.minirdrs.common.security import (
    ALL_INFORMATION,
    check_query_information,
    pack_descriptor,
    parse_descriptor,
)
from rdbss.minirdrs.common.setup import TREE_CONNECT, SetupDeadline
from rdbss.minirdrs.common.shares import check_share_name
from rdbss.minirdrs.smb_link import (
    RELATED_FILE_ID,
    SMB2_0_INFO_FILE,
    SMB2_0_INFO_FILESYSTEM,
    Credentials,
    RawInfo,
    ServerConfig,
    SmbLink,
    ns_to_filetime,
    parse_all_information,
    parse_directory_entries,
    parse_end_of_file,
    parse_volume,
    query_directory_buffer,
    query_directory_request,
    query_info_buffer,
    query_info_request,
    set_info_request,
)
from rdbss.model.buffering import BUFFERING_STATE_MASK, HANDLE_BITS
from rdbss.model.create import check_create_parameters
from rdbss.wire.constants import (
    WRITE_ACCESS,
    Access,
    CreateDisposition,
    CreateOptions,
    FileAttributes,
    FileInformationClass,
    FsInformationClass,
    LowIoOp,
)
from rdbss.wire.rxcontext import CreateParameters, QueryDirectoryParameters, RxContext
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.smb")
S = NtStatus
# a pending wait's cancel: its event, and the status to end it with (appended before setting)
_Cancel = tuple[threading.Event, list[int]]
Info = FileInformationClass
FsInfo = FsInformationClass

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_KEEPALIVE_S = 30.0  # echo a connection idle this long (0: off)
FILE_REMOTE_DEVICE = 0x10
#: SMB2 information classes this module asks for.
_FILE_ALL_INFORMATION = 18
_SMB2_0_INFO_SECURITY = 3
_SMB2_0_INFO_QUOTA = 4
_FILE_QUOTA_INFORMATION = 32
#: The file a client opens on a share to read and write its quota entries.
_QUOTA_FILE = "$Extend\\$Quota:$Q:$INDEX_ALLOCATION"
_MAX_QUOTA_ROUNDS = 64
_FILE_FULL_EA_INFORMATION = 15
_SL_RESTART_SCAN = 0x01
_STATUS_NO_EAS_ON_FILE = 0xC0000052
_FILE_STANDARD_INFORMATION = 5
_FILE_ID_FULL_DIRECTORY_INFORMATION = 38
#: SMB2 QUERY_DIRECTORY flags.
_RESTART_SCANS = 0x01
_REOPEN = 0x10
#: SMB2 LOCK element flags.
_LOCK_SHARED = 0x01
_LOCK_EXCLUSIVE = 0x02
_LOCK_UNLOCK = 0x04
_LOCK_FAIL_IMMEDIATELY = 0x10
#: LowIoContext lock flags (SL_FAIL_IMMEDIATELY, SL_EXCLUSIVE_LOCK).
_SL_FAIL_IMMEDIATELY = 0x1
#: SMB2 CHANGE_NOTIFY: watch the whole tree; the answer's buffer (the server sends
#: STATUS_NOTIFY_ENUM_DIR when more changed than fits).
_SMB2_WATCH_TREE = 0x0001
_NOTIFY_BUFFER = 32_768
#: How long before the request's own deadline a blocking lock gives up waiting.
_LOCK_MARGIN_S = 1.0
#: How often a waiting lock looks whether it was cancelled.
_CANCEL_POLL_S = 0.05
#: Access bits that write data (FILE_APPEND_DATA alone only appends).
_WRITE_ANYWHERE = Access.FILE_WRITE_DATA | Access.GENERIC_WRITE | Access.GENERIC_ALL
#: The volume classes one query asks for, in one compound.
_VOLUME_QUERIES = (
    FsInfo.FileFsVolumeInformation,
    FsInfo.FileFsDeviceInformation,
    FsInfo.FileFsAttributeInformation,
    FsInfo.FileFsFullSizeInformation,
)
_TIME_ARGS = ("creation_time", "last_access_time", "last_write_time", "change_time")


def _error(status: int, message: str) -> NtStatusError:
    return NtStatusError(status, message)


def smb_file_info(raw: RawInfo, rel: str, *, delete_pending: bool = False) -> dict[str, Any]:
    """The file info map of base.py's conventions (local.file_info's keys) for an SMB answer."""
    info: dict[str, Any] = {
        "name": rel,
        "size": 0 if raw.directory else raw.size,
        "allocation_size": 0 if raw.directory else raw.allocation_size,
        "attributes": raw.attributes or int(FileAttributes.NORMAL),
        "creation_time": raw.creation_time,
        "last_access_time": raw.last_access_time,
        "last_write_time": raw.last_write_time,
        "change_time": raw.change_time,
        "directory": raw.directory,
        "delete_pending": raw.delete_pending or delete_pending,
        "file_id": raw.file_id,
    }
    if raw.nlink is not None:
        info["nlink"] = raw.nlink
    return info


def _create_error(exc: NtStatusError, disposition: int) -> NtStatusError:
    """The status NT gives for a failed create where Samba checks in another order: FILE_CREATE
    on an existing name is a collision before any directory/non-directory mismatch."""
    if disposition == CreateDisposition.FILE_CREATE and exc.status in (
        S.STATUS_FILE_IS_A_DIRECTORY,
        S.STATUS_NOT_A_DIRECTORY,
    ):
        return _error(S.STATUS_OBJECT_NAME_COLLISION, f"{exc.strerror}: the name exists")
    return exc


@dataclass(slots=True)
class _Cursor:
    """A directory enumeration in progress, one per FOBX."""

    key: int
    buffered: deque[tuple[str, RawInfo]] = field(default_factory=deque)
    delivered: int = 0
    ended: bool = False


@dataclass(slots=True)
class _Open:
    """One SRV_OPEN: an SMB2 handle on a share."""

    link: SmbLink
    share: str
    tree: Any  # smbprotocol TreeConnect
    path: str  # share-relative, backslashes, "" for the root
    handle: Any  # smbprotocol Open
    is_dir: bool
    can_write: bool
    append_only: bool
    delete_pending: bool = False
    locks: list[tuple[int, int, bool]] = field(default_factory=list)  # (offset, length, shared)
    cursor: _Cursor | None = None
    closed: bool = False  # its share was finalized under it


class SmbMiniRdr(MiniRdr):
    """Serves the shares of the configured SMB servers."""

    kind: ClassVar[str] = "smb"
    blocking: ClassVar[bool] = True
    #: Byte-range locks and share modes belong to an SMB open: two handles sharing one would
    #: not lock each other out, so opens never collapse (and closes are never delayed).
    buffering_mask: ClassVar[int] = int(BUFFERING_STATE_MASK & ~HANDLE_BITS)
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
        known = {"timeout", "servers", "keepalive_interval"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"smb mini-redirector: unknown option(s) {', '.join(unknown)}")
        timeout = config.get("timeout", DEFAULT_TIMEOUT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError("smb mini-redirector: 'timeout' must be a positive number of seconds")
        self.timeout = float(timeout)
        servers = config.get("servers", {})
        if not isinstance(servers, Mapping):
            raise ValueError("smb mini-redirector: 'servers' must be a table of server tables")
        self._servers: dict[str, ServerConfig] = {}
        for server_name, table in servers.items():
            if not isinstance(server_name, str) or not server_name:
                raise ValueError("smb mini-redirector: server names must be non-empty strings")
            if server_name.lower() in self._servers:
                raise ValueError(f"smb mini-redirector: server {server_name!r} given twice")
            self._servers[server_name.lower()] = ServerConfig.parse(server_name, table)
        keepalive = config.get("keepalive_interval", DEFAULT_KEEPALIVE_S)
        if isinstance(keepalive, bool) or not isinstance(keepalive, int | float) or keepalive < 0:
            raise ValueError("smb mini-redirector: 'keepalive_interval' must be seconds (0: off)")
        self.keepalive_interval = float(keepalive)
        self._lock = threading.RLock()
        self._links: dict[str, SmbLink] = {}
        self._stopping = threading.Event()
        if self.keepalive_interval > 0:
            threading.Thread(target=self._keepalive_loop, name="smb-keepalive", daemon=True).start()
        self._opens: dict[int, _Open] = {}
        self._ids = itertools.count(1)
        # pending waits (waiting locks, change notifications) by request id: their cancel
        # event and the status to cancel with
        self._waits: dict[int, _Cancel] = {}

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
            raise _error(S.STATUS_BAD_NETWORK_PATH, f"server {name!r} is not served here")
        return server

    def _link(self, ctx: RxContext) -> SmbLink:
        server = self._server(ctx.srv_call)
        with self._lock:
            link = self._links.get(server.name.lower())
        if link is None:
            raise _error(
                S.STATUS_CONNECTION_DISCONNECTED, f"not connected to server {server.name!r}"
            )
        link.check_alive()
        return link

    def _open_of(self, ctx: RxContext) -> _Open:
        with self._lock:
            op = self._opens.get(ctx.srv_open) if ctx.srv_open is not None else None
        if op is None:
            raise _error(S.STATUS_INVALID_HANDLE, f"unknown srv_open {ctx.srv_open!r}")
        if op.closed:
            raise _error(S.STATUS_FILE_CLOSED, f"{_show(op.path)}: its share was disconnected")
        op.link.check_alive()
        return op

    # --- connections --------------------------------------------------------------------------
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
                raise _error(
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
                ops = [
                    op
                    for op in self._opens.values()
                    if op.link is link and op.share.lower() == share and not op.closed
                ]
            if link is None:
                return Result()
            for op in ops:
                op.closed = True
                self._close_handle(op)
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
    def create(self, ctx: RxContext) -> Result:
        link = self._link(ctx)
        share = check_share_name(ctx.net_root)
        rel = "\\".join(_components(ctx.path or ""))
        params = ctx.create or CreateParameters()
        disposition, options = check_create_parameters(params)
        delete_on_close = bool(options & CreateOptions.FILE_DELETE_ON_CLOSE)
        if delete_on_close and not rel:
            raise _error(S.STATUS_ACCESS_DENIED, "the share root cannot be deleted")
        tree = link.tree(share)
        handle = SmbOpen(tree, rel)
        # FILE_READ_ATTRIBUTES is not subject to sharing and lets every handle answer queries.
        access = (params.desired_access | Access.FILE_READ_ATTRIBUTES) & 0xFFFFFFFF
        create_msg, create_answer = handle.create(
            ImpersonationLevel.Impersonation,
            access,
            params.file_attributes & 0xFFFFFFFF,
            params.share_access & 0x7,
            int(disposition),
            int(options) & 0x00FFFFFF,
            send=False,
        )
        query = query_info_request(RELATED_FILE_ID, SMB2_0_INFO_FILE, _FILE_ALL_INFORMATION)

        def go() -> bytes:
            conn = link.connection
            requests = conn.send_compound(
                [create_msg, query], link.session.session_id, tree.tree_connect_id, related=True
            )
            failure: SMBResponseException | None = None
            try:
                create_answer(requests[0])
            except SMBResponseException as exc:
                failure = exc
            try:
                data = query_info_buffer(conn.receive(requests[1]))
            except SMBResponseException as exc:
                failure = failure or exc
            if failure is not None:
                if handle.connected:
                    with contextlib.suppress(SMBResponseException):
                        handle.close()
                raise failure
            return data

        try:
            data = link.call(f"cannot open {_show(rel)}", go)
        except NtStatusError as exc:
            raise _create_error(exc, disposition) from None
        raw = parse_all_information(data)
        can_write = bool(params.desired_access & WRITE_ACCESS)
        op = _Open(
            link,
            share,
            tree,
            rel,
            handle,
            raw.directory,
            can_write,
            can_write and not params.desired_access & _WRITE_ANYWHERE,
            delete_pending=delete_on_close,
        )
        if delete_on_close and op.is_dir:
            # The server only finds out at close that a directory is not empty (and then keeps
            # it quietly): ask now, as local.py does, so the caller hears it.
            try:
                self._set_info(op, Info.FileDispositionInformation, b"\x01", "cannot delete")
            except NtStatusError:
                self._close_handle(op)
                raise
        with self._lock:
            srv_open = next(self._ids)
            self._opens[srv_open] = op
        info = smb_file_info(raw, rel, delete_pending=op.delete_pending)
        return Result(
            information=int(handle.create_action),
            result={**info, "srv_open": srv_open, "directory": op.is_dir},
        )

    # --- low I/O ------------------------------------------------------------------------------
    def low_io_submit(
        self, ctx: RxContext, payload: bytes | bytearray | memoryview | None = None
    ) -> Result:
        op = self._open_of(ctx)
        lowio = lowio_of(ctx)
        if lowio.operation == LowIoOp.NOTIFY_CHANGE_DIRECTORY:
            return self._notify(op, ctx)
        if op.is_dir:
            raise _error(S.STATUS_INVALID_DEVICE_REQUEST, f"{_show(op.path)} is a directory")
        operation = lowio.operation
        if operation == LowIoOp.READ:
            return self._read(op, lowio.offset, lowio.length)
        if operation == LowIoOp.WRITE:
            if lowio.length < 0:
                raise _error(S.STATUS_INVALID_PARAMETER, f"negative length {lowio.length}")
            return self._write(op, lowio.offset, payload)
        if operation in (LowIoOp.SHAREDLOCK, LowIoOp.EXCLUSIVELOCK):
            return self._lock_range(op, ctx, operation == LowIoOp.SHAREDLOCK)
        if operation == LowIoOp.UNLOCK:
            return self._unlock(op, lowio.offset, lowio.length)
        if operation == LowIoOp.UNLOCK_MULTIPLE:
            return self._unlock_all(op)
        raise _error(
            S.STATUS_INVALID_DEVICE_REQUEST, f"low I/O operation {operation!r} not supported"
        )

    def _read(self, op: _Open, offset: int, length: int) -> Result:
        if offset < 0 or length < 0:
            raise _error(S.STATUS_INVALID_PARAMETER, f"bad read range {offset}+{length}")
        if length > MAX_READ_BYTES:
            raise _error(
                S.STATUS_INVALID_PARAMETER, f"read of {length} bytes over {MAX_READ_BYTES}"
            )
        if length == 0:
            return Result(information=0, payload=b"")
        link = op.link
        chunks: list[bytes] = []
        done = 0
        what = f"cannot read {_show(op.path)}"
        while done < length:
            chunk, credit_request = link.credits(length - done, link.connection.max_read_size)
            message, answer = op.handle.read(offset + done, chunk, send=False)
            try:
                data = self._roundtrip(op, what, message, answer, credit_request)
            except NtStatusError as exc:
                if exc.status == S.STATUS_END_OF_FILE and done:
                    break
                raise
            if not data:
                break
            chunks.append(data)
            done += len(data)
            if len(data) < chunk:
                break  # end of file
        if not done:
            raise _error(S.STATUS_END_OF_FILE, f"{_show(op.path)}: offset {offset} is past EOF")
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return Result(information=done, payload=data)

    def _write(
        self, op: _Open, offset: int, payload: bytes | bytearray | memoryview | None
    ) -> Result:
        if offset < -1:
            raise _error(S.STATUS_INVALID_PARAMETER, f"bad write offset {offset}")
        if payload is None:
            raise _error(S.STATUS_INVALID_PARAMETER, "write without data")
        view = memoryview(payload).cast("B")
        link = op.link
        what = f"cannot write {_show(op.path)}"
        if not len(view):
            return Result(information=0)
        if offset == -1 or op.append_only:
            offset = self._end_of_file(op)
        written = 0
        while written < len(view):
            chunk, credit_request = link.credits(
                len(view) - written, link.connection.max_write_size
            )
            data = bytes(view[written : written + chunk])
            message, answer = op.handle.write(data, offset + written, send=False)
            count = self._roundtrip(op, what, message, answer, credit_request)
            if count <= 0:
                raise _error(S.STATUS_DISK_FULL, f"{what}: the server wrote nothing")
            written += count
        return Result(information=written)

    def _end_of_file(self, op: _Open) -> int:
        request = query_info_request(
            op.handle.file_id, SMB2_0_INFO_FILE, _FILE_STANDARD_INFORMATION
        )
        data = op.link.call(
            f"cannot query {_show(op.path)}",
            lambda: query_info_buffer(op.link.one(op.tree, request)),
        )
        return parse_end_of_file(data)

    # --- byte-range locks ---------------------------------------------------------------------
    @staticmethod
    def _lock_element(offset: int, length: int, flags: int) -> Any:
        element = SMB2LockElement()
        element["offset"] = offset
        element["length"] = length
        element["flags"] = flags
        return element

    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > 0xFFFFFFFFFFFFFFFF:
            raise _error(S.STATUS_INVALID_PARAMETER, f"bad lock range {offset}+{length}")

    def _lock_range(self, op: _Open, ctx: RxContext, shared: bool) -> Result:
        lowio = ctx.lowio
        assert lowio is not None
        self._check_range(lowio.offset, lowio.length)
        immediate = bool(lowio.flags & _SL_FAIL_IMMEDIATELY)
        flags = _LOCK_SHARED if shared else _LOCK_EXCLUSIVE
        if immediate:
            flags |= _LOCK_FAIL_IMMEDIATELY
        element = self._lock_element(lowio.offset, lowio.length, flags)
        message, answer = op.handle.lock([element], send=False)
        what = f"cannot lock {_show(op.path)} at {lowio.offset}+{lowio.length}"
        lock = (lowio.offset, lowio.length, shared)
        if immediate:
            self._roundtrip(op, what, message, answer)
            op.locks.append(lock)
            return Result()
        # A lock that may wait: send it, then wait on a thread of its own and complete later
        # (STATUS_PENDING), so the unlock that will grant it is not queued behind it on this
        # connection's worker.
        wait_s = max(0.0, ctx.timeout_ms / 1000.0 - _LOCK_MARGIN_S)
        request = op.link.call(what, lambda: self._send(op, message))

        def outcome(cancel: _Cancel) -> Result:
            self._await_final(op, request, answer, wait_s, what, cancel=cancel)
            op.locks.append(lock)
            return Result()

        return self._complete_in_background(ctx, outcome, "smb-lock-wait")

    @staticmethod
    def _send(op: _Open, message: Any, credit_request: int | None = None) -> Any:
        return op.link.connection.send(
            message,
            sid=op.link.session.session_id,
            tid=op.tree.tree_connect_id,
            credit_request=credit_request,
        )

    def _roundtrip(
        self,
        op: _Open,
        what: str,
        message: Any,
        answer: Callable[[Any], Any],
        credit_request: int | None = None,
    ) -> Any:
        """Send one request built by smbprotocol (``send=False``) and unpack its answer."""
        return op.link.call(what, lambda: answer(self._send(op, message, credit_request)))

    def _await_final(
        self,
        op: _Open,
        request: Any,
        answer: Callable[[Any], Any],
        wait_s: float,
        what: str,
        waited_for: str = "granted",
        cancel: _Cancel | None = None,
    ) -> Any:
        """Wait for a sent request the server may keep pending (a lock waiting for a conflicting
        one to go, a change notification): the server answers PENDING and then the outcome,
        which ``answer`` unpacks. Past the request's deadline (STATUS_IO_TIMEOUT), or when the
        request is cancelled (``cancel``: its event, then the status), it is cancelled on the
        server with an SMB2 CANCEL. Runs on its own thread: no watchdog, deadlines of its own."""
        link = op.link
        deadline = time.monotonic() + wait_s
        cancelled, status = cancel if cancel is not None else (threading.Event(), [])
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or cancelled.is_set():
                break
            if not request.response_event.wait(min(remaining, _CANCEL_POLL_S)):
                continue
            with request.response_event_lock:
                response = request.response
                pending = (
                    response is not None and response["status"].get_value() == S.STATUS_PENDING
                )
                if pending:
                    request.response_event.clear()
            if pending:
                link.check_connection(what)  # or woken by a dying connection?
                continue
            return link.mapped(what, lambda: answer(request))

        # Still waiting at the deadline or cancelled: cancel on the server (SMB2 CANCEL), then
        # take whatever the server says last (granted meanwhile: the lock is held).
        def cancel_on_server() -> Any:
            request.cancel()
            request.response_event.wait(_LOCK_MARGIN_S)
            return answer(request)

        try:
            return link.mapped(what, cancel_on_server)
        except NtStatusError as exc:
            if exc.status == S.STATUS_CANCELLED and cancelled.is_set():
                raise _error(
                    status[0] if status else S.STATUS_CANCELLED, f"{what}: cancelled"
                ) from None
            if exc.status == S.STATUS_CANCELLED:
                raise _error(
                    S.STATUS_IO_TIMEOUT, f"{what}: not {waited_for} within {wait_s:.1f} s"
                ) from None
            raise

    # --- change notification: the server's own SMB2 CHANGE_NOTIFY ---------------------------
    def _notify(self, op: _Open, ctx: RxContext) -> Result:
        """Send SMB2 CHANGE_NOTIFY and wait for it on a thread of its own (STATUS_PENDING), so
        the connection's other requests go on. The server keeps the changes of a handle between
        two notifies, completes a pending one with STATUS_NOTIFY_CLEANUP when the handle is
        closed, and with STATUS_NOTIFY_ENUM_DIR when too much changed; past the request's
        deadline it is cancelled (STATUS_IO_TIMEOUT)."""
        lowio = ctx.lowio
        assert lowio is not None
        if not op.is_dir:
            raise _error(S.STATUS_INVALID_PARAMETER, f"{_show(op.path)} is not a directory")
        completion_filter = lowio.completion_filter & FILE_NOTIFY_VALID_MASK
        if not completion_filter:
            raise _error(S.STATUS_INVALID_PARAMETER, "an empty completion filter")
        message = SMB2ChangeNotifyRequest()
        message["flags"] = _SMB2_WATCH_TREE if lowio.watch_tree else 0
        message["output_buffer_length"] = _NOTIFY_BUFFER
        message["file_id"] = op.handle.file_id
        message["completion_filter"] = completion_filter
        what = f"cannot watch {_show(op.path)}"
        request = op.link.call(what, lambda: self._send(op, message))
        wait_s = max(0.0, ctx.timeout_ms / 1000.0 - _LOCK_MARGIN_S)

        def answer(sent: Any) -> bytes:
            header = op.link.connection.receive(sent)
            response = SMB2ChangeNotifyResponse()
            response.unpack(header["data"].get_value())
            data: bytes = response["buffer"].get_value()
            return data

        def outcome(cancel: _Cancel) -> Result:
            data = self._await_final(op, request, answer, wait_s, what, "changed", cancel)
            return notify_result(parse_notify_information(data))

        return self._complete_in_background(ctx, outcome, "smb-notify-wait")

    def _complete_in_background(
        self, ctx: RxContext, outcome: Callable[[_Cancel], Result], name: str
    ) -> Result:
        """A request the server may keep pending (a waiting lock, a change notification): its
        ``outcome`` runs on a thread of its own, cancellable through ``cancel`` (its event and
        the status to end with), and completes the request later; STATUS_PENDING now, so the
        connection's other requests go on meanwhile."""
        cancel: _Cancel = (threading.Event(), [])
        with self._lock:
            self._waits[ctx.request_id] = cancel

        def wait() -> None:
            try:
                result = outcome(cancel)
            except NtStatusError as exc:
                result = Result(status=exc.status, message=exc.strerror or "")
            except Exception as exc:  # never leave the request without an answer
                log.exception("%s failed", name)
                result = Result(status=S.STATUS_INTERNAL_ERROR, message=str(exc))
            finally:
                with self._lock:
                    self._waits.pop(ctx.request_id, None)
            self.complete_later(ctx, result)

        threading.Thread(target=wait, name=name, daemon=True).start()
        return Result(status=S.STATUS_PENDING)

    # --- cancellation ---------------------------------------------------------------------------
    def cancel(self, request_id: int, status: int = S.STATUS_CANCELLED) -> bool:
        """A waiting lock or change notification: its thread sends the SMB2 CANCEL and
        completes it."""
        with self._lock:
            entry = self._waits.get(request_id)
        if entry is None:
            return False
        event, status_box = entry
        if not event.is_set():
            status_box.append(status)
            event.set()
        return True

    def pending_requests(self) -> int:
        with self._lock:
            return len(self._waits)

    def _unlock(self, op: _Open, offset: int, length: int) -> Result:
        self._check_range(offset, length)
        element = self._lock_element(offset, length, _LOCK_UNLOCK)
        message, answer = op.handle.lock([element], send=False)
        self._roundtrip(op, f"cannot unlock {_show(op.path)} at {offset}+{length}", message, answer)
        for i, (o, n, _shared) in enumerate(op.locks):
            if (o, n) == (offset, length):
                del op.locks[i]
                break
        return Result()

    def _unlock_all(self, op: _Open) -> Result:
        """UNLOCK_MULTIPLE: release every lock this handle holds (SMB2 has no "unlock all")."""
        while op.locks:
            offset, length, _shared = op.locks[-1]
            element = self._lock_element(offset, length, _LOCK_UNLOCK)
            message, answer = op.handle.lock([element], send=False)
            try:
                self._roundtrip(op, f"cannot unlock {_show(op.path)}", message, answer)
            except NtStatusError as exc:
                if exc.status != S.STATUS_RANGE_NOT_LOCKED:
                    raise
            op.locks.pop()
        return Result()

    # --- extended attributes (FileFullEaInformation) ------------------------------------------
    def query_ea_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        request = query_info_request(op.handle.file_id, SMB2_0_INFO_FILE, _FILE_FULL_EA_INFORMATION)
        request["flags"] = _SL_RESTART_SCAN
        try:
            data = op.link.call(
                f"cannot read the EAs of {_show(op.path)}",
                lambda: query_info_buffer(op.link.one(op.tree, request)),
            )
        except NtStatusError as exc:
            if exc.status == _STATUS_NO_EAS_ON_FILE:
                return Result(result={"eas": {}})
            raise
        return Result(result={"eas": parse_full_ea(data)})

    def set_ea_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        changes = parse_eas(ctx.info.args if ctx.info is not None else None)
        self._set_info(op, _FILE_FULL_EA_INFORMATION, pack_full_ea(changes), "cannot set EAs of")
        return Result()

    # --- security: the server's own security descriptor (SMB2 QUERY_INFO / SET_INFO) --------
    def query_sd_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        info = check_query_information(
            ctx.info.info_class if ctx.info is not None else None, ALL_INFORMATION
        )
        request = query_info_request(op.handle.file_id, _SMB2_0_INFO_SECURITY, 0)
        request["additional_information"] = info
        data = op.link.call(
            f"cannot query the security of {_show(op.path)}",
            lambda: query_info_buffer(op.link.one(op.tree, request)),
        )
        return Result(result=parse_descriptor(data))

    def set_sd_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        info = check_query_information(
            ctx.info.info_class if ctx.info is not None else None, ALL_INFORMATION
        )
        buffer = pack_descriptor(info, ctx.info.args if ctx.info is not None else None)
        request = set_info_request(op.handle.file_id, 0, buffer)
        request["info_type"] = _SMB2_0_INFO_SECURITY
        request["additional_information"] = info
        op.link.call(
            f"cannot change the security of {_show(op.path)}",
            lambda: op.link.one(op.tree, request),
        )
        return Result()

    # --- quota: the server's quota entries (SMB2 QUERY_INFO / SET_INFO, InfoType QUOTA) -----
    def _quota_file(self, op: _Open, access: int) -> SmbOpen:
        """Open the share's quota file (what a Windows client opens for quotas)."""
        handle = SmbOpen(op.tree, _QUOTA_FILE)
        try:
            op.link.call(
                "cannot open the quota file of the share",
                lambda: handle.create(
                    ImpersonationLevel.Impersonation,
                    access | Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE,
                    0,
                    0x7,
                    int(CreateDisposition.FILE_OPEN),
                    0,
                ),
            )
        except NtStatusError as exc:
            if exc.status in (S.STATUS_OBJECT_NAME_NOT_FOUND, S.STATUS_OBJECT_PATH_NOT_FOUND):
                raise _error(
                    S.STATUS_NOT_SUPPORTED, f"share {op.share!r}: the server offers no quotas"
                ) from None
            raise
        return handle

    def query_quota_info(self, ctx: RxContext) -> Result:
        """Every quota entry of the share (or those of ``sids``); an empty list when the server
        keeps none (Samba without a quota source answers STATUS_NO_MORE_ENTRIES)."""
        op = self._open_of(ctx)
        sids = parse_query_args(ctx.info.args if ctx.info is not None else None)
        handle = self._quota_file(op, Access.FILE_READ_DATA)
        entries: list[dict[str, Any]] = []
        try:
            for round_ in range(_MAX_QUOTA_ROUNDS):
                request = query_info_request(
                    handle.file_id, _SMB2_0_INFO_QUOTA, _FILE_QUOTA_INFORMATION
                )
                request["buffer"] = query_quota_info(sids, restart=round_ == 0)
                try:
                    data = self._query_quota_round(op, request)
                except NtStatusError as exc:
                    if exc.status == S.STATUS_NO_MORE_ENTRIES:
                        break
                    raise
                batch = parse_quota_information(data)
                entries += batch
                if sids is not None or not batch:
                    break  # a SID list is answered in one go
        finally:
            with contextlib.suppress(NtStatusError):
                op.link.call("cannot close the quota file", handle.close)
        return Result(result={"entries": entries})

    @staticmethod
    def _query_quota_round(op: _Open, request: Any) -> bytes:
        return op.link.call(
            "cannot query the quota entries",
            lambda: query_info_buffer(op.link.one(op.tree, request)),
        )

    def set_quota_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        args = ctx.info.args if ctx.info is not None else None
        buffer = pack_quota_entries(args.get("entries") if isinstance(args, Mapping) else None)
        handle = self._quota_file(op, Access.FILE_WRITE_DATA)
        try:
            request = set_info_request(handle.file_id, _FILE_QUOTA_INFORMATION, buffer)
            request["info_type"] = _SMB2_0_INFO_QUOTA
            op.link.call("cannot set quota entries", lambda: op.link.one(op.tree, request))
        finally:
            with contextlib.suppress(NtStatusError):
                op.link.call("cannot close the quota file", handle.close)
        return Result()

    def flush(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        if op.is_dir or not op.can_write:
            return Result()  # nothing this handle could have written
        message, answer = op.handle.flush(send=False)
        self._roundtrip(op, f"cannot flush {_show(op.path)}", message, answer)
        return Result()

    # --- file information ---------------------------------------------------------------------
    def _query_all(self, op: _Open) -> RawInfo:
        request = query_info_request(op.handle.file_id, SMB2_0_INFO_FILE, _FILE_ALL_INFORMATION)
        data = op.link.call(
            f"cannot query {_show(op.path)}",
            lambda: query_info_buffer(op.link.one(op.tree, request)),
        )
        return parse_all_information(data)

    def query_file_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        info_class = ctx.info.info_class if ctx.info is not None else None
        if info_class not in _FILE_INFO_CLASSES:
            raise _error(S.STATUS_INVALID_PARAMETER, f"file info class {info_class!r}")
        info = smb_file_info(self._query_all(op), op.path, delete_pending=op.delete_pending)
        info["position"] = 0
        return Result(result=info)

    def _set_info(self, op: _Open, info_class: int, buffer: bytes, what: str) -> None:
        request = set_info_request(op.handle.file_id, info_class, buffer)
        op.link.call(f"{what} {_show(op.path)}", lambda: op.link.one(op.tree, request))

    def set_file_info(self, ctx: RxContext) -> Result:
        return set_file_info_with(self, self._open_of(ctx), ctx)

    def _set_basic(self, op: _Open, args: Mapping[str, Any]) -> None:
        times = [ns_to_filetime(_arg_int(args, key, default=0)) for key in _TIME_ARGS]
        attributes = _arg_int(args, "attributes", default=0)
        if attributes < 0 or attributes > 0xFFFFFFFF:
            raise _error(S.STATUS_INVALID_PARAMETER, f"attributes {attributes!r}")
        if attributes & FileAttributes.DIRECTORY and not op.is_dir:
            raise _error(S.STATUS_INVALID_PARAMETER, "attributes: DIRECTORY on a file")
        buffer = struct.pack("<qqqqII", *times, attributes, 0)
        self._set_info(op, Info.FileBasicInformation, buffer, "cannot set attributes of")

    def _set_end_of_file(self, op: _Open, args: Mapping[str, Any]) -> None:
        size = _arg_int(args, "size")
        if size < 0:
            raise _error(S.STATUS_INVALID_PARAMETER, "argument 'size' must not be negative")
        if op.is_dir:
            raise _error(S.STATUS_INVALID_PARAMETER, "end of file of a directory")
        buffer = struct.pack("<q", size)
        self._set_info(op, Info.FileEndOfFileInformation, buffer, "cannot set the size of")

    def _set_allocation(self, op: _Open, args: Mapping[str, Any]) -> None:
        size = _arg_int(args, "size")
        if size < 0:
            raise _error(S.STATUS_INVALID_PARAMETER, "argument 'size' must not be negative")
        if op.is_dir:
            raise _error(S.STATUS_INVALID_PARAMETER, "allocation size of a directory")
        buffer = struct.pack("<q", size)
        self._set_info(op, Info.FileAllocationInformation, buffer, "cannot set the allocation of")

    def _set_rename(self, op: _Open, args: Mapping[str, Any]) -> None:
        target = "\\".join(_components(_arg_str(args, "target")))
        replace = _arg_bool(args, "replace", default=False)
        if not target:
            raise _error(S.STATUS_INVALID_PARAMETER, "cannot rename onto the share root")
        if not op.path:
            raise _error(S.STATUS_ACCESS_DENIED, "the share root cannot be renamed")
        if target == op.path:
            return
        name = target.encode("utf-16-le")
        buffer = struct.pack("<B7xqI", 1 if replace else 0, 0, len(name)) + name
        request = set_info_request(op.handle.file_id, Info.FileRenameInformation, buffer)
        op.link.call(
            f"cannot rename {_show(op.path)} to {_show(target)}",
            lambda: op.link.one(op.tree, request),
        )
        self._renamed(op, op.path, target)

    def _renamed(self, moved: _Open, old: str, new: str) -> None:
        """Point every open at or under ``old`` (same share, same link) at its new name."""
        prefix = old.lower() + "\\"
        with self._lock:
            for other in self._opens.values():
                if other.link is not moved.link or other.share.lower() != moved.share.lower():
                    continue
                if other.path.lower() == old.lower():
                    other.path = new
                elif other.path.lower().startswith(prefix):
                    other.path = new + "\\" + other.path[len(prefix) :]
        moved.path = new

    def _set_disposition(self, op: _Open, args: Mapping[str, Any]) -> None:
        delete = _arg_bool(args, "delete")
        if delete and not op.path:
            raise _error(S.STATUS_ACCESS_DENIED, "the share root cannot be deleted")
        buffer = b"\x01" if delete else b"\x00"
        self._set_info(op, Info.FileDispositionInformation, buffer, "cannot delete")
        op.delete_pending = delete

    # --- directories --------------------------------------------------------------------------
    def query_directory(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        if not op.is_dir:
            raise _error(S.STATUS_INVALID_PARAMETER, f"{_show(op.path)} is not a directory")
        query = ctx.query_directory or QueryDirectoryParameters()
        limit = 1 if query.return_single_entry else query.max_entries
        if limit < 1:
            raise _error(S.STATUS_INVALID_PARAMETER, f"max_entries {query.max_entries!r}")
        key = ctx.fobx if ctx.fobx is not None else -int(ctx.srv_open or 0)
        cursor = op.cursor
        first = cursor is None or cursor.key != key or query.restart_scan
        if first:
            pattern = query.pattern or "*"
            if any(ch in pattern for ch in "\\/\x00"):
                raise _error(S.STATUS_OBJECT_NAME_INVALID, f"bad search pattern {pattern!r}")
            cursor = _Cursor(key)
            op.cursor = cursor
            self._fetch(op, cursor, pattern, _RESTART_SCANS | _REOPEN)
        assert cursor is not None
        entries: list[dict[str, Any]] = []
        while len(entries) < limit:
            if not cursor.buffered:
                if cursor.ended:
                    break
                self._fetch(op, cursor, query.pattern or "*", 0)
                continue
            name, raw = cursor.buffered.popleft()
            rel = f"{op.path}\\{name}" if op.path else name
            info = smb_file_info(raw, rel)
            info.update(name=name, file_index=cursor.delivered)
            cursor.delivered += 1
            entries.append(info)
        if not entries:
            if cursor.delivered == 0:
                raise _error(
                    S.STATUS_NO_SUCH_FILE, f"nothing in {_show(op.path)} matches {query.pattern!r}"
                )
            raise _error(S.STATUS_NO_MORE_FILES, f"no more entries in {_show(op.path)}")
        return Result(result={"entries": entries})

    def _fetch(self, op: _Open, cursor: _Cursor, pattern: str, flags: int) -> None:
        """One QUERY_DIRECTORY round trip into the cursor's buffer ("." and ".." left out)."""
        request = query_directory_request(
            op.handle.file_id, pattern, _FILE_ID_FULL_DIRECTORY_INFORMATION, flags
        )
        try:
            data = op.link.call(
                f"cannot list {_show(op.path)}",
                lambda: query_directory_buffer(op.link.one(op.tree, request)),
            )
        except NtStatusError as exc:
            if exc.status in (S.STATUS_NO_MORE_FILES, S.STATUS_NO_SUCH_FILE):
                cursor.ended = True
                return
            raise
        entries = parse_directory_entries(data)
        if not entries:
            cursor.ended = True
        cursor.buffered.extend(e for e in entries if e[0] not in (".", ".."))

    def cleanup_fobx(self, ctx: RxContext) -> Result:
        with self._lock:
            op = self._opens.get(ctx.srv_open) if ctx.srv_open is not None else None
        if op is not None and op.cursor is not None and op.cursor.key == ctx.fobx:
            op.cursor = None
        return Result()

    # --- volume -------------------------------------------------------------------------------
    def query_volume_info(self, ctx: RxContext) -> Result:
        info_class = ctx.info.info_class if ctx.info is not None else None
        if info_class not in _VOLUME_INFO_CLASSES:
            raise _error(S.STATUS_INVALID_PARAMETER, f"volume info class {info_class!r}")
        if ctx.srv_open is not None:
            op = self._open_of(ctx)
            return Result(result=self._volume(op))
        # No handle: ask through a short-lived open of the share root.
        root_ctx = RxContext(
            request_id=ctx.request_id,
            major=ctx.major,
            srv_call=ctx.srv_call,
            net_root=ctx.net_root,
            path="",
            create=CreateParameters(
                desired_access=int(Access.FILE_READ_ATTRIBUTES), share_access=0x7
            ),
        )
        opened = self.create(root_ctx)
        srv_open = opened.result["srv_open"]
        try:
            with self._lock:
                op = self._opens[srv_open]
            return Result(result=self._volume(op))
        finally:
            with self._lock:
                op = self._opens.pop(srv_open)
            self._close_handle(op)

    def _volume(self, op: _Open) -> dict[str, Any]:
        requests = [
            query_info_request(op.handle.file_id, SMB2_0_INFO_FILESYSTEM, int(cls))
            for cls in _VOLUME_QUERIES
        ]
        answers = op.link.call(
            "cannot query the volume", lambda: op.link.exchange(op.tree, requests)
        )
        buffers: dict[int, bytes] = {}
        for cls, answer in zip(_VOLUME_QUERIES, answers, strict=True):
            if isinstance(answer, SMBResponseException):
                if cls == FsInfo.FileFsFullSizeInformation:
                    raise _error(int(answer.status), "cannot query the volume size")
                continue
            buffers[int(cls)] = query_info_buffer(answer)
        result: dict[str, Any] = {
            "fs_name": "",
            "label": op.share,
            "serial": 0,
            "max_name_length": 255,
            "fs_attributes": 0,
            "device_characteristics": 0,
        }
        result.update(parse_volume(buffers))
        result["device_characteristics"] |= FILE_REMOTE_DEVICE
        return result

    # --- close --------------------------------------------------------------------------------
    def _close_handle(self, op: _Open) -> None:
        """Close the SMB handle; quietly, since nothing can be done about a failure."""
        if op.link.dead is not None or not op.handle.connected:
            return
        with contextlib.suppress(NtStatusError):
            op.link.call(f"cannot close {_show(op.path)}", op.handle.close)

    def close_srv_open(self, ctx: RxContext) -> Result:
        with self._lock:
            op = self._opens.pop(ctx.srv_open, None) if ctx.srv_open is not None else None
        if op is None:
            raise _error(S.STATUS_INVALID_HANDLE, f"unknown srv_open {ctx.srv_open!r}")
        if op.link.dead is not None or op.closed:
            if op.delete_pending and not op.closed:
                raise _error(
                    S.STATUS_CONNECTION_DISCONNECTED,
                    f"{_show(op.path)} was not deleted: the connection was lost",
                )
            return Result()  # the handle died with its connection (or its share)
        try:
            op.link.call(f"cannot close {_show(op.path)}", op.handle.close)
        except NtStatusError as exc:
            if exc.status == S.STATUS_FILE_CLOSED:
                return Result()
            raise
        return Result()

"""The SFTP mini-redirector: serves folders of SSH servers (OpenSSH sshd) as
``\\\\<server>\\<share>``, with asyncssh.

Configuration: see :mod:`rdbss.minirdrs.sftp_config`. One SSH connection and one SFTP client per
SrvCall (server name). asyncssh runs on one private asyncio event loop in a background thread
owned by this object (started at the first connect, stopped by ``close()``); the routines, which
the host runs on each SrvCall's own worker thread, hand it coroutines and wait for them with a
deadline: the configured ``timeout``, shortened to the request's own deadline; a set-up (SSH
connect, key exchange, authentication, the SFTP session, the share check) keeps the set-up's
deadline instead (rdbss/minirdrs/setup.py).

Semantics follow the local mini-redirector (rdbss/minirdrs/local.py). What SFTP v3 changes:
- paths: ctx.path (already normalized by the core) is checked again (no ``..``, NUL, ``:``) and
  joined under the share's folder, resolved once with ``realpath`` when the VNetRoot is made.
  The parent of every name is resolved on the server too, and must stay inside the share's
  folder; a name that is itself a symbolic link cannot be opened (as with O_NOFOLLOW locally).
- one round trip per step: independent requests are pipelined (OpenSSH answers them in order),
  e.g. an open and the stat that reports the opened file's size go out together.
- statuses: v3 reports most failures as a bare "Failure", so the routines look before they act
  (collision, non-empty directory, read-only file...) and look again after a failure.
- times have whole-second precision; there is no creation time (the change time is reported)
  and no inode number (``file_id`` is a hash of the server path, so it changes on rename).
- no byte-range locks: SFTP has none, so no lock operation is registered.

A lost connection answers STATUS_CONNECTION_DISCONNECTED and marks the SrvCall's connection dead,
so every later call on it answers the same at once; a new MRxCreateSrvCall for the server (the
connection manager rebuilds a SrvCall whose VNetRoot could not be made) connects afresh.
Credentials are read when the SrvCall is created and never logged or put in a message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import itertools
import logging
import os
import stat
import threading
import zlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn, TypeVar, cast

import asyncssh

from rdbss.minirdrs.base import FILE_INFO_CLASSES as _FILE_INFO_CLASSES
from rdbss.minirdrs.base import (
    MAX_READ_BYTES,
    MiniRdr,
    Result,
    info_setter,
    lowio_of,
    posix_volume,
    volume_info_class,
)
from rdbss.minirdrs.common.args import TIME_ARGS as _TIME_ARGS
from rdbss.minirdrs.common.args import arg_bool as _arg_bool
from rdbss.minirdrs.common.args import arg_int as _arg_int
from rdbss.minirdrs.common.args import arg_str as _arg_str
from rdbss.minirdrs.common.args import components as _components
from rdbss.minirdrs.common.args import show as _show
from rdbss.minirdrs.common.fileinfo import file_info
from rdbss.minirdrs.common.listing import Enumerations
from rdbss.minirdrs.common.notify import Entry, Lister, PollingWatches, WatchLimits, notify_interval
from rdbss.minirdrs.common.security import (
    POSIX_INFORMATION,
    PosixSecurity,
    check_query_information,
    posix_change,
    posix_descriptor,
)
from rdbss.minirdrs.common.setup import (
    AUTHENTICATE,
    NEGOTIATE,
    SHARE_CHECK,
    TCP_CONNECT,
    SetupDeadline,
)
from rdbss.minirdrs.common.wildcard import is_name_in_expression
from rdbss.minirdrs.sftp_config import (
    Credentials,
    SftpConfigError,
    SftpServer,
    parse_config,
    read_credentials,
)
from rdbss.minirdrs.sftp_errors import connect_status, is_lost, sftp_reason, sftp_status
from rdbss.model.create import check_create_parameters, check_open_dir, data_access
from rdbss.wire.constants import (
    CreateDisposition,
    CreateInformation,
    CreateOptions,
    FileAttributes,
    FileInformationClass,
    LowIoOp,
)
from rdbss.wire.rxcontext import CreateParameters, RxContext
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.minirdr.sftp")

S = NtStatus
D = CreateDisposition
Info = FileInformationClass
T = TypeVar("T")

FS_NAME = "rdbss-sftp"
#: SFTP v3 reports no block count: sizes are rounded up to this for allocation_size.
ALLOCATION_UNIT = 4096
#: The last phase of an SFTP set-up: the SFTP subsystem starting on the SSH connection.
SFTP_START = "SFTP session start"
#: Slack kept below a request's own deadline so our answer (even a timeout) reaches the core.
DEADLINE_MARGIN_S = 0.25
MIN_DEADLINE_S = 0.5
#: Seconds between two listings of a folder with a pending change notification.
NOTIFY_INTERVAL_S = 1.0
#: How long finalize/close wait for a polite SSH disconnect before dropping it.
CLOSE_WAIT_S = 2.0

_OVERWRITING = frozenset({D.FILE_SUPERSEDE, D.FILE_OVERWRITE, D.FILE_OVERWRITE_IF})
_CREATING = frozenset({D.FILE_SUPERSEDE, D.FILE_CREATE, D.FILE_OPEN_IF, D.FILE_OVERWRITE_IF})
_OVERWRITE_INFORMATION = {
    D.FILE_SUPERSEDE: CreateInformation.FILE_SUPERSEDED,
    D.FILE_OVERWRITE: CreateInformation.FILE_OVERWRITTEN,
    D.FILE_OVERWRITE_IF: CreateInformation.FILE_OVERWRITTEN,
}


def _error(status: int, message: str) -> NtStatusError:
    return NtStatusError(status, message)


def _fail(exc: BaseException, what: str, rel: str) -> NoReturn:
    """Re-raise an SFTP failure as an NtStatusError naming the share-relative path. A lost
    connection (or anything unexpected) is re-raised unchanged for ``_run`` to handle."""
    if isinstance(exc, asyncssh.SFTPError) and not is_lost(exc):
        raise _error(sftp_status(exc), f"{what} {_show(rel)}: {sftp_reason(exc)}") from None
    raise exc


def _join(parent: str, name: str) -> str:
    return parent.rstrip("/") + "/" + name if parent != "/" else "/" + name


def _within(root: str, real: str) -> bool:
    return real == root or root == "/" or real.startswith(root.rstrip("/") + "/")


def _is_dot(name: str) -> bool:
    return name in (".", "..")


# --------------------------------------------------------------------------------------------
# attributes -> file info
# --------------------------------------------------------------------------------------------

_TYPE_BITS = {
    asyncssh.FILEXFER_TYPE_REGULAR: stat.S_IFREG,
    asyncssh.FILEXFER_TYPE_DIRECTORY: stat.S_IFDIR,
    asyncssh.FILEXFER_TYPE_SYMLINK: stat.S_IFLNK,
}


def _mode(attrs: asyncssh.SFTPAttrs) -> int:
    """st_mode, with the file type bits even when the server only sent a type (v4+)."""
    mode = attrs.permissions or 0
    if not stat.S_IFMT(mode):
        mode |= _TYPE_BITS.get(attrs.type, 0)
    return mode


def _ns(seconds: int | float | None, ns: int | None) -> int:
    if seconds is None:
        return 0
    return int(seconds) * 1_000_000_000 + (ns or 0)


@dataclass(frozen=True, slots=True)
class _Stat:
    """The fields of os.stat_result that ``local.file_info`` reads, from SFTP attributes."""

    st_mode: int
    st_size: int
    st_blocks: int
    st_nlink: int
    st_ino: int
    st_atime_ns: int
    st_mtime_ns: int
    st_ctime_ns: int


def _file_id(remote: str) -> int:
    return int.from_bytes(hashlib.blake2b(remote.encode(), digest_size=8).digest(), "big") >> 1


def _info(
    attrs: asyncssh.SFTPAttrs, rel: str, remote: str, *, delete_pending: bool = False
) -> dict[str, Any]:
    size = attrs.size or 0
    allocation = -(-size // ALLOCATION_UNIT) * ALLOCATION_UNIT
    mtime = _ns(attrs.mtime, attrs.mtime_ns)
    st = _Stat(
        st_mode=_mode(attrs),
        st_size=size,
        st_blocks=allocation // 512,
        st_nlink=attrs.nlink or 1,
        st_ino=_file_id(remote),
        st_atime_ns=_ns(attrs.atime, attrs.atime_ns),
        st_mtime_ns=mtime,
        st_ctime_ns=_ns(attrs.ctime, attrs.ctime_ns) if attrs.ctime is not None else mtime,
    )
    return file_info(cast(os.stat_result, st), rel, delete_pending=delete_pending)


# --------------------------------------------------------------------------------------------
# state
# --------------------------------------------------------------------------------------------


class _Watch(asyncssh.SSHClient):
    """Marks the connection dead the moment asyncssh sees it go, and follows a set-up's phases
    (TCP up: the key exchange; then authentication)."""

    def __init__(self, conn: _Conn, setup: SetupDeadline) -> None:
        self._conn = conn
        self._setup = setup

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self._setup.phase = NEGOTIATE

    def begin_auth(self, username: str) -> None:
        self._setup.phase = AUTHENTICATE

    def auth_completed(self) -> None:
        self._setup.phase = SFTP_START

    def connection_lost(self, exc: Exception | None) -> None:
        self._conn.lost = True


@dataclass(eq=False)
class _Conn:
    """One SrvCall: an SSH connection and its SFTP client."""

    server: SftpServer
    ssh: asyncssh.SSHClientConnection | None = None
    sftp: asyncssh.SFTPClient | None = None
    lost: bool = False
    roots: dict[str, str] = field(default_factory=dict)  # share (lower) -> resolved folder

    @property
    def alive(self) -> bool:
        return not self.lost and self.sftp is not None

    def client(self) -> asyncssh.SFTPClient:
        if self.sftp is None or self.lost:
            raise _error(
                S.STATUS_CONNECTION_DISCONNECTED,
                f"the connection to server {self.server.name!r} was lost",
            )
        return self.sftp


@dataclass(eq=False)
class _Share:
    conn: _Conn
    name: str  # as configured
    root: str  # resolved folder on the server


@dataclass(eq=False)
class _Open:
    """One SRV_OPEN: an open file or directory of a share."""

    share: _Share
    path: str  # share-relative, backslashes, "" for the root
    remote: str  # the server path (its parent resolved)
    is_dir: bool
    can_read: bool
    can_write: bool
    append_only: bool = False
    file: asyncssh.SFTPClientFile | None = None  # None: a directory or an attributes-only open
    delete_pending: bool = False
    # (atime, mtime) in whole seconds, set explicitly through this handle: they stick until it
    # is closed (MS-FSA 2.1.5.14.2), so every later write or size change puts them back
    pinned_times: tuple[int, int] | None = None

    @property
    def conn(self) -> _Conn:
        return self.share.conn


@dataclass(slots=True)
class _Target:
    remote: str
    attrs: asyncssh.SFTPAttrs | None  # lstat of the name itself; None: nothing there


class _LoopThread:
    """A private asyncio loop in a daemon thread; ``run`` waits for a coroutine with a deadline."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=self._main, args=(loop,), name=f"{self._name}-asyncio", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    @staticmethod
    def _main(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
            loop.close()

    @property
    def running(self) -> bool:
        return self._loop is not None

    def run(self, factory: Callable[[], Awaitable[T]], timeout: float) -> T:
        """Run ``factory()`` on the loop; TimeoutError after ``timeout`` seconds (the coroutine
        is cancelled), concurrent.futures.CancelledError if the loop stopped meanwhile."""

        async def call() -> T:
            return await factory()

        future = asyncio.run_coroutine_threadsafe(call(), self._get())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result in {timeout:.1f} s") from None

    def stop(self, timeout: float = 3.0) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # already closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)


# --------------------------------------------------------------------------------------------
# the mini-redirector
# --------------------------------------------------------------------------------------------


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
        self._lock = threading.RLock()
        self._loop = _LoopThread(f"sftp-{name}")
        self._conns: dict[str, _Conn] = {}
        self._opens: dict[int, _Open] = {}
        self._enumerations: Enumerations[asyncssh.SFTPAttrs] = Enumerations()
        self._ids = itertools.count(1)
        # asyncssh logs every connect and SFTP session at INFO; keep the daemon log for ours
        aslog = logging.getLogger("asyncssh")
        if aslog.level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
            aslog.setLevel(logging.WARNING)

    def servers(self) -> list[str]:
        return [server.name for server in self.settings.servers.values()]

    # --- plumbing -----------------------------------------------------------------------------
    def _deadline(self, ctx: RxContext | None) -> float:
        """The configured timeout, shortened to what is left of the request's own deadline."""
        if ctx is None or not ctx.timeout_ms:
            return self.timeout
        own = ctx.timeout_ms / 1000.0 - DEADLINE_MARGIN_S
        return max(MIN_DEADLINE_S, min(self.timeout, own))

    def _run(
        self, conn: _Conn, factory: Callable[[], Awaitable[T]], timeout: float, what: str
    ) -> T:
        """Run a coroutine for ``conn``; map what escaped it (lost connection, timeout, an
        unmapped SFTP failure) to an NTSTATUS."""
        if conn.lost:
            raise _error(
                S.STATUS_CONNECTION_DISCONNECTED,
                f"the connection to server {conn.server.name!r} was lost",
            )
        try:
            return self._loop.run(factory, timeout)
        except NtStatusError:
            raise
        except TimeoutError:
            raise _error(
                S.STATUS_IO_TIMEOUT,
                f"{what}: server {conn.server.name!r} did not answer in {timeout:.1f} s",
            ) from None
        except concurrent.futures.CancelledError:
            raise _error(S.STATUS_CANCELLED, f"{what}: cancelled (shutting down)") from None
        except Exception as exc:
            if is_lost(exc):
                conn.lost = True
                log.warning("connection to %s lost: %s", conn.server.name, type(exc).__name__)
                raise _error(
                    S.STATUS_CONNECTION_DISCONNECTED,
                    f"{what}: the connection to server {conn.server.name!r} was lost",
                ) from None
            if isinstance(exc, asyncssh.SFTPError):
                raise _error(sftp_status(exc), f"{what}: {sftp_reason(exc)}") from None
            raise

    def _conn_of(self, srv_call: str | None) -> _Conn:
        if self.settings.server(srv_call) is None:
            raise _error(S.STATUS_BAD_NETWORK_PATH, f"server {srv_call!r} is not served here")
        assert srv_call is not None
        with self._lock:
            conn = self._conns.get(srv_call.lower())
        if conn is None:
            raise _error(S.STATUS_CONNECTION_DISCONNECTED, f"no connection to server {srv_call!r}")
        return conn

    def _share_of(self, ctx: RxContext) -> _Share:
        conn = self._conn_of(ctx.srv_call)
        configured = conn.server.share(ctx.net_root)
        if configured is None:
            raise _error(S.STATUS_BAD_NETWORK_NAME, f"no share named {ctx.net_root!r}")
        name, folder = configured
        root = conn.roots.get(name.lower())
        if root is None:  # not connected through MRxCreateVNetRoot on this connection yet
            root = self._run(
                conn, lambda: self._aresolve_root(conn, name, folder), self._deadline(ctx), "share"
            )
            conn.roots[name.lower()] = root
        return _Share(conn, name, root)

    def _open_of(self, ctx: RxContext) -> _Open:
        with self._lock:
            op = self._opens.get(ctx.srv_open) if ctx.srv_open is not None else None
        if op is None:
            raise _error(S.STATUS_INVALID_HANDLE, f"unknown srv_open {ctx.srv_open!r}")
        return op

    def _add_open(self, op: _Open) -> int:
        with self._lock:
            srv_open = next(self._ids)
            self._opens[srv_open] = op
        return srv_open

    def _delete_pending_at(self, share: _Share, rel: str) -> bool:
        with self._lock:
            return any(
                op.delete_pending
                and op.share.conn is share.conn
                and op.share.name == share.name
                and op.path == rel
                for op in self._opens.values()
            )

    # --- connections --------------------------------------------------------------------------
    def create_srv_call(self, ctx: RxContext) -> Result:
        server = self.settings.server(ctx.srv_call)
        if server is None:
            raise _error(S.STATUS_BAD_NETWORK_PATH, f"server {ctx.srv_call!r} is not served here")
        key = server.name.lower()
        with self._lock:
            existing = self._conns.get(key)
        if existing is not None and existing.alive:
            return Result()
        creds = read_credentials(server)
        conn = _Conn(server)
        setup = SetupDeadline.of(ctx, server.name)
        try:
            # the whole set-up (TCP, key exchange, authentication, the SFTP session) runs under
            # the set-up's deadline; a cancelled asyncssh connect closes what it had opened
            self._loop.run(lambda: self._aconnect(conn, creds, setup), setup.remaining() + 0.1)
            setup.check()
        except Exception as exc:
            self._disconnect(conn)  # whatever was built, also a set-up that finished late
            if isinstance(exc, TimeoutError) or setup.passed:
                raise setup.expired() from None
            if isinstance(exc, NtStatusError):
                raise
            status, message = connect_status(exc)
            log.warning("connect to %s failed: %s (%s)", server.name, message, type(exc).__name__)
            raise _error(status, f"server {server.name!r}: {message}") from None
        finally:
            creds.password = None
            creds.keys.clear()
        with self._lock:
            old = self._conns.get(key)
            self._conns[key] = conn
        if old is not None:
            self._disconnect(old)
        log.info("connected to %s", server.name)
        return Result()

    async def _aconnect(self, conn: _Conn, creds: Credentials, setup: SetupDeadline) -> None:
        server = conn.server
        known_hosts: Any = None
        if server.host_key_check:
            known_hosts = server.known_hosts if server.known_hosts is not None else ()
        options: dict[str, Any] = {
            "port": server.port,
            "username": server.username,
            "known_hosts": known_hosts,
            "client_keys": list(creds.keys) or None,
            "password": creds.password,
            "agent_path": None,
            "config": None,
            "gss_host": None,
            # the set-up's own deadline (wait_for below) fires first; asyncssh's timers stay
            # as a backstop
            "connect_timeout": setup.remaining() + 1.0,
            "login_timeout": setup.remaining() + 1.0,
            "keepalive_interval": self.settings.keepalive_interval,
            "keepalive_count_max": 3,
            "client_factory": lambda: _Watch(conn, setup),
        }
        if creds.password is None:
            options["preferred_auth"] = "publickey"

        async def connect() -> None:
            ssh = await asyncssh.connect(server.host, **options)
            conn.ssh = ssh
            conn.sftp = await ssh.start_sftp_client()

        try:
            await asyncio.wait_for(connect(), setup.enter(TCP_CONNECT))
        except BaseException:
            if conn.ssh is not None:
                conn.ssh.abort()
            conn.ssh = conn.sftp = None
            raise

    def srv_call_winner_notify(self, ctx: RxContext) -> Result:
        return Result()

    def create_v_net_root(self, ctx: RxContext) -> Result:
        conn = self._conn_of(ctx.srv_call)
        configured = conn.server.share(ctx.net_root)
        if configured is None:
            raise _error(S.STATUS_BAD_NETWORK_NAME, f"no share named {ctx.net_root!r}")
        name, folder = configured
        setup = SetupDeadline.of(ctx, conn.server.name, SHARE_CHECK)
        try:
            resolve = lambda: self._aresolve_root(conn, name, folder)  # noqa: E731
            root = self._run(conn, resolve, setup.enter(SHARE_CHECK), "share")
            setup.check()
        except NtStatusError as exc:
            if exc.status == S.STATUS_IO_TIMEOUT:
                raise setup.expired() from None
            raise
        conn.roots[name.lower()] = root
        return Result()

    @staticmethod
    async def _aresolve_root(conn: _Conn, name: str, folder: str) -> str:
        sftp = conn.client()
        try:
            root = await sftp.realpath(folder)
            attrs = await sftp.stat(root)
        except asyncssh.SFTPError as exc:
            if is_lost(exc):
                raise
            raise _error(
                S.STATUS_BAD_NETWORK_NAME,
                f"the folder of share {name!r} cannot be reached: {sftp_reason(exc)}",
            ) from None
        if not stat.S_ISDIR(_mode(attrs)):
            raise _error(S.STATUS_BAD_NETWORK_NAME, f"the folder of share {name!r} is not a folder")
        return str(root)

    def finalize_v_net_root(self, ctx: RxContext) -> Result:
        return Result()

    def finalize_net_root(self, ctx: RxContext) -> Result:
        return Result()

    def finalize_srv_call(self, ctx: RxContext) -> Result:
        """Drop the server's connection. Opens made on it stay in the table, dead: the core
        still closes them (MRxCloseSrvOpen), and each close reports what was lost."""
        try:
            key = ctx.srv_call.lower() if isinstance(ctx.srv_call, str) else ""
            with self._lock:
                conn = self._conns.pop(key, None)
            if conn is not None:
                self._disconnect(conn)
        except Exception:  # finalize never fails
            log.exception("finalize of SrvCall %r failed", ctx.srv_call)
        return Result()

    def _disconnect(self, conn: _Conn) -> None:
        """Close a connection politely if it is alive; never raises."""
        ssh = conn.ssh
        conn.lost = True
        conn.sftp = None
        if ssh is None or not self._loop.running:
            return

        async def close() -> None:
            ssh.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ssh.wait_closed(), CLOSE_WAIT_S)

        with contextlib.suppress(Exception):
            self._loop.run(close, CLOSE_WAIT_S + 0.5)

    def cancel(self, request_id: int, status: int = S.STATUS_CANCELLED) -> bool:
        """The cancel routine of a pending change notification (the polling watch ends)."""
        return self._watches.cancel(request_id, status)

    def pending_requests(self) -> int:
        return self._watches.pending

    def close(self) -> None:
        """Close every open (deleting what was delete-pending, as closing its handle would) and
        every connection, then stop the event loop."""
        self._watches.close()
        with self._lock:
            opens = list(self._opens.values())
            conns = list(self._conns.values())
            self._opens.clear()
            self._enumerations.clear()
            self._conns.clear()
        for op in opens:
            if op.conn.alive:
                with contextlib.suppress(Exception):
                    self._run(op.conn, self._closer(op), CLOSE_WAIT_S, "close")
        for conn in conns:
            self._disconnect(conn)
        self._loop.stop()

    # --- path resolution ----------------------------------------------------------------------
    @staticmethod
    async def _lstat_or_none(
        sftp: asyncssh.SFTPClient, remote: str, rel: str
    ) -> asyncssh.SFTPAttrs | None:
        try:
            return await sftp.lstat(remote)
        except asyncssh.SFTPNoSuchFile:
            return None
        except asyncssh.SFTPError as exc:
            _fail(exc, "cannot query", rel)

    async def _alocate(self, share: _Share, parts: list[str], rel: str) -> _Target:
        """Where ``parts`` is on the server and what is there (lstat); the parent is resolved
        and must be a folder inside the share (else OBJECT_PATH_NOT_FOUND / ACCESS_DENIED).
        One round trip: the three requests are pipelined."""
        sftp = share.conn.client()
        if not parts:
            try:
                return _Target(share.root, await sftp.stat(share.root))
            except asyncssh.SFTPNoSuchFile:
                raise _error(
                    S.STATUS_BAD_NETWORK_NAME, f"the folder of share {share.name!r} is gone"
                ) from None
        name = parts[-1]
        if len(parts) == 1:
            remote = _join(share.root, name)
            return _Target(remote, await self._lstat_or_none(sftp, remote, rel))
        unresolved = share.root + "/" + "/".join(parts[:-1])
        real_task = asyncio.ensure_future(sftp.realpath(unresolved))
        parent_task = asyncio.ensure_future(sftp.stat(unresolved))
        entry_task = asyncio.ensure_future(self._lstat_or_none(sftp, _join(unresolved, name), rel))
        real, parent, entry = await asyncio.gather(
            real_task, parent_task, entry_task, return_exceptions=True
        )
        for got in (real, parent, entry):
            if isinstance(got, BaseException) and (is_lost(got) or not isinstance(got, Exception)):
                raise got
        if isinstance(real, str) and not _within(share.root, real):
            raise _error(S.STATUS_ACCESS_DENIED, f"{_show(rel)} leads outside the share")
        if isinstance(real, asyncssh.SFTPNoSuchFile) or isinstance(parent, asyncssh.SFTPNoSuchFile):
            raise _error(S.STATUS_OBJECT_PATH_NOT_FOUND, f"{_show(rel)}: parent folder not found")
        for got in (real, parent, entry):
            if isinstance(got, asyncssh.SFTPError):
                _fail(got, "cannot query", rel)
            if isinstance(got, BaseException):
                raise got
        assert isinstance(real, str) and isinstance(parent, asyncssh.SFTPAttrs)
        if not stat.S_ISDIR(_mode(parent)):
            raise _error(S.STATUS_OBJECT_PATH_NOT_FOUND, f"{_show(rel)}: parent is not a folder")
        attrs = entry if isinstance(entry, asyncssh.SFTPAttrs) else None
        return _Target(_join(real, name), attrs)

    # --- create -------------------------------------------------------------------------------
    def create(self, ctx: RxContext) -> Result:
        share = self._share_of(ctx)
        parts = _components(ctx.path or "")
        rel = "\\".join(parts)
        params = ctx.create or CreateParameters()
        disposition, options = check_create_parameters(params)
        if self._delete_pending_at(share, rel):
            raise _error(S.STATUS_DELETE_PENDING, f"{_show(rel)} is being deleted")
        op, information, info = self._run(
            share.conn,
            lambda: self._acreate(share, parts, rel, params, disposition, options),
            self._deadline(ctx),
            f"cannot open {_show(rel)}",
        )
        srv_open = self._add_open(op)
        return Result(
            information=information,
            result={**info, "srv_open": srv_open, "directory": op.is_dir},
        )

    async def _acreate(
        self,
        share: _Share,
        parts: list[str],
        rel: str,
        params: CreateParameters,
        disposition: D,
        options: int,
    ) -> tuple[_Open, int, dict[str, Any]]:
        target = await self._alocate(share, parts, rel)
        created = target.attrs is None
        if created:
            op, attrs = await self._acreate_new(share, rel, target, params, disposition, options)
            information = int(CreateInformation.FILE_CREATED)
        else:
            op, attrs, information = await self._aopen_existing(
                share, rel, target, params, disposition, options
            )
        try:
            if options & CreateOptions.FILE_DELETE_ON_CLOSE:
                await self._acheck_deletable(op)
                op.delete_pending = True
        except BaseException:
            await self._aabandon(op, created=created)
            raise
        return op, information, _info(attrs, rel, op.remote, delete_pending=op.delete_pending)

    async def _aopen_and_stat(
        self, sftp: asyncssh.SFTPClient, remote: str, pflags: int, attrs: asyncssh.SFTPAttrs
    ) -> tuple[asyncssh.SFTPClientFile, asyncssh.SFTPAttrs]:
        """Open, and lstat the opened file in the same round trip (OpenSSH answers in order)."""

        async def do_open() -> asyncssh.SFTPClientFile:
            return await sftp.open(remote, pflags, attrs, encoding=None)

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

    @staticmethod
    def _pflags(can_read: bool, can_write: bool, append_only: bool) -> int:
        pflags = 0
        if can_read or not can_write:
            pflags |= asyncssh.FXF_READ
        if can_write:
            pflags |= asyncssh.FXF_WRITE
        if append_only:
            pflags |= asyncssh.FXF_APPEND
        return pflags

    async def _acreate_new(
        self,
        share: _Share,
        rel: str,
        target: _Target,
        params: CreateParameters,
        disposition: D,
        options: int,
    ) -> tuple[_Open, asyncssh.SFTPAttrs]:
        sftp = share.conn.client()
        if disposition not in _CREATING:
            raise _error(S.STATUS_OBJECT_NAME_NOT_FOUND, f"{_show(rel)} not found")
        can_read, can_write, append_only = data_access(params.desired_access)
        readonly = bool(params.file_attributes & FileAttributes.READONLY)
        remote = target.remote
        try:
            if options & CreateOptions.FILE_DIRECTORY_FILE:
                mkdir = asyncio.ensure_future(sftp.mkdir(remote))
                lstat = asyncio.ensure_future(sftp.lstat(remote))
                try:
                    await mkdir
                finally:
                    attrs_or_exc = (await asyncio.gather(lstat, return_exceptions=True))[0]
                if isinstance(attrs_or_exc, BaseException):
                    raise attrs_or_exc
                attrs = attrs_or_exc
                op = _Open(share, rel, remote, True, can_read, can_write)
            else:
                pflags = asyncssh.FXF_CREAT | asyncssh.FXF_EXCL
                pflags |= self._pflags(can_read, can_write, append_only)
                create_attrs = asyncssh.SFTPAttrs(permissions=0o444) if readonly else None
                handle, attrs = await self._aopen_and_stat(
                    sftp, remote, pflags, create_attrs or asyncssh.SFTPAttrs()
                )
                op = _Open(share, rel, remote, False, can_read, can_write, append_only, handle)
                readonly = False  # applied by the open itself
        except asyncssh.SFTPError as exc:
            if is_lost(exc):
                raise
            # v3 says "Failure" for EEXIST too: did someone make it meanwhile?
            if isinstance(
                exc, asyncssh.SFTPFailure | asyncssh.SFTPPermissionDenied
            ) and await self._lstat_or_none(sftp, remote, rel):
                raise _error(
                    S.STATUS_OBJECT_NAME_COLLISION, f"{_show(rel)} already exists"
                ) from None
            if isinstance(exc, asyncssh.SFTPNoSuchFile):
                raise _error(
                    S.STATUS_OBJECT_PATH_NOT_FOUND, f"{_show(rel)}: parent folder not found"
                ) from None
            _fail(exc, "cannot create", rel)
        if readonly:
            try:
                attrs = await self._achmod_readonly(sftp, op, attrs, readonly=True)
            except BaseException:
                await self._aabandon(op, created=True)
                raise
        return op, attrs

    @staticmethod
    async def _achmod_readonly(
        sftp: asyncssh.SFTPClient, op: _Open, attrs: asyncssh.SFTPAttrs, *, readonly: bool
    ) -> asyncssh.SFTPAttrs:
        mode = _mode(attrs)
        new = mode & ~0o222 if readonly else mode | 0o200
        if new == mode:
            return attrs
        try:
            await sftp.setstat(op.remote, asyncssh.SFTPAttrs(permissions=stat.S_IMODE(new)))
        except asyncssh.SFTPError as exc:
            _fail(exc, "cannot set attributes of", op.path)
        attrs.permissions = new
        return attrs

    async def _aopen_existing(
        self,
        share: _Share,
        rel: str,
        target: _Target,
        params: CreateParameters,
        disposition: D,
        options: int,
    ) -> tuple[_Open, asyncssh.SFTPAttrs, int]:
        sftp = share.conn.client()
        attrs = target.attrs
        assert attrs is not None
        mode = _mode(attrs)
        can_read, can_write, append_only = data_access(params.desired_access)
        if disposition == D.FILE_CREATE:
            raise _error(S.STATUS_OBJECT_NAME_COLLISION, f"{_show(rel)} already exists")
        if stat.S_ISLNK(mode):
            raise _error(S.STATUS_ACCESS_DENIED, f"{_show(rel)} is a symbolic link")
        if stat.S_ISDIR(mode):
            check_open_dir(rel, options, disposition, can_write)
            op = _Open(share, rel, target.remote, True, can_read, can_write)
            return op, attrs, int(CreateInformation.FILE_OPENED)
        if options & CreateOptions.FILE_DIRECTORY_FILE:
            raise _error(S.STATUS_NOT_A_DIRECTORY, f"{_show(rel)} is not a directory")
        if not stat.S_ISREG(mode):
            raise _error(S.STATUS_ACCESS_DENIED, f"{_show(rel)} is not a regular file")
        overwrite = disposition in _OVERWRITING
        if (can_write or overwrite) and not mode & 0o222:
            raise _error(S.STATUS_ACCESS_DENIED, f"{_show(rel)} is read-only")
        op = _Open(share, rel, target.remote, False, can_read, can_write, append_only)
        if can_read or can_write or overwrite:
            pflags = self._pflags(can_read, can_write or overwrite, append_only)
            if overwrite:
                pflags |= asyncssh.FXF_TRUNC
            try:
                op.file, attrs = await self._aopen_and_stat(
                    sftp, target.remote, pflags, asyncssh.SFTPAttrs()
                )
            except asyncssh.SFTPError as exc:
                _fail(exc, "cannot open", rel)
            if not stat.S_ISREG(_mode(attrs)):  # replaced since the lstat
                await self._aabandon(op, created=False)
                raise _error(S.STATUS_ACCESS_DENIED, f"{_show(rel)} is not a regular file")
        if overwrite and params.file_attributes & FileAttributes.READONLY:
            try:
                attrs = await self._achmod_readonly(sftp, op, attrs, readonly=True)
            except BaseException:
                await self._aabandon(op, created=False)
                raise
        information = _OVERWRITE_INFORMATION.get(disposition, CreateInformation.FILE_OPENED)
        return op, attrs, int(information)

    async def _aabandon(self, op: _Open, *, created: bool) -> None:
        """Undo a create that failed after opening: close, and remove what it made."""
        with contextlib.suppress(Exception):
            await self._aclose_handle(op)
            if created:
                await self._adelete(op)

    async def _acheck_deletable(self, op: _Open) -> None:
        """Refuse what cannot be marked delete-pending: the share root, a non-empty directory,
        a read-only file."""
        if not op.path:
            raise _error(S.STATUS_ACCESS_DENIED, "the share root cannot be deleted")
        sftp = op.conn.client()
        try:
            if op.is_dir:
                if not await self._ais_empty(sftp, op.remote):
                    raise _error(S.STATUS_DIRECTORY_NOT_EMPTY, f"{_show(op.path)} is not empty")
            elif not _mode(await sftp.lstat(op.remote)) & 0o222:
                raise _error(S.STATUS_CANNOT_DELETE, f"{_show(op.path)} is read-only")
        except asyncssh.SFTPError as exc:
            _fail(exc, "cannot delete", op.path)

    @staticmethod
    async def _ais_empty(sftp: asyncssh.SFTPClient, remote: str) -> bool:
        listing = cast(AsyncGenerator[asyncssh.SFTPName, None], sftp.scandir(remote))
        async with contextlib.aclosing(listing) as entries:
            async for entry in entries:
                if not _is_dot(str(entry.filename)):
                    return False
        return True

    # --- low I/O ------------------------------------------------------------------------------
    def low_io_submit(
        self, ctx: RxContext, payload: bytes | bytearray | memoryview | None = None
    ) -> Result:
        op = self._open_of(ctx)
        lowio = lowio_of(ctx)
        if lowio.operation == LowIoOp.NOTIFY_CHANGE_DIRECTORY:
            if not op.is_dir:
                raise _error(S.STATUS_INVALID_PARAMETER, f"{_show(op.path)} is not a directory")
            return self._watches.notify(
                ctx,
                self._lister(op),
                group=op.conn.server.name.lower(),
                folder=op.remote,
                completion_filter=lowio.completion_filter,
                tree=lowio.watch_tree,
                what=_show(op.path),
            )
        if op.is_dir:
            raise _error(S.STATUS_INVALID_DEVICE_REQUEST, f"{_show(op.path)} is a directory")
        if lowio.operation == LowIoOp.READ:
            return self._read(ctx, op, lowio.offset, lowio.length)
        if lowio.operation == LowIoOp.WRITE:
            if lowio.length < 0:
                raise _error(S.STATUS_INVALID_PARAMETER, f"negative length {lowio.length}")
            return self._write(ctx, op, lowio.offset, payload)
        raise _error(
            S.STATUS_INVALID_DEVICE_REQUEST, f"low I/O operation {lowio.operation!r} not supported"
        )

    def _lister(self, op: _Open) -> Lister:
        """Lists a folder below the watched one on the server (one readdir; called from the
        notify poller's thread, the SFTP calls run on the connection's event loop)."""

        async def readdir(remote: str, rel: str) -> list[tuple[str, Entry]]:
            try:
                names = await op.conn.client().readdir(remote)
            except asyncssh.SFTPNoSuchFile:
                raise _error(S.STATUS_OBJECT_PATH_NOT_FOUND, f"{_show(rel)} is gone") from None
            except asyncssh.SFTPError as exc:
                _fail(exc, "cannot list", rel)
            out = []
            for n in names:
                name = str(n.filename)
                if _is_dot(name):
                    continue
                mode = _mode(n.attrs)
                is_dir = stat.S_ISDIR(mode)
                size = 0 if is_dir else n.attrs.size or 0
                mtime = _ns(n.attrs.mtime, n.attrs.mtime_ns)
                out.append((name, Entry(is_dir, size, mtime, mode)))
            return out

        def list_folder(sub: str) -> list[tuple[str, Entry]]:
            remote = op.remote
            for part in sub.split("\\") if sub else []:
                remote = _join(remote, part)
            rel = "\\".join(p for p in (op.path, sub) if p)
            return self._run(
                op.conn,
                lambda: readdir(remote, rel),
                self.timeout,
                f"cannot list {_show(rel)}",
            )

        return list_folder

    def _read(self, ctx: RxContext, op: _Open, offset: int, length: int) -> Result:
        if not op.can_read or op.file is None:
            raise _error(S.STATUS_ACCESS_DENIED, f"{_show(op.path)} is not open for reading")
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
                _fail(exc, "cannot read", op.path)

        data = self._run(op.conn, read, self._deadline(ctx), f"cannot read {_show(op.path)}")
        if not data:
            raise _error(S.STATUS_END_OF_FILE, f"{_show(op.path)}: offset {offset} is past EOF")
        return Result(information=len(data), payload=data)

    def _write(
        self,
        ctx: RxContext,
        op: _Open,
        offset: int,
        payload: bytes | bytearray | memoryview | None,
    ) -> Result:
        if not op.can_write or op.file is None:
            raise _error(S.STATUS_ACCESS_DENIED, f"{_show(op.path)} is not open for writing")
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
                    await self._arepin(op)
                return len(data)
            except asyncssh.SFTPError as exc:
                _fail(exc, "cannot write", op.path)

        written = self._run(op.conn, write, self._deadline(ctx), f"cannot write {_show(op.path)}")
        return Result(information=written)

    def flush(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        handle = op.file
        if handle is None or not op.can_write:
            return Result()

        async def fsync() -> None:
            try:
                await handle.fsync()
            except asyncssh.SFTPOpUnsupported:
                pass  # no fsync@openssh.com: the server's own write-back is all there is
            except asyncssh.SFTPError as exc:
                _fail(exc, "cannot flush", op.path)

        self._run(op.conn, fsync, self._deadline(ctx), f"cannot flush {_show(op.path)}")
        return Result()

    # --- file information ---------------------------------------------------------------------
    async def _astat(self, op: _Open) -> asyncssh.SFTPAttrs:
        try:
            if op.file is not None:
                return await op.file.stat()
            return await op.conn.client().stat(op.remote)
        except asyncssh.SFTPError as exc:
            _fail(exc, "cannot query", op.path)

    def query_file_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        info_class = ctx.info.info_class if ctx.info is not None else None
        if info_class not in _FILE_INFO_CLASSES:
            raise _error(S.STATUS_INVALID_PARAMETER, f"file info class {info_class!r}")
        attrs = self._run(
            op.conn, lambda: self._astat(op), self._deadline(ctx), f"cannot query {_show(op.path)}"
        )
        info = _info(attrs, op.path, op.remote, delete_pending=op.delete_pending)
        info["position"] = 0
        return Result(result=info)

    # --- security: the server's uid, gid and permissions as a security descriptor ----------
    @staticmethod
    def _security(attrs: asyncssh.SFTPAttrs) -> PosixSecurity:
        """SFTP v3 (OpenSSH) sends numeric ids only; v4+ servers also send names."""
        return PosixSecurity(
            attrs.uid if attrs.uid is not None else -1,
            attrs.gid if attrs.gid is not None else -1,
            _mode(attrs),
            attrs.owner or None,
            attrs.group or None,
        )

    def query_sd_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        info = check_query_information(
            ctx.info.info_class if ctx.info is not None else None, POSIX_INFORMATION
        )
        attrs = self._run(
            op.conn,
            lambda: self._astat(op),
            self._deadline(ctx),
            f"cannot query the security of {_show(op.path)}",
        )
        if attrs.uid is None or attrs.gid is None or attrs.permissions is None:
            raise _error(
                S.STATUS_NOT_SUPPORTED,
                f"{_show(op.path)}: the server sends no owner, group or permissions",
            )
        return Result(result=posix_descriptor(info, self._security(attrs)))

    def set_sd_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        info = ctx.info.info_class if ctx.info is not None else None
        args = ctx.info.args if ctx.info is not None else None
        check_query_information(info, POSIX_INFORMATION)  # answers bad bits without a round trip

        async def apply() -> None:
            sftp = op.conn.client()
            try:
                attrs = await self._astat(op)
                change = posix_change(info, args, self._security(attrs))
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
                _fail(exc, "cannot change the security of", op.path)

        self._run(
            op.conn, apply, self._deadline(ctx), f"cannot change the security of {_show(op.path)}"
        )
        return Result()

    def set_file_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        setters: dict[int, Callable[[_Open, Mapping[str, Any]], Awaitable[None]]] = {
            Info.FileBasicInformation: self._aset_basic,
            Info.FileEndOfFileInformation: self._aset_end_of_file,
            Info.FileAllocationInformation: self._aset_allocation,
            Info.FileRenameInformation: self._aset_rename,
            Info.FileDispositionInformation: self._aset_disposition,
        }
        info_class, setter, args = info_setter(ctx, setters)
        self._check_set_args(op, info_class, args)
        self._run(
            op.conn,
            lambda: setter(op, args),
            self._deadline(ctx),
            f"cannot set information of {_show(op.path)}",
        )
        return Result()

    @staticmethod
    def _check_set_args(op: _Open, info_class: int, args: Mapping[str, Any]) -> None:
        """Argument checks that need no server (so they answer without a round trip)."""
        if info_class == Info.FileBasicInformation:
            for key in _TIME_ARGS:
                _arg_int(args, key, default=0)
            attributes = _arg_int(args, "attributes", default=0)
            if attributes & FileAttributes.DIRECTORY and not op.is_dir:
                raise _error(S.STATUS_INVALID_PARAMETER, "attributes: DIRECTORY on a file")
        elif info_class in (Info.FileEndOfFileInformation, Info.FileAllocationInformation):
            if _arg_int(args, "size") < 0:
                raise _error(S.STATUS_INVALID_PARAMETER, "argument 'size' must not be negative")
            what = "end of file" if info_class == Info.FileEndOfFileInformation else "allocation"
            if op.is_dir:
                raise _error(S.STATUS_INVALID_PARAMETER, f"{what} of a directory")
            if not op.can_write or op.file is None:
                raise _error(S.STATUS_ACCESS_DENIED, f"{_show(op.path)} is not open for writing")
        elif info_class == Info.FileRenameInformation:
            _components(_arg_str(args, "target"))
            _arg_bool(args, "replace", default=False)
        elif info_class == Info.FileDispositionInformation:
            _arg_bool(args, "delete")

    async def _aset_basic(self, op: _Open, args: Mapping[str, Any]) -> None:
        times = {key: _arg_int(args, key, default=0) for key in _TIME_ARGS}
        attributes = _arg_int(args, "attributes", default=0)
        atime_ns, mtime_ns = times["last_access_time"], times["last_write_time"]
        if atime_ns <= 0 and mtime_ns <= 0 and not attributes:
            return
        sftp = op.conn.client()
        try:
            current = await sftp.stat(op.remote)
            if atime_ns > 0 or mtime_ns > 0:
                # SFTP v3 sets both times at once, in whole seconds
                atime = atime_ns // 1_000_000_000 if atime_ns > 0 else int(current.atime or 0)
                mtime = mtime_ns // 1_000_000_000 if mtime_ns > 0 else int(current.mtime or 0)
                await sftp.setstat(op.remote, asyncssh.SFTPAttrs(atime=atime, mtime=mtime))
                if op.file is not None:  # a handle that can write keeps them (_arepin)
                    op.pinned_times = (atime, mtime)
            if attributes:
                await self._achmod_readonly(
                    sftp, op, current, readonly=bool(attributes & FileAttributes.READONLY)
                )
        except asyncssh.SFTPError as exc:
            _fail(exc, "cannot set attributes of", op.path)

    async def _aset_end_of_file(self, op: _Open, args: Mapping[str, Any]) -> None:
        assert op.file is not None
        try:
            await op.file.truncate(_arg_int(args, "size"))
            await self._arepin(op)
        except asyncssh.SFTPError as exc:
            _fail(exc, "cannot set the size of", op.path)

    @staticmethod
    async def _arepin(op: _Open) -> None:
        """After a change through ``op`` that moves the file's times (a write, a size change):
        the times set explicitly on the handle go back (SFTP v3: both at once)."""
        if op.pinned_times is not None and op.file is not None:
            atime, mtime = op.pinned_times
            await op.file.setstat(asyncssh.SFTPAttrs(atime=atime, mtime=mtime))

    async def _aset_allocation(self, op: _Open, args: Mapping[str, Any]) -> None:
        assert op.file is not None
        size = _arg_int(args, "size")
        try:
            if size < ((await op.file.stat()).size or 0):
                await op.file.truncate(size)
                await self._arepin(op)
        except asyncssh.SFTPError as exc:
            _fail(exc, "cannot set the allocation of", op.path)

    async def _aset_rename(self, op: _Open, args: Mapping[str, Any]) -> None:
        parts = _components(_arg_str(args, "target"))
        target_rel = "\\".join(parts)
        replace = _arg_bool(args, "replace", default=False)
        if not target_rel:
            raise _error(S.STATUS_INVALID_PARAMETER, "cannot rename onto the share root")
        if not op.path:
            raise _error(S.STATUS_ACCESS_DENIED, "the share root cannot be renamed")
        if target_rel == op.path:
            return
        sftp = op.conn.client()
        target = await self._alocate(op.share, parts, target_rel)
        existing = target.attrs
        if existing is not None:
            if not replace:
                raise _error(S.STATUS_OBJECT_NAME_COLLISION, f"{_show(target_rel)} already exists")
            if stat.S_ISDIR(_mode(existing)):
                raise _error(
                    S.STATUS_ACCESS_DENIED, f"{_show(target_rel)} is a directory: cannot replace it"
                )
        what = f"cannot rename {_show(op.path)} to"
        try:
            if existing is not None:
                await sftp.posix_rename(op.remote, target.remote)
            else:
                await sftp.rename(op.remote, target.remote)
        except asyncssh.SFTPOpUnsupported:
            raise _error(
                S.STATUS_NOT_SUPPORTED,
                f"{what} {_show(target_rel)}: the server cannot replace (no posix-rename)",
            ) from None
        except asyncssh.SFTPError as exc:
            if is_lost(exc):
                raise
            if isinstance(exc, asyncssh.SFTPFailure) and await self._lstat_or_none(
                sftp, target.remote, target_rel
            ):
                raise _error(
                    S.STATUS_OBJECT_NAME_COLLISION, f"{_show(target_rel)} already exists"
                ) from None
            _fail(exc, what, target_rel)
        self._renamed(op.share, op.path, op.remote, target_rel, target.remote)

    def _renamed(self, share: _Share, old: str, old_remote: str, new: str, new_remote: str) -> None:
        """Point every open at or under ``old`` (same connection and share) at its new name."""
        prefix = old + "\\"
        with self._lock:
            for other in self._opens.values():
                if other.share.conn is not share.conn or other.share.name != share.name:
                    continue
                if other.path == old:
                    other.path, other.remote = new, new_remote
                elif other.path.startswith(prefix):
                    rest = other.path[len(prefix) :]
                    other.path = new + "\\" + rest
                    other.remote = new_remote + "/" + rest.replace("\\", "/")

    async def _aset_disposition(self, op: _Open, args: Mapping[str, Any]) -> None:
        delete = _arg_bool(args, "delete")
        if delete:
            await self._acheck_deletable(op)
        op.delete_pending = delete

    # --- directories --------------------------------------------------------------------------
    def query_directory(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        if not op.is_dir:
            raise _error(S.STATUS_INVALID_PARAMETER, f"{_show(op.path)} is not a directory")

        def load(pattern: str) -> list[tuple[str, asyncssh.SFTPAttrs]]:
            return self._run(
                op.conn,
                lambda: self._alist(op, pattern),
                self._deadline(ctx),
                f"cannot list {_show(op.path)}",
            )

        def describe(name: str, attrs: asyncssh.SFTPAttrs) -> dict[str, Any]:
            rel = f"{op.path}\\{name}" if op.path else name
            return _info(
                attrs,
                rel,
                _join(op.remote, name),
                delete_pending=self._delete_pending_at(op.share, rel),
            )

        return self._enumerations.query(ctx, _show(op.path), load, describe)

    async def _alist(self, op: _Open, pattern: str) -> list[tuple[str, asyncssh.SFTPAttrs]]:
        """The matching entries, sorted, with their attributes (from the listing itself; a
        symbolic link is described by what it points to when that stays in the share)."""
        sftp = op.conn.client()
        try:
            names = await sftp.readdir(op.remote)
        except asyncssh.SFTPError as exc:
            _fail(exc, "cannot list", op.path)
        found = sorted(
            (str(n.filename), n.attrs)
            for n in names
            if not _is_dot(str(n.filename)) and is_name_in_expression(pattern, str(n.filename))
        )
        links = [i for i, (_, attrs) in enumerate(found) if stat.S_ISLNK(_mode(attrs))]
        if links:
            resolved = await asyncio.gather(
                *(self._afollow(op, found[i][0]) for i in links), return_exceptions=True
            )
            for i, got in zip(links, resolved, strict=True):
                if isinstance(got, asyncssh.SFTPAttrs):
                    found[i] = (found[i][0], got)
                elif isinstance(got, BaseException) and is_lost(got):
                    raise got
        return found

    async def _afollow(self, op: _Open, name: str) -> asyncssh.SFTPAttrs | None:
        sftp = op.conn.client()
        remote = _join(op.remote, name)
        real_task = asyncio.ensure_future(sftp.realpath(remote))
        stat_task = asyncio.ensure_future(sftp.stat(remote))
        real, attrs = await asyncio.gather(real_task, stat_task, return_exceptions=True)
        if isinstance(real, str) and isinstance(attrs, asyncssh.SFTPAttrs):
            return attrs if _within(op.share.root, real) else None
        for got in (real, attrs):
            if isinstance(got, BaseException) and is_lost(got):
                raise got
        return None

    def cleanup_fobx(self, ctx: RxContext) -> Result:
        self._enumerations.forget_fobx(ctx.fobx)
        self._watches.end(fobx=ctx.fobx)
        return Result()

    # --- volume -------------------------------------------------------------------------------
    def query_volume_info(self, ctx: RxContext) -> Result:
        share = self._open_of(ctx).share if ctx.srv_open is not None else self._share_of(ctx)
        volume_info_class(ctx)

        async def statvfs() -> asyncssh.SFTPVFSAttrs:
            try:
                return await share.conn.client().statvfs(share.root)
            except asyncssh.SFTPOpUnsupported:
                raise _error(
                    S.STATUS_NOT_IMPLEMENTED, "the server has no statvfs@openssh.com"
                ) from None
            except asyncssh.SFTPError as exc:
                _fail(exc, "cannot query the volume of", "")

        vfs = self._run(share.conn, statvfs, self._deadline(ctx), "cannot query the volume")
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
        with self._lock:
            op = self._opens.pop(ctx.srv_open, None) if ctx.srv_open is not None else None
        if op is not None:
            self._enumerations.forget_srv_open(ctx.srv_open)
            self._watches.end(srv_open=ctx.srv_open)
        if op is None:
            raise _error(S.STATUS_INVALID_HANDLE, f"unknown srv_open {ctx.srv_open!r}")
        if op.file is None and not op.delete_pending:
            return Result()
        if op.conn.lost:
            if op.delete_pending:  # the delete did not happen: say so
                return Result(
                    status=S.STATUS_CONNECTION_DISCONNECTED,
                    message=f"cannot delete {_show(op.path)}: the connection was lost",
                )
            # every write was acknowledged by the server before it was answered: nothing is lost
            return Result()
        try:
            self._run(
                op.conn, lambda: self._aclose(op), self._deadline(ctx), f"close {_show(op.path)}"
            )
        except NtStatusError as exc:
            return Result(status=exc.status, message=exc.strerror or "")
        return Result()

    def _closer(self, op: _Open) -> Callable[[], Awaitable[None]]:
        return lambda: self._aclose(op)

    async def _aclose_handle(self, op: _Open) -> None:
        handle, op.file = op.file, None
        if handle is not None:
            try:
                await handle.close()
            except asyncssh.SFTPError as exc:
                _fail(exc, "cannot close", op.path)

    async def _aclose(self, op: _Open) -> None:
        await self._aclose_handle(op)
        if op.delete_pending:
            await self._adelete(op)

    async def _adelete(self, op: _Open) -> None:
        sftp = op.conn.client()
        try:
            if op.is_dir:
                await sftp.rmdir(op.remote)
            else:
                await sftp.remove(op.remote)
        except asyncssh.SFTPNoSuchFile:
            pass  # already gone: what was asked for
        except asyncssh.SFTPError as exc:
            if is_lost(exc):
                raise
            if op.is_dir and isinstance(exc, asyncssh.SFTPFailure):
                with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                    if not await self._ais_empty(sftp, op.remote):
                        raise _error(
                            S.STATUS_DIRECTORY_NOT_EMPTY, f"{_show(op.path)} is not empty"
                        ) from None
            _fail(exc, "cannot delete", op.path)

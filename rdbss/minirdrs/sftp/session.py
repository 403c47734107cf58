"""The SrvCalls of the SFTP mini-redirector: one SSH connection and one SFTP client per server,
and how a routine runs a coroutine on them.

asyncssh runs on one private event loop (:mod:`rdbss.minirdrs.sftp.loop`); a routine waits for
its coroutine with a deadline: the configured ``timeout``, shortened to the request's own
deadline. A set-up (SSH connect, key exchange, authentication, the SFTP session, the share
check) keeps the set-up's deadline instead (rdbss/minirdrs/common/setup.py).

A lost connection answers STATUS_CONNECTION_DISCONNECTED and marks the SrvCall's connection dead,
so every later call on it answers the same at once; a new MRxCreateSrvCall for the server (the
connection manager rebuilds a SrvCall whose VNetRoot could not be made) connects afresh.
Credentials are read when the SrvCall is created and never logged or put in a message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import stat
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from rdbss.minirdrs.common.setup import (
    AUTHENTICATE,
    NEGOTIATE,
    SHARE_CHECK,
    TCP_CONNECT,
    SetupDeadline,
)
from rdbss.minirdrs.sftp.attrs import mode_of
from rdbss.minirdrs.sftp.coalesce import CoalescingConnector
from rdbss.minirdrs.sftp.config import Credentials, SftpConfig, SftpServer, read_credentials
from rdbss.minirdrs.sftp.errors import connect_status, is_lost, sftp_reason, sftp_status
from rdbss.minirdrs.sftp.loop import LoopThread
from rdbss.minirdrs.sftp.pipeline import InFlight
from rdbss.model.pipelining import cpu_flags, preferred_ciphers
from rdbss.wire.rxcontext import RxContext
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.minirdr.sftp")

S = NtStatus
T = TypeVar("T")

#: The last phase of an SFTP set-up: the SFTP subsystem starting on the SSH connection.
SFTP_START = "SFTP session start"
#: Slack kept below a request's own deadline so our answer (even a timeout) reaches the core.
DEADLINE_MARGIN_S = 0.25
MIN_DEADLINE_S = 0.5
#: How long finalize/close wait for a polite SSH disconnect before dropping it.
CLOSE_WAIT_S = 2.0


def _lost(server: SftpServer, what: str = "") -> NtStatusError:
    prefix = f"{what}: the" if what else "the"
    return NtStatusError(
        S.STATUS_CONNECTION_DISCONNECTED,
        f"{prefix} connection to server {server.name!r} was lost",
    )


class _Watch(asyncssh.SSHClient):
    """Marks the connection dead the moment asyncssh sees it go, and follows a set-up's phases
    (TCP up: the key exchange; then authentication)."""

    def __init__(self, conn: Conn, setup: SetupDeadline) -> None:
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
class Conn:
    """One SrvCall: an SSH connection and its SFTP client."""

    server: SftpServer
    ssh: asyncssh.SSHClientConnection | None = None
    sftp: asyncssh.SFTPClient | None = None
    lost: bool = False
    #: share name (lower case) -> the share, its folder resolved: one object per share and
    #: connection, so the SrvOpen table can tell the opens of a share by identity
    shares: dict[str, Share] = field(default_factory=dict)
    #: the pipelined transfers not answered yet (used on the event loop only)
    transfers: InFlight = field(default_factory=InFlight)

    @property
    def alive(self) -> bool:
        return not self.lost and self.sftp is not None

    def client(self) -> asyncssh.SFTPClient:
        if self.sftp is None or self.lost:
            raise _lost(self.server)
        return self.sftp


@dataclass(eq=False)
class Share:
    """One NetRoot on a connection: a configured share and its folder on the server."""

    conn: Conn
    name: str  # as configured
    root: str  # resolved folder on the server


@functools.cache
def host_ciphers(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, ...] | None:
    """The ciphers to offer first on this host's CPU (``rdbss.model.pipelining``); None: the
    SSH library's own order (also where /proc/cpuinfo cannot be read)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    return preferred_ciphers(cpu_flags(text))


async def _aconnect(
    conn: Conn,
    creds: Credentials,
    setup: SetupDeadline,
    keepalive_interval: float,
    ciphers: tuple[str, ...] | None,
) -> None:
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
        "keepalive_interval": keepalive_interval,
        "keepalive_count_max": 3,
        "client_factory": lambda: _Watch(conn, setup),
        # the TCP connection is opened here, its writes of one loop turn sent as one
        "tunnel": CoalescingConnector(),
    }
    if creds.password is None:
        options["preferred_auth"] = "publickey"
    if ciphers:
        options["encryption_algs"] = list(ciphers)

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


async def _aresolve_root(conn: Conn, name: str, folder: str) -> str:
    sftp = conn.client()
    try:
        root = await sftp.realpath(folder)
        attrs = await sftp.stat(root)
    except asyncssh.SFTPError as exc:
        if is_lost(exc):
            raise
        raise NtStatusError(
            S.STATUS_BAD_NETWORK_NAME,
            f"the folder of share {name!r} cannot be reached: {sftp_reason(exc)}",
        ) from None
    if not stat.S_ISDIR(mode_of(attrs)):
        raise NtStatusError(
            S.STATUS_BAD_NETWORK_NAME, f"the folder of share {name!r} is not a folder"
        )
    return str(root)


class Sessions:
    """The connections of one mini-redirector, by server name, and the loop they run on."""

    def __init__(self, name: str, settings: SftpConfig) -> None:
        self.settings = settings
        self.timeout = settings.timeout
        self.loop = LoopThread(f"sftp-{name}")
        self._lock = threading.Lock()
        self._conns: dict[str, Conn] = {}

    def deadline(self, ctx: RxContext | None) -> float:
        """The configured timeout, shortened to what is left of the request's own deadline."""
        if ctx is None or not ctx.timeout_ms:
            return self.timeout
        own = ctx.timeout_ms / 1000.0 - DEADLINE_MARGIN_S
        return max(MIN_DEADLINE_S, min(self.timeout, own))

    def run(self, conn: Conn, factory: Callable[[], Awaitable[T]], timeout: float, what: str) -> T:
        """Run a coroutine for ``conn``; map what escaped it (lost connection, timeout, an
        unmapped SFTP failure) to an NTSTATUS."""
        if conn.lost:
            raise _lost(conn.server)
        try:
            return self.loop.run(factory, timeout)
        except Exception as exc:
            raise self.status_of(conn, exc, timeout, what) from None

    @staticmethod
    def status_of(conn: Conn, exc: Exception, timeout: float, what: str) -> Exception:
        """What escaped a coroutine for ``conn`` (lost connection, timeout, an unmapped SFTP
        failure) as an NtStatusError; an unexpected exception as it is."""
        if isinstance(exc, NtStatusError):
            return exc
        if isinstance(exc, TimeoutError):
            return NtStatusError(
                S.STATUS_IO_TIMEOUT,
                f"{what}: server {conn.server.name!r} did not answer in {timeout:.1f} s",
            )
        if isinstance(exc, concurrent.futures.CancelledError):
            return NtStatusError(S.STATUS_CANCELLED, f"{what}: cancelled (shutting down)")
        if is_lost(exc):
            conn.lost = True
            log.warning("connection to %s lost: %s", conn.server.name, type(exc).__name__)
            return _lost(conn.server, what)
        if isinstance(exc, asyncssh.SFTPError):
            return NtStatusError(sftp_status(exc), f"{what}: {sftp_reason(exc)}")
        return exc

    def lost(self, srv_call: str | None) -> bool:
        """Whether the connection to ``srv_call`` is there and seen lost (nothing can be sent
        on it until the core builds it again)."""
        with self._lock:
            conn = self._conns.get(srv_call.lower()) if srv_call else None
        return conn is not None and conn.lost

    def conn_of(self, srv_call: str | None) -> Conn:
        if self.settings.server(srv_call) is None:
            raise NtStatusError(
                S.STATUS_BAD_NETWORK_PATH, f"server {srv_call!r} is not served here"
            )
        assert srv_call is not None
        with self._lock:
            conn = self._conns.get(srv_call.lower())
        if conn is None:
            raise NtStatusError(
                S.STATUS_CONNECTION_DISCONNECTED, f"no connection to server {srv_call!r}"
            )
        return conn

    @staticmethod
    def _configured(conn: Conn, ctx: RxContext) -> tuple[str, str]:
        configured = conn.server.share(ctx.net_root)
        if configured is None:
            raise NtStatusError(S.STATUS_BAD_NETWORK_NAME, f"no share named {ctx.net_root!r}")
        return configured

    def share_known(self, ctx: RxContext) -> Share | None:
        """The share of ``ctx`` when its connection is up and the share resolved already;
        None otherwise (``share_of`` would connect or resolve it). Never blocks."""
        try:
            conn = self.conn_of(ctx.srv_call)
            name, _ = self._configured(conn, ctx)
        except NtStatusError:
            return None
        return None if conn.lost or not self.loop.running else conn.shares.get(name.lower())

    def share_of(self, ctx: RxContext) -> Share:
        conn = self.conn_of(ctx.srv_call)
        name, folder = self._configured(conn, ctx)
        share = conn.shares.get(name.lower())
        if share is None:  # not connected through MRxCreateVNetRoot on this connection yet
            root = self.run(
                conn, lambda: _aresolve_root(conn, name, folder), self.deadline(ctx), "share"
            )
            share = self._keep(conn, name, root)
        return share

    @staticmethod
    def _keep(conn: Conn, name: str, root: str) -> Share:
        share = conn.shares.setdefault(name.lower(), Share(conn, name, root))
        share.root = root
        return share

    # --- the connection routines ------------------------------------------------------------
    def connect(self, ctx: RxContext) -> None:
        """MRxCreateSrvCall: connect, authenticate and start the SFTP session, unless the
        server's connection is alive already."""
        server = self.settings.server(ctx.srv_call)
        if server is None:
            raise NtStatusError(
                S.STATUS_BAD_NETWORK_PATH, f"server {ctx.srv_call!r} is not served here"
            )
        key = server.name.lower()
        with self._lock:
            existing = self._conns.get(key)
        if existing is not None and existing.alive:
            return
        creds = read_credentials(server)
        conn = Conn(server)
        setup = SetupDeadline.of(ctx, server.name)
        keepalive = self.settings.keepalive_interval
        ciphers = self.settings.ciphers or host_ciphers()
        try:
            # the whole set-up (TCP, key exchange, authentication, the SFTP session) runs under
            # the set-up's deadline; a cancelled asyncssh connect closes what it had opened
            self.loop.run(
                lambda: _aconnect(conn, creds, setup, keepalive, ciphers), setup.remaining() + 0.1
            )
            setup.check()
        except Exception as exc:
            self.disconnect(conn)  # whatever was built, also a set-up that finished late
            if isinstance(exc, TimeoutError) or setup.passed:
                raise setup.expired() from None
            if isinstance(exc, NtStatusError):
                raise
            status, message = connect_status(exc)
            log.warning("connect to %s failed: %s (%s)", server.name, message, type(exc).__name__)
            raise NtStatusError(status, f"server {server.name!r}: {message}") from None
        finally:
            creds.password = None
            creds.keys.clear()
        with self._lock:
            old = self._conns.get(key)
            self._conns[key] = conn
        if old is not None:
            self.disconnect(old)
        log.info("connected to %s", server.name)

    def check_share(self, ctx: RxContext) -> None:
        """MRxCreateVNetRoot: the share's folder resolved (realpath) and checked on the server,
        under the set-up's deadline."""
        conn = self.conn_of(ctx.srv_call)
        name, folder = self._configured(conn, ctx)
        setup = SetupDeadline.of(ctx, conn.server.name, SHARE_CHECK)
        try:
            resolve = lambda: _aresolve_root(conn, name, folder)  # noqa: E731
            root = self.run(conn, resolve, setup.enter(SHARE_CHECK), "share")
            setup.check()
        except NtStatusError as exc:
            if exc.status == S.STATUS_IO_TIMEOUT:
                raise setup.expired() from None
            raise
        self._keep(conn, name, root)

    def finalize(self, srv_call: object) -> None:
        """MRxFinalizeSrvCall: drop the server's connection."""
        key = srv_call.lower() if isinstance(srv_call, str) else ""
        with self._lock:
            conn = self._conns.pop(key, None)
        if conn is not None:
            self.disconnect(conn)

    def disconnect(self, conn: Conn) -> None:
        """Close a connection politely if it is alive; never raises."""
        ssh = conn.ssh
        conn.lost = True
        conn.sftp = None
        if ssh is None or not self.loop.running:
            return

        async def close() -> None:
            ssh.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ssh.wait_closed(), CLOSE_WAIT_S)

        with contextlib.suppress(Exception):
            self.loop.run(close, CLOSE_WAIT_S + 0.5)

    def close(self) -> None:
        """Disconnect every connection, then stop the event loop."""
        with self._lock:
            conns = list(self._conns.values())
            self._conns.clear()
        for conn in conns:
            self.disconnect(conn)
        self.loop.stop()

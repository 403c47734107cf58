"""The transport half of the SMB mini-redirector: one ``SmbLink`` per SrvCall (an SMB2/3
connection, its authenticated session and its tree connects), built on smbprotocol's low-level
API, plus the raw SMB2 information structures it parses itself (so times keep their 100 ns
precision).

Deadlines: smbprotocol waits for most answers without a timeout, so every exchange runs under a
per-link watchdog. When ``timeout`` seconds pass without the answer, the watchdog shuts the
socket down: the waiting call fails at once, the request answers STATUS_IO_TIMEOUT and the link
is dead from then on (as a Windows client drops a connection whose server stopped answering).

The set-up (TCP connect, negotiate, session setup, tree connect) runs under the set-up's own
deadline instead (rdbss/minirdrs/setup.py), with the same watchdog.

Failures: an NTSTATUS from the server passes straight through. A lost connection
(SMBConnectionClosed, ConnectionError, the receiver thread's death) answers
STATUS_CONNECTION_DISCONNECTED and marks the link dead, so later calls answer the same at once;
so does a lost session (STATUS_USER_SESSION_DELETED, STATUS_NETWORK_SESSION_EXPIRED, whose
answers are taken without a signature check, see ``_Connection``) or a deleted share
(STATUS_NETWORK_NAME_DELETED), with that status first.
Credentials live only in the smbprotocol Session object: they are never logged and never part of
a message.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from smbprotocol.connection import Connection
from smbprotocol.exceptions import (
    SMBAuthenticationError,
    SMBConnectionClosed,
    SMBException,
    SMBResponseException,
)
from smbprotocol.open import (
    SMB2QueryDirectoryRequest,
    SMB2QueryDirectoryResponse,
    SMB2QueryInfoRequest,
    SMB2QueryInfoResponse,
    SMB2SetInfoRequest,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

from rdbss.minirdrs.common.passwords import read_password
from rdbss.minirdrs.common.setup import (
    AUTHENTICATE,
    NEGOTIATE,
    TCP_CONNECT,
    TREE_CONNECT,
    SetupDeadline,
)
from rdbss.wire.status import NtStatus, NtStatusError, network_status_from_errno, status_name

log = logging.getLogger("rdbss.smb")
S = NtStatus
T = TypeVar("T")

# smbprotocol and spnego log every request at INFO and dump structures at DEBUG: keep them quiet
# whatever the daemon's level (authentication messages must never reach a log).
for _noisy in ("smbprotocol", "smbclient", "spnego"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

FILETIME_EPOCH = 116_444_736_000_000_000  # 1970-01-01 as a FILETIME (100 ns since 1601)
MAX_PAYLOAD = 65_536  # one credit's worth
INFO_BUFFER = 65_536
RELATED_FILE_ID = b"\xff" * 16  # "the file of the previous CREATE in this compound"
SMB2_0_INFO_FILE = 1
SMB2_0_INFO_FILESYSTEM = 2

#: Server statuses that mean the session (not just this request) is gone.
_SESSION_LOST = frozenset({S.STATUS_USER_SESSION_DELETED, S.STATUS_NETWORK_SESSION_EXPIRED})
#: ... and the connection's trees with it (the share was closed under it).
_LINK_LOST = _SESSION_LOST | {S.STATUS_NETWORK_NAME_DELETED}
_LOST_ERRNOS = frozenset(
    {
        errno.EPIPE,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ENOTCONN,
        errno.EBADF,
        errno.ESHUTDOWN,
    }
)


#: SMB2/3 dialects by the name a configuration gives them (MS-SMB2 2.2.3).
DIALECTS: dict[str, int] = {
    "2.0.2": 0x0202,
    "2.1": 0x0210,
    "3.0": 0x0300,
    "3.0.2": 0x0302,
    "3.1.1": 0x0311,
}
#: smbprotocol's words for a negotiate that failed validation: the secure-negotiate check of
#: SMB 3.0/3.0.2 (FSCTL_VALIDATE_NEGOTIATE_INFO, MS-SMB2 3.3.5.15.12) found the answers changed,
#: or the session needs encryption the negotiated dialect cannot give.
_DOWNGRADE_TEXTS = (
    "secure negotiate failed",
    "encryption is required but the connection does not support it",
)


def _downgrade(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, SMBException) and any(t in text for t in _DOWNGRADE_TEXTS)


class _Connection(Connection):  # type: ignore[misc]
    """smbprotocol's Connection with two differences. The negotiate waits under the set-up's
    deadline only. And an answer saying the session is gone
    (STATUS_USER_SESSION_DELETED, STATUS_NETWORK_SESSION_EXPIRED), and every later answer on that
    session (the rest of its compound), is taken without checking its signature. The server has
    dropped the session, and with it the key a signature needs (Samba signs such answers with a
    key the client cannot match), so checking them killed smbprotocol's receiver and the status
    was lost. Such an answer only makes the client drop the session and build a new one: a
    forged one can do no more than a forged TCP reset."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions_gone: set[int] = set()  # written by the receiver thread only

    def _send_smb2_negotiate(self, dialect: Any, timeout: Any, *args: Any) -> Any:
        # no timeout of its own: the set-up's watchdog ends the wait at the deadline, where
        # smbprotocol would round it down to whole seconds (``timeout`` is the TCP connect's)
        return super()._send_smb2_negotiate(dialect, None, *args)

    def verify_signature(self, header: Any, session_id: int, force: bool = False) -> None:
        if header["status"].get_value() in _SESSION_LOST:
            self.sessions_gone.add(session_id)
        if session_id in self.sessions_gone:
            return
        super().verify_signature(header, session_id, force)


def filetime_to_ns(value: int) -> int:
    """POSIX nanoseconds of a FILETIME; 0 (unknown) stays 0."""
    return (value - FILETIME_EPOCH) * 100 if value > 0 else 0


def ns_to_filetime(ns: int) -> int:
    """A FILETIME for POSIX nanoseconds; 0 or below means "leave unchanged" (FILETIME 0)."""
    return ns // 100 + FILETIME_EPOCH if ns > 0 else 0


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


_PASSWORD_SOURCES = ("password_file", "password_env", "password")


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and where its password is read from (when a session is set up, never at
    start-up, and never kept)."""

    username: str
    password_file: str | None = None
    password_env: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, where: str, table: Mapping[str, Any]) -> Credentials:
        username = table.get("username")
        if not isinstance(username, str) or not username:
            raise ValueError(f"{where}: 'username' must be a non-empty string")
        sources = [k for k in _PASSWORD_SOURCES if k in table]
        if len(sources) > 1:
            raise ValueError(f"{where}: give only one of {', '.join(sources)}")
        for key in sources:
            if not isinstance(table[key], str):
                raise ValueError(f"{where}: {key!r} must be a string")
        return cls(
            username,
            table.get("password_file"),
            table.get("password_env"),
            table.get("password"),
        )

    def same_user(self, username: str) -> bool:
        """User names compare without case, as Windows compares them."""
        return self.username.lower() == username.lower()

    def read_password(self, where: str) -> str:
        """The password from its source (rdbss/minirdrs/passwords.py); "" when none is set."""
        secret = read_password(
            where,
            password_file=self.password_file,
            password_env=self.password_env,
            password=self.password,
        )
        return secret or ""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """One ``[minirdr.servers.<name>]`` table: the server, its default credentials, and the
    shares that are reached as another user (``[minirdr.servers.<name>.shares.<share>]``)."""

    name: str
    host: str
    port: int
    username: str
    password_file: str | None = None
    password_env: str | None = None
    password: str | None = field(default=None, repr=False)
    encrypt: bool = False
    min_dialect: int = 0  # the lowest SMB dialect accepted (0: any the server offers)
    shares: Mapping[str, Credentials] = field(default_factory=dict)  # lower-case share name

    @classmethod
    def parse(cls, name: str, table: object) -> ServerConfig:
        where = f"smb mini-redirector: server {name!r}"
        if not isinstance(table, Mapping):
            raise ValueError(f"{where} must be a table")
        known = {"host", "port", "username", "encrypt", "min_dialect", "shares"}
        unknown = sorted(set(table) - known - set(_PASSWORD_SOURCES))
        if unknown:
            raise ValueError(f"{where}: unknown option(s) {', '.join(unknown)}")
        host = table.get("host")
        if not isinstance(host, str) or not host:
            raise ValueError(f"{where}: 'host' must be a non-empty string")
        port = table.get("port", 445)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"{where}: 'port' must be a TCP port number")
        credentials = Credentials.parse(where, table)
        encrypt = table.get("encrypt", False)
        if not isinstance(encrypt, bool):
            raise ValueError(f"{where}: 'encrypt' must be true or false")
        min_dialect = table.get("min_dialect", "")
        if min_dialect not in DIALECTS and min_dialect != "":
            raise ValueError(
                f"{where}: 'min_dialect' must be one of {', '.join(map(repr, DIALECTS))}"
            )
        return cls(
            name=name,
            host=host,
            port=port,
            username=credentials.username,
            password_file=credentials.password_file,
            password_env=credentials.password_env,
            password=credentials.password,
            encrypt=encrypt,
            min_dialect=DIALECTS.get(min_dialect, 0),
            shares=cls._parse_shares(where, table.get("shares", {})),
        )

    @staticmethod
    def _parse_shares(where: str, shares: object) -> dict[str, Credentials]:
        if not isinstance(shares, Mapping):
            raise ValueError(f"{where}: 'shares' must be a table of share tables")
        parsed: dict[str, Credentials] = {}
        for share, table in shares.items():
            at = f"{where}: share {share!r}"
            if not isinstance(table, Mapping):
                raise ValueError(f"{at} must be a table")
            unknown = sorted(set(table) - {"username", *_PASSWORD_SOURCES})
            if unknown:
                raise ValueError(f"{at}: unknown option(s) {', '.join(unknown)}")
            parsed[str(share).lower()] = Credentials.parse(at, table)
        return parsed

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def credentials(self) -> Credentials:
        """The server's own credentials (every share not listed under ``shares``)."""
        return Credentials(self.username, self.password_file, self.password_env, self.password)

    def credentials_for(self, share: str) -> Credentials:
        return self.shares.get(share.lower()) or self.credentials

    def read_password(self) -> str:
        return self.credentials.read_password(f"server {self.name!r}")


# --------------------------------------------------------------------------------------------
# Watchdog
# --------------------------------------------------------------------------------------------


class _Watchdog:
    """Calls ``on_expire`` (from its own thread) when an armed deadline passes."""

    def __init__(self, name: str, on_expire: Callable[[], None]) -> None:
        self._on_expire = on_expire
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if self._deadline is None:
                        self._cond.wait()
                        continue
                    remaining = self._deadline - time.monotonic()
                    if remaining <= 0:
                        self._deadline = None
                        break
                    self._cond.wait(remaining)
                if self._stopped:
                    return
            try:
                self._on_expire()
            except Exception:  # the watchdog must survive whatever closing a socket does
                log.exception("watchdog action failed")

    @contextlib.contextmanager
    def guard(self, seconds: float) -> Iterator[None]:
        with self._cond:
            self._deadline = time.monotonic() + seconds
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._deadline = None

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()


# --------------------------------------------------------------------------------------------
# The link
# --------------------------------------------------------------------------------------------


class SmbLink:
    """An SMB connection + session to one configured server, and its tree connects.

    Used by one thread at a time (the SrvCall's worker); ``close`` may come from another."""

    def __init__(self, server: ServerConfig, timeout: float) -> None:
        self.server = server
        self.timeout = timeout
        self.username = server.username  # the session's user (a share may name another)
        self.connection: Any = None
        self.session: Any = None
        self.trees: dict[str, Any] = {}  # share name (lower case) -> TreeConnect
        self.dead: NtStatusError | None = None
        self._timed_out = False
        self._setup: SetupDeadline | None = None  # while connect() runs
        self._watchdog = _Watchdog(f"smb-watchdog-{server.name}", self._expired)
        self.busy = threading.Lock()  # one call at a time (the worker, or the keepalive)
        self.last_used = time.monotonic()

    def __repr__(self) -> str:
        return f"SmbLink({self.server.name!r}, {self.server.address})"

    # ---------------------------------------------------------------- life cycle
    def connect(
        self, password: str, setup: SetupDeadline, credentials: Credentials | None = None
    ) -> None:
        """TCP connect, negotiate and session setup, all within the set-up's deadline: the
        watchdog shuts the socket down when it passes (the TCP connect, before there is a
        socket to shut, has the time left as its own timeout). A set-up that ends late is
        closed and answers STATUS_IO_TIMEOUT."""
        server = self.server
        if credentials is not None:
            self.username = credentials.username
        conn = _Connection(uuid.uuid4(), server.host, server.port, require_signing=True)
        self.connection = conn
        self._setup = setup
        try:
            with self._watchdog.guard(setup.enter(TCP_CONNECT)):
                conn.connect(timeout=setup.enter(TCP_CONNECT))
                setup.enter(NEGOTIATE)
                self._check_dialect(conn)
                setup.enter(AUTHENTICATE)
                session = Session(conn, self.username, password, require_encryption=server.encrypt)
                session.connect()
            setup.check()
        except BaseException as exc:
            error = self._connect_error(exc)
            self._teardown()
            self.dead = error
            raise error from None
        finally:
            self._setup = None
        self.session = session
        log.info(
            "connected server=%s address=%s dialect=0x%04x encrypt=%s",
            server.name,
            server.address,
            conn.dialect,
            bool(session.encrypt_data),
        )

    def _check_dialect(self, conn: Any) -> None:
        """STATUS_DOWNGRADE_DETECTED when the server chose a dialect below ``min_dialect``."""
        wanted = self.server.min_dialect
        if wanted and conn.dialect < wanted:
            names = {v: k for k, v in DIALECTS.items()}
            raise NtStatusError(
                S.STATUS_DOWNGRADE_DETECTED,
                f"server {self.server.name!r} negotiated SMB "
                f"{names.get(conn.dialect, hex(conn.dialect))}, below min_dialect "
                f"{names.get(wanted, hex(wanted))}: refused",
            )

    def _setup_phase(self, setup: SetupDeadline) -> str:
        """The phase a set-up is in; inside smbprotocol's connect, TCP is up once the transport
        says so (the negotiate is then what is waited for)."""
        if setup.phase == TCP_CONNECT and getattr(self.connection.transport, "connected", False):
            return NEGOTIATE
        return setup.phase

    def _connect_error(self, exc: BaseException) -> NtStatusError:
        where = f"cannot connect to server {self.server.name!r} ({self.server.address})"
        setup = self._setup
        if isinstance(exc, NtStatusError):
            return exc
        if setup is not None and (self._timed_out or setup.passed):
            return setup.expired(self._setup_phase(setup))
        if self._timed_out:
            return NtStatusError(S.STATUS_IO_TIMEOUT, f"{where}: no answer in {self.timeout} s")
        if _downgrade(exc):
            return NtStatusError(S.STATUS_DOWNGRADE_DETECTED, f"{where}: {exc}")
        if isinstance(exc, SMBResponseException):
            return NtStatusError(exc.status, f"{where}: {status_name(exc.status)}")
        if isinstance(exc, SMBAuthenticationError):
            return NtStatusError(S.STATUS_LOGON_FAILURE, f"{where}: authentication failed")
        cause = exc.__cause__ if isinstance(exc, ValueError) else exc
        if isinstance(cause, socket.gaierror):
            return NtStatusError(S.STATUS_BAD_NETWORK_PATH, f"{where}: unknown host name")
        if isinstance(cause, TimeoutError | socket.timeout):
            if setup is not None:
                return setup.expired(TCP_CONNECT)
            return NtStatusError(S.STATUS_IO_TIMEOUT, f"{where}: connect timed out")
        if isinstance(cause, OSError) and cause.errno is not None:
            status = network_status_from_errno(cause.errno)
            return NtStatusError(status, f"{where}: {os.strerror(cause.errno)}")
        if isinstance(exc, SMBConnectionClosed | ConnectionError | EOFError):
            return NtStatusError(S.STATUS_CONNECTION_DISCONNECTED, f"{where}: connection closed")
        if isinstance(exc, SMBException) and "timeout" in str(exc).lower():
            return NtStatusError(S.STATUS_IO_TIMEOUT, f"{where}: no answer in {self.timeout} s")
        return NtStatusError(
            S.STATUS_UNEXPECTED_NETWORK_ERROR, f"{where}: {type(exc).__name__}: {exc}"
        )

    def close(self) -> None:
        """Log off and disconnect (briefly, quietly), then release the socket and threads."""
        conn = self.connection
        if conn is not None and self.dead is None and conn.transport is not None:
            self.dead = NtStatusError(S.STATUS_CONNECTION_DISCONNECTED, "disconnected")
            with contextlib.suppress(Exception), self._watchdog.guard(min(self.timeout, 5.0)):
                conn.disconnect(True)
        self._teardown()
        if self.dead is None:
            self.dead = NtStatusError(S.STATUS_CONNECTION_DISCONNECTED, "disconnected")

    def _teardown(self) -> None:
        conn = self.connection
        if conn is not None and conn.transport is not None:
            with contextlib.suppress(Exception):
                conn.disconnect(False)
        self.trees.clear()
        self._watchdog.stop()

    def _expired(self) -> None:
        """Watchdog: the server did not answer in time. Unblock the waiting call by shutting the
        socket down (without the transport's locks: a blocked send holds them)."""
        self._timed_out = True
        setup = self._setup
        if setup is not None:  # the phase it was in, before the shut socket hides it
            setup.phase = self._setup_phase(setup)
        self.dead = NtStatusError(
            S.STATUS_IO_TIMEOUT,
            f"server {self.server.name!r} did not answer in {self.timeout} s; connection dropped",
        )
        log.warning(
            "timeout server=%s after %.1f s: dropping the connection",
            self.server.name,
            self.timeout,
        )
        transport = getattr(self.connection, "transport", None)
        sock = getattr(transport, "_sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _lose(self, status: int, message: str) -> NtStatusError:
        error = NtStatusError(status, message)
        if self.dead is None:
            self.dead = NtStatusError(
                status, f"connection to server {self.server.name!r} lost: {message}"
            )
            log.warning("connection lost server=%s: %s", self.server.name, message)
        self._teardown()
        return error

    def check_alive(self) -> None:
        """Refuse at once on a dead link: whatever killed it (a lost connection, a timeout, a
        finalize), the connection is gone now, which the core hears as a lost connection."""
        if self.dead is not None:
            raise NtStatusError(S.STATUS_CONNECTION_DISCONNECTED, self.dead.strerror or "")

    def check_connection(self, what: str) -> None:
        """For a thread waiting on a request the server keeps pending: when smbprotocol's
        receiver has died (it wakes every waiter as it goes), the link is lost."""
        self.check_alive()
        conn = self.connection
        if (
            conn is None
            or getattr(conn, "_t_exc", None) is not None
            or not getattr(conn.transport, "connected", False)
        ):
            raise self._lose(S.STATUS_CONNECTION_DISCONNECTED, f"{what}: connection lost")

    # ---------------------------------------------------------------- requests
    def call(self, what: str, fn: Callable[[], T], *, timeout: float | None = None) -> T:
        """Run ``fn`` (smbprotocol calls) under the deadline; every failure becomes an
        NtStatusError whose message starts with ``what``."""
        self.check_alive()
        with self.busy, self._watchdog.guard(timeout if timeout is not None else self.timeout):
            try:
                return self.mapped(what, fn)
            finally:
                self.last_used = time.monotonic()

    def keepalive(self, idle_s: float) -> None:
        """SMB2 ECHO when the link has been idle for ``idle_s`` and nobody is using it: a server
        that does not answer (or a dropped connection) marks the link dead now, so the next
        request answers at once instead of waiting out its own deadline."""
        if self.dead is not None or time.monotonic() - self.last_used < idle_s:
            return
        if not self.busy.acquire(blocking=False):
            return  # in use: it is alive enough
        try:
            with self._watchdog.guard(self.timeout):
                self.mapped("keepalive", lambda: self.connection.echo(timeout=self.timeout))
        except NtStatusError as exc:
            log.warning("keepalive to %s failed: %s", self.server.name, exc.strerror)
        finally:
            self.last_used = time.monotonic()
            self.busy.release()

    def mapped(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` and turn its failure into an NtStatusError, without arming the watchdog
        (which guards one call at a time): for work that does not wait on the network, or
        waits with a deadline of its own, on a thread other than the SrvCall's worker."""
        try:
            return fn()
        except NtStatusError:
            raise
        except SMBResponseException as exc:
            status = int(exc.status)
            if status in _LINK_LOST:
                raise self._lose(status, f"{what}: {status_name(status)}") from None
            raise NtStatusError(status, f"{what}: {status_name(status)}") from None
        except Exception as exc:
            raise self._failure(what, exc) from None

    def _failure(self, what: str, exc: Exception) -> NtStatusError:
        if self._timed_out:
            return self._lose(S.STATUS_IO_TIMEOUT, f"{what}: no answer in {self.timeout} s")
        conn = self.connection
        broken = (
            conn is None
            or getattr(conn, "_t_exc", None) is not None
            or not getattr(conn.transport, "connected", False)
        )
        lost = isinstance(exc, SMBConnectionClosed | ConnectionError | EOFError) or (
            isinstance(exc, OSError) and exc.errno in _LOST_ERRNOS
        )
        if _downgrade(exc):  # the negotiate was tampered with: the connection is not trusted
            return self._lose(S.STATUS_DOWNGRADE_DETECTED, f"{what}: {exc}")
        if lost or broken:
            return self._lose(S.STATUS_CONNECTION_DISCONNECTED, f"{what}: connection lost")
        if isinstance(exc, SMBException) and "timeout" in str(exc).lower():
            return self._lose(S.STATUS_IO_TIMEOUT, f"{what}: no answer in {self.timeout} s")
        log.warning(
            "smb request failed server=%s: %s: %s", self.server.name, type(exc).__name__, exc
        )
        return NtStatusError(
            S.STATUS_UNEXPECTED_NETWORK_ERROR, f"{what}: {type(exc).__name__}: {exc}"
        )

    def tree(self, share: str, setup: SetupDeadline | None = None) -> Any:
        """The tree connect of ``share`` (made now if need be); with ``setup``, within that
        set-up's deadline (a tree connect that ends late is disconnected again)."""
        key = share.lower()
        tree = self.trees.get(key)
        if tree is not None:
            return tree
        tree = TreeConnect(self.session, rf"\\{self.server.host}\{share}")
        what = f"cannot connect to share {share!r}"
        if setup is None:
            self.call(what, tree.connect)
        else:
            try:
                self.call(what, tree.connect, timeout=setup.enter(TREE_CONNECT))
                setup.check()
            except NtStatusError as exc:
                if exc.status != S.STATUS_IO_TIMEOUT:
                    raise
                if tree.tree_connect_id and self.dead is None:  # made, but too late
                    with contextlib.suppress(NtStatusError):
                        self.call(f"cannot disconnect share {share!r}", tree.disconnect)
                raise setup.expired(TREE_CONNECT) from None
        self.trees[key] = tree
        return tree

    def disconnect_tree(self, share: str) -> None:
        tree = self.trees.pop(share.lower(), None)
        if tree is None or self.dead is not None:
            return
        with contextlib.suppress(NtStatusError):
            self.call(f"cannot disconnect share {share!r}", tree.disconnect)

    def exchange(
        self, tree: Any, messages: list[Any], *, credit_request: int | None = None
    ) -> list[Any]:
        """Send one message (or an unrelated compound) and receive every answer: a response
        header, or the SMBResponseException of a failed one. Call it inside ``call``."""
        conn = self.connection
        sid = self.session.session_id
        tid = tree.tree_connect_id
        if len(messages) == 1:
            requests = [conn.send(messages[0], sid=sid, tid=tid, credit_request=credit_request)]
        else:
            requests = conn.send_compound(messages, sid, tid, related=False)
        answers: list[Any] = []
        for request in requests:
            try:
                answers.append(conn.receive(request))
            except SMBResponseException as exc:
                answers.append(exc)
        return answers

    def one(self, tree: Any, message: Any, *, credit_request: int | None = None) -> Any:
        """Send one message and return its response header (raising its failure)."""
        (answer,) = self.exchange(tree, [message], credit_request=credit_request)
        if isinstance(answer, SMBResponseException):
            raise answer
        return answer

    def credits(self, size: int, max_size: int) -> tuple[int, int]:
        """(chunk size, credit request) for a read or write of ``size`` more bytes: as much as
        the negotiated maximum and the available credits allow, asking the server for enough
        credits that the next chunk can be a full one."""
        window = self.connection.sequence_window
        available = max(1, window["high"] - window["low"])
        chunk = max(1, min(size, max_size, available * MAX_PAYLOAD))
        charge = (chunk - 1) // MAX_PAYLOAD + 1
        full = (max(1, max_size) - 1) // MAX_PAYLOAD + 1
        return chunk, charge + max(0, full - (available - charge))


# --------------------------------------------------------------------------------------------
# Raw SMB2 structures
# --------------------------------------------------------------------------------------------


def query_info_request(file_id: bytes, info_type: int, info_class: int) -> Any:
    request = SMB2QueryInfoRequest()
    request["info_type"] = info_type
    request["file_info_class"] = info_class
    request["output_buffer_length"] = INFO_BUFFER
    request["file_id"] = file_id
    return request


def query_info_buffer(header: Any) -> bytes:
    response = SMB2QueryInfoResponse()
    response.unpack(header["data"].get_value())
    data: bytes = response["buffer"].get_value()
    return data


def set_info_request(file_id: bytes, info_class: int, buffer: bytes) -> Any:
    request = SMB2SetInfoRequest()
    request["info_type"] = SMB2_0_INFO_FILE
    request["file_info_class"] = info_class
    request["file_id"] = file_id
    request["buffer"] = buffer
    return request


def query_directory_request(file_id: bytes, pattern: str, info_class: int, flags: int) -> Any:
    request = SMB2QueryDirectoryRequest()
    request["file_information_class"] = info_class
    request["flags"] = flags
    request["file_id"] = file_id
    request["output_buffer_length"] = INFO_BUFFER
    request["buffer"] = pattern.encode("utf-16-le")
    return request


def query_directory_buffer(header: Any) -> bytes:
    response = SMB2QueryDirectoryResponse()
    response.unpack(header["data"].get_value())
    data: bytes = response["buffer"].get_value()
    return data


_ALL_INFO = struct.Struct("<qqqqIIqqIBBHqIIqIII")  # FileAllInformation up to FileNameLength
_DIR_ENTRY = struct.Struct("<IIqqqqqqIIIIq")  # FileIdFullDirectoryInformation before FileName


@dataclass(slots=True)
class RawInfo:
    """What FileAllInformation / a directory entry says about a file."""

    creation_time: int  # POSIX ns
    last_access_time: int
    last_write_time: int
    change_time: int
    attributes: int
    allocation_size: int
    size: int
    nlink: int | None
    delete_pending: bool
    directory: bool
    file_id: int


def parse_all_information(data: bytes) -> RawInfo:
    if len(data) < _ALL_INFO.size:
        raise NtStatusError(S.STATUS_INVALID_NETWORK_RESPONSE, "short FileAllInformation")
    (ctime, atime, mtime, chtime, attrs, _r1, alloc, eof, nlink, delete, directory, _r2,
     index, _ea, _access, _pos, _mode, _align, _name_len) = _ALL_INFO.unpack_from(data)  # fmt: skip
    return RawInfo(
        filetime_to_ns(ctime),
        filetime_to_ns(atime),
        filetime_to_ns(mtime),
        filetime_to_ns(chtime),
        attrs,
        alloc,
        eof,
        nlink,
        bool(delete),
        bool(directory),
        index,
    )


def parse_end_of_file(data: bytes) -> int:
    """EndOfFile from FileStandardInformation."""
    if len(data) < 16:
        raise NtStatusError(S.STATUS_INVALID_NETWORK_RESPONSE, "short FileStandardInformation")
    eof: int = struct.unpack_from("<q", data, 8)[0]
    return eof


def parse_directory_entries(data: bytes) -> list[tuple[str, RawInfo]]:
    """(name, info) of each FileIdFullDirectoryInformation entry in a QUERY_DIRECTORY answer."""
    entries: list[tuple[str, RawInfo]] = []
    offset = 0
    while offset + _DIR_ENTRY.size <= len(data):
        (nxt, _index, ctime, atime, mtime, chtime, eof, alloc, attrs, name_len, _ea, _r,
         file_id) = _DIR_ENTRY.unpack_from(data, offset)  # fmt: skip
        start = offset + _DIR_ENTRY.size
        name = data[start : start + name_len].decode("utf-16-le", errors="surrogatepass")
        info = RawInfo(
            filetime_to_ns(ctime),
            filetime_to_ns(atime),
            filetime_to_ns(mtime),
            filetime_to_ns(chtime),
            attrs,
            alloc,
            eof,
            None,
            False,
            bool(attrs & 0x10),
            file_id,
        )
        entries.append((name, info))
        if nxt == 0:
            break
        offset += nxt
    return entries


def parse_volume(answers: dict[int, bytes]) -> dict[str, Any]:
    """The volume map from FileFs{Volume,Device,Attribute,FullSize}Information buffers."""
    result: dict[str, Any] = {}
    data = answers.get(7)
    if data is not None and len(data) >= 32:
        total, caller, actual, sectors, sector_bytes = struct.unpack_from("<qqqII", data)
        unit = sectors * sector_bytes
        result.update(
            total_bytes=total * unit,
            free_bytes=actual * unit,
            avail_bytes=caller * unit,
            bytes_per_sector=sector_bytes,
            sectors_per_allocation_unit=sectors,
        )
    data = answers.get(1)
    if data is not None and len(data) >= 18:
        _created, serial, label_len = struct.unpack_from("<qII", data)
        result["serial"] = serial
        result["label"] = data[18 : 18 + label_len].decode("utf-16-le", errors="replace")
    data = answers.get(5)
    if data is not None and len(data) >= 12:
        attrs, max_name, name_len = struct.unpack_from("<IiI", data)
        result["fs_attributes"] = attrs
        result["max_name_length"] = max_name
        result["fs_name"] = data[12 : 12 + name_len].decode("utf-16-le", errors="replace")
    data = answers.get(4)
    if data is not None and len(data) >= 8:
        _device_type, characteristics = struct.unpack_from("<II", data)
        result["device_characteristics"] = characteristics
    return result

"""The transport half of the SMB mini-redirector: one ``SmbLink`` per SrvCall, an SMB2/3
connection (MS-SMB2 3.2.4.2.1, negotiate 3.2.4.2.2), its authenticated session (3.2.4.2.3,
signing required) and its tree connects (3.2.4.2.4), on smbprotocol's low-level API.

Deadlines: smbprotocol waits for most answers without a timeout, so every exchange runs under a
per-link watchdog. When ``timeout`` seconds pass without the answer, the watchdog shuts the
socket down: the waiting call fails at once, the request answers STATUS_IO_TIMEOUT and the link
is dead from then on (as a Windows client drops a connection whose server stopped answering).

The set-up (TCP connect, negotiate, session setup, tree connect) runs under the set-up's own
deadline instead (rdbss/minirdrs/setup.py), with the same watchdog.

Failures map as status.py says; a lost session's answers are taken without a signature check
(see ``_Connection``). Credentials live only in the smbprotocol Session object: they are never
logged and never part of a message.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from smbprotocol.connection import Connection
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

from rdbss.minirdrs.common.setup import (
    AUTHENTICATE,
    NEGOTIATE,
    TCP_CONNECT,
    TREE_CONNECT,
    SetupDeadline,
)
from rdbss.minirdrs.smb import packed, receiver
from rdbss.minirdrs.smb.config import Credentials, ServerConfig, dialect_name
from rdbss.minirdrs.smb.status import (
    SESSION_LOST,
    connect_cause,
    connect_error,
    link_failure,
    server_status,
    unexpected,
)
from rdbss.minirdrs.smb.structures import MAX_PAYLOAD
from rdbss.wire.status import NtStatus, NtStatusError, status_name

log = logging.getLogger("rdbss.smb")
S = NtStatus
T = TypeVar("T")

# smbprotocol and spnego log every request at INFO and dump structures at DEBUG: keep them quiet
# whatever the daemon's level (authentication messages must never reach a log).
for _noisy in ("smbprotocol", "smbclient", "spnego"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)


class _Connection(Connection):  # type: ignore[misc]
    """smbprotocol's Connection with these differences. Requests packed by packed.py go out
    with ``send_packed``, and its receiver thread is receiver.py's (the same loop, headers read
    with struct). The negotiate waits under the set-up's deadline only. And an answer saying
    the session is gone (STATUS_USER_SESSION_DELETED, STATUS_NETWORK_SESSION_EXPIRED), and
    every later answer on that session (the rest of its compound), is taken without checking
    its signature. The server has
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

    def _process_message_thread(self) -> None:
        receiver.run(self)  # smbprotocol's loop, reading headers with struct

    def send_packed(
        self, bodies: list[packed.Body], session: Any, tree: Any, *, related: bool
    ) -> list[Any]:
        """Send requests packed by packed.py, as ``send_compound`` sends structures."""
        return packed.send(self, session, tree, bodies, related=related)

    def session_gone(self, status: int, session_id: int) -> bool:
        """Whether an answer with ``status`` on ``session_id`` is taken unchecked."""
        if status in SESSION_LOST:
            self.sessions_gone.add(session_id)
        return session_id in self.sessions_gone

    def verify_signature(self, header: Any, session_id: int, force: bool = False) -> None:
        if not self.session_gone(header["status"].get_value(), session_id):
            super().verify_signature(header, session_id, force)


# --------------------------------------------------------------------------------------------
# Watchdog
# --------------------------------------------------------------------------------------------


class _Watchdog:
    """Calls ``on_expire`` (from its own thread) when an armed deadline passes.

    Arming does not wake the thread when its current wait ends before the new deadline (the
    common case: each call arms a deadline later than the last one's): the thread then finds
    the deadline moved when it wakes and waits again. So a request costs no wake-up of the
    watchdog thread, and a deadline is never looked at later than it passes."""

    def __init__(self, name: str, on_expire: Callable[[], None]) -> None:
        self._on_expire = on_expire
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._wakes_at = -math.inf  # when the thread's wait ends (-inf: it looks again first)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if self._deadline is None:
                        self._wakes_at = math.inf
                        self._cond.wait()
                        continue
                    remaining = self._deadline - time.monotonic()
                    if remaining <= 0:
                        self._deadline = None
                        break
                    self._wakes_at = self._deadline
                    self._cond.wait(remaining)
                self._wakes_at = -math.inf
                if self._stopped:
                    return
            try:
                self._on_expire()
            except Exception:  # the watchdog must survive whatever closing a socket does
                log.exception("watchdog action failed")

    @contextlib.contextmanager
    def guard(self, seconds: float) -> Iterator[None]:
        with self._cond:
            deadline = time.monotonic() + seconds
            self._deadline = deadline
            if deadline < self._wakes_at:  # it would wake too late
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
            raise NtStatusError(
                S.STATUS_DOWNGRADE_DETECTED,
                f"server {self.server.name!r} negotiated SMB {dialect_name(conn.dialect)}, "
                f"below min_dialect {dialect_name(wanted)}: refused",
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
        if setup is not None and isinstance(connect_cause(exc), TimeoutError):
            return setup.expired(TCP_CONNECT)
        return connect_error(exc, where, self.timeout)

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
        if self._broken():
            raise self._lose(S.STATUS_CONNECTION_DISCONNECTED, f"{what}: connection lost")

    def _broken(self) -> bool:
        """Whether smbprotocol's receiver has died or its transport is down."""
        conn = self.connection
        return (
            conn is None
            or getattr(conn, "_t_exc", None) is not None
            or not getattr(conn.transport, "connected", False)
        )

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
            status, lost = server_status(exc)
            if lost:
                raise self._lose(status, f"{what}: {status_name(status)}") from None
            raise NtStatusError(status, f"{what}: {status_name(status)}") from None
        except Exception as exc:
            raise self._failure(what, exc) from None

    def _failure(self, what: str, exc: Exception) -> NtStatusError:
        if self._timed_out:
            return self._lose(S.STATUS_IO_TIMEOUT, f"{what}: no answer in {self.timeout} s")
        error = link_failure(exc, what, broken=self._broken(), timeout=self.timeout)
        if error is not None:
            return self._lose(error.status, error.strerror or "")
        log.warning(
            "smb request failed server=%s: %s: %s", self.server.name, type(exc).__name__, exc
        )
        return unexpected(exc, what)

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

    def credits(self, size: int, max_size: int, pieces: int = 1) -> tuple[int, int]:
        """(chunk size, credit request) for a read or write of ``size`` more bytes: as much as
        the negotiated maximum and the available credits allow, asking the server for enough
        credits that the next ``pieces`` chunks can be full ones."""
        window = self.connection.sequence_window
        available = max(1, window["high"] - window["low"])
        chunk = max(1, min(size, max_size, available * MAX_PAYLOAD))
        charge = (chunk - 1) // MAX_PAYLOAD + 1
        full = (max(1, max_size) - 1) // MAX_PAYLOAD + 1
        return chunk, charge + max(0, full * pieces - (available - charge))

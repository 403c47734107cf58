"""The Python client: talks to a running daemon over its client socket.

    with rdbss.Client() as c:
        with c.open(r"\\\\local\\data\\notes.txt", "w") as f:
            f.write("hello")
        print(c.stat(r"\\\\local\\data\\notes.txt").size)

Every failure is an ``NtStatusError`` carrying the NTSTATUS; where Python has a matching OSError
subclass the exception is also one (FileNotFoundError, PermissionError, FileExistsError...).
Paths are UNC names; forward slashes work too (``//local/data/notes.txt``).
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import zmq

from rdbss import requests as rq
from rdbss import shm
from rdbss.actors.bus import (
    NOBLOCK,
    Endpoints,
    connect_client_socket,
    daemon_pid,
    new_context,
    readable,
    recv_frames,
    send_frames,
)
from rdbss.config import Config, RemoteDaemon, load_config
from rdbss.leases import DEFAULT_CACHE_BYTES, LeaseCache, LeaseStats
from rdbss.link import EVENTS, Link, core_went_away, daemon_not_running, no_connection
from rdbss.model.filecache import MAX_FILL, ReadCache
from rdbss.model.idempotent import CONNECTION_LOST
from rdbss.requests import FileInfo, Handle, Outcome
from rdbss.wire import (
    Access,
    Codec,
    CompletionBundle,
    Compound,
    CompoundCompletion,
    CreateDisposition,
    CreateInformation,
    CreateOptions,
    FileAttributes,
    FileInformationClass,
    FsctlCode,
    FsInformationClass,
    NtStatus,
    NtStatusError,
    RxCancel,
    RxCompletion,
    RxContext,
    RxFlags,
    ShareAccess,
    WireError,
    error_for_status,
    pack_frames,
    unpack_frames,
)

__all__ = ["Client", "FileInfo", "Handle", "Outcome", "RemoteFile"]

S = NtStatus

#: RxFlags as plain ints: IntFlag arithmetic costs a microsecond on every request
_BUNDLE_OK = int(RxFlags.BUNDLE_OK)
T = TypeVar("T")
READ_CHUNK = 1 << 20
#: a file smaller than this at its open is read to its end in one request of one byte more,
#: whose short answer proves the end (below every protocol's smallest largest read: SMB2
#: 64 KiB); Client.readall and RdbssFileSystem.cat_file both read small files so
SHORT_MEANS_END = rq.SMALL_READ_BYTES
#: Client.write_bytes sends up to this much as one compound (create, write, close); larger
#: writes go in pieces through an open file, or through shared memory from this size up
SMALL_WRITE_BYTES = shm.MIN_WRITE_BYTES
GRACE_S = 2.0  # how much longer than the request's deadline the client waits for the core
COMPOUNDS_IN_FLIGHT = 4  # a long list of compound items goes out as this many messages at once
READ_AHEAD = 4  # reads kept in flight ahead of a sequential reader (RemoteFile), by default
READ_AHEAD_MIN = 256 << 10  # at least this much per read-ahead request...
READ_AHEAD_MAX = 4 << 20  # ...at most this much (so the window holds at most 4 x 4 MiB)
#: shared-memory reads in flight at once for one large read (the slots of the client's arena):
#: the daemon fills the next slot while this client copies the last one out
SHM_IN_FLIGHT = 2
#: pieces of one large write kept in flight through the sockets (shared memory: SHM_IN_FLIGHT)
SOCKET_WRITES_IN_FLIGHT = 4
#: how often a client waiting for an answer looks at its connection's events (rdbss.link)
LINK_CHECK_S = 0.05


def resolve_daemon(
    runtime_dir: str | Path | None, config: Config | None, timeout: float | None
) -> tuple[Path, float]:
    """The runtime directory and default timeout of the daemon a client talks to; refuses at
    once (STATUS_REDIRECTOR_NOT_STARTED) when no daemon runs there."""
    if runtime_dir is None:
        config = config or load_config()
        runtime_dir = config.runtime_dir
    path = Path(runtime_dir)
    if timeout is None:
        timeout = config.request_timeout if config else 30.0
    if daemon_pid(path) is None:
        raise daemon_not_running(str(path))
    return path, timeout


def remote_daemon(config: Config | None = None) -> RemoteDaemon | None:
    """The daemon on another host this client should use, if any: $RDBSS_CONNECT (with
    $RDBSS_CORE_KEY and $RDBSS_SECRET_KEY), else the configuration's [client] table."""
    connect = os.environ.get("RDBSS_CONNECT")
    if connect:
        core_key = os.environ.get("RDBSS_CORE_KEY", "")
        secret_key = os.environ.get("RDBSS_SECRET_KEY", "")
        if not core_key or not secret_key:
            raise error_for_status(
                S.STATUS_INVALID_PARAMETER,
                "RDBSS_CONNECT needs RDBSS_CORE_KEY (the daemon's public key) and "
                "RDBSS_SECRET_KEY (this client's .key_secret file)",
            )
        return RemoteDaemon(connect, core_key, secret_key)
    return config.client if config is not None else None


def daemon_endpoints(
    runtime_dir: str | Path | None,
    config: Config | None,
    timeout: float | None,
    remote: RemoteDaemon | None = None,
) -> tuple[Endpoints, float]:
    """Where the client connects: the local daemon's ipc socket, or (``remote``, the
    environment or the configuration's [client] table) another host's tcp:// port with CURVE."""
    if remote is None and runtime_dir is None:
        config = config or load_config()
        remote = remote_daemon(config)
    if remote is None:
        path, timeout = resolve_daemon(runtime_dir, config, timeout)
        return Endpoints.in_dir(path), timeout
    from rdbss.actors.bus import CurveKeys
    from rdbss.keys import KeyFileError, load_public, load_secret

    try:
        pair = load_secret(Path(remote.secret_key))
        curve = CurveKeys(pair.public, pair.secret, server=load_public(remote.core_key))
    except KeyFileError as exc:
        raise error_for_status(S.STATUS_INVALID_PARAMETER, str(exc)) from None
    return Endpoints(Path(), remote.connect, "", curve), timeout or 30.0


_monitors = itertools.count()


class LinkWatch:
    """A client socket's monitor (ZeroMQ socket events), read into a ``Link``: whether the
    connection is up, was just lost, or why a request must fail instead of waiting for it.
    Made before the socket connects, so that no event is missed."""

    def __init__(self, sock: zmq.Socket[Any], endpoints: Endpoints) -> None:
        remote = endpoints.curve is not None
        where = endpoints.client if remote else endpoints.client.removeprefix("ipc://")
        key = endpoints.curve.public.decode() if endpoints.curve is not None else ""
        self.link = Link(where, remote, key)
        # the events queue without a bound: libzmq sends them blocking (holding the interpreter
        # lock, from the I/O thread), so a full queue of an idle client's reconnect attempts
        # would freeze its process; they are few, and read before every wait
        address = f"inproc://rdbss-link-{id(self):x}-{next(_monitors)}"
        sock.monitor(address, EVENTS)
        self.monitor: zmq.Socket[Any] = sock.context.socket(zmq.PAIR)
        self.monitor.setsockopt(zmq.RCVHWM, 0)
        self.monitor.connect(address)
        self._sock = sock
        self._endpoint = endpoints.client
        self._runtime_dir = None if remote else endpoints.runtime_dir
        #: a handshake was refused: the socket connects again before the next request
        self._renew = False

    def read(self) -> bool:
        """Take the events that arrived; True when a connection that was up went down."""
        lost = False
        now = time.monotonic()
        while readable(self.monitor):
            frames = self.monitor.recv_multipart(NOBLOCK)
            # the event as a native uint16, then a uint32 value (zmq_socket_monitor)
            event = int.from_bytes(frames[0][:2], sys.byteorder)
            lost |= self.link.on_event(event, now)
        return lost

    def refusal(self) -> NtStatusError | None:
        """Why a request must fail now instead of waiting for the connection, or None."""
        if self.link.up:
            return None
        running = None if self._runtime_dir is None else daemon_pid(self._runtime_dir) is not None
        error = self.link.refusal(time.monotonic(), running)
        if error is not None and self.link.failed:
            # ZeroMQ does not retry a refused handshake: the next request connects again
            # (``renew``), so its handshake is made then, once the key may have been granted
            self._renew = True
        return error

    def renew(self) -> None:
        """Before a request: connect again after a refused handshake (its events taken first,
        so none of them is read as the new connection's)."""
        if not self._renew:
            return
        self._renew = False
        self.read()
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disconnect(self._endpoint)
        self._sock.connect(self._endpoint)
        self.link.reset()

    def close(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        self.monitor.close(0)


class Client:
    """A connection to the daemon. Thread-safe (requests are serialized on one socket)."""

    def __init__(
        self,
        runtime_dir: str | Path | None = None,
        *,
        config: Config | None = None,
        timeout: float | None = None,
        remote: RemoteDaemon | None = None,
        shared_memory: bool | None = None,
        lease_cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.endpoints, self.timeout = daemon_endpoints(runtime_dir, config, timeout, remote)
        self.runtime_dir = self.endpoints.runtime_dir
        # large reads through /dev/shm (rdbss.shm): by default with a daemon on this host
        if shared_memory is None:
            shared_memory = self.endpoints.curve is None and shm.available()
        self._shared_memory = shared_memory
        self._arena: shm.Arena | None = None
        # read leases (rdbss.leases): for a daemon on this host, handles created with lease=True
        self._leases = (
            LeaseCache(lease_cache_bytes)
            if lease_cache_bytes > 0 and self.endpoints.curve is None
            else None
        )
        self._zctx = new_context()
        self._sock = self._zctx.socket(zmq.DEALER)
        self._watch = LinkWatch(self._sock, self.endpoints)
        connect_client_socket(self._sock, self.endpoints)
        self._poller = zmq.Poller()  # one, not one per reply (Socket.poll builds a new one)
        self._poller.register(self._sock, zmq.POLLIN)
        self._send_poller = zmq.Poller()  # waiting for a connection: room to send, or news
        self._send_poller.register(self._sock, zmq.POLLOUT)
        self._send_poller.register(self._watch.monitor, zmq.POLLIN)
        self._codec = Codec(trusted=True)  # it decodes the daemon's answers only
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._unacked: set[int] = set()  # closes sent without waiting
        self._outstanding: set[int] = set()  # sent, answer wanted, not being waited for yet
        self._arrived: dict[int, tuple[Any, memoryview | None]] = {}  # their early answers
        self._closed = False
        self.requests_sent = 0  # messages sent to the daemon (requests, compounds)

    # ------------------------------------------------------------------ plumbing
    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once ``close`` ran (every request then fails)."""
        return self._closed

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            deadline = time.monotonic() + 5.0
            while self._unacked and time.monotonic() < deadline:
                self._receive_one(deadline)
            self._closed = True
            self._watch.close()
            self._sock.close(0)
            self._zctx.term()
            if self._arena is not None:
                self._arena.close()
            if self._leases is not None:
                self._leases.clear()

    def _send(self, ctx: RxContext | Compound, payload: rq.Data | None) -> None:
        """Send on the connection, waiting for one (up to the request's deadline) when there is
        none: the core restarting, the first call. Raises at once what ``rdbss.link`` rules
        cannot wait (no daemon, a key refused)."""
        frames = self._frames(ctx, payload)
        self.requests_sent += 1
        if self._send_at_once(frames):
            return
        # no connection (or a full queue): wait for one
        started = time.monotonic()
        deadline = started + ctx.timeout_ms / 1000.0
        while True:
            self._check_link()
            now = time.monotonic()
            if now >= deadline:
                raise no_connection(self._watch.link.where, now - started)
            # at most 100 ms a wait: the daemon's lock is looked at again in between
            wait_ms = int(min(deadline - now, 0.1) * 1000) + 1
            if dict(self._send_poller.poll(wait_ms)).get(self._sock):
                try:
                    send_frames(self._sock, frames, NOBLOCK)
                    return
                except zmq.Again:
                    continue

    def _frames(self, ctx: RxContext | Compound, payload: rq.Data | None) -> list[Any]:
        """``ctx`` packed to go (refused on a closed client)."""
        if self._closed:
            raise error_for_status(S.STATUS_INVALID_HANDLE, "the client is closed")
        if isinstance(ctx, RxContext):
            ctx.flags |= _BUNDLE_OK  # answers may come bundled: _receive_one opens them
        return pack_frames(self._codec, ctx, payload)

    def _send_at_once(self, frames: list[Any]) -> bool:
        """Send without waiting, the link's news first (a connection lost while idle must not
        fail this request); False when there is no connection (or a full queue)."""
        self._link_news()
        self._watch.renew()
        try:
            send_frames(self._sock, frames, NOBLOCK)
        except zmq.Again:
            return False
        return True

    def _check_link(self) -> None:
        """Take the link's news: fail what a lost connection carried; raise when a request
        cannot wait for a connection."""
        if self._watch.read():
            self._fail_in_flight()
        error = self._watch.refusal()
        if error is not None:
            raise error

    def _fail_in_flight(self) -> None:
        """The connection carrying the outstanding requests is gone: keep the answers that
        made it, and answer the others STATUS_CONNECTION_DISCONNECTED."""
        while readable(self._sock):
            self._take(recv_frames(self._sock, NOBLOCK))
        lost = core_went_away(self._watch.link.where)
        if self._leases is not None:
            self._leases.clear()  # the core that granted them is gone, or was
        for request_id in self._outstanding:
            self._arrived[request_id] = (
                RxCompletion(request_id, lost.status, message=lost.strerror or ""),
                None,
            )
        self._outstanding.clear()
        self._unacked.clear()

    def _receive_one(self, deadline: float) -> None:
        """Receive one message (waiting until ``deadline`` at most) and keep the answers it
        carries for requests still wanted (in ``_arrived``); drop the others (late answers to
        requests that timed out or were abandoned, closes sent without waiting). A lost
        connection answers every outstanding request (``_fail_in_flight``)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        # the monitor is looked at between waits of at most LINK_CHECK_S, not polled with the
        # socket: a second socket in the poll slows every answer (benchmarks.latency)
        if not self._poller.poll(int(min(remaining, LINK_CHECK_S) * 1000) + 1):
            self._link_news()
            return
        self._take(recv_frames(self._sock, 0))

    def _take(self, frames: list[zmq.Frame]) -> None:
        """Keep the answers a received message carries for the requests still wanted."""
        try:
            msg, payload = unpack_frames(self._codec, frames)
        except WireError:
            return
        answers: list[tuple[RxCompletion | CompoundCompletion, memoryview | None]]
        if isinstance(msg, (RxCompletion, CompoundCompletion)):
            answers = [(msg, payload)]
        elif isinstance(msg, CompletionBundle):
            payload_of = dict(zip(msg.payload_items, msg.payloads, strict=True))
            answers = [(done, payload_of.get(i)) for i, done in enumerate(msg.items)]
        else:
            return
        for answer, data in answers:
            self._unacked.discard(answer.request_id)
            if answer.request_id in self._outstanding:
                self._outstanding.discard(answer.request_id)
                self._arrived[answer.request_id] = (answer, data)

    def _wait_for(
        self, request_id: int, timeout: float
    ) -> tuple[RxCompletion | CompoundCompletion, memoryview | None]:
        """The answer to a request sent before (the lock held): from the early answers, or
        received now, keeping answers to other outstanding requests for their turn."""
        early = self._arrived.pop(request_id, None)
        if early is not None:
            return early
        self._outstanding.add(request_id)
        deadline = time.monotonic() + timeout + GRACE_S
        try:
            while True:
                self._receive_one(deadline)
                early = self._arrived.pop(request_id, None)
                if early is not None:
                    return early
                if time.monotonic() >= deadline:
                    raise error_for_status(
                        S.STATUS_IO_TIMEOUT,
                        f"no answer from the daemon in {timeout + GRACE_S:.1f} s",
                    )
        finally:
            self._outstanding.discard(request_id)

    def submit(self, ctx: RxContext | Compound, payload: rq.Data | None = None) -> int:
        """Send a request without waiting; ``collect(id)`` waits for its answer later (several
        may be outstanding, e.g. reads ahead). Returns its request id."""
        with self._lock:
            ctx.request_id = next(self._ids)
            self._send(ctx, payload)
            self._outstanding.add(ctx.request_id)
            return ctx.request_id

    def collect(
        self, request_id: int, timeout: float | None = None
    ) -> tuple[RxCompletion | CompoundCompletion, memoryview | None]:
        with self._lock:
            return self._wait_for(request_id, self.timeout if timeout is None else timeout)

    def abandon(self, request_ids: Iterable[int]) -> None:
        """Forget submitted requests whose answers are no longer wanted (dropped on arrival)."""
        with self._lock:
            for request_id in request_ids:
                self._outstanding.discard(request_id)
                self._arrived.pop(request_id, None)

    def call(
        self,
        ctx: RxContext,
        payload: rq.Data | None = None,
        *,
        ok: tuple[int, ...] = (S.STATUS_SUCCESS,),
        wait: bool = True,
    ) -> tuple[RxCompletion, memoryview | None]:
        """Send one request and wait for its completion; raise for a status not in ``ok``.

        A wait that ends without the answer cancels the request on the daemon before raising:
        KeyboardInterrupt (or any exception a signal handler raises) sends a cancel, and so does
        giving up with STATUS_IO_TIMEOUT."""
        with self._lock:
            ctx.request_id = next(self._ids)
            self._send(ctx, payload)
            if not wait:
                self._unacked.add(ctx.request_id)
                return RxCompletion(ctx.request_id, S.STATUS_PENDING), None
            try:
                done, data = self._wait_for(ctx.request_id, ctx.timeout_ms / 1000.0)
            except NtStatusError as exc:
                if exc.status == S.STATUS_IO_TIMEOUT:  # given up on: the daemon drops it too
                    self._cancel_quietly(ctx.request_id, "deadline")
                raise
            except BaseException:  # KeyboardInterrupt, or what a signal handler raised
                self._cancel_quietly(ctx.request_id, "client")
                raise
        if not isinstance(done, RxCompletion):
            raise error_for_status(S.STATUS_INVALID_NETWORK_RESPONSE, "a compound answer")
        if done.status not in ok:
            raise error_for_status(done.status, done.message)
        return done, data

    def _cancel_quietly(self, request_id: int, reason: str) -> None:
        """Tell the daemon to drop a request this client no longer waits for (RxCancel: never
        answered itself; the request's own late answer is dropped on arrival)."""
        if self._closed:
            return
        # when the daemon cannot be reached, it cannot run the request either
        with contextlib.suppress(zmq.ZMQError):
            self._sock.send_multipart(
                pack_frames(self._codec, RxCancel(request_id, reason)), flags=zmq.NOBLOCK
            )

    @property
    def _timeout_ms(self) -> int:
        return int(self.timeout * 1000)

    def run(self, request: rq.Request[T]) -> T:
        """Send one request built by ``rdbss.requests`` and parse its completion."""
        done, data = self.call(request.ctx, request.payload, ok=request.ok)
        return request.parse(done, data)

    # ------------------------------------------------------------------ compounds
    def compound(self, requests: Sequence[rq.Request[Any]]) -> list[Outcome[Any]]:
        """Send many requests as compound messages (SMB2 compounding) and return each one's
        ``Outcome`` (its own NTSTATUS; one failing item does not fail the others). Build them
        with ``rdbss.requests`` (``rq.read(fobx, ...)``, ``rq.create(path, ...)``...); wrap
        one in ``rq.related(...)`` to act on the previous create's handle. A long list is cut
        into several compounds (never inside a create's chain), a few in flight at once."""
        parts = list(rq.split_compound(requests))
        outcomes: list[Outcome[Any]] = []
        in_flight: deque[tuple[int, Sequence[rq.Request[Any]]]] = deque()
        with self._lock:
            try:
                for part in parts:
                    cx = rq.compound(part, self._timeout_ms)
                    cx.request_id = next(self._ids)
                    self._send(cx, None)
                    self._outstanding.add(cx.request_id)
                    in_flight.append((cx.request_id, part))
                    if len(in_flight) >= COMPOUNDS_IN_FLIGHT:
                        request_id, sent = in_flight.popleft()
                        answer, _ = self._wait_for(request_id, self.timeout)
                        outcomes += rq.parse_compound(sent, answer)
                while in_flight:
                    request_id, sent = in_flight.popleft()
                    answer, _ = self._wait_for(request_id, self.timeout)
                    outcomes += rq.parse_compound(sent, answer)
            finally:
                for request_id, _ in in_flight:
                    self._outstanding.discard(request_id)
                    self._arrived.pop(request_id, None)
        return outcomes

    # ------------------------------------------------------------------ event loops
    # An event loop (the FUSE mount's) sends a compound and waits for its answer on its own
    # loop, without a thread: it waits until ``fileno()`` is readable (ZMQ_FD: the socket has
    # news), then asks ``compound_answer_now``. Neither call waits, not even for the client's
    # lock: while a thread holds it (a read ahead on a handle of this client), the send is
    # refused and the answer looked for again after the loop's next wait.
    def fileno(self) -> int:
        """The descriptor that becomes readable when the socket has news (ZMQ_FD)."""
        return int(self._sock.FD)

    def send_compound_now(self, requests: Sequence[rq.Request[Any]]) -> int | None:
        """Send ``requests`` as one compound without waiting for anything: its request id,
        or None when it cannot go at once (no connection yet, or a thread is using the client:
        ``compound`` waits)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            cx = rq.compound(requests, self._timeout_ms)
            cx.request_id = next(self._ids)
            if not self._send_at_once(self._frames(cx, None)):
                return None
            self.requests_sent += 1
            self._outstanding.add(cx.request_id)
            return cx.request_id
        finally:
            self._lock.release()

    def compound_answer_now(
        self, request_id: int, requests: Sequence[rq.Request[Any]], *, link: bool = False
    ) -> list[Outcome[Any]] | None:
        """The outcomes of a compound sent by ``send_compound_now`` if its answer has come
        (None: not yet, or a thread is using the client); never waits. ``link``: take the
        link's news first (after a wait that ran out, as ``collect`` does), so a lost
        connection answers it."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if link:
                self._link_news()
            arrived = self._arrived.pop(request_id, None)
            while arrived is None and readable(self._sock):
                self._take(recv_frames(self._sock, NOBLOCK))
                arrived = self._arrived.pop(request_id, None)
            if arrived is None:
                return None
            self._outstanding.discard(request_id)
        finally:
            self._lock.release()
        return rq.parse_compound(requests, arrived[0])

    def stat_many(self, paths: Sequence[str]) -> list[FileInfo | OSError]:
        """``stat`` of many paths in compound messages (create + related close each): a
        FileInfo per path, or the NtStatusError (an OSError) that path got."""
        requests = [r for path in paths for r in rq.stat_items(path, self._timeout_ms)]
        outcomes = self.compound(requests)
        return [_info_or_error(outcomes[2 * k]) for k in range(len(paths))]

    def read_many(self, fobx: int, ranges: Iterable[tuple[int, int]]) -> list[bytes]:
        """Reads of (offset, length) ranges of one open file in compound messages; b"" past
        the end. Raises the first failing range's NtStatusError."""
        requests = [rq.read(fobx, off, length, self._timeout_ms) for off, length in ranges]
        return [outcome.unwrap() for outcome in self.compound(requests)]

    # ------------------------------------------------------------------ handles
    def create(
        self,
        path: str,
        *,
        access: int = Access.GENERIC_READ,
        disposition: int = CreateDisposition.FILE_OPEN,
        options: int = CreateOptions.NONE,
        share: int = ShareAccess.ALL,
        attributes: int = FileAttributes.NORMAL,
        lease: bool = False,
    ) -> Handle:
        """IRP_MJ_CREATE: open or create ``path``; returns the handle and what happened.

        ``lease=True`` asks for a read lease (docs/caching.md, Read leases): while the core
        grants it, reads of the handle that were read before are answered from this client's
        cache with no message. Only with a daemon on this host and ``lease_cache_bytes`` > 0;
        elsewhere the handle works as without."""
        request = rq.create(
            path,
            self._timeout_ms,
            access=access,
            disposition=disposition,
            options=options,
            share=share,
            attributes=attributes,
        )
        if not lease or self._leases is None:
            return self.run(request)
        request.ctx.args = {"lease": True}
        with self._lock:
            done, data = self.call(request.ctx, ok=request.ok)
            handle = request.parse(done, data)
            grant = done.result.get("lease") if isinstance(done.result, dict) else None
            if grant is not None:
                self._leases.hold(handle.fobx, grant)
        return handle

    def close_handle(self, fobx: int, *, wait: bool = True) -> None:
        if self._leases is not None and self._holds_lease(fobx):
            with self._lock:
                self._leases.drop(fobx)
        self.call(rq.close(fobx, self._timeout_ms).ctx, wait=wait)

    def read_handle(self, fobx: int, offset: int, length: int) -> bytes:
        if self._holds_lease(fobx):
            return self._leased_read(fobx, offset, length)
        return self.run(rq.read(fobx, offset, length, self._timeout_ms))

    @property
    def lease_stats(self) -> LeaseStats | None:
        """What the read leases served (hits with no message, misses, breaks); None when
        leases are off for this client."""
        return None if self._leases is None else self._leases.stats

    def _holds_lease(self, fobx: int) -> bool:
        """Whether the handle was granted a lease not found broken yet (no lock: a hint for
        where its reads go; the lease is checked when one is served)."""
        return self._leases is not None and fobx in self._leases.held

    def leased(self, fobx: int) -> bool:
        """Whether the handle holds a read lease not broken (a memory read, no message)."""
        with self._lock:
            self._link_news()
            return self._leases is not None and self._leases.valid(fobx)

    def cached_read(self, fobx: int, offset: int, length: int) -> bytes | None:
        """The bytes a leased handle read before (short or empty at the end of the file), with
        no message; None when the handle holds no valid lease or the range was not read."""
        leases = self._leases
        if leases is None or fobx not in leases.held:
            return None
        with self._lock:
            self._link_news()
            return leases.lookup(fobx, offset, length)

    def _link_news(self) -> None:
        """Take the link's news (the lock held): a connection lost answers what it carried
        (``_fail_in_flight``) and voids every lease."""
        if readable(self._watch.monitor) and self._watch.read():
            self._fail_in_flight()

    def _leased_read(self, fobx: int, offset: int, length: int) -> bytes:
        """A read of a leased handle: from the cache, else widened to whole blocks whose
        answer fills the cache while the lease holds."""
        data = self.cached_read(fobx, offset, length)
        if data is not None:
            return data
        widened = ReadCache.widen(offset, length)
        if widened is None:
            return self.run(rq.read(fobx, offset, length, self._timeout_ms))
        start, span = widened
        with self._lock:
            block = self.run(rq.read(fobx, start, span, self._timeout_ms))
            assert self._leases is not None
            self._leases.fill(fobx, start, block, span)
        return block[offset - start : offset - start + length]

    def shares_memory_for(self, length: int) -> bool:
        """Whether a read of ``length`` bytes goes through shared memory (rdbss.shm)."""
        return self._shared_memory and length >= shm.MIN_READ_BYTES

    def readinto(self, fobx: int, offset: int, buffer: Any) -> int:
        """Read ``len(buffer)`` bytes at ``offset`` into ``buffer``; the count, short at the end
        of the file. Large reads go through shared memory with a daemon on this host."""
        view = memoryview(buffer).cast("B")
        if self._holds_lease(fobx):
            if len(view) <= MAX_FILL:  # what the lease cache keeps: read through it
                data: bytes | None = self._leased_read(fobx, offset, len(view))
            else:
                data = self.cached_read(fobx, offset, len(view))
            if data is not None:
                view[: len(data)] = data
                return len(data)
        if not self._shared_memory or len(view) < shm.MIN_READ_BYTES:
            return self.run(rq.read_into(fobx, offset, view, self._timeout_ms))
        total = 0

        def copy_out(piece: memoryview) -> None:
            nonlocal total
            view[total : total + len(piece)] = piece
            total += len(piece)

        self.read_shared(fobx, offset, len(view), copy_out)
        return total

    def _shared_arena(self) -> shm.Arena:
        """This client's arena (rdbss.shm), made on first use (the lock held)."""
        if self._arena is None:
            self._arena = shm.Arena(slots=SHM_IN_FLIGHT)
        return self._arena

    def _retire_arena(self, arena: shm.Arena) -> None:
        """A request that used ``arena`` may still be running in the mini-redirector: no slot of
        it is used again, the next large request makes a new arena (the lock held)."""
        self._arena = None
        arena.close()

    def read_shared(
        self, fobx: int, offset: int, length: int, take: Callable[[memoryview], object]
    ) -> int:
        """Read up to ``length`` bytes at ``offset`` through shared memory, slot by slot with
        SHM_IN_FLIGHT reads in flight, handing each piece to ``take`` in order (a view of its
        slot, valid during the call only); the count, short at the end of the file. A slot
        whose read was given up on (an error with reads still in flight, a timeout) is never
        filled again: the arena goes and the next read makes a new one."""
        with self._lock:
            arena = self._shared_arena()
            flying: deque[tuple[int, int, int, rq.Request[int]]] = deque()  # id, slot, length
            asked = 0
            total = 0

            def ask(slot: int) -> None:
                nonlocal asked
                if asked < length:
                    target = arena.view(slot, length - asked)
                    shared = (arena.args(slot), target)
                    request = rq.read_into(fobx, offset + asked, target, self._timeout_ms, shared)
                    flying.append((self.submit(request.ctx), slot, len(target), request))
                    asked += len(target)

            try:
                for slot in range(arena.slots):
                    ask(slot)
                while flying:
                    request_id, slot, size, request = flying[0]
                    done, data = self._wait_for(request_id, self.timeout)
                    flying.popleft()
                    if not isinstance(done, RxCompletion):
                        raise error_for_status(
                            S.STATUS_INVALID_NETWORK_RESPONSE, "a compound answer"
                        )
                    if done.status not in request.ok:
                        raise error_for_status(done.status, done.message)
                    count = request.parse(done, data)
                    take(arena.view(slot, count))
                    total += count
                    if count < size:
                        break  # the end of the file
                    ask(slot)
                while flying:  # reads past the end: their slots are filled again next time
                    self._wait_for(flying[0][0], self.timeout)
                    flying.popleft()
            except BaseException as exc:
                self._give_up([request_id for request_id, *_ in flying], exc, arena)
                raise
            return total

    def _give_up(self, flying: list[int], exc: BaseException, arena: shm.Arena | None) -> None:
        """Requests still in flight when a wait for them ended with ``exc``: the daemon drops
        them, and the arena whose slots they may still use (or one a request answered by the
        core's deadline may still use) is retired (the lock held)."""
        if flying:
            timeout = isinstance(exc, NtStatusError) and exc.status == S.STATUS_IO_TIMEOUT
            for request_id in flying:
                self._cancel_quietly(request_id, "deadline" if timeout else "client")
            self.abandon(flying)
        if arena is not None and (flying or not shm.settled(exc)):
            self._retire_arena(arena)

    def write_handle(self, fobx: int, offset: int, data: bytes | memoryview) -> int:
        """Write at ``offset`` (-1 appends). Returns the bytes written. Large writes go through
        shared memory with a daemon on this host, in slot-sized pieces; writes over one
        message's limit through the sockets, in pieces of that limit. The pieces of a write
        at an offset are kept in flight (``write_pieces``); appends go one after the other."""
        view = memoryview(data).cast("B")
        shared_memory = self._shared_memory and len(view) >= shm.MIN_WRITE_BYTES
        step = shm.SLOT_BYTES if shared_memory else rq.MAX_WRITE_BYTES
        with self._lock:  # one write's pieces go before another's
            if offset != -1 and len(view) > step:
                in_flight = SHM_IN_FLIGHT if shared_memory else SOCKET_WRITES_IN_FLIGHT
                return self.write_pieces(fobx, offset, view, step, in_flight, shared_memory)
            total = 0
            for where, start, end in rq.write_pieces(offset, len(view), step):
                piece = view[start:end]
                if shared_memory:
                    write = functools.partial(rq.write, fobx, where, piece, self._timeout_ms)
                    count = self._in_slot(len(piece), write)
                else:
                    count = self.run(rq.write(fobx, where, piece, self._timeout_ms))
                total += count
                if count < len(piece):
                    break
        return total

    def write_pieces(
        self,
        fobx: int,
        offset: int,
        view: memoryview,
        step: int,
        in_flight: int,
        shared_memory: bool,
    ) -> int:
        """Write ``view`` at ``offset`` (not an append) in pieces of ``step`` bytes, up to
        ``in_flight`` of them sent before the first is answered (through the slots of the
        arena with ``shared_memory``). Returns only when every piece sent was answered: the
        bytes written up to the first short piece, or the failure of the first failed piece
        in offset order (no piece is sent after a failure or a short piece). A wait given up
        on (a timeout, an interrupt) cancels the pieces still in flight and retires the arena
        they may still be read from."""
        with self._lock:
            arena = self._shared_arena() if shared_memory else None
            slots = min(in_flight, arena.slots) if arena is not None else in_flight
            pieces = iter(rq.write_pieces(offset, len(view), step))
            free = deque(range(slots))
            flying: deque[tuple[int, int, int, rq.Request[int]]] = deque()  # id, slot, length
            total = 0
            stop = False  # a piece failed or came back short: send no more
            failure: OSError | None = None

            def send() -> bool:
                """The next piece, into a free slot; False when none is left."""
                nxt = next(pieces, None)
                if nxt is None:
                    return False
                where, start, end = nxt
                slot = free.popleft()
                piece = view[start:end]
                shared = (
                    None if arena is None else (arena.args(slot), arena.view(slot, end - start))
                )
                request = rq.write(fobx, where, piece, self._timeout_ms, shared)
                flying.append(
                    (self.submit(request.ctx, request.payload), slot, len(piece), request)
                )
                return True

            try:
                while len(flying) < slots and send():
                    pass
                while flying:
                    request_id, slot, size, request = flying[0]
                    done, data = self._wait_for(request_id, self.timeout)
                    flying.popleft()
                    free.append(slot)
                    if stop:  # pieces sent before a failure or a short piece: collected only
                        continue
                    if not isinstance(done, RxCompletion):
                        failure = error_for_status(
                            S.STATUS_INVALID_NETWORK_RESPONSE, "a compound answer"
                        )
                    elif done.status not in request.ok:
                        failure = error_for_status(done.status, done.message)
                    else:
                        count = request.parse(done, data)
                        total += count
                        stop = count < size
                    stop = stop or failure is not None
                    if not stop:
                        send()
            except BaseException as exc:
                self._give_up([request_id for request_id, *_ in flying], exc, arena)
                raise
            if failure is not None:
                raise failure
            return total

    def _in_slot(self, size: int, request: Callable[[rq.Shared], rq.Request[int]]) -> int:
        """One request that uses the first shared-memory slot, ``size`` bytes of it (the lock
        held); the arena is retired if the request did not settle."""
        arena = self._shared_arena()
        try:
            return self.run(request((arena.args(0), arena.view(0, size))))
        except BaseException as exc:
            if not shm.settled(exc):
                self._retire_arena(arena)
            raise

    def query_info(
        self, fobx: int, info_class: int = FileInformationClass.FileAllInformation
    ) -> FileInfo:
        return self.run(rq.query_info(fobx, self._timeout_ms, info_class))

    def set_info(self, fobx: int, info_class: int, **args: Any) -> None:
        self.run(rq.set_info(fobx, self._timeout_ms, info_class, **args))

    def lock(
        self, fobx: int, offset: int, length: int, *, exclusive: bool = True, wait: bool = False
    ) -> None:
        """Lock bytes ``offset``..+``length`` of an open file (Windows semantics: mandatory for
        other handles' reads and writes). Without ``wait`` a conflict raises
        STATUS_LOCK_NOT_GRANTED (a BlockingIOError) at once."""
        self.run(rq.lock(fobx, offset, length, self._timeout_ms, exclusive=exclusive, wait=wait))

    def unlock(self, fobx: int, offset: int, length: int) -> None:
        self.run(rq.unlock(fobx, offset, length, self._timeout_ms))

    def unlock_all(self, fobx: int) -> None:
        self.run(rq.unlock_all(fobx, self._timeout_ms))

    def query_eas(self, fobx: int) -> dict[str, bytes]:
        """The extended attributes of an open file (open it with FILE_READ_EA or more)."""
        return self.run(rq.query_eas(fobx, self._timeout_ms))

    def set_eas(self, fobx: int, eas: dict[str, bytes | None]) -> None:
        """Set extended attributes; a value of None deletes one (FILE_WRITE_EA or more)."""
        self.run(rq.set_eas(fobx, eas, self._timeout_ms))

    def query_security(self, target: int | str, info: int = rq.OWNER_GROUP_DACL) -> dict[str, Any]:
        """The security descriptor of an open handle (``int``) or a path (``str``, opened with
        READ_CONTROL for the call): ``owner``/``group`` SIDs (and ``owner_name``...), ``dacl``
        (a list of {"type", "flags", "mask", "sid"}), ``mode`` on POSIX backends; only the parts
        ``info`` (OWNER 0x1 | GROUP 0x2 | DACL 0x4) asks for."""
        if isinstance(target, str):
            handle = self.create(target, access=Access.READ_CONTROL | Access.FILE_READ_ATTRIBUTES)
            try:
                return self.query_security(handle.fobx, info)
            finally:
                self.close_handle(handle.fobx, wait=False)
        return self.run(rq.query_security(target, info, self._timeout_ms))

    def set_security(
        self,
        target: int | str,
        *,
        owner: str | None = None,
        group: str | None = None,
        dacl: list[dict[str, Any]] | None = None,
        mode: int | None = None,
    ) -> None:
        """Change the owner / group (SIDs), the DACL, or (POSIX backends) the permission bits of
        an open handle or a path; SecurityInformation follows from what is given. A DACL a
        POSIX backend cannot express as a mode raises STATUS_INVALID_PARAMETER."""
        fields: dict[str, Any] = {}
        info = 0
        if owner is not None:
            fields["owner"], info = owner, info | 0x1
        if group is not None:
            fields["group"], info = group, info | 0x2
        if dacl is not None:
            fields["dacl"], info = dacl, info | 0x4
        if mode is not None:
            fields["mode"], info = mode, info | 0x4
        if isinstance(target, str):
            access = Access.FILE_READ_ATTRIBUTES
            access |= Access.WRITE_OWNER if info & 0x3 else 0
            access |= Access.WRITE_DAC if info & 0x4 else 0
            handle = self.create(target, access=access)
            try:
                self.set_security(handle.fobx, owner=owner, group=group, dacl=dacl, mode=mode)
            finally:
                self.close_handle(handle.fobx, wait=False)
            return
        self.run(rq.set_security(target, info, fields, self._timeout_ms))

    def query_quota(self, target: int | str, sids: list[str] | None = None) -> list[dict[str, Any]]:
        """The quota entries of the share holding an open handle or a path (every entry, or
        those of ``sids``): {"sid", "used", "threshold", "limit", "change_time"}, bytes, -1 for
        "none". Only where the server keeps quotas (SMB); elsewhere STATUS_NOT_IMPLEMENTED."""
        if isinstance(target, str):
            handle = self.create(target, access=Access.FILE_READ_ATTRIBUTES)
            try:
                return self.query_quota(handle.fobx, sids)
            finally:
                self.close_handle(handle.fobx, wait=False)
        return self.run(rq.query_quota(target, self._timeout_ms, sids))

    def set_quota(self, target: int | str, entries: list[dict[str, Any]]) -> None:
        """Set quota thresholds and limits: [{"sid", "threshold", "limit"}] (bytes, -1 none)."""
        if isinstance(target, str):
            handle = self.create(target, access=Access.FILE_READ_ATTRIBUTES)
            try:
                self.set_quota(handle.fobx, entries)
            finally:
                self.close_handle(handle.fobx, wait=False)
            return
        self.run(rq.set_quota(target, entries, self._timeout_ms))

    def watch(
        self,
        fobx: int,
        completion_filter: int = 0x3,
        *,
        tree: bool = False,
        timeout: float | None = None,
    ) -> list[dict[str, Any]] | None:
        """Wait for changes in an open directory (FILE_NOTIFY_CHANGE_FILE_NAME | DIR_NAME by
        default; SIZE 0x8, LAST_WRITE 0x10...): [{"action": "added"|"removed"|"modified",
        "name": ...}], or None for "too many, list again". Changes between two calls on the
        same handle are not lost. Raises STATUS_IO_TIMEOUT when nothing changed in time; the
        wait ends on the daemon then too (and on Ctrl-C: KeyboardInterrupt cancels it)."""
        timeout_ms = int((timeout if timeout is not None else self.timeout) * 1000)
        return self.run(rq.notify(fobx, completion_filter, timeout_ms, tree=tree))

    def flush_handle(self, fobx: int) -> None:
        self.run(rq.flush(fobx, self._timeout_ms))

    def query_directory(
        self, fobx: int, pattern: str = "*", *, restart: bool = False, max_entries: int = 512
    ) -> list[FileInfo] | None:
        """One batch of entries; None at the end of the enumeration."""
        return self.run(
            rq.query_directory(
                fobx, self._timeout_ms, pattern, restart=restart, max_entries=max_entries
            )
        )

    def query_volume(
        self, fobx: int, info_class: int = FsInformationClass.FileFsFullSizeInformation
    ) -> dict[str, Any]:
        return self.run(rq.query_volume(fobx, self._timeout_ms, info_class))

    def _control(self, code: int, **args: Any) -> Any:
        return self.run(rq.control(code, self._timeout_ms, **args))

    # ------------------------------------------------------------------ path operations
    def open(
        self,
        path: str,
        mode: str = "rb",
        *,
        buffering: int = -1,
        encoding: str | None = None,
        newline: str | None = None,
        read_ahead: int = READ_AHEAD,
        lease: bool = False,
    ) -> Any:
        """Like the built-in open(): modes r, w, a, x, with + and b/t. Sequential reading
        keeps ``read_ahead`` reads in flight ahead of the reader (0: none). ``lease=True``: see
        ``create``."""
        raw = RemoteFile(self, path, mode, read_ahead=read_ahead, lease=lease)
        if "b" in mode:
            if buffering == 0:
                return raw
            size = buffering if buffering > 0 else self._buffer_size(raw)
            if raw.readable() and raw.writable():
                return io.BufferedRandom(raw, size)
            if raw.writable():
                return io.BufferedWriter(raw, size)
            return io.BufferedReader(raw, size)
        buffered: io.BufferedIOBase
        if raw.readable() and raw.writable():
            buffered = io.BufferedRandom(raw, READ_CHUNK)
        elif raw.writable():
            buffered = io.BufferedWriter(raw, READ_CHUNK)
        else:
            buffered = io.BufferedReader(raw, READ_CHUNK)
        return io.TextIOWrapper(buffered, encoding=encoding or "utf-8", newline=newline)

    def _buffer_size(self, raw: RemoteFile) -> int:
        """A file object's default buffer: a shared-memory slot for a reader that can use one
        (a round trip costs the same for 1 MiB or 4), else READ_CHUNK."""
        if raw.readable() and not raw.writable() and self._shared_memory:
            # a leased file's reads go through the lease cache: at most what it keeps at once
            return MAX_FILL if self.leased(raw.fobx) else shm.SLOT_BYTES
        return READ_CHUNK

    def stat(self, path: str) -> FileInfo:
        """Open for attributes and close, as one compound: one round trip to the daemon and
        one message to the mini-redirector."""
        answer, _ = self.collect(self.submit(rq.stat_compound(path, self._timeout_ms)))
        return rq.stat_result(answer)

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
        except FileNotFoundError:
            return False
        return True

    def scandir(self, path: str, pattern: str = "*") -> Iterator[FileInfo]:
        """The entries of folder ``path`` matching ``pattern``. The open and the first two
        batches go as one compound (``rq.list_items``): a folder of up to one batch is one
        round trip; a longer one goes on, batch by batch, on the same handle. The core sends a
        compound's items again after a lost connection only as a whole, so what found it lost
        (the create, or the first query) goes again as a request of its own, which it does."""
        outcomes = self.compound(rq.list_items(path, self._timeout_ms, pattern))
        if outcomes[0].status in CONNECTION_LOST:  # (sent again alone, as the core does that)
            handle = self.run(rq.list_open(path, self._timeout_ms))
        else:
            handle = outcomes[0].unwrap()
        try:
            entries, over = rq.list_result(outcomes)
            yield from entries
            if over:
                return
            while (batch := self.query_directory(handle.fobx, pattern)) is not None:
                yield from batch
        finally:
            self.close_handle(handle.fobx, wait=False)

    def listdir(self, path: str, pattern: str = "*") -> list[str]:
        return [e.name for e in self.scandir(path, pattern)]

    def mkdir(self, path: str, *, parents: bool = False, exist_ok: bool = False) -> None:
        try:
            handle = self.create(
                path,
                access=Access.FILE_LIST_DIRECTORY,
                disposition=CreateDisposition.FILE_CREATE,
                options=CreateOptions.FILE_DIRECTORY_FILE,
            )
        except FileExistsError:
            if exist_ok and self.stat(path).is_dir:
                return
            raise
        except FileNotFoundError as exc:
            if not parents or getattr(exc, "status", None) != S.STATUS_OBJECT_PATH_NOT_FOUND:
                raise
            self.mkdir(_parent(path), parents=True, exist_ok=True)
            self.mkdir(path, exist_ok=exist_ok)
            return
        self.close_handle(handle.fobx)

    def remove(self, path: str) -> None:
        """Delete a file (FILE_DELETE_ON_CLOSE on a non-directory open)."""
        handle = self.create(
            path,
            access=Access.DELETE,
            options=CreateOptions.FILE_NON_DIRECTORY_FILE | CreateOptions.FILE_DELETE_ON_CLOSE,
        )
        self.close_handle(handle.fobx)

    def rmdir(self, path: str) -> None:
        handle = self.create(
            path,
            access=Access.DELETE,
            options=CreateOptions.FILE_DIRECTORY_FILE | CreateOptions.FILE_DELETE_ON_CLOSE,
        )
        self.close_handle(handle.fobx)

    def delete(self, path: str) -> None:
        """Delete a file or an empty directory (FileDispositionInformation)."""
        handle = self.create(path, access=Access.DELETE)
        try:
            self.set_info(handle.fobx, FileInformationClass.FileDispositionInformation, delete=True)
        finally:
            self.close_handle(handle.fobx)

    def rename(self, src: str, dst: str, *, replace: bool = False) -> None:
        handle = self.create(src, access=Access.DELETE)
        try:
            self.set_info(
                handle.fobx, FileInformationClass.FileRenameInformation, target=dst, replace=replace
            )
        finally:
            self.close_handle(handle.fobx)

    def truncate(self, path: str, size: int) -> None:
        handle = self.create(path, access=Access.GENERIC_WRITE)
        try:
            self.set_info(handle.fobx, FileInformationClass.FileEndOfFileInformation, size=size)
        finally:
            self.close_handle(handle.fobx)

    def read_bytes(self, path: str) -> bytes:
        """The whole file. A create, a read of its first SMALL_READ_BYTES and a close go out as
        one compound: a shorter answer is the whole file, one round trip. A longer file is read
        again from its start, so that what comes back is one open's read: up to
        WHOLE_READ_BYTES as one more such compound, sized by what the first create answered;
        a larger one (or one that grew past that window) through an open file."""
        outcomes = self.compound(rq.read_file_items(path, self._timeout_ms))
        data = rq.read_file_result(outcomes)
        if len(data) < rq.SMALL_READ_BYTES:
            return data
        window = rq.whole_read_window(outcomes)
        if window is not None:
            items = rq.read_file_items(path, self._timeout_ms, window)
            data = rq.read_file_result(self.compound(items))
            if len(data) < window:
                return data
        with self.open(path, "rb", buffering=0) as f:
            return bytes(f.readall())

    def write_bytes(self, path: str, data: bytes, *, exclusive: bool = False) -> int:
        """Create or overwrite the file with ``data`` (``exclusive``: only create it, as mode
        "x"); the bytes written, counted once the file is closed. Up to SMALL_WRITE_BYTES the
        create, the write and the close go out as one compound (one round trip); more go
        through an open file (shared memory with a daemon on this host)."""
        view = memoryview(data).cast("B")
        if len(view) <= SMALL_WRITE_BYTES:
            disposition = CreateDisposition.FILE_CREATE if exclusive else _MODES["w"][1]
            items = rq.write_file_items(path, view, self._timeout_ms, disposition)
            written = rq.write_file_result(self.compound(items))
            if written == len(view):
                return written
            exclusive = False  # a short write (none seen): this client made the file
        with self.open(path, "xb" if exclusive else "wb", buffering=0) as f:
            written = 0
            while written < len(view):
                written += f.write(view[written:])  # pieces and slots: write_handle
            return written

    def volume(self, path: str) -> dict[str, Any]:
        handle = self.create(path, access=Access.FILE_READ_ATTRIBUTES)
        try:
            return self.query_volume(handle.fobx)
        finally:
            self.close_handle(handle.fobx, wait=False)

    # ------------------------------------------------------------------ management
    def ping(self) -> bool:
        return bool(self._control(FsctlCode.RDBSS_PING).get("pong"))

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control(FsctlCode.RDBSS_STATUS)
        return result

    def shares(self, minirdr: str | None = None) -> dict[str, Any]:
        args = {"minirdr": minirdr} if minirdr else {}
        result: dict[str, Any] = self._control(FsctlCode.RDBSS_LIST_SHARES, **args)
        return result

    def add_share(self, share: str, path: str, minirdr: str | None = None) -> None:
        args = {"minirdr": minirdr} if minirdr else {}
        self._control(FsctlCode.RDBSS_ADD_SHARE, share=share, path=path, **args)

    def remove_share(self, share: str, minirdr: str | None = None) -> None:
        args = {"minirdr": minirdr} if minirdr else {}
        self._control(FsctlCode.RDBSS_REMOVE_SHARE, share=share, **args)

    def faults(self, minirdr: str) -> dict[str, Any]:
        """The fault rules of a ``faulty`` mini-redirector and how often each matched/fired."""
        result: dict[str, Any] = self._control(FsctlCode.RDBSS_LIST_FAULTS, minirdr=minirdr)
        return result

    def set_faults(
        self, minirdr: str, rules: list[dict[str, Any]], seed: int | None = None
    ) -> dict[str, Any]:
        """Replace the fault rules (and optionally the seed); the schedule starts over."""
        args: dict[str, Any] = {"minirdr": minirdr, "rules": rules}
        if seed is not None:
            args["seed"] = seed
        result: dict[str, Any] = self._control(FsctlCode.RDBSS_SET_FAULTS, **args)
        return result


def _info_or_error(outcome: Outcome[Any]) -> FileInfo | OSError:
    if outcome.ok:
        handle: Handle = outcome.unwrap()
        return handle.info
    error = outcome.error()
    assert isinstance(error, OSError)
    return error


def _parent(path: str) -> str:
    unified = path.replace("/", "\\").rstrip("\\")
    return unified.rsplit("\\", 1)[0]


_MODES = {
    "r": (Access.GENERIC_READ, CreateDisposition.FILE_OPEN),
    "w": (Access.GENERIC_WRITE, CreateDisposition.FILE_OVERWRITE_IF),
    "a": (Access.FILE_APPEND_DATA | Access.FILE_READ_ATTRIBUTES, CreateDisposition.FILE_OPEN_IF),
    "x": (Access.GENERIC_WRITE, CreateDisposition.FILE_CREATE),
}


class RemoteFile(io.RawIOBase):
    """An open remote file (one FOBX), with the raw-file interface of ``io``.

    Read-ahead: from the second read in a row that starts where the previous one ended, the
    file keeps ``read_ahead`` reads of the next chunks in flight on the client's socket, so the
    daemon works while the caller consumes. Bounded memory (``read_ahead`` chunks of at most
    READ_AHEAD_MAX bytes); dropped on seek, write, truncate, close, on a short read (end of
    file) and on an error (which the read that meets it raises). Data read ahead is as fresh
    as when it was requested, as with any read-ahead cache without leases."""

    def __init__(
        self, client: Client, path: str, mode: str, *, read_ahead: int = 0, lease: bool = False
    ) -> None:
        super().__init__()
        kinds = [m for m in mode if m in "rwax"]
        if len(kinds) != 1 or any(m not in "rwaxbt+" for m in mode):
            raise ValueError(f"invalid mode {mode!r}")
        access, disposition = _MODES[kinds[0]]
        self._append = kinds[0] == "a"
        self._read = kinds[0] == "r" or "+" in mode
        self._write = kinds[0] != "r" or "+" in mode
        if "+" in mode:
            access |= Access.GENERIC_READ | Access.GENERIC_WRITE
        self._client = client
        self.name = path
        self.mode = mode
        self._handle = client.create(
            path,
            access=access,
            disposition=disposition,
            options=CreateOptions.FILE_NON_DIRECTORY_FILE,
            lease=lease,
        )
        self._pos = self._handle.info.size if self._append else 0
        self._read_ahead = max(0, read_ahead)
        self._ahead: deque[tuple[int, int, int]] = deque()  # (offset, length, request id)
        self._ahead_next = 0  # where the next read-ahead request starts
        self._chunk = 0
        self._spare: memoryview | None = None  # the unread rest of a read-ahead chunk...
        self._spare_at = 0  # ...and its offset
        self._last_end = -1  # where the previous read ended (sequential access detection)
        self.read_ahead_hits = 0  # reads served from read-ahead (for tests and benchmarks)

    @property
    def fobx(self) -> int:
        return self._handle.fobx

    @property
    def created(self) -> bool:
        return self._handle.information == CreateInformation.FILE_CREATED

    def readable(self) -> bool:
        return self._read

    def writable(self) -> bool:
        return self._write

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._check(self._read, "not open for reading")
        view = memoryview(buffer).cast("B")[: 64 << 20]
        if self._client.shares_memory_for(len(view)):
            # large reads with a daemon on this host: straight into shared memory (faster than
            # reading ahead through the sockets)
            self._discard_ahead()
            n = self._client.readinto(self.fobx, self._pos, view)
            self._last_end = self._pos + n
        else:
            data = self._read_at(self._pos, len(view))
            n = len(data)
            view[:n] = data
        self._pos += n
        return n

    def readall(self) -> bytes:
        self._check(self._read, "not open for reading")
        known = self._handle.info.size - self._pos  # as large as at the open, at least
        chunks = []
        leased = self._client._holds_lease(self.fobx)  # its reads go through the lease cache
        if self._client.shares_memory_for(known) and not leased:
            # slot by slot through shared memory (one byte more: a file that grew since the open
            # is read on below) into a BytesIO, whose getvalue() hands out its buffer itself:
            # each byte is copied once, from its slot, while the daemon fills the next slot
            self._discard_ahead()
            whole = io.BytesIO()
            count = self._client.read_shared(self.fobx, self._pos, known + 1, whole.write)
            self._pos += count
            self._last_end = self._pos
            if count <= known:
                return whole.getvalue()
            chunks.append(whole.getvalue())
        elif 0 <= known < SHORT_MEANS_END:
            # a small file: one byte more than it had at the open, so that a short answer ends
            # the read without a second round trip (a mini-redirector answers a read in full
            # unless the file ends there, and none splits one this small). Only a read the
            # daemon answers says so: what is left of a read-ahead window may be shorter
            self._discard_ahead()
            first = self._client.read_handle(self.fobx, self._pos, known + 1)
            self._last_end = self._pos + len(first)
            self._pos += len(first)
            if len(first) <= known:
                return first
            chunks.append(first)
        while True:
            data = self._read_at(self._pos, READ_CHUNK)
            if not data:
                break
            chunks.append(bytes(data))
            self._pos += len(data)
        return b"".join(chunks)

    # ------------------------------------------------------------------ read-ahead
    def _read_at(self, pos: int, n: int) -> bytes | memoryview:
        """Up to ``n`` bytes at ``pos``: from the read-ahead window when reading sequentially."""
        sequential = pos == self._last_end
        leased = self._client._holds_lease(self.fobx)  # its reads fill and use the lease cache
        if leased or not self._read_ahead or not sequential or n == 0:
            self._discard_ahead()
            data: bytes | memoryview = self._client.read_handle(self.fobx, pos, n)
        else:
            data = self._from_ahead(pos, n)
        self._last_end = pos + len(data)
        return data

    def _from_ahead(self, pos: int, n: int) -> memoryview:
        spare = self._spare
        if spare is not None and self._spare_at == pos:
            part = spare[:n]
            self._spare = spare[n:] if len(spare) > n else None
            self._spare_at = pos + len(part)
            self.read_ahead_hits += 1
            return part
        self._spare = None
        if self._ahead and self._ahead[0][0] != pos:
            self._discard_ahead()
        if not self._ahead:
            self._chunk = min(max(n, READ_AHEAD_MIN), READ_AHEAD_MAX)
            self._ahead_next = pos
            self._fill_ahead()
        else:
            self.read_ahead_hits += 1
        _offset, length, request_id = self._ahead.popleft()
        try:
            done, payload = self._client.collect(request_id)
        except BaseException:
            self._discard_ahead()
            raise
        if not isinstance(done, RxCompletion) or done.status not in (
            S.STATUS_SUCCESS,
            S.STATUS_END_OF_FILE,
        ):
            self._discard_ahead()
            raise error_for_status(done.status, done.message)
        data = (
            payload if payload is not None and done.status == S.STATUS_SUCCESS else memoryview(b"")
        )
        if len(data) < length:
            self._discard_ahead()  # the end of the file: nothing more to read ahead
        else:
            self._fill_ahead()  # keep the window full before the caller copies this chunk
        if len(data) > n:
            self._spare, self._spare_at = data[n:], pos + n
            return data[:n]
        return data

    def _fill_ahead(self) -> None:
        while len(self._ahead) < self._read_ahead:
            request = rq.read(self.fobx, self._ahead_next, self._chunk, self._client._timeout_ms)
            request_id = self._client.submit(request.ctx)
            self._ahead.append((self._ahead_next, self._chunk, request_id))
            self._ahead_next += self._chunk

    def _discard_ahead(self) -> None:
        if self._ahead:
            self._client.abandon([request_id for _, _, request_id in self._ahead])
            self._ahead.clear()
        self._spare = None

    def write(self, data: Any) -> int:
        self._check(self._write, "not open for writing")
        self._discard_ahead()
        self._last_end = -1
        view = memoryview(data).cast("B")
        if self._append:
            written = self._client.write_handle(self.fobx, -1, view)
            self._pos = self._client.query_info(self.fobx).size
            return written
        written = self._client.write_handle(self.fobx, self._pos, view)
        self._pos += written
        return written

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._client.query_info(self.fobx).size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        if pos != self._pos:
            self._discard_ahead()
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def truncate(self, size: int | None = None) -> int:
        self._check(self._write, "not open for writing")
        self._discard_ahead()
        self._last_end = -1
        size = self._pos if size is None else size
        self._client.set_info(self.fobx, FileInformationClass.FileEndOfFileInformation, size=size)
        return size

    def flush(self) -> None:
        """Nothing to do: every write already went to the daemon. ``sync()`` asks the
        mini-redirector to make the data durable (MRxFlush)."""

    def sync(self) -> None:
        self._check(True, "")
        self._client.flush_handle(self.fobx)

    def stat(self) -> FileInfo:
        return self._client.query_info(self.fobx)

    def close(self) -> None:
        if not self.closed:
            try:
                self._discard_ahead()
                super().close()
            finally:
                self._client.close_handle(self.fobx)

    def _check(self, allowed: bool, message: str) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if not allowed:
            raise io.UnsupportedOperation(message)

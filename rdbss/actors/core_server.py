"""The core process's socket-owning thread: two ROUTER sockets (clients, and the daemon's own
peers), one poll loop, and the ``RdbssCore`` it drives. Request/reply traffic is handled right
here on the socket thread: passing every message into an actor costs a thread wake-up per
message and halves throughput (docs/architecture.md, The four processes).

Client requests pass the per-client limits of ``rdbss.actors.client_limits`` first: a window of
requests running per client with the rest queued and served round robin between clients, a
bound on requests in flight, and a bound on answer bytes a client has not read."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import zmq

from rdbss.actors.bus import (
    COPY_BELOW,
    CurveKeys,
    Endpoints,
    client_alive,
    drain,
    new_context,
    raw_send,
    readable,
    router,
    send_frames,
)
from rdbss.actors.client_limits import TRACK_BYTES, FairIntake, Queued, UnreadAnswers
from rdbss.actors.metrics import NullMetrics
from rdbss.actors.zap import CLIENT_DOMAIN, PEER_DOMAIN, AllowList, ZapHandler
from rdbss.core.core import RdbssCore
from rdbss.core.types import CoreSettings, Payload
from rdbss.model.drain import may_close
from rdbss.wire.codec import Codec, WireError, refusal_ids
from rdbss.wire.framing import pack_frames, unpack_frames
from rdbss.wire.rxcontext import (
    CompletionBundle,
    Compound,
    CompoundCompletion,
    Heartbeat,
    RequestBundle,
    RxCancel,
    RxCompletion,
    RxContext,
)
from rdbss.wire.status import NtStatus

log = logging.getLogger("rdbss.core")

DRAIN_TIMEOUT_S = 10.0
EXPIRE_EVERY_S = 0.1  # how often queued requests are checked against their deadlines
FORGET_EVERY_S = 5.0  # how often the queues of vanished clients are dropped
# how often a busy loop does the core's housekeeping (silent peers, deferred writes, delayed
# closes, sweeps: all on scales of 100 ms and more); a passed deadline is handled at once
TICK_EVERY_S = 0.01
# Answers already queued on a client socket when the core stops (the last ones of a drain) still
# leave: closing with linger 0 would drop them and a drained read would be lost after all.
CLOSE_LINGER_MS = 500


@dataclass(slots=True)
class RemoteClient:
    """A client on another host: the socket and routing id to answer it on."""

    sock: zmq.Socket[bytes]
    routing: bytes
    last_seen: float
    unreachable_since: float | None = None


class ClientConnections:
    """How many client connections are open on the core's client sockets (accepted minus
    disconnected, from the sockets' monitors): a stopping core waits for answered clients
    only while some are connected (rdbss.model.drain)."""

    EVENTS = int(zmq.EVENT_ACCEPTED) | int(zmq.EVENT_DISCONNECTED)

    def __init__(self, zctx: zmq.Context[zmq.Socket[bytes]], socks: list[zmq.Socket[bytes]]):
        self.open = 0
        self._socks = socks
        self._monitors: list[zmq.Socket[bytes]] = []
        for sock in socks:
            address = f"inproc://rdbss-core-clients-{id(sock):x}"
            sock.monitor(address, self.EVENTS)
            monitor = zctx.socket(zmq.PAIR)
            # unbounded: libzmq sends events blocking from its I/O thread
            monitor.setsockopt(zmq.RCVHWM, 0)
            monitor.connect(address)
            self._monitors.append(monitor)

    def read(self) -> int:
        """Take the events that arrived; the connections open now."""
        for monitor in self._monitors:
            while readable(monitor):
                frames = monitor.recv_multipart(zmq.NOBLOCK)
                # the event as a native uint16, then a uint32 value (zmq_socket_monitor)
                event = int.from_bytes(frames[0][:2], sys.byteorder)
                if event == zmq.EVENT_ACCEPTED:
                    self.open += 1
                elif event == zmq.EVENT_DISCONNECTED:
                    self.open = max(0, self.open - 1)
        return self.open

    def close(self) -> None:
        for sock in self._socks:
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
        for monitor in self._monitors:
            monitor.close(0)


@dataclass(frozen=True, slots=True)
class TcpListen:
    """The core's tcp:// ports (other hosts), all CURVE, admitted by the allow-list."""

    keys: CurveKeys
    allow: AllowList
    peer: str = ""  # endpoint for mini-redirectors of other hosts
    client: str = ""  # endpoint for clients of other hosts
    client_grace_s: float = 60.0  # a remote client unreachable this long is gone


class CoreServer:
    def __init__(
        self,
        endpoints: Endpoints,
        settings: CoreSettings,
        metrics: NullMetrics | None = None,
        tcp: TcpListen | None = None,
        *,
        intake: FairIntake | None = None,
        unread: UnreadAnswers | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.intake = intake or FairIntake()
        self.unread = unread or UnreadAnswers()
        self._next_expire = 0.0
        self._next_forget = 0.0
        self.codec = Codec()
        # the ipc bus's peers are the daemon's own processes (codec: trusted); tcp peers are not
        self.bus_codec = Codec(trusted=True)
        self.zctx = new_context()
        self.clients = router(self.zctx, endpoints.client, untrusted=True)
        self.bus = router(self.zctx, endpoints.bus, untrusted=False)
        self.tcp = tcp
        self.zap: ZapHandler | None = None
        self.tcp_bus: zmq.Socket[bytes] | None = None
        self.tcp_clients: zmq.Socket[bytes] | None = None
        if tcp is not None:
            self.zap = ZapHandler(self.zctx, tcp.allow)  # bound before any CURVE socket
            self.zap.start()
            if tcp.peer:
                self.tcp_bus = router(
                    self.zctx, tcp.peer, untrusted=True, curve=tcp.keys, zap_domain=PEER_DOMAIN
                )
            if tcp.client:
                self.tcp_clients = router(
                    self.zctx, tcp.client, untrusted=True, curve=tcp.keys, zap_domain=CLIENT_DOMAIN
                )
        # which bus socket each peer is on: ipc for this host's processes, tcp for other hosts
        self.peer_sockets: dict[str, zmq.Socket[bytes]] = {}
        self.connections = ClientConnections(
            self.zctx, [s for s in (self.clients, self.tcp_clients) if s is not None]
        )
        self._last_answer_at: float | None = None
        self.remote_clients: dict[bytes, RemoteClient] = {}
        self._refused_logged: dict[str, float] = {}
        self.core = RdbssCore(
            self, time.monotonic, settings, metrics, is_client_alive=self.client_alive
        )
        self._stop = threading.Event()

    # ---------------------------------------------------------------- Outbox
    def _route(self, ident: bytes) -> tuple[zmq.Socket[bytes], bytes]:
        """The socket and routing id a client is answered on (remote clients: their tcp
        socket and their own routing id)."""
        self._last_answer_at = time.monotonic()
        remote = self.remote_clients.get(ident)
        if remote is not None:
            return remote.sock, remote.routing
        return self.clients, ident

    def to_client(
        self,
        ident: bytes,
        done: RxCompletion | CompoundCompletion | CompletionBundle,
        payload: Payload = None,
    ) -> None:
        if isinstance(done, CompletionBundle):
            for item in done.items:
                self.intake.done(ident, item.request_id)
            self._bundle_to_client(ident, done)
            return
        self.intake.done(ident, done.request_id)
        if (
            payload is not None
            and isinstance(done, RxCompletion)
            and memoryview(payload).nbytes >= TRACK_BYTES
            and self.unread.over(ident)
        ):
            # the client does not read its answers: a read's data is not held for it
            done, payload = self._quota_exceeded(ident, done.request_id), None
        sock, routing = self._route(ident)
        try:
            frames = pack_frames(self.codec, done, payload)
            if len(frames[0]) > self.codec.limits.max_header_bytes:
                # the client would refuse it as malformed and wait for its deadline
                log.warning("answer id=%d too large (%d bytes)", done.request_id, len(frames[0]))
                frames = pack_frames(
                    self.codec,
                    RxCompletion(
                        done.request_id,
                        NtStatus.STATUS_BUFFER_OVERFLOW,
                        message=f"the answer's header is {len(frames[0])} bytes, more than "
                        f"{self.codec.limits.max_header_bytes}; ask for less at once",
                    ),
                )
            self._send_tracked(ident, sock, [routing, *frames])
        except zmq.ZMQError as exc:  # the client went away: nothing to tell it
            log.debug("client %s unreachable: %s", ident.hex(), exc)
        except WireError as exc:
            log.error("cannot encode completion id=%d: %s", done.request_id, exc)
            fallback = RxCompletion(
                done.request_id,
                NtStatus.STATUS_INTERNAL_ERROR,
                message="the answer could not be encoded",
            )
            sock.send_multipart([routing, *pack_frames(self.codec, fallback)])

    def _send_tracked(self, ident: bytes, sock: zmq.Socket[bytes], frames: list[Any]) -> None:
        """Send an answer; its large frames with a tracker, so ``unread`` knows when the
        client has taken them."""
        last = len(frames) - 1
        for i, frame in enumerate(frames):
            flags = zmq.SNDMORE if i < last else 0
            nbytes = memoryview(frame).nbytes if i > 1 else 0
            if nbytes >= TRACK_BYTES:
                tracker = sock.send(memoryview(frame), flags, copy=False, track=True)
                self.unread.add(ident, tracker, nbytes)
            else:
                raw_send(sock, frame, flags, nbytes < COPY_BELOW)

    def _quota_exceeded(self, ident: bytes, request_id: int) -> RxCompletion:
        return RxCompletion(
            request_id,
            NtStatus.STATUS_QUOTA_EXCEEDED,
            message=f"this client has {self.unread.unread_mib_text(ident)} of answers not read, "
            "the limit (max_client_unread_mib); read the answers before asking for more",
        )

    def client_alive(self, ident: bytes) -> bool:
        """A local client: its process exists. A remote one: a probe (a Heartbeat, which
        clients ignore) still finds its connection, or it has been unreachable for less than
        ``client_grace_s`` (a link that comes back keeps the client's handles)."""
        remote = self.remote_clients.get(ident)
        if remote is None:
            return client_alive(ident)
        now = time.monotonic()
        try:
            probe = pack_frames(self.codec, Heartbeat(name="core"))
            remote.sock.send_multipart([remote.routing, *probe], flags=zmq.NOBLOCK)
            remote.unreachable_since = None
            return True
        except zmq.ZMQError:
            if remote.unreachable_since is None:
                remote.unreachable_since = now
            grace = self.tcp.client_grace_s if self.tcp else 0.0
            if now - remote.unreachable_since < grace:
                return True
            log.info("remote client %s unreachable for %.0f s: gone", ident.hex()[-8:],
                     now - remote.unreachable_since)  # fmt: skip
            del self.remote_clients[ident]
            return False

    def _forget_idle_remote_clients(self, now: float) -> None:
        """Remote clients holding nothing are forgotten after a quiet while (they come back
        as new on their next message)."""
        for ident, remote in list(self.remote_clients.items()):
            quiet = self.tcp.client_grace_s if self.tcp else 0.0
            if now - remote.last_seen > quiet and not self.core.holds(ident):
                del self.remote_clients[ident]

    def _bundle_to_client(self, ident: bytes, bundle: CompletionBundle) -> None:
        try:
            frames = pack_frames(self.codec, bundle)
        except WireError:
            frames = []
        if not frames or len(frames[0]) > self.codec.limits.max_header_bytes:
            # too large (or one item not encodable): each answer on its own, checked alone
            payload_of = dict(zip(bundle.payload_items, bundle.payloads, strict=True))
            for index, done in enumerate(bundle.items):
                self.to_client(ident, done, payload_of.get(index))
            return
        sock, routing = self._route(ident)
        try:
            send_frames(sock, [routing, *frames])
        except zmq.ZMQError as exc:
            log.debug("client %s unreachable: %s", ident.hex(), exc)

    def to_peer(
        self,
        name: str,
        msg: RxContext | RxCancel | Heartbeat | RxCompletion | Compound,
        payload: Payload = None,
    ) -> bool:
        sock = self.peer_sockets.get(name, self.bus)
        try:
            send_frames(sock, [name.encode(), *pack_frames(self.codec, msg, payload)])
            return True
        except zmq.ZMQError as exc:
            log.debug("peer %s unreachable: %s", name, exc)
            return False

    # ---------------------------------------------------------------- loop
    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        poller = zmq.Poller()
        client_socks = [self.clients]
        for sock in (self.clients, self.bus, self.tcp_bus, self.tcp_clients):
            if sock is not None:
                poller.register(sock, zmq.POLLIN)
        if self.tcp_clients is not None:
            client_socks.append(self.tcp_clients)
        drain_until: float | None = None
        next_tick = 0.0
        log.info("core listening client=%s bus=%s", self.endpoints.client, self.endpoints.bus)
        if self.tcp is not None:
            log.info("core listening on tcp peer=%s client=%s", self.tcp.peer, self.tcp.client)
        try:
            while True:
                if self._stop.is_set() and drain_until is None:
                    self.core.stopping = True
                    drain_until = time.monotonic() + DRAIN_TIMEOUT_S
                    log.info("draining %d pending requests", len(self.core.pending))
                if drain_until is not None and may_close(
                    now=time.monotonic(),
                    pending=len(self.core.pending),
                    drain_until=drain_until,
                    last_answer_at=self._last_answer_at,
                    connected=self.connections.read(),
                ):
                    break
                timeout = 100
                nxt = self.core.next_deadline()
                if nxt is not None:
                    timeout = max(0, min(timeout, int((nxt - time.monotonic()) * 1000) + 1))
                for sock, _ in poller.poll(timeout):
                    # drain what is there, up to a batch, before looking at the other socket;
                    # what the batch sends to a mini-redirector leaves as one message
                    from_client = sock in client_socks
                    self.core.begin_batch()
                    try:
                        for frames in drain(sock):
                            if from_client:
                                self._on_client_frames(frames, sock)
                            else:
                                self._on_bus_frames(frames, sock)
                    finally:
                        self.core.end_batch()
                now = time.monotonic()
                if self.intake.queued():
                    self._pump(now)
                self._intake_housekeeping(now)
                due = self.core.next_deadline()
                if now < next_tick and (due is None or due > now):
                    continue
                next_tick = now + TICK_EVERY_S
                try:
                    self.core.tick()
                    if self.remote_clients:
                        self._forget_idle_remote_clients(time.monotonic())
                except Exception:
                    log.exception("housekeeping failed")
        finally:
            self.core.close()
            log.info("core stopped")
            self.connections.close()
            for sock in (self.clients, self.tcp_clients):
                if sock is not None:
                    sock.close(CLOSE_LINGER_MS)
            for sock in (self.bus, self.tcp_bus):
                if sock is not None:
                    sock.close(0)
            if self.zap is not None:
                self.zap.stop()
            self.zctx.term()

    def _on_client_frames(self, frames: list[zmq.Frame], sock: zmq.Socket[bytes]) -> None:
        ident = frames[0].bytes
        if sock is not self.clients:
            # a remote client: its identity is its own choice, so it is namespaced by its key
            # (two keys can never share handles), and the key must still be granted
            user = frames[1].get("User-Id") if len(frames) > 1 else None
            grant = self.tcp.allow.grant(user) if self.tcp else None
            if grant is None or not grant.client:
                return
            routing = ident
            ident = b"r" + hashlib.blake2b(f"{user}".encode() + routing, digest_size=16).digest()
            now = time.monotonic()
            remote = self.remote_clients.get(ident)
            if remote is None:
                self.remote_clients[ident] = RemoteClient(sock, routing, now)
            else:
                remote.last_seen = now
        try:
            msg, payload = unpack_frames(self.codec, frames[1:])
            if isinstance(msg, RxCancel):
                self._on_client_cancel(ident, msg)
                return
            if not isinstance(msg, (RxContext, Compound, RequestBundle)):
                raise WireError(f"clients send requests, not {type(msg).__name__}")
        except WireError as exc:
            # answered at once with the ids that can be read, so the sender is not left
            # waiting for its deadline (a bundle's items are answered each)
            ids = refusal_ids(frames[1].buffer) if len(frames) > 1 else [0]
            log.info("bad request from client %s: %s", ident.hex()[-6:], exc.strerror)
            refused = [RxCompletion(i, exc.status, message=exc.strerror or "") for i in ids]
            self.to_client(ident, refused[0] if len(refused) == 1 else CompletionBundle(refused))
            return
        if isinstance(msg, RequestBundle):
            # separate requests that travelled together: each as if it had come alone
            payload_of = dict(zip(msg.payload_items, msg.payloads, strict=True))
            for index, item in enumerate(msg.items):
                self._admit(ident, item, payload_of.get(index))
            return
        self._admit(ident, msg, payload if payload is None else frames[2])

    def _admit(self, ident: bytes, msg: RxContext | Compound, payload: Payload) -> None:
        """A client request passes the client's limits: runs now, waits in its queue, or is
        refused at once with a named status."""
        if self.unread.over(ident):
            self.to_client(ident, self._quota_exceeded(ident, msg.request_id))
            return
        verdict = self.intake.admit(ident, msg, payload, time.monotonic())
        if verdict == "run":
            self._client_request(ident, msg, payload)
        elif verdict == "full":
            self.to_client(
                ident,
                RxCompletion(
                    msg.request_id,
                    NtStatus.STATUS_INSUFFICIENT_RESOURCES,
                    message=f"this client has {self.intake.max_requests} requests in flight, "
                    "the limit (max_client_requests); wait for answers before sending more",
                ),
            )

    def _pump(self, now: float) -> None:
        """Run queued requests while their clients' windows have room, round robin."""
        self.core.begin_batch()
        try:
            while (turn := self.intake.next(now)) is not None:
                ident, item = turn
                if self.unread.over(ident):
                    self.to_client(ident, self._quota_exceeded(ident, item.msg.request_id))
                else:
                    self._client_request(ident, item.msg, item.payload)
        finally:
            self.core.end_batch()

    def _intake_housekeeping(self, now: float) -> None:
        if now >= self._next_expire and self.intake.queued():
            self._next_expire = now + EXPIRE_EVERY_S
            for ident, item in self.intake.expired(now):
                self._answer_queued(ident, item, NtStatus.STATUS_IO_TIMEOUT, "its deadline passed")
        if now >= self._next_forget:
            self._next_forget = now + FORGET_EVERY_S
            self.connections.read()  # the monitors' events do not pile up
            for ident in self.intake.clients():
                if not self.client_alive(ident):
                    self.intake.forget(ident)
                    self.unread.forget(ident)

    def _answer_queued(self, ident: bytes, item: Queued, status: int, why: str) -> None:
        self.to_client(
            ident,
            RxCompletion(
                item.msg.request_id,
                status,
                message=f"not run: {why} while it waited behind this client's other requests",
            ),
        )

    def _client_request(self, ident: bytes, msg: RxContext | Compound, payload: Payload) -> None:
        try:
            self.core.on_client(ident, msg, payload)
        except Exception:  # a bug must cost one request, never the core and every handle
            log.exception("request failed req=%s", msg.origin)
            self.to_client(
                ident,
                RxCompletion(
                    msg.request_id,
                    NtStatus.STATUS_INTERNAL_ERROR,
                    message="internal error in the rdbss core (see its log)",
                ),
            )

    def _on_client_cancel(self, ident: bytes, cancel: RxCancel) -> None:
        """A cancel is never answered itself: the request it names is."""
        item = self.intake.cancel(ident, cancel.request_id)
        if item is not None:
            status = (
                NtStatus.STATUS_IO_TIMEOUT
                if cancel.reason == "deadline"
                else NtStatus.STATUS_CANCELLED
            )
            self._answer_queued(ident, item, status, f"cancelled ({cancel.reason})")
            return
        try:
            self.core.on_cancel(ident, cancel)
        except Exception:
            log.exception("cancel failed req=%s:%d", ident.hex()[-6:], cancel.request_id)

    def _on_bus_frames(self, frames: list[zmq.Frame], sock: zmq.Socket[bytes]) -> None:
        name = frames[0].bytes.decode("utf-8", "replace")
        if len(frames) < 2:
            return
        if sock is not self.bus:
            # a peer on another host: its key must be granted this name, on every message
            grant = self.tcp.allow.grant(frames[1].get("User-Id")) if self.tcp else None
            if grant is None or not grant.may_register(name):
                now = time.monotonic()
                if now - self._refused_logged.get(name, -60.0) >= 60.0:  # once a minute
                    self._refused_logged[name] = now
                    log.warning("peer %r over tcp: its key is not granted that name", name)
                return
        try:
            codec = self.bus_codec if sock is self.bus else self.codec
            msg, payload = unpack_frames(codec, frames[1:])
        except WireError as exc:
            log.error("bad message from peer %s: %s", name, exc.strerror)
            return
        if self.peer_sockets.get(name, self.bus) is not sock:
            log.info("peer %s now on %s", name, "tcp" if sock is not self.bus else "ipc")
            self.peer_sockets[name] = sock
        try:
            self.core.on_peer(name, msg, payload if payload is None else frames[2])
        except Exception:
            log.exception("message from peer %s failed", name)

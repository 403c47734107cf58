"""The process host of a bus peer (a mini-redirector or the connection manager).

One I/O thread owns the DEALER socket to the core's bus. It registers (RxRegisterMinirdr),
heartbeats, and hands every request to the peer's ``handler``. A watchdog thread, which request
work cannot hold up, touches the process's alive file (``bus.alive_file``) every
``HEARTBEAT_S`` while the I/O loop goes round at least every ``LOOP_STALL_S``: the supervisor
kills a process whose file goes stale, so a frozen process (SIGSTOP) is found within
``ALIVE_STALE_S`` and one whose loop spins or hangs within ``LOOP_STALL_S + ALIVE_STALE_S``,
while a routine that keeps the loop busy for less than ``LOOP_STALL_S`` costs nothing. Work
that must leave the socket thread (connection set-up, blocking network calls) runs in pykka
actors, which answer through ``post()``: a per-thread inproc PUSH socket that the I/O thread
drains. ZeroMQ sockets are not thread-safe, so nothing but the I/O thread touches the DEALER.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from rdbss.actors.bus import (
    NOBLOCK,
    Endpoints,
    dealer,
    drain,
    new_context,
    send_frames,
)
from rdbss.wire.codec import Codec, WireError
from rdbss.wire.framing import Buffer, pack_frames, unpack_frames
from rdbss.wire.rxcontext import (
    LEAVING,
    REGISTERED_NEW,
    UNKNOWN_PEER,
    Compound,
    CompoundCompletion,
    Heartbeat,
    Message,
    Register,
    RxCancel,
    RxCompletion,
    RxContext,
)
from rdbss.wire.status import NtStatus

log = logging.getLogger("rdbss.peer")


def fitting_frames(codec: Codec, msg: Message, payload: Buffer | None) -> list[list[Buffer]]:
    """The messages that carry ``msg`` to the core, each header within the codec's limit:
    the core refuses a larger header, and the requests it answers would wait out their
    deadlines. A CompoundCompletion too large goes as its items, one message each (the core
    completes them one by one either way); an answer still too large is STATUS_BUFFER_OVERFLOW,
    as the core answers a client whose answer would not fit."""
    frames = pack_frames(codec, msg, payload)
    limit = codec.limits.max_header_bytes
    if len(frames[0]) <= limit:
        return [frames]
    if isinstance(msg, CompoundCompletion):
        payload_of = dict(zip(msg.payload_items, msg.payloads, strict=True))
        out: list[list[Buffer]] = []
        for index, item in enumerate(msg.items):
            out += fitting_frames(codec, item, payload_of.get(index))
        return out
    if isinstance(msg, RxCompletion):
        log.warning("answer id=%d too large (%d bytes)", msg.request_id, len(frames[0]))
        too_large = RxCompletion(
            msg.request_id,
            NtStatus.STATUS_BUFFER_OVERFLOW,
            message=f"the answer's header is {len(frames[0])} bytes, more than {limit}; "
            "ask for less at once (fewer entries per directory query)",
        )
        return [pack_frames(codec, too_large)]
    return [frames]  # not an answer: the core logs its refusal


HEARTBEAT_S = 0.25
LOOP_STALL_S = 1.5  # the I/O loop has not gone round for this long: stuck (no more touches)
ALIVE_STALE_S = 1.5  # an alive file this old: the supervisor kills the process
RESET_EXIT = 75  # exit code of a peer that restarts clean (EX_TEMPFAIL): not a failure
REREGISTER_S = 2.0  # no answer from the core for this long: register again (core restarted)
LEAVING_LINGER_MS = 200  # how long the last message (LEAVING) may take to leave

Handler = Callable[[RxContext | RxCompletion | RxCancel | Compound, memoryview | None], None]


class PeerBridge:
    def __init__(self, endpoints: Endpoints, registration: Register) -> None:
        self.endpoints = endpoints
        self.registration = registration
        self.name = registration.name
        self.zctx = new_context()
        self._inproc = f"inproc://replies-{id(self)}"
        self._local = threading.local()
        # I/O thread only; what it decodes comes from the core (codec: trusted)
        self._codec = Codec(trusted=True)
        self._stop = threading.Event()
        self._seq = 0
        self._registrations = 0
        self.reset = False  # stopped because the core dropped us: exit with RESET_EXIT
        self._last_heard = 0.0
        self.handler: Handler = lambda msg, payload: None
        #: How many requests the peer holds (queued or STATUS_PENDING), sent with each heartbeat.
        self.pending_count: Callable[[], int] = lambda: 0
        self._pull = self.zctx.socket(zmq.PULL)
        self._pull.bind(self._inproc)
        self._sock = self._connect()
        self._io_thread: int | None = None
        self.alive_file: Path | None = None  # the supervisor's liveness check (module docstring)
        self._loop_seen = time.monotonic()  # the I/O loop last went round
        self._touched = False  # the alive file written once

    def _connect(self) -> zmq.Socket[bytes]:
        return dealer(
            self.zctx, self.endpoints.bus, identity=self.name.encode(), curve=self.endpoints.curve
        )

    # ---------------------------------------------------------------- sending
    def send(self, msg: Message, payload: Buffer | None = None) -> None:
        """Send from the I/O thread (handlers running inline)."""
        try:
            for frames in fitting_frames(self._codec, msg, payload):
                send_frames(self._sock, frames, NOBLOCK)
        except zmq.Again:  # the core is unreachable and the queue is full: never block the loop
            log.warning("core unreachable; dropped %s", type(msg).__name__)
        except WireError as exc:
            self._send_unencodable(msg, exc)

    def post(self, msg: Message, payload: Buffer | None = None) -> None:
        """Send from any thread: through this thread's inproc PUSH to the I/O thread."""
        if threading.get_ident() == self._io_thread:
            self.send(msg, payload)
            return
        push: zmq.Socket[bytes] | None = getattr(self._local, "push", None)
        if push is None:
            push = self.zctx.socket(zmq.PUSH)
            push.connect(self._inproc)
            self._local.push = push
            self._local.codec = Codec()
        try:
            for frames in fitting_frames(self._local.codec, msg, payload):
                send_frames(push, frames)
        except WireError as exc:
            self._send_unencodable(msg, exc, push)

    def _send_unencodable(
        self, msg: Message, exc: WireError, sock: zmq.Socket[bytes] | None = None
    ) -> None:
        log.error("cannot encode %s: %s", type(msg).__name__, exc.strerror)
        if isinstance(msg, RxCompletion):
            fallback = RxCompletion(msg.request_id, 0xC00000E5, message="answer not encodable")
            (sock or self._sock).send_multipart(pack_frames(Codec(), fallback))

    def close_thread_socket(self) -> None:
        """Called by a worker thread before it ends, to release its PUSH socket."""
        push = getattr(self._local, "push", None)
        if push is not None:
            push.close(0)
            self._local.push = None

    # ---------------------------------------------------------------- loop
    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def _restart_clean(self, why: str) -> None:
        log.warning("%s; restarting clean", why)
        self.reset = True
        self._stop.set()

    def _register(self) -> None:
        self.registration.pid = os.getpid()
        if self.endpoints.curve is not None:  # a node: say where we run
            self.registration.host = socket.gethostname()
        self.send(self.registration)

    def connected(self) -> bool:
        """Heard from the core lately (for a node's status)."""
        return time.monotonic() - self._last_heard < REREGISTER_S

    def _reconnect(self, poller: zmq.Poller) -> None:
        """A fresh socket: what the old one queued while the core was unreachable (heartbeats,
        answers the core has long given up on) is dropped instead of arriving as a burst."""
        poller.unregister(self._sock)
        self._sock.close(0)
        self._sock = self._connect()
        poller.register(self._sock, zmq.POLLIN)

    def _touch_alive(self) -> None:
        if self.alive_file is None:
            return
        self._touched = True
        tmp = self.alive_file.with_suffix(f".{threading.get_ident()}.tmp")  # two threads write
        try:
            tmp.write_text(
                f'{{"pid": {os.getpid()}, "connected": {str(self.connected()).lower()}}}'
            )
            os.replace(tmp, self.alive_file)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.alive_file, exc)

    def _watchdog(self) -> None:
        """Touch the alive file while the I/O loop goes round (its own thread)."""
        while not self._stop.wait(HEARTBEAT_S):
            if time.monotonic() - self._loop_seen < LOOP_STALL_S:
                self._touch_alive()
            else:
                log.error("the I/O loop is stuck for %.1f s", time.monotonic() - self._loop_seen)

    def run(self) -> None:
        self._io_thread = threading.get_ident()
        if self.alive_file is not None:
            threading.Thread(target=self._watchdog, name="watchdog", daemon=True).start()
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._pull, zmq.POLLIN)
        self._register()
        registered_at = time.monotonic()
        next_beat = time.monotonic() + HEARTBEAT_S
        log.info("peer %s connecting to %s", self.name, self.endpoints.bus)
        try:
            while not self._stop.is_set():
                for sock, _ in poller.poll(100):
                    for frames in drain(sock):
                        if sock is self._pull:
                            try:
                                send_frames(self._sock, frames, NOBLOCK)
                            except zmq.Again:
                                log.warning("core unreachable; dropped an answer")
                        else:
                            self._on_frames(frames)
                now = time.monotonic()
                self._loop_seen = now
                if now >= next_beat:
                    self._seq += 1
                    self.send(Heartbeat(name=self.name, seq=self._seq, pending=self._pending()))
                    next_beat = now + HEARTBEAT_S
                    silent_since = max(self._last_heard, registered_at)
                    if now - silent_since > REREGISTER_S:
                        log.info("no answer from the core; connecting and registering again")
                        self._reconnect(poller)
                        self._register()
                        registered_at = now
        finally:
            # tell the core at once (its heartbeat timeout would take seconds), then go
            self.send(Heartbeat(name=self.name, seq=LEAVING))
            self._sock.close(linger=LEAVING_LINGER_MS)
            self._pull.close(0)

    def _pending(self) -> int:
        try:
            return self.pending_count()
        except Exception:
            log.exception("pending count failed")
            return 0

    def shutdown(self) -> None:
        # destroy() closes sockets other threads may still hold (term() would wait for them)
        self.zctx.destroy(linger=0)

    def _on_frames(self, frames: list[zmq.Frame]) -> None:
        try:
            msg, payload = unpack_frames(self._codec, frames)
        except WireError as exc:
            log.error("bad message from the core: %s", exc.strerror)
            return
        self._last_heard = time.monotonic()
        if not self._touched:  # at once, saying connected (the watchdog keeps it fresh)
            self._touch_alive()
        if isinstance(msg, Heartbeat):
            if msg.seq == UNKNOWN_PEER:  # the core does not know us (it restarted, or dropped us)
                if self._registrations:
                    # what we hold for the core is void: restart clean now, rather than
                    # register first and serve the new core for a moment before restarting
                    self._restart_clean("the core no longer knows us")
                else:
                    self._register()
            elif msg.seq == REGISTERED_NEW:
                self._registrations += 1
                if self._registrations > 1:
                    # the core dropped us in between: the handles and connections we hold for it
                    # are void; restart clean (the supervisor restarts us at once)
                    self._restart_clean("the core registered us anew")
            return
        if isinstance(msg, (RxContext, RxCompletion, RxCancel, Compound)):
            try:
                self.handler(msg, payload)
            except Exception:
                log.exception("handler failed")


def run_peer(bridge: PeerBridge, on_stop: Callable[[], Any] | None = None) -> int:
    """Run until stopped; the process's exit code (RESET_EXIT when it must restart clean)."""
    bridge.install_signal_handlers()
    try:
        bridge.run()
    finally:
        if on_stop is not None:
            on_stop()
        bridge.shutdown()
    return RESET_EXIT if bridge.reset else 0

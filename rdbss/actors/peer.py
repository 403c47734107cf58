"""The process host of a bus peer (a mini-redirector or the connection manager).

One I/O thread owns the DEALER socket to the core's bus. It registers (RxRegisterMinirdr),
heartbeats, and hands every request to the peer's ``handler``. Work that must leave the socket
thread (connection set-up, blocking network calls) runs in pykka actors, which answer through
``post()``: a per-thread inproc PUSH socket that the I/O thread drains. ZeroMQ sockets are not
thread-safe, so nothing but the I/O thread touches the DEALER.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from rdbss.actors.bus import Endpoints, dealer, new_context
from rdbss.wire.codec import Codec, WireError
from rdbss.wire.framing import Buffer, pack_frames, unpack_frames
from rdbss.wire.rxcontext import Compound, Heartbeat, Message, Register, RxCompletion, RxContext

log = logging.getLogger("rdbss.peer")

HEARTBEAT_S = 0.5
REREGISTER_S = 2.0  # no answer from the core for this long: register again (core restarted)

Handler = Callable[[RxContext | RxCompletion | Compound, memoryview | None], None]


class PeerBridge:
    def __init__(self, endpoints: Endpoints, registration: Register) -> None:
        self.endpoints = endpoints
        self.registration = registration
        self.name = registration.name
        self.zctx = new_context()
        self._inproc = f"inproc://replies-{id(self)}"
        self._local = threading.local()
        self._codec = Codec()  # I/O thread only
        self._stop = threading.Event()
        self._seq = 0
        self._last_heard = 0.0
        self.handler: Handler = lambda msg, payload: None
        self._pull = self.zctx.socket(zmq.PULL)
        self._pull.bind(self._inproc)
        self._sock = dealer(self.zctx, endpoints.bus, identity=self.name.encode())
        self._io_thread: int | None = None

    # ---------------------------------------------------------------- sending
    def send(self, msg: Message, payload: Buffer | None = None) -> None:
        """Send from the I/O thread (handlers running inline)."""
        try:
            self._sock.send_multipart(pack_frames(self._codec, msg, payload), copy=False)
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
            push.send_multipart(pack_frames(self._local.codec, msg, payload), copy=False)
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

    def _register(self) -> None:
        self.registration.pid = os.getpid()
        self.send(self.registration)

    def run(self) -> None:
        self._io_thread = threading.get_ident()
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
                    for _ in range(256):
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        if sock is self._pull:
                            self._sock.send_multipart(frames, copy=False)
                        else:
                            self._on_frames(frames)
                now = time.monotonic()
                if now >= next_beat:
                    self._seq += 1
                    self.send(Heartbeat(name=self.name, seq=self._seq))
                    next_beat = now + HEARTBEAT_S
                    silent_since = max(self._last_heard, registered_at)
                    if now - silent_since > REREGISTER_S:
                        log.info("no answer from the core; registering again")
                        self._register()
                        registered_at = now
        finally:
            self._sock.close(0)
            self._pull.close(0)

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
        if isinstance(msg, Heartbeat):
            if msg.seq == -1:  # the core does not know us (it restarted)
                self._register()
            return
        if isinstance(msg, RxContext | RxCompletion | Compound):
            try:
                self.handler(msg, payload)
            except Exception:
                log.exception("handler failed")


def run_peer(bridge: PeerBridge, on_stop: Callable[[], Any] | None = None) -> None:
    bridge.install_signal_handlers()
    try:
        bridge.run()
    finally:
        if on_stop is not None:
            on_stop()
        bridge.shutdown()

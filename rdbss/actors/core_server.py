"""The core process's socket-owning thread: two ROUTER sockets (clients, and the daemon's own
peers), one poll loop, and the ``RdbssCore`` it drives. Request/reply traffic is handled right
here on the socket thread (DESIGN.md: passing every message into an actor halves throughput)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

import msgpack
import zmq

from rdbss.actors.bus import Endpoints, new_context, router
from rdbss.actors.core import CoreSettings, Payload, RdbssCore
from rdbss.actors.metrics import NullMetrics
from rdbss.wire.codec import DEFAULT_LIMITS, Codec, WireError
from rdbss.wire.framing import pack_frames, unpack_frames
from rdbss.wire.rxcontext import (
    CompletionBundle,
    Compound,
    CompoundCompletion,
    Heartbeat,
    RxCompletion,
    RxContext,
)
from rdbss.wire.status import NtStatus

log = logging.getLogger("rdbss.core")

DRAIN_TIMEOUT_S = 10.0


def _request_id_of(frame: Any) -> int:
    """Best effort: the request id of a message that failed validation, so the answer can be
    matched by its sender. 0 when even that cannot be read."""
    if len(frame) > DEFAULT_LIMITS.max_header_bytes:
        return 0
    try:  # arrays as long as a compound's items: the id of a too-long compound still counts
        data = msgpack.unpackb(
            frame,
            max_str_len=1024,
            max_bin_len=0,
            max_array_len=DEFAULT_LIMITS.max_array_len,
            max_map_len=64,
            max_ext_len=0,
        )
    except Exception:
        return 0
    value = data.get("id") if isinstance(data, dict) else None
    return value if type(value) is int and 0 <= value < 1 << 63 else 0


class CoreServer:
    def __init__(
        self, endpoints: Endpoints, settings: CoreSettings, metrics: NullMetrics | None = None
    ) -> None:
        self.endpoints = endpoints
        self.codec = Codec()
        self.zctx = new_context()
        self.clients = router(self.zctx, endpoints.client, untrusted=True)
        self.bus = router(self.zctx, endpoints.bus, untrusted=False)
        self.core = RdbssCore(self, time.monotonic, settings, metrics)
        self._stop = threading.Event()

    # ---------------------------------------------------------------- Outbox
    def to_client(
        self,
        ident: bytes,
        done: RxCompletion | CompoundCompletion | CompletionBundle,
        payload: Payload = None,
    ) -> None:
        if isinstance(done, CompletionBundle):
            self._bundle_to_client(ident, done)
            return
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
            self.clients.send_multipart([ident, *frames], copy=False)
        except zmq.ZMQError as exc:  # the client went away: nothing to tell it
            log.debug("client %s unreachable: %s", ident.hex(), exc)
        except WireError as exc:
            log.error("cannot encode completion id=%d: %s", done.request_id, exc)
            fallback = RxCompletion(
                done.request_id,
                NtStatus.STATUS_INTERNAL_ERROR,
                message="the answer could not be encoded",
            )
            self.clients.send_multipart([ident, *pack_frames(self.codec, fallback)])

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
        try:
            self.clients.send_multipart([ident, *frames], copy=False)
        except zmq.ZMQError as exc:
            log.debug("client %s unreachable: %s", ident.hex(), exc)

    def to_peer(
        self,
        name: str,
        msg: RxContext | Heartbeat | RxCompletion | Compound,
        payload: Payload = None,
    ) -> bool:
        try:
            self.bus.send_multipart(
                [name.encode(), *pack_frames(self.codec, msg, payload)], copy=False
            )
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
        poller.register(self.clients, zmq.POLLIN)
        poller.register(self.bus, zmq.POLLIN)
        drain_until: float | None = None
        log.info("core listening client=%s bus=%s", self.endpoints.client, self.endpoints.bus)
        try:
            while True:
                if self._stop.is_set() and drain_until is None:
                    self.core.stopping = True
                    drain_until = time.monotonic() + DRAIN_TIMEOUT_S
                    log.info("draining %d pending requests", len(self.core.pending))
                if drain_until is not None and (
                    not self.core.pending or time.monotonic() > drain_until
                ):
                    break
                timeout = 100
                nxt = self.core.next_deadline()
                if nxt is not None:
                    timeout = max(0, min(timeout, int((nxt - time.monotonic()) * 1000) + 1))
                for sock, _ in poller.poll(timeout):
                    # drain what is there, up to a batch, before looking at the other socket;
                    # what the batch sends to a mini-redirector leaves as one message
                    with self.core.batch():
                        for _ in range(256):
                            try:
                                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                            except zmq.Again:
                                break
                            if sock is self.clients:
                                self._on_client_frames(frames)
                            else:
                                self._on_bus_frames(frames)
                try:
                    self.core.tick()
                except Exception:
                    log.exception("housekeeping failed")
        finally:
            log.info("core stopped")
            self.clients.close(0)
            self.bus.close(0)
            self.zctx.term()

    def _on_client_frames(self, frames: list[zmq.Frame]) -> None:
        ident = frames[0].bytes
        try:
            msg, payload = unpack_frames(self.codec, frames[1:])
            if not isinstance(msg, RxContext | Compound):
                raise WireError(f"clients send requests, not {type(msg).__name__}")
        except WireError as exc:
            request_id = _request_id_of(frames[1].buffer) if len(frames) > 1 else 0
            log.info("bad request from client %s: %s", ident.hex()[-6:], exc.strerror)
            self.to_client(ident, RxCompletion(request_id, exc.status, message=exc.strerror or ""))
            return
        try:
            self.core.on_client(ident, msg, payload if payload is None else frames[2])
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

    def _on_bus_frames(self, frames: list[zmq.Frame]) -> None:
        name = frames[0].bytes.decode("utf-8", "replace")
        try:
            msg, payload = unpack_frames(self.codec, frames[1:])
        except WireError as exc:
            log.error("bad message from peer %s: %s", name, exc.strerror)
            return
        try:
            self.core.on_peer(name, msg, payload if payload is None else frames[2])
        except Exception:
            log.exception("message from peer %s failed", name)

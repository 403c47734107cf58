"""A client socket speaking the wire protocol directly (no rdbss.client), for tests that must see
every answer, send cancels by hand or send what the client library never would."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import zmq

from rdbss.actors.bus import Endpoints, connect_client_socket
from rdbss.wire import Codec, RxCancel, RxCompletion, RxContext, pack_frames, unpack_frames
from tests.daemon import Daemon


class RawClient:
    """A client socket speaking the wire protocol directly, to see every answer."""

    def __init__(self, d: Daemon) -> None:
        self.zctx = zmq.Context()
        self.sock = self.zctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        connect_client_socket(self.sock, Endpoints.in_dir(d.runtime_dir))
        self.codec = Codec()

    def send(self, msg: RxContext | RxCancel, payload: bytes | None = None) -> None:
        self.sock.send_multipart(pack_frames(self.codec, msg, payload))

    def receive(self, timeout_s: float) -> RxCompletion | None:
        if not self.sock.poll(int(timeout_s * 1000)):
            return None
        msg, _ = unpack_frames(self.codec, self.sock.recv_multipart())
        assert isinstance(msg, RxCompletion)
        return msg

    def close(self) -> None:
        self.sock.close(0)
        self.zctx.term()


@contextlib.contextmanager
def raw_client(d: Daemon) -> Iterator[RawClient]:
    raw = RawClient(d)
    try:
        yield raw
    finally:
        raw.close()

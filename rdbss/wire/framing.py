"""ZeroMQ multipart framing: ``[header, optional payload]``.

The header is a msgpack message (``codec``); the payload, when present, is raw bytes in its own
frame so large reads and writes are never copied through msgpack. Pure code: works on lists of
buffers, never on sockets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rdbss.wire.codec import DEFAULT_LIMITS, Codec, Limits, WireError
from rdbss.wire.rxcontext import Batched, Message

Buffer = bytes | bytearray | memoryview


class _HasBuffer(Protocol):
    @property
    def buffer(self) -> memoryview: ...


Frame = Buffer | _HasBuffer


def _view(frame: Frame) -> memoryview:
    if isinstance(frame, bytes | bytearray):
        return memoryview(frame)
    if isinstance(frame, memoryview):
        return frame
    return frame.buffer  # zmq.Frame received with copy=False


def pack_frames(codec: Codec, msg: Message, payload: Buffer | None = None) -> list[Buffer]:
    """``[header, payload]``; a compound's payloads (``msg.payloads``) follow its header."""
    header = codec.encode(msg)
    if isinstance(msg, Batched):
        return [header, *msg.payloads]
    if payload is None:
        return [header]
    return [header, payload]


def unpack_frames(
    codec: Codec, frames: Sequence[Frame], limits: Limits = DEFAULT_LIMITS
) -> tuple[Message, memoryview | None]:
    """Header message and payload view from one multipart message (identity frames removed).
    A compound keeps its payload views in ``msg.payloads`` and returns None as the payload."""
    if not frames:
        raise WireError("empty message")
    if len(frames) > limits.max_compound_items + 1:
        raise WireError(f"{len(frames)} frames; more than a compound may carry")
    msg = codec.decode(_view(frames[0]))
    if isinstance(msg, Batched):
        views = [_view(f) for f in frames[1:]]
        if len(views) != len(msg.payload_items):
            raise WireError(
                f"compound with {len(views)} payload frames for {len(msg.payload_items)} "
                "payload_items"
            )
        total = sum(len(v) for v in views)
        if total > limits.max_compound_payload_bytes:
            raise WireError(
                f"compound payloads of {total} bytes exceed {limits.max_compound_payload_bytes}"
            )
        msg.payloads = views
        return msg, None
    if len(frames) > 2:
        raise WireError(f"{len(frames)} frames; expected a header and at most one payload")
    if len(frames) == 1:
        return msg, None
    payload = _view(frames[1])
    if len(payload) > limits.max_payload_bytes:
        raise WireError(f"payload of {len(payload)} bytes exceeds {limits.max_payload_bytes}")
    return msg, payload

"""ZeroMQ multipart framing: ``[header, optional payload]``.

The header is a msgpack message (``codec``); the payload, when present, is raw bytes in its own
frame so large reads and writes are never copied through msgpack. Pure code: works on lists of
buffers, never on sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar, cast

from rdbss.wire.codec import DEFAULT_LIMITS, Codec, Limits, WireError
from rdbss.wire.rxcontext import BATCHED_TYPES, Batched, CompletionBundle, Message, RequestBundle

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


#: Payloads of a compound smaller than this share frames (copied together, up to PACK_BYTES a
#: frame): a frame costs several microseconds to send and to receive, a 4 KiB copy a tenth of
#: one. Larger payloads keep a frame of their own and are never copied.
PACK_BELOW = 64 << 10
PACK_BYTES = 1 << 20


def _pack_payloads(msg: Batched) -> list[Buffer]:
    frames: list[Buffer] = []
    lengths: list[int] = []
    counts: list[int] = []
    group: list[Buffer] = []
    group_bytes = 0

    def close_group() -> None:
        nonlocal group, group_bytes
        if group:
            frames.append(b"".join(group) if len(group) > 1 else group[0])
            counts.append(len(group))
            group, group_bytes = [], 0

    for payload in msg.payloads:
        view = _view(payload)
        size = view.nbytes  # bytes, whatever the item size of the caller's buffer
        lengths.append(size)
        if size >= PACK_BELOW:
            close_group()
            frames.append(payload)
            counts.append(1)
            continue
        if group_bytes + size > PACK_BYTES:
            close_group()
        group.append(view)
        group_bytes += size
    close_group()
    msg.payload_lengths = lengths
    msg.payload_frames = counts
    return frames


Bundle = TypeVar("Bundle", RequestBundle, CompletionBundle)


def bundles(
    pairs: Iterable[tuple[Any, Any]], make: Callable[[], Bundle], max_items: int, max_bytes: int
) -> Iterator[Bundle]:
    """(message, payload or None) pairs in bundles made by ``make``, in order, each of at most
    ``max_items`` items and ``max_bytes`` of payloads (one larger payload travels alone)."""
    bundle, size = make(), 0
    for msg, payload in pairs:
        length = _view(payload).nbytes if payload is not None else 0
        if bundle.items and (len(bundle.items) >= max_items or size + length > max_bytes):
            yield bundle
            bundle, size = make(), 0
        if payload is not None:
            bundle.payload_items.append(len(bundle.items))
            bundle.payloads.append(payload)
            size += length
        bundle.items.append(msg)
    yield bundle


def pack_frames(codec: Codec, msg: Message, payload: Buffer | None = None) -> list[Buffer]:
    """``[header, payload]``; a compound's payloads (``msg.payloads``) follow its header, the
    small ones packed together in shared frames."""
    if type(msg) in BATCHED_TYPES:
        frames = _pack_payloads(cast(Batched, msg))
        return [codec.encode(msg), *frames]
    header = codec.encode(msg)
    if payload is None:
        return [header]
    return [header, payload]


def _unpack_payloads(msg: Batched, frames: list[memoryview]) -> list[memoryview]:
    """The payloads of a compound from its frames, as ``payload_frames`` and
    ``payload_lengths`` lay them out (one per frame when those are empty)."""
    counts, lengths = msg.payload_frames, msg.payload_lengths
    if not counts and not lengths:
        return frames
    if len(counts) != len(frames) or sum(counts) != len(lengths) or min(counts, default=1) < 1:
        raise WireError(
            f"compound payload layout does not match its {len(frames)} frames "
            f"({len(counts)} frame counts, {len(lengths)} lengths)"
        )
    views: list[memoryview] = []
    at = 0
    for frame, count in zip(frames, counts, strict=True):
        offset = 0
        for length in lengths[at : at + count]:
            if length < 0 or offset + length > len(frame):
                raise WireError("compound payload lengths exceed their frame")
            views.append(frame[offset : offset + length])
            offset += length
        if offset != len(frame):
            raise WireError("compound payload lengths do not fill their frame")
        at += count
    return views


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
    if type(msg) in BATCHED_TYPES:
        msg = cast(Batched, msg)
        views = _unpack_payloads(msg, [_view(f) for f in frames[1:]])
        if len(views) != len(msg.payload_items):
            raise WireError(
                f"compound with {len(views)} payloads for {len(msg.payload_items)} payload_items"
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

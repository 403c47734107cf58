"""Reads of an open (``PosixMiniRdr`` checked them): from its staging file when it has one,
else ranged GETs. A read at any offset is one GET of exactly its range; a read that starts
where the previous one of the same open ended, or a read of at least ``STREAM_FROM_START``
bytes from byte 0 of a longer file, opens a streaming GET of the rest of the file
(``Range: bytes=N-``) that the next sequential reads take their bytes from (at most
``MAX_STREAMS_PER_SERVER`` per server)."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import httpx

from rdbss.minirdrs.common.args import show
from rdbss.minirdrs.common.fileio import pread_full
from rdbss.minirdrs.webdav.errors import error, fail, range_from
from rdbss.minirdrs.webdav.stream import Stream
from rdbss.wire.status import NtStatus, status_from_errno

if TYPE_CHECKING:
    from rdbss.minirdrs.webdav.handle import Open
    from rdbss.minirdrs.webdav.staging import Stage

S = NtStatus
log = logging.getLogger("rdbss.minirdr.webdav")

#: Open streaming GETs per server (each holds one of the client's 4 pooled connections; the
#: other two stay free for the requests of other handles and the notify poller).
MAX_STREAMS_PER_SERVER = 2


#: A read from byte 0 of at least this many bytes, of a file longer than the read, starts a
#: sequential read (``readall``, a copy): it opens the stream at once instead of a GET of its
#: range followed by the stream. Shorter reads from byte 0 (a header, a small file) stay one
#: GET of exactly their range, so that no stream is left to cut off at the close.
STREAM_FROM_START = 1 << 20


def _sequential(op: Open, offset: int, length: int) -> bool:
    """Whether a read of ``op`` (no staged data) takes its bytes from the stream."""
    if offset == op.next_read:
        return True
    size = op.entry.size
    if offset == 0 and length >= STREAM_FROM_START and (size is None or size > length):
        op.drop_stream()  # one elsewhere: this is a seek back to the start
        return True
    return False


def read_at(op: Open, offset: int, length: int) -> bytes:
    """Up to ``length`` bytes at ``offset`` (fewer only at the end of the file, ``b""`` past
    it): from the staging file, this open's stream (a sequential read) or one ranged GET."""
    if op.stage is not None:
        op.drop_stream()
        return _read_stage(op.stage, offset, length, op.path)
    if _sequential(op, offset, length):  # stream the rest of the file
        buffer = bytearray(length)
        got = _read_streamed(op, offset, memoryview(buffer))
        return bytes(buffer[:got])
    op.drop_stream()
    data = _read_remote(op, offset, length)
    op.next_read = offset + len(data) if len(data) == length else None
    return data


def read_into(op: Open, offset: int, target: memoryview) -> int:
    """``read_at`` into ``target``: a sequential read copies the stream's body straight
    there; the bytes copied."""
    if op.stage is None and _sequential(op, offset, len(target)):
        return _read_streamed(op, offset, target)
    data = read_at(op, offset, len(target))
    target[: len(data)] = data
    return len(data)


def _read_stage(stage: Stage, offset: int, length: int, rel: str) -> bytes:
    try:
        return pread_full(stage.fd, offset, length)
    except OSError as exc:
        raise error(
            status_from_errno(exc.errno), f"cannot read {show(rel)}: {exc.strerror}"
        ) from None


def _read_remote(op: Open, offset: int, length: int) -> bytes:
    """One ranged GET."""
    server = op.server
    url = op.url()
    what = f"cannot read {show(op.path)}"
    headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
    with server.transport(what), server.client.stream("GET", url, headers=headers) as r:
        if r.status_code == 206:
            range_from(r, offset, what)
            data = r.read()
            return data[:length]
        if r.status_code == 200:  # the server ignored Range: skip to the offset
            return _slice_stream(r, offset, length)
        if r.status_code == 416:
            return b""
        r.read()
        raise fail(r, "GET", what)


def _read_streamed(op: Open, offset: int, target: memoryview) -> int:
    """A sequential read: from this open's streaming GET, opened here if needed. A stream
    that breaks (the server closed the idle connection, a timeout) is reopened once at the
    same position; a second failure is the read's status. The end of the file, an error or
    an empty answer closes the stream."""
    server = op.server
    what = f"cannot read {show(op.path)}"
    length = len(target)
    done = 0
    retried = False
    more = True
    while True:
        fresh = op.stream is None
        stream = op.stream
        try:
            if stream is None:
                stream = _open_stream(op, offset + done, what)
                if stream is None:  # 416: past the end
                    more = False
                    break
            with server.streams_lock, contextlib.suppress(KeyError):
                server.streams.move_to_end(id(op))
            done, more = stream.fill(target, done)
            break
        except httpx.TransportError as exc:
            op.drop_stream()
            if stream is not None:
                done = stream.position - offset  # what it delivered before it broke
            if retried or (fresh and not done):
                op.next_read = None
                with server.transport(what):
                    raise exc from None
            retried = True
            log.debug("stream of %s broke (%s): reopening", show(op.path), exc)
        except BaseException:
            op.drop_stream()
            op.next_read = None
            raise
    if not more or done < length:
        if op.stream is not None and op.stream.at_end():
            op.stream.finish()  # the body is complete: the connection goes back to the pool
        op.drop_stream()
        op.next_read = None
    else:
        op.next_read = offset + done
    return done


def _open_stream(op: Open, offset: int, what: str) -> Stream | None:
    """A GET from ``offset`` to the end, kept open on ``op``; None if ``offset`` is past
    the end. The least recently used stream of the server goes if there are too many."""
    server = op.server
    server.check_alive()
    with server.streams_lock:
        while len(server.streams) >= MAX_STREAMS_PER_SERVER:
            _key, oldest = next(iter(server.streams.items()))
            oldest.drop_stream()
    url = op.url()
    request = server.client.build_request("GET", url, headers={"Range": f"bytes={offset}-"})
    response = server.client.send(request, stream=True)
    try:
        if response.status_code == 206:
            found = range_from(response, offset, what)
            stream = Stream(response, offset, found[2])
        elif response.status_code == 200:  # the server ignored Range: skip to the offset
            size = response.headers.get("content-length")
            stream = Stream(response, offset, int(size) if size and size.isdigit() else None)
            stream.skip(offset)
        elif response.status_code == 416:
            response.close()
            return None
        else:
            response.read()
            raise fail(response, "GET", what)
    except BaseException:
        response.close()
        raise
    op.stream = stream
    with server.streams_lock:
        server.streams[id(op)] = op
    return stream


def _slice_stream(response: httpx.Response, offset: int, length: int) -> bytes:
    chunks: list[bytes] = []
    position = 0
    got = 0
    for chunk in response.iter_bytes():
        end = position + len(chunk)
        if end > offset:
            piece = chunk[max(0, offset - position) : offset + length - position]
            chunks.append(piece)
            got += len(piece)
            if got >= length:
                break
        position = end
    return b"".join(chunks)

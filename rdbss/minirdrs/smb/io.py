"""READ (MS-SMB2 2.2.19), WRITE (2.2.21) and FLUSH (2.2.17) on an SMB handle.

A read larger than one request may carry goes in chunks as large as the negotiated maximum
and the granted credits allow (MS-SMB2 3.1.5.2, CreditCharge), each asking for enough credits
that the next chunk can be a full one. A large write goes as several pieces in flight, as many
as the granted credits allow, each asking for enough credits to keep the window full; it is
answered when every piece is. A write at offset -1, or on a handle that may
only append, goes to the end of file the server reports now.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from rdbss.minirdrs.base import MAX_READ_BYTES, Result
from rdbss.minirdrs.smb.opens import SmbSrvOpen, query_file, roundtrip, send, show
from rdbss.minirdrs.smb.structures import FILE_STANDARD_INFORMATION, parse_end_of_file
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus

#: A write larger than this goes as several WRITE requests in flight (each at most the
#: negotiated MaxWriteSize), so the server writes one piece while the next is on the wire.
PIECE_BYTES = 1 << 20
#: At most this many pieces of one write in flight, as the granted credits allow.
IN_FLIGHT = 8


def read(op: SmbSrvOpen, offset: int, length: int) -> Result:
    if offset < 0 or length < 0:
        raise NtStatusError(S.STATUS_INVALID_PARAMETER, f"bad read range {offset}+{length}")
    if length > MAX_READ_BYTES:
        raise NtStatusError(
            S.STATUS_INVALID_PARAMETER, f"read of {length} bytes over {MAX_READ_BYTES}"
        )
    if length == 0:
        return Result(information=0, payload=b"")
    link = op.link
    chunks: list[bytes] = []
    done = 0
    what = f"cannot read {show(op.path)}"
    while done < length:
        chunk, credit_request = link.credits(length - done, link.connection.max_read_size)
        message, answer = op.handle.read(offset + done, chunk, send=False)
        try:
            data = roundtrip(op, what, message, answer, credit_request)
        except NtStatusError as exc:
            if exc.status == S.STATUS_END_OF_FILE and done:
                break
            raise
        if not data:
            break
        chunks.append(data)
        done += len(data)
        if len(data) < chunk:
            break  # end of file
    if not done:
        raise NtStatusError(S.STATUS_END_OF_FILE, f"{show(op.path)}: offset {offset} is past EOF")
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return Result(information=done, payload=data)


def write(op: SmbSrvOpen, offset: int, payload: bytes | bytearray | memoryview | None) -> Result:
    if offset < -1:
        raise NtStatusError(S.STATUS_INVALID_PARAMETER, f"bad write offset {offset}")
    if payload is None:
        raise NtStatusError(S.STATUS_INVALID_PARAMETER, "write without data")
    view = memoryview(payload).cast("B")
    link = op.link
    what = f"cannot write {show(op.path)}"
    if not len(view):
        return Result(information=0)
    if offset == -1 or op.append_only:
        offset = end_of_file(op)
    return Result(information=link.call(what, lambda: _pipelined_write(op, offset, view)))


def _pipelined_write(op: SmbSrvOpen, offset: int, view: memoryview) -> int:
    """Send the pieces of a write with several in flight, as many as the granted credits allow,
    and collect every answer before returning: the write is answered only when the server has
    acknowledged every piece. A failed piece fails the whole write with the first failure in
    offset order, once the answers of the pieces still in flight are in; after a short piece
    the rest is sent again from where the server stopped."""
    link = op.link
    piece_max = min(PIECE_BYTES, link.connection.max_write_size)
    in_flight: deque[tuple[Any, Callable[[Any], int], int]] = deque()
    sent = written = 0
    failure: BaseException | None = None
    short = False
    while in_flight or (failure is None and (short or sent < len(view))):
        if short and not in_flight:
            sent, short = written, False  # every answer is in: on from where the server stopped
        while sent < len(view) and not (failure or short) and len(in_flight) < IN_FLIGHT:
            chunk, credit_request = link.credits(len(view) - sent, piece_max, IN_FLIGHT)
            if in_flight and chunk < min(piece_max, len(view) - sent):
                break  # too few credits for a full piece: the answers in flight grant more
            data = bytes(view[sent : sent + chunk])
            message, answer = op.handle.write(data, offset + sent, send=False)
            in_flight.append((send(op, message, credit_request), answer, chunk))
            sent += chunk
        request, answer, size = in_flight.popleft()
        try:
            count = answer(request)
        except Exception as exc:  # the rest is collected, then the first failure reported
            failure = failure or exc
            continue
        if failure or short:
            continue
        if count <= 0:
            failure = NtStatusError(
                S.STATUS_DISK_FULL, f"cannot write {show(op.path)}: the server wrote nothing"
            )
            continue
        written += min(count, size)
        short = count < size  # no new pieces until the ones in flight are answered
    if failure is not None:
        raise failure
    return written


def end_of_file(op: SmbSrvOpen) -> int:
    data = query_file(op, FILE_STANDARD_INFORMATION, f"cannot query {show(op.path)}")
    return parse_end_of_file(data)


def flush(op: SmbSrvOpen) -> Result:
    if op.is_dir or not op.can_write:
        return Result()  # nothing this handle could have written
    message, answer = op.handle.flush(send=False)
    roundtrip(op, f"cannot flush {show(op.path)}", message, answer)
    return Result()

"""READ (MS-SMB2 2.2.19), WRITE (2.2.21) and FLUSH (2.2.17) on an SMB handle.

A read or write larger than one request may carry goes in chunks as large as the negotiated
maximum and the granted credits allow (MS-SMB2 3.1.5.2, CreditCharge), each asking for enough
credits that the next chunk can be a full one. A write at offset -1, or on a handle that may
only append, goes to the end of file the server reports now.
"""

from __future__ import annotations

from rdbss.minirdrs.base import MAX_READ_BYTES, Result
from rdbss.minirdrs.smb.opens import SmbSrvOpen, query_file, roundtrip, show
from rdbss.minirdrs.smb.structures import FILE_STANDARD_INFORMATION, parse_end_of_file
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus


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
    written = 0
    while written < len(view):
        chunk, credit_request = link.credits(len(view) - written, link.connection.max_write_size)
        data = bytes(view[written : written + chunk])
        message, answer = op.handle.write(data, offset + written, send=False)
        count = roundtrip(op, what, message, answer, credit_request)
        if count <= 0:
            raise NtStatusError(S.STATUS_DISK_FULL, f"{what}: the server wrote nothing")
        written += count
    return Result(information=written)


def end_of_file(op: SmbSrvOpen) -> int:
    data = query_file(op, FILE_STANDARD_INFORMATION, f"cannot query {show(op.path)}")
    return parse_end_of_file(data)


def flush(op: SmbSrvOpen) -> Result:
    if op.is_dir or not op.can_write:
        return Result()  # nothing this handle could have written
    message, answer = op.handle.flush(send=False)
    roundtrip(op, f"cannot flush {show(op.path)}", message, answer)
    return Result()

"""Reading a host file descriptor (a local file, a staged copy of a remote one)."""

from __future__ import annotations

import os


def pread_full(fd: int, offset: int, length: int) -> bytes:
    """Up to ``length`` bytes of ``fd`` from ``offset``: short only at the end of the file
    (``os.pread`` may answer fewer bytes than asked before it). OSError as raised."""
    chunks: list[bytes] = []
    done = 0
    while done < length:
        chunk = os.pread(fd, length - done, offset + done)
        if not chunk:
            break
        chunks.append(chunk)
        done += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)

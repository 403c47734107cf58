"""A streaming GET of an open's resource, positioned at its next byte: sequential reads take
their bytes from it instead of each sending a ranged GET."""

from __future__ import annotations

import contextlib

import httpx


class Stream:
    """An open ``GET`` with ``Range: bytes=N-`` positioned at ``position``, the next byte."""

    def __init__(self, response: httpx.Response, position: int, end: int | None) -> None:
        self.response = response
        self.position = position
        self.end = end  # the file's size as the server said, if it did
        self.chunks = response.iter_bytes()
        self.pending = memoryview(b"")

    def fill(self, target: memoryview, done: int) -> tuple[int, bool]:
        """Copy the next bytes into ``target[done:]``: (bytes now in target, whether the body
        goes on). httpx errors propagate; ``position`` counts every byte copied."""
        while done < len(target):
            if not self.pending:
                chunk = next(self.chunks, None)
                if chunk is None:
                    return done, False
                self.pending = memoryview(chunk)
                continue
            take = min(len(target) - done, len(self.pending))
            target[done : done + take] = self.pending[:take]
            self.pending = self.pending[take:]
            done += take
            self.position += take
        return done, self.end is None or self.position < self.end

    def skip(self, count: int) -> None:
        """Discard ``count`` bytes (a server that ignored Range sends from byte 0)."""
        while count > 0:
            if not self.pending:
                chunk = next(self.chunks, None)
                if chunk is None:
                    return
                self.pending = memoryview(chunk)
                continue
            take = min(count, len(self.pending))
            self.pending = self.pending[take:]
            count -= take

    def at_end(self) -> bool:
        return self.end is not None and self.position >= self.end and not self.pending

    def finish(self) -> None:
        with contextlib.suppress(Exception):
            next(self.chunks, None)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.response.close()  # releases (or, mid-body, closes) the pooled connection

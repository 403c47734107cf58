"""The staging file of a write open and the streamed upload that may run beside it: HTTP
cannot write part of a resource, so the whole file is staged locally (an unnamed temporary
file in a private 0700 folder) and PUT back whole; a file written sequentially from byte 0 is
also streamed to the server while the writes arrive (one chunked PUT, see ``Upload``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from rdbss.minirdrs.webdav.session import Session

UPLOAD_CHUNK = 1 << 20
#: the chunk of a streamed PUT's body (servers that slice their buffer per read, as cheroot
#: does, pay for large chunks quadratically)
STREAM_CHUNK = 64 << 10


@dataclass(slots=True)
class Stage:
    """The whole file of a write open, staged locally."""

    file: IO[bytes]
    dirty: bool = False

    @property
    def fd(self) -> int:
        return self.file.fileno()

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()


class StagingFolder:
    """The private folder staging files are made in, made (0700) on first use."""

    def __init__(self, parent: str | None) -> None:
        self._parent = parent
        self._path: str | None = None
        self._lock = threading.Lock()

    def path(self) -> str:
        with self._lock:
            if self._path is None or not os.path.isdir(self._path):
                # mkdtemp makes it 0700: only this user can read staged data
                self._path = tempfile.mkdtemp(prefix="rdbss-webdav-", dir=self._parent)
            return self._path

    def remove(self) -> None:
        with self._lock:
            if self._path is not None:
                shutil.rmtree(self._path, ignore_errors=True)
                self._path = None


class Upload:
    """A streamed PUT of a file written sequentially from byte 0: a thread sends, as one chunked
    request body, the bytes of the staging file up to ``available`` as the writes stage them;
    ``finish`` ends the body and waits for the server's answer."""

    def __init__(self, server: Session, url: httpx.URL, fd: int) -> None:
        self.server = server
        self.url = url
        # its own descriptor of the staging file: a request still running after ``finish``
        # gave up on it must never read from a number the close gave to another file
        self.fd = os.dup(fd)
        self.available = 0  # staged bytes the body may carry
        self.sent = 0  # bytes handed to httpx
        self.status: int | None = None  # the server's answer
        self.etag: str | None = None  # the ETag of that answer, if it carried one
        self.error: BaseException | None = None  # what broke the request, if it broke
        self._closed = False  # the body ends at ``available``
        self._aborted = False  # the body breaks off: the server must not store it
        self._cond = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, name=f"webdav-put-{server.name}", daemon=True
        )
        try:
            self._thread.start()
        except BaseException:
            os.close(self.fd)
            raise

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def extend(self, end: int) -> None:
        """The staging file now holds the bytes up to ``end``: the body may carry them."""
        with self._cond:
            self.available = end
            self._cond.notify()

    def _body(self) -> Iterator[bytes]:
        while True:
            with self._cond:
                while self.sent >= self.available and not self._closed:
                    self._cond.wait()
                if self._aborted:
                    raise OSError("the streamed PUT was abandoned")
                end = self.available
                if self.sent >= end:
                    return
            while self.sent < end:
                chunk = os.pread(self.fd, min(STREAM_CHUNK, end - self.sent), self.sent)
                if not chunk:
                    raise OSError(f"staging file shrank to {self.sent} bytes during upload")
                self.sent += len(chunk)
                yield chunk

    def _run(self) -> None:
        try:
            response = self.server.client.request(
                "PUT",
                self.url,
                headers={"Content-Type": "application/octet-stream"},
                content=self._body(),
            )
            self.status = response.status_code
            self.etag = response.headers.get("etag")
        except BaseException as exc:  # the close reports it (after the fallback upload)
            self.error = exc
        finally:
            os.close(self.fd)

    def finish(self, timeout: float) -> bool:
        """End the body and wait for the answer: whether the server stored the whole body."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.error = TimeoutError(f"no answer to the streamed PUT in {timeout:g} s")
            return False
        return self.error is None and self.status in (200, 201, 204)

    def abort(self, timeout: float) -> None:
        """Break the body off (the request fails, so the server stores nothing of it) and
        wait up to ``timeout`` for the request to end."""
        with self._cond:
            self._aborted = self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def why(self) -> str:
        if self.error is not None:
            return f"{type(self.error).__name__}: {self.error}"
        return f"HTTP {self.status}"


class FileBody:
    """A request body read from a file descriptor; every iteration starts again from byte 0, so
    a request httpx sends twice (a Digest challenge) carries the whole file both times."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    def __iter__(self) -> Iterator[bytes]:
        offset = 0
        while offset < self.size:
            chunk = os.pread(self.fd, min(UPLOAD_CHUNK, self.size - offset), offset)
            if not chunk:
                raise OSError(f"staging file shrank to {offset} bytes during upload")
            offset += len(chunk)
            yield chunk

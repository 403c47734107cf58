"""The upload spool of a write open: HTTP cannot write part of a resource, so the whole file is
staged locally (an unnamed temporary file in a private 0700 folder), written and truncated
there, and PUT back whole at flush and close; a file written sequentially from byte 0 is also
streamed to the server while the writes arrive (one chunked PUT, see ``Upload``)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import IO, TYPE_CHECKING

import httpx

from rdbss.minirdrs.common.args import show
from rdbss.minirdrs.webdav.errors import error, fail
from rdbss.wire.status import NtStatus, status_from_errno

if TYPE_CHECKING:
    from rdbss.minirdrs.webdav.handle import Open
    from rdbss.minirdrs.webdav.session import Session

S = NtStatus
log = logging.getLogger("rdbss.minirdr.webdav")

UPLOAD_CHUNK = 1 << 20
#: the chunk of a streamed PUT's body (servers that slice their buffer per read, as cheroot
#: does, pay for large chunks quadratically)
STREAM_CHUNK = 64 << 10
#: the HTTP statuses by which a server says it takes no chunked request body
_NO_CHUNKED = frozenset({400, 411, 501, 505})


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
        self.error: BaseException | None = None  # what broke the request, if it broke
        self._closed = False  # the body ends at ``available``
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


# --- what an open does with its spool ------------------------------------------------------------
def stage_of(op: Open, folder: StagingFolder, *, fill: bool = True) -> Stage:
    """The staging file of a write open, made (and filled from the server, unless this open
    made the file empty or ``fill`` is false) on first use."""
    if op.stage is not None:
        return op.stage
    op.drop_stream()  # from now on reads come from the staging file
    op.next_read = None
    try:
        stage = Stage(tempfile.TemporaryFile(dir=folder.path()))  # noqa: SIM115
    except OSError as exc:
        raise error(
            status_from_errno(exc.errno),
            f"cannot stage {show(op.path)}: no local staging file ({exc.strerror})",
        ) from None
    try:
        if fill and not op.empty_on_server:
            _download(op, stage)
    except BaseException:
        stage.close()
        raise
    op.stage = stage
    return stage


def _download(op: Open, stage: Stage) -> None:
    server = op.server
    url = op.url()
    what = f"cannot fetch {show(op.path)} to change it"
    with server.transport(what), server.client.stream("GET", url) as r:
        if r.status_code != 200:
            r.read()
            raise fail(r, "GET", what)
        expected = r.headers.get("content-length")
        size = 0
        try:
            for chunk in r.iter_bytes(UPLOAD_CHUNK):
                stage.file.write(chunk)
                size += len(chunk)
            stage.file.flush()
        except OSError as exc:
            raise error(
                status_from_errno(exc.errno), f"{what}: staging failed ({exc.strerror})"
            ) from None
    if expected is not None and expected.isdigit() and int(expected) != size:
        raise error(
            S.STATUS_CONNECTION_DISCONNECTED,
            f"{what}: got {size} of {expected} bytes",
        )


def upload(op: Open) -> None:
    """PUT the staged file, if it changed since the last upload (or its streamed PUT)."""
    end_upload(op)
    stage = op.stage
    if stage is None or not stage.dirty:
        return
    server = op.server
    url = op.url()
    what = f"cannot upload {show(op.path)}"
    try:
        size = stage.size()
    except OSError as exc:
        raise error(status_from_errno(exc.errno), f"{what}: {exc.strerror}") from None
    response = server.request(
        "PUT",
        url,
        what,
        headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
        content=FileBody(stage.fd, size),
    )
    if response.status_code not in (200, 201, 204):
        raise fail(response, "PUT", what)
    stage.dirty = False
    op.entry = replace(op.entry, size=size, last_modified_ns=op.written_ns or time.time_ns())


def end_upload(op: Open) -> None:
    """End the open's streamed PUT, if one runs; writes no longer start one. The staging
    file is clean if the server stored all of it, else it stays dirty: the flush or close
    then PUTs it whole."""
    running, op.upload = op.upload, None
    op.streamable = False
    if running is None:
        return
    stored = running.finish(2 * op.server.timeout + 1.0)
    stage = op.stage
    if stored and stage is not None and running.sent == stage.size():
        stage.dirty = False
        op.entry = replace(
            op.entry, size=running.sent, last_modified_ns=op.written_ns or time.time_ns()
        )
        return
    if running.status in _NO_CHUNKED:
        op.server.chunked_put = False
    if not stored:
        log.info(
            "streamed PUT of %s on %s failed (%s): the staged file goes up whole instead",
            show(op.path),
            op.server.name,
            running.why(),
        )


def write(op: Open, folder: StagingFolder, offset: int, view: memoryview) -> int:
    """Stage ``view`` at ``offset`` (-1 or an append-only open: at the end); a write at byte 0
    of a file this open emptied starts a streamed PUT, later writes at the end extend it."""
    op.drop_stream()
    op.next_read = None
    stage = stage_of(op, folder)
    try:
        size = stage.size()
        if offset == -1 or op.append_only:
            offset = size
        if offset != size or (op.upload is not None and not op.upload.running):
            end_upload(op)  # not at the end (or the PUT ended): no streaming now
        written = 0
        while written < len(view):
            written += os.pwrite(stage.fd, view[written:], offset + written)
    except OSError as exc:
        raise error(
            status_from_errno(exc.errno), f"cannot write {show(op.path)}: {exc.strerror}"
        ) from None
    stage.dirty = True
    op.written_ns = time.time_ns()
    if op.upload is not None:
        op.upload.extend(offset + written)
    elif op.streamable and offset == 0 and op.server.chunked_put:
        url = op.url()
        try:
            started = Upload(op.server, url, stage.fd)
        except (OSError, RuntimeError):  # no descriptor or thread to spare: uploaded whole
            op.streamable = False
        else:
            started.extend(written)
            op.upload = started
    return written


def truncate(op: Open, stage: Stage, size: int) -> None:
    """Set the staged file's size (a size change ends a streamed PUT, except an empty file
    made empty again)."""
    op.drop_stream()
    op.next_read = None
    try:
        if size or op.upload is not None or stage.size():
            end_upload(op)
        os.ftruncate(stage.fd, size)
    except OSError as exc:
        raise error(
            status_from_errno(exc.errno),
            f"cannot set the size of {show(op.path)}: {exc.strerror}",
        ) from None
    stage.dirty = True
    op.written_ns = time.time_ns()

"""The upload spool of a write open: HTTP cannot write part of a resource, so the whole file is
staged locally (an unnamed temporary file in a private 0700 folder), written and truncated
there, and PUT back whole at flush and close; a file written sequentially from byte 0 is also
streamed to the server while the writes arrive (one chunked PUT, see ``Upload``)."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from rdbss.minirdrs.common.args import show
from rdbss.minirdrs.webdav.errors import error, fail
from rdbss.minirdrs.webdav.staging import UPLOAD_CHUNK, FileBody, Stage, StagingFolder, Upload
from rdbss.wire.status import NtStatus, status_from_errno

if TYPE_CHECKING:
    from rdbss.minirdrs.webdav.handle import Open

S = NtStatus
log = logging.getLogger("rdbss.minirdr.webdav")

#: the HTTP statuses by which a server says it takes no chunked request body
_NO_CHUNKED = frozenset({400, 411, 501, 505})


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
    _stored(op, size, response.headers.get("etag"))


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
        _stored(op, running.sent, running.etag)
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


def abandon(op: Open) -> None:
    """The open's resource was deleted or replaced by another open: its streamed PUT breaks
    off, and nothing it staged goes to the server any more (``Open.orphaned``)."""
    running, op.upload = op.upload, None
    op.streamable = False
    op.orphaned = True
    if running is not None:
        running.abort(2 * op.server.timeout + 1.0)


def _stored(op: Open, size: int, etag: str | None) -> None:
    """The server holds the whole staged file (``size`` bytes, the PUT's answer's ``etag``):
    the staging file is clean, and the SrvCall knows that version (``Session.stored``)."""
    if op.stage is not None:
        op.stage.dirty = False
    op.entry = replace(op.entry, size=size, last_modified_ns=op.written_ns or time.time_ns())
    server = op.server
    server.stored(server.decoded_path(op.share.name, op.parts), size, etag, op.entry.creation_ns)


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

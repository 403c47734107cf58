"""The state of one open file or collection (SrvOpen) of the WebDAV mini-redirector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rdbss.minirdrs.webdav.props import DavEntry
from rdbss.minirdrs.webdav.session import Session

if TYPE_CHECKING:
    from rdbss.minirdrs.webdav.reads import Stream
    from rdbss.minirdrs.webdav.spool import Stage, Upload


@dataclass(slots=True)
class Open:
    """One SRV_OPEN."""

    server: Session
    share: str
    path: str  # share-relative, backslashes, "" for the share root
    entry: DavEntry  # the properties last seen
    is_dir: bool
    can_read: bool
    can_write: bool
    append_only: bool = False
    empty_on_server: bool = False  # created or overwritten by this open: nothing to download
    stage: Stage | None = None
    written_ns: int | None = None  # when staged data last changed
    delete_pending: bool = False
    fobx: int | None = None  # the core's handle id at create (a re-open names it again)
    stream: Stream | None = None  # sequential reads: an open GET at the next byte
    next_read: int | None = None  # where the last remote read of this open ended
    upload: Upload | None = None  # the streamed PUT of a sequential write, while it runs
    streamable: bool = False  # writes may still start a streamed PUT (see spool.Upload)

    @property
    def parts(self) -> list[str]:
        return self.path.split("\\") if self.path else []

    def drop_stream(self) -> None:
        """Close this open's streaming GET, if any (the server's LRU entry too)."""
        stream, self.stream = self.stream, None
        self.server.streams.pop(id(self), None)
        if stream is not None:
            stream.close()

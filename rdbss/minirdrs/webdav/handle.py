"""The state of one open file or collection (SrvOpen) of the WebDAV mini-redirector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from rdbss.minirdrs.base import OpenBase
from rdbss.minirdrs.webdav.props import DavEntry
from rdbss.minirdrs.webdav.session import Session

if TYPE_CHECKING:
    from rdbss.minirdrs.webdav.reads import Stream
    from rdbss.minirdrs.webdav.spool import Stage, Upload


@dataclass(frozen=True, slots=True)
class DavShare:
    """A share of a configured server, one object per (server, share) for the life of the
    mini-redirector (``OpenTable`` compares shares by identity): the opens of a share made on
    a new connection after the old one was lost are in the same share."""

    server: str  # the configured server name, lowercased (UNC names are case-insensitive)
    name: str  # the share: the first path component under the server's URL


@dataclass(slots=True, kw_only=True)
class Open(OpenBase[DavShare]):
    """One SRV_OPEN: ``OpenBase`` (share, path, kind, access, delete-pending) and what a
    WebDAV open adds: the connection, the properties last seen, its reads' stream and its
    writes' staging file and streamed upload."""

    server: Session
    entry: DavEntry  # the properties last seen
    srv_open: int = 0  # its id in the mini-redirector's OpenTable
    empty_on_server: bool = False  # created or overwritten by this open: nothing to download
    stage: Stage | None = None
    written_ns: int | None = None  # when staged data last changed
    fobx: int | None = None  # the core's handle id at create (a re-open names it again)
    stream: Stream | None = None  # sequential reads: an open GET at the next byte
    next_read: int | None = None  # where the last remote read of this open ended
    upload: Upload | None = None  # the streamed PUT of a sequential write, while it runs
    streamable: bool = False  # writes may still start a streamed PUT (see spool.Upload)

    @property
    def parts(self) -> list[str]:
        return self.path.split("\\") if self.path else []

    def url(self) -> httpx.URL:
        """The resource's URL (a collection's ends in "/")."""
        return self.server.url(self.share.name, self.parts, collection=self.is_dir)

    def drop_stream(self) -> None:
        """Close this open's streaming GET, if any (the server's LRU entry too)."""
        stream, self.stream = self.stream, None
        self.server.streams.pop(id(self), None)
        if stream is not None:
            stream.close()

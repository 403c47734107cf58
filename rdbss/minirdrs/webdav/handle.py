"""The state of one open file or collection (SrvOpen) of the WebDAV mini-redirector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from rdbss.minirdrs.base import OpenBase
from rdbss.minirdrs.webdav.props import DIR_MODE, FILE_MODE, DavEntry, file_id, file_info
from rdbss.minirdrs.webdav.session import Session
from rdbss.minirdrs.webdav.staging import Stage, Upload
from rdbss.minirdrs.webdav.stream import Stream


@dataclass(frozen=True, slots=True)
class DavShare:
    """A share of a configured server, one object per (server, share) for the life of the
    mini-redirector (``OpenTable`` compares shares by identity): the opens of a share made on
    a new connection after the old one was lost are in the same share."""

    server: str  # the configured server name, lowercased (UNC names are case-insensitive)
    name: str  # the share: the first path component under the server's URL


@dataclass(frozen=True, slots=True)
class DavStat:
    """A resource's properties as the ``os.stat_result`` fields ``PosixMiniRdr`` reads (modes
    0o755/0o644), with what ``file_info`` needs to describe it as the server does: the
    entry, the key of its file id, and the staged size and write time of an open changing it."""

    entry: DavEntry
    key: tuple[str, str]  # (the server's URL, the share): file ids are made from them and rel
    size: int | None = None  # the staged size, when an open has staged data
    written_ns: int | None = None  # when that open's staged data last changed

    @property
    def st_mode(self) -> int:
        return DIR_MODE if self.entry.is_dir else FILE_MODE

    @property
    def st_size(self) -> int:
        if self.entry.is_dir:
            return 0
        return self.size if self.size is not None else self.entry.size or 0

    @property
    def st_blocks(self) -> int:
        return -(-self.st_size // 512)

    @property
    def st_nlink(self) -> int:
        return 1

    @property
    def st_ino(self) -> int:
        return 0  # per name: see ``info``

    @property
    def st_mtime_ns(self) -> int:
        if self.written_ns is not None:
            return self.written_ns
        return self.entry.last_modified_ns or 0

    @property
    def st_atime_ns(self) -> int:
        return self.st_mtime_ns

    @property
    def st_ctime_ns(self) -> int:
        return self.st_mtime_ns

    def info(self, rel: str, *, delete_pending: bool = False) -> dict[str, Any]:
        """The file info map of ``rel`` described by this stat (props.file_info)."""
        return file_info(
            self.entry,
            rel,
            size=self.size,
            last_write_ns=self.written_ns,
            delete_pending=delete_pending,
            ident=file_id(*self.key, rel),
        )


@dataclass(slots=True, kw_only=True)
class Open(OpenBase[DavShare]):
    """One SRV_OPEN: ``OpenBase`` (share, path, kind, access, delete-pending) and what a
    WebDAV open adds: the connection, the properties last seen, its reads' stream and its
    writes' staging file and streamed upload."""

    server: Session
    entry: DavEntry  # the properties last seen
    empty_on_server: bool = False  # created or overwritten by this open: nothing to download
    stage: Stage | None = None
    written_ns: int | None = None  # when staged data last changed
    fobx: int | None = None  # the core's handle id at create (a re-open names it again)
    stream: Stream | None = None  # sequential reads: an open GET at the next byte
    next_read: int | None = None  # where the last remote read of this open ended
    upload: Upload | None = None  # the streamed PUT of a sequential write, while it runs
    streamable: bool = False  # writes may still start a streamed PUT (see staging.Upload)
    #: its resource was deleted, or replaced by a rename, through another open: what it
    #: writes is staged only (HTTP has no handle to write an unnamed file through)
    orphaned: bool = False

    @property
    def parts(self) -> list[str]:
        return self.path.split("\\") if self.path else []

    def stat(self) -> DavStat:
        """The open's resource as last seen, with its staged size and write time."""
        return DavStat(
            self.entry,
            (str(self.server.config.url), self.share.name),
            self.stage.size() if self.stage is not None else None,
            self.written_ns,
        )

    def url(self) -> httpx.URL:
        """The resource's URL (a collection's ends in "/")."""
        return self.server.url(self.share.name, self.parts, collection=self.is_dir)

    def drop_stream(self) -> None:
        """Close this open's streaming GET, if any (the server's LRU entry too)."""
        stream, self.stream = self.stream, None
        self.server.streams.pop(id(self), None)
        if stream is not None:
            stream.close()

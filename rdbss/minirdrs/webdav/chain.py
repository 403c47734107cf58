"""A small file's create, reads and close in one GET (``WebDavMiniRdr.create_with_related``).

A chain of a create that opens an existing file (FILE_OPEN or FILE_OPEN_IF, not a directory,
not delete-on-close), READs from its start and its close costs a PROPFIND (the create's
lookup) and a ranged GET one by one. Here the GET (``Range: bytes=0-N``, N the end of the
furthest read) goes first, and its answer stands for the lookup when it says everything the
PROPFIND would:

- 404: nothing is at the name (the lookup's None; the base's checks answer as alone).
- 206 with a whole Content-Range (``bytes 0-L/size``), or a 200 with all of a short body:
  maybe a file. When its strong ETag, size and Last-Modified match the entry the server's
  last PROPFIND answer gave for that path (``Session.seen``), that entry is the lookup's
  answer (a GET carries no creationdate, the entry does). The last PUT of the file through
  this SrvCall leaves an entry too (``Session.stored``): its answer's strong ETag and the size
  sent, with no Last-Modified (wsgidav's PUT answer carries none), which the GET's completes;
  so a file read right after it was written through rdbss is one GET as well. Otherwise the
  PROPFIND is sent after all, and the GET's bytes answer the reads only if it describes the
  same version (a file of the same ETag and size).
- anything else (a collection, a long body from a server that ignores Range, an error, an
  answer without a strong ETag): the GET is dropped and the chain runs as alone; after a GET
  without a strong ETag, the server's chains are no longer sent this way.

The create's checks, the reads' checks and their statuses are the base's, unchanged: only
where the lookup's entry and the reads' bytes come from differs.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

import httpx

from rdbss.minirdrs.common.args import show
from rdbss.minirdrs.webdav.errors import range_from
from rdbss.minirdrs.webdav.handle import DavShare
from rdbss.minirdrs.webdav.props import (
    DavEntry,
    current_entry,
    normalize_path,
    parse_http_date,
    strong_etag,
)
from rdbss.minirdrs.webdav.session import Session
from rdbss.model.compound import ChainKind, chain_of
from rdbss.wire.constants import CreateDisposition, CreateOptions
from rdbss.wire.rxcontext import RxContext
from rdbss.wire.status import NtStatusError

#: the longest READ of a chain, and so of the GET that answers it
MAX_CHAIN_READ = 1 << 20

_OPENS = (int(CreateDisposition.FILE_OPEN), int(CreateDisposition.FILE_OPEN_IF))
_NOT_A_FILE_READ = int(CreateOptions.FILE_DIRECTORY_FILE | CreateOptions.FILE_DELETE_ON_CLOSE)


def read_window(create: RxContext, related: list[RxContext], sizes: list[int | None]) -> int:
    """The bytes from the start of the file that the chain's READs cover when the chain is a
    read of an existing file (see the module docstring), else 0."""
    params = create.create
    if params is None or params.disposition not in _OPENS:
        return 0
    if params.create_options & _NOT_A_FILE_READ:
        return 0
    kinds = chain_of(related, sizes, MAX_CHAIN_READ, 0)
    if kinds is None or ChainKind.READ not in kinds:
        return 0
    if any(kind not in (ChainKind.READ, ChainKind.CLOSE) for kind in kinds):
        return 0
    return max(
        ctx.lowio.offset + ctx.lowio.length
        for ctx, kind in zip(related, kinds, strict=True)
        if kind is ChainKind.READ and ctx.lowio is not None
    )


@dataclass(frozen=True, slots=True)
class Fetched:
    """What the GET told of the name ``rel`` of ``share``: nothing there (``entry`` None), or
    the file's entry and its first bytes (None when they are not known to be that entry's)."""

    share: DavShare
    rel: str
    entry: DavEntry | None
    head: bytes | None


#: the GET's answer while the chain's create and reads run (``WebDavMiniRdr.lookup`` and
#: ``run_chain`` take it from here)
fetched: contextvars.ContextVar[Fetched | None] = contextvars.ContextVar(
    "rdbss_webdav_chain", default=None
)


def fetch(server: Session, share: DavShare, rel: str, window: int) -> Fetched | None:
    """The GET of the first ``window`` bytes of ``rel``, as the module docstring says; None
    when its answer stands for nothing."""
    parts = rel.split("\\") if rel else []
    if not parts or not server.tagged_gets:
        return None  # the share root (a collection), or a server whose GETs carry no ETag
    url = server.url(share.name, parts, collection=False)
    what = f"cannot read {show(rel)}"
    try:
        with (
            server.transport(what),
            server.client.stream("GET", url, headers={"Range": f"bytes=0-{window - 1}"}) as r,
        ):
            got = _body(r, window, what)
            etag = r.headers.get("etag")
            modified = parse_http_date(r.headers.get("last-modified"))
        if got is None:
            return Fetched(share, rel, None, None) if r.status_code == 404 else None
        size, body = got
        if strong_etag(etag) is None:
            server.tagged_gets = False
            return None
        seen = server.seen(normalize_path(url.path))
        current = None if seen is None else current_entry(seen, etag, size, modified)
        if current is not None:
            return Fetched(share, rel, current, body)
        entry = server.stat(share.name, parts, rel)
    except NtStatusError:
        return None  # the lookup meets the same failure and answers it
    same = entry is not None and not entry.is_dir and entry.size == size
    same = same and entry is not None and strong_etag(entry.etag) == strong_etag(etag)
    return Fetched(share, rel, entry, body if same else None)


def _body(r: httpx.Response, window: int, what: str) -> tuple[int, bytes] | None:
    """(the file's size, its first bytes up to ``window``) from a GET of ``Range: bytes=0-``
    ``window - 1``: a 206 of that range (or of the whole file, shorter), or a 200 whose whole
    body fits (a server that ignores Range, an empty file); None for anything else. An error
    page is read (its connection goes back to the pool), a long body is left unread."""
    if r.status_code == 206:
        _first, last, size = range_from(r, 0, what)
        body = r.read()
        if size is None or len(body) != last + 1 or len(body) not in (size, window):
            return None
        return size, body
    length = r.headers.get("content-length", "")
    if not length.isdigit() or int(length) > window:
        return None  # closed unread
    body = r.read()
    if r.status_code != 200 or len(body) != int(length):
        return None
    return len(body), body

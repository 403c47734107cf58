"""One SrvCall: an authenticated httpx client for one configured server, and the requests the
routines make through it (transport failures as statuses, PROPFIND answers as entries)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

import httpx

from rdbss.minirdrs.common.args import show
from rdbss.minirdrs.webdav.config import ServerConfig
from rdbss.minirdrs.webdav.errors import error, fail
from rdbss.minirdrs.webdav.props import (
    PROPFIND_BODY,
    DavEntry,
    MultiStatusError,
    normalize_path,
    parse_multistatus,
    resource_path,
    split_listing,
    strong_etag,
)
from rdbss.wire.status import NtStatus

S = NtStatus
log = logging.getLogger("rdbss.minirdr.webdav")

#: File entries a Session keeps from its PROPFIND answers (``seen``), least recently used out.
SEEN_ENTRIES = 4096


class Streaming(Protocol):
    """An open holding a streaming GET (see reads.py)."""

    def drop_stream(self) -> None: ...


class Session:
    """One SrvCall: the server's client, whether its connection was lost, and its open
    streaming GETs (least recently used first)."""

    def __init__(self, config: ServerConfig, client: httpx.Client, timeout: float) -> None:
        self.config = config
        self.client = client
        self.timeout = timeout
        self.base_raw = config.url.raw_path.decode("ascii")
        self.dead: tuple[int, str] | None = None  # (status, why) once the connection failed
        self.chunked_put = True  # False once the server refused a chunked PUT body
        #: False once a GET answered without a strong ETag: then nothing ties a GET to the
        #: version a PROPFIND describes, and chains of reads are not sent as one GET (chain.py)
        self.tagged_gets = True
        #: the opens holding a streaming GET (keyed by id(open)), least recently used first
        self.streams: OrderedDict[int, Streaming] = OrderedDict()
        self.streams_lock = threading.RLock()
        #: the files' entries last seen in PROPFIND answers, by decoded path: a GET whose
        #: ETag, size and Last-Modified match one needs no PROPFIND (see chain.py)
        self._seen: OrderedDict[str, DavEntry] = OrderedDict()
        self._seen_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.config.name

    def url(self, share: str, parts: list[str], *, collection: bool) -> httpx.URL:
        raw = resource_path(self.base_raw, share, parts, collection=collection)
        return self.config.url.copy_with(raw_path=raw.encode("ascii"))

    def decoded_path(self, share: str, parts: list[str]) -> str:
        url = self.url(share, parts, collection=False)
        return normalize_path(url.path)

    def check_alive(self) -> None:
        if self.dead is not None:
            status, why = self.dead
            raise error(status, f"the connection to {self.name!r} was lost earlier: {why}")

    def close_streams(self) -> None:
        for op in list(self.streams.values()):
            op.drop_stream()

    def close(self) -> None:
        self.close_streams()
        with contextlib.suppress(Exception):
            self.client.close()

    def _remember(self, entries: Iterable[DavEntry]) -> None:
        with self._seen_lock:
            for entry in entries:
                if entry.is_dir:
                    continue
                self._seen[entry.path] = entry
                self._seen.move_to_end(entry.path)
            while len(self._seen) > SEEN_ENTRIES:
                self._seen.popitem(last=False)

    def stored(self, path: str, size: int, etag: str | None, creation_ns: int | None) -> None:
        """A PUT of ``size`` bytes to the decoded path ``path`` succeeded: the version it made
        is the one its answer's strong ETag names (RFC 9110, 8.8.3), so it is seen as that,
        with no Last-Modified (a GET of the same ETag and size gives it: props.current_entry).
        Without a strong ETag nothing names that version, and what was seen of the path goes."""
        if strong_etag(etag) is None:
            with self._seen_lock:
                self._seen.pop(path, None)
            return
        self._remember([DavEntry(path, False, size, None, creation_ns, etag)])

    def seen(self, path: str) -> DavEntry | None:
        """The file entry last seen at the decoded path ``path``, if any (maybe stale: check
        it with props.still_current)."""
        with self._seen_lock:
            return self._seen.get(path)

    # --- requests ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def transport(self, what: str) -> Iterator[None]:
        """Turn httpx transport failures into statuses; a lost connection marks the SrvCall dead."""
        self.check_alive()
        try:
            yield
        except httpx.TimeoutException:
            raise error(
                S.STATUS_IO_TIMEOUT,
                f"{what}: {self.name!r} did not answer within {self.timeout:g} s",
            ) from None
        except httpx.TransportError as exc:
            why = f"{type(exc).__name__}: {exc}"
            self.dead = (S.STATUS_CONNECTION_DISCONNECTED, why)
            self.close_streams()
            log.warning("connection to %s lost during %s: %s", self.name, what, why)
            raise error(
                S.STATUS_CONNECTION_DISCONNECTED,
                f"{what}: the connection to {self.name!r} was lost ({why})",
            ) from None

    def request(
        self,
        method: str,
        url: httpx.URL,
        what: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """One request; ``timeout`` (seconds) instead of the configured one when given."""
        limit = httpx.Timeout(timeout) if timeout is not None else httpx.USE_CLIENT_DEFAULT
        with self.transport(what):
            return self.client.request(method, url, headers=headers, content=content, timeout=limit)

    def propfind(
        self,
        url: httpx.URL,
        depth: int,
        what: str,
        body: bytes = PROPFIND_BODY,
        timeout: float | None = None,
    ) -> list[DavEntry] | None:
        """The entries of a PROPFIND; None when the resource does not exist (404)."""
        response = self.request(
            "PROPFIND",
            url,
            what,
            headers={"Depth": str(depth), "Content-Type": 'application/xml; charset="utf-8"'},
            content=body,
            timeout=timeout,
        )
        if response.status_code == 404:
            return None
        if response.status_code != 207:
            raise fail(response, "PROPFIND", what)
        try:
            return parse_multistatus(response.content)
        except MultiStatusError as exc:
            raise error(S.STATUS_INVALID_NETWORK_RESPONSE, f"{what}: {exc}") from None

    def stat(self, share: str, parts: list[str], rel: str) -> DavEntry | None:
        """The properties of one resource (one PROPFIND, Depth 0), or None if it does not
        exist."""
        url = self.url(share, parts, collection=not parts)
        entries = self.propfind(url, 0, f"cannot query {show(rel)}")
        if entries is None:
            return None
        own = normalize_path(url.path)
        for entry in entries:
            if entry.path == own:
                self._remember([entry])
                return entry
        if len(entries) == 1:  # a server that answers with another spelling of the same path
            return entries[0]
        raise error(
            S.STATUS_INVALID_NETWORK_RESPONSE, f"cannot query {show(rel)}: no answer for it"
        )

    def children(
        self, share: str, parts: list[str], rel: str, *, gone: int = S.STATUS_OBJECT_NAME_NOT_FOUND
    ) -> dict[str, DavEntry]:
        """A collection's members by name (one PROPFIND, Depth 1); ``gone`` when it is not
        there."""
        url = self.url(share, parts, collection=True)
        entries = self.propfind(url, 1, f"cannot list {show(rel)}")
        if entries is None:
            raise error(gone, f"{show(rel)} is gone")
        _own, children = split_listing(entries, url.path)
        self._remember(children.values())
        return children

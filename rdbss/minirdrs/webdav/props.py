"""Pure WebDAV helpers for the WebDAV mini-redirector: URL paths for share-relative names, the
PROPFIND request bodies and a parser for their 207 Multi-Status answers, HTTP and ISO 8601
dates, Content-Range, and the file info map of base.py's conventions. No sockets.

Parsing: the multistatus body comes from the network, so it is parsed with the standard library's
expat-based ElementTree (which never fetches external entities) after refusing any document type
declaration outright: a multistatus answer never needs one, and refusing it rules out entity
expansion attacks whatever the expat version.
"""

from __future__ import annotations

import hashlib
import re
import stat
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from rdbss.wire.constants import FileAttributes

DAV = "{DAV:}"
#: What a file/directory PROPFIND asks for.
PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<D:propfind xmlns:D="DAV:"><D:prop>'
    b"<D:resourcetype/><D:getcontentlength/><D:getlastmodified/><D:creationdate/><D:getetag/>"
    b"</D:prop></D:propfind>"
)
#: What a volume query asks for (RFC 4331 quota properties).
QUOTA_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<D:propfind xmlns:D="DAV:"><D:prop>'
    b"<D:resourcetype/><D:quota-available-bytes/><D:quota-used-bytes/>"
    b"</D:prop></D:propfind>"
)
#: The allocation unit reported for file sizes (WebDAV has none; this is what a disk would say).
ALLOCATION_UNIT = 4096
#: the modes a resource is described with (WebDAV has none: what a disk would say)
FILE_MODE = stat.S_IFREG | 0o644
DIR_MODE = stat.S_IFDIR | 0o755
_STATUS_LINE = re.compile(r"^\s*HTTP/\d(?:\.\d)?\s+(\d{3})")
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_NS_PER_S = 1_000_000_000


class MultiStatusError(ValueError):
    """The body is not a usable 207 Multi-Status document."""


@dataclass(frozen=True, slots=True)
class DavEntry:
    """One resource of a PROPFIND answer (only properties the server answered 200 for)."""

    path: str  # the decoded URL path, no trailing slash ("/" for the server root)
    is_dir: bool
    size: int | None = None
    last_modified_ns: int | None = None
    creation_ns: int | None = None
    etag: str | None = None
    quota_available: int | None = None
    quota_used: int | None = None

    @property
    def name(self) -> str:
        """The last path component (decoded)."""
        return self.path.rstrip("/").rpartition("/")[2]


# --- URL paths ---------------------------------------------------------------------------------
def encode_segment(segment: str) -> str:
    """Percent-encode one path segment: UTF-8, everything but unreserved characters escaped."""
    return quote(segment, safe="", encoding="utf-8", errors="strict")


def resource_path(base_raw: str, share: str, parts: Sequence[str], *, collection: bool) -> str:
    """The raw (percent-encoded) URL path of ``parts`` under ``share`` under the server's base
    path ``base_raw`` (itself raw, ending in "/"). Collections end in "/"; the share root always
    does."""
    if not base_raw.endswith("/"):
        base_raw += "/"
    path = base_raw + encode_segment(share) + "/"
    if parts:
        path += "/".join(encode_segment(p) for p in parts)
        if collection:
            path += "/"
    return path


def normalize_path(path: str) -> str:
    """A decoded URL path for comparisons: no duplicate slashes, no trailing slash."""
    collapsed = re.sub("/{2,}", "/", path)
    return collapsed.rstrip("/") or "/"


def href_path(href: str) -> str:
    """The decoded, normalized path of an href (an absolute URL or an absolute path)."""
    return normalize_path(unquote(urlsplit(href.strip()).path, encoding="utf-8", errors="strict"))


# --- dates -------------------------------------------------------------------------------------
def _to_ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * _NS_PER_S + delta.microseconds * 1000


def parse_http_date(text: str | None) -> int | None:
    """An RFC 1123 date (getlastmodified) as POSIX ns, or None if absent or unreadable."""
    if not text or not text.strip():
        return None
    try:
        return _to_ns(parsedate_to_datetime(text.strip()))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def parse_iso_date(text: str | None) -> int | None:
    """An ISO 8601 / RFC 3339 date (creationdate) as POSIX ns, or None."""
    if not text or not text.strip():
        return None
    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    try:
        return _to_ns(datetime.fromisoformat(value))
    except (ValueError, OverflowError):
        return parse_http_date(text)  # some servers put an RFC 1123 date here


def http_date(ns: int) -> str:
    """POSIX ns as an RFC 1123 date (second resolution)."""
    moment = datetime.fromtimestamp(ns // _NS_PER_S, tz=UTC)
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """(first, last, total or None) of ``bytes first-last/total``, or None if unreadable."""
    if not value:
        return None
    match = _CONTENT_RANGE.match(value)
    if match is None:
        return None
    first, last = int(match.group(1)), int(match.group(2))
    total = None if match.group(3) == "*" else int(match.group(3))
    if last < first:
        return None
    return first, last, total


def strong_etag(text: str | None) -> str | None:
    """The opaque tag of a strong ETag, quotes taken off (servers quote it in a GET's header
    and some leave the quotes out of getetag); None for a weak or missing one."""
    if text is None:
        return None
    value = text.strip()
    if not value or value.startswith("W/"):
        return None
    return value.strip('"') or None


def still_current(
    entry: DavEntry, etag: str | None, size: int | None, last_modified_ns: int | None
) -> bool:
    """Whether ``entry`` (a file's properties from an earlier PROPFIND) still describes the
    file a GET just answered for: the same strong ETag, size and Last-Modified. A strong ETag
    names one version of the resource (RFC 9110, 8.8.3), so the properties a GET does not
    carry (creationdate) are that version's; without one nothing is known."""
    tag = strong_etag(etag)
    return (
        not entry.is_dir
        and tag is not None
        and strong_etag(entry.etag) == tag
        and entry.size == size
        and entry.last_modified_ns == last_modified_ns
    )


def put_entry(
    path: str, created: bool, etag: str | None, date: str | None, found: DavEntry | None
) -> DavEntry | None:
    """The empty file a PUT of nothing just made at the decoded ``path`` (``created``: the
    answer was 201, else it replaced ``found``), as its answer describes it: the strong ETag
    names that version, and its Date (the server's clock, to the second, as getlastmodified
    goes) is the version's last write and, for a new file, its creation. None when the answer
    cannot stand for a PROPFIND of the file: no strong ETag, no Date, or a replaced file whose
    creation time is not known."""
    written = parse_http_date(date)
    if strong_etag(etag) is None or written is None:
        return None
    if created:
        return DavEntry(path, False, 0, written, written, etag)
    if found is None or found.is_dir or found.creation_ns is None:
        return None
    return replace(found, path=path, size=0, last_modified_ns=written, etag=etag)


def current_entry(
    entry: DavEntry, etag: str | None, size: int | None, last_modified_ns: int | None
) -> DavEntry | None:
    """``entry`` as the file a GET just answered for, if it still describes it
    (``still_current``); None if not. An entry without a Last-Modified (one learned from a
    PUT's answer, which need not carry it) is that version when the strong ETag and the size
    match, and takes the GET's Last-Modified."""
    if entry.last_modified_ns is None and last_modified_ns is not None:
        entry = replace(entry, last_modified_ns=last_modified_ns)
    return entry if still_current(entry, etag, size, last_modified_ns) else None


# --- multistatus -------------------------------------------------------------------------------
def _int_or_none(text: str | None) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def _status_code(element: ET.Element | None) -> int | None:
    if element is None or element.text is None:
        return None
    match = _STATUS_LINE.match(element.text)
    return int(match.group(1)) if match else None


def _response_entry(response: ET.Element) -> DavEntry | None:
    href = response.find(f"{DAV}href")
    if href is None or not href.text or not href.text.strip():
        raise MultiStatusError("a response without an href")
    try:
        path = href_path(href.text)
    except UnicodeDecodeError as exc:
        raise MultiStatusError(f"an href that is not UTF-8: {exc}") from None
    # A response-level status (no propstat) says the resource itself failed.
    if response.find(f"{DAV}propstat") is None:
        code = _status_code(response.find(f"{DAV}status"))
        if code is not None and code >= 300:
            return None
    props: dict[str, ET.Element] = {}
    for propstat in response.findall(f"{DAV}propstat"):
        if _status_code(propstat.find(f"{DAV}status")) != 200:
            continue
        prop = propstat.find(f"{DAV}prop")
        if prop is None:
            continue
        for child in prop:
            props[child.tag] = child
    resourcetype = props.get(f"{DAV}resourcetype")
    is_dir = resourcetype is not None and resourcetype.find(f"{DAV}collection") is not None

    def text(name: str) -> str | None:
        element = props.get(f"{DAV}{name}")
        return element.text if element is not None else None

    etag = text("getetag")
    return DavEntry(
        path=path,
        is_dir=is_dir,
        size=_int_or_none(text("getcontentlength")),
        last_modified_ns=parse_http_date(text("getlastmodified")),
        creation_ns=parse_iso_date(text("creationdate")),
        etag=etag.strip() if etag and etag.strip() else None,
        quota_available=_int_or_none(text("quota-available-bytes")),
        quota_used=_int_or_none(text("quota-used-bytes")),
    )


def parse_multistatus(body: bytes) -> list[DavEntry]:
    """The resources of a 207 Multi-Status body, in document order (resources the server
    reported as failed are left out). Raises MultiStatusError on anything unusable."""
    head = body[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in body.lower():
        raise MultiStatusError("document type declarations are not accepted")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise MultiStatusError(f"not XML: {exc}") from None
    if root.tag != f"{DAV}multistatus":
        raise MultiStatusError(f"root element is {root.tag!r}, not DAV:multistatus")
    entries = []
    for response in root.findall(f"{DAV}response"):
        entry = _response_entry(response)
        if entry is not None:
            entries.append(entry)
    return entries


def split_listing(
    entries: Sequence[DavEntry], collection: str
) -> tuple[DavEntry | None, dict[str, DavEntry]]:
    """(the collection's own entry, {child name: entry}) of a Depth 1 answer for the decoded
    path ``collection``; entries that are neither (a misbehaving server) are ignored."""
    own_path = normalize_path(collection)
    own: DavEntry | None = None
    children: dict[str, DavEntry] = {}
    for entry in entries:
        if entry.path == own_path:
            own = entry
            continue
        parent, _, name = entry.path.rpartition("/")
        if (parent or "/") != own_path or not name:
            continue
        children[name] = entry
    return own, children


# --- file info ---------------------------------------------------------------------------------
def file_id(*key: str) -> int:
    """A stable 63-bit id for a resource (WebDAV has no inode numbers)."""
    digest = hashlib.blake2b("\x00".join(key).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << 63) - 1)


def file_info(
    entry: DavEntry,
    rel: str,
    *,
    size: int | None = None,
    last_write_ns: int | None = None,
    delete_pending: bool = False,
    ident: int = 0,
) -> dict[str, Any]:
    """The file info map of base.py's conventions (the keys of rdbss/minirdrs/common/
    fileinfo.py's) for a PROPFIND entry; ``size``/``last_write_ns`` override the server's
    values (staged data)."""
    is_dir = entry.is_dir
    length = 0 if is_dir else (size if size is not None else entry.size or 0)
    mtime = last_write_ns if last_write_ns is not None else entry.last_modified_ns or 0
    ctime = entry.creation_ns if entry.creation_ns is not None else mtime
    name = rel.rpartition("\\")[2]
    attrs = FileAttributes.NONE
    if is_dir:
        attrs |= FileAttributes.DIRECTORY
    if name.startswith("."):
        attrs |= FileAttributes.HIDDEN
    allocation = -(-length // ALLOCATION_UNIT) * ALLOCATION_UNIT
    return {
        "name": rel,
        "size": length,
        "allocation_size": allocation,
        "attributes": int(attrs or FileAttributes.NORMAL),
        "creation_time": ctime,
        "last_access_time": mtime,
        "last_write_time": mtime,
        "change_time": mtime,
        "nlink": 1,
        "directory": is_dir,
        "delete_pending": delete_pending,
        "file_id": ident,
        "mode": DIR_MODE if is_dir else FILE_MODE,
    }

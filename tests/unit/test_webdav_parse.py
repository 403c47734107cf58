"""Pure parts of the WebDAV mini-redirector: PROPFIND answers, URL paths, dates, Content-Range,
the file info map, the HTTP status mapping and configuration checks. No sockets."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from rdbss.minirdrs.local import file_info as local_file_info
from rdbss.minirdrs.webdav.chain import MAX_CHAIN_READ, read_window
from rdbss.minirdrs.webdav.config import ServerConfig
from rdbss.minirdrs.webdav.errors import http_status
from rdbss.minirdrs.webdav.minirdr import WebDavMiniRdr
from rdbss.minirdrs.webdav.props import (
    DavEntry,
    MultiStatusError,
    current_entry,
    file_id,
    file_info,
    href_path,
    http_date,
    parse_content_range,
    parse_http_date,
    parse_iso_date,
    parse_multistatus,
    put_entry,
    resource_path,
    split_listing,
    still_current,
    strong_etag,
)
from rdbss.wire import (
    CreateDisposition,
    CreateOptions,
    CreateParameters,
    FileAttributes,
    LowIoOp,
    LowIoParameters,
    NtStatus,
    NtStatusError,
    Routine,
    RxContext,
)
from rdbss.wire.constants import RxFlags

S = NtStatus

# What wsgidav 4.4 answers to PROPFIND Depth 1 on a share (trimmed, one file with a space, a
# percent sign and an é in its name, one sub-collection).
WSGIDAV_DEPTH1 = b"""<?xml version="1.0" encoding="utf-8" ?>
<ns0:multistatus xmlns:ns0="DAV:"><ns0:response><ns0:href>/sh/</ns0:href><ns0:propstat><ns0:prop>
<ns0:resourcetype><ns0:collection /></ns0:resourcetype>
<ns0:getlastmodified>Wed, 25 Nov 2026 06:42:28 GMT</ns0:getlastmodified>
<ns0:creationdate>2026-11-25T06:42:28Z</ns0:creationdate>
<ns0:quota-available-bytes>85150601216</ns0:quota-available-bytes>
<ns0:quota-used-bytes>23793692672</ns0:quota-used-bytes></ns0:prop>
<ns0:status>HTTP/1.1 200 OK</ns0:status></ns0:propstat><ns0:propstat><ns0:prop>
<ns0:getcontentlength /><ns0:getetag /></ns0:prop><ns0:status>HTTP/1.1 404 Not Found</ns0:status>
</ns0:propstat></ns0:response><ns0:response><ns0:href>/sh/a%20b%25c%20%C3%A9.txt</ns0:href>
<ns0:propstat><ns0:prop><ns0:resourcetype /><ns0:getcontentlength>5</ns0:getcontentlength>
<ns0:getlastmodified>Wed, 25 Nov 2026 06:42:28 GMT</ns0:getlastmodified>
<ns0:creationdate>2026-11-25T06:42:27Z</ns0:creationdate><ns0:quota-available-bytes />
<ns0:getetag>2152667-1795588948-5</ns0:getetag></ns0:prop>
<ns0:status>HTTP/1.1 200 OK</ns0:status></ns0:propstat></ns0:response><ns0:response>
<ns0:href>/sh/d/</ns0:href><ns0:propstat><ns0:prop><ns0:resourcetype><ns0:collection />
</ns0:resourcetype></ns0:prop><ns0:status>HTTP/1.1 200 OK</ns0:status></ns0:propstat>
</ns0:response></ns0:multistatus>"""

MODIFIED_NS = 1_795_588_948 * 10**9  # Wed, 25 Nov 2026 06:42:28 GMT


def test_wsgidav_depth1_answer() -> None:
    entries = parse_multistatus(WSGIDAV_DEPTH1)
    assert [e.path for e in entries] == ["/sh", "/sh/a b%c é.txt", "/sh/d"]
    share, file, sub = entries
    assert share.is_dir and share.size is None
    assert share.quota_available == 85150601216 and share.quota_used == 23793692672
    assert not file.is_dir
    assert file.name == "a b%c é.txt"
    assert file.size == 5
    assert file.last_modified_ns == MODIFIED_NS
    assert file.creation_ns == MODIFIED_NS - 10**9
    assert file.etag == "2152667-1795588948-5"
    assert file.quota_available is None  # an empty element is not a value
    assert sub.is_dir and sub.name == "d"
    own, children = split_listing(entries, "/sh/")
    assert own is share
    assert sorted(children) == ["a b%c é.txt", "d"]


def test_properties_from_a_failed_propstat_are_ignored() -> None:
    body = b"""<?xml version="1.0"?><D:multistatus xmlns:D="DAV:"><D:response>
    <D:href>http://host:8080/dav/x.bin</D:href>
    <D:propstat><D:prop><D:getcontentlength>12</D:getcontentlength></D:prop>
    <D:status>HTTP/1.1 403 Forbidden</D:status></D:propstat>
    <D:propstat><D:prop><D:resourcetype/></D:prop><D:status>HTTP/1.1 200 OK</D:status>
    </D:propstat></D:response>
    <D:response><D:href>/dav/gone</D:href><D:status>HTTP/1.1 404 Not Found</D:status>
    </D:response></D:multistatus>"""
    entries = parse_multistatus(body)
    assert len(entries) == 1  # the failed resource is left out
    (entry,) = entries
    assert entry.path == "/dav/x.bin"  # an absolute URL href: its path
    assert entry.size is None and not entry.is_dir


@pytest.mark.parametrize(
    "body",
    [
        b"not xml at all",
        b'<?xml version="1.0"?><html><body>nope</body></html>',
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
        b'<D:multistatus xmlns:D="DAV:">&a;</D:multistatus>',
        b'<D:multistatus xmlns:D="DAV:"><D:response><D:status>HTTP/1.1 200 OK</D:status>'
        b"</D:response></D:multistatus>",
    ],
    ids=["not-xml", "not-multistatus", "doctype", "no-href"],
)
def test_unusable_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(MultiStatusError):
        parse_multistatus(body)


def test_split_listing_ignores_what_is_not_a_child() -> None:
    entries = [
        DavEntry("/s/dir", True),
        DavEntry("/s/dir/a", False),
        DavEntry("/s/dir/sub/deep", False),  # not a direct child
        DavEntry("/s/other", False),
    ]
    own, children = split_listing(entries, "/s/dir/")
    assert own is entries[0]
    assert list(children) == ["a"]


def test_resource_paths_are_percent_encoded_per_segment() -> None:
    assert resource_path("/", "sh", [], collection=True) == "/sh/"
    assert resource_path("/dav/", "my share", ["a b", "c%d é#?.txt"], collection=False) == (
        "/dav/my%20share/a%20b/c%25d%20%C3%A9%23%3F.txt"
    )
    assert resource_path("/dav", "s", ["d"], collection=True) == "/dav/s/d/"
    assert href_path("/dav/my%20share/a%20b/") == "/dav/my share/a b"
    assert href_path("https://h/x//y/") == "/x/y"
    assert href_path("/") == "/"


def test_dates_and_ranges() -> None:
    assert parse_http_date("Wed, 25 Nov 2026 06:42:28 GMT") == MODIFIED_NS
    assert http_date(MODIFIED_NS + 999) == "Wed, 25 Nov 2026 06:42:28 GMT"
    assert parse_iso_date("2026-11-25T06:42:28Z") == MODIFIED_NS
    assert parse_iso_date("2026-11-25T07:42:28.5+01:00") == MODIFIED_NS + 500_000_000
    assert parse_iso_date("Wed, 25 Nov 2026 06:42:28 GMT") == MODIFIED_NS
    for bad in (None, "", "yesterday"):
        assert parse_http_date(bad) is None
        assert parse_iso_date(bad) is None
    assert parse_content_range("bytes 100-199/268435456") == (100, 199, 268435456)
    assert parse_content_range("bytes 0-0/*") == (0, 0, None)
    for bad in (None, "", "bytes */5", "bytes 9-3/10", "items 1-2/3"):
        assert parse_content_range(bad) is None


def test_file_info_has_the_keys_of_the_local_one() -> None:
    entry = DavEntry("/s/.hidden", False, 5000, MODIFIED_NS, MODIFIED_NS - 10**9)
    info = file_info(entry, "dir\\.hidden", ident=file_id("u", "s", "dir\\.hidden"))
    assert set(info) == set(local_file_info(os.stat("."), "x"))
    assert info["size"] == 5000 and info["allocation_size"] == 8192
    assert info["last_write_time"] == MODIFIED_NS
    assert info["creation_time"] == MODIFIED_NS - 10**9
    assert info["attributes"] == FileAttributes.HIDDEN
    assert not info["directory"]
    staged = file_info(entry, "f", size=7, last_write_ns=MODIFIED_NS + 1)
    assert staged["size"] == 7 and staged["last_write_time"] == MODIFIED_NS + 1
    assert staged["attributes"] == FileAttributes.NORMAL
    folder = file_info(DavEntry("/s/d", True, None, MODIFIED_NS), "d")
    assert folder["directory"] and folder["size"] == 0
    assert folder["attributes"] == FileAttributes.DIRECTORY
    assert folder["creation_time"] == MODIFIED_NS  # no creationdate: the modification time
    assert file_id("u", "s", "a") == file_id("u", "s", "a") != file_id("u", "s", "b")
    assert 0 <= file_id("x") < 1 << 63


@pytest.mark.parametrize(
    ("code", "method", "status"),
    [
        (401, "GET", S.STATUS_LOGON_FAILURE),
        (403, "PUT", S.STATUS_ACCESS_DENIED),
        (404, "GET", S.STATUS_OBJECT_NAME_NOT_FOUND),
        (405, "MKCOL", S.STATUS_OBJECT_NAME_COLLISION),
        (405, "PUT", S.STATUS_FILE_IS_A_DIRECTORY),
        (409, "PUT", S.STATUS_OBJECT_PATH_NOT_FOUND),
        (409, "MKCOL", S.STATUS_OBJECT_PATH_NOT_FOUND),
        (412, "MOVE", S.STATUS_OBJECT_NAME_COLLISION),
        (416, "GET", S.STATUS_END_OF_FILE),
        (423, "PUT", S.STATUS_SHARING_VIOLATION),
        (507, "PUT", S.STATUS_DISK_FULL),
        (500, "GET", S.STATUS_UNEXPECTED_NETWORK_ERROR),
        (503, "PROPFIND", S.STATUS_UNEXPECTED_NETWORK_ERROR),
        (302, "GET", S.STATUS_INVALID_NETWORK_RESPONSE),
    ],
)
def test_http_status_mapping(code: int, method: str, status: int) -> None:
    assert http_status(code, method) == status


# ------------------------------------------------------------------------------ config
def _server(**table: object) -> dict[str, object]:
    return {"servers": {"dav": {"url": "http://127.0.0.1:1/", **table}}}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"bogus": 1}, "unknown keys"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"servers": []}, "servers"),
        ({"servers": {"a\\b": {"url": "http://h/"}}}, "not a valid server name"),
        ({"servers": {"dav": {}}}, "needs a url"),
        (_server(url="ftp://h/"), "http"),
        (_server(url="http://user:pw@h/"), "not in the url"),
        (_server(url="http://h/?q=1"), "query"),
        (_server(pasword_file="/x"), "unknown keys"),
        (_server(username="u", password="a", password_file="/x"), "only one"),
        (_server(password_file="/x"), "without a username"),
        (_server(verify=3), "verify"),
    ],
)
def test_bad_configurations_are_refused(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WebDavMiniRdr("webdav", config)


def test_servers_and_credentials_are_read_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cret-Pw"
    pw = tmp_path / "pw"
    pw.write_text(secret + "\r\n")
    pw.chmod(0o600)
    m = WebDavMiniRdr(
        "webdav",
        {
            "servers": {
                "One": {"url": "http://h/dav", "username": "u", "password_file": str(pw)},
                "two": {"url": "https://h/", "username": "u", "password_env": "RDBSS_T_PW"},
                "three": {"url": "http://h/", "username": "u", "password": secret},
                "anon": {"url": "http://h/"},
            }
        },
    )
    assert m.servers() == ["One", "two", "three", "anon"]
    configs = m._configs
    assert str(configs["one"].url) == "http://h/dav/"  # the base is a collection
    assert secret not in repr(configs["three"])
    assert configs["one"].credentials() == ("u", secret)  # only the line break is dropped
    assert configs["three"].credentials() == ("u", secret)
    assert configs["anon"].credentials() is None
    monkeypatch.delenv("RDBSS_T_PW", raising=False)
    with pytest.raises(NtStatusError) as ei:
        configs["two"].credentials()
    assert ei.value.status == S.STATUS_LOGON_FAILURE
    monkeypatch.setenv("RDBSS_T_PW", secret)
    assert configs["two"].credentials() == ("u", secret)
    pw.unlink()  # read when the SrvCall is made, not at start
    with pytest.raises(NtStatusError) as ei:
        configs["one"].credentials()
    assert ei.value.status == S.STATUS_LOGON_FAILURE
    assert secret not in str(ei.value)


def test_server_config_repr_hides_the_password() -> None:
    config = ServerConfig("s", WebDavMiniRdr("w", _server())._configs["dav"].url, password="pw!")
    assert "pw!" not in repr(config)


def test_strong_etags_compare_without_their_quotes_and_weak_ones_not_at_all() -> None:
    assert strong_etag('"a-1-5"') == strong_etag("a-1-5") == "a-1-5"
    assert strong_etag(' "x" ') == "x"
    for unusable in (None, "", "  ", 'W/"a-1-5"', '""'):
        assert strong_etag(unusable) is None


def test_an_entry_seen_is_current_only_for_the_same_etag_size_and_date() -> None:
    seen = DavEntry("/s/f", False, 5, 1_000_000_000, 7, "a-1-5")
    assert still_current(seen, '"a-1-5"', 5, 1_000_000_000)
    assert not still_current(seen, '"a-2-5"', 5, 1_000_000_000)  # another version
    assert not still_current(seen, '"a-1-5"', 6, 1_000_000_000)
    assert not still_current(seen, '"a-1-5"', 5, 2_000_000_000)
    assert not still_current(seen, None, 5, 1_000_000_000)  # nothing to compare
    assert not still_current(seen, 'W/"a-1-5"', 5, 1_000_000_000)
    folder = DavEntry("/s/f", True, 5, 1_000_000_000, 7, "a-1-5")
    assert not still_current(folder, '"a-1-5"', 5, 1_000_000_000)
    no_tag = DavEntry("/s/f", False, 5, 1_000_000_000, 7, None)
    assert not still_current(no_tag, '""', 5, 1_000_000_000)


def test_only_a_read_of_an_existing_files_start_goes_as_one_get() -> None:
    related = int(RxFlags.RELATED)

    def create(disposition: int = 1, options: int = 0) -> RxContext:
        params = CreateParameters(disposition=disposition, create_options=options)
        return RxContext(0, 0, routine=Routine.MRxCreate, create=params)

    def read(offset: int, length: int) -> RxContext:
        io = LowIoParameters(operation=LowIoOp.READ, offset=offset, length=length)
        return RxContext(0, 0, routine=Routine.MRxLowIOSubmit, lowio=io, flags=related)

    def write() -> RxContext:
        io = LowIoParameters(operation=LowIoOp.WRITE, offset=0, length=1)
        return RxContext(0, 0, routine=Routine.MRxLowIOSubmit, lowio=io, flags=related)

    close = RxContext(0, 0, routine=Routine.MRxCloseSrvOpen, flags=related)
    reads = [read(100, 50), read(0, 10), close]
    assert read_window(create(), reads, [None] * 3) == 150
    assert read_window(create(CreateDisposition.FILE_OPEN_IF), reads, [None] * 3) == 150
    for refused in (
        create(CreateDisposition.FILE_CREATE),
        create(CreateDisposition.FILE_OVERWRITE_IF),
        create(options=CreateOptions.FILE_DIRECTORY_FILE),
        create(options=CreateOptions.FILE_DELETE_ON_CLOSE),
    ):
        assert read_window(refused, reads, [None] * 3) == 0
    assert read_window(create(), [close], [None]) == 0  # nothing to read
    assert read_window(create(), [write(), close], [1, None]) == 0
    assert read_window(create(), [read(0, 10)], [None]) == 0  # no close
    assert read_window(create(), [read(0, MAX_CHAIN_READ + 1), close], [None] * 2) == 0


def test_an_entry_without_a_date_is_current_for_its_etag_and_size_and_takes_the_gets_date() -> None:
    stored = DavEntry("/s/f", False, 5, None, 7, '"a-1-5"')  # from a PUT's answer
    assert current_entry(stored, '"a-1-5"', 5, 3_000_000_000) == DavEntry(
        "/s/f", False, 5, 3_000_000_000, 7, '"a-1-5"'
    )
    assert current_entry(stored, '"a-2-5"', 5, 3_000_000_000) is None  # another version
    assert current_entry(stored, '"a-1-5"', 6, 3_000_000_000) is None
    assert current_entry(stored, 'W/"a-1-5"', 5, 3_000_000_000) is None
    assert current_entry(stored, '"a-1-5"', 5, None) is stored  # a server giving no dates
    seen = DavEntry("/s/f", False, 5, 1_000_000_000, 7, "a-1-5")
    assert current_entry(seen, '"a-1-5"', 5, 1_000_000_000) is seen
    assert current_entry(seen, '"a-1-5"', 5, 2_000_000_000) is None


def test_an_empty_puts_answer_describes_the_file_it_made_when_it_has_an_etag_and_a_date() -> None:
    date, at = "Wed, 25 Nov 2026 06:42:28 GMT", parse_http_date("Wed, 25 Nov 2026 06:42:28 GMT")
    assert put_entry("/s/f", True, '"a-1-0"', date, None) == DavEntry(
        "/s/f", False, 0, at, at, '"a-1-0"'
    )
    old = DavEntry("/s/f", False, 9, 5, 7, '"a-0-9"')
    assert put_entry("/s/f", False, '"a-1-0"', date, old) == DavEntry(
        "/s/f", False, 0, at, 7, '"a-1-0"'
    )  # replaced: the creation time is the old file's
    assert put_entry("/s/f", True, None, date, None) is None  # no ETag names the version
    assert put_entry("/s/f", True, 'W/"a-1-0"', date, None) is None
    assert put_entry("/s/f", True, '"a-1-0"', None, None) is None  # no date
    assert put_entry("/s/f", False, '"a-1-0"', date, None) is None  # replaced what?
    assert put_entry("/s/f", False, '"a-1-0"', date, replace(old, creation_ns=None)) is None

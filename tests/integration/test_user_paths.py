"""The short ways a user's small requests take (a stat as one compound, a small file read or
written whole as one, a listing's open riding with its first queries) give what the long ways
give: the same bytes, sizes and names, and the same errors as an open file one request at a
time, through Client, AsyncClient and fsspec, over the local, SFTP (OpenSSH), WebDAV (wsgidav)
and SMB (Samba) mini-redirectors."""

from __future__ import annotations

import asyncio
import json

import pytest

from rdbss.aio import AsyncClient
from rdbss.requests import SMALL_READ_BYTES
from rdbss.wire import Access, FileInformationClass, NtStatus
from tests.integration import test_listing_compound as listing
from tests.integration.test_listing_compound import MANY, Place

daemon = listing.daemon  # (fixtures: the four servers, and a new folder in one of them)
place = listing.place

#: a long name of non-ASCII characters (under 255 bytes in UTF-8: 3 bytes each)
LONG = "é" * 20 + "日本語のファイル名" * 6 + ".txt"

SIZES = [0, 1, SMALL_READ_BYTES - 1, SMALL_READ_BYTES, SMALL_READ_BYTES + 1]


def _data(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


@pytest.mark.parametrize("size", SIZES)
def test_a_file_written_and_read_whole_by_a_long_non_ascii_name(place: Place, size: int) -> None:
    data = _data(size)
    path = place.path(LONG)
    assert place.client.write_bytes(path, data) == size
    assert place.folder.joinpath(LONG).read_bytes() == data
    assert place.client.read_bytes(path) == data
    assert place.client.stat(path).size == size
    assert place.client.listdir(place.unc) == [LONG]
    with place.client.open(path, "rb") as f:
        assert f.read() == data


def _status_of(call: object) -> tuple[type[BaseException], object]:
    try:
        call()  # type: ignore[operator]
    except OSError as exc:
        return type(exc), getattr(exc, "status", None)
    raise AssertionError("no error")


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("missing.txt", NtStatus.STATUS_OBJECT_NAME_NOT_FOUND),
        ("nofolder\\missing.txt", NtStatus.STATUS_OBJECT_PATH_NOT_FOUND),
        ("sub", NtStatus.STATUS_FILE_IS_A_DIRECTORY),
    ],
)
def test_the_short_ways_fail_as_an_open_file_fails(
    place: Place, name: str, status: NtStatus
) -> None:
    place.folder.joinpath("sub").mkdir()
    path = place.path(name)
    opened = _status_of(lambda: place.client.open(path, "rb"))
    assert opened[1] == status
    assert _status_of(lambda: place.client.read_bytes(path)) == opened
    if status != NtStatus.STATUS_OBJECT_NAME_NOT_FOUND:  # (else both make the file)
        written = _status_of(lambda: place.client.open(path, "wb"))
        assert _status_of(lambda: place.client.write_bytes(path, b"abc")) == written
    if status != NtStatus.STATUS_FILE_IS_A_DIRECTORY:
        assert _status_of(lambda: place.client.stat(path))[1] == status
        assert place.client.stat_many([path])[0].status == status  # type: ignore[union-attr]


def test_stat_of_the_share_root_and_stat_many(place: Place) -> None:
    place.folder.joinpath("a.txt").write_bytes(b"abc")
    root = "\\".join(place.unc.split("\\")[:4])  # \\server\share
    assert place.client.stat(root).is_dir
    assert place.client.stat(place.unc).is_dir
    many = place.client.stat_many([place.path("a.txt"), place.path("b.txt"), place.unc])
    assert [getattr(m, "size", None) for m in many[:1]] == [3]
    assert getattr(many[1], "status", None) == NtStatus.STATUS_OBJECT_NAME_NOT_FOUND
    assert getattr(many[2], "is_dir", None) is True


def test_async_listing_and_small_files(place: Place, daemon: tuple) -> None:
    for i in range(MANY):
        place.folder.joinpath(f"f{i:05d}").write_bytes(b"x")
    place.folder.joinpath(LONG).write_bytes(b"")
    expected = place.client.listdir(place.unc)

    async def go() -> tuple[list[str], list[str], bytes]:
        async with AsyncClient(daemon[0].runtime_dir, timeout=30) as c:
            names = await c.listdir(place.unc)
            some = await c.listdir(place.unc, "f0000?")
            await c.write_bytes(place.path("w.bin"), _data(SMALL_READ_BYTES))
            back = await c.read_bytes(place.path("w.bin"))
            return names, some, back

    names, some, back = asyncio.run(go())
    assert sorted(names) == sorted(expected) and len(names) == MANY + 1
    assert sorted(some) == [f"f0000{i}" for i in range(10)]
    assert back == _data(SMALL_READ_BYTES)


def test_fsspec_ls_find_and_walk(place: Place, daemon: tuple) -> None:
    fsspec = pytest.importorskip("fsspec")
    from rdbss.fsspec_fs import RdbssFileSystem  # noqa: F401 (registers nothing, imports)

    fsspec.register_implementation("rdbss", "rdbss.fsspec_fs.RdbssFileSystem", clobber=True)
    place.folder.joinpath("sub").mkdir()
    place.folder.joinpath("sub", "deep.txt").write_bytes(b"dd")
    place.folder.joinpath("top.txt").write_bytes(b"t")
    runtime_dir = str(daemon[0].runtime_dir)
    fs = fsspec.filesystem("rdbss", runtime_dir=runtime_dir, skip_instance_cache=True)
    try:
        base = place.unc.lstrip("\\").replace("\\", "/")
        listed = {e["name"].rsplit("/", 1)[-1]: e for e in fs.ls(base, detail=True)}
        assert set(listed) == {"sub", "top.txt"}
        assert listed["sub"]["type"] == "directory" and listed["top.txt"]["size"] == 1
        found = sorted(p.rsplit(base, 1)[-1] for p in fs.find(base))
        assert found == ["/sub/deep.txt", "/top.txt"]
        walked = [(r.rsplit(base, 1)[-1], sorted(d), sorted(f)) for r, d, f in fs.walk(base)]
        assert walked == [("", ["sub"], ["top.txt"]), ("/sub", [], ["deep.txt"])]
        with pytest.raises(FileNotFoundError):
            fs.ls(base + "/missing")
        assert fs.info(base + "/top.txt")["size"] == 1
        data = _data(SMALL_READ_BYTES + 1)
        for size in (0, 5, SMALL_READ_BYTES, SMALL_READ_BYTES + 1):
            fs.pipe_file(f"{base}/{LONG}", data[:size])
            assert fs.cat_file(f"{base}/{LONG}") == data[:size]
            assert fs.cat_file(f"{base}/{LONG}", start=1, end=4) == data[1:4][: max(size - 1, 0)]
            assert fs.info(f"{base}/{LONG}")["size"] == size
        assert not fs.exists(base + "/missing") and fs.exists(base + "/sub")
        assert fs.isdir(base + "/sub") and not fs.isdir(base + "/top.txt")
        with pytest.raises(FileNotFoundError):
            fs.cat_file(base + "/missing/x")
        fs.rm(base + "/sub", recursive=True)
        assert sorted(fs.ls(base, detail=False)) == sorted([f"{base}/top.txt", f"{base}/{LONG}"])
    finally:
        fs.close()


def test_the_cli_lists_cats_and_stats_on_every_backend(place: Place, daemon: tuple) -> None:
    d = daemon[0]
    place.folder.joinpath(LONG).write_bytes(b"0123456789")
    place.folder.joinpath("sub").mkdir()
    url = place.unc.replace("\\", "/")

    def ok(*args: str) -> str:
        proc = d.cli(*args)
        assert proc.returncode == 0, proc.stderr.decode()
        return str(proc.stdout.decode())

    listing = json.loads(ok("--json", "ls", url))
    assert sorted(e["name"] for e in listing) == sorted([LONG, "sub"])
    assert {e["name"]: e["size"] for e in listing}[LONG] == 10
    assert LONG in ok("ls", "-l", url)
    assert ok("cat", f"{url}/{LONG}") == "0123456789"
    assert json.loads(ok("--json", "stat", f"{url}/{LONG}"))["size"] == 10
    for args, status in (
        (("ls", f"{url}/missing"), b"STATUS_OBJECT_NAME_NOT_FOUND"),
        (("ls", f"{url}/nofolder/x"), b"STATUS_OBJECT_PATH_NOT_FOUND"),
        (("cat", f"{url}/sub"), b"STATUS_FILE_IS_A_DIRECTORY"),
        (("cat", f"{url}/missing"), b"STATUS_OBJECT_NAME_NOT_FOUND"),
    ):
        proc = d.cli(*args)
        assert proc.returncode == 1 and status in proc.stderr, (args, proc.stderr)


def test_the_cli_lists_a_file_by_its_name(place: Place, daemon: tuple) -> None:
    place.folder.joinpath("one.txt").write_bytes(b"12345")
    url = place.unc.replace("\\", "/") + "/one.txt"
    proc = daemon[0].cli("--json", "ls", url)
    assert proc.returncode == 0, proc.stderr
    (entry,) = json.loads(proc.stdout)
    assert (entry["name"], entry["size"], entry["dir"]) == ("one.txt", 5, False)


def _outcome(call: object) -> object:
    try:
        return call()  # type: ignore[operator]
    except OSError as exc:
        return type(exc), getattr(exc, "status", None)


def test_a_read_only_file_is_written_whole_as_an_open_file_writes_it(place: Place) -> None:
    """A file read-only on the server: a whole small write (one compound) is refused (or let
    through) as an open for writing is, and the file reads whole either way."""
    target = place.folder.joinpath("ro.txt")
    target.write_bytes(b"old")
    target.chmod(0o444)
    try:
        alone = _outcome(lambda: place.client.open(place.path("ro.txt"), "r+b").close())
        packed = _outcome(lambda: place.client.write_bytes(place.path("ro.txt"), b"old"))
        assert (alone is None) == (packed == 3), (alone, packed)
        if alone is not None:
            assert packed == alone
        assert place.client.read_bytes(place.path("ro.txt")) == b"old"
        assert place.client.stat(place.path("ro.txt")).size == 3
    finally:
        target.chmod(0o644)


@pytest.mark.parametrize("count", [511, 512, 1023, 1024, 1025])
def test_listings_of_a_batch_boundary_list_every_entry_once(
    place: Place, daemon: tuple, count: int
) -> None:
    """Folders of one or two batches (512 entries each) exactly, and one more or less: the
    listing compound's two queries and the queries after them list every entry once, through
    Client.scandir, AsyncClient.listdir and a pattern."""
    names = sorted(f"e{i:05d}" for i in range(count))
    for name in names:
        place.folder.joinpath(name).write_bytes(b"")
    assert sorted(place.client.listdir(place.unc)) == names
    assert sorted(place.client.listdir(place.unc, "e*")) == names

    async def listed() -> list[str]:
        async with AsyncClient(daemon[0].runtime_dir, timeout=30) as c:
            return await c.listdir(place.unc)

    assert sorted(asyncio.run(listed())) == names


@pytest.mark.parametrize(
    "name", ["😀 smile.txt", "a%20b #1&=+;.txt", "it's [x] {y} ~!@$^.txt", "ÅNGSTRÖM.TXT"]
)
def test_names_that_need_escaping_take_the_short_ways(place: Place, name: str) -> None:
    """Names of characters outside the BMP (a UTF-16 pair), of URL and glob characters: a
    whole small write and read, a stat and a listing find the same file."""
    path = place.path(name)
    assert place.client.write_bytes(path, b"named") == 5
    assert place.folder.joinpath(name).read_bytes() == b"named"
    assert place.client.read_bytes(path) == b"named"
    assert place.client.stat(path).size == 5
    assert place.client.listdir(place.unc) == [name]
    assert [e.size for e in place.client.scandir(place.unc)] == [5]


def _long_stat(place: Place, path: str) -> object:
    """A stat the long way: an open for attributes, a query on its handle, a close."""
    try:
        handle = place.client.create(path, access=Access.FILE_READ_ATTRIBUTES)
    except OSError as exc:
        return type(exc), getattr(exc, "status", None)
    try:
        info = place.client.query_info(handle.fobx)
    finally:
        place.client.close_handle(handle.fobx)
    return info.size, info.is_dir, info.last_write_time


def _short_stat(place: Place, path: str) -> object:
    try:
        info = place.client.stat(path)
    except OSError as exc:
        return type(exc), getattr(exc, "status", None)
    return info.size, info.is_dir, info.last_write_time


def test_a_stat_answers_what_an_open_for_attributes_answers(place: Place) -> None:
    """Client.stat (one MRxQueryOpen, or the attribute cache) against an open for attributes
    and a query on its handle: the same size, kind and write time, or the same error, for
    plain names, a trailing separator, '.' components, a file with writes pending on an open
    handle and a file whose delete is pending."""
    place.folder.joinpath("sub").mkdir()
    place.folder.joinpath("sub", "f.txt").write_bytes(b"12345")
    paths = [
        "sub",
        "sub\\",
        "sub\\f.txt",
        "sub\\.\\f.txt",
        "sub\\f.txt\\",
        "sub\\f.txt\\more",
        "missing\\f.txt",
    ]
    for rel in paths:
        path = place.path(rel)
        assert _short_stat(place, path) == _long_stat(place, path), rel
    with place.client.open(place.path("sub\\pending.txt"), "wb", buffering=0) as f:
        f.write(b"x" * 1000)  # (maybe kept in the core, not yet on the server)
        pending = place.path("sub\\pending.txt")
        assert _short_stat(place, pending) == _long_stat(place, pending)
        if "davtest" not in place.unc:  # (WebDAV uploads a handle's writes at its close)
            assert _short_stat(place, pending)[0] == 1000  # type: ignore[index]
    doomed = place.client.create(
        place.path("sub\\f.txt"), access=Access.DELETE | Access.FILE_READ_ATTRIBUTES
    )
    try:
        place.client.set_info(
            doomed.fobx, FileInformationClass.FileDispositionInformation, delete=True
        )
        short = _short_stat(place, place.path("sub\\f.txt"))
        assert short == _long_stat(place, place.path("sub\\f.txt"))
        assert short[1] == NtStatus.STATUS_DELETE_PENDING, short  # type: ignore[index]
    finally:
        place.client.close_handle(doomed.fobx)
    assert _short_stat(place, place.path("sub\\f.txt"))[1] == NtStatus.STATUS_OBJECT_NAME_NOT_FOUND  # type: ignore[index]


def test_an_exclusive_whole_write_of_an_existing_name_collides(place: Place) -> None:
    place.folder.joinpath("there.txt").write_bytes(b"kept")
    place.folder.joinpath("sub").mkdir()
    for name in ("there.txt", "sub"):
        alone = _status_of(lambda n=name: place.client.open(place.path(n), "xb"))  # type: ignore[misc]
        packed = _status_of(
            lambda n=name: place.client.write_bytes(place.path(n), b"new", exclusive=True)  # type: ignore[misc]
        )
        assert packed == alone, name
        assert alone[1] == NtStatus.STATUS_OBJECT_NAME_COLLISION, name
    assert place.folder.joinpath("there.txt").read_bytes() == b"kept"
    assert place.client.write_bytes(place.path("new.txt"), b"new", exclusive=True) == 3
    assert place.client.read_bytes(place.path("new.txt")) == b"new"


def test_stat_many_of_many_paths_answers_each(place: Place, daemon: tuple) -> None:
    """More stats at once than one compound holds: an answer for each path, in order, through
    Client and AsyncClient."""
    for i in range(0, 700, 2):
        place.folder.joinpath(f"s{i:04d}").write_bytes(b"x" * (i % 5))
    paths = [place.path(f"s{i:04d}") for i in range(700)]
    want = [i % 5 if i % 2 == 0 else NtStatus.STATUS_OBJECT_NAME_NOT_FOUND for i in range(700)]

    def seen(results: list) -> list:  # type: ignore[type-arg]
        return [getattr(r, "size", getattr(r, "status", r)) for r in results]

    assert seen(place.client.stat_many(paths)) == want

    async def many() -> list:  # type: ignore[type-arg]
        async with AsyncClient(daemon[0].runtime_dir, timeout=30) as c:
            return await c.stat_many(paths)

    assert seen(asyncio.run(many())) == want

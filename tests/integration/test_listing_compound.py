"""``Client.scandir`` sends the open of a folder and its first two directory queries as one
compound (the queries ride along with the create to the mini-redirector), then goes on query
by query on the same handle. What it lists must be exactly what a handle's queries one by one
list: names, order, sizes, times, attributes, file indexes, patterns, the end of a listing
longer than two batches, and the statuses of a folder that is missing or not a folder. Over
the local, SFTP (OpenSSH), WebDAV (wsgidav) and SMB (Samba) mini-redirectors."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rdbss.client import Client
from rdbss.testing.backend import sftp_config, smb_config, webdav_config, write_password_file
from rdbss.testing.servers import SambaServer, SshServer, WebDavServer
from rdbss.testing.suite.harness import scan
from rdbss.wire import NtStatus
from tests.daemon import Daemon, running_daemon

#: more entries than two batches of a query (512 each): the listing goes on after the compound
MANY = 1100


@dataclass
class Place:
    client: Client
    unc: str
    folder: Path  # where the server keeps the folder ``unc`` names

    def path(self, name: str) -> str:
        return f"{self.unc}\\{name}"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, dict[str, Path]]]:
    base = tmp_path_factory.mktemp("listing")
    with contextlib.ExitStack() as stack:
        tables, folders = [], {}
        try:
            ssh = stack.enter_context(SshServer(base / "ssh"))
            folders["sftp"] = ssh.root_dir / "lists"
            folders["sftp"].mkdir()
            tables.append(sftp_config(ssh, {"lists": folders["sftp"]}))
            dav = stack.enter_context(WebDavServer(base / "dav"))
            folders["webdav"] = dav.root_dir
            password = write_password_file(base / "dav-password", dav.password)
            tables.append(webdav_config(dav, password))
            smb = stack.enter_context(SambaServer(base / "smb"))
            folders["smb"] = smb.share_path
            password = write_password_file(base / "smb-password", smb.password)
            tables.append(smb_config(smb, password))
        except Exception as exc:  # a host that cannot run the servers
            if os.environ.get("RDBSS_REQUIRE_SERVERS"):
                raise
            print(f"servers missing: {exc}")
        yield stack.enter_context(running_daemon(extra_config="".join(tables))), folders


_numbers = itertools.count()

#: kind -> (the UNC name of the server's folder, the test folders go below it)
ROOTS = {
    "local": r"\\local\data",
    "sftp": r"\\sshtest\lists",
    "webdav": r"\\davtest",
    "smb": r"\\sambatest\share",
}


@pytest.fixture(params=["local", "sftp", "webdav", "smb"])
def place(
    request: pytest.FixtureRequest, daemon: tuple[Daemon, dict[str, Path]]
) -> Iterator[Place]:
    d, folders = daemon
    kind = request.param
    if kind != "local" and kind not in folders:
        pytest.skip(f"no {kind} server on this host")
    root = d.share_dir if kind == "local" else folders[kind]
    name = f"t{next(_numbers)}"
    folder = root / name
    folder.mkdir()
    with d.client() as client:
        yield Place(client, f"{ROOTS[kind]}\\{name}", folder)


def _fill(folder: Path, count: int) -> None:
    for i in range(count):
        (folder / f"f{i:05d}.txt").write_bytes(b"x" * (i % 7))
    (folder / "sub").mkdir()
    (folder / ".hidden").write_bytes(b"h")
    (folder / "other.dat").write_bytes(b"d" * 3)


@pytest.mark.parametrize("count", [3, MANY])
def test_scandir_lists_what_queries_one_by_one_list(place: Place, count: int) -> None:
    """A folder of one batch (listed in the compound alone) and one of more than two (listed
    on after it): every entry once, as the queries of a handle of its own list them."""
    _fill(place.folder, count)
    expected = scan(place.client, place.unc)
    got = list(place.client.scandir(place.unc))
    assert [e.name for e in got] == [e.name for e in expected]
    assert got == expected
    assert len(got) == count + 3, "'.'/'..' or missing entries"
    assert len({e.name for e in got}) == len(got), "an entry came twice"
    assert [e.name for e in got if e.is_dir] == ["sub"]


@pytest.mark.parametrize("pattern", ["*.dat", "f0000?.txt", "SUB", "*.none"])
def test_scandir_with_a_pattern_lists_what_queries_list(place: Place, pattern: str) -> None:
    _fill(place.folder, 12)
    expected = scan(place.client, place.unc, pattern)
    assert list(place.client.scandir(place.unc, pattern)) == expected
    assert place.client.listdir(place.unc, pattern) == [e.name for e in expected]


def test_scandir_of_an_empty_folder_is_empty(place: Place) -> None:
    assert place.client.listdir(place.unc) == []


def test_scandir_of_a_missing_folder_or_a_file_says_why(place: Place) -> None:
    place.folder.joinpath("file.txt").write_bytes(b"f")
    with pytest.raises(FileNotFoundError) as missing:
        place.client.listdir(place.path("missing"))
    assert getattr(missing.value, "status", None) == NtStatus.STATUS_OBJECT_NAME_NOT_FOUND
    with pytest.raises(NotADirectoryError):
        place.client.listdir(place.path("file.txt"))


def test_scandir_leaves_no_handle_open(place: Place) -> None:
    """The listing's handle is closed once the listing ends, or when it is abandoned."""
    _fill(place.folder, MANY)
    before = place.client.status()["handles"]
    assert len(place.client.listdir(place.unc)) == MANY + 3
    partial = place.client.scandir(place.unc)
    assert next(partial).name
    partial.close()  # abandoned within the first batch
    assert place.client.stat(place.unc).is_dir  # (a round trip after the closes)
    assert place.client.status()["handles"] == before

"""The core's attribute cache through a real daemon, over the local, SFTP (OpenSSH), WebDAV
(wsgidav) and SMB (Samba) mini-redirectors: under ``caching = "exclusive"`` a stat after a
listing, a create or another stat is answered by the core (the mini-redirector's request count
does not move), its values follow every change made through rdbss, a change made on the server
directly shows once ``attr_max_age`` has passed, other caching levels keep nothing, and a
mini-redirector that dies takes its entries with it."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rdbss.client import Client
from rdbss.requests import FileInfo
from rdbss.testing.backend import sftp_config, smb_config, webdav_config, write_password_file
from rdbss.testing.servers import SambaServer, SshServer, WebDavServer
from rdbss.wire import Access, FileInformationClass
from tests.daemon import Daemon, running_daemon, wait_until

EXCLUSIVE = 'caching = "exclusive"'
#: Long enough that a test's stats fall well inside it, short enough to wait out once.
MAX_AGE = 4.0


@dataclass
class Share:
    """A share of a running daemon: its UNC name, the folder the server keeps it in, and the
    mini-redirector that serves it."""

    daemon: Daemon
    unc: str
    folder: Path
    minirdr: str

    def path(self, name: str) -> str:
        return f"{self.unc}\\{name}"


def sent_to(c: Client, minirdr: str) -> int:
    """How many requests the core has sent to ``minirdr`` (its status count)."""
    for peer in c.status()["peers"]:
        if peer["name"] == minirdr:
            return int(peer["requests"])
    raise LookupError(minirdr)


def registered_pid(c: Client, minirdr: str) -> int | None:
    return next((int(p["pid"]) for p in c.status()["peers"] if p["name"] == minirdr), None)


def buffering(c: Client) -> dict[str, Any]:
    state: dict[str, Any] = c.status()["buffering"]
    return state


def fresh(c: Client, path: str) -> FileInfo:
    """What the server says now: a query on an open handle of a class never answered from
    the cache."""
    handle = c.create(path, access=Access.FILE_READ_ATTRIBUTES)
    try:
        return c.query_info(handle.fobx, FileInformationClass.FileAllInformation)
    finally:
        c.close_handle(handle.fobx)


def same(a: FileInfo, b: FileInfo) -> bool:
    return (a.size, a.last_write_time, a.attributes, a.is_dir) == (
        b.size,
        b.last_write_time,
        b.attributes,
        b.is_dir,
    )


def _exclusive(table: str, kind: str) -> str:
    return table.replace(f'kind = "{kind}"\n', f'kind = "{kind}"\n{EXCLUSIVE}\n')


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, dict[str, Path]]]:
    """One daemon with the local, sftp, webdav and smb mini-redirectors, all ``exclusive``; the
    folders the servers keep their shares in, by kind."""
    base = tmp_path_factory.mktemp("attrs")
    with contextlib.ExitStack() as stack:
        tables, folders = [], {}
        try:
            ssh = stack.enter_context(SshServer(base / "ssh"))
            folders["sftp"] = ssh.root_dir / "attrs"
            folders["sftp"].mkdir()
            tables.append(_exclusive(sftp_config(ssh, {"attrs": folders["sftp"]}), "sftp"))
            dav = stack.enter_context(WebDavServer(base / "dav"))
            folders["webdav"] = dav.root_dir
            password = write_password_file(base / "dav-password", dav.password)
            tables.append(_exclusive(webdav_config(dav, password), "webdav"))
            smb = stack.enter_context(SambaServer(base / "smb"))
            folders["smb"] = smb.share_path
            password = write_password_file(base / "smb-password", smb.password)
            tables.append(_exclusive(smb_config(smb, password), "smb"))
        except Exception as exc:  # a host that cannot run the servers
            if os.environ.get("RDBSS_REQUIRE_SERVERS"):
                raise
            print(f"servers missing: {exc}")
        d = stack.enter_context(
            running_daemon(
                extra_config="".join(tables),
                daemon_extra=f"attr_max_age = {MAX_AGE}\nclose_delay = 0",
                local_extra=EXCLUSIVE,
            )
        )
        yield d, folders


#: kind -> (the UNC name of the test folder, its path below the server's folder)
PLACES = {
    "local": (r"\\local\data\attrs", "attrs"),
    "sftp": (r"\\sshtest\attrs\t", "t"),
    "webdav": (r"\\davtest\t", "t"),
    "smb": (r"\\sambatest\share\t", "t"),
}


@pytest.fixture(params=["local", "sftp", "webdav", "smb"])
def share(
    request: pytest.FixtureRequest, daemon: tuple[Daemon, dict[str, Path]]
) -> Iterator[Share]:
    d, folders = daemon
    kind = request.param
    if kind != "local" and kind not in folders:
        pytest.skip(f"no {kind} server on this host")
    unc, below = PLACES[kind]
    folder = (d.share_dir if kind == "local" else folders[kind]) / below
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    yield Share(d, unc, folder, kind)


def test_a_stat_after_a_listing_asks_nothing_of_the_minirdr(share: Share) -> None:
    names = [f"f{n}.bin" for n in range(20)]
    for n, name in enumerate(names):
        (share.folder / name).write_bytes(b"x" * n)
    with share.daemon.client() as c:
        listed = {e.name: e for e in c.scandir(share.unc)}
        before = sent_to(c, share.minirdr)
        hits = buffering(c)["attr_hits"]
        stats = [c.stat(share.path(name)) for name in names]
        assert sent_to(c, share.minirdr) == before  # not one request
        assert buffering(c)["attr_hits"] == hits + len(names)
        for n, (name, info) in enumerate(zip(names, stats, strict=True)):
            assert info.size == n
            assert info.last_write_time == listed[name].last_write_time
            server = fresh(c, share.path(name))
            assert same(info, server) and info.name == server.name, name
        assert stats[3].mtime == pytest.approx(os.stat(share.folder / names[3]).st_mtime, abs=1)
        # many stats in compounds too
        before = sent_to(c, share.minirdr)
        infos = c.stat_many([share.path(name) for name in names])
        assert [i.size for i in infos if isinstance(i, FileInfo)] == list(range(20))
        assert sent_to(c, share.minirdr) == before


def test_a_create_and_a_stat_feed_it_and_a_query_on_a_handle_uses_it(share: Share) -> None:
    (share.folder / "a.txt").write_bytes(b"12345")
    with share.daemon.client() as c:
        assert c.stat(share.path("a.txt")).size == 5  # asked of the server, then kept
        before = sent_to(c, share.minirdr)
        assert c.stat(share.path("a.txt")).size == 5
        assert sent_to(c, share.minirdr) == before
        handle = c.create(share.path("a.txt"), access=Access.GENERIC_READ)
        try:
            before = sent_to(c, share.minirdr)
            for cls in (
                FileInformationClass.FileBasicInformation,
                FileInformationClass.FileStandardInformation,
                FileInformationClass.FileNetworkOpenInformation,
            ):
                assert c.query_info(handle.fobx, cls).size == 5
            assert sent_to(c, share.minirdr) == before
        finally:
            c.close_handle(handle.fobx)


def test_values_follow_every_change_made_through_rdbss(share: Share) -> None:
    with share.daemon.client() as c:

        def check(name: str) -> FileInfo:
            """The stat after a change, against the server's answer; then a listing, so that
            the next change meets a kept entry."""
            info = c.stat(share.path(name))
            assert same(info, fresh(c, share.path(name))), name
            c.listdir(share.unc)
            return info

        c.write_bytes(share.path("w.bin"), b"a" * 100)
        assert check("w.bin").size == 100
        assert buffering(c)["attr_entries"] > 0
        c.write_bytes(share.path("w.bin"), b"b" * 7)  # overwritten, in one compound
        assert check("w.bin").size == 7
        with c.open(share.path("w.bin"), "ab") as f:
            f.write(b"c" * 1000)
        assert check("w.bin").size == 1007
        c.truncate(share.path("w.bin"), 3)
        assert check("w.bin").size == 3
        if share.minirdr != "webdav":  # WebDAV cannot set file times
            when = 1_600_000_000 * 10**9
            handle = c.create(share.path("w.bin"), access=Access.FILE_WRITE_ATTRIBUTES)
            try:
                c.set_info(
                    handle.fobx, FileInformationClass.FileBasicInformation, last_write_time=when
                )
            finally:
                c.close_handle(handle.fobx)
            assert check("w.bin").last_write_time == when
            assert os.stat(share.folder / "w.bin").st_mtime_ns == when
        c.rename(share.path("w.bin"), share.path("r.bin"))
        with pytest.raises(FileNotFoundError):
            c.stat(share.path("w.bin"))
        assert check("r.bin").size == 3
        c.write_bytes(share.path("other.bin"), b"o" * 50)
        check("other.bin")
        c.rename(share.path("r.bin"), share.path("other.bin"), replace=True)
        assert check("other.bin").size == 3
        c.delete(share.path("other.bin"))
        with pytest.raises(FileNotFoundError):
            c.stat(share.path("other.bin"))
        c.write_bytes(share.path("gone.bin"), b"g")
        check("gone.bin")
        c.remove(share.path("gone.bin"))  # delete on close
        with pytest.raises(FileNotFoundError):
            c.stat(share.path("gone.bin"))
        assert not list(share.folder.iterdir())


def test_a_change_on_the_server_shows_after_attr_max_age(share: Share) -> None:
    target = share.folder / "behind.txt"
    target.write_bytes(b"old")
    with share.daemon.client() as c:
        c.listdir(share.unc)
        target.write_bytes(b"changed behind the daemon's back")  # breaks the promise
        start = time.monotonic()
        seen = c.stat(share.path("behind.txt")).size
        if time.monotonic() - start < MAX_AGE / 2:
            assert seen == 3  # still the kept size: the core asked nobody
        wait_until(lambda: c.stat(share.path("behind.txt")).size == 32, MAX_AGE + 10.0)


def test_other_caching_levels_keep_nothing() -> None:
    with running_daemon(local_extra='caching = "handles"') as d, d.client() as c:
        folder = d.share_dir / "plain"
        folder.mkdir()
        for n in range(5):
            (folder / f"p{n}").write_bytes(b"p" * n)
        c.listdir(r"\\local\data\plain")
        before = sent_to(c, "local")
        for n in range(5):
            assert c.stat(rf"\\local\data\plain\p{n}").size == n
        assert sent_to(c, "local") == before + 5  # one query open each
        assert buffering(c)["attr_entries"] == 0 and buffering(c)["attr_hits"] == 0


def test_a_killed_minirdr_takes_its_entries_with_it() -> None:
    with running_daemon(local_extra=EXCLUSIVE) as d, d.client(timeout=30) as c:
        folder = d.share_dir / "kill"
        folder.mkdir()
        for n in range(5):
            (folder / f"k{n}").write_bytes(b"k" * n)
        c.listdir(r"\\local\data\kill")
        assert buffering(c)["attr_entries"] >= 5
        old = d.child_pid("local")
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: buffering(c)["attr_entries"] == 0, 20.0)
        (folder / "k1").write_bytes(b"new size")  # what the dead process told is not used
        wait_until(lambda: registered_pid(c, "local") not in (None, old), 20.0)
        assert c.stat(r"\\local\data\kill\k1").size == 8

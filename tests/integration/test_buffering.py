"""Open collapsing, delayed close and the read cache through a real daemon: what the local
mini-redirector process holds open is read from /proc/<pid>/fd, what the cache serves is told
apart by changing the file behind the daemon's back (breaking the ``exclusive`` promise on
purpose), and WebDAV against a real wsgidav server never gets a delayed close."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rdbss.client import Client
from rdbss.wire import Access, CreateDisposition, CreateInformation, NtStatus, NtStatusError
from tests.conformance.backend_webdav import webdav_config, write_password_file
from tests.daemon import Daemon, running_daemon, wait_until
from tests.servers.fixtures import WebDavServer, require_or_skip

S = NtStatus
R = Access.GENERIC_READ
RW = Access.GENERIC_READ | Access.GENERIC_WRITE


def fds_on(daemon: Daemon, path: Path) -> int:
    """How many descriptors the local mini-redirector process holds on ``path``."""
    pid = daemon.child_pid("local")
    target = str(path.resolve())
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}").removesuffix(" (deleted)") == target:
                count += 1
    return count


def buffering(c: Client) -> dict[str, object]:
    state: dict[str, object] = c.status()["buffering"]
    return state


@pytest.fixture(scope="module")
def plain() -> Iterator[Daemon]:
    """caching = "off" (the default): collapsing only, no delayed close, no cache."""
    with running_daemon() as d:
        yield d


@pytest.fixture(scope="module")
def handles() -> Iterator[Daemon]:
    with running_daemon(daemon_extra="close_delay = 3", local_extra='caching = "handles"') as d:
        yield d


@pytest.fixture(scope="module")
def exclusive() -> Iterator[Daemon]:
    extra = "close_delay = 0\nwrite_behind = 3"
    with running_daemon(daemon_extra=extra, local_extra='caching = "exclusive"') as d:
        yield d


# ------------------------------------------------------------------------------ collapsing
def test_a_second_compatible_open_collapses_onto_the_first_server_open(plain: Daemon) -> None:
    f = plain.share_dir / "collapse.txt"
    f.write_bytes(b"hello")
    unc = plain.share + r"\collapse.txt"
    with plain.client() as a, plain.client() as b:
        before = buffering(a)["collapsed_opens"]
        ha = a.create(unc, access=R)
        hb = b.create(unc, access=R)
        assert hb.information == CreateInformation.FILE_OPENED
        assert hb.info.size == 5  # fresh information, though no MRxCreate ran
        assert fds_on(plain, f) == 1
        assert buffering(a)["collapsed_opens"] == before + 1
        other = b.create(unc, access=RW)  # other access: its own server open
        assert fds_on(plain, f) == 2
        b.close_handle(other.fobx)
        a.close_handle(ha.fobx)
        assert fds_on(plain, f) == 1  # b still uses it
        assert b.read_handle(hb.fobx, 0, 5) == b"hello"
        b.close_handle(hb.fobx)
        wait_until(lambda: fds_on(plain, f) == 0, 5.0)  # caching "off": closed at once


def test_locks_stay_per_handle_on_a_collapsed_open(plain: Daemon) -> None:
    f = plain.share_dir / "locks.bin"
    f.write_bytes(bytes(100))
    unc = plain.share + r"\locks.bin"
    with plain.client() as a, plain.client() as b:
        ha = a.create(unc, access=RW)
        hb = b.create(unc, access=RW)
        assert fds_on(plain, f) == 1  # collapsed
        a.lock(ha.fobx, 0, 10)
        with pytest.raises(NtStatusError) as ei:
            b.write_handle(hb.fobx, 0, b"x")
        assert ei.value.status == S.STATUS_FILE_LOCK_CONFLICT
        b.lock(hb.fobx, 50, 10)
        a.close_handle(ha.fobx)  # releases a's lock only
        assert b.write_handle(hb.fobx, 0, b"x") == 1
        hc = a.create(unc, access=RW)  # collapses again
        with pytest.raises(NtStatusError) as ei:
            a.write_handle(hc.fobx, 55, b"y")
        assert ei.value.status == S.STATUS_FILE_LOCK_CONFLICT
        b.close_handle(hb.fobx)
        assert a.write_handle(hc.fobx, 55, b"y") == 1
        a.close_handle(hc.fobx)


def test_delete_on_close_never_collapses(plain: Daemon) -> None:
    from rdbss.wire import CreateOptions

    f = plain.share_dir / "doc.txt"
    f.write_bytes(b"x")
    unc = plain.share + r"\doc.txt"
    access = R | Access.DELETE
    with plain.client() as a:
        h1 = a.create(unc, access=access)
        h2 = a.create(unc, access=access, options=CreateOptions.FILE_DELETE_ON_CLOSE)
        assert fds_on(plain, f) == 2
        a.close_handle(h2.fobx)
        a.close_handle(h1.fobx)
    assert not f.exists()


# ------------------------------------------------------------------------------ delayed close
def test_a_closed_file_stays_open_for_a_reopen_then_the_scavenger_closes_it(
    handles: Daemon,
) -> None:
    f = handles.share_dir / "delayed.txt"
    unc = handles.share + r"\delayed.txt"
    with handles.client() as c:
        h = c.create(unc, access=RW, disposition=CreateDisposition.FILE_OVERWRITE_IF)
        c.write_handle(h.fobx, 0, b"kept")
        c.close_handle(h.fobx)
        assert f.read_bytes() == b"kept"  # on disk at the close, not later
        assert fds_on(handles, f) == 1  # the server open is kept (CLOSE_DELAYED)
        state = buffering(c)
        assert state["delayed_now"] == 1
        reused = state["delayed_reused"]
        h = c.create(unc, access=RW)  # the re-open collapses onto it: no new server open
        assert h.info.size == 4
        assert buffering(c)["delayed_reused"] == reused + 1
        assert fds_on(handles, f) == 1
        assert c.read_handle(h.fobx, 0, 4) == b"kept"
        c.close_handle(h.fobx)
        t0 = time.monotonic()
        wait_until(lambda: fds_on(handles, f) == 0, 10.0)  # 3 s after the last close
        assert time.monotonic() - t0 > 1.0
        assert buffering(c)["delayed_now"] == 0


def write_open(c: Client, unc: str, data: bytes) -> None:
    """Write a file through an open file (create, write, close one after the other)."""
    with c.open(unc, "wb", buffering=0) as f:
        f.write(data)


def test_a_conflicting_open_or_delete_closes_a_delayed_close_first(handles: Daemon) -> None:
    f = handles.share_dir / "conflict.txt"
    unc = handles.share + r"\conflict.txt"
    with handles.client() as c:
        # through an open file: a close that rides with its create (write_bytes' compound)
        # closes at once, with no delayed close to keep
        write_open(c, unc, b"one")
        assert fds_on(handles, f) == 1
        write_open(c, unc, b"two")  # overwrite-if: never collapses, closes the kept open
        assert f.read_bytes() == b"two"
        assert fds_on(handles, f) == 1  # only the new one is kept
        c.remove(unc)
        assert not f.exists()
        assert fds_on(handles, f) == 0
        assert buffering(c)["delayed_now"] == 0


def test_a_file_deleted_behind_the_daemon_is_not_resurrected_by_a_delayed_close(
    handles: Daemon,
) -> None:
    f = handles.share_dir / "gone.txt"
    unc = handles.share + r"\gone.txt"
    f.write_bytes(b"old")
    with handles.client() as c:
        c.close_handle(c.create(unc, access=R).fobx)
        assert fds_on(handles, f) == 1
        f.unlink()  # another program
        with pytest.raises(FileNotFoundError):
            c.create(unc, access=R)  # same parameters: tries the kept open, finds it stale
        assert fds_on(handles, f) == 0


def test_byte_range_locks_end_at_the_close_not_at_the_delayed_close(handles: Daemon) -> None:
    f = handles.share_dir / "lk.bin"
    f.write_bytes(bytes(10))
    unc = handles.share + r"\lk.bin"
    with handles.client() as a, handles.client() as b:
        h = a.create(unc, access=RW)
        a.lock(h.fobx, 0, 10)
        a.close_handle(h.fobx)
        assert fds_on(handles, f) == 1  # delayed
        other = b.create(unc, access=R | Access.FILE_WRITE_DATA)  # not collapsible: own open
        assert b.write_handle(other.fobx, 0, b"z") == 1  # no lock left
        b.close_handle(other.fobx)


def test_status_shows_collapsing_and_delayed_closes(handles: Daemon) -> None:
    unc = handles.share + r"\shown.txt"
    with handles.client() as c:
        write_open(c, unc, b"s")
        files = buffering(c)["files"]
        assert isinstance(files, list)
        mine = [x for x in files if x["name"].endswith("shown.txt")]
        assert mine and mine[0]["delayed_close_s"] and "COLLAPSING" in mine[0]["state"]
        local = next(p for p in c.status()["peers"] if p["name"] == "local")
        assert "DELAY_CLOSE" in local["buffering"]
    out = handles.cli("status")
    assert out.returncode == 0, out.stderr
    assert b"BUFFERING" in out.stdout and b"shown.txt" in out.stdout


# ------------------------------------------------------------------------------ read cache
def test_reads_come_from_the_cache_while_read_caching_is_granted(exclusive: Daemon) -> None:
    f = exclusive.share_dir / "cached.bin"
    f.write_bytes(b"A" * 1000)
    unc = exclusive.share + r"\cached.bin"
    with exclusive.client() as a, exclusive.client() as b:
        h = a.create(unc, access=R)
        assert a.read_handle(h.fobx, 100, 50) == b"A" * 50
        hits = buffering(a)["cache_hits"]
        f.write_bytes(b"B" * 1000)  # behind the daemon's back: the cache cannot know
        assert a.read_handle(h.fobx, 0, 1000) == b"A" * 1000  # served from the cache
        assert a.read_handle(h.fobx, 1000, 10) == b""  # end of file, known from the cache
        assert buffering(a)["cache_hits"] == hits + 2
        # a writer arriving while the file is open: the state changes and the cache is purged
        # before its open proceeds
        w = b.create(unc, access=RW)
        state = next(x for x in buffering(a)["files"] if x["name"].endswith("cached.bin"))
        assert "READCACHING" not in state["state"]
        assert a.read_handle(h.fobx, 0, 4) == b"BBBB"
        b.close_handle(w.fobx)
        a.close_handle(h.fobx)


def test_the_cache_stays_coherent_with_writes_through_rdbss(exclusive: Daemon) -> None:
    f = exclusive.share_dir / "coherent.bin"
    f.write_bytes(b"." * 200_000)
    unc = exclusive.share + r"\coherent.bin"
    with exclusive.client() as a, exclusive.client() as b:
        h = a.create(unc, access=RW)
        assert a.read_handle(h.fobx, 0, 100) == b"." * 100  # fills the first block
        assert a.write_handle(h.fobx, 10, b"ZZ") == 2
        assert a.read_handle(h.fobx, 8, 6) == b"..ZZ.."
        assert a.write_handle(h.fobx, 200_000, b"tail") == 4  # grows the file
        assert a.read_handle(h.fobx, 199_998, 10) == b"..tail"
        a.set_info(h.fobx, 20, size=12)  # FileEndOfFileInformation
        assert a.read_handle(h.fobx, 0, 100) == b"..........ZZ"
        a.close_handle(h.fobx)
        # the writer's data is there for the next open, from another client
        assert b.read_bytes(unc) == b"..........ZZ"


def test_a_byte_range_lock_turns_caching_off(exclusive: Daemon) -> None:
    f = exclusive.share_dir / "locked.bin"
    f.write_bytes(b"C" * 100)
    unc = exclusive.share + r"\locked.bin"
    with exclusive.client() as a:
        h = a.create(unc, access=RW)
        assert a.read_handle(h.fobx, 0, 10) == b"C" * 10
        a.lock(h.fobx, 0, 10)
        f.write_bytes(b"D" * 100)
        assert a.read_handle(h.fobx, 0, 10) == b"D" * 10  # from the mini-redirector
        a.close_handle(h.fobx)


# ------------------------------------------------------------------------------ webdav
def test_webdav_never_gets_a_delayed_close(tmp_path: Path) -> None:
    require_or_skip(WebDavServer.missing_binaries(), "wsgidav")
    with WebDavServer(tmp_path / "dav") as server:
        server.root_dir.joinpath("share").mkdir()
        password = write_password_file(tmp_path / "pw", server.password)
        config = webdav_config(server, password).replace(
            'kind = "webdav"\n', 'kind = "webdav"\ncaching = "handles"\n'
        )
        auth = httpx.DigestAuth(server.user, server.password)
        with (
            running_daemon(extra_config=config, daemon_extra="close_delay = 30") as d,
            d.client() as c,
            httpx.Client(base_url=server.url, auth=auth, timeout=10) as http,
        ):
            unc = r"\\davtest\share\staged.txt"
            c.write_bytes(unc, b"committed at close")
            # on the server as soon as the close returned, not 30 s later
            assert http.get("share/staged.txt").content == b"committed at close"
            assert buffering(c)["delayed_now"] == 0
            peer = next(p for p in c.status()["peers"] if p["name"] == "webdav")
            assert "DELAY_CLOSE" not in peer["buffering"]
            assert "COLLAPSING" not in peer["buffering"]
            h1 = c.create(unc, access=R, disposition=CreateDisposition.FILE_OPEN)
            before = buffering(c)["collapsed_opens"]
            h2 = c.create(unc, access=R, disposition=CreateDisposition.FILE_OPEN)
            assert buffering(c)["collapsed_opens"] == before
            c.close_handle(h2.fobx)
            c.close_handle(h1.fobx)
            assert buffering(c)["delayed_now"] == 0


# ------------------------------------------------------------------------------ write-behind
@pytest.fixture(scope="module")
def behind() -> Iterator[Daemon]:
    """Write-behind that only events flush (the timer is far away)."""
    extra = "close_delay = 0\nwrite_behind = 60"
    with running_daemon(daemon_extra=extra, local_extra='caching = "exclusive"') as d:
        yield d


def test_deferred_writes_reach_the_server_before_another_open(behind: Daemon) -> None:
    f = behind.share_dir / "deferred.txt"
    unc = behind.share + r"\deferred.txt"
    with behind.client() as a, behind.client() as b:
        h = a.create(unc, access=RW, disposition=CreateDisposition.FILE_OVERWRITE_IF)
        assert a.write_handle(h.fobx, 0, b"hello ") == 6  # acknowledged at once
        assert a.write_handle(h.fobx, 6, b"world") == 5
        assert f.read_bytes() == b""  # not sent yet: write-behind
        assert buffering(a)["dirty_bytes"] == 11
        assert a.read_handle(h.fobx, 0, 11) == b"hello world"  # the writer sees its data
        assert f.read_bytes() == b"hello world"  # the read sent them first
        assert a.write_handle(h.fobx, 0, b"HELLO") == 5
        r = b.create(unc, access=R)  # another client's open: they go out before it
        assert f.read_bytes() == b"HELLO world"
        assert b.read_handle(r.fobx, 0, 11) == b"HELLO world"
        assert a.write_handle(h.fobx, 11, b"!") == 1  # two handles now: write-through
        assert f.read_bytes() == b"HELLO world!"
        b.close_handle(r.fobx)
        a.close_handle(h.fobx)


def test_a_close_sends_deferred_writes_before_it_answers(behind: Daemon) -> None:
    f = behind.share_dir / "closed.txt"
    unc = behind.share + r"\closed.txt"
    with behind.client() as a:
        h = a.create(unc, access=RW, disposition=CreateDisposition.FILE_OVERWRITE_IF)
        a.write_handle(h.fobx, 0, b"x" * 100_000)
        assert f.stat().st_size == 0
        a.close_handle(h.fobx)
        assert f.read_bytes() == b"x" * 100_000
        assert buffering(a)["dirty_bytes"] == 0


def test_a_stat_of_a_file_with_deferred_writes_sees_them(behind: Daemon) -> None:
    """A stat of a file that is open here is no query open (MRxQueryOpen would ask the server
    alone): the usual create sends the deferred writes first, so the size is the writer's."""
    f = behind.share_dir / "stat-dirty.txt"
    unc = behind.share + r"\stat-dirty.txt"
    with behind.client() as a, behind.client() as b:
        h = a.create(unc, access=RW, disposition=CreateDisposition.FILE_OVERWRITE_IF)
        a.write_handle(h.fobx, 0, b"x" * 100_000)
        assert f.stat().st_size == 0  # deferred
        assert b.stat(unc).size == 100_000
        assert [info.size for info in b.stat_many([unc, unc])] == [100_000, 100_000]
        a.close_handle(h.fobx)
        assert b.stat(unc).size == 100_000  # closed: nothing open, a query open answers


def test_deferred_writes_go_out_when_the_timer_fires(exclusive: Daemon) -> None:
    f = exclusive.share_dir / "timer.txt"
    unc = exclusive.share + r"\timer.txt"
    with exclusive.client() as a:
        h = a.create(unc, access=RW, disposition=CreateDisposition.FILE_OVERWRITE_IF)
        a.write_handle(h.fobx, 0, b"later")
        assert f.read_bytes() == b""
        wait_until(lambda: f.read_bytes() == b"later", 10.0)  # write_behind = 3 s
        a.close_handle(h.fobx)


def test_a_failed_deferred_write_is_reported_by_the_close(tmp_path: Path) -> None:
    folder = tmp_path / "flaky"
    folder.mkdir()
    config = f"""
[[minirdr]]
name = "flaky"
kind = "faulty"
wraps = "local"
caching = "exclusive"
[minirdr.options]
server = "flaky"
[minirdr.options.shares]
data = "{folder}"
[[minirdr.rules]]
routine = "MRxLowIOSubmit"
lowio_op = "WRITE"
path = "*.full"
action = "status"
status = "STATUS_DISK_FULL"
"""
    with (
        running_daemon(extra_config=config, daemon_extra="write_behind = 60") as d,
        d.client() as c,
    ):
        unc = r"\\flaky\data\x.full"
        h = c.create(unc, access=RW, disposition=CreateDisposition.FILE_OVERWRITE_IF)
        assert c.write_handle(h.fobx, 0, b"lost?") == 5  # deferred: acknowledged
        with pytest.raises(NtStatusError) as ei:
            c.close_handle(h.fobx)
        assert ei.value.status == S.STATUS_DISK_FULL
        assert "deferred write" in str(ei.value)
        assert buffering(c)["write_behind_errors"] == 1
        # and the next operation, when it comes first
        h = c.create(unc, access=RW)
        c.write_handle(h.fobx, 0, b"again")
        with pytest.raises(NtStatusError) as ei:
            c.flush_handle(h.fobx)
        assert ei.value.status == S.STATUS_DISK_FULL
        c.close_handle(h.fobx)


def test_removing_a_share_closes_its_delayed_closes(handles: Daemon, tmp_path: Path) -> None:
    folder = tmp_path / "extra"
    folder.mkdir()
    f = folder / "e.txt"
    f.write_bytes(b"e")
    with handles.client() as c:
        c.add_share("extra", str(folder))
        c.close_handle(c.create(r"\\local\extra\e.txt", access=R).fobx)
        assert fds_on(handles, f) == 1
        c.remove_share("extra")
        wait_until(lambda: fds_on(handles, f) == 0, 1.5)  # well before close_delay (3 s)
        with pytest.raises(NtStatusError):
            c.create(r"\\local\extra\e.txt", access=R)  # no stale open to collapse onto

"""Read leases through a real daemon (docs/caching.md, Read leases): a leased handle's repeated
reads send no message, and every change the core lets through breaks the lease first, so that
the next read sees the new data.

The daemon's local mini-redirector has ``caching = "exclusive"`` (READCACHING, which leases
need) with the core's own read cache off: a read that reaches the daemon reads the file, so
where a test changes the file behind the daemon's back (breaking the promise on purpose), the
old bytes can only come from a lease that was not broken. Messages are counted by the client
(``Client.requests_sent``)."""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from rdbss.client import Client
from rdbss.wire import Access, FileInformationClass
from tests.daemon import Daemon, running_daemon, wait_until

R = Access.GENERIC_READ
RW = Access.GENERIC_READ | Access.GENERIC_WRITE
OLD = b"old data " * 100
NEW = b"NEW DATA " * 100


@pytest.fixture(scope="module")
def d() -> Iterator[Daemon]:
    extra = "close_delay = 0\ncache_mib = 0\nwrite_behind = 0"
    with running_daemon(daemon_extra=extra, local_extra='caching = "exclusive"') as daemon:
        yield daemon


def messages_during(c: Client, action: object) -> int:
    """How many messages the client sent to the daemon while ``action`` ran."""
    before = c.requests_sent
    assert callable(action)
    action()
    return c.requests_sent - before


def five_reads(c: Client, fobx: int) -> None:
    for _ in range(5):
        assert c.read_handle(fobx, 0, 100) == OLD[:100]


def peer_pid(c: Client, name: str) -> int | None:
    for peer in c.status()["peers"]:
        if peer["name"] == name:
            return int(peer["pid"])
    return None


def leased_file(d: Daemon, c: Client, name: str, access: int = R) -> tuple[Path, str, int]:
    path = d.share_dir / name
    path.write_bytes(OLD)
    unc = f"{d.share}\\{name}"
    handle = c.create(unc, access=access, lease=True)
    assert c.leased(handle.fobx)
    assert c.read_handle(handle.fobx, 0, 100) == OLD[:100]  # fills the cache
    return path, unc, handle.fobx


def overwrite_behind(path: Path, data: bytes) -> None:
    """Change the file in place (same inode) without the daemon."""
    with open(path, "r+b") as f:
        f.write(data)


def test_repeated_reads_of_a_leased_handle_send_no_message(d: Daemon) -> None:
    with d.client() as c:
        _path, _unc, fobx = leased_file(d, c, "hits.bin")
        hits = c.lease_stats.hits if c.lease_stats else 0

        def reads() -> None:
            for _ in range(50):
                assert c.read_handle(fobx, 0, 100) == OLD[:100]
                assert c.read_handle(fobx, 200, 50) == OLD[200:250]
            assert c.read_handle(fobx, len(OLD) - 10, 100) == OLD[-10:]  # short: the end
            assert c.read_handle(fobx, len(OLD) + 5, 10) == b""

        assert messages_during(c, reads) == 0
        assert c.lease_stats is not None and c.lease_stats.hits == hits + 102
        buf = bytearray(64)
        assert c.readinto(fobx, 10, buf) == 64 and bytes(buf) == OLD[10:74]
        c.close_handle(fobx)


def test_a_leased_file_object_reads_again_with_no_message(d: Daemon) -> None:
    data = os.urandom(300 << 10)
    (d.share_dir / "object.bin").write_bytes(data)
    with d.client() as c, c.open(f"{d.share}\\object.bin", "rb", lease=True) as f:
        assert f.read() == data
        f.seek(1000)
        assert f.read(5000) == data[1000:6000]  # fills its blocks

        def again() -> None:
            f.seek(0)
            assert f.read() == data
            f.seek(1000)
            assert f.read(5000) == data[1000:6000]

        again()  # what readall left out of the cache is read once more
        assert messages_during(c, again) == 0


def test_without_a_lease_every_read_is_a_round_trip(d: Daemon) -> None:
    (d.share_dir / "plain.bin").write_bytes(OLD)
    with d.client() as c:
        handle = c.create(f"{d.share}\\plain.bin", access=R)  # no lease asked
        assert not c.leased(handle.fobx)
        assert messages_during(c, lambda: five_reads(c, handle.fobx)) == 5
        c.close_handle(handle.fobx)


def test_lease_cache_bytes_0_turns_leases_off(d: Daemon) -> None:
    (d.share_dir / "off.bin").write_bytes(OLD)
    with Client(d.runtime_dir, timeout=10, lease_cache_bytes=0) as c:
        handle = c.create(f"{d.share}\\off.bin", access=R, lease=True)
        assert not c.leased(handle.fobx) and c.lease_stats is None
        assert messages_during(c, lambda: five_reads(c, handle.fobx)) == 5
        c.close_handle(handle.fobx)


def test_the_cache_keeps_to_its_cap(d: Daemon) -> None:
    block = 64 << 10
    data = os.urandom(6 * block)
    (d.share_dir / "big.bin").write_bytes(data)
    with Client(d.runtime_dir, timeout=10, lease_cache_bytes=2 * block) as c:
        handle = c.create(f"{d.share}\\big.bin", access=R, lease=True)
        for i in range(6):
            assert c.read_handle(handle.fobx, i * block, 100) == data[i * block : i * block + 100]
        assert c._leases is not None and c._leases.blocks.bytes <= 2 * block
        # the last two blocks are cached, the first went
        assert messages_during(c, lambda: c.read_handle(handle.fobx, 5 * block, 10)) == 0
        assert messages_during(c, lambda: c.read_handle(handle.fobx, 0, 10)) == 1
        c.close_handle(handle.fobx)


@pytest.mark.parametrize("write", [True, False], ids=["a write by another client", "the open"])
def test_a_second_writing_open_and_its_write_break_the_lease_before_they_proceed(
    d: Daemon, write: bool
) -> None:
    with d.client() as a, d.client() as b:
        path, unc, fobx = leased_file(d, a, f"written-{write}.bin")
        writer = b.create(unc, access=RW)
        if write:
            b.write_handle(writer.fobx, 0, NEW[:100])
        else:
            overwrite_behind(path, NEW)  # nothing written through rdbss: only the open broke it
        assert not a.leased(fobx)
        assert a.read_handle(fobx, 0, 100) == NEW[:100]
        b.close_handle(writer.fobx)
        a.close_handle(fobx)


def test_an_overwriting_create_breaks_the_lease(d: Daemon) -> None:
    with d.client() as a, d.client() as b:
        _path, unc, fobx = leased_file(d, a, "overwritten.bin")
        b.write_bytes(unc, NEW)  # create (overwrite) + write + close in one compound
        assert a.read_handle(fobx, 0, 100) == NEW[:100]
        a.close_handle(fobx)


def test_a_rename_breaks_the_lease(d: Daemon) -> None:
    with d.client() as a, d.client() as b:
        _path, unc, fobx = leased_file(d, a, "renamed.bin")
        b.rename(unc, f"{d.share}\\renamed2.bin")
        overwrite_behind(d.share_dir / "renamed2.bin", NEW)
        assert a.read_handle(fobx, 0, 100) == NEW[:100]
        a.close_handle(fobx)


def test_a_delete_breaks_the_lease(d: Daemon) -> None:
    with d.client() as a, d.client() as b:
        path, unc, fobx = leased_file(d, a, "deleted.bin")
        with open(path, "rb") as kept:  # the same inode, to change it after the unlink
            b.remove(unc)
            assert not a.leased(fobx)
            with open(f"/proc/self/fd/{kept.fileno()}", "r+b") as f:
                f.write(NEW)
        assert a.read_handle(fobx, 0, 100) == NEW[:100]
        a.close_handle(fobx)


def test_a_truncate_by_another_client_breaks_the_lease(d: Daemon) -> None:
    with d.client() as a, d.client() as b:
        _path, unc, fobx = leased_file(d, a, "truncated.bin")
        b.truncate(unc, 10)
        assert a.read_handle(fobx, 0, 100) == OLD[:10]
        a.close_handle(fobx)


def test_a_change_of_size_on_the_leased_handle_breaks_its_lease(d: Daemon) -> None:
    with d.client() as a:
        path, _unc, fobx = leased_file(d, a, "resized.bin", access=RW)
        a.set_info(fobx, FileInformationClass.FileEndOfFileInformation, size=20)
        overwrite_behind(path, NEW[:20])
        assert a.read_handle(fobx, 0, 100) == NEW[:20]
        a.close_handle(fobx)


def test_a_killed_mini_redirector_breaks_the_lease(d: Daemon) -> None:
    with d.client() as a:
        path, _unc, fobx = leased_file(d, a, "crash.bin")
        old = peer_pid(a, "local")
        assert old is not None
        os.kill(old, signal.SIGKILL)
        overwrite_behind(path, NEW)
        wait_until(lambda: not a.leased(fobx), timeout=10.0, poll=0.05)
        wait_until(lambda: peer_pid(a, "local") not in (None, old), timeout=10.0, poll=0.05)
        assert a.read_handle(fobx, 0, 100) == NEW[:100]  # re-opened by path, read afresh
        a.close_handle(fobx)


def test_another_reader_breaks_no_lease_and_gets_its_own(d: Daemon) -> None:
    with d.client() as a, d.client() as b:
        _path, unc, fobx = leased_file(d, a, "readers.bin")
        other = b.create(unc, access=R, lease=True)  # collapses onto a's server open
        plain = b.create(unc, access=R | int(Access.FILE_READ_ATTRIBUTES))  # its own open
        assert a.leased(fobx) and b.leased(other.fobx)
        assert b.read_handle(other.fobx, 0, 100) == OLD[:100]
        assert messages_during(b, lambda: b.read_handle(other.fobx, 0, 100)) == 0
        assert messages_during(a, lambda: a.read_handle(fobx, 0, 100)) == 0
        for handle in (other, plain):
            b.close_handle(handle.fobx)
        a.close_handle(fobx)


def test_no_lease_without_read_caching() -> None:
    with running_daemon() as plain, plain.client() as c:  # caching = "off"
        (plain.share_dir / "x.bin").write_bytes(OLD)
        handle = c.create(f"{plain.share}\\x.bin", access=R, lease=True)
        assert not c.leased(handle.fobx)
        assert c.read_handle(handle.fobx, 0, 5) == OLD[:5]
        c.close_handle(handle.fobx)


@pytest.fixture(scope="module")
def busy() -> Iterator[Daemon]:
    """The same promise with the rest of the core's caching at work: its read cache, delayed
    closes and write-behind."""
    extra = "close_delay = 2\nwrite_behind = 3"
    with running_daemon(daemon_extra=extra, local_extra='caching = "exclusive"') as daemon:
        yield daemon


@pytest.mark.parametrize("core", ["d", "busy"])
def test_a_leased_reader_never_sees_data_older_than_a_change_that_completed(
    core: str, request: pytest.FixtureRequest
) -> None:
    """Rounds of: a leased handle reads (and re-reads) ranges, another client changes the file
    through the daemon in one of several ways, the leased handle reads again. Every read must
    match the file on disk at that moment (every change has completed before it)."""
    d: Daemon = request.getfixturevalue(core)
    rng = random.Random(22)
    path = d.share_dir / "coherence.bin"
    path.write_bytes(os.urandom(200 << 10))
    unc = f"{d.share}\\coherence.bin"

    def check(c: Client, fobx: int) -> None:
        now = path.read_bytes()
        for _ in range(4):
            offset = rng.randrange(0, len(now) + 1000)
            length = rng.choice([1, 100, 4096, 70_000])
            assert c.read_handle(fobx, offset, length) == now[offset : offset + length]

    def change(b: Client) -> None:
        size = path.stat().st_size
        how = rng.choice(["write", "append", "truncate", "extend", "overwrite"])
        if how == "overwrite":
            b.write_bytes(unc, os.urandom(rng.randrange(1, 300 << 10)))
            return
        handle = b.create(unc, access=RW)
        if how == "write":
            b.write_handle(handle.fobx, rng.randrange(0, size + 1), os.urandom(5000))
        elif how == "append":
            b.write_handle(handle.fobx, -1, os.urandom(3000))
        else:
            new = rng.randrange(0, size) if how == "truncate" else size + 70_000
            b.set_info(handle.fobx, FileInformationClass.FileEndOfFileInformation, size=new)
        b.close_handle(handle.fobx)

    with d.client() as a, d.client() as b:
        for _ in range(30):
            handle = a.create(unc, access=R, lease=True)
            assert a.leased(handle.fobx)
            check(a, handle.fobx)
            check(a, handle.fobx)  # some of it again from the cache
            change(b)
            check(a, handle.fobx)
            a.close_handle(handle.fobx)
    assert a.lease_stats is not None and a.lease_stats.hits > 0

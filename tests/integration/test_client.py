"""The Python client against a real daemon (core, connection manager, local mini-redirector as
separate processes over real ZeroMQ sockets), checked against the real folder behind the share."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from rdbss import requests as rq
from rdbss.aio import AsyncClient
from rdbss.client import Client
from rdbss.wire import (
    Access,
    CreateDisposition,
    CreateInformation,
    CreateOptions,
    IrpMj,
    NtStatus,
    NtStatusError,
)
from tests.daemon import Daemon
from tests.integration.test_small_files import count_sent

S = NtStatus


def unc(d: Daemon, *parts: str) -> str:
    return "\\".join([d.share, *parts])


def test_write_then_read_back_through_the_daemon_and_on_disk(daemon: Daemon) -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    with daemon.client() as c:
        assert c.write_bytes(unc(daemon, "blob.bin"), data) == len(data)
        assert c.read_bytes(unc(daemon, "blob.bin")) == data
        assert c.stat(unc(daemon, "blob.bin")).size == len(data)
    assert (daemon.share_dir / "blob.bin").read_bytes() == data


@pytest.mark.parametrize("kind", ["blocking", "asyncio"])
def test_a_write_larger_than_a_message_goes_through_the_sockets_in_pieces(
    daemon: Daemon, kind: str
) -> None:
    """Without shared memory (a remote client, or turned off) a write of more than one
    message's payload limit goes out as several WRITEs: one message that large would be
    dropped by the daemon and the caller would wait for its deadline."""
    data = os.urandom(rq.MAX_WRITE_BYTES + (1 << 20) + 5)
    tail = os.urandom(rq.MAX_WRITE_BYTES + 3)
    path = unc(daemon, f"huge-{kind}.bin")
    rw = Access.GENERIC_READ | Access.GENERIC_WRITE
    overwrite = CreateDisposition.FILE_OVERWRITE_IF
    if kind == "blocking":
        with Client(daemon.runtime_dir, shared_memory=False, timeout=20) as c:
            fobx = c.create(path, access=rw, disposition=overwrite).fobx
            assert c.write_handle(fobx, 0, data) == len(data)
            assert c.write_handle(fobx, -1, tail) == len(tail)  # appends, piece after piece
            c.close_handle(fobx)
    else:

        async def main() -> None:
            async with AsyncClient(daemon.runtime_dir, shared_memory=False, timeout=20) as c:
                h = await c.create(path, access=rw, disposition=overwrite)
                assert await c.write_handle(h.fobx, 0, data) == len(data)
                assert await c.write_handle(h.fobx, -1, tail) == len(tail)
                await c.close_handle(h.fobx)

        asyncio.run(main())
    assert (daemon.share_dir / f"huge-{kind}.bin").read_bytes() == data + tail


def test_offsets_append_truncate_and_text(daemon: Daemon) -> None:
    path = unc(daemon, "offsets.txt")
    with daemon.client() as c:
        with c.open(path, "w") as f:
            f.write("hello world\n")
        with c.open(path, "r+b") as f:
            f.seek(6)
            f.write(b"WORLD")
            f.seek(0)
            assert f.read() == b"hello WORLD\n"
            f.truncate(5)
        with c.open(path, "a") as f:
            f.write("!tail")
        with c.open(path, "r") as f:
            assert f.read() == "hello!tail"
        with c.open(path, "rb", buffering=0) as f:
            f.seek(100)
            assert f.read(10) == b""  # past EOF: empty, not an error
            f.seek(-4, os.SEEK_END)
            assert f.read() == b"tail"
        with pytest.raises(FileExistsError):
            c.open(path, "x")
        c.truncate(path, 2)
        assert c.read_bytes(path) == b"he"
    assert (daemon.share_dir / "offsets.txt").read_bytes() == b"he"


def test_create_dispositions_report_what_happened(daemon: Daemon) -> None:
    path = unc(daemon, "disp.txt")
    with daemon.client() as c:
        h = c.create(path, access=Access.GENERIC_WRITE, disposition=CreateDisposition.FILE_CREATE)
        assert h.information == CreateInformation.FILE_CREATED
        c.close_handle(h.fobx)
        h = c.create(
            path, access=Access.GENERIC_WRITE, disposition=CreateDisposition.FILE_OVERWRITE_IF
        )
        assert h.information == CreateInformation.FILE_OVERWRITTEN
        c.close_handle(h.fobx)
        h = c.create(path, disposition=CreateDisposition.FILE_OPEN_IF)
        assert h.information == CreateInformation.FILE_OPENED
        c.close_handle(h.fobx)


def test_directories_listing_patterns_and_removal(daemon: Daemon) -> None:
    with daemon.client() as c:
        c.mkdir(unc(daemon, "tree", "a", "b"), parents=True)
        for name in ("one.txt", "two.txt", "three.log"):
            c.write_bytes(unc(daemon, "tree", name), name.encode())
        assert sorted(c.listdir(unc(daemon, "tree"))) == ["a", "one.txt", "three.log", "two.txt"]
        assert sorted(c.listdir(unc(daemon, "tree"), "*.TXT")) == ["one.txt", "two.txt"]
        assert c.listdir(unc(daemon, "tree"), "*.none") == []
        entries = {e.name: e for e in c.scandir(unc(daemon, "tree"))}
        assert entries["a"].is_dir and entries["one.txt"].size == 7
        with pytest.raises(OSError) as info:
            c.rmdir(unc(daemon, "tree", "a"))
        assert isinstance(info.value, NtStatusError)
        assert info.value.status == S.STATUS_DIRECTORY_NOT_EMPTY
        c.rmdir(unc(daemon, "tree", "a", "b"))
        c.rmdir(unc(daemon, "tree", "a"))
        c.remove(unc(daemon, "tree", "one.txt"))
        c.delete(unc(daemon, "tree", "two.txt"))
        assert c.listdir(unc(daemon, "tree")) == ["three.log"]
        with pytest.raises(FileExistsError):
            c.mkdir(unc(daemon, "tree"))
        c.mkdir(unc(daemon, "tree"), exist_ok=True)
    assert sorted(os.listdir(daemon.share_dir / "tree")) == ["three.log"]


def test_many_entries_come_in_batches(daemon: Daemon) -> None:
    folder = daemon.share_dir / "many"
    folder.mkdir()
    for i in range(1300):
        (folder / f"f{i:04d}").write_bytes(b"")
    with daemon.client() as c:
        names = c.listdir(unc(daemon, "many"))
    assert names == sorted(f"f{i:04d}" for i in range(1300))


def test_rename(daemon: Daemon) -> None:
    with daemon.client() as c:
        c.write_bytes(unc(daemon, "r1.txt"), b"one")
        c.write_bytes(unc(daemon, "r2.txt"), b"two")
        with pytest.raises(FileExistsError):
            c.rename(unc(daemon, "r1.txt"), unc(daemon, "r2.txt"))
        c.rename(unc(daemon, "r1.txt"), unc(daemon, "r2.txt"), replace=True)
        assert c.read_bytes(unc(daemon, "r2.txt")) == b"one"
        assert not c.exists(unc(daemon, "r1.txt"))
        c.mkdir(unc(daemon, "moved"))
        c.rename(unc(daemon, "r2.txt"), "moved\\r3.txt")  # share-relative target
        assert c.read_bytes(unc(daemon, "moved", "r3.txt")) == b"one"
        with pytest.raises(NtStatusError) as info:
            c.rename(unc(daemon, "moved", "r3.txt"), r"\\local\other\x.txt")
        assert info.value.status == S.STATUS_NOT_SAME_DEVICE


@pytest.mark.parametrize(
    ("name", "exc", "status"),
    [
        ("missing.txt", FileNotFoundError, S.STATUS_OBJECT_NAME_NOT_FOUND),
        ("nodir\\missing.txt", FileNotFoundError, S.STATUS_OBJECT_PATH_NOT_FOUND),
        ("..\\..\\etc\\passwd", OSError, S.STATUS_OBJECT_PATH_SYNTAX_BAD),
        ("file.txt:stream", OSError, S.STATUS_OBJECT_NAME_INVALID),
    ],
)
def test_errors_are_ntstatus_and_oserror(daemon: Daemon, name: str, exc: type, status: int) -> None:
    with daemon.client() as c, pytest.raises(exc) as info:
        c.read_bytes(unc(daemon, name))
    assert isinstance(info.value, NtStatusError) and info.value.status == status


def test_directory_and_file_confusion(daemon: Daemon) -> None:
    with daemon.client() as c:
        c.mkdir(unc(daemon, "adir"), exist_ok=True)
        c.write_bytes(unc(daemon, "afile"), b"x")
        with pytest.raises(IsADirectoryError):
            c.read_bytes(unc(daemon, "adir"))
        with pytest.raises(NotADirectoryError):
            c.listdir(unc(daemon, "afile"))


def test_symlink_out_of_the_share_is_refused(daemon: Daemon, tmp_path: object) -> None:
    os.symlink("/etc", daemon.share_dir / "escape")
    with daemon.client() as c, pytest.raises(PermissionError):
        c.read_bytes(unc(daemon, "escape", "hostname"))


def test_unknown_server_and_share(daemon: Daemon) -> None:
    with daemon.client() as c:
        with pytest.raises(FileNotFoundError) as info:
            c.stat(r"\\nosuchserver\share\x")
        assert info.value.status == S.STATUS_BAD_NETWORK_PATH
        with pytest.raises(FileNotFoundError) as info:
            c.stat(r"\\local\nosuchshare\x")
        assert info.value.status == S.STATUS_BAD_NETWORK_NAME
        assert "nosuchshare" in str(info.value)


def test_volume_information(daemon: Daemon) -> None:
    with daemon.client() as c:
        vol = c.volume(daemon.share)
    st = os.statvfs(daemon.share_dir)
    assert vol["total_bytes"] == st.f_blocks * st.f_frsize
    assert vol["device_characteristics"] & 0x10  # FILE_REMOTE_DEVICE


def test_shares_can_be_added_and_removed_at_run_time(daemon: Daemon, tmp_path: object) -> None:
    extra = daemon.base / "extra"
    extra.mkdir()
    (extra / "hello.txt").write_text("extra share")
    with daemon.client() as c:
        c.add_share("extra", str(extra))
        assert c.shares()["shares"]["extra"] == str(extra)
        assert c.read_bytes(r"\\local\extra\hello.txt") == b"extra share"
        c.remove_share("extra")
        assert "extra" not in c.shares()["shares"]


def test_handles_are_private_to_their_client(daemon: Daemon) -> None:
    with daemon.client() as a, daemon.client() as b:
        a.write_bytes(unc(daemon, "private.txt"), b"mine")
        h = a.create(unc(daemon, "private.txt"))
        with pytest.raises(NtStatusError) as info:
            b.read_handle(h.fobx, 0, 4)
        assert info.value.status == S.STATUS_INVALID_HANDLE
        assert a.read_handle(h.fobx, 0, 4) == b"mine"
        a.close_handle(h.fobx)
        with pytest.raises(NtStatusError) as info:
            a.read_handle(h.fobx, 0, 4)
        assert info.value.status == S.STATUS_INVALID_HANDLE


def test_clients_in_threads_share_one_daemon(daemon: Daemon) -> None:
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with daemon.client() as c:
                for j in range(20):
                    path = unc(daemon, f"t{i}-{j}.bin")
                    payload = f"{i}:{j}".encode() * 100
                    c.write_bytes(path, payload)
                    assert c.read_bytes(path) == payload
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)


def test_status_shows_the_processes_and_connections(daemon: Daemon) -> None:
    with daemon.client() as c:
        c.stat(daemon.share)
        status = c.status()
    peers = {p["name"]: p for p in status["peers"]}
    assert set(peers) == {"connmgr", "local"}
    assert "MRxCreate" in peers["local"]["routines"]
    assert "MRxQueryQuotaInfo" not in peers["local"]["routines"]  # left out: never registered
    conns = {c["name"].lower(): c for c in status["connections"]}
    assert conns[r"\\local\data"]["condition"] == "GOOD"


def test_client_without_daemon_says_so(tmp_path: object) -> None:
    with pytest.raises(ConnectionRefusedError) as info:
        Client("/tmp/rdbss-no-daemon-here")
    assert isinstance(info.value, NtStatusError)
    assert info.value.status == S.STATUS_REDIRECTOR_NOT_STARTED


def test_byte_range_locks_between_clients(daemon: Daemon) -> None:
    with daemon.client() as a, daemon.client() as b:
        a.write_bytes(unc(daemon, "locked.bin"), b"0123456789")
        ha = a.create(unc(daemon, "locked.bin"), access=Access.GENERIC_READ)
        hb = b.create(unc(daemon, "locked.bin"), access=Access.GENERIC_READ)
        a.lock(ha.fobx, 0, 5)
        with pytest.raises(BlockingIOError) as info:
            b.lock(hb.fobx, 0, 1)
        assert info.value.status == S.STATUS_LOCK_NOT_GRANTED  # type: ignore[attr-defined]
        with pytest.raises(BlockingIOError):
            b.read_handle(hb.fobx, 0, 5)  # mandatory: STATUS_FILE_LOCK_CONFLICT
        waited: list[str] = []
        t = threading.Thread(
            target=lambda: (b.lock(hb.fobx, 0, 5, wait=True), waited.append("granted"))
        )
        t.start()
        time.sleep(0.3)
        assert waited == []  # still waiting, and the daemon still serves a
        assert a.read_handle(ha.fobx, 0, 5) == b"01234"
        a.unlock(ha.fobx, 0, 5)
        t.join(10)
        assert waited == ["granted"]
        b.unlock_all(hb.fobx)
        a.lock(ha.fobx, 0, 10)
        a.close_handle(ha.fobx)
        b.close_handle(hb.fobx)


def test_change_notification(daemon: Daemon) -> None:
    (daemon.share_dir / "watched" / "sub").mkdir(parents=True)
    folder = unc(daemon, "watched")
    opts = {"access": Access.FILE_LIST_DIRECTORY, "options": CreateOptions.FILE_DIRECTORY_FILE}
    with daemon.client() as watcher, daemon.client() as other:
        h = watcher.create(folder, **opts)
        got: list[object] = []
        t = threading.Thread(target=lambda: got.append(watcher.watch(h.fobx, timeout=10)))
        t.start()
        time.sleep(0.3)
        assert got == []  # pending: nothing changed yet
        other.write_bytes(unc(daemon, "watched", "one.txt"), b"1")
        t.join(10)
        assert got == [[{"action": "added", "name": "one.txt"}]]
        # changes between two notifies of a handle are not lost (the folder "sub" changing
        # inside is not a change of this folder's names)
        other.write_bytes(unc(daemon, "watched", "sub", "deep.txt"), b"2")
        other.remove(unc(daemon, "watched", "one.txt"))
        assert watcher.watch(h.fobx, timeout=10) == [{"action": "removed", "name": "one.txt"}]
        # a sub-tree watch sees deeper names
        tree = watcher.create(folder, **opts)
        got.clear()
        t = threading.Thread(
            target=lambda: got.append(watcher.watch(tree.fobx, tree=True, timeout=10))
        )
        t.start()
        time.sleep(0.3)
        other.write_bytes(unc(daemon, "watched", "sub", "deeper.txt"), b"3")
        t.join(10)
        assert got == [[{"action": "added", "name": "sub\\deeper.txt"}]]


def test_closing_a_handle_ends_its_pending_notify(daemon: Daemon) -> None:
    (daemon.share_dir / "watched2").mkdir()

    async def main() -> int:
        async with AsyncClient(daemon.runtime_dir, timeout=10) as c:
            h = await c.create(
                unc(daemon, "watched2"),
                access=Access.FILE_LIST_DIRECTORY,
                options=CreateOptions.FILE_DIRECTORY_FILE,
            )
            waiting = asyncio.ensure_future(c.run(rq.notify(h.fobx, 0x3, 10_000)))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            await c.close_handle(h.fobx)
            try:
                await asyncio.wait_for(waiting, 5)
            except NtStatusError as exc:
                return exc.status
            return 0

    assert asyncio.run(main()) == S.STATUS_NOTIFY_CLEANUP


@pytest.mark.parametrize("size", [0, 1, 4096, (64 << 10) - 1])
def test_read_bytes_reads_a_small_file_in_one_request(
    daemon: Daemon, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file smaller than 64 KiB is read whole by one message: a compound of its create, one
    READ of the first 64 KiB (its short answer is the end) and its close: no second read to
    find the end, no read-ahead behind it."""
    data = os.urandom(size)
    (daemon.share_dir / f"whole-{size}.bin").write_bytes(data)
    unc = daemon.share + rf"\whole-{size}.bin"
    with daemon.client() as c:
        sent = count_sent(c, monkeypatch)
        monkeypatch.setattr(c, "submit", None)  # read-ahead would call it
        assert c.read_bytes(unc) == data
    assert len(sent) == 1
    reads = [(i.lowio.offset, i.lowio.length) for i in sent[0].items if i.major == IrpMj.READ]
    assert reads == [(0, rq.SMALL_READ_BYTES)]


@pytest.mark.parametrize("size", [64 << 10, 200_000])
def test_read_bytes_reads_larger_files_whole(daemon: Daemon, size: int) -> None:
    data = os.urandom(size)
    (daemon.share_dir / f"whole-{size}.bin").write_bytes(data)
    with daemon.client() as c:
        assert c.read_bytes(daemon.share + rf"\whole-{size}.bin") == data

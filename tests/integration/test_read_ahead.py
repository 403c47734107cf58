"""Read-ahead in the blocking client's file objects against a real daemon: sequential reads are
served from reads already in flight, with bounded memory; a seek, a write or the end of the
file drops what was read ahead, so the reader never sees stale or wrong bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rdbss.client import READ_AHEAD_MIN, Client, RemoteFile
from tests.daemon import Daemon, running_daemon
from tests.reliability.test_faulty import failing_reads, faulty_config

KIB = 1024


@pytest.fixture(scope="module")
def data(daemon: Daemon) -> bytes:
    payload = os.urandom(5 * (1 << 20) + 123)  # not a multiple of any chunk
    (daemon.share_dir / "ra.bin").write_bytes(payload)
    return payload


@pytest.mark.parametrize("read_ahead", [0, 4])
@pytest.mark.parametrize("size", [4 * KIB, 100 * KIB, 1 << 20])
def test_sequential_reads_get_the_same_bytes(
    daemon: Daemon, data: bytes, read_ahead: int, size: int
) -> None:
    # the socket path: with shared memory on, reads of 256 KiB and more take that path instead
    with (
        Client(daemon.runtime_dir, shared_memory=False) as c,
        c.open(daemon.share + r"\ra.bin", "rb", buffering=0, read_ahead=read_ahead) as f,
    ):
        raw: RemoteFile = f
        parts = []
        while chunk := raw.read(size):
            parts.append(chunk)
            assert len(raw._ahead) <= read_ahead  # bounded: never more in flight than asked
        assert b"".join(parts) == data
        if read_ahead:
            assert raw.read_ahead_hits > len(parts) // 2
        else:
            assert raw.read_ahead_hits == 0
        assert raw._ahead == type(raw._ahead)()  # the end of the file dropped the window
    assert not c._outstanding and not c._arrived


def test_buffered_and_whole_file_reads_use_it(daemon: Daemon, data: bytes) -> None:
    # the socket path (with shared memory, large reads take that path instead)
    with Client(daemon.runtime_dir, shared_memory=False) as c:
        with c.open(daemon.share + r"\ra.bin", "rb") as f:  # BufferedReader over RemoteFile
            assert f.read(3) == data[:3]
            assert f.read(2 << 20) == data[3 : 3 + (2 << 20)]
            assert f.read() == data[3 + (2 << 20) :]
            assert f.raw.read_ahead_hits > 0
        assert c.read_bytes(daemon.share + r"\ra.bin") == data


def test_a_seek_drops_the_window_and_reads_where_asked(daemon: Daemon, data: bytes) -> None:
    with daemon.client() as c, c.open(daemon.share + r"\ra.bin", "rb", buffering=0) as f:
        raw: RemoteFile = f
        assert raw.read(64 * KIB) == data[: 64 * KIB]
        assert raw.read(64 * KIB) == data[64 * KIB : 128 * KIB]
        assert raw._ahead  # reading ahead now
        raw.seek(3 << 20)
        assert not raw._ahead and raw._spare is None
        assert raw.read(10) == data[3 << 20 : (3 << 20) + 10]
        raw.seek(1000)
        assert raw.read(500) == data[1000:1500]
        assert raw.read(500) == data[1500:2000]
        assert raw.read(500) == data[2000:2500]
    assert not c._outstanding and not c._arrived  # abandoned answers were dropped


def test_a_write_through_the_same_file_is_never_hidden_by_read_ahead(daemon: Daemon) -> None:
    payload = bytes(range(256)) * (4 * READ_AHEAD_MIN // 256)
    (daemon.share_dir / "rw.bin").write_bytes(payload)
    with daemon.client() as c, c.open(daemon.share + r"\rw.bin", "r+b", buffering=0) as f:
        raw: RemoteFile = f
        assert raw.read(4 * KIB) == payload[: 4 * KIB]
        assert raw.read(4 * KIB) == payload[4 * KIB : 8 * KIB]  # the window now covers 8 KiB on
        assert raw._ahead or raw._spare is not None
        raw.seek(8 * KIB)  # where the caller is: keeps the window...
        raw.write(b"NEW!")  # ...until the write drops it
        assert not raw._ahead and raw._spare is None
        raw.seek(8 * KIB)
        assert raw.read(8) == b"NEW!" + payload[8 * KIB + 4 : 8 * KIB + 8]
        assert raw.read(4 * KIB) == payload[8 * KIB + 8 : 12 * KIB + 8]


def test_data_appended_after_the_end_is_seen(daemon: Daemon) -> None:
    path = daemon.share_dir / "grow.bin"
    path.write_bytes(b"a" * 10_000)
    with daemon.client() as c, c.open(daemon.share + r"\grow.bin", "rb", buffering=0) as f:
        raw: RemoteFile = f
        assert raw.read(4096) + raw.read(4096) + raw.read(4096) == b"a" * 10_000
        assert raw.read(4096) == b""
        with path.open("ab") as w:
            w.write(b"b" * 100)
        assert raw.read(4096) == b"b" * 100


def test_a_failed_read_ahead_is_raised_by_the_read_that_meets_it(tmp_path: Path) -> None:
    folder = tmp_path / "flaky"
    folder.mkdir()
    payload = os.urandom(2 << 20)
    (folder / "f.bin").write_bytes(payload)
    with running_daemon(faulty_config(folder, failing_reads(every=5))) as d, d.client() as c:
        with c.open(r"\\flaky\data\f.bin", "rb", buffering=0) as f:
            raw: RemoteFile = f
            got, errors = [], 0
            while True:
                try:
                    chunk = raw.read(64 * KIB)
                except OSError as exc:
                    assert getattr(exc, "status", None) == 0xC00000A3  # STATUS_DEVICE_NOT_READY
                    errors += 1
                    assert not raw._ahead and raw._spare is None  # the window was dropped
                    continue  # the position did not move: the same read again
                if not chunk:
                    break
                got.append(chunk)
                assert len(raw._ahead) <= 4
            assert errors > 0 and raw.read_ahead_hits > 0
            assert b"".join(got) == payload
        assert not c._outstanding and not c._arrived


@pytest.mark.parametrize("buffering", [0, 4096])
@pytest.mark.parametrize("shared_memory", [False, True])
def test_read_to_the_end_after_sequential_reads_gets_the_whole_rest(
    daemon: Daemon, buffering: int, shared_memory: bool
) -> None:
    """Sequential reads leave part of a read-ahead window; a read() to the end of a file whose
    rest is under 64 KiB (one read of one byte more than the rest) returns all of the rest:
    what is left of the window is no short answer of the daemon, which alone ends the file."""
    data = os.urandom(300_000)
    (daemon.share_dir / "rest.bin").write_bytes(data)
    with (
        Client(daemon.runtime_dir, shared_memory=shared_memory) as c,
        c.open(daemon.share + r"\rest.bin", "rb", buffering=buffering) as f,
    ):
        head = b"".join(f.read(4096) for _ in range(60))
        assert head == data[: 60 * 4096]
        assert f.read() == data[60 * 4096 :]
    with (
        Client(daemon.runtime_dir) as c,
        c.open(daemon.share + r"\rest.bin", "rb", buffering=0) as f,
    ):
        f.seek(267_474)
        assert f.read(1) == data[267_474:267_475]
        assert f.read(10_000) == data[267_475:277_475]
        assert f.read() == data[277_475:]

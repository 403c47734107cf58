"""The shared-memory arenas (rdbss.shm): what the mini-redirector side accepts, on real files
in /dev/shm."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from rdbss import shm
from rdbss.wire.status import NtStatus, NtStatusError

pytestmark = pytest.mark.skipif(not shm.available(), reason="no writable /dev/shm")


@pytest.fixture
def arena() -> Iterator[shm.Arena]:
    a = shm.Arena(slots=2, slot_bytes=1 << 16)
    yield a
    a.close()


def test_a_slot_written_by_the_server_side_is_read_by_the_client(arena: shm.Arena) -> None:
    maps = shm.Maps()
    try:
        args = arena.args(1)
        target = maps.target(args, 5)
        assert target is not None
        target[:] = b"hello"
        target.release()
        assert bytes(arena.view(1, 5)) == b"hello"
        assert maps.target({"other": 1}, 5) is None  # no hint: the socket path
    finally:
        maps.close()
    assert oct(os.stat(arena.path).st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    "args",
    [
        {"shm": "../../etc/passwd", "shm_off": 0},
        {"shm": "rdbss-1-0123456789abcdef/../x", "shm_off": 0},
        {"shm": "rdbss-1-0123456789abcdef", "shm_off": 0},  # no such arena
        {"shm": 7, "shm_off": 0},
        {"shm": "rdbss-1-0123456789abcdef", "shm_off": -1},
    ],
)
def test_bad_hints_are_invalid_parameters(args: dict[str, object]) -> None:
    with pytest.raises(NtStatusError) as info:
        shm.Maps().target(args, 16)
    assert info.value.status == NtStatus.STATUS_INVALID_PARAMETER


def test_ranges_outside_the_arena_and_exposed_files_are_refused(arena: shm.Arena) -> None:
    maps = shm.Maps()
    size = arena.slots * arena.slot_bytes
    with pytest.raises(NtStatusError, match="outside the arena"):
        maps.target({"shm": arena.name, "shm_off": size - 8}, 16)
    os.chmod(arena.path, 0o644)
    with pytest.raises(NtStatusError, match="not a private arena"):
        shm.Maps().target(arena.args(0), 16)
    os.chmod(arena.path, 0o600)
    link = shm.SHM_DIR / f"rdbss-1-{os.urandom(8).hex()}"
    os.symlink(arena.path, link)
    try:
        with pytest.raises(NtStatusError):
            shm.Maps().target({"shm": link.name, "shm_off": 0}, 16)
    finally:
        link.unlink()
    maps.close()


def test_arenas_of_dead_processes_are_swept() -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = shm.SHM_DIR / f"rdbss-{dead.stdout.strip()}-{os.urandom(8).hex()}"
    stale.write_bytes(b"x")
    mine = shm.Arena(slots=1, slot_bytes=4096)
    try:
        assert not stale.exists()  # a new arena sweeps first
        assert mine.path.exists()
    finally:
        mine.close()
    assert not mine.path.exists()


@pytest.mark.parametrize(
    ("exc", "settled"),
    [
        (NtStatusError(NtStatus.STATUS_ACCESS_DENIED), True),  # the mini-redirector's answer
        (NtStatusError(NtStatus.STATUS_DISK_FULL), True),
        (NtStatusError(NtStatus.STATUS_IO_TIMEOUT), False),  # may still be running there
        (NtStatusError(NtStatus.STATUS_CANCELLED), False),
        (KeyboardInterrupt(), False),  # the wait ended, not the request
        (TimeoutError(), False),
    ],
)
def test_only_an_answered_request_settles_its_slot(exc: BaseException, settled: bool) -> None:
    assert shm.settled(exc) is settled

"""The SMB write's pieces in flight, against a fake connection that answers in order: every
piece is collected before the write answers, a short piece makes the rest go again from where
the server stopped, and a failed piece fails the whole write."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rdbss.minirdrs.smb import io
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus
MIB = 1 << 20


class FakeServer:
    """A file on the server; ``short_at``: the offset of a WRITE that writes half its bytes;
    ``fail_at``: one that fails."""

    def __init__(self, short_at: int | None = None, fail_at: int | None = None) -> None:
        self.file = bytearray()
        self.short_at, self.fail_at = short_at, fail_at
        self.in_flight = self.most = 0
        self.sequence_window = {"low": 0, "high": 512}
        self.max_write_size = 8 * MIB

    # the connection
    def send(self, message: tuple[bytes, int], **_: Any) -> tuple[bytes, int]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        return message

    # the handle
    def write(
        self, data: bytes, offset: int, send: bool
    ) -> tuple[tuple[bytes, int], Callable[[Any], int]]:
        assert not send

        def answer(request: tuple[bytes, int]) -> int:
            self.in_flight -= 1
            piece, where = request
            if where == self.fail_at:
                self.fail_at = None
                raise NtStatusError(S.STATUS_DISK_FULL, "full")
            count = len(piece) // 2 if where == self.short_at else len(piece)
            if where == self.short_at:
                self.short_at = None
            self.file[where : where + count] = piece[:count]
            return count

        return (data, offset), answer


class FakeLink:
    def __init__(self, server: FakeServer) -> None:
        self.connection = server
        self.session = type("Session", (), {"session_id": 1})()

    def call(self, what: str, fn: Callable[[], int]) -> int:
        return fn()

    def credits(self, size: int, max_size: int, pieces: int = 1) -> tuple[int, int]:
        return min(size, max_size), 1


def _op(server: FakeServer) -> Any:
    return type(
        "Op",
        (),
        {
            "link": FakeLink(server),
            "handle": server,
            "tree": type("Tree", (), {"tree_connect_id": 1})(),
            "path": "f",
            "append_only": False,
        },
    )()


DATA = bytes(range(256)) * (10 * MIB // 256)


def test_the_pieces_go_in_flight_and_land_in_place() -> None:
    server = FakeServer()
    assert io.write(_op(server), 0, DATA).information == len(DATA)
    assert server.most > 1
    assert server.in_flight == 0
    assert bytes(server.file) == DATA


def test_after_a_short_piece_the_rest_goes_again() -> None:
    server = FakeServer(short_at=3 * MIB)
    assert io.write(_op(server), 0, DATA).information == len(DATA)
    assert server.in_flight == 0
    assert bytes(server.file) == DATA


def test_a_failed_piece_fails_the_write_once_every_answer_is_in() -> None:
    server = FakeServer(fail_at=2 * MIB)
    with pytest.raises(NtStatusError) as caught:
        io.write(_op(server), 0, DATA)
    assert caught.value.status == S.STATUS_DISK_FULL
    assert server.in_flight == 0

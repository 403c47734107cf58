"""The client's own refusals (rdbss.requests): what the codec would refuse is refused before
anything is sent, with the argument's name and a named status; the edges of each range go."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rdbss import requests as rq
from rdbss.wire import Codec, NtStatus, NtStatusError
from rdbss.wire.rxcontext import MAX_I64, MAX_TEXT_LEN, MAX_TIMEOUT_MS

codec = Codec()


@pytest.mark.parametrize(
    ("build", "status", "words"),
    [
        (lambda: rq.create("\\\\local\\data\\" + "x" * MAX_TEXT_LEN, 1000),
         NtStatus.STATUS_OBJECT_NAME_INVALID, "longer than the limit of 65536"),
        (lambda: rq.create("\\\\local\\data\\a\x00b", 1000),
         NtStatus.STATUS_OBJECT_NAME_INVALID, "NUL"),
        (lambda: rq.read(1, -1, 10, 1000), NtStatus.STATUS_INVALID_PARAMETER, "offset -1"),
        (lambda: rq.read(1, 0, -5, 1000), NtStatus.STATUS_INVALID_PARAMETER, "length -5"),
        (lambda: rq.write(1, -2, b"x", 1000), NtStatus.STATUS_INVALID_PARAMETER, "offset -2"),
        (lambda: rq.lock(1, 2**63, 1, 1000), NtStatus.STATUS_INVALID_PARAMETER, "offset"),
        (lambda: rq.read(-3, 0, 1, 1000), NtStatus.STATUS_INVALID_PARAMETER, "handle (fobx) -3"),
        (lambda: rq.close(1, -5), NtStatus.STATUS_INVALID_PARAMETER, "timeout of -5 ms"),
        (lambda: rq.close(1, 2**63), NtStatus.STATUS_INVALID_PARAMETER, "out of range"),
        (lambda: rq.create("\\\\local\\data", 1000, access=-1),
         NtStatus.STATUS_INVALID_PARAMETER, "access -1"),
        (lambda: rq.query_directory(1, 1000, max_entries=-1),
         NtStatus.STATUS_INVALID_PARAMETER, "max_entries"),
        (lambda: rq.compound([], -1), NtStatus.STATUS_INVALID_PARAMETER, "timeout"),
    ],
)  # fmt: skip
def test_out_of_range_arguments_are_refused_before_sending(
    build: Callable[[], Any], status: int, words: str
) -> None:
    with pytest.raises(NtStatusError) as info:
        build()
    assert info.value.status == status
    assert words in (info.value.strerror or "")


def test_the_edges_of_each_range_are_sent_and_decoded() -> None:
    """What the client lets through, the codec takes: an append (-1), the largest offset,
    deadline and handle, a path of exactly the limit."""
    for request in (
        rq.write(MAX_I64, -1, b"x", MAX_TIMEOUT_MS),
        rq.read(1, MAX_I64, 0, 0),
        rq.lock(1, 0, MAX_I64, 1000),
        rq.create("x" * MAX_TEXT_LEN, 1000),
    ):
        assert codec.decode(codec.encode(request.ctx)) == request.ctx


def test_a_single_stat_s_compound_is_the_one_its_items_make() -> None:
    """``stat_compound`` builds directly the message ``stat_items`` make in a compound, and
    refuses what ``create`` refuses; ``stat_result`` reads its answer as the create's outcome."""
    from rdbss.wire import CompoundCompletion, RxCompletion

    path = "\\\\local\\data\\f"
    direct = rq.stat_compound(path, 5000)
    items = rq.compound(rq.stat_items(path, 5000), 5000)
    assert codec.decode(codec.encode(direct)) == codec.decode(codec.encode(items))
    with pytest.raises(NtStatusError) as info:
        rq.stat_compound("\\\\local\\data\\a\x00b", 1000)
    assert info.value.status == NtStatus.STATUS_OBJECT_NAME_INVALID
    with pytest.raises(NtStatusError, match="timeout of -1 ms"):
        rq.stat_compound(path, -1)
    ok = NtStatus.STATUS_SUCCESS
    opened = RxCompletion(1, ok, 1, {"fobx": 0, "size": 7, "attributes": 0x80})
    info_ = rq.stat_result(CompoundCompletion(1, ok, [opened, RxCompletion(2, ok)]))
    assert (info_.size, info_.is_dir) == (7, False)
    missing = RxCompletion(1, NtStatus.STATUS_OBJECT_NAME_NOT_FOUND, message="f not found")
    closed = RxCompletion(2, NtStatus.STATUS_OBJECT_NAME_NOT_FOUND)
    with pytest.raises(FileNotFoundError, match="f not found"):
        rq.stat_result(CompoundCompletion(1, ok, [missing, closed]))
    refused = NtStatus.STATUS_INSUFFICIENT_RESOURCES
    for answer in (CompoundCompletion(1, refused, message="busy"), RxCompletion(1, refused)):
        with pytest.raises(NtStatusError) as info:
            rq.stat_result(answer)
        assert info.value.status == refused
    with pytest.raises(NtStatusError) as info:
        rq.stat_result(CompoundCompletion(1, ok, [opened]))
    assert info.value.status == NtStatus.STATUS_INVALID_NETWORK_RESPONSE

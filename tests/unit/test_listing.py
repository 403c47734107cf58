"""Directory enumeration shared by the listing mini-redirectors."""

from __future__ import annotations

import pytest

from rdbss.minirdrs.common.listing import Enumerations, check_pattern
from rdbss.wire import IrpMj, NtStatus, NtStatusError, QueryDirectoryParameters, RxContext

S = NtStatus
NAMES = ["a", "b", "c", "d", "e"]


def ctx(fobx: int = 1, srv_open: int = 7, **query: object) -> RxContext:
    return RxContext(
        1,
        IrpMj.DIRECTORY_CONTROL,
        fobx=fobx,
        srv_open=srv_open,
        query_directory=QueryDirectoryParameters(**query),
    )  # type: ignore[arg-type]


def names(result: object) -> list[str]:
    return [e["name"] for e in result.result["entries"]]  # type: ignore[attr-defined]


def test_batches_restart_and_the_two_endings() -> None:
    loads: list[str] = []
    gone = {"c"}

    def load(pattern: str) -> list[tuple[str, None]]:
        loads.append(pattern)
        return [(n, None) for n in NAMES]

    def describe(name: str, _: None) -> dict[str, object] | None:
        return None if name in gone else {"size": 1}

    e: Enumerations[None] = Enumerations()
    assert names(e.query(ctx(max_entries=2), "dir", load, describe)) == ["a", "b"]
    assert names(e.query(ctx(max_entries=2, pattern="zzz"), "dir", load, describe)) == ["d", "e"]
    with pytest.raises(NtStatusError) as info:
        e.query(ctx(max_entries=2), "dir", load, describe)
    assert info.value.status == S.STATUS_NO_MORE_FILES
    assert loads == ["*"]  # the first pattern stuck; the vanished "c" was skipped
    assert names(
        e.query(ctx(restart_scan=True, return_single_entry=True), "dir", load, describe)
    ) == ["a"]
    assert names(e.query(ctx(fobx=2), "dir", load, describe)) == ["a", "b", "d", "e"]
    e.forget_srv_open(7)
    with pytest.raises(NtStatusError) as info:
        e.query(ctx(pattern="none"), "dir", lambda p: [], describe)
    assert info.value.status == S.STATUS_NO_SUCH_FILE


def test_patterns_are_checked() -> None:
    assert check_pattern("") == "*"
    for bad in ("a\\b", "a/b", "a\x00"):
        with pytest.raises(NtStatusError) as info:
            check_pattern(bad)
        assert info.value.status == S.STATUS_OBJECT_NAME_INVALID

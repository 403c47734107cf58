"""EA names, set requests and the FILE_FULL_EA_INFORMATION list."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rdbss.minirdrs.common.eas import check_name, pack_full_ea, parse_full_ea, parse_set
from rdbss.wire import NtStatus, NtStatusError

names = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters='"*/:<>?\\|+,;=[]'),
    min_size=1,
    max_size=40,
)


@given(st.dictionaries(names, st.binary(min_size=1, max_size=300), min_size=1, max_size=8))
def test_full_ea_round_trip(eas: dict[str, bytes]) -> None:
    packed = pack_full_ea(eas)
    assert parse_full_ea(packed) == eas


def test_entries_are_aligned_and_chained() -> None:
    packed = pack_full_ea({"A": b"1", "BB": b"22"})
    first_next = int.from_bytes(packed[:4], "little")
    assert first_next % 4 == 0 and first_next > 0
    assert int.from_bytes(packed[first_next : first_next + 4], "little") == 0  # the last


@pytest.mark.parametrize("name", ["", "a:b", "x" * 256, "tab\t", "é", None, 7])
def test_bad_names(name: object) -> None:
    with pytest.raises(NtStatusError) as info:
        check_name(name)
    assert info.value.status == NtStatus.STATUS_INVALID_PARAMETER


def test_set_requests() -> None:
    assert parse_set({"eas": {"A": b"x", "B": None, "C": b""}}) == {"A": b"x", "B": None, "C": None}
    with pytest.raises(NtStatusError) as info:
        parse_set({"eas": {"A": b"x" * 70000}})
    assert info.value.status == NtStatus.STATUS_EA_TOO_LARGE
    for bad in (None, {}, {"eas": {}}, {"eas": {"A": "text"}}):
        with pytest.raises(NtStatusError):
            parse_set(bad)
    with pytest.raises(NtStatusError) as info:
        parse_full_ea(struct.pack("<IBBH", 0, 0, 5, 0) + b"ab")  # name says 5, 2 follow
    assert info.value.status == NtStatus.STATUS_INVALID_NETWORK_RESPONSE

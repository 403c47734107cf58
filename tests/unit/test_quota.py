"""Quota entries in their SMB binary forms (rdbss.minirdrs.common.quota)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rdbss.minirdrs.common.quota import (
    pack_quota_entries,
    parse_query_args,
    parse_quota_information,
    query_quota_info,
)
from rdbss.wire.status import NtStatus, NtStatusError


def test_set_entries_parse_back() -> None:
    entries = [
        {"sid": "S-1-5-21-1-2-3-1000", "threshold": 1 << 20, "limit": -1},
        {"sid": "S-1-22-1-7", "threshold": 0, "limit": 5},
    ]
    parsed = parse_quota_information(pack_quota_entries(entries))
    assert [{k: e[k] for k in ("sid", "threshold", "limit")} for e in parsed] == entries
    assert all(e["used"] == 0 for e in parsed)


def test_query_info_names_sids_or_asks_for_all() -> None:
    every = query_quota_info(None, restart=True)
    assert struct.unpack("<BBHIII", every) == (0, 1, 0, 0, 0, 0)
    some = query_quota_info(["S-1-22-1-0"], restart=False)
    _single, restart, _r, length, _l, _o = struct.unpack_from("<BBHIII", some)
    assert restart == 0 and length == len(some) - 16 and length % 8 == 0


@pytest.mark.parametrize(
    "args",
    [{"sids": []}, {"sids": ["x"]}, {"other": 1}, {"sids": "S-1-1-0"}],
)
def test_bad_query_args(args: dict) -> None:
    with pytest.raises(NtStatusError) as info:
        parse_query_args(args)
    assert info.value.status == NtStatus.STATUS_INVALID_PARAMETER


@given(st.binary(max_size=300))
def test_malformed_answers_are_a_network_status(data: bytes) -> None:
    try:
        parse_quota_information(data)
    except NtStatusError as exc:
        assert exc.status == NtStatus.STATUS_INVALID_NETWORK_RESPONSE

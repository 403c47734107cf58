"""The security descriptor mapping (rdbss.minirdrs.common.security): POSIX mode <-> DACL, the
refusals, and the self-relative binary form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rdbss.minirdrs.common.security import (
    EVERYONE,
    FILE_GENERIC_EXECUTE,
    FILE_GENERIC_READ,
    FILE_GENERIC_WRITE,
    PosixSecurity,
    dacl_mode,
    mode_dacl,
    pack_descriptor,
    parse_descriptor,
    posix_change,
    posix_descriptor,
)
from rdbss.wire.status import NtStatus, NtStatusError

OWNER, GROUP = "S-1-22-1-1000", "S-1-22-2-100"
FILE = PosixSecurity(1000, 100, 0o100640, "alice", "staff")


@given(st.integers(0, 0o777))
def test_every_mode_round_trips_through_its_dacl(mode: int) -> None:
    assert dacl_mode(mode_dacl(mode, OWNER, GROUP), OWNER, GROUP) == mode


def test_the_dacl_of_0640() -> None:
    assert mode_dacl(0o640, OWNER, GROUP) == [
        {"type": 0, "flags": 0, "mask": FILE_GENERIC_READ | FILE_GENERIC_WRITE, "sid": OWNER},
        {"type": 0, "flags": 0, "mask": FILE_GENERIC_READ, "sid": GROUP},
    ]


def test_query_holds_only_what_is_asked() -> None:
    owner_only = posix_descriptor(0x1, FILE)
    assert owner_only["owner"] == OWNER and owner_only["owner_name"] == "alice"
    assert "group" not in owner_only and "dacl" not in owner_only
    full = posix_descriptor(0x7, FILE)
    assert full["group"] == GROUP and full["mode"] == 0o100640
    assert full["dacl"] == mode_dacl(0o640, OWNER, GROUP)


@pytest.mark.parametrize(
    ("ace", "says"),
    [
        ({"type": 1, "flags": 0, "mask": FILE_GENERIC_READ, "sid": EVERYONE}, "only allow"),
        ({"type": 0, "flags": 0, "mask": FILE_GENERIC_READ, "sid": "S-1-5-32-544"}, "no entry"),
        ({"type": 0, "flags": 0x10, "mask": FILE_GENERIC_READ, "sid": OWNER}, "inheritance"),
        ({"type": 0, "flags": 0, "mask": FILE_GENERIC_READ | 0x10000, "sid": OWNER}, "rights"),
        ({"type": 0, "flags": 0, "mask": 0x1, "sid": OWNER}, "union"),
    ],
)
def test_inexpressible_dacls_are_refused_with_the_reason(ace: dict, says: str) -> None:
    with pytest.raises(NtStatusError) as info:
        dacl_mode([ace], OWNER, GROUP)
    assert info.value.status == NtStatus.STATUS_INVALID_PARAMETER
    assert says in (info.value.strerror or "")


def test_a_null_dacl_and_duplicate_aces_are_refused() -> None:
    for dacl in (None, mode_dacl(0o600, OWNER, GROUP) * 2):
        with pytest.raises(NtStatusError):
            dacl_mode(dacl, OWNER, GROUP)


def test_set_keeps_special_bits_and_checks_fields() -> None:
    current = PosixSecurity(1000, 100, 0o104755)
    change = posix_change(0x4, {"dacl": mode_dacl(0o700, OWNER, GROUP)}, current)
    assert change.permissions == 0o4700 and change.uid is None
    change = posix_change(0x3, {"owner": "S-1-22-1-5", "group": "S-1-22-2-6"}, current)
    assert (change.uid, change.gid, change.permissions) == (5, 6, None)
    for info, args in [
        (0x1, {}),  # the bit without the field
        (0x4, {"owner": OWNER, "mode": 0o600}),  # a field without its bit
        (0x1, {"owner": "S-1-5-21-1-2-3-500"}),  # not a Unix SID
        (0x2, {"group": OWNER}),  # a user SID as the group
        (0x4, {"mode": 0o10000}),
        (0x4, {"mode": 0o600, "dacl": []}),
        (0x8, {"sacl": []}),
    ]:
        with pytest.raises(NtStatusError):
            posix_change(info, args, current)


def test_binary_descriptor_round_trips() -> None:
    fields = {
        "owner": "S-1-5-21-1-2-3-1000",
        "group": "S-1-22-2-0",
        "dacl": [
            {"type": 0, "flags": 3, "mask": FILE_GENERIC_EXECUTE, "sid": EVERYONE},
            {"type": 1, "flags": 0, "mask": 0x10000, "sid": "S-1-5-32-544"},
        ],
    }
    parsed = parse_descriptor(pack_descriptor(0x7, fields))
    assert {k: parsed[k] for k in fields} == fields
    assert parse_descriptor(pack_descriptor(0x4, {"dacl": None}))["dacl"] is None


@given(st.binary(max_size=200))
def test_malformed_binary_descriptors_answer_invalid_parameter(data: bytes) -> None:
    try:
        parse_descriptor(data)
    except NtStatusError as exc:
        assert exc.status == NtStatus.STATUS_INVALID_PARAMETER

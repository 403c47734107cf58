"""Pure RDBSS logic: UNC names, the prefix table, conditions, SrvCall construction, dispatch."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rdbss.model.construction import SrvCallConstruction
from rdbss.model.dispatch import routine_for
from rdbss.model.names import normalize_relative, parse_unc
from rdbss.model.prefix import PrefixTable
from rdbss.model.structs import Condition, Node, TransitionError
from rdbss.wire import IrpMj, LowIoOp, LowIoParameters, NtStatus, NtStatusError, Routine, RxContext
from rdbss.wire.constants import IrpMn

S = NtStatus


# ----------------------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("given", "server", "share", "path"),
    [
        (r"\\srv\share", "srv", "share", ""),
        (r"\\srv\share\\", "srv", "share", ""),
        ("//srv/share/a/b.txt", "srv", "share", r"a\b.txt"),
        (r"\\srv\share\a\.\b\..\c", "srv", "share", r"a\c"),
        (r"\\srv\share\a//b\\\c", "srv", "share", r"a\b\c"),
        (r"\\SRV\Share\Dir", "SRV", "Share", "Dir"),
    ],
)
def test_parse_unc(given: str, server: str, share: str, path: str) -> None:
    name = parse_unc(given)
    assert (name.server, name.share, name.path) == (server, share, path)


@pytest.mark.parametrize(
    ("given", "status"),
    [
        ("relative/path", S.STATUS_OBJECT_PATH_SYNTAX_BAD),
        (r"\\srv", S.STATUS_OBJECT_PATH_SYNTAX_BAD),
        (r"\\\share", S.STATUS_OBJECT_PATH_SYNTAX_BAD),
        (r"\\srv\share\..", S.STATUS_OBJECT_PATH_SYNTAX_BAD),
        (r"\\srv\share\a\..\..\etc", S.STATUS_OBJECT_PATH_SYNTAX_BAD),
        ("\\\\srv\\share\\a\x00b", S.STATUS_OBJECT_NAME_INVALID),
        (r"\\srv\share\file.txt:stream", S.STATUS_OBJECT_NAME_INVALID),
        (r"\\srv\share\a*b", S.STATUS_OBJECT_NAME_INVALID),
        (r"\\srv\share\CON", S.STATUS_OBJECT_NAME_INVALID),
        (r"\\srv\share\nul.txt", S.STATUS_OBJECT_NAME_INVALID),
        (r"\\srv\share\\" + "x" * 256, S.STATUS_OBJECT_NAME_INVALID),
    ],
)
def test_parse_unc_refuses(given: str, status: int) -> None:
    with pytest.raises(NtStatusError) as info:
        parse_unc(given)
    assert info.value.status == status


@given(st.lists(st.sampled_from(["a", "b", ".", "..", "", "c.txt"]), max_size=12))
def test_normalized_paths_never_climb_out(parts: list[str]) -> None:
    try:
        path = normalize_relative("\\".join(parts))
    except NtStatusError as exc:
        assert exc.status == S.STATUS_OBJECT_PATH_SYNTAX_BAD
        return
    assert ".." not in path.split("\\") and "." not in path.split("\\")
    assert not path.startswith("\\")
    assert normalize_relative(path) == path  # idempotent


def test_unc_name_helpers() -> None:
    name = parse_unc(r"\\srv\share\a\b")
    assert name.parent.path == "a" and name.name == "b"
    assert str(name.child("c")) == r"\\srv\share\a\b\c"
    assert name.key == r"\\srv\share"


# ----------------------------------------------------------------------------- prefix table
def test_prefix_table_longest_match_and_case() -> None:
    table = PrefixTable()
    assert table.lookup(parse_unc(r"\\a\b\c")).srv_call is None
    v = table.find_or_create_v_net_root(parse_unc(r"\\Srv\Share"))
    version = table.version
    assert table.find_or_create_v_net_root(parse_unc(r"\\SRV\share")) is v
    assert table.version == version
    hit = table.lookup(parse_unc(r"\\srv\SHARE\dir\f"))
    assert hit.v_net_root is v and hit.rest == r"dir\f"
    other = table.lookup(parse_unc(r"\\srv\other\x"))
    assert other.v_net_root is None and other.srv_call is v.net_root.srv_call
    assert other.rest == r"other\x"
    removed = table.remove_srv_call(v.net_root.srv_call)
    assert removed == [v] and table.version > version
    assert table.lookup(parse_unc(r"\\srv\share")).srv_call is None


# ----------------------------------------------------------------------------- conditions
def test_condition_transitions_release_waiters_when_stable() -> None:
    node = Node()
    node.waiters.append("w1")
    assert node.transition(Condition.IN_TRANSITION) == []
    node.waiters.append("w2")
    assert node.transition(Condition.GOOD) == ["w1", "w2"]
    assert node.waiters == []
    with pytest.raises(TransitionError):
        node.transition(Condition.UNINITIALIZED)
    node.transition(Condition.BAD, S.STATUS_IO_TIMEOUT)
    assert node.status == S.STATUS_IO_TIMEOUT and node.condition.stable


# ----------------------------------------------------------------------------- construction
def test_construction_first_in_provider_order_wins() -> None:
    c = SrvCallConstruction("srv", ["smb", "webdav", "sftp"])
    c.record("webdav", S.STATUS_SUCCESS)
    assert not c.done  # smb may still win
    c.record("smb", S.STATUS_BAD_NETWORK_PATH)
    assert c.done and c.winner == "webdav"
    c.record("sftp", S.STATUS_SUCCESS)  # late: recorded but not the winner
    assert c.winner == "webdav" and c.losers == ["sftp"]


def test_construction_failure_reports_the_meaningful_status() -> None:
    c = SrvCallConstruction("srv", ["a", "b"])
    c.record("a", S.STATUS_BAD_NETWORK_PATH)
    c.record("b", S.STATUS_LOGON_FAILURE, "wrong password")
    assert c.done and c.winner is None
    assert c.failure == (S.STATUS_LOGON_FAILURE, "wrong password")
    empty = SrvCallConstruction("srv", [])
    assert empty.done and empty.failure[0] == S.STATUS_BAD_NETWORK_PATH


def test_construction_ignores_strangers_and_repeats() -> None:
    c = SrvCallConstruction("srv", ["a"])
    c.record("zz", S.STATUS_SUCCESS)
    c.record("a", S.STATUS_IO_TIMEOUT)
    c.record("a", S.STATUS_SUCCESS)
    assert c.results == {"a": S.STATUS_IO_TIMEOUT} and c.winner is None


# ----------------------------------------------------------------------------- dispatch
@pytest.mark.parametrize(
    ("major", "minor", "flags", "fobx", "expected"),
    [
        (IrpMj.READ, 0, 0, 1, (Routine.MRxLowIOSubmit, LowIoOp.READ)),
        (IrpMj.WRITE, 0, 0, 1, (Routine.MRxLowIOSubmit, LowIoOp.WRITE)),
        (IrpMj.LOCK_CONTROL, IrpMn.LOCK, 2, 1, (Routine.MRxLowIOSubmit, LowIoOp.EXCLUSIVELOCK)),
        (IrpMj.LOCK_CONTROL, IrpMn.LOCK, 0, 1, (Routine.MRxLowIOSubmit, LowIoOp.SHAREDLOCK)),
        (
            IrpMj.LOCK_CONTROL,
            IrpMn.UNLOCK_ALL,
            0,
            1,
            (Routine.MRxLowIOSubmit, LowIoOp.UNLOCK_MULTIPLE),
        ),
        (IrpMj.DIRECTORY_CONTROL, IrpMn.QUERY_DIRECTORY, 0, 1, (Routine.MRxQueryDirectory, None)),
        (
            IrpMj.DIRECTORY_CONTROL,
            IrpMn.NOTIFY_CHANGE_DIRECTORY,
            0,
            1,
            (Routine.MRxLowIOSubmit, LowIoOp.NOTIFY_CHANGE_DIRECTORY),
        ),
        (IrpMj.FILE_SYSTEM_CONTROL, 0, 0, None, (Routine.MRxDevFcbXXXControlFile, LowIoOp.FSCTL)),
        (IrpMj.FILE_SYSTEM_CONTROL, 0, 0, 1, (Routine.MRxLowIOSubmit, LowIoOp.FSCTL)),
        (IrpMj.QUERY_INFORMATION, 0, 0, 1, (Routine.MRxQueryFileInfo, None)),
        (IrpMj.FLUSH_BUFFERS, 0, 0, 1, (Routine.MRxFlush, None)),
    ],
)
def test_routine_for(
    major: int, minor: int, flags: int, fobx: int | None, expected: tuple[Routine, LowIoOp | None]
) -> None:
    ctx = RxContext(1, major, minor, fobx=fobx, lowio=LowIoParameters(flags=flags))
    assert routine_for(ctx) == expected


def test_routine_for_unknown_major() -> None:
    with pytest.raises(NtStatusError) as info:
        routine_for(RxContext(1, 0x1F))
    assert info.value.status == S.STATUS_INVALID_DEVICE_REQUEST

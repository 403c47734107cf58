"""The attribute cache's place in the core, driven without sockets like test_core_buffering:
which answers fill it, which queries it answers with no message to the mini-redirector, and
that a change racing with an answer keeps that answer out."""

from __future__ import annotations

from typing import Any

from rdbss.wire import (
    FileInformationClass,
    InfoParameters,
    IrpMj,
    IrpMn,
    NtStatus,
    QueryDirectoryParameters,
    Routine,
    RxCompletion,
    RxContext,
)
from tests.unit.test_core_buffering import ROUTINES, RW, Env, write
from tests.unit.test_core_logic import CLIENT_A

S = NtStatus
STANDARD = FileInformationClass.FileStandardInformation
LISTING = [*ROUTINES, Routine.MRxQueryDirectory]


def query(env: Env, fobx: int, info_class: int = STANDARD) -> None:
    info = InfoParameters(info_class=info_class)
    env.request(CLIENT_A, RxContext(0, IrpMj.QUERY_INFORMATION, fobx=fobx, info=info))


def listing(env: Env, fobx: int) -> None:
    qd = QueryDirectoryParameters(pattern="*")
    ctx = RxContext(0, IrpMj.DIRECTORY_CONTROL, minor=IrpMn.QUERY_DIRECTORY, fobx=fobx)
    ctx.query_directory = qd
    env.request(CLIENT_A, ctx)


def counters(env: Env) -> dict[str, Any]:
    return env.core.caching.attrs.counters()


def test_a_query_on_a_handle_is_answered_from_what_the_create_said() -> None:
    env = Env("exclusive", close_delay_s=0)
    fobx = env.open()  # answered with size=5
    env.out.peer.clear()
    query(env, fobx)
    assert env.sent() == []
    done = env.out.client[-1][1]
    assert done.status == S.STATUS_SUCCESS and done.result["size"] == 5
    query(env, fobx, FileInformationClass.FileAllInformation)  # per handle: asked
    assert env.routines() == [Routine.MRxQueryFileInfo]


def test_nothing_is_kept_without_the_exclusive_grant() -> None:
    env = Env("handles", close_delay_s=0)
    fobx = env.open()
    env.out.peer.clear()
    query(env, fobx)
    assert env.routines() == [Routine.MRxQueryFileInfo]
    assert counters(env)["attr_entries"] == 0


def test_a_deferred_write_drops_the_entry_before_anything_is_sent() -> None:
    env = Env("exclusive", close_delay_s=0, write_behind_s=1.0)
    fobx = env.open(access=RW)
    env.out.peer.clear()
    assert write(env, fobx, 0, b"abcdefgh").information == 8
    assert env.sent() == []  # deferred
    query(env, fobx)  # not from the cache: the write goes first, then the query
    assert env.routines() == [Routine.MRxLowIOSubmit, Routine.MRxQueryFileInfo]


def test_a_listing_answered_after_a_change_keeps_nothing() -> None:
    env = Env("exclusive", LISTING, close_delay_s=0)
    folder = env.open(path=r"\\local\data\d")
    other = env.open(path=r"\\local\data\d\x", access=RW)
    env.out.peer.clear()
    listing(env, folder)
    listed = env.sent()[-1]
    write(env, other, 0, b"new")  # write-through (write_behind_s is 0): sent and answered
    env.answer(S.STATUS_SUCCESS, None)
    stale = {"entries": [{"name": "y", "size": 1}]}
    env.core.on_peer("local", RxCompletion(listed.request_id, S.STATUS_SUCCESS, 0, stale), None)
    assert counters(env)["attr_stale_fills"] >= 1
    assert env.core.caching.attrs.cache.lookup(r"\\local\data", "d\\y", 0.0) is None


def test_a_listing_fills_what_a_later_query_answers() -> None:
    env = Env("exclusive", LISTING, close_delay_s=0)
    folder = env.open(path=r"\\local\data\d")
    env.out.peer.clear()
    listing(env, folder)
    env.answer(entries=[{"name": "y", "size": 7, "directory": False}])
    info = env.core.caching.attrs.cache.lookup(r"\\local\data", "d\\y", env.clock())
    assert info is not None and info["size"] == 7 and info["name"] == "d\\y"

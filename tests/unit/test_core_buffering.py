"""The core's open collapsing, delayed close (with its scavenger) and read cache, driven
without sockets like test_core_logic: what it sends to the mini-redirector, in which order,
and what it answers the client."""

from __future__ import annotations

from typing import Any

import pytest

from rdbss.core.core import RdbssCore
from rdbss.core.types import CONNMGR, CoreSettings
from rdbss.model.buffering import grant_for
from rdbss.wire import (
    Access,
    CreateDisposition,
    CreateInformation,
    CreateOptions,
    CreateParameters,
    IrpMj,
    LowIoOp,
    LowIoParameters,
    NtStatus,
    Register,
    Routine,
    RxCompletion,
    RxContext,
    ShareAccess,
)
from tests.unit.test_core_logic import CLIENT_A, CLIENT_B, Clock, Recorder, connect

S = NtStatus
R = Access.GENERIC_READ
RW = Access.GENERIC_READ | Access.GENERIC_WRITE
PATH = r"\\local\data\f"
ROUTINES = [
    Routine.MRxCreate,
    Routine.MRxLowIOSubmit,
    Routine.MRxQueryFileInfo,
    Routine.MRxSetFileInfo,
    Routine.MRxCleanupFobx,
    Routine.MRxCloseSrvOpen,
    Routine.MRxCompleteBufferingStateChangeRequest,
]
LOWIO = [LowIoOp.READ, LowIoOp.WRITE, LowIoOp.SHAREDLOCK, LowIoOp.EXCLUSIVELOCK]


class Env:
    def __init__(self, caching: str, routines: list[Routine] = ROUTINES, **settings: Any):
        self.out, self.clock = Recorder(), Clock()
        settings.setdefault("peer_timeout_s", 1e9)  # the clock jumps; heartbeats do not
        self.core = RdbssCore(
            self.out, self.clock, CoreSettings(provider_order=["local"], **settings)
        )
        self.core.on_peer(CONNMGR, Register(CONNMGR, "connmgr", [], [], [], role="connmgr"), None)
        reg = Register("local", "local", routines, LOWIO, ["local"], buffering=grant_for(caching))
        self.core.on_peer("local", reg, None)
        self.out.peer.clear()
        self._srv_opens = iter(range(100, 1000))
        self._ids = iter(range(1, 10_000))

    def sent(self) -> list[RxContext]:
        return self.out.requests_to("local")

    def request(self, ident: bytes, ctx: RxContext, payload: Any = None) -> None:
        ctx.request_id = next(self._ids)
        self.core.on_client(ident, ctx, payload)

    def create(
        self,
        ident: bytes = CLIENT_A,
        path: str = PATH,
        access: int = R,
        disposition: int = CreateDisposition.FILE_OPEN,
        options: int = 0,
    ) -> None:
        params = CreateParameters(
            desired_access=access,
            share_access=ShareAccess.ALL,
            disposition=disposition,
            create_options=options,
        )
        self.request(ident, RxContext(0, IrpMj.CREATE, path=path, create=params))
        if self.out.requests_to(CONNMGR):
            connect(self.core, self.out)
            self.out.peer = [p for p in self.out.peer if p[0] != CONNMGR]

    def answer(self, status: int = S.STATUS_SUCCESS, payload: Any = None, **result: Any) -> Any:
        """Answer the last request sent to the mini-redirector; the client's completion."""
        ctx = self.sent()[-1]
        if ctx.routine == Routine.MRxCreate and status == S.STATUS_SUCCESS:
            result.setdefault("srv_open", next(self._srv_opens))
        info = 1 if ctx.routine == Routine.MRxCreate else len(payload or b"")
        self.core.on_peer(
            "local", RxCompletion(ctx.request_id, status, info, result=result), payload
        )
        return self.out.client[-1][1] if self.out.client else None

    def open(self, ident: bytes = CLIENT_A, **kw: Any) -> int:
        self.create(ident, **kw)
        assert self.sent()[-1].routine in (Routine.MRxCreate, Routine.MRxQueryFileInfo)
        done = self.answer(size=5)
        assert done.status == S.STATUS_SUCCESS, done
        fobx: int = done.result["fobx"]
        return fobx

    def close(self, fobx: int, ident: bytes = CLIENT_A) -> None:
        self.request(ident, RxContext(0, IrpMj.CLOSE, fobx=fobx))

    def read(self, fobx: int, offset: int, length: int, ident: bytes = CLIENT_A) -> None:
        lowio = LowIoParameters(offset=offset, length=length)
        self.request(ident, RxContext(0, IrpMj.READ, fobx=fobx, lowio=lowio))

    def routines(self) -> list[str | None]:
        return [c.routine for c in self.sent()]


# ------------------------------------------------------------------------------ collapsing
def test_a_compatible_open_collapses_without_mrxcreate() -> None:
    env = Env("off")
    first = env.open()
    env.out.peer.clear()
    env.create(CLIENT_B)
    ask = env.sent()[-1]
    assert ask.routine == Routine.MRxQueryFileInfo  # fresh information, not a new open
    assert ask.srv_open == 100
    done = env.answer(size=7, nlink=1)
    assert done.status == S.STATUS_SUCCESS and done.information == CreateInformation.FILE_OPENED
    assert done.result["size"] == 7 and done.result["fobx"] != first
    assert env.routines() == [Routine.MRxQueryFileInfo]
    status = env.core.status()["buffering"]
    assert status["collapsed_opens"] == 1
    assert status["files"][0]["handles"] == 2 and status["files"][0]["srv_opens"] == 1
    # closing one handle cleans it up but keeps the server open for the other
    env.out.peer.clear()
    env.close(first)
    assert env.routines() == [Routine.MRxCleanupFobx]


def test_a_registered_mrxcollapseopen_is_called() -> None:
    env = Env("off", routines=[*ROUTINES, Routine.MRxCollapseOpen])
    env.open()
    env.create(CLIENT_B)
    assert env.sent()[-1].routine == Routine.MRxCollapseOpen


@pytest.mark.parametrize(
    "kw",
    [
        {"access": RW},
        {"disposition": CreateDisposition.FILE_OVERWRITE_IF},
        {"options": CreateOptions.FILE_DELETE_ON_CLOSE},
        {"options": CreateOptions.FILE_OPEN_FOR_BACKUP_INTENT},
    ],
)
def test_incompatible_opens_go_to_mrxcreate(kw: dict[str, Any]) -> None:
    env = Env("off")
    env.open()
    env.create(CLIENT_B, **kw)
    assert env.sent()[-1].routine == Routine.MRxCreate


def test_no_collapsing_without_the_grant() -> None:
    env = Env("off")
    env.core.peers["local"].buffering = 0  # a kind that vetoes collapsing
    env.open()
    env.create(CLIENT_B)
    assert env.sent()[-1].routine == Routine.MRxCreate


def test_a_stale_server_open_falls_back_to_mrxcreate() -> None:
    env = Env("off")
    env.open()
    env.create(CLIENT_B)
    env.answer(size=5, nlink=0)  # the file was deleted behind the core's back
    assert env.sent()[-1].routine == Routine.MRxCreate
    done = env.answer(S.STATUS_OBJECT_NAME_NOT_FOUND)
    assert done.status == S.STATUS_OBJECT_NAME_NOT_FOUND
    assert env.core.status()["handles"] == 1


# ------------------------------------------------------------------------------ delayed close
def test_the_last_close_is_delayed_then_scavenged() -> None:
    env = Env("handles", close_delay_s=5.0)
    fobx = env.open()
    env.out.peer.clear()
    env.close(fobx)
    assert env.routines() == [Routine.MRxCleanupFobx]  # no MRxCloseSrvOpen yet
    assert env.out.client[-1][1].status == S.STATUS_SUCCESS
    assert env.core.status()["buffering"]["delayed_now"] == 1
    env.clock.now += 4.0
    env.core.tick()
    assert env.routines() == [Routine.MRxCleanupFobx]
    env.clock.now += 1.5
    env.core.tick()
    assert env.routines() == [Routine.MRxCleanupFobx, Routine.MRxCloseSrvOpen]
    assert env.sent()[-1].srv_open == 100
    assert env.core.status()["buffering"]["delayed_now"] == 0
    assert not env.core.status()["buffering"]["files"]


def test_a_reopen_reuses_a_delayed_close() -> None:
    env = Env("handles", close_delay_s=5.0)
    env.close(env.open())
    env.out.peer.clear()
    fobx = env.open(CLIENT_B)  # collapses onto the kept SrvOpen
    assert env.routines() == [Routine.MRxQueryFileInfo]
    status = env.core.status()["buffering"]
    assert status["delayed_reused"] == 1 and status["delayed_now"] == 0
    env.clock.now += 10
    env.core.tick()
    assert env.routines() == [Routine.MRxQueryFileInfo]  # in use: not scavenged
    env.close(fobx, CLIENT_B)


def test_a_conflicting_open_closes_the_delayed_close_before_its_create() -> None:
    env = Env("handles", close_delay_s=5.0)
    env.close(env.open())
    env.out.peer.clear()
    env.create(CLIENT_B, access=RW, disposition=CreateDisposition.FILE_OVERWRITE_IF)
    assert env.routines() == [Routine.MRxCloseSrvOpen, Routine.MRxCreate]


def test_a_compatible_other_open_leaves_the_delayed_close_alone() -> None:
    env = Env("handles", close_delay_s=5.0)
    env.close(env.open())
    env.out.peer.clear()
    env.create(CLIENT_B, access=Access.FILE_READ_ATTRIBUTES)
    assert env.routines() == [Routine.MRxCreate]
    assert env.core.status()["buffering"]["delayed_now"] == 1


def test_the_per_server_limit_closes_the_oldest() -> None:
    env = Env("handles", close_delay_s=5.0, max_delayed_closes=1)
    env.close(env.open(path=r"\\local\data\a"))
    env.out.peer.clear()
    env.close(env.open(path=r"\\local\data\b"))
    closes = [c for c in env.sent() if c.routine == Routine.MRxCloseSrvOpen]
    assert [c.path for c in closes] == ["a"]
    assert env.core.status()["buffering"]["delayed_now"] == 1


def test_no_delayed_close_for_delete_on_close_or_when_off() -> None:
    env = Env("handles", close_delay_s=5.0)
    fobx = env.open(access=R | Access.DELETE, options=CreateOptions.FILE_DELETE_ON_CLOSE)
    env.out.peer.clear()
    env.close(fobx)
    assert env.routines() == [Routine.MRxCleanupFobx, Routine.MRxCloseSrvOpen]
    env = Env("handles", close_delay_s=0)
    fobx = env.open()
    env.out.peer.clear()
    env.close(fobx)
    assert env.routines() == [Routine.MRxCleanupFobx, Routine.MRxCloseSrvOpen]
    env = Env("off", close_delay_s=5.0)  # no DELAY_CLOSE in the grant
    fobx = env.open()
    env.out.peer.clear()
    env.close(fobx)
    assert env.routines() == [Routine.MRxCleanupFobx, Routine.MRxCloseSrvOpen]


def test_a_peer_going_down_drops_its_delayed_closes_and_stopping_closes_them() -> None:
    env = Env("handles", close_delay_s=5.0)
    env.close(env.open())
    env.core.peer_down("local", S.STATUS_CONNECTION_DISCONNECTED, "killed")
    assert env.core.status()["buffering"]["delayed_now"] == 0
    env = Env("handles", close_delay_s=50.0)
    env.close(env.open())
    env.out.peer.clear()
    env.core.stopping = True
    env.core.tick()
    assert env.routines() == [Routine.MRxCloseSrvOpen]


# ------------------------------------------------------------------------------ read cache
def test_reads_are_served_from_the_cache_until_a_writer_arrives() -> None:
    env = Env("exclusive", close_delay_s=0)
    fobx = env.open()
    env.out.peer.clear()
    env.read(fobx, 10, 5)
    sent = env.sent()[-1]
    assert sent.lowio is not None and (sent.lowio.offset, sent.lowio.length) == (0, 65536)
    done = env.answer(payload=b"0123456789abcdefghij")
    assert done.information == 5 and env.out.client[-1][2] == b"abcde"
    env.read(fobx, 0, 100)  # answered from the cache: nothing sent
    assert len(env.sent()) == 1
    assert env.out.client[-1][2] == b"0123456789abcdefghij"
    env.read(fobx, 20, 5)
    assert env.out.client[-1][1].status == S.STATUS_END_OF_FILE
    # a writer from another client: the Fcb's state drops READCACHING before its create
    env.create(CLIENT_B, access=RW)
    assert env.routines()[-2:] == [
        Routine.MRxCompleteBufferingStateChangeRequest,
        Routine.MRxCreate,
    ]
    env.read(fobx, 0, 5)
    assert env.sent()[-1].routine == Routine.MRxLowIOSubmit  # no longer cached


def test_a_read_in_flight_across_a_write_fills_nothing() -> None:
    env = Env("exclusive", close_delay_s=0)
    fobx = env.open(access=RW)
    env.out.peer.clear()
    env.read(fobx, 0, 4)
    read = env.sent()[-1]
    lowio = LowIoParameters(offset=0, length=2)
    env.request(CLIENT_A, RxContext(0, IrpMj.WRITE, fobx=fobx, lowio=lowio), b"zz")
    write = env.sent()[-1]
    env.core.on_peer("local", RxCompletion(read.request_id, S.STATUS_SUCCESS, 4), b"old!")
    env.core.on_peer("local", RxCompletion(write.request_id, S.STATUS_SUCCESS, 2), None)
    env.read(fobx, 0, 4)
    assert env.sent()[-1].routine == Routine.MRxLowIOSubmit  # went to the mini-redirector
    assert env.core.caching.cache.bytes == 0


# ------------------------------------------------------------------------------ write-behind
def write(env: Env, fobx: int, offset: int, data: bytes, ident: bytes = CLIENT_A) -> Any:
    lowio = LowIoParameters(offset=offset, length=len(data))
    env.request(ident, RxContext(0, IrpMj.WRITE, fobx=fobx, lowio=lowio), data)
    return env.out.client[-1][1]


def test_writes_are_deferred_and_sent_in_order_before_the_next_request() -> None:
    env = Env("exclusive", close_delay_s=0, write_behind_s=1.0)
    fobx = env.open(access=RW)
    env.out.peer.clear()
    assert write(env, fobx, 0, b"abc").information == 3
    assert write(env, fobx, 3, b"def").information == 3  # merged with the first
    assert write(env, fobx, 100, b"x").information == 1
    assert env.sent() == []
    env.read(fobx, 0, 6)
    writes = [c for c in env.sent() if c.lowio and c.lowio.operation == LowIoOp.WRITE]
    assert [(c.lowio.offset, c.lowio.length) for c in writes if c.lowio] == [(0, 6), (100, 1)]
    assert env.sent()[-1].lowio is not None and env.sent()[-1].lowio.operation == LowIoOp.READ
    assert env.out.peer[0][2] == b"abcdef"


def test_the_timer_and_a_conflicting_open_send_deferred_writes() -> None:
    env = Env("exclusive", close_delay_s=0, write_behind_s=1.0)
    fobx = env.open(access=RW)
    env.out.peer.clear()
    write(env, fobx, 0, b"abc")
    env.clock.now += 0.5
    env.core.tick()
    assert env.sent() == []
    env.clock.now += 0.6
    env.core.tick()
    assert len(env.sent()) == 1
    write(env, fobx, 0, b"zz")
    env.create(CLIENT_B, access=R)
    assert [c.routine for c in env.sent()[-3:]] == [
        Routine.MRxLowIOSubmit,  # the deferred write first
        Routine.MRxCompleteBufferingStateChangeRequest,  # the state lost its write bits
        Routine.MRxCreate,
    ]


def test_a_close_waits_for_deferred_writes_and_reports_their_failure() -> None:
    env = Env("exclusive", close_delay_s=0, write_behind_s=1.0)
    fobx = env.open(access=RW)
    env.out.peer.clear()
    write(env, fobx, 0, b"abc")
    answered = len(env.out.client)
    env.close(fobx)
    assert len(env.out.client) == answered  # not before the write is done
    deferred = env.sent()[-1]
    env.core.on_peer(
        "local", RxCompletion(deferred.request_id, S.STATUS_DISK_FULL, message="full"), None
    )
    assert env.routines()[-2:] == [Routine.MRxCleanupFobx, Routine.MRxCloseSrvOpen]
    env.answer()
    done = env.out.client[-1][1]
    assert done.status == S.STATUS_DISK_FULL and "deferred write" in done.message


def test_deferred_writes_lost_with_their_minirdr_are_reported() -> None:
    env = Env("exclusive", close_delay_s=0, write_behind_s=1.0)
    fobx = env.open(access=RW)
    write(env, fobx, 0, b"abc")
    env.core.peer_down("local", S.STATUS_CONNECTION_DISCONNECTED, "killed")
    env.close(fobx)
    done = env.out.client[-1][1]
    assert done.status == S.STATUS_CONNECTION_DISCONNECTED
    assert env.core.status()["buffering"]["dirty_bytes"] == 0


def test_no_write_behind_for_appends_or_several_handles() -> None:
    env = Env("exclusive", close_delay_s=0, write_behind_s=1.0)
    fobx = env.open(access=RW)
    env.out.peer.clear()
    write(env, fobx, -1, b"append")
    assert len(env.sent()) == 1
    env.open(CLIENT_B, access=R)
    env.out.peer.clear()
    write(env, fobx, 0, b"x")
    assert len(env.sent()) == 1  # a reader is open too: write-through


def test_no_collapsing_when_nothing_could_answer_the_create() -> None:
    env = Env("off", routines=[r for r in ROUTINES if r != Routine.MRxQueryFileInfo])
    env.open()
    env.create(CLIENT_B)
    assert env.sent()[-1].routine == Routine.MRxCreate


def test_a_second_close_while_the_first_waits_for_deferred_writes_is_answered() -> None:
    env = Env("exclusive", close_delay_s=0, write_behind_s=1.0)
    fobx = env.open(access=RW)
    write(env, fobx, 0, b"abc")
    env.close(fobx)
    env.close(fobx)
    deferred = env.sent()[-1]
    answered = len(env.out.client)
    env.core.on_peer("local", RxCompletion(deferred.request_id, S.STATUS_SUCCESS, 3), None)
    assert [d.status for _, d, _ in env.out.client[answered:]] == [S.STATUS_INVALID_HANDLE]
    env.answer()  # MRxCloseSrvOpen
    assert env.out.client[-1][1].status == S.STATUS_SUCCESS


def test_a_collapsed_srv_open_lost_with_its_minirdr_is_reopened_once() -> None:
    env = Env("off")
    first = env.open()
    second = env.open(CLIENT_B)  # collapsed: one SrvOpen, two handles
    env.core.peer_down("local", S.STATUS_CONNECTION_DISCONNECTED, "killed")
    reg = Register("local", "local", ROUTINES, LOWIO, ["local"], buffering=grant_for("off"))
    env.core.on_peer("local", reg, None)
    env.out.peer.clear()
    env.read(first, 0, 2)
    connect(env.core, env.out)
    env.out.peer = [p for p in env.out.peer if p[0] != CONNMGR]
    reopen = env.sent()[-1]
    assert reopen.routine == Routine.MRxCreate
    env.core.on_peer(
        "local", RxCompletion(reopen.request_id, S.STATUS_SUCCESS, 1, result={"srv_open": 7}), None
    )
    assert env.sent()[-1].srv_open == 7  # the read, on the new server open
    env.read(second, 0, 2, CLIENT_B)  # the other handle shares it: no second re-open
    assert env.sent()[-1].routine == Routine.MRxLowIOSubmit and env.sent()[-1].srv_open == 7
    assert [c.routine for c in env.sent()].count(Routine.MRxCreate) == 1

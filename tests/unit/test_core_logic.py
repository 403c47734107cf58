"""The core's logic, driven without sockets: an outbox records what it sends and a settable
clock stands in for time. Checks STATUS_PENDING semantics, parking on a NetRoot in transition,
deadlines, NOT_IMPLEMENTED for unregistered routines, peer death and handle ownership."""

from __future__ import annotations

from typing import Any

import pytest

from rdbss import requests as rq
from rdbss import shm
from rdbss.actors.bus import client_alive
from rdbss.core.core import RdbssCore
from rdbss.core.types import CONNMGR, CoreSettings
from rdbss.wire import (
    Compound,
    CompoundCompletion,
    CreateParameters,
    Heartbeat,
    IrpMj,
    LowIoOp,
    LowIoParameters,
    NtStatus,
    Register,
    Routine,
    RxCancel,
    RxCompletion,
    RxContext,
)

S = NtStatus
CLIENT_A = b"client-a"
CLIENT_B = b"client-b"


class Recorder:
    def __init__(self) -> None:
        self.client: list[tuple[bytes, RxCompletion, Any]] = []
        self.peer: list[tuple[str, Any, Any]] = []
        self.unreachable: set[str] = set()

    def to_client(self, ident: bytes, done: RxCompletion, payload: Any = None) -> None:
        self.client.append((ident, done, payload))

    def to_peer(self, name: str, msg: Any, payload: Any = None) -> bool:
        if name in self.unreachable:
            return False
        self.peer.append((name, msg, payload))
        return True

    def requests_to(self, name: str) -> list[RxContext]:
        return [m for n, m, _ in self.peer if n == name and isinstance(m, RxContext)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def env() -> tuple[RdbssCore, Recorder, Clock]:
    out, clock = Recorder(), Clock()
    # a local client whose process is gone is swept (the server injects the same check)
    settings = CoreSettings(provider_order=["local"])
    core = RdbssCore(out, clock, settings, is_client_alive=client_alive)
    core.on_peer(CONNMGR, Register(CONNMGR, "connmgr", [], [], [], role="connmgr"), None)
    routines = [
        Routine.MRxCreate,
        Routine.MRxLowIOSubmit,
        Routine.MRxCloseSrvOpen,
        Routine.MRxCreateSrvCall,
        Routine.MRxCreateVNetRoot,
    ]
    core.on_peer("local", Register("local", "local", routines, [LowIoOp.READ], ["local"]), None)
    out.peer.clear()
    return core, out, clock


def create(
    core: RdbssCore, ident: bytes = CLIENT_A, path: str = r"\\local\data\f", request_id: int = 1
) -> None:
    core.on_client(
        ident, RxContext(request_id, IrpMj.CREATE, path=path, create=CreateParameters()), None
    )


def connect(core: RdbssCore, out: Recorder) -> None:
    """Answer the connection manager's construction with a winner."""
    construct = out.requests_to(CONNMGR)[-1]
    assert construct.routine == Routine.RxConstructNetRoot
    assert construct.args == {"candidates": ["local"]}
    core.on_peer(
        CONNMGR,
        RxCompletion(construct.request_id, S.STATUS_SUCCESS, result={"minirdr": "local"}),
        None,
    )


def open_handle(core: RdbssCore, out: Recorder, ident: bytes = CLIENT_A) -> int:
    create(core, ident)
    if out.requests_to(CONNMGR):
        connect(core, out)
    mrx = out.requests_to("local")[-1]
    core.on_peer(
        "local",
        RxCompletion(mrx.request_id, S.STATUS_SUCCESS, 2, result={"srv_open": 9, "size": 0}),
        None,
    )
    done = out.client[-1][1]
    assert done.status == S.STATUS_SUCCESS
    fobx: int = done.result["fobx"]
    out.client.clear()
    out.peer.clear()
    return fobx


def test_create_waits_on_the_net_root_then_goes_to_the_winner(env: Any) -> None:
    core, out, _ = env
    create(core, request_id=1)
    create(core, request_id=2)  # parks on the same NetRoot: one construction only
    assert len(out.requests_to(CONNMGR)) == 1
    assert out.client == [] and out.requests_to("local") == []
    connect(core, out)
    sent = out.requests_to("local")
    assert [c.routine for c in sent] == [Routine.MRxCreate, Routine.MRxCreate]
    assert sent[0].path == "f" and sent[0].net_root == "data" and sent[0].srv_call == "local"
    core.on_peer(
        "local", RxCompletion(sent[0].request_id, S.STATUS_SUCCESS, 2, result={"srv_open": 5}), None
    )
    ident, done, _ = out.client[0]
    assert ident == CLIENT_A and done.request_id == 1 and done.information == 2
    assert isinstance(done.result["fobx"], int)
    assert core.status()["handles"] == 1


def test_failed_connection_fails_waiters_and_is_cached(env: Any) -> None:
    core, out, clock = env
    create(core, request_id=1)
    construct = out.requests_to(CONNMGR)[0]
    core.on_peer(
        CONNMGR,
        RxCompletion(construct.request_id, S.STATUS_LOGON_FAILURE, message="bad password"),
        None,
    )
    assert out.client[-1][1].status == S.STATUS_LOGON_FAILURE
    create(core, request_id=2)  # within the negative cache: no new construction
    assert out.client[-1][1].status == S.STATUS_LOGON_FAILURE
    assert len(out.requests_to(CONNMGR)) == 1
    clock.now += 5
    create(core, request_id=3)
    assert len(out.requests_to(CONNMGR)) == 2


def test_unknown_server_is_bad_network_path_without_asking(env: Any) -> None:
    core, out, _ = env
    create(core, path=r"\\nobody\share\x")
    assert out.client[-1][1].status == S.STATUS_BAD_NETWORK_PATH
    assert out.requests_to(CONNMGR) == []


def test_deadline_gives_io_timeout_and_late_answers_are_dropped(env: Any) -> None:
    core, out, clock = env
    fobx = open_handle(core, out)
    core.on_client(
        CLIENT_A,
        RxContext(7, IrpMj.READ, fobx=fobx, timeout_ms=500, lowio=LowIoParameters(length=10)),
        None,
    )
    sent = out.requests_to("local")[-1]
    assert sent.routine == Routine.MRxLowIOSubmit and sent.srv_open == 9
    clock.now += 0.4
    core.tick()
    assert out.client == []
    clock.now += 0.2
    core.tick()
    assert out.client[-1][1].status == S.STATUS_IO_TIMEOUT
    assert out.client[-1][1].request_id == 7
    core.on_peer("local", RxCompletion(sent.request_id, S.STATUS_SUCCESS), None)
    assert len(out.client) == 1


def test_unregistered_routine_is_never_sent(env: Any) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    core.on_client(CLIENT_A, RxContext(3, IrpMj.WRITE, fobx=fobx, lowio=LowIoParameters()), b"data")
    core.on_client(CLIENT_A, RxContext(4, IrpMj.QUERY_INFORMATION, fobx=fobx), None)
    assert [d.status for _, d, _ in out.client] == [S.STATUS_NOT_IMPLEMENTED] * 2
    assert out.requests_to("local") == []


def test_handles_belong_to_their_client(env: Any) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    core.on_client(CLIENT_B, RxContext(1, IrpMj.READ, fobx=fobx), None)
    assert out.client[-1][1].status == S.STATUS_INVALID_HANDLE
    core.on_client(CLIENT_A, RxContext(2, IrpMj.READ, fobx=fobx + 1000), None)
    assert out.client[-1][1].status == S.STATUS_INVALID_HANDLE


def test_peer_down_completes_in_flight_requests_and_orphans_handles(env: Any) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    core.on_client(CLIENT_A, RxContext(5, IrpMj.READ, fobx=fobx, lowio=LowIoParameters()), None)
    core.peer_down("local", S.STATUS_CONNECTION_DISCONNECTED, "killed")
    assert out.client[-1][1].status == S.STATUS_CONNECTION_DISCONNECTED
    assert out.client[-1][1].request_id == 5
    finalize = out.requests_to(CONNMGR)[-1]
    assert finalize.routine == Routine.RxFinalizeConnections
    # while the mini-redirector is down the handle answers the network status...
    core.on_client(CLIENT_A, RxContext(6, IrpMj.READ, fobx=fobx, lowio=LowIoParameters()), None)
    assert out.client[-1][1].status == S.STATUS_CONNECTION_DISCONNECTED
    assert "is down" in out.client[-1][1].message
    core.on_client(CLIENT_A, RxContext(7, IrpMj.CLOSE, fobx=fobx), None)
    assert out.client[-1][1].status == S.STATUS_SUCCESS  # close never fails
    assert core.status()["handles"] == 0
    (conn,) = core.status()["connections"]  # what the failed re-open left: Bad, network status
    assert conn["condition"] == "BAD" and conn["status"] == S.STATUS_CONNECTION_DISCONNECTED


def test_silent_peer_is_declared_down(env: Any) -> None:
    core, _out, clock = env
    clock.now += 2
    core.on_peer(CONNMGR, Heartbeat(CONNMGR, 1), None)
    clock.now += 2
    core.tick()
    names = {p["name"] for p in core.status()["peers"]}
    assert names == {CONNMGR}


def test_unreachable_peer_fails_fast(env: Any) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    out.unreachable.add("local")
    core.on_client(CLIENT_A, RxContext(5, IrpMj.READ, fobx=fobx, lowio=LowIoParameters()), None)
    assert out.client[-1][1].status == S.STATUS_CONNECTION_DISCONNECTED
    assert out.client[-1][1].request_id == 5  # the client's own id, or it would never match
    out.unreachable.clear()
    core.on_peer("local", Register("local", "local", [Routine.MRxCreate], [], ["local"]), None)
    construct = out.requests_to(CONNMGR)
    create(core, request_id=6)
    connect(core, out)
    out.unreachable.add("local")  # dies between the construction and the create
    construct = out.requests_to(CONNMGR)[-1]
    assert construct.routine == Routine.RxConstructNetRoot
    create(core, request_id=7)
    answers = {d.request_id: d.status for _, d, _ in out.client}
    assert answers.get(7) == S.STATUS_CONNECTION_DISCONNECTED


def test_bad_names_are_refused_before_any_peer_sees_them(env: Any) -> None:
    core, out, _ = env
    create(core, path=r"\\local\data\..\..\etc\passwd")
    assert out.client[-1][1].status == S.STATUS_OBJECT_PATH_SYNTAX_BAD
    assert out.peer == []


def test_stopping_refuses_new_work_but_lets_closes_through(env: Any) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    core.stopping = True
    create(core, request_id=9)
    assert out.client[-1][1].status == S.STATUS_REDIRECTOR_NOT_STARTED
    core.on_client(CLIENT_A, RxContext(10, IrpMj.CLOSE, fobx=fobx), None)
    assert out.requests_to("local")[-1].routine == Routine.MRxCloseSrvOpen


def test_a_restarting_minirdr_is_a_network_fault_not_a_bad_name(env: Any) -> None:
    core, out, _clock = env
    core.peer_down("local", S.STATUS_CONNECTION_DISCONNECTED, "killed")
    create(core, request_id=1)
    assert out.client[-1][1].status == S.STATUS_CONNECTION_DISCONNECTED
    routines = [Routine.MRxCreate]
    core.on_peer("local", Register("local", "local", routines, [], ["local"]), None)
    create(core, request_id=2)  # not negatively cached: asks the connection manager at once
    assert out.requests_to(CONNMGR)[-1].routine == Routine.RxConstructNetRoot


def test_requests_parked_on_a_dropped_net_root_are_resolved_again(env: Any) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)  # \\local\data is Good via "local"
    assert fobx
    core.peer_down("local", S.STATUS_CONNECTION_DISCONNECTED, "killed")
    core.on_peer("local", Register("local", "local", [Routine.MRxCreate], [], ["local"]), None)
    create(core, request_id=21)  # parks on a new construction
    construct = out.requests_to(CONNMGR)[-1]
    # the mini-redirector dies again while the construction is under way
    core.peer_down("local", S.STATUS_CONNECTION_DISCONNECTED, "killed again")
    core.on_peer(
        CONNMGR,
        RxCompletion(construct.request_id, S.STATUS_SUCCESS, result={"minirdr": "local"}),
        None,
    )
    answered = [d for _, d, _ in out.client if d.request_id == 21]
    assert len(answered) == 1  # never lost: answered with the network status
    assert answered[0].status == S.STATUS_CONNECTION_DISCONNECTED


def test_an_orphaned_handle_is_reopened_by_path_when_its_minirdr_is_back(env: Any) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    core.peer_down("local", S.STATUS_CONNECTION_DISCONNECTED, "killed")
    routines = [Routine.MRxCreate, Routine.MRxLowIOSubmit, Routine.MRxCloseSrvOpen]
    core.on_peer("local", Register("local", "local", routines, [LowIoOp.READ], ["local"]), None)
    out.peer.clear()
    core.on_client(
        CLIENT_A,
        RxContext(8, IrpMj.READ, fobx=fobx, lowio=LowIoParameters(offset=4, length=2)),
        None,
    )
    connect(core, out)
    reopen = out.requests_to("local")[-1]
    assert reopen.routine == Routine.MRxCreate and reopen.path == "f"
    assert reopen.create is not None and reopen.create.disposition == 1  # FILE_OPEN, never create
    core.on_peer(
        "local", RxCompletion(reopen.request_id, S.STATUS_SUCCESS, 1, result={"srv_open": 77}), None
    )
    read = out.requests_to("local")[-1]
    assert read.routine == Routine.MRxLowIOSubmit and read.srv_open == 77
    assert read.lowio is not None and read.lowio.offset == 4
    core.on_peer("local", RxCompletion(read.request_id, S.STATUS_SUCCESS, 2), b"ok")
    assert out.client[-1][1].request_id == 8 and out.client[-1][1].status == S.STATUS_SUCCESS


def test_a_handle_whose_file_is_gone_stays_lost_with_the_reason(env: Any) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    core.peer_down("local", S.STATUS_CONNECTION_DISCONNECTED, "killed")
    core.on_peer("local", Register("local", "local", [Routine.MRxCreate], [], ["local"]), None)
    core.on_client(CLIENT_A, RxContext(9, IrpMj.READ, fobx=fobx, lowio=LowIoParameters()), None)
    connect(core, out)
    reopen = out.requests_to("local")[-1]
    core.on_peer(
        "local",
        RxCompletion(reopen.request_id, S.STATUS_OBJECT_NAME_NOT_FOUND, message="gone"),
        None,
    )
    assert out.client[-1][1].status == S.STATUS_OBJECT_NAME_NOT_FOUND
    sent = len(out.requests_to("local"))
    core.on_client(CLIENT_A, RxContext(10, IrpMj.READ, fobx=fobx, lowio=LowIoParameters()), None)
    assert out.client[-1][1].status == S.STATUS_OBJECT_NAME_NOT_FOUND
    assert len(out.requests_to("local")) == sent  # no second attempt


def _read(core: RdbssCore, request_id: int, fobx: int) -> None:
    core.on_client(
        CLIENT_A, RxContext(request_id, IrpMj.READ, fobx=fobx, lowio=LowIoParameters()), None
    )


def _answer_reopen(core: RdbssCore, out: Recorder, srv_open: int) -> None:
    """Answer the connection manager's construction and the handle's re-open (FILE_OPEN)."""
    connect(core, out)
    reopen = out.requests_to("local")[-1]
    assert reopen.routine == Routine.MRxCreate
    assert reopen.create is not None and reopen.create.disposition == 1  # FILE_OPEN
    core.on_peer(
        "local",
        RxCompletion(reopen.request_id, S.STATUS_SUCCESS, result={"srv_open": srv_open}),
        None,
    )


def test_a_lost_connection_is_torn_down_and_built_again_every_time(env: Any) -> None:
    """Three losses in a row: each tears the connection down, the read that found out is sent
    again on the connection built again (a READ is idempotent), on the handle re-opened there;
    the handle's Fcb follows it to each new NetRoot, so the next loss finds it again."""
    core, out, clock = env
    fobx = open_handle(core, out)
    for loss in range(3):
        _read(core, 11 + loss, fobx)
        read = out.requests_to("local")[-1]
        out.peer.clear()
        core.on_peer("local", RxCompletion(read.request_id, S.STATUS_USER_SESSION_DELETED), None)
        note = out.requests_to(CONNMGR)[0]
        assert note.routine == Routine.RxFinalizeConnections
        assert note.args == {"minirdr": "local", "server": "local"}
        assert out.client == []  # not answered: sent again once the connection is back
        _answer_reopen(core, out, srv_open=20 + loss)
        again = out.requests_to("local")[-1]
        assert again.routine == Routine.MRxLowIOSubmit and again.srv_open == 20 + loss
        core.on_peer("local", RxCompletion(again.request_id, S.STATUS_SUCCESS), b"data")
        (answer,) = [done for _, done, _ in out.client]
        assert (answer.request_id, answer.status) == (11 + loss, S.STATUS_SUCCESS)
        out.client.clear()
        (v_net_root,) = core.prefix.v_net_roots()
        assert core.fobxs[fobx].fcb.net_root is v_net_root.net_root
    # the connection with a re-opened handle is busy, not idle
    clock.now += 10 * core.settings.idle_timeout_s
    core.scavenge(clock.now)
    assert len(core.status()["connections"]) == 1


def test_a_write_that_finds_the_connection_lost_is_not_sent_again(env: Any) -> None:
    core, out, _ = env
    core.peers["local"].lowio_ops = frozenset({LowIoOp.READ, LowIoOp.WRITE})
    fobx = open_handle(core, out)
    write = RxContext(11, IrpMj.WRITE, fobx=fobx, lowio=LowIoParameters(LowIoOp.WRITE, 0, 3))
    core.on_client(CLIENT_A, write, b"abc")
    sent = out.requests_to("local")[-1]
    core.on_peer("local", RxCompletion(sent.request_id, S.STATUS_CONNECTION_DISCONNECTED), None)
    (answer,) = [done for _, done, _ in out.client]
    assert answer.status == S.STATUS_CONNECTION_DISCONNECTED
    assert out.requests_to(CONNMGR)[-1].routine == Routine.RxFinalizeConnections
    # the next write re-opens the handle first, then goes out once
    out.peer.clear()
    write = RxContext(12, IrpMj.WRITE, fobx=fobx, lowio=LowIoParameters(LowIoOp.WRITE, 0, 3))
    core.on_client(CLIENT_A, write, b"abc")
    _answer_reopen(core, out, srv_open=21)
    assert out.requests_to("local")[-1].lowio.operation == LowIoOp.WRITE


def test_retries_are_bounded_and_keep_to_the_deadline(env: Any) -> None:
    core, out, clock = env
    fobx = open_handle(core, out)
    _read(core, 11, fobx)
    for loss in range(3):
        read = out.requests_to("local")[-1]
        core.on_peer("local", RxCompletion(read.request_id, S.STATUS_CONNECTION_RESET), None)
        if loss < 2:
            assert out.client == []
            _answer_reopen(core, out, srv_open=20 + loss)
    (answer,) = [done for _, done, _ in out.client]
    assert answer.status == S.STATUS_CONNECTION_RESET  # sent 3 times in all, then given up
    out.client.clear()
    # no time left before the deadline: answered at once
    _read(core, 12, fobx)
    _answer_reopen(core, out, srv_open=30)
    clock.now += 29.9  # the request's timeout is 30 s
    read = out.requests_to("local")[-1]
    core.on_peer("local", RxCompletion(read.request_id, S.STATUS_CONNECTION_RESET), None)
    (answer,) = [done for _, done, _ in out.client]
    assert answer.status == S.STATUS_CONNECTION_RESET


def test_an_open_is_sent_again_only_when_it_creates_nothing(env: Any) -> None:
    core, out, _ = env
    open_handle(core, out)  # the connection is up
    create(core, request_id=21)  # FILE_OPEN
    sent = out.requests_to("local")[-1]
    out.peer.clear()
    core.on_peer("local", RxCompletion(sent.request_id, S.STATUS_CONNECTION_DISCONNECTED), None)
    assert out.client == []
    connect(core, out)
    again = out.requests_to("local")[-1]
    assert again.routine == Routine.MRxCreate and again.path == "f"
    core.on_peer(
        "local", RxCompletion(again.request_id, S.STATUS_SUCCESS, result={"srv_open": 3}), None
    )
    assert out.client[-1][1].status == S.STATUS_SUCCESS
    out.client.clear()
    # FILE_CREATE may have created the file before the connection dropped: not sent again
    core.on_client(
        CLIENT_A,
        RxContext(22, IrpMj.CREATE, path=r"\\local\data\g", create=CreateParameters(disposition=2)),
        None,
    )
    sent = out.requests_to("local")[-1]
    core.on_peer("local", RxCompletion(sent.request_id, S.STATUS_CONNECTION_DISCONNECTED), None)
    assert out.client[-1][1].status == S.STATUS_CONNECTION_DISCONNECTED


def test_a_handle_whose_file_is_gone_after_a_loss_fails_with_its_status(env: Any) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    _read(core, 11, fobx)
    read = out.requests_to("local")[-1]
    out.peer.clear()
    core.on_peer("local", RxCompletion(read.request_id, S.STATUS_CONNECTION_DISCONNECTED), None)
    connect(core, out)
    reopen = out.requests_to("local")[-1]
    core.on_peer("local", RxCompletion(reopen.request_id, S.STATUS_OBJECT_NAME_NOT_FOUND), None)
    assert out.client[-1][1].status == S.STATUS_OBJECT_NAME_NOT_FOUND
    assert "re-open" in out.client[-1][1].message
    out.peer.clear()
    _read(core, 12, fobx)  # answered at once, nothing sent
    assert out.client[-1][1].status == S.STATUS_OBJECT_NAME_NOT_FOUND
    assert out.requests_to("local") == []


def test_a_create_answered_after_the_loss_is_re_opened_too(env: Any) -> None:
    """A create that succeeds on a connection another request already found lost: its handle
    is on the dead connection; the loss it reports next orphans it, and it is re-opened."""
    core, out, _ = env
    first = open_handle(core, out)
    create(core, request_id=21, path=r"\\local\data\late")
    late = out.requests_to("local")[-1]
    _read(core, 22, first)
    read = out.requests_to("local")[-1]
    core.on_peer("local", RxCompletion(read.request_id, S.STATUS_CONNECTION_DISCONNECTED), None)
    core.on_peer(
        "local", RxCompletion(late.request_id, S.STATUS_SUCCESS, result={"srv_open": 5}), None
    )
    fobx = next(d for _, d, _ in out.client if d.request_id == 21).result["fobx"]
    out.peer.clear()
    _read(core, 23, fobx)
    read = out.requests_to("local")[-1]
    core.on_peer("local", RxCompletion(read.request_id, S.STATUS_CONNECTION_DISCONNECTED), None)
    assert core.fobxs[fobx].orphaned_status == S.STATUS_CONNECTION_DISCONNECTED


def test_failed_constructions_back_off_exponentially(env: Any) -> None:
    core, out, clock = env
    retry_after = []
    for i in range(5):
        create(core, request_id=100 + i)
        construct = out.requests_to(CONNMGR)[-1]
        core.on_peer(CONNMGR, RxCompletion(construct.request_id, S.STATUS_IO_TIMEOUT), None)
        (conn,) = [v for v in core.prefix.v_net_roots()]
        retry_after.append(round(conn.retry_at - clock.now, 3))
        clock.now = conn.retry_at  # retry exactly when allowed
    assert retry_after == [2.0, 4.0, 8.0, 16.0, 30.0]
    create(core, request_id=200)
    construct = out.requests_to(CONNMGR)[-1]
    core.on_peer(
        CONNMGR,
        RxCompletion(construct.request_id, S.STATUS_SUCCESS, result={"minirdr": "local"}),
        None,
    )
    assert core.connections.failures == {}  # a success resets the back-off


def test_idle_connections_are_scavenged_but_not_busy_ones(env: Any) -> None:
    core, out, clock = env
    core.settings.idle_timeout_s = 60.0
    fobx = open_handle(core, out)
    clock.now += 120
    core.scavenge(clock.now)
    assert len(core.status()["connections"]) == 1  # a file is open: kept
    core.on_client(CLIENT_A, RxContext(30, IrpMj.CLOSE, fobx=fobx), None)
    close = out.requests_to("local")[-1]
    core.on_peer("local", RxCompletion(close.request_id, S.STATUS_SUCCESS), None)
    clock.now += 30
    core.scavenge(clock.now)
    assert len(core.status()["connections"]) == 1  # idle only 30 s
    out.peer.clear()
    clock.now += 31
    core.scavenge(clock.now)
    assert core.status()["connections"] == []
    note = out.requests_to(CONNMGR)[-1]
    assert note.routine == Routine.RxFinalizeConnections and note.args["idle"] is True
    create(core, request_id=31)  # the next open builds the connection again
    assert out.requests_to(CONNMGR)[-1].routine == Routine.RxConstructNetRoot


def test_per_client_limits_answer_clear_statuses(env: Any) -> None:
    core, out, _ = env
    core.settings.max_handles_per_client = 1
    open_handle(core, out)
    create(core, request_id=40)
    assert out.client[-1][1].status == S.STATUS_TOO_MANY_OPENED_FILES
    assert "limit 1" in out.client[-1][1].message
    fobx_b = open_handle(core, out, ident=CLIENT_B)  # another client has its own budget
    core.settings.max_inflight_per_client = 2
    for i in range(3):  # reads go out and stay pending: the third is over the limit
        core.on_client(
            CLIENT_B, RxContext(50 + i, IrpMj.READ, fobx=fobx_b, lowio=LowIoParameters()), None
        )
    answered = [(d.request_id, d.status) for i, d, _ in out.client if i == CLIENT_B]
    assert answered == [(52, S.STATUS_INSUFFICIENT_RESOURCES)]
    assert len(out.requests_to("local")) == 2


def test_handles_of_a_vanished_client_process_are_closed(env: Any) -> None:
    from rdbss.actors.bus import client_identity

    core, out, _ = env
    gone = client_identity(2**31 - 1, 12345, b"abcd")  # no such process
    fobx = open_handle(core, out, ident=gone)
    alive = open_handle(core, out)  # CLIENT_A: not a local identity, never swept
    assert core.sweep_dead_clients() == 1
    assert fobx not in core.fobxs and alive in core.fobxs
    close = out.requests_to("local")[-1]
    assert close.routine == Routine.MRxCloseSrvOpen and close.fobx == fobx


def test_in_flight_counts_return_to_zero(env: Any) -> None:
    core, out, clock = env
    fobx = open_handle(core, out)
    for i in range(5):
        core.on_client(
            CLIENT_A,
            RxContext(60 + i, IrpMj.READ, fobx=fobx, timeout_ms=100, lowio=LowIoParameters()),
            None,
        )
    assert core.answers.inflight_of[CLIENT_A] == 5
    clock.now += 1
    core.tick()  # all time out and are answered
    assert CLIENT_A not in core.answers.inflight_of


def open_for_write(core: RdbssCore, out: Recorder) -> int:
    core.on_client(
        CLIENT_A,
        RxContext(
            70,
            IrpMj.CREATE,
            path=r"\\local\data\w",
            create=CreateParameters(desired_access=0x40000000),
        ),
        None,
    )
    if out.requests_to(CONNMGR):
        connect(core, out)
    mrx = out.requests_to("local")[-1]
    core.on_peer(
        "local", RxCompletion(mrx.request_id, S.STATUS_SUCCESS, 2, result={"srv_open": 3}), None
    )
    fobx: int = out.client[-1][1].result["fobx"]
    out.client.clear()
    out.peer.clear()
    return fobx


def test_closing_a_write_handle_after_its_process_died_reports_possible_loss(env: Any) -> None:
    core, out, _ = env
    fobx = open_for_write(core, out)
    core.peer_down("local", S.STATUS_CONNECTION_DISCONNECTED, "killed")
    core.on_client(CLIENT_A, RxContext(71, IrpMj.CLOSE, fobx=fobx), None)
    done = out.client[-1][1]
    assert (
        done.status == S.STATUS_CONNECTION_DISCONNECTED and "may not have reached" in done.message
    )
    assert fobx not in core.fobxs  # released all the same


def test_closing_after_a_lost_connection_still_asks_the_same_process(env: Any) -> None:
    core, out, _ = env
    fobx = open_for_write(core, out)
    core.on_client(CLIENT_A, RxContext(72, IrpMj.FLUSH_BUFFERS, fobx=fobx), None)
    assert out.client[-1][1].status == S.STATUS_NOT_IMPLEMENTED  # not registered in this env
    core.on_client(CLIENT_A, RxContext(73, IrpMj.READ, fobx=fobx, lowio=LowIoParameters()), None)
    read = out.requests_to("local")[-1]
    core.on_peer("local", RxCompletion(read.request_id, S.STATUS_CONNECTION_RESET), None)
    core.on_client(CLIENT_A, RxContext(74, IrpMj.CLOSE, fobx=fobx), None)
    close = out.requests_to("local")[-1]
    assert close.routine == Routine.MRxCloseSrvOpen and close.srv_open == 3
    core.on_peer(
        "local",
        RxCompletion(
            close.request_id,
            S.STATUS_CONNECTION_DISCONNECTED,
            message="staged data could not be uploaded",
        ),
        None,
    )
    assert out.client[-1][1].status == S.STATUS_CONNECTION_DISCONNECTED
    assert fobx not in core.fobxs


def test_endless_failures_never_overflow_the_back_off(env: Any) -> None:
    core, out, clock = env
    core.peer_down("local", S.STATUS_CONNECTION_DISCONNECTED, "killed")
    for i in range(3000):  # a busy client while the mini-redirector restarts: never cached
        create(core, request_id=1000 + i)
    assert out.client[-1][1].status == S.STATUS_CONNECTION_DISCONNECTED
    assert core.connections.failures == {}
    core.on_peer("local", Register("local", "local", [Routine.MRxCreate], [], ["local"]), None)
    gaps = []
    for i in range(2000):  # a server that keeps failing: capped at max_backoff_s
        create(core, request_id=5000 + i)
        construct = out.requests_to(CONNMGR)[-1]
        core.on_peer(CONNMGR, RxCompletion(construct.request_id, S.STATUS_IO_TIMEOUT), None)
        (conn,) = list(core.prefix.v_net_roots())
        gaps.append(conn.retry_at - clock.now)
        clock.now = conn.retry_at
    assert max(gaps) == core.settings.max_backoff_s and gaps[-1] == max(gaps)


def _read_with_shm(core: RdbssCore, ident: bytes, fobx: int) -> None:
    core.on_client(
        ident,
        RxContext(
            80,
            IrpMj.READ,
            fobx=fobx,
            lowio=LowIoParameters(offset=0, length=1 << 20),
            args={"shm": "rdbss-1-0123456789abcdef", "shm_off": 0},
        ),
        None,
    )


def test_the_shared_memory_hint_reaches_a_local_minirdr_only_from_a_local_client(
    env: Any,
) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    _read_with_shm(core, CLIENT_A, fobx)
    assert out.requests_to("local")[-1].args == {"shm": "rdbss-1-0123456789abcdef", "shm_off": 0}
    remote_client = b"r" + bytes(16)
    fobx = open_handle(core, out, remote_client)
    _read_with_shm(core, remote_client, fobx)
    assert not out.requests_to("local")[-1].args  # another host cannot see our /dev/shm
    # a mini-redirector on another host (a node) does not get it either
    core.peers["local"].host = "nodeb"
    fobx = open_handle(core, out)
    _read_with_shm(core, CLIENT_A, fobx)
    assert not out.requests_to("local")[-1].args


def test_a_shared_memory_write_leaves_the_arena_only_where_it_must(env: Any) -> None:
    """A local client's WRITE with the hint goes on as it is to a mini-redirector of this host;
    to one on another host the core copies the bytes out of the arena into the payload; a
    remote client's hint, or a hint with a payload too, is refused."""
    if not shm.available():
        pytest.skip("no writable /dev/shm")
    core, out, _ = env
    core.peers["local"].lowio_ops = frozenset({LowIoOp.READ, LowIoOp.WRITE})
    arena = shm.Arena(slots=1, slot_bytes=1 << 16)
    arena.view(0, 5)[:] = b"hello"

    def write(ident: bytes, fobx: int, payload: bytes | None = None) -> None:
        lowio = LowIoParameters(offset=0, length=5)
        ctx = RxContext(81, IrpMj.WRITE, fobx=fobx, lowio=lowio, args=arena.args(0))
        core.on_client(ident, ctx, payload)

    try:
        fobx = open_for_write(core, out)
        write(CLIENT_A, fobx)
        (_, sent, payload), *_ = [p for p in out.peer if isinstance(p[1], RxContext)]
        assert sent.args == arena.args(0) and payload is None
        out.peer.clear()
        core.peers["local"].host = "nodeb"  # another host cannot see our /dev/shm
        write(CLIENT_A, fobx)
        (_, sent, payload), *_ = [p for p in out.peer if isinstance(p[1], RxContext)]
        assert not sent.args and bytes(payload) == b"hello"
        core.peers["local"].host = ""
        remote_client = b"r" + bytes(16)
        remote_fobx = open_handle(core, out, remote_client)
        write(CLIENT_A, fobx, b"twice")
        write(remote_client, remote_fobx)
        statuses = [done.status for _, done, _ in out.client]
        assert statuses == [S.STATUS_INVALID_PARAMETER] * 2
        assert not out.requests_to("local")
    finally:
        core.files.shared.close()
        arena.close()


# ------------------------------------------------------------------ cancellation


def cancels_to(out: Recorder, name: str) -> list[RxCancel]:
    return [m for n, m, _ in out.peer if n == name and isinstance(m, RxCancel)]


def read(core: RdbssCore, fobx: int, request_id: int, ident: bytes = CLIENT_A) -> RxContext:
    core.on_client(
        ident,
        RxContext(request_id, IrpMj.READ, fobx=fobx, timeout_ms=10_000, lowio=LowIoParameters()),
        None,
    )
    return out_of(core).requests_to("local")[-1]


def out_of(core: RdbssCore) -> Recorder:
    out = core.out
    assert isinstance(out, Recorder)
    return out


def test_a_cancel_reaches_the_minirdr_holding_the_request(env: Any) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    sent = read(core, fobx, 80)
    core.on_cancel(CLIENT_A, RxCancel(80))
    assert cancels_to(out, "local") == [RxCancel(sent.request_id, "client")]  # the core's id
    assert out.client == []  # answered when the mini-redirector confirms
    core.on_peer("local", RxCompletion(sent.request_id, S.STATUS_CANCELLED), None)
    assert [(d.request_id, d.status) for _, d, _ in out.client] == [(80, S.STATUS_CANCELLED)]
    assert core.status()["pending"] == 0 and CLIENT_A not in core.answers.inflight_of


def test_an_unconfirmed_cancel_answers_after_the_grace_and_drops_the_late_answer(
    env: Any,
) -> None:
    core, out, clock = env
    core.settings.cancel_grace_s = 0.5
    fobx = open_handle(core, out)
    sent = read(core, fobx, 81)
    core.on_cancel(CLIENT_A, RxCancel(81))
    assert core.status()["cancelling"] == 1
    clock.now += 0.4
    core.tick()
    assert out.client == []
    clock.now += 0.2
    core.tick()
    done = out.client[-1][1]
    assert (done.request_id, done.status) == (81, S.STATUS_CANCELLED)
    assert "discarded" in done.message
    core.on_peer("local", RxCompletion(sent.request_id, S.STATUS_SUCCESS), None)  # too late
    assert len(out.client) == 1
    clock.now += 20  # the original deadline passes: nothing more happens
    core.tick()
    assert len(out.client) == 1 and cancels_to(out, "local") == [RxCancel(sent.request_id)]


def test_a_request_that_finished_before_its_cancel_keeps_its_result(env: Any) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    sent = read(core, fobx, 82)
    core.on_cancel(CLIENT_A, RxCancel(82))
    core.on_peer("local", RxCompletion(sent.request_id, S.STATUS_SUCCESS, 3), b"abc")
    assert out.client[-1][1].status == S.STATUS_SUCCESS and out.client[-1][2] == b"abc"


def test_a_client_cannot_cancel_another_clients_request(env: Any) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    sent = read(core, fobx, 83)
    core.on_cancel(CLIENT_B, RxCancel(83))  # same request id, other client
    assert cancels_to(out, "local") == [] and out.client == []
    core.on_peer("local", RxCompletion(sent.request_id, S.STATUS_SUCCESS), None)
    assert out.client[-1][1].status == S.STATUS_SUCCESS


def test_cancelling_an_unknown_or_finished_request_is_ignored(env: Any) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    sent = read(core, fobx, 84)
    core.on_peer("local", RxCompletion(sent.request_id, S.STATUS_SUCCESS), None)
    out.client.clear()
    core.on_cancel(CLIENT_A, RxCancel(84))  # finished
    core.on_cancel(CLIENT_A, RxCancel(999))  # never sent
    assert out.client == [] and cancels_to(out, "local") == []
    # and the same id used again later is an ordinary request
    read(core, fobx, 84)
    assert core.status()["pending"] == 1 and core.status()["cancelling"] == 0


def test_a_deadline_tells_the_minirdr_to_drop_the_work(env: Any) -> None:
    core, out, clock = env
    fobx = open_handle(core, out)
    core.on_client(
        CLIENT_A,
        RxContext(85, IrpMj.READ, fobx=fobx, timeout_ms=500, lowio=LowIoParameters()),
        None,
    )
    sent = out.requests_to("local")[-1]
    clock.now += 0.6
    core.tick()
    assert out.client[-1][1].status == S.STATUS_IO_TIMEOUT
    assert cancels_to(out, "local") == [RxCancel(sent.request_id, "deadline")]


def test_a_cancel_drops_a_request_parked_on_a_connection(env: Any) -> None:
    core, out, _ = env
    create(core, request_id=86)
    create(core, request_id=87)
    core.on_cancel(CLIENT_A, RxCancel(86))
    assert [(d.request_id, d.status) for _, d, _ in out.client] == [(86, S.STATUS_CANCELLED)]
    connect(core, out)
    creates = out.requests_to("local")
    assert len(creates) == 1  # only the request that was not cancelled is sent
    assert cancels_to(out, CONNMGR) == []  # the construction itself goes on for the other
    core.on_peer("local", RxCompletion(creates[0].request_id, S.STATUS_SUCCESS, 1), None)


def test_a_create_cancelled_while_opening_is_closed_again(env: Any) -> None:
    core, out, _ = env
    open_handle(core, out)  # the connection exists
    create(core, request_id=88)
    sent = out.requests_to("local")[-1]
    core.on_cancel(CLIENT_A, RxCancel(88))
    core.on_peer(
        "local", RxCompletion(sent.request_id, S.STATUS_SUCCESS, 1, result={"srv_open": 12}), None
    )
    assert out.client[-1][1].status == S.STATUS_CANCELLED
    close = out.requests_to("local")[-1]
    assert close.routine == Routine.MRxCloseSrvOpen and close.srv_open == 12
    assert core.status()["handles"] == 1  # only the first handle


def test_requests_of_a_vanished_client_are_cancelled(env: Any) -> None:
    from rdbss.actors.bus import client_identity

    core, out, _ = env
    gone = client_identity(2**31 - 1, 12345, b"abcd")  # no such process
    fobx = open_handle(core, out, ident=gone)
    sent = read(core, fobx, 89, ident=gone)
    mine = read(core, open_handle(core, out), 90)
    out.peer.clear()
    core.sweep_dead_clients()
    assert RxCancel(sent.request_id, "gone") in cancels_to(out, "local")
    assert all(c.request_id != mine.request_id for c in cancels_to(out, "local"))
    # the cancel goes out before the handle's close, so a queued request is dropped first
    kinds = [type(m).__name__ for n, m, _ in out.peer if n == "local"]
    assert kinds.index("RxCancel") < kinds.index("RxContext")


def test_a_create_answered_after_the_grace_is_closed_again(env: Any) -> None:
    core, out, clock = env
    core.settings.cancel_grace_s = 0.5
    open_handle(core, out)
    create(core, request_id=91)
    sent = out.requests_to("local")[-1]
    core.on_cancel(CLIENT_A, RxCancel(91))
    clock.now += 0.6
    core.tick()
    assert out.client[-1][1].status == S.STATUS_CANCELLED
    out.peer.clear()
    late = RxCompletion(sent.request_id, S.STATUS_SUCCESS, 1, result={"srv_open": 13})
    core.on_peer("local", late, None)
    close = out.requests_to("local")[-1]
    assert close.routine == Routine.MRxCloseSrvOpen and close.srv_open == 13
    assert core.status()["handles"] == 1 and len(out.client) == 1


def test_a_cancel_in_the_same_batch_as_its_request_reaches_the_peer_after_it(env: Any) -> None:
    """Requests drained together leave as one message when the batch ends: a cancel that came
    in the same drain must not overtake the request it names (the peer would ignore it and
    then run the request)."""
    from rdbss.wire import RxCancel

    core, out, _ = env
    fobx = open_handle(core, out)
    with core.batch():
        core.on_client(
            CLIENT_A, RxContext(42, IrpMj.READ, fobx=fobx, lowio=LowIoParameters(length=9)), None
        )
        core.on_cancel(CLIENT_A, RxCancel(42, "client"))
        assert out.peer == []  # nothing leaves before the batch ends
    kinds = [type(m).__name__ for n, m, _ in out.peer if n == "local"]
    assert kinds == ["RxContext", "RxCancel"]
    request = out.requests_to("local")[-1]
    assert out.peer[-1][1].request_id == request.request_id


def test_a_stat_compound_is_sent_again_whole_after_a_lost_connection(env: Any) -> None:
    """A stat (create + related close in one compound) that finds its connection lost is sent
    again whole on the connection built again."""
    core, out, _ = env
    open_handle(core, out)  # the connection is up
    cx = rq.compound(rq.stat_items(r"\\local\data\f", 30_000), 30_000)
    cx.request_id = 50
    core.on_client(CLIENT_A, cx, None)
    (sent,) = [m for n, m, _ in out.peer if n == "local"]
    assert isinstance(sent, Compound)  # the create and its close in one message
    out.peer.clear()
    lost = [RxCompletion(i.request_id, S.STATUS_CONNECTION_DISCONNECTED) for i in sent.items]
    core.on_peer("local", CompoundCompletion(0, S.STATUS_SUCCESS, items=lost), None)
    assert out.client == []  # not answered: sent again once the connection is back
    connect(core, out)
    # the connection was down: the create went first, its close waits for its answer
    create = out.requests_to("local")[-1]
    assert (create.routine, create.path) == (Routine.MRxCreate, "f")
    core.on_peer(
        "local", RxCompletion(create.request_id, S.STATUS_SUCCESS, result={"srv_open": 4}), None
    )
    close = out.requests_to("local")[-1]
    assert close.routine == Routine.MRxCloseSrvOpen and close.srv_open == 4
    core.on_peer("local", RxCompletion(close.request_id, S.STATUS_SUCCESS), None)
    (answer,) = [done for _, done, _ in out.client]
    assert isinstance(answer, CompoundCompletion) and answer.request_id == 50
    assert [i.status for i in answer.items] == [S.STATUS_SUCCESS, S.STATUS_SUCCESS]
    assert len(core.fobxs) == 1  # only the handle opened first: the stat left none behind


def _restarted_core() -> tuple[RdbssCore, Recorder, Clock]:
    """A core that just started under a configuration naming connmgr and local: nobody has
    registered with it yet (what a core restarted by the supervisor sees at first)."""
    out, clock = Recorder(), Clock()
    settings = CoreSettings(provider_order=["local"], expected_peers=(CONNMGR, "local"))
    return RdbssCore(out, clock, settings), out, clock


def test_a_restarted_core_holds_set_ups_until_the_configured_peers_register() -> None:
    core, out, clock = _restarted_core()
    create(core)
    assert out.client == [] and out.requests_to(CONNMGR) == []  # held, not BAD_NETWORK_PATH
    clock.now += 1.0
    core.tick()
    core.on_peer(CONNMGR, Register(CONNMGR, "connmgr", [], [], [], role="connmgr"), None)
    assert out.client == [] and out.requests_to(CONNMGR) == []  # local still missing
    routines = [Routine.MRxCreate, Routine.MRxCreateSrvCall, Routine.MRxCreateVNetRoot]
    core.on_peer("local", Register("local", "local", routines, [], ["local"]), None)
    connect(core, out)
    assert [m.routine for m in out.requests_to("local")] == [Routine.MRxCreate]


def test_a_restarted_core_fails_unserved_names_once_its_grace_is_over() -> None:
    core, out, clock = _restarted_core()
    create(core)
    assert out.client == []
    clock.now += core.settings.registration_grace_s + 0.1
    core.tick()
    assert [done.status for _, done, _ in out.client] == [S.STATUS_BAD_NETWORK_PATH]


def test_unknown_servers_fail_at_once_when_every_configured_peer_is_there(env: Any) -> None:
    core, out, _ = env
    core.settings.expected_peers = (CONNMGR, "local")
    create(core, path=r"\\elsewhere\share\f")
    assert [done.status for _, done, _ in out.client] == [S.STATUS_BAD_NETWORK_PATH]


def test_a_restarted_core_answers_at_once_for_a_minirdr_it_saw_go_down() -> None:
    core, out, _ = _restarted_core()
    core.on_peer(CONNMGR, Register(CONNMGR, "connmgr", [], [], [], role="connmgr"), None)
    routines = [Routine.MRxCreate, Routine.MRxCreateSrvCall, Routine.MRxCreateVNetRoot]
    core.on_peer("local", Register("local", "local", routines, [], ["local"]), None)
    core.peer_down("local", S.STATUS_CONNECTION_DISCONNECTED, "killed")
    create(core)
    assert [done.status for _, done, _ in out.client] == [S.STATUS_CONNECTION_DISCONNECTED]


def test_requests_drained_together_go_apart_when_their_payloads_exceed_a_compound() -> None:
    """Requests drained together leave as one compound, but one whose payloads together
    exceed the compound limit would be refused by the mini-redirector (and its requests wait
    out their deadlines): the core cuts the batch so that every message fits."""
    from rdbss.wire import DEFAULT_LIMITS, Compound

    out = Recorder()
    core = RdbssCore(out, Clock(), CoreSettings(provider_order=["local"]))
    core.on_peer(CONNMGR, Register(CONNMGR, "connmgr", [], [], [], role="connmgr"), None)
    routines = [Routine.MRxCreate, Routine.MRxLowIOSubmit, Routine.MRxCloseSrvOpen]
    writer = Register("local", "local", routines, [LowIoOp.READ, LowIoOp.WRITE], ["local"])
    core.on_peer("local", writer, None)
    out.peer.clear()
    fobx = open_handle(core, out)
    big, small = bytes(DEFAULT_LIMITS.max_payload_bytes), bytes(1 << 20)
    with core.batch():
        for request_id, data in ((61, big), (62, small), (63, small)):
            lowio = LowIoParameters(operation=LowIoOp.WRITE, offset=0, length=len(data))
            core.on_client(
                CLIENT_A, RxContext(request_id, IrpMj.WRITE, fobx=fobx, lowio=lowio), data
            )
    sent = [m for n, m, _ in out.peer if n == "local"]
    assert len(sent) == 2  # the big write alone, the two small ones together
    assert isinstance(sent[1], Compound) and len(sent[1].items) == 2
    for message in sent:
        if isinstance(message, Compound):
            total = sum(memoryview(p).nbytes for p in message.payloads)
            assert total <= DEFAULT_LIMITS.max_compound_payload_bytes

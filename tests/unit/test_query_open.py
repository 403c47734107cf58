"""Query opens (MRxQueryOpen, rdbss's IRP_MJ_QUERY_OPEN) without sockets: the core turns a
compound's create for attributes and its related close into one routine when the file open here
(if it is) holds nothing the server does not show yet and the mini-redirector has the routine;
the local mini-redirector answers it as its create would, status for status, over a real
temporary folder."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from rdbss.actors.minirdr_host import execute
from rdbss.core.core import RdbssCore
from rdbss.core.types import CONNMGR, CoreSettings
from rdbss.minirdrs.local import LocalMiniRdr
from rdbss.model.dispatch import is_query_open
from rdbss.model.names import parse_unc
from rdbss.model.structs import Fcb
from rdbss.wire import (
    Access,
    Compound,
    CompoundCompletion,
    CreateOptions,
    CreateParameters,
    IrpMj,
    LowIoOp,
    NtStatus,
    Register,
    Routine,
    RxCompletion,
    RxContext,
    RxFlags,
)
from rdbss.wire.constants import CreateDisposition, CreateInformation
from tests.unit.test_core_logic import CLIENT_A, Clock, Recorder, connect

S = NtStatus
R = RxFlags.RELATED
ATTRS = CreateParameters(desired_access=Access.FILE_READ_ATTRIBUTES)
ROUTINES = [
    Routine.MRxCreate,
    Routine.MRxCloseSrvOpen,
    Routine.MRxLowIOSubmit,
    Routine.MRxQueryFileInfo,
]


def make_core(query_open: bool) -> tuple[RdbssCore, Recorder]:
    out = Recorder()
    core = RdbssCore(out, Clock(), CoreSettings(provider_order=["local"]))
    core.on_peer(CONNMGR, Register(CONNMGR, "connmgr", [], [], [], role="connmgr"), None)
    routines = ROUTINES + ([Routine.MRxQueryOpen] if query_open else [])
    ops = [LowIoOp.READ, LowIoOp.WRITE]
    core.on_peer("local", Register("local", "local", routines, ops, ["local"]), None)
    out.peer.clear()
    return core, out


def stat(
    request_id: int, path: str = r"\\local\data\f", params: CreateParameters = ATTRS
) -> list[RxContext]:
    return [
        RxContext(request_id, IrpMj.CREATE, path=path, create=params),
        RxContext(request_id + 1, IrpMj.CLOSE, fobx=0, flags=R),
    ]


def connected(core: RdbssCore, out: Recorder) -> None:
    """Connect \\\\local\\data with a plain open and close (no Fcb is left behind)."""
    core.on_client(
        CLIENT_A, RxContext(90, IrpMj.CREATE, path=r"\\local\data\x", create=ATTRS), None
    )
    connect(core, out)
    (create,) = out.requests_to("local")
    core.on_peer("local", RxCompletion(create.request_id, S.STATUS_NOT_FOUND), None)
    out.peer.clear()
    out.client.clear()


def sent_routines(out: Recorder) -> list[str]:
    names: list[str] = []
    for peer, msg, _ in out.peer:
        if peer != "local":
            continue
        items = msg.items if isinstance(msg, Compound) else [msg]
        names += [str(item.routine) for item in items]
    return names


def test_a_stat_pair_goes_as_one_query_open_and_answers_both_items() -> None:
    core, out = make_core(query_open=True)
    connected(core, out)
    core.on_client(CLIENT_A, Compound(7, stat(1) + stat(3, r"\\local\data\d\g")), None)
    assert sent_routines(out) == [Routine.MRxQueryOpen, Routine.MRxQueryOpen]
    ((_, cx, _),) = out.peer
    assert [item.path for item in cx.items] == ["f", r"d\g"]
    assert all(item.create == ATTRS and item.fobx is None for item in cx.items)
    info = {"size": 5, "directory": False, "attributes": 0x80}
    answers = [
        RxCompletion(cx.items[0].request_id, S.STATUS_SUCCESS, CreateInformation.FILE_OPENED, info),
        RxCompletion(cx.items[1].request_id, S.STATUS_OBJECT_NAME_NOT_FOUND, message="g not found"),
    ]
    core.on_peer("local", CompoundCompletion(0, S.STATUS_SUCCESS, answers), None)
    ((_, done, _),) = out.client
    assert isinstance(done, CompoundCompletion)
    assert [d.request_id for d in done.items] == [1, 2, 3, 4]
    assert [d.status for d in done.items] == [S.STATUS_SUCCESS] * 2 + [
        S.STATUS_OBJECT_NAME_NOT_FOUND
    ] * 2
    assert done.items[0].result == {**info, "fobx": 0}  # a create's answer, handle closed
    assert done.items[0].information == CreateInformation.FILE_OPENED
    assert done.items[2].message == "g not found"
    assert not core.fobxs and not core.pending
    v_net_root = core.prefix.v_net_root(parse_unc(r"\\local\data\f"))
    assert v_net_root is not None and not v_net_root.net_root.fcbs


def opened(core: RdbssCore, out: Recorder) -> Fcb:
    """Open \\\\local\\data\\f for reading: its Fcb stays while the handle is open."""
    core.on_client(
        CLIENT_A,
        RxContext(50, IrpMj.CREATE, path=r"\\local\data\F", create=CreateParameters()),
        None,
    )
    (opening,) = out.requests_to("local")
    core.on_peer(
        "local", RxCompletion(opening.request_id, S.STATUS_SUCCESS, 1, {"srv_open": 4}), None
    )
    out.peer.clear()
    v_net_root = core.prefix.v_net_root(parse_unc(r"\\local\data\f"))
    assert v_net_root is not None
    return v_net_root.net_root.fcbs["f"]


def test_a_stat_of_a_file_open_here_goes_as_a_query_open() -> None:
    core, out = make_core(query_open=True)
    connected(core, out)
    fcb = opened(core, out)
    core.on_client(CLIENT_A, Compound(7, stat(1)), None)
    assert sent_routines(out) == [Routine.MRxQueryOpen]
    ((_, query, _),) = out.peer
    info = {"size": 5, "directory": False, "attributes": 0x80}
    core.on_peer(
        "local",
        RxCompletion(query.request_id, S.STATUS_SUCCESS, CreateInformation.FILE_OPENED, info),
        None,
    )
    done = out.client[-1][1]
    assert isinstance(done, CompoundCompletion)
    assert [d.status for d in done.items] == [S.STATUS_SUCCESS] * 2
    assert done.items[0].result == {**info, "fobx": 0}
    assert len(fcb.srv_opens) == 1 and fcb.handles == 1  # the open handle alone


@pytest.mark.parametrize(
    "case",
    [
        "no routine",
        "delete pending",
        "writes deferred",
        "not attributes only",
        "related after the close",
        "not connected",
    ],
)
def test_everything_else_takes_the_create_and_close(case: str) -> None:
    core, out = make_core(query_open=case != "no routine")
    if case != "not connected":
        connected(core, out)
    items = stat(1)
    if case in ("delete pending", "writes deferred"):  # what the server does not show yet
        fcb = opened(core, out)
        if case == "delete pending":
            fcb.delete_pending = True
        else:
            fcb.dirty.append((0, bytearray(b"new")))
            fcb.dirty_fobx = fcb.srv_opens[0].fobxs[0]
    elif case == "not attributes only":
        items[0].create = CreateParameters(
            desired_access=Access.FILE_READ_ATTRIBUTES | Access.FILE_READ_DATA
        )
    elif case == "related after the close":
        items.append(RxContext(3, IrpMj.QUERY_INFORMATION, fobx=0, flags=R))
    core.on_client(CLIENT_A, Compound(7, items), None)
    if case == "not connected":
        assert out.requests_to(CONNMGR)  # parked on the construction, as any create
        connect(core, out)
    assert Routine.MRxQueryOpen not in sent_routines(out)
    if case == "delete pending":  # the usual create answers it, sending nothing
        done = out.client[-1][1]
        assert isinstance(done, CompoundCompletion)
        assert done.items[0].status == S.STATUS_DELETE_PENDING
        return
    if case == "writes deferred":  # they reach the server before the create
        assert sent_routines(out)[0] == Routine.MRxLowIOSubmit
        return
    # the close rides along with its create, or (a parked create) waits for its answer
    expected = [Routine.MRxCreate] + ([] if case == "not connected" else [Routine.MRxCloseSrvOpen])
    assert sent_routines(out)[:2] == expected


def test_a_query_open_that_times_out_answers_both_items() -> None:
    core, out = make_core(query_open=True)
    connected(core, out)
    core.on_client(CLIENT_A, Compound(7, stat(1), timeout_ms=1000), None)
    assert sent_routines(out) == [Routine.MRxQueryOpen]
    clock = core.clock
    assert isinstance(clock, Clock)
    for _ in range(2):  # the deadline, then the grace its cancel gets
        clock.now += 2.0
        core.tick()
    ((_, done, _),) = out.client
    assert [d.status for d in done.items] == [S.STATUS_IO_TIMEOUT] * 2


def test_a_lone_stat_is_answered_as_its_compound_with_the_client_s_ids() -> None:
    """A compound that is one stat goes as one query open, answered with the compound's id and
    the items' own ids, and leaves nothing behind."""
    core, out = make_core(query_open=True)
    connected(core, out)
    core.on_client(CLIENT_A, Compound(7, stat(11)), None)
    ((_, query, _),) = out.peer
    assert query.routine == Routine.MRxQueryOpen and query.path == "f"
    info = {"size": 5, "directory": False, "attributes": 0x80}
    done = RxCompletion(query.request_id, S.STATUS_SUCCESS, CreateInformation.FILE_OPENED, info)
    core.on_peer("local", done, None)
    ((_, answer, _),) = out.client
    assert isinstance(answer, CompoundCompletion) and answer.request_id == 7
    assert answer.status == S.STATUS_SUCCESS
    assert [(d.request_id, d.status) for d in answer.items] == [(11, 0), (12, 0)]
    assert answer.items[0].result == {**info, "fobx": 0}
    assert not core.pending and not core.answers.inflight_of


def test_a_lone_stat_that_finds_its_connection_lost_is_sent_again() -> None:
    core, out = make_core(query_open=True)
    connected(core, out)
    core.on_client(CLIENT_A, Compound(7, stat(11)), None)
    ((_, query, _),) = out.peer
    out.peer.clear()
    lost = RxCompletion(query.request_id, S.STATUS_CONNECTION_DISCONNECTED, message="gone")
    core.on_peer("local", lost, None)
    assert out.client == []  # not answered: sent again once the connection is back
    connect(core, out)
    # sent again whole, the usual way (its create parked on the connection built again)
    again = out.requests_to("local")[-1]
    assert (again.routine, again.path) == (Routine.MRxCreate, "f")
    core.on_peer("local", RxCompletion(again.request_id, S.STATUS_OBJECT_NAME_NOT_FOUND), None)
    ((_, answer, _),) = out.client
    assert isinstance(answer, CompoundCompletion) and answer.request_id == 7
    assert [(d.request_id, d.status) for d in answer.items] == [
        (11, S.STATUS_OBJECT_NAME_NOT_FOUND),
        (12, S.STATUS_OBJECT_NAME_NOT_FOUND),
    ]
    assert not core.pending and not core.answers.inflight_of


def test_a_compound_whose_parked_create_fails_is_answered_once() -> None:
    """The close waits for its create (parked on the connection being built); the create's
    failure answers the close at once, and the compound is answered once, not twice."""
    core, out = make_core(query_open=False)
    core.on_client(CLIENT_A, Compound(7, stat(11)), None)
    connect(core, out)
    (create,) = out.requests_to("local")
    core.on_peer("local", RxCompletion(create.request_id, S.STATUS_OBJECT_NAME_NOT_FOUND), None)
    ((_, answer, _),) = out.client
    assert isinstance(answer, CompoundCompletion) and answer.request_id == 7
    assert [d.status for d in answer.items] == [S.STATUS_OBJECT_NAME_NOT_FOUND] * 2
    assert not core.answers.inflight_of


def test_a_lone_stat_its_peer_cannot_take_answers_both_items() -> None:
    core, out = make_core(query_open=True)
    connected(core, out)
    out.unreachable.add("local")
    core.on_client(CLIENT_A, Compound(7, stat(11)), None)
    answer = out.client[-1][1]
    assert isinstance(answer, CompoundCompletion) and answer.request_id == 7
    assert [(d.request_id, d.status) for d in answer.items] == [
        (11, S.STATUS_CONNECTION_DISCONNECTED),
        (12, S.STATUS_CONNECTION_DISCONNECTED),
    ]
    assert not core.answers.inflight_of


@pytest.mark.parametrize(
    ("access", "disposition", "options", "expected"),
    [
        (Access.FILE_READ_ATTRIBUTES, CreateDisposition.FILE_OPEN, 0, True),
        (
            Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE,
            CreateDisposition.FILE_OPEN,
            CreateOptions.FILE_NON_DIRECTORY_FILE,
            True,
        ),
        (Access.FILE_READ_ATTRIBUTES, CreateDisposition.FILE_OPEN_IF, 0, False),
        (Access.GENERIC_READ, CreateDisposition.FILE_OPEN, 0, False),
        (0, CreateDisposition.FILE_OPEN, 0, False),
        (
            Access.FILE_READ_ATTRIBUTES,
            CreateDisposition.FILE_OPEN,
            CreateOptions.FILE_DELETE_ON_CLOSE,
            False,
        ),
    ],
)
def test_what_counts_as_a_query_open(
    access: int, disposition: int, options: int, expected: bool
) -> None:
    params = CreateParameters(
        desired_access=access, disposition=disposition, create_options=options
    )
    assert is_query_open(params) is expected


# ---------------------------------------------------------------------- the local routine


@pytest.fixture
def local(tmp_path: Path) -> LocalMiniRdr:
    share = tmp_path / "share"
    (share / "d").mkdir(parents=True)
    (share / "f.txt").write_bytes(b"0123456789")
    (share / "link").symlink_to("f.txt")
    (share / "out").symlink_to(tmp_path)
    (share / "dangling").symlink_to("nowhere")
    os.mkfifo(share / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(share / "sock"))
    sock.close()
    return LocalMiniRdr("local", {"server": "local", "shares": {"data": str(share)}})


def _run(
    local: LocalMiniRdr,
    routine: Routine,
    path: str,
    options: int,
    access: int = Access.FILE_READ_ATTRIBUTES,
) -> RxCompletion:
    ctx = RxContext(
        1,
        IrpMj.CREATE,
        routine=routine,
        srv_call="local",
        net_root="data",
        path=path,
        create=CreateParameters(desired_access=access, create_options=options),
    )
    answer = execute(local, ctx, None)
    assert answer is not None
    return answer[0]


@pytest.mark.parametrize(
    "options", [0, CreateOptions.FILE_DIRECTORY_FILE, CreateOptions.FILE_NON_DIRECTORY_FILE]
)
@pytest.mark.parametrize(
    "path",
    [
        "f.txt",
        "d",
        "",
        "link",
        "out",
        r"out\share\f.txt",
        "dangling",
        "fifo",
        "sock",
        "missing",
        r"missing\f.txt",
        r"f.txt\x",
        r"..\x",
        "d\\",
        "con",
    ],
)
def test_the_local_query_open_answers_as_its_create_does(
    local: LocalMiniRdr, path: str, options: int
) -> None:
    created = _run(local, Routine.MRxCreate, path, options)
    queried = _run(local, Routine.MRxQueryOpen, path, options)
    assert (queried.status, queried.information) == (created.status, created.information)
    if created.status == S.STATUS_SUCCESS:
        srv_open = created.result.pop("srv_open")
        assert queried.result == created.result  # every field of the file info, from one stat
        close = RxContext(
            2,
            IrpMj.CLOSE,
            routine=Routine.MRxCloseSrvOpen,
            srv_call="local",
            net_root="data",
            srv_open=srv_open,
        )
        execute(local, close, None)
    assert len(local._opens) == 0


def test_a_file_being_deleted_is_delete_pending_for_a_query_open_too(local: LocalMiniRdr) -> None:
    deleting = _run(local, Routine.MRxCreate, "f.txt", CreateOptions.FILE_DELETE_ON_CLOSE, 0x10000)
    assert deleting.status == S.STATUS_SUCCESS
    assert _run(local, Routine.MRxQueryOpen, "f.txt", 0).status == S.STATUS_DELETE_PENDING
    assert _run(local, Routine.MRxCreate, "f.txt", 0).status == S.STATUS_DELETE_PENDING


def test_a_query_open_for_more_than_attributes_is_refused(local: LocalMiniRdr) -> None:
    answer = _run(local, Routine.MRxQueryOpen, "f.txt", 0, Access.GENERIC_READ)
    assert answer.status == S.STATUS_INVALID_PARAMETER
    assert len(local._opens) == 0

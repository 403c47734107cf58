"""Compound requests without sockets: the core sends one message per mini-redirector and answers
the client once; the mini-redirector host runs a compound's items in order and resolves related
items to the previous create's SrvOpen (on a real local mini-redirector over a temporary
folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rdbss.actors.minirdr_host import execute_compound
from rdbss.core.core import RdbssCore
from rdbss.core.types import CONNMGR, CORK_ITEMS, CoreSettings
from rdbss.minirdrs.local import LocalMiniRdr
from rdbss.wire import (
    CompletionBundle,
    Compound,
    CompoundCompletion,
    CreateParameters,
    IrpMj,
    LowIoOp,
    LowIoParameters,
    NtStatus,
    Register,
    Routine,
    RxCompletion,
    RxContext,
    RxFlags,
)
from tests.unit.test_core_logic import CLIENT_A, Clock, Recorder, connect, open_handle

S = NtStatus
R = RxFlags.RELATED


@pytest.fixture
def env() -> tuple[RdbssCore, Recorder, Clock]:
    out, clock = Recorder(), Clock()
    core = RdbssCore(out, clock, CoreSettings(provider_order=["local"]))
    core.on_peer(CONNMGR, Register(CONNMGR, "connmgr", [], [], [], role="connmgr"), None)
    routines = [
        Routine.MRxCreate,
        Routine.MRxLowIOSubmit,
        Routine.MRxCleanupFobx,
        Routine.MRxCloseSrvOpen,
        Routine.MRxQueryFileInfo,
    ]
    ops = [LowIoOp.READ, LowIoOp.WRITE]
    core.on_peer("local", Register("local", "local", routines, ops, ["local"]), None)
    core.on_peer("other", Register("other", "local", routines, ops, ["other"]), None)
    out.peer.clear()
    return core, out, clock


def read(request_id: int, fobx: int | None, offset: int = 0, flags: int = 0) -> RxContext:
    lowio = LowIoParameters(offset=offset, length=4096)
    return RxContext(request_id, IrpMj.READ, fobx=fobx, lowio=lowio, flags=flags)


def create(request_id: int, path: str = r"\\local\data\g") -> RxContext:
    return RxContext(request_id, IrpMj.CREATE, path=path, create=CreateParameters())


def answer_all(core: RdbssCore, peer: str, cx: Compound, **results: Any) -> None:
    """The mini-redirector's one answer: success for every item (a create gets a SrvOpen)."""
    items = []
    for ctx in cx.items:
        result = {"srv_open": 77} if ctx.routine == Routine.MRxCreate else None
        items.append(RxCompletion(ctx.request_id, S.STATUS_SUCCESS, result=result))
    payloads = [b"x" * 10 for ctx in cx.items if ctx.major == IrpMj.READ]
    read_items = [i for i, ctx in enumerate(cx.items) if ctx.major == IrpMj.READ]
    core.on_peer(
        peer, CompoundCompletion(0, S.STATUS_SUCCESS, items, read_items, payloads=payloads), None
    )


def test_one_message_per_minirdr_and_one_answer(env: Any) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    cx = Compound(
        50,
        [
            read(1, fobx),
            read(2, fobx, 4096),
            create(3),
            read(4, None, flags=R),
            RxContext(5, IrpMj.CLOSE, flags=R),
        ],
    )
    core.on_client(CLIENT_A, cx, None)
    assert len(out.peer) == 1  # one message for five items
    name, sent, _ = out.peer[0]
    assert name == "local" and isinstance(sent, Compound)
    assert [c.routine for c in sent.items] == [
        Routine.MRxLowIOSubmit,
        Routine.MRxLowIOSubmit,
        Routine.MRxCreate,
        Routine.MRxLowIOSubmit,
        Routine.MRxCloseSrvOpen,
    ]
    assert [bool(c.flags & R) for c in sent.items] == [False] * 3 + [True] * 2
    assert sent.items[0].srv_open == 9 and sent.items[3].srv_open is None
    assert sent.items[3].path == "g" and sent.items[3].fobx == sent.items[2].fobx
    assert out.client == []
    answer_all(core, "local", sent)
    assert len(out.client) == 1
    _, done, _ = out.client[0]
    assert isinstance(done, CompoundCompletion) and done.request_id == 50
    assert [d.request_id for d in done.items] == [1, 2, 3, 4, 5]
    assert all(d.status == S.STATUS_SUCCESS for d in done.items)
    assert done.payload_items == [0, 1, 3] and len(done.payloads) == 3
    # the compound's create was closed by its related close: only the first handle is left
    assert core.status()["handles"] == 1 and core.status()["pending"] == 0
    assert core.compounds.subs == {} and core.answers.inflight_of == {}


def test_items_for_two_minirdrs_go_as_one_message_each(env: Any) -> None:
    core, out, _ = env
    for prefix in (r"\\local\data", r"\\other\data"):  # connect both shares first
        core.on_client(CLIENT_A, create(1, prefix + r"\x"), None)
        construct = out.requests_to(CONNMGR)[-1]
        core.on_peer(
            CONNMGR,
            RxCompletion(
                construct.request_id,
                S.STATUS_SUCCESS,
                result={"minirdr": prefix[2:].split("\\")[0]},
            ),
            None,
        )
    out.peer.clear()
    items = []
    for k in range(3):
        items += [
            create(10 * k + 1, r"\\local\data\a"),
            RxContext(10 * k + 2, IrpMj.CLOSE, flags=R),
        ]
        items += [
            create(10 * k + 3, r"\\other\data\b"),
            RxContext(10 * k + 4, IrpMj.CLOSE, flags=R),
        ]
    core.on_client(CLIENT_A, Compound(60, items), None)
    assert sorted(name for name, _, _ in out.peer) == ["local", "other"]
    for name, sent, _ in list(out.peer):
        assert isinstance(sent, Compound) and len(sent.items) == 6  # 3 x create, close
        answer_all(core, name, sent)
    _, done, _ = out.client[-1]
    assert isinstance(done, CompoundCompletion) and len(done.items) == 12
    assert all(d.status == S.STATUS_SUCCESS for d in done.items)
    assert core.status()["handles"] == 0


def test_a_compound_waits_for_its_connection_then_related_items_follow(env: Any) -> None:
    core, out, _ = env
    cx = Compound(70, [create(1), read(2, None, flags=R), RxContext(3, IrpMj.CLOSE, flags=R)])
    core.on_client(CLIENT_A, cx, None)
    assert out.requests_to("local") == [] and out.client == []
    connect(core, out)  # the create goes out alone; the related items wait for its answer
    (sent_create,) = out.requests_to("local")
    core.on_peer(
        "local",
        RxCompletion(sent_create.request_id, S.STATUS_SUCCESS, result={"srv_open": 4}),
        None,
    )
    name, follow, _ = out.peer[-1]
    assert name == "local" and isinstance(follow, Compound)
    # by now they carry the real handle (not RELATED any more): read, cleanup, close
    assert [c.srv_open for c in follow.items] == [4, 4, 4]
    assert not any(c.flags & R for c in follow.items)
    answer_all(core, "local", follow)
    _, done, _ = out.client[-1]
    assert isinstance(done, CompoundCompletion)
    assert [d.status for d in done.items] == [S.STATUS_SUCCESS] * 3
    assert core.status()["handles"] == 0


def test_item_statuses_are_independent_and_related_items_share_a_failed_create(env: Any) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    cx = Compound(
        80,
        [
            RxContext(1, IrpMj.CLOSE, flags=R),  # no create before it
            read(2, 12345),  # no such handle
            create(3, r"\\local\data\..\..\etc"),  # refused by the core: bad name
            read(4, None, flags=R),  # related to that failed create
            read(5, fobx),  # fine
        ],
    )
    core.on_client(CLIENT_A, cx, None)
    ((_, sent, _),) = out.peer
    assert isinstance(sent, RxContext) and sent.fobx == fobx  # only one item left the core
    core.on_peer("local", RxCompletion(sent.request_id, S.STATUS_SUCCESS), None)
    _, done, _ = out.client[-1]
    statuses = [d.status for d in done.items]
    assert statuses[0] == S.STATUS_INVALID_HANDLE
    assert statuses[1] == S.STATUS_INVALID_HANDLE
    assert statuses[2] != S.STATUS_SUCCESS and statuses[3] == statuses[2]
    assert statuses[4] == S.STATUS_SUCCESS


def test_a_compound_over_the_read_limit_is_refused_whole(env: Any) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    big = [
        RxContext(i, IrpMj.READ, fobx=fobx, lowio=LowIoParameters(length=40 << 20)) for i in (1, 2)
    ]
    core.on_client(CLIENT_A, Compound(90, big), None)
    _, done, _ = out.client[-1]
    assert isinstance(done, CompoundCompletion)
    assert done.status == S.STATUS_INVALID_PARAMETER and done.items == []
    assert "at most" in done.message and out.peer == []
    assert core.answers.inflight_of == {}


def test_an_unreachable_minirdr_fails_the_batched_items(env: Any) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    out.unreachable.add("local")
    core.on_client(CLIENT_A, Compound(95, [read(1, fobx), read(2, fobx)]), None)
    _, done, _ = out.client[-1]
    assert [d.status for d in done.items] == [S.STATUS_CONNECTION_DISCONNECTED] * 2
    assert core.status()["pending"] == 0


# ----------------------------------------------------------------------------- the host side


@pytest.fixture
def local(tmp_path: Path) -> LocalMiniRdr:
    (tmp_path / "f.txt").write_bytes(b"0123456789")
    return LocalMiniRdr("local", {"server": "local", "shares": {"data": str(tmp_path)}})


def mrx(request_id: int, major: int, routine: Routine, **fields: Any) -> RxContext:
    return RxContext(
        request_id, major, routine=routine, srv_call="local", net_root="data", **fields
    )


def test_the_host_runs_related_items_on_the_previous_create(local: LocalMiniRdr) -> None:
    lowio = LowIoParameters(operation=LowIoOp.READ, offset=2, length=3)
    wlowio = LowIoParameters(operation=LowIoOp.WRITE, offset=10, length=2)
    items = [
        mrx(1, IrpMj.READ, Routine.MRxLowIOSubmit, lowio=lowio, flags=R),  # nothing created yet
        mrx(
            2,
            IrpMj.CREATE,
            Routine.MRxCreate,
            path="f.txt",
            fobx=1,
            create=CreateParameters(desired_access=0x12019F),
        ),
        mrx(3, IrpMj.WRITE, Routine.MRxLowIOSubmit, lowio=wlowio, flags=R),
        mrx(4, IrpMj.READ, Routine.MRxLowIOSubmit, lowio=lowio, flags=R),
        mrx(5, IrpMj.CLOSE, Routine.MRxCloseSrvOpen, flags=R),
        mrx(6, IrpMj.CREATE, Routine.MRxCreate, path="missing", fobx=2, create=CreateParameters()),
        mrx(7, IrpMj.READ, Routine.MRxLowIOSubmit, lowio=lowio, flags=R),
        mrx(8, IrpMj.CLOSE, Routine.MRxCloseSrvOpen, flags=R),
    ]
    cx = Compound(0, items, payload_items=[2], payloads=[b"ab"])
    done = execute_compound(local, cx)
    statuses = {d.request_id: d.status for d in done.items}
    assert statuses[1] == S.STATUS_INVALID_HANDLE
    assert [statuses[k] for k in (2, 3, 4, 5)] == [S.STATUS_SUCCESS] * 4
    assert statuses[6] == S.STATUS_OBJECT_NAME_NOT_FOUND
    assert statuses[7] == statuses[8] == S.STATUS_OBJECT_NAME_NOT_FOUND
    assert done.payload_items == [3]  # the successful read's data, in its own frame
    assert bytes(done.payloads[0]) == b"234"
    assert (Path(local._shares.get("data").root) / "f.txt").read_bytes() == (b"0123456789ab")
    assert len(local._opens) == 0  # the related close closed what the create opened


def test_answered_requests_do_not_pile_up_in_the_deadline_heap(env: Any) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    for k in range(5000):
        core.on_client(CLIENT_A, read(k, fobx), None)
        _, sent, _ = out.peer[-1]
        core.on_peer("local", RxCompletion(sent.request_id, S.STATUS_SUCCESS), None)
    assert len(out.client) == 5000 and not core.pending
    # without compaction every answered request keeps its entry until its deadline (30 s)
    assert len(core.sending.deadlines) <= 1025


@pytest.mark.parametrize("bundle_ok", [True, False])
def test_answers_ready_together_leave_together_for_a_client_that_takes_bundles(
    env: Any, bundle_ok: bool
) -> None:
    core, out, _ = env
    fobx = open_handle(core, out)
    flags = RxFlags.BUNDLE_OK if bundle_ok else 0
    with core.batch():  # as the server drains its socket: three requests arrive together
        for k in (1, 2, 3):
            core.on_client(CLIENT_A, read(k, fobx, flags=flags), None)
        core.on_client(CLIENT_A, read(4, 999, flags=flags), None)  # refused at once
    ((_, sent, _),) = out.peer  # the three reads travel to the mini-redirector together
    assert isinstance(sent, Compound) and len(sent.items) == 3
    ((_, alone, _),) = out.client  # one answer ready: sent as it is, never as a bundle of one
    assert isinstance(alone, RxCompletion) and alone.request_id == 4
    out.client.clear()
    with core.batch():
        answer_all(core, "local", sent)
    if bundle_ok:
        ((_, bundle, _),) = out.client
        assert isinstance(bundle, CompletionBundle)
        assert [d.request_id for d in bundle.items] == [1, 2, 3]
        assert bundle.payload_items == [0, 1, 2] and len(bundle.payloads) == 3
    else:
        assert [d.request_id for _, d, _ in out.client] == [1, 2, 3]
    assert core.answers.inflight_of == {} and core.answers.bundle_ok == set()


def test_a_long_batch_leaves_in_parts_never_between_a_create_and_its_related_items(
    env: Any,
) -> None:
    """A mini-redirector's held-back requests leave once CORK_ITEMS wait (it works on them
    while the core reads the rest), cut only before an item that is not related."""
    core, out, _ = env
    fobx = open_handle(core, out)
    out.peer.clear()
    head = [read(k, fobx, 4096 * k) for k in range(CORK_ITEMS - 1)]
    k = len(head)
    chain = [create(k), read(k + 1, None, flags=R), RxContext(k + 2, IrpMj.CLOSE, flags=R)]
    rest = [read(k + 3 + j, fobx) for j in range(3)]
    items = head + chain + rest  # the create is the batch's last item before its limit
    n = len(items)
    with core.batch():
        core.on_client(CLIENT_A, Compound(90, items), None)
        assert len(out.peer) == 1  # the first part left before the batch ended
    parts = [sent for _, sent, _ in out.peer]
    assert [len(p.items) for p in parts] == [CORK_ITEMS + 2, 3]
    assert [c.routine for c in parts[0].items[-3:]] == [
        Routine.MRxCreate,
        Routine.MRxLowIOSubmit,
        Routine.MRxCloseSrvOpen,
    ]  # the create travels with its related items
    for part in parts:
        answer_all(core, "local", part)
    ((_, done, _),) = out.client
    assert isinstance(done, CompoundCompletion) and len(done.items) == n
    assert all(d.status == S.STATUS_SUCCESS for d in done.items)

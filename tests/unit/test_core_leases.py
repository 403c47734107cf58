"""The core's side of read leases (rdbss/core/leases.py), driven without sockets like
test_core_buffering: which creates get a grant, and that the epoch in the table moves before
the request that breaks it reaches the mini-redirector."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rdbss import requests as rq
from rdbss import shm
from rdbss.core.types import CONNMGR
from rdbss.epochs import EpochView
from rdbss.wire import (
    CreateDisposition,
    CreateParameters,
    FileInformationClass,
    InfoParameters,
    IrpMj,
    NtStatus,
    RxContext,
    ShareAccess,
)
from tests.unit.test_core_buffering import PATH, RW, Env, R, write
from tests.unit.test_core_logic import CLIENT_A, CLIENT_B, connect

S = NtStatus
REMOTE = b"k:remote-client"

pytestmark = pytest.mark.skipif(not shm.available(), reason="no writable /dev/shm")


@pytest.fixture
def env() -> Iterator[Env]:
    env = Env("exclusive", close_delay_s=0)
    yield env
    env.core.close()


def open_leased(env: Env, ident: bytes = CLIENT_A, access: int = R, path: str = PATH) -> Any:
    """A create that asks for a lease, answered; its completion."""
    params = CreateParameters(
        desired_access=access, share_access=ShareAccess.ALL, disposition=CreateDisposition.FILE_OPEN
    )
    ctx = RxContext(0, IrpMj.CREATE, path=path, create=params, args={"lease": True})
    env.request(ident, ctx)
    if env.out.requests_to(CONNMGR):
        connect(env.core, env.out)
        env.out.peer = [p for p in env.out.peer if p[0] != CONNMGR]
    done = env.answer(size=5)
    assert done.status == S.STATUS_SUCCESS
    return done


def epoch_of(grant: dict[str, Any]) -> int:
    view = EpochView(grant["table"])
    try:
        return view.load(grant["slot"])
    finally:
        view.close()


def test_a_local_reader_that_asks_gets_a_grant_that_holds() -> None:
    env = Env("exclusive", close_delay_s=0)
    try:
        grant = open_leased(env).result["lease"]
        assert epoch_of(grant) == grant["epoch"]
        assert env.core.status()["buffering"]["lease_grants"] == 1
    finally:
        env.core.close()
    assert not (shm.SHM_DIR / grant["table"]).exists()  # the table goes with the core


def test_no_grant_unasked_remote_or_without_read_caching(env: Env) -> None:
    env.create()
    assert "lease" not in env.answer(size=5).result
    assert "lease" not in open_leased(env, REMOTE).result
    off = Env("off", close_delay_s=0)
    assert "lease" not in open_leased(off).result
    assert off.core.caching.leases.table is None  # never made


def test_a_second_reader_keeps_the_first_grant_and_shares_its_slot(env: Env) -> None:
    first = open_leased(env).result["lease"]
    second = open_leased(env, CLIENT_B).result["lease"]
    assert second == first
    assert epoch_of(first) == first["epoch"]


def test_a_writing_open_breaks_before_it_is_sent(env: Env) -> None:
    grant = open_leased(env).result["lease"]
    env.create(CLIENT_B, access=RW)
    assert env.sent()[-1].major == IrpMj.CREATE  # on its way, not answered yet
    assert epoch_of(grant) > grant["epoch"]


def test_a_write_breaks_when_sent_and_again_when_done(env: Env) -> None:
    fobx = open_leased(env, access=RW).result["fobx"]
    grant = env.out.client[-1][1].result["lease"]
    write(env, fobx, 0, b"zz")
    sent = epoch_of(grant)
    assert sent > grant["epoch"]
    env.answer()
    assert epoch_of(grant) > sent


@pytest.mark.parametrize(
    ("info_class", "args"),
    [
        (FileInformationClass.FileRenameInformation, {"target": "g"}),
        (FileInformationClass.FileDispositionInformation, {"delete": True}),
        (FileInformationClass.FileEndOfFileInformation, {"size": 1}),
    ],
)
def test_rename_delete_and_resize_break_before_they_are_sent(
    env: Env, info_class: int, args: dict[str, Any]
) -> None:
    done = open_leased(env, access=RW)
    grant = done.result["lease"]
    info = InfoParameters(info_class=info_class, args=args)
    env.request(CLIENT_A, RxContext(0, IrpMj.SET_INFORMATION, fobx=done.result["fobx"], info=info))
    assert env.sent()[-1].major == IrpMj.SET_INFORMATION
    assert epoch_of(grant) > grant["epoch"]


def test_a_rename_onto_a_leased_file_breaks_it(env: Env) -> None:
    target = open_leased(env, path=r"\\local\data\g").result["lease"]
    env.create(CLIENT_B, access=RW)
    fobx = env.answer(size=5).result["fobx"]
    info = InfoParameters(
        info_class=FileInformationClass.FileRenameInformation, args={"target": "g"}
    )
    env.request(CLIENT_B, RxContext(0, IrpMj.SET_INFORMATION, fobx=fobx, info=info))
    assert epoch_of(target) > target["epoch"]


def test_the_loss_of_the_mini_redirector_breaks(env: Env) -> None:
    grant = open_leased(env).result["lease"]
    env.core.peer_down("local", S.STATUS_CONNECTION_DISCONNECTED, "killed")
    assert epoch_of(grant) > grant["epoch"]


def test_the_last_close_frees_the_slot_and_a_new_file_never_matches_an_old_grant(env: Env) -> None:
    old = open_leased(env).result
    env.close(old["fobx"])
    assert env.core.caching.leases.status()["leased_files"] == 0
    new = open_leased(env, path=r"\\local\data\other").result["lease"]
    assert new["slot"] == old["lease"]["slot"]
    assert new["epoch"] > old["lease"]["epoch"]


def test_a_byte_range_lock_breaks_before_it_is_sent(env: Env) -> None:
    done = open_leased(env)
    grant = done.result["lease"]
    lock = rq.lock(done.result["fobx"], 0, 10, 1000).ctx
    env.request(CLIENT_A, lock)
    assert env.sent()[-1].major == IrpMj.LOCK_CONTROL
    assert epoch_of(grant) > grant["epoch"]

"""A small file read or written whole on SMB against a real Samba: a compound's create with a
related READ or WRITE and a related close reaches smbprotocol's connection as ONE related
compound CREATE + QUERY_INFO + READ/WRITE + CLOSE (MS-SMB2 3.2.4.1.4), counted there, and
every item answers what it answers when the items run one by one (statuses, create
information, data), leaving no handle open."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rdbss.actors.minirdr_host import execute_compound
from rdbss.minirdrs.smb.minirdr import SmbMiniRdr
from rdbss.testing.backend import minirdr_options, smb_config, write_password_file
from rdbss.testing.servers import SambaServer, require_or_skip
from rdbss.wire import (
    Access,
    CreateDisposition,
    CreateOptions,
    CreateParameters,
    LowIoOp,
    LowIoParameters,
    NtStatus,
    Routine,
    RxContext,
)
from rdbss.wire.constants import RxFlags
from rdbss.wire.rxcontext import Compound, CompoundCompletion, RxCompletion
from tests.integration.test_smb_query_open import Sent

S = NtStatus
WINDOW = 64 << 10
READ = CreateParameters(
    desired_access=int(Access.GENERIC_READ),
    share_access=7,
    disposition=int(CreateDisposition.FILE_OPEN),
    create_options=int(CreateOptions.FILE_NON_DIRECTORY_FILE),
)
#: What a comparison leaves out: the handle's number, and the times (Samba derives a birth
#: time from the others when the file system keeps none).
_NOT_COMPARED = ("srv_open", "creation_time", "last_access_time", "last_write_time", "change_time")
FUSED = ["SMB2CreateRequest", "SMB2QueryInfoRequest", "SMB2ReadRequest", "SMB2CloseRequest"]
FUSED_WRITE = [*FUSED[:2], "SMB2WriteRequest", FUSED[3]]


def write_params(disposition: int = CreateDisposition.FILE_OVERWRITE_IF) -> CreateParameters:
    return CreateParameters(
        desired_access=int(Access.GENERIC_WRITE),
        share_access=7,
        disposition=int(disposition),
        create_options=int(CreateOptions.FILE_NON_DIRECTORY_FILE),
    )


@dataclass
class Rig:
    minirdr: SmbMiniRdr
    sent: Sent
    root: Path

    def ctx(self, share: str = "share", **fields: Any) -> RxContext:
        return RxContext(1, 0, srv_call="sambatest", net_root=share, **fields)

    def chain(
        self, path: str, params: CreateParameters, io: LowIoParameters | None, share: str
    ) -> Compound:
        related = int(RxFlags.RELATED)
        items = [self.ctx(share, routine=Routine.MRxCreate, path=path, create=params)]
        if io is not None:
            items.append(self.ctx(share, routine=Routine.MRxLowIOSubmit, lowio=io, flags=related))
        items.append(self.ctx(share, routine=Routine.MRxCloseSrvOpen, flags=related))
        for number, item in enumerate(items, 1):
            item.request_id = number
        return Compound(7, items)

    def run(
        self,
        path: str,
        params: CreateParameters,
        io: LowIoParameters | None = None,
        data: bytes | None = None,
        *,
        fused: bool = True,
        share: str = "share",
    ) -> list[tuple[RxCompletion, Any]]:
        """Run the chain as the host does; ``fused=False``: item by item, as before."""
        cx = self.chain(path, params, io, share)
        if data is not None:
            cx.payload_items, cx.payloads = [1], [memoryview(data)]
        answers: list[tuple[RxCompletion, Any]] = []
        self.sent.sends.clear()
        with pytest.MonkeyPatch.context() as monkeypatch:
            if not fused:
                monkeypatch.setattr(self.minirdr, "create_with_related", lambda *a: None)
            execute_compound(
                self.minirdr, cx, lambda done, payload: answers.append((done, payload))
            )
        assert [done.request_id for done, _ in answers] == list(range(1, len(cx.items) + 1))
        assert not self.minirdr._opens.values(), "a SrvOpen was left in the OpenTable"
        return answers


def read_io(length: int = WINDOW, offset: int = 0) -> LowIoParameters:
    return LowIoParameters(operation=LowIoOp.READ, offset=offset, length=length)


def write_io(data: bytes, offset: int = 0) -> LowIoParameters:
    return LowIoParameters(operation=LowIoOp.WRITE, offset=offset, length=len(data))


def comparable(
    answers: list[tuple[RxCompletion, Any]], *, also: tuple[str, ...] = ()
) -> list[tuple[int, int, Any, Any]]:
    """Each answer's status, information, result (less what may differ, and ``also``) and
    payload."""
    out = []
    for done, payload in answers:
        result = done.result
        if isinstance(result, dict):
            result = {k: v for k, v in result.items() if k not in _NOT_COMPARED + also}
        out.append(
            (done.status, done.information, result, None if payload is None else bytes(payload))
        )
    return out


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    require_or_skip(SambaServer.missing_binaries(), "Samba (smbd)")
    base: Path = tmp_path_factory.mktemp("smb-small-files")
    with SambaServer(base / "smb") as server:
        password = write_password_file(base / "pw", server.password)
        minirdr = SmbMiniRdr("smb", minirdr_options(smb_config(server, password, timeout=10.0)))
        try:
            rig = Rig(minirdr, Sent(), Path(server.share_path))
            minirdr.create_srv_call(rig.ctx())
            minirdr.create_v_net_root(rig.ctx())
            (rig.root / "dir").mkdir(exist_ok=True)
            with pytest.MonkeyPatch.context() as monkeypatch:
                rig.sent.watch(minirdr._link(rig.ctx()).connection, monkeypatch)
                yield rig
        finally:
            minirdr.close()


@pytest.mark.parametrize("size", [0, 1, WINDOW - 1, WINDOW, WINDOW + 1])
def test_a_small_read_is_one_compound_and_byte_exact(rig: Rig, size: int) -> None:
    data = bytes((i * 7 + size) % 251 for i in range(size))
    (rig.root / f"r{size}.bin").write_bytes(data)
    fused = rig.run(f"r{size}.bin", READ, read_io())
    assert rig.sent.sends == [FUSED]
    created, read, closed = fused
    assert created[0].status == S.STATUS_SUCCESS and closed[0].status == S.STATUS_SUCCESS
    if size:
        assert read[0].status == S.STATUS_SUCCESS
        assert bytes(read[1]) == data[:WINDOW] and read[0].information == min(size, WINDOW)
    else:
        assert read[0].status == S.STATUS_END_OF_FILE
    alone = rig.run(f"r{size}.bin", READ, read_io(), fused=False)
    assert len(rig.sent.sends) == 3
    assert comparable(fused) == comparable(alone)


@pytest.mark.parametrize("size", [0, 1, WINDOW - 1, WINDOW, WINDOW + 1, 200 << 10])
def test_a_small_write_is_one_compound_and_byte_exact(rig: Rig, size: int) -> None:
    data = bytes((i * 13 + size) % 253 for i in range(size))
    name = f"w{size}.bin"
    io = write_io(data) if size else None
    fused = rig.run(name, write_params(), io, data if size else None)
    if size <= WINDOW:
        shape = FUSED_WRITE if size else [*FUSED[:2], FUSED[3]]
        assert rig.sent.sends == [shape]
    else:
        assert len(rig.sent.sends) > 1  # falls back: one by one
    assert all(done.status == S.STATUS_SUCCESS for done, _ in fused)
    assert (rig.root / name).read_bytes() == data
    (rig.root / name).unlink()
    alone = rig.run(name, write_params(), io, data if size else None, fused=False)
    assert (rig.root / name).read_bytes() == data
    # a file made again may get another inode number
    assert comparable(fused, also=("file_id",)) == comparable(alone, also=("file_id",))
    # over the existing file now: overwritten, fused and alone alike
    again = rig.run(name, write_params(), io, data if size else None)
    assert comparable(again) == comparable(
        rig.run(name, write_params(), io, data if size else None, fused=False)
    )
    assert (rig.root / name).read_bytes() == data


def test_the_open_is_gone_after_the_chain(rig: Rig) -> None:
    (rig.root / "gone.bin").write_bytes(b"x")
    rig.run("gone.bin", READ, read_io())
    exclusive = CreateParameters(
        desired_access=int(Access.GENERIC_READ | Access.DELETE),
        share_access=0,
        disposition=int(CreateDisposition.FILE_OPEN),
    )
    answers = rig.run("gone.bin", exclusive, None)  # no sharing violation with a leftover open
    assert [done.status for done, _ in answers] == [S.STATUS_SUCCESS, S.STATUS_SUCCESS]


@pytest.mark.parametrize(
    ("path", "params", "io", "data"),
    [
        ("missing.txt", READ, read_io(), None),
        ("nodir\\missing.txt", READ, read_io(), None),
        ("dir", READ, read_io(), None),
        ("dir", write_params(), write_io(b"abc"), b"abc"),
        ("exists.txt", write_params(CreateDisposition.FILE_CREATE), write_io(b"abc"), b"abc"),
        ("exists.txt", READ, read_io(10, 100), None),  # past the end
    ],
)
def test_errors_are_those_of_the_items_one_by_one(
    rig: Rig, path: str, params: CreateParameters, io: LowIoParameters, data: bytes | None
) -> None:
    (rig.root / "exists.txt").write_bytes(b"there")
    fused = rig.run(path, params, io, data)
    assert len(rig.sent.sends) == 1
    alone = rig.run(path, params, io, data, fused=False)
    assert [a[:2] for a in comparable(fused)] == [a[:2] for a in comparable(alone)]
    assert any(done.status != S.STATUS_SUCCESS for done, _ in fused)
    assert (rig.root / "exists.txt").read_bytes() == b"there"


def test_a_directory_without_the_non_directory_option(rig: Rig) -> None:
    params = CreateParameters(
        desired_access=int(Access.GENERIC_READ), share_access=7, disposition=1
    )
    fused = rig.run("dir", params, read_io())
    assert rig.sent.sends == [FUSED]
    alone = rig.run("dir", params, read_io(), fused=False)
    assert comparable(fused) == comparable(alone)
    assert fused[1][0].status == S.STATUS_INVALID_DEVICE_REQUEST


def test_a_chains_answers_go_out_together_as_one_compound_completion(rig: Rig) -> None:
    (rig.root / "together.bin").write_bytes(b"together")
    one_by_one = rig.run("together.bin", READ, read_io())
    emitted: list[tuple[RxCompletion, Any]] = []
    bundles: list[CompoundCompletion] = []
    execute_compound(
        rig.minirdr,
        rig.chain("together.bin", READ, read_io(), "share"),
        lambda done, payload: emitted.append((done, payload)),
        together=bundles.append,
    )
    assert not emitted and len(bundles) == 1
    (bundle,) = bundles
    assert [done.request_id for done in bundle.items] == [1, 2, 3]
    assert bundle.payload_items == [1] and bytes(bundle.payloads[0]) == b"together"
    payload_of = dict(zip(bundle.payload_items, bundle.payloads, strict=True))
    together = [(done, payload_of.get(i)) for i, done in enumerate(bundle.items)]
    assert comparable(together) == comparable(one_by_one)
    assert not rig.minirdr._opens.values(), "a SrvOpen was left in the OpenTable"

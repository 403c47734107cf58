"""MRxQueryOpen on SMB against a real Samba: a stat is ONE related compound CREATE +
QUERY_INFO + CLOSE (MS-SMB2 3.2.4.1.4), counted at smbprotocol's connection, and it answers
what MRxCreate answers for the same open (its statuses included), leaving no handle open."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rdbss.minirdrs.base import Result
from rdbss.minirdrs.smb.minirdr import SmbMiniRdr
from rdbss.testing.backend import minirdr_options, smb_config, write_password_file
from rdbss.wire import (
    Access,
    CreateDisposition,
    CreateInformation,
    CreateOptions,
    CreateParameters,
    LowIoOp,
    LowIoParameters,
    NtStatus,
    NtStatusError,
    Routine,
    RxContext,
)
from tests.servers.fixtures import SambaServer, require_or_skip

S = NtStatus
STAT = CreateParameters(
    desired_access=int(Access.FILE_READ_ATTRIBUTES | Access.SYNCHRONIZE),
    share_access=7,
    disposition=int(CreateDisposition.FILE_OPEN),
)
#: What a comparison with MRxCreate leaves out: the handle, and the access time it may move.
_NOT_COMPARED = ("srv_open", "last_access_time")


@dataclass
class Sent:
    """The SMB2 messages a connection sent: one entry per send (one message or one compound)."""

    sends: list[list[str]] = field(default_factory=list)

    def watch(self, connection: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        send, send_compound = connection.send, connection.send_compound
        send_packed = connection.send_packed

        def one(message: Any, *args: Any, **kwargs: Any) -> Any:
            self.sends.append([type(message).__name__])
            return send(message, *args, **kwargs)

        def compound(messages: list[Any], *args: Any, **kwargs: Any) -> Any:
            self.sends.append([type(m).__name__ for m in messages])
            return send_compound(messages, *args, **kwargs)

        def packed(bodies: list[Any], *args: Any, **kwargs: Any) -> Any:
            self.sends.append([body.structure.__name__ for body in bodies])
            return send_packed(bodies, *args, **kwargs)

        monkeypatch.setattr(connection, "send", one)
        monkeypatch.setattr(connection, "send_compound", compound)
        monkeypatch.setattr(connection, "send_packed", packed)


@dataclass
class Rig:
    minirdr: SmbMiniRdr
    sent: Sent

    def ctx(self, **fields: Any) -> RxContext:
        return RxContext(1, 0, srv_call="sambatest", net_root="share", **fields)

    def query_open(self, path: str, params: CreateParameters = STAT) -> Result:
        self.sent.sends.clear()
        return self.minirdr.query_open(self.ctx(path=path, create=params))

    def create(self, path: str, params: CreateParameters = STAT) -> Result:
        return self.minirdr.create(self.ctx(path=path, create=params))

    def close(self, result: Result) -> None:
        self.minirdr.close_srv_open(self.ctx(srv_open=result.result["srv_open"]))

    def status(self, call: Any, path: str, params: CreateParameters = STAT) -> int:
        try:
            result = call(path, params)
        except NtStatusError as exc:
            return exc.status
        if "srv_open" in result.result:
            self.close(result)
        return int(result.status)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    require_or_skip(SambaServer.missing_binaries(), "Samba (smbd)")
    base: Path = tmp_path_factory.mktemp("smb-query-open")
    with SambaServer(base / "smb") as server:
        password = write_password_file(base / "pw", server.password)
        minirdr = SmbMiniRdr("smb", minirdr_options(smb_config(server, password, timeout=10.0)))
        try:
            rig = Rig(minirdr, Sent())
            minirdr.create_srv_call(rig.ctx())
            minirdr.create_v_net_root(rig.ctx())
            made = rig.create(
                "qo.txt",
                CreateParameters(
                    desired_access=int(Access.GENERIC_READ | Access.GENERIC_WRITE),
                    share_access=7,
                    disposition=int(CreateDisposition.FILE_OVERWRITE_IF),
                ),
            )
            write = LowIoParameters(operation=LowIoOp.WRITE, offset=0, length=11)
            minirdr.low_io_submit(
                rig.ctx(srv_open=made.result["srv_open"], lowio=write), b"hello world"
            )
            rig.close(made)
            directory = CreateParameters(
                desired_access=int(Access.FILE_READ_ATTRIBUTES),
                share_access=7,
                disposition=int(CreateDisposition.FILE_CREATE),
                create_options=int(CreateOptions.FILE_DIRECTORY_FILE),
            )
            rig.close(rig.create("qodir", directory))
            with pytest.MonkeyPatch.context() as monkeypatch:
                rig.sent.watch(minirdr._link(rig.ctx()).connection, monkeypatch)
                yield rig
        finally:
            minirdr.close()


def test_the_routine_is_registered() -> None:
    assert Routine.MRxQueryOpen in SmbMiniRdr.implemented_routines()


def test_a_stat_is_one_compound_and_answers_what_create_answers(rig: Rig) -> None:
    answer = rig.query_open("qo.txt")
    assert rig.sent.sends == [["SMB2CreateRequest", "SMB2QueryInfoRequest", "SMB2CloseRequest"]]
    assert answer.status == S.STATUS_SUCCESS
    assert answer.information == CreateInformation.FILE_OPENED
    assert "srv_open" not in answer.result
    assert (answer.result["size"], answer.result["directory"]) == (11, False)
    opened = rig.create("qo.txt")
    try:
        assert opened.information == CreateInformation.FILE_OPENED
        expected = {k: v for k, v in opened.result.items() if k not in _NOT_COMPARED}
        assert {k: v for k, v in answer.result.items() if k not in _NOT_COMPARED} == expected
    finally:
        rig.close(opened)


def test_a_directory_and_the_share_root(rig: Rig) -> None:
    for path in ("qodir", ""):
        answer = rig.query_open(path)
        assert len(rig.sent.sends) == 1 and len(rig.sent.sends[0]) == 3
        assert answer.result["directory"] is True
        assert answer.result["size"] == 0


def test_no_handle_is_left_open(rig: Rig) -> None:
    rig.query_open("qo.txt")
    exclusive = CreateParameters(
        desired_access=int(Access.GENERIC_READ | Access.DELETE),
        share_access=0,
        disposition=int(CreateDisposition.FILE_OPEN),
    )
    rig.close(rig.create("qo.txt", exclusive))  # no sharing violation with a leftover open


@pytest.mark.parametrize(
    ("path", "options"),
    [
        ("missing.txt", 0),
        ("nodir\\missing.txt", 0),
        ("qodir", CreateOptions.FILE_NON_DIRECTORY_FILE),
        ("qo.txt", CreateOptions.FILE_DIRECTORY_FILE),
        ("qo.txt\\below", 0),
    ],
)
def test_a_failure_is_the_status_create_gives_in_one_compound(
    rig: Rig, path: str, options: int
) -> None:
    params = CreateParameters(
        desired_access=STAT.desired_access,
        share_access=7,
        disposition=int(CreateDisposition.FILE_OPEN),
        create_options=int(options),
    )
    status = rig.status(rig.query_open, path, params)
    assert len(rig.sent.sends) == 1
    assert status != S.STATUS_SUCCESS
    assert status == rig.status(rig.create, path, params)


def test_an_open_for_more_than_attributes_is_refused_without_a_message(rig: Rig) -> None:
    for params in (
        CreateParameters(desired_access=int(Access.GENERIC_READ), share_access=7, disposition=1),
        CreateParameters(desired_access=STAT.desired_access, share_access=7, disposition=3),
    ):
        with pytest.raises(NtStatusError) as ei:
            rig.query_open("qo.txt", params)
        assert ei.value.status == S.STATUS_INVALID_PARAMETER
        assert rig.sent.sends == []

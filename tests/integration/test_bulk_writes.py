"""Large writes on SFTP (OpenSSH) and SMB (Samba), the mini-redirectors driven directly: one
MRxLowIOSubmit[WRITE] goes to the server as several WRITE requests in flight, lands byte-exact,
and is answered only when every piece is acknowledged; a failed piece fails the whole write
with that piece's status (no later piece makes it look written)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from rdbss.actors.minirdr_host import completion, execute
from rdbss.minirdrs.base import MiniRdr, Result
from rdbss.minirdrs.sftp.minirdr import SftpMiniRdr
from rdbss.minirdrs.smb.minirdr import SmbMiniRdr
from rdbss.testing.backend import minirdr_options, smb_config, write_password_file
from rdbss.wire import (
    Access,
    CreateDisposition,
    CreateParameters,
    IrpMj,
    LowIoOp,
    LowIoParameters,
    NtStatus,
    Routine,
    RxCompletion,
    RxContext,
)
from tests.conformance.backend_sftp import SERVER, sftp_config
from tests.servers.fixtures import SambaServer, SshServer, require_or_skip

S = NtStatus
SHARE = "data"
SIZE = 20 << 20


def _pattern(size: int) -> bytes:
    """Bytes that differ from piece to piece (a piece written at the wrong offset shows)."""
    block = bytes(range(251)) * 16
    counter = b"".join(i.to_bytes(4, "little") for i in range(size // 4096 + 1))
    out = bytearray()
    for i in range(size // len(block) + 1):
        out += block[i % 251 :] + block[: i % 251] + counter[4 * i : 4 * i + 4]
    return bytes(out[:size])


DATA = _pattern(SIZE)


class Completions:
    """Where a mini-redirector's later completions (``complete_later``) go, by request id, as
    the host's bridge would send them."""

    WAIT_S = 60.0

    def __init__(self, minirdr: MiniRdr) -> None:
        self._done: dict[int, RxCompletion] = {}
        self._cond = threading.Condition()
        minirdr.attach_completion(self._complete)

    def _complete(self, ctx: RxContext, result: Result) -> None:
        with self._cond:
            self._done[ctx.request_id] = completion(ctx, result)
            self._cond.notify_all()

    def wait(self, request_id: int) -> RxCompletion:
        with self._cond:
            assert self._cond.wait_for(lambda: request_id in self._done, self.WAIT_S), (
                f"request {request_id} was not completed"
            )
            return self._done.pop(request_id)


class Rig:
    """A mini-redirector with one SrvCall and VNetRoot, and the server's folder of the share."""

    def __init__(self, minirdr: MiniRdr, srv_call: str, net_root: str, folder: Path) -> None:
        self.minirdr, self.srv_call, self.net_root = minirdr, srv_call, net_root
        self.folder = folder
        self.later = Completions(minirdr)

    def send(self, ctx: RxContext, payload: bytes | None = None) -> RxCompletion | None:
        """Run one routine; its answer, or None when it answered STATUS_PENDING."""
        ctx.srv_call, ctx.net_root = self.srv_call, self.net_root
        answer = execute(self.minirdr, ctx, None if payload is None else memoryview(payload))
        return None if answer is None else answer[0]

    def run(self, ctx: RxContext, payload: bytes | None = None) -> RxCompletion:
        """Run one routine and wait for its answer (a pending one: its completion)."""
        answer = self.send(ctx, payload)
        return answer if answer is not None else self.later.wait(ctx.request_id)

    def setup(self) -> None:
        for routine in (Routine.MRxCreateSrvCall, Routine.MRxCreateVNetRoot):
            assert self.run(RxContext(1, IrpMj.CREATE, routine=routine)).status == S.STATUS_SUCCESS

    def create(self, name: str) -> int:
        params = CreateParameters(
            desired_access=int(Access.GENERIC_READ | Access.GENERIC_WRITE),
            share_access=7,
            disposition=int(CreateDisposition.FILE_OVERWRITE_IF),
        )
        ctx = RxContext(2, IrpMj.CREATE, routine=Routine.MRxCreate, path=name, create=params)
        answer = self.run(ctx)
        assert answer.status == S.STATUS_SUCCESS, answer.message
        return int(answer.result["srv_open"])

    def write(self, srv_open: int, data: bytes, offset: int = 0) -> RxCompletion:
        lowio = LowIoParameters(operation=LowIoOp.WRITE, offset=offset, length=len(data))
        ctx = RxContext(
            3, IrpMj.WRITE, routine=Routine.MRxLowIOSubmit, srv_open=srv_open, lowio=lowio
        )
        return self.run(ctx, data)

    def close(self, srv_open: int) -> None:
        ctx = RxContext(4, IrpMj.CLOSE, routine=Routine.MRxCloseSrvOpen, srv_open=srv_open)
        assert self.run(ctx).status == S.STATUS_SUCCESS


@pytest.fixture(scope="module")
def sftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    require_or_skip(SshServer.missing_binaries(), "OpenSSH (sshd)")
    base = tmp_path_factory.mktemp("sftp-bulk")
    with SshServer(base / "ssh") as server:
        share = server.root_dir / SHARE
        share.mkdir(parents=True)
        minirdr = SftpMiniRdr("sftp", minirdr_options(sftp_config(server, {SHARE: share})))
        try:
            rig = Rig(minirdr, SERVER, SHARE, share)
            rig.setup()
            yield rig
        finally:
            minirdr.close()


@pytest.fixture(scope="module")
def smb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    require_or_skip(SambaServer.missing_binaries(), "Samba (smbd)")
    base: Path = tmp_path_factory.mktemp("smb-bulk")
    with SambaServer(base / "smb") as server:
        password = write_password_file(base / "pw", server.password)
        minirdr = SmbMiniRdr("smb", minirdr_options(smb_config(server, password, timeout=30.0)))
        try:
            rig = Rig(minirdr, "sambatest", server.share_name, server.share_path)
            rig.setup()
            yield rig
        finally:
            minirdr.close()


# --------------------------------------------------------------------------------------------
# SFTP
# --------------------------------------------------------------------------------------------


class _SftpWrites:
    """The SFTP WRITE requests of a connection: the most in flight at once, and (``fail_at``)
    the offset of one piece the server is made to refuse."""

    def __init__(self, rig: Rig, fail_at: int | None = None) -> None:
        minirdr = rig.minirdr
        assert isinstance(minirdr, SftpMiniRdr)
        self.handler: Any = minirdr._sessions.conn_of(SERVER).client()._handler
        self.fail_at = fail_at
        self.in_flight = self.most = 0
        self.offsets: list[int] = []

    def __enter__(self) -> _SftpWrites:
        write = self.handler.write

        async def counted(handle: bytes, offset: int, data: bytes) -> Any:
            self.offsets.append(offset)
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            try:
                if offset == self.fail_at:
                    raise asyncssh.SFTPPermissionDenied("refused for the test")
                return await write(handle, offset, data)
            finally:
                self.in_flight -= 1

        self.handler.write = counted
        return self

    def __exit__(self, *exc: object) -> None:
        del self.handler.write


def test_a_failed_middle_piece_fails_the_sftp_write(sftp: Rig) -> None:
    srv_open = sftp.create("broken.bin")
    try:
        with _SftpWrites(sftp) as probe:
            assert sftp.write(srv_open, DATA[: 1 << 20]).status == S.STATUS_SUCCESS
        middle = sorted(probe.offsets)[len(probe.offsets) // 2]
        with _SftpWrites(sftp, fail_at=middle) as writes:
            answer = sftp.write(srv_open, DATA[: 1 << 20])
        assert middle in writes.offsets
        assert answer.status == S.STATUS_ACCESS_DENIED, answer.message
        assert not answer.information
    finally:
        sftp.close(srv_open)


# --------------------------------------------------------------------------------------------
# SMB
# --------------------------------------------------------------------------------------------


class _SmbWrites:
    """The SMB2 WRITE requests of a connection: the most in flight at once, and (``fail_at``)
    the offset of one piece sent on a closed FileId, which the server refuses."""

    def __init__(self, rig: Rig, fail_at: int | None = None) -> None:
        minirdr = rig.minirdr
        assert isinstance(minirdr, SmbMiniRdr)
        self.connection: Any = minirdr._link(RxContext(0, 0, srv_call=rig.srv_call)).connection
        self.fail_at = fail_at
        self.sent: set[int] = set()  # message ids of writes not answered yet
        self.most = 0
        self.offsets: list[int] = []

    def __enter__(self) -> _SmbWrites:
        send, receive = self.connection.send, self.connection.receive

        def counted_send(message: Any, *args: Any, **kwargs: Any) -> Any:
            if type(message).__name__ != "SMB2WriteRequest":
                return send(message, *args, **kwargs)
            offset = message["offset"].get_value()
            self.offsets.append(offset)
            if offset == self.fail_at:
                message["file_id"] = b"\xff" * 16
            request = send(message, *args, **kwargs)
            self.sent.add(request.message["message_id"].get_value())
            self.most = max(self.most, len(self.sent))
            return request

        def counted_receive(request: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return receive(request, *args, **kwargs)
            finally:
                self.sent.discard(request.message["message_id"].get_value())

        self.connection.send = counted_send
        self.connection.receive = counted_receive
        return self

    def __exit__(self, *exc: object) -> None:
        del self.connection.send
        del self.connection.receive


def test_a_failed_middle_piece_fails_the_smb_write(smb: Rig) -> None:
    srv_open = smb.create("broken.bin")
    try:
        with _SmbWrites(smb) as probe:
            assert smb.write(srv_open, DATA[: 4 << 20]).status == S.STATUS_SUCCESS
        middle = sorted(probe.offsets)[len(probe.offsets) // 2]
        assert middle > 0
        with _SmbWrites(smb, fail_at=middle) as writes:
            answer = smb.write(srv_open, DATA[: 4 << 20])
        assert middle in writes.offsets
        assert answer.status in (S.STATUS_FILE_CLOSED, S.STATUS_INVALID_HANDLE), answer.message
        assert not answer.information
        assert not writes.sent  # every answer was collected before the write answered
        after = smb.write(srv_open, b"still usable")  # the handle and the link stay usable
        assert after.status == S.STATUS_SUCCESS, after.message
    finally:
        smb.close(srv_open)


# --------------------------------------------------------------------------------------------
# Both
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("backend", "probe"), [("sftp", _SftpWrites), ("smb", _SmbWrites)])
def test_a_large_write_keeps_pieces_in_flight_and_lands_byte_exact(
    request: pytest.FixtureRequest, backend: str, probe: type[_SftpWrites | _SmbWrites]
) -> None:
    rig: Rig = request.getfixturevalue(backend)
    srv_open = rig.create("big.bin")
    try:
        with probe(rig) as writes:
            answer = rig.write(srv_open, DATA)
        assert answer.status == S.STATUS_SUCCESS, answer.message
        assert answer.information == SIZE
        assert len(writes.offsets) > 1
        assert writes.most > 1
    finally:
        rig.close(srv_open)
    assert (rig.folder / "big.bin").read_bytes() == DATA

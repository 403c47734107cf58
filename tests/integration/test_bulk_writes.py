"""Large writes on SFTP (OpenSSH) and SMB (Samba), the mini-redirectors driven directly: one
MRxLowIOSubmit[WRITE] goes to the server as several WRITE requests in flight, lands byte-exact,
and is answered only when every piece is acknowledged; a failed piece fails the whole write
with that piece's status (no later piece makes it look written).

SFTP pipelines large writes (rdbss.model.pipelining): each is answered STATUS_PENDING and
completes when the server acknowledged it, several writes in flight at once; a read, a flush
or a close waits for them (the ordering barrier); overlapping writes land in order; a failure
reaches its write's answer, or (its request cancelled) the next close."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from rdbss.actors.minirdr_host import completion, execute
from rdbss.minirdrs.base import MiniRdr, Result
from rdbss.minirdrs.sftp.minirdr import SftpMiniRdr
from rdbss.minirdrs.sftp.session import host_ciphers
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
            done = completion(ctx, result)
            if result.payload is not None:
                done.result = bytes(result.payload)  # a READ's bytes, for the test to see
            self._done[ctx.request_id] = done
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
        self.ids = itertools.count(100)

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

    def lowio(self, srv_open: int, op: LowIoOp, offset: int, length: int) -> RxContext:
        major = IrpMj.WRITE if op == LowIoOp.WRITE else IrpMj.READ
        lowio = LowIoParameters(operation=op, offset=offset, length=length)
        return RxContext(
            next(self.ids), major, routine=Routine.MRxLowIOSubmit, srv_open=srv_open, lowio=lowio
        )

    def write(self, srv_open: int, data: bytes, offset: int = 0) -> RxCompletion:
        return self.run(self.lowio(srv_open, LowIoOp.WRITE, offset, len(data)), data)

    def write_later(self, srv_open: int, data: bytes, offset: int = 0) -> int:
        """Send a write that must answer STATUS_PENDING; its request id."""
        ctx = self.lowio(srv_open, LowIoOp.WRITE, offset, len(data))
        assert self.send(ctx, data) is None, "a large write is answered later"
        return ctx.request_id

    def read(self, srv_open: int, offset: int, length: int) -> RxCompletion:
        """A READ's answer, its bytes as ``result`` (a large one is answered later)."""
        ctx = self.lowio(srv_open, LowIoOp.READ, offset, length)
        ctx.srv_call, ctx.net_root = self.srv_call, self.net_root
        answer = execute(self.minirdr, ctx, None)
        if answer is None:
            return self.later.wait(ctx.request_id)
        done, payload = answer
        done.result = bytes(payload) if payload is not None else b""
        return done

    def close(self, srv_open: int) -> None:
        answer = self.close_answer(srv_open)
        assert answer.status == S.STATUS_SUCCESS, answer.message

    def close_answer(self, srv_open: int) -> RxCompletion:
        ctx = RxContext(
            next(self.ids), IrpMj.CLOSE, routine=Routine.MRxCloseSrvOpen, srv_open=srv_open
        )
        return self.run(ctx)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    require_or_skip(SshServer.missing_binaries(), "OpenSSH (sshd)")
    base = tmp_path_factory.mktemp("sftp-bulk")
    with SshServer(base / "ssh") as server:
        (server.root_dir / SHARE).mkdir(parents=True)
        yield server


@contextlib.contextmanager
def _sftp_rig(server: SshServer) -> Iterator[Rig]:
    share = server.root_dir / SHARE
    minirdr = SftpMiniRdr("sftp", minirdr_options(sftp_config(server, {SHARE: share})))
    try:
        rig = Rig(minirdr, SERVER, SHARE, share)
        rig.setup()
        yield rig
    finally:
        minirdr.close()


@pytest.fixture(scope="module")
def sftp(sshd: SshServer) -> Iterator[Rig]:
    with _sftp_rig(sshd) as rig:
        yield rig


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

    def __init__(self, rig: Rig, fail_at: int | None = None, *, hold: bool = False) -> None:
        minirdr = rig.minirdr
        assert isinstance(minirdr, SftpMiniRdr)
        self.handler: Any = minirdr._sessions.conn_of(SERVER).client()._handler
        self.fail_at = fail_at
        self.in_flight = self.most = 0
        self.offsets: list[int] = []
        # with ``hold``: each WRITE request waits here, sent but unanswered, until ``release``
        self.released = threading.Event()
        if not hold:
            self.released.set()

    def release(self, fail_at: int | None = None) -> None:
        if fail_at is not None:
            self.fail_at = fail_at
        self.released.set()

    def wait_for(self, seen: Callable[[list[int]], bool]) -> None:
        """Wait (a bounded while) until the offsets of the requests sent so far pass ``seen``."""
        deadline = time.monotonic() + 30.0
        while not seen(list(self.offsets)):
            assert time.monotonic() < deadline, f"not seen; sent so far: {self.offsets}"
            time.sleep(0.01)

    def __enter__(self) -> _SftpWrites:
        write = self.handler.write

        async def counted(handle: bytes, offset: int, data: bytes) -> Any:
            self.offsets.append(offset)
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            try:
                while not self.released.is_set():
                    await asyncio.sleep(0.005)
                if offset == self.fail_at:
                    raise asyncssh.SFTPPermissionDenied("refused for the test")
                return await write(handle, offset, data)
            finally:
                self.in_flight -= 1

        self.handler.write = counted
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
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


def test_the_sftp_connection_uses_aes_gcm_on_a_cpu_with_aes_instructions(sftp: Rig) -> None:
    minirdr = sftp.minirdr
    assert isinstance(minirdr, SftpMiniRdr)
    ssh = minirdr._sessions.conn_of(SERVER).ssh
    assert ssh is not None
    cipher = ssh.get_extra_info("send_cipher")
    if host_ciphers() is None:
        assert cipher == "chacha20-poly1305@openssh.com"  # asyncssh's first choice
    else:
        assert cipher == "aes128-gcm@openssh.com"


HALF = 2 << 20


def test_large_sftp_writes_are_answered_later_with_several_in_flight(sftp: Rig) -> None:
    srv_open = sftp.create("pipelined.bin")
    try:
        with _SftpWrites(sftp, hold=True) as writes:
            first = sftp.write_later(srv_open, DATA[:HALF], 0)
            second = sftp.write_later(srv_open, DATA[HALF : 2 * HALF], HALF)
            # the second write's requests go out while none of the first's is answered
            writes.wait_for(lambda sent: any(at >= HALF for at in sent))
            assert min(writes.offsets) == 0
            writes.release()
            for request_id in (first, second):
                answer = sftp.later.wait(request_id)
                assert answer.status == S.STATUS_SUCCESS, answer.message
                assert answer.information == HALF
    finally:
        sftp.close(srv_open)
    assert (sftp.folder / "pipelined.bin").read_bytes() == DATA[: 2 * HALF]


def test_a_read_right_after_a_pipelined_write_sees_its_data(sftp: Rig) -> None:
    srv_open = sftp.create("barrier.bin")
    try:
        with _SftpWrites(sftp, hold=True) as writes:
            request_id = sftp.write_later(srv_open, DATA[:HALF])
            writes.wait_for(bool)
            reads: list[RxCompletion] = []
            reader = threading.Thread(target=lambda: reads.append(sftp.read(srv_open, 0, HALF)))
            reader.start()
            reader.join(0.3)  # a read that overtook the held write would be back by now
            writes.release()
            reader.join(30.0)
        assert sftp.later.wait(request_id).status == S.STATUS_SUCCESS
        assert reads, "the read did not finish"
        assert reads[0].status == S.STATUS_SUCCESS, reads[0].message
        assert reads[0].result == DATA[:HALF]
    finally:
        sftp.close(srv_open)


def test_large_reads_are_answered_later_after_the_writes_in_flight(sftp: Rig) -> None:
    srv_open = sftp.create("reads.bin")
    try:
        assert sftp.write(srv_open, DATA[: 2 * HALF]).status == S.STATUS_SUCCESS
        with _SftpWrites(sftp, hold=True) as writes:
            request_id = sftp.write_later(srv_open, DATA[2 * HALF : 3 * HALF], 2 * HALF)
            writes.wait_for(bool)
            reads: list[RxCompletion] = []

            def read_all() -> None:
                ids = []
                for at in (0, HALF, 2 * HALF):  # all three are taken before any answers
                    ctx = sftp.lowio(srv_open, LowIoOp.READ, at, HALF)
                    assert sftp.send(ctx) is None, "a large read is answered later"
                    ids.append(ctx.request_id)
                reads.extend(sftp.later.wait(i) for i in ids)

            reader = threading.Thread(target=read_all)
            reader.start()
            reader.join(0.3)  # reads that overtook the held write would be back by now
            writes.release()
            reader.join(30.0)
        assert sftp.later.wait(request_id).status == S.STATUS_SUCCESS
        assert [r.status for r in reads] == [S.STATUS_SUCCESS] * 3, [r.message for r in reads]
        assert b"".join(r.result for r in reads) == DATA[: 3 * HALF]
        past = sftp.read(srv_open, 4 * HALF, HALF)
        assert past.status == S.STATUS_END_OF_FILE, past.message
    finally:
        sftp.close(srv_open)


def test_overlapping_pipelined_writes_land_in_order(sftp: Rig) -> None:
    srv_open = sftp.create("overlap.bin")
    older, newer = DATA[:HALF], DATA[HALF : 2 * HALF]
    try:
        with _SftpWrites(sftp, hold=True) as writes:
            ids = [sftp.write_later(srv_open, older), sftp.write_later(srv_open, newer)]
            writes.wait_for(bool)
            writes.release()
            for request_id in ids:
                assert sftp.later.wait(request_id).status == S.STATUS_SUCCESS
    finally:
        sftp.close(srv_open)
    assert (sftp.folder / "overlap.bin").read_bytes() == newer


def test_a_failure_mid_pipeline_fails_its_own_write_only(sftp: Rig) -> None:
    srv_open = sftp.create("mid.bin")
    try:
        with _SftpWrites(sftp, hold=True) as writes:
            first = sftp.write_later(srv_open, DATA[:HALF], 0)
            second = sftp.write_later(srv_open, DATA[HALF : 2 * HALF], HALF)
            writes.wait_for(lambda sent: len([at for at in sent if at > HALF]) >= 2)
            writes.release(fail_at=sorted(at for at in writes.offsets if at > HALF)[0])
            ok, failed = sftp.later.wait(first), sftp.later.wait(second)
        assert ok.status == S.STATUS_SUCCESS, ok.message
        assert failed.status == S.STATUS_ACCESS_DENIED, failed.message
        assert not failed.information
    finally:
        sftp.close(srv_open)


def test_a_close_after_pipelined_writes_returns_once_the_server_has_the_data(sftp: Rig) -> None:
    srv_open = sftp.create("closed.bin")
    with _SftpWrites(sftp, hold=True) as writes:
        ids = [sftp.write_later(srv_open, DATA[k : k + HALF], k) for k in range(0, SIZE, HALF)]
        writes.wait_for(bool)
        closes: list[RxCompletion] = []
        closing = threading.Thread(target=lambda: closes.append(sftp.close_answer(srv_open)))
        closing.start()
        closing.join(0.3)  # a close that overtook the held writes would be back by now
        writes.release()
        closing.join(60.0)
        assert closes, "the close did not finish"
        assert closes[0].status == S.STATUS_SUCCESS, closes[0].message
        # read straight from the server's folder the moment the close is answered
        assert (sftp.folder / "closed.bin").read_bytes() == DATA
    for request_id in ids:
        assert sftp.later.wait(request_id).status == S.STATUS_SUCCESS


def test_a_cancelled_write_that_fails_is_reported_by_the_close(sftp: Rig) -> None:
    srv_open = sftp.create("cancelled.bin")
    with _SftpWrites(sftp, hold=True) as writes:
        request_id = sftp.write_later(srv_open, DATA[:HALF])
        writes.wait_for(bool)
        assert sftp.minirdr.cancel(request_id)
        assert sftp.later.wait(request_id).status == S.STATUS_CANCELLED
        assert sftp.minirdr.pending_requests() == 0
        writes.release(fail_at=0)
        answer = sftp.close_answer(srv_open)
    assert answer.status == S.STATUS_ACCESS_DENIED, answer.message
    assert "earlier write" in answer.message


def test_a_connection_lost_mid_pipeline_fails_the_writes_in_flight(sshd: SshServer) -> None:
    with _sftp_rig(sshd) as rig:
        srv_open = rig.create("lost.bin")
        with _SftpWrites(rig, hold=True) as writes:
            ids = [rig.write_later(srv_open, DATA[k : k + HALF], k) for k in (0, HALF)]
            writes.wait_for(lambda sent: any(at >= HALF for at in sent))
            minirdr = rig.minirdr
            assert isinstance(minirdr, SftpMiniRdr)
            conn = minirdr._sessions.conn_of(SERVER)
            assert conn.ssh is not None
            ssh = conn.ssh

            async def cut() -> None:
                ssh.abort()

            minirdr._sessions.loop.run(cut, 5.0)
            writes.release()
            answers = [rig.later.wait(request_id) for request_id in ids]
        for answer in answers:
            assert answer.status == S.STATUS_CONNECTION_DISCONNECTED, answer.message
            assert not answer.information
        assert rig.close_answer(srv_open).status == S.STATUS_SUCCESS  # nothing was claimed


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

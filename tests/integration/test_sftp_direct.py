"""The SFTP mini-redirector driven directly (no daemon), against a private OpenSSH sshd.

MRxQueryOpen answers as its create would for an open for attributes, status for status, and
asks the server in one round trip (the requests are counted as asyncssh sends them); symbolic
links are refused as names and passed through as parents that stay in the share."""

from __future__ import annotations

import os
import queue
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncssh.sftp import FXP_CLOSE, FXP_LSTAT, FXP_READ, FXP_REALPATH, FXP_STAT, FXP_WRITE

from rdbss.actors.minirdr_host import MiniRdrHost, completion, execute, failure
from rdbss.minirdrs.base import Result
from rdbss.minirdrs.primitives import ChainItem
from rdbss.minirdrs.sftp.minirdr import SftpMiniRdr
from rdbss.model.compound import ChainKind
from rdbss.testing.backend import minirdr_options
from rdbss.testing.bridge import RecordingBridge
from rdbss.wire import (
    Access,
    Compound,
    CreateDisposition,
    CreateOptions,
    CreateParameters,
    FileInformationClass,
    InfoParameters,
    IrpMj,
    LowIoParameters,
    NtStatus,
    NtStatusError,
    Routine,
    RxCompletion,
    RxContext,
)
from rdbss.wire.constants import FileAttributes, LowIoOp, RxFlags
from tests.chains import Answer, run_compound
from tests.conformance.backend_sftp import SERVER, sftp_config
from tests.servers.fixtures import SshServer, require_or_skip

S = NtStatus
Info = FileInformationClass
SHARE = "data"


@pytest.fixture(scope="module")
def sftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SftpMiniRdr]:
    require_or_skip(SshServer.missing_binaries(), "OpenSSH (sshd)")
    base = tmp_path_factory.mktemp("sftp-query-open")
    with SshServer(base / "ssh") as server:
        share = server.root_dir / SHARE
        (share / "d").mkdir(parents=True)
        (share / "d" / "g.txt").write_bytes(b"abc")
        (share / "f.txt").write_bytes(b"0123456789")
        (share / "link").symlink_to("f.txt")
        (share / "out").symlink_to(server.root_dir)
        (share / "dangling").symlink_to("nowhere")
        os.mkfifo(share / "fifo")
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(share / "sock"))
        sock.close()
        minirdr = SftpMiniRdr("sftp", minirdr_options(sftp_config(server, {SHARE: share})))
        try:
            for routine in (Routine.MRxCreateSrvCall, Routine.MRxCreateVNetRoot):
                ctx = RxContext(1, IrpMj.CREATE, routine=routine, srv_call=SERVER, net_root=SHARE)
                assert _execute(minirdr, ctx).status == S.STATUS_SUCCESS
            yield minirdr
        finally:
            minirdr.close()


def _execute(minirdr: SftpMiniRdr, ctx: RxContext) -> RxCompletion:
    answer = execute(minirdr, ctx, None)
    assert answer is not None
    return answer[0]


def _run(
    minirdr: SftpMiniRdr,
    routine: Routine,
    path: str,
    options: int,
    access: int = Access.FILE_READ_ATTRIBUTES,
    disposition: int = CreateDisposition.FILE_OPEN,
) -> RxCompletion:
    return _execute(minirdr, _create_ctx(routine, path, options, access, disposition))


def _create_ctx(
    routine: Routine,
    path: str,
    options: int = 0,
    access: int = Access.FILE_READ_ATTRIBUTES,
    disposition: int = CreateDisposition.FILE_OPEN,
    srv_call: str = SERVER,
) -> RxContext:
    return RxContext(
        1,
        IrpMj.CREATE,
        routine=routine,
        srv_call=srv_call,
        net_root=SHARE,
        path=path,
        create=CreateParameters(
            desired_access=access, create_options=options, disposition=disposition
        ),
    )


def _close(minirdr: SftpMiniRdr, srv_open: int) -> None:
    ctx = RxContext(
        2,
        IrpMj.CLOSE,
        routine=Routine.MRxCloseSrvOpen,
        srv_call=SERVER,
        net_root=SHARE,
        srv_open=srv_open,
    )
    assert _execute(minirdr, ctx).status == S.STATUS_SUCCESS


@pytest.mark.parametrize(
    "options", [0, CreateOptions.FILE_DIRECTORY_FILE, CreateOptions.FILE_NON_DIRECTORY_FILE]
)
@pytest.mark.parametrize(
    "path",
    [
        "f.txt",
        "d",
        r"d\g.txt",
        "",
        "link",
        "out",
        rf"out\{SHARE}\f.txt",
        "dangling",
        "fifo",
        "sock",
        "missing",
        r"missing\f.txt",
        r"f.txt\x",
        r"..\x",
        "d\\",
        "con:x",
    ],
)
def test_the_sftp_query_open_answers_as_its_create_does(
    sftp: SftpMiniRdr, path: str, options: int
) -> None:
    created = _run(sftp, Routine.MRxCreate, path, options)
    queried = _run(sftp, Routine.MRxQueryOpen, path, options)
    assert (queried.status, queried.information) == (created.status, created.information)
    if created.status == S.STATUS_SUCCESS:
        srv_open = created.result.pop("srv_open")
        assert queried.result == created.result  # every field of the file info
        _close(sftp, srv_open)
    assert len(sftp._opens) == 0


class _Requests:
    """The SFTP requests sent on a connection, each with the number of answers that had come
    back when it was sent: all sent before the first answer is one round trip."""

    def __init__(self, minirdr: SftpMiniRdr) -> None:
        self.handler: Any = minirdr._sessions.conn_of(SERVER).client()._handler
        self.sent: list[tuple[int, int]] = []
        self.answered = 0

    def __enter__(self) -> _Requests:
        make: Callable[..., Awaitable[object]] = self.handler._make_request

        async def counted(pkttype: int, *args: bytes) -> object:
            self.sent.append((pkttype, self.answered))
            try:
                return await make(pkttype, *args)
            finally:
                self.answered += 1

        self.handler._make_request = counted
        return self

    def __exit__(self, *exc: object) -> None:
        del self.handler._make_request

    @property
    def kinds(self) -> list[int]:
        return [kind for kind, _ in self.sent]

    @property
    def round_trips(self) -> int:
        return len({answered for _, answered in self.sent})


@pytest.mark.parametrize(
    ("path", "kinds", "status"),
    [
        ("f.txt", [FXP_LSTAT], S.STATUS_SUCCESS),  # a name in the share's folder: one LSTAT
        ("missing", [FXP_LSTAT], S.STATUS_OBJECT_NAME_NOT_FOUND),
        ("", [FXP_STAT], S.STATUS_SUCCESS),  # the share's folder itself
        ("d", [FXP_LSTAT], S.STATUS_SUCCESS),
        # in a sub-folder: the parent resolved alongside; the LSTAT says the parent is a folder
        (r"d\g.txt", [FXP_REALPATH, FXP_LSTAT], S.STATUS_SUCCESS),
    ],
)
def test_a_query_open_is_one_round_trip(
    sftp: SftpMiniRdr, path: str, kinds: list[int], status: int
) -> None:
    with _Requests(sftp) as requests:
        answer = _run(sftp, Routine.MRxQueryOpen, path, 0)
    assert answer.status == status
    assert sorted(requests.kinds) == sorted(kinds)
    assert requests.round_trips == 1


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (r"missing\f.txt", S.STATUS_OBJECT_PATH_NOT_FOUND),
        (r"d\missing.txt", S.STATUS_OBJECT_NAME_NOT_FOUND),
        (r"f.txt\g.txt", S.STATUS_OBJECT_PATH_NOT_FOUND),  # the "parent" is a file
    ],
)
def test_a_query_open_of_a_missing_name_asks_again_why(
    sftp: SftpMiniRdr, path: str, status: int
) -> None:
    """Not found in a sub-folder: a second round trip with the parent's stat says which
    status (the parent missing or not a folder, or the name missing)."""
    with _Requests(sftp) as requests:
        answer = _run(sftp, Routine.MRxQueryOpen, path, 0)
    assert answer.status == status
    assert sorted(requests.kinds) == sorted(
        [FXP_REALPATH, FXP_LSTAT, FXP_REALPATH, FXP_STAT, FXP_LSTAT]
    )
    assert requests.round_trips == 2


@pytest.mark.parametrize(
    ("disposition", "path", "lookup"),
    [
        # an open of an existing file: the name is expected, its parent's stat is left out
        (CreateDisposition.FILE_OPEN, r"d\g.txt", [FXP_REALPATH, FXP_LSTAT]),
        # a create that may make the name: a missing name is no exception, all three at once
        (CreateDisposition.FILE_CREATE, r"d\new.txt", [FXP_REALPATH, FXP_STAT, FXP_LSTAT]),
        (CreateDisposition.FILE_OPEN_IF, r"d\g.txt", [FXP_REALPATH, FXP_STAT, FXP_LSTAT]),
    ],
)
def test_a_create_looks_up_in_one_round_trip(
    sftp: SftpMiniRdr, disposition: int, path: str, lookup: list[int]
) -> None:
    with _Requests(sftp) as requests:
        access = Access.GENERIC_READ | Access.GENERIC_WRITE
        answer = _run(sftp, Routine.MRxCreate, path, 0, access, disposition)
    assert answer.status == S.STATUS_SUCCESS, answer.message
    _close(sftp, answer.result["srv_open"])
    if disposition == CreateDisposition.FILE_CREATE:
        (Path(sftp.settings.servers[SERVER].shares[SHARE][1]) / path.replace("\\", "/")).unlink()
    assert sorted(kind for kind, answered in requests.sent if answered == 0) == sorted(lookup)


def _direct(minirdr: SftpMiniRdr, ctx: RxContext) -> Result | Exception | str | None:
    """What the direct path answers for ``ctx`` ("not taken" when it does not take it)."""
    answers: queue.Queue[Result | Exception | None] = queue.Queue()
    if not minirdr.start_direct(ctx, answers.put):
        return "not taken"
    return answers.get(timeout=10)


@pytest.mark.parametrize(
    "path",
    ["f.txt", "missing", "", "d", r"d\g.txt", r"missing\f.txt", r"f.txt\g.txt",
     rf"out\{SHARE}", "fifo", "sock"],
)  # fmt: skip
def test_a_stat_on_the_direct_path_answers_as_on_the_worker(sftp: SftpMiniRdr, path: str) -> None:
    on_worker = _run(sftp, Routine.MRxQueryOpen, path, 0)
    ctx = _create_ctx(Routine.MRxQueryOpen, path)
    outcome = _direct(sftp, ctx)
    assert isinstance(outcome, Result | Exception), outcome
    direct = failure(ctx, outcome) if isinstance(outcome, Exception) else completion(ctx, outcome)
    assert (direct.status, direct.information, direct.result) == (
        on_worker.status,
        on_worker.information,
        on_worker.result,
    )


def test_a_symbolic_link_on_the_direct_path_goes_back_to_the_worker(sftp: SftpMiniRdr) -> None:
    assert _direct(sftp, _create_ctx(Routine.MRxQueryOpen, "link")) is None
    assert _direct(sftp, _create_ctx(Routine.MRxQueryOpen, "dangling")) is None


@pytest.mark.parametrize(
    "ctx",
    [
        _create_ctx(Routine.MRxCreate, "f.txt"),  # only a stat
        _create_ctx(Routine.MRxQueryOpen, "f.txt", srv_call="elsewhere"),  # no such connection
    ],
)
def test_the_direct_path_takes_only_a_stat_on_a_connection_that_is_up(
    sftp: SftpMiniRdr, ctx: RxContext
) -> None:
    assert _direct(sftp, ctx) == "not taken"


def test_the_sftp_minirdr_registers_query_open() -> None:
    assert Routine.MRxQueryOpen in SftpMiniRdr.implemented_routines()


def test_a_file_being_deleted_is_delete_pending_for_a_query_open_too(sftp: SftpMiniRdr) -> None:
    (Path(sftp.settings.servers[SERVER].shares[SHARE][1]) / "gone.txt").write_bytes(b"x")
    deleting = _run(sftp, Routine.MRxCreate, "gone.txt", CreateOptions.FILE_DELETE_ON_CLOSE,
                    Access.DELETE)  # fmt: skip
    assert deleting.status == S.STATUS_SUCCESS
    try:
        assert _run(sftp, Routine.MRxQueryOpen, "gone.txt", 0).status == S.STATUS_DELETE_PENDING
        assert _run(sftp, Routine.MRxCreate, "gone.txt", 0).status == S.STATUS_DELETE_PENDING
    finally:
        _close(sftp, deleting.result["srv_open"])
    assert _run(sftp, Routine.MRxQueryOpen, "gone.txt", 0).status == S.STATUS_OBJECT_NAME_NOT_FOUND


def test_a_query_open_for_more_than_attributes_is_refused(sftp: SftpMiniRdr) -> None:
    answer = _run(sftp, Routine.MRxQueryOpen, "f.txt", 0, Access.GENERIC_READ)
    assert answer.status == S.STATUS_INVALID_PARAMETER
    assert len(sftp._opens) == 0


def _set_info(minirdr: SftpMiniRdr, srv_open: int, info_class: int, **args: object) -> RxCompletion:
    ctx = RxContext(
        3,
        IrpMj.SET_INFORMATION,
        routine=Routine.MRxSetFileInfo,
        srv_call=SERVER,
        net_root=SHARE,
        srv_open=srv_open,
        info=InfoParameters(info_class=info_class, args=dict(args)),
    )
    return _execute(minirdr, ctx)


def test_a_rename_may_pass_through_a_link_that_stays_in_the_share(sftp: SftpMiniRdr) -> None:
    folder = Path(sftp.settings.servers[SERVER].shares[SHARE][1])
    (folder / "in-dir").mkdir()
    (folder / "in-link").symlink_to(folder / "in-dir")
    (folder / "moving.txt").write_bytes(b"m")
    try:
        opened = _run(sftp, Routine.MRxCreate, "moving.txt", 0, Access.DELETE)
        assert opened.status == S.STATUS_SUCCESS
        try:
            done = _set_info(sftp, opened.result["srv_open"], Info.FileRenameInformation,
                             target=r"in-link\moved.txt", replace=False)  # fmt: skip
            assert done.status == S.STATUS_SUCCESS, done.message
        finally:
            _close(sftp, opened.result["srv_open"])
        assert (folder / "in-dir" / "moved.txt").read_bytes() == b"m"
        # the link itself still cannot be opened
        assert _run(sftp, Routine.MRxCreate, "in-link", 0).status == S.STATUS_ACCESS_DENIED
    finally:
        (folder / "in-link").unlink()
        for leftover in (folder / "in-dir" / "moved.txt", folder / "moving.txt"):
            leftover.unlink(missing_ok=True)
        (folder / "in-dir").rmdir()


@pytest.mark.parametrize(
    ("disposition", "attributes", "access", "round_trips"),
    [
        (CreateDisposition.FILE_CREATE, 0, Access.GENERIC_WRITE, 2),  # lookup, open + its stat
        # the mode goes with the open
        (CreateDisposition.FILE_CREATE, FileAttributes.READONLY, Access.GENERIC_WRITE, 2),
        (CreateDisposition.FILE_OPEN, 0, Access.GENERIC_READ, 2),
        (CreateDisposition.FILE_OPEN, 0, Access.FILE_READ_ATTRIBUTES, 1),  # the lookup alone
    ],
)
def test_a_create_takes_the_round_trips_it_needs(
    sftp: SftpMiniRdr, disposition: int, attributes: int, access: int, round_trips: int
) -> None:
    folder = Path(sftp.settings.servers[SERVER].shares[SHARE][1])
    name = f"rt-{disposition}-{attributes}-{access}.txt"
    if disposition == CreateDisposition.FILE_OPEN:
        (folder / name).write_bytes(b"x")
    ctx = RxContext(
        1,
        IrpMj.CREATE,
        routine=Routine.MRxCreate,
        srv_call=SERVER,
        net_root=SHARE,
        path=name,
        create=CreateParameters(
            desired_access=access, disposition=disposition, file_attributes=attributes
        ),
    )
    try:
        with _Requests(sftp) as requests:
            answer = _execute(sftp, ctx)
        assert answer.status == S.STATUS_SUCCESS, answer.message
        _close(sftp, answer.result["srv_open"])
        assert requests.round_trips == round_trips, requests.sent
        assert bool(answer.result["attributes"] & FileAttributes.READONLY) == bool(attributes)
    finally:
        (folder / name).chmod(0o644)
        (folder / name).unlink()


# --- a create with its related items, as one chain ---------------------------------------------
_RELATED = int(RxFlags.RELATED)


def _item(routine: Routine, **fields: Any) -> RxContext:
    return RxContext(0, 0, routine=routine, srv_call=SERVER, net_root=SHARE, **fields)


def _read(length: int = 64 << 10, offset: int = 0) -> RxContext:
    io = LowIoParameters(operation=LowIoOp.READ, offset=offset, length=length)
    return _item(Routine.MRxLowIOSubmit, lowio=io, flags=_RELATED)


def _write(data: bytes, offset: int = 0) -> tuple[RxContext, bytes]:
    io = LowIoParameters(operation=LowIoOp.WRITE, offset=offset, length=len(data))
    return _item(Routine.MRxLowIOSubmit, lowio=io, flags=_RELATED), data


def _query() -> RxContext:
    info = InfoParameters(info_class=int(Info.FileAllInformation))
    return _item(Routine.MRxQueryFileInfo, info=info, flags=_RELATED)


def _chain(
    sftp: SftpMiniRdr,
    path: str,
    access: int,
    disposition: int,
    *related: RxContext | tuple[RxContext, bytes],
    chained: bool = True,
) -> list[Answer]:
    """Run a create and ``related`` (each with its payload, if any) as the host runs a
    compound, ``chained`` or item by item; each answer's status, information, result (less
    the SrvOpen number) and payload."""
    params = CreateParameters(
        desired_access=access,
        disposition=disposition,
        create_options=CreateOptions.FILE_NON_DIRECTORY_FILE,
    )
    items = [_item(Routine.MRxCreate, path=path, create=params)]
    cx = Compound(9, items)
    for entry in related:
        ctx, data = entry if isinstance(entry, tuple) else (entry, None)
        if data is not None:
            cx.payload_items.append(len(cx.items))
            cx.payloads.append(memoryview(data))
        cx.items.append(ctx)
    return run_compound(sftp, cx, chained=chained)


def _both(sftp: SftpMiniRdr, setup: Callable[[], None], *args: Any) -> list[Any]:
    """The chain's answers, checked equal to the same items' answers one by one (``setup``
    puts the share back as it was before each run)."""
    setup()
    alone = _chain(sftp, *args, chained=False)
    setup()
    chained = _chain(sftp, *args)
    assert chained == alone
    return chained


def test_a_chained_small_read_is_the_items_answers_in_fewer_round_trips(
    sftp: SftpMiniRdr,
) -> None:
    data = os.urandom(5000)
    folder = _share_folder(sftp)

    def setup() -> None:
        (folder / "small.bin").write_bytes(data)

    read = ("small.bin", Access.GENERIC_READ, CreateDisposition.FILE_OPEN)
    answers = _both(
        sftp, setup, *read, _read(), _read(100, 4990), _query(), _read(10, 5000), _chain_close()
    )
    created, first, tail, queried, past, closed = answers
    assert created[0] == S.STATUS_SUCCESS
    assert (first[0], first[3]) == (S.STATUS_SUCCESS, data)
    assert tail[3] == data[4990:]
    assert queried[2]["size"] == len(data)
    assert past[0] == S.STATUS_END_OF_FILE
    assert closed[0] == S.STATUS_SUCCESS
    setup()
    with _Requests(sftp) as requests:
        _chain(sftp, *read, _read(), _chain_close())
    # the lookup, the open with its stat, then the read and the close together
    assert requests.round_trips == 3, requests.sent
    assert requests.kinds[-2:] == [FXP_READ, FXP_CLOSE]


def _chain_close() -> RxContext:
    return _item(Routine.MRxCloseSrvOpen, flags=_RELATED)


def _share_folder(sftp: SftpMiniRdr) -> Path:
    return Path(sftp._sessions.conn_of(SERVER).shares[SHARE].root)


def test_a_chained_write_then_read_lands_in_order_and_closes_cleanly(sftp: SftpMiniRdr) -> None:
    folder = _share_folder(sftp)
    data = os.urandom(3000)

    def setup() -> None:
        (folder / "w.bin").unlink(missing_ok=True)

    rw = Access.GENERIC_READ | Access.GENERIC_WRITE
    answers = _both(
        sftp,
        setup,
        "w.bin",
        rw,
        CreateDisposition.FILE_OVERWRITE_IF,
        _write(data),
        _write(b"tail", 3000),
        _read(),
        _query(),
        _chain_close(),
    )
    assert [a[0] for a in answers] == [S.STATUS_SUCCESS] * 6
    assert answers[1][1] == 3000 and answers[2][1] == 4
    assert answers[3][3] == data + b"tail"
    assert answers[4][2]["size"] == 3004
    assert (folder / "w.bin").read_bytes() == data + b"tail"
    setup()
    with _Requests(sftp) as requests:
        _chain(sftp, "w.bin", rw, CreateDisposition.FILE_OVERWRITE_IF, _write(data), _chain_close())
    assert requests.kinds[-2:] == [FXP_WRITE, FXP_CLOSE]
    assert requests.sent[-1][1] == requests.sent[-2][1], "the close waited for the write"


def test_a_failed_chained_create_answers_its_status_to_every_item(sftp: SftpMiniRdr) -> None:
    folder = _share_folder(sftp)

    def setup() -> None:
        (folder / "exists.txt").write_bytes(b"x")
        (folder / "gone.txt").unlink(missing_ok=True)

    collided = _both(
        sftp, setup, "exists.txt", Access.GENERIC_WRITE, CreateDisposition.FILE_CREATE,
        _write(b"new"), _chain_close(),
    )  # fmt: skip
    assert [a[0] for a in collided] == [S.STATUS_OBJECT_NAME_COLLISION] * 3
    assert (folder / "exists.txt").read_bytes() == b"x"
    missing = _both(
        sftp, setup, "gone.txt", Access.GENERIC_READ, CreateDisposition.FILE_OPEN,
        _read(), _query(), _chain_close(),
    )  # fmt: skip
    assert [a[0] for a in missing] == [S.STATUS_OBJECT_NAME_NOT_FOUND] * 4


def test_a_chained_item_refused_by_its_checks_fails_alone(sftp: SftpMiniRdr) -> None:
    folder = _share_folder(sftp)

    def setup() -> None:
        (folder / "ro.txt").write_bytes(b"abc")

    bad_query = _item(
        Routine.MRxQueryFileInfo, info=InfoParameters(info_class=9999), flags=_RELATED
    )
    answers = _both(
        sftp, setup, "ro.txt", Access.GENERIC_READ, CreateDisposition.FILE_OPEN,
        _write(b"no"), _read(), bad_query, _chain_close(),
    )  # fmt: skip
    assert [a[0] for a in answers] == [
        S.STATUS_SUCCESS,
        S.STATUS_ACCESS_DENIED,
        S.STATUS_SUCCESS,
        S.STATUS_INVALID_PARAMETER,
        S.STATUS_SUCCESS,
    ]
    assert answers[2][3] == b"abc"


def test_a_chain_not_of_that_shape_is_not_taken(sftp: SftpMiniRdr) -> None:
    create = _item(
        Routine.MRxCreate,
        path="f.txt",
        create=CreateParameters(desired_access=Access.GENERIC_READ),
    )
    big = _read(1 << 20)
    append = _write(b"x", -1)[0]
    flush = _item(Routine.MRxFlush, flags=_RELATED)
    for related, payloads in (
        ([big, _chain_close()], [None, None]),
        ([append, _chain_close()], [memoryview(b"x"), None]),
        ([flush, _chain_close()], [None, None]),
        ([_chain_close(), _read()], [None, None]),
    ):
        assert sftp.create_with_related(create, related, payloads) is None
    assert len(sftp._opens) == 0


def test_a_chained_close_reports_an_earlier_write_failure(sftp: SftpMiniRdr) -> None:
    """A pipelined write that failed after its request was answered is reported by the next
    close of its open, in a chain too."""
    folder = _share_folder(sftp)
    (folder / "e.txt").write_bytes(b"e")
    opened = sftp.create(
        _item(
            Routine.MRxCreate,
            path="e.txt",
            create=CreateParameters(desired_access=Access.GENERIC_READ | Access.GENERIC_WRITE),
        )
    )
    op = sftp._opens.get(opened.result["srv_open"])
    op.write_error = (int(S.STATUS_DISK_FULL), "no space")
    (answer,) = sftp.run_chain(_item(Routine.MRxCreate), op, [ChainItem(ChainKind.CLOSE)])
    assert isinstance(answer, NtStatusError) and answer.status == S.STATUS_DISK_FULL
    sftp._opens.pop(opened.result["srv_open"])


@pytest.mark.parametrize(("offset", "length"), [(0, 4), (3, 100), (10, 5), (99, 1)])
def test_a_small_read_on_the_direct_path_answers_as_on_the_worker(
    sftp: SftpMiniRdr, offset: int, length: int
) -> None:
    opened = _run(sftp, Routine.MRxCreate, "f.txt", 0, Access.GENERIC_READ)
    srv_open = opened.result["srv_open"]
    try:
        io = LowIoParameters(operation=LowIoOp.READ, offset=offset, length=length)
        ctx = _item(Routine.MRxLowIOSubmit, lowio=io, srv_open=srv_open)
        outcome = _direct(sftp, ctx)
        assert isinstance(outcome, Result), outcome
        on_worker = execute(sftp, ctx, None)
        assert on_worker is not None
        assert (outcome.status, outcome.information) == (on_worker[0].status,
                                                         on_worker[0].information)  # fmt: skip
        assert (outcome.payload or b"") == (on_worker[1] or b"")
    finally:
        _close(sftp, srv_open)


def test_a_read_the_checks_refuse_or_a_large_one_goes_to_the_worker(sftp: SftpMiniRdr) -> None:
    opened = _run(sftp, Routine.MRxCreate, "f.txt", 0, Access.GENERIC_WRITE)
    srv_open = opened.result["srv_open"]
    try:
        io = LowIoParameters(operation=LowIoOp.READ, offset=0, length=4)
        not_readable = _item(Routine.MRxLowIOSubmit, lowio=io, srv_open=srv_open)
        assert _direct(sftp, not_readable) == "not taken"
        big = LowIoParameters(operation=LowIoOp.READ, offset=0, length=1 << 20)
        assert _direct(sftp, _item(Routine.MRxLowIOSubmit, lowio=big, srv_open=srv_open)) == (
            "not taken"
        )
    finally:
        _close(sftp, srv_open)


def test_a_stat_behind_a_request_on_the_worker_waits_for_it(sftp: SftpMiniRdr) -> None:
    """The host takes a stat on the direct path only while the connection's worker holds
    nothing: a stat sent right behind the create of its file (two round trips on the worker)
    finds the file, and is answered after it."""
    bridge = RecordingBridge()
    sink = sftp._completion_sink
    host = MiniRdrHost(bridge, sftp)  # type: ignore[arg-type]
    try:
        create = _create_ctx(Routine.MRxCreate, r"d\behind.txt", 0, Access.GENERIC_WRITE,
                             CreateDisposition.FILE_CREATE)  # fmt: skip
        create.request_id, create.timeout_ms = 1, 10_000
        stat = _create_ctx(Routine.MRxQueryOpen, r"d\behind.txt")
        stat.request_id, stat.timeout_ms = 2, 10_000
        host.on_message(create, None)
        host.on_message(stat, None)
        first, second = bridge.answers(2)
        assert (first.request_id, first.status) == (1, S.STATUS_SUCCESS)
        assert (second.request_id, second.status) == (2, S.STATUS_SUCCESS)
        _close(sftp, first.result["srv_open"])
        # nothing held now: the same stat goes on the direct path, answered as well
        again = _create_ctx(Routine.MRxQueryOpen, r"d\behind.txt")
        again.request_id, again.timeout_ms = 3, 10_000
        host.on_message(again, None)
        assert (bridge.answers(3)[2].request_id, bridge.answers(3)[2].status) == (3, 0)
        assert host.pending_count() == 0
    finally:
        for ref in host.workers.values():
            ref.stop(block=True, timeout=5.0)
        sftp.attach_completion(sink)  # type: ignore[arg-type]
        (Path(sftp.settings.servers[SERVER].shares[SHARE][1]) / "d" / "behind.txt").unlink()

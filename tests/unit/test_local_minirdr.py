"""The local mini-redirector, driven routine by routine on real temporary folders."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import shutil
import stat
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rdbss.minirdrs.base import Result
from rdbss.minirdrs.local import LocalMiniRdr
from rdbss.wire.constants import (
    Access,
    CreateDisposition,
    CreateInformation,
    CreateOptions,
    FileAttributes,
    FileInformationClass,
    FsctlCode,
    FsInformationClass,
    IrpMj,
    LowIoOp,
    Routine,
)
from rdbss.wire.rxcontext import (
    CreateParameters,
    InfoParameters,
    LowIoParameters,
    QueryDirectoryParameters,
    RxContext,
)
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus
D = CreateDisposition
Opt = CreateOptions
Info = FileInformationClass
FsInfo = FsInformationClass
A = Access
RW = A.GENERIC_READ | A.GENERIC_WRITE

_ids = itertools.count(1)


def rx(major: int = IrpMj.CREATE, **fields: Any) -> RxContext:
    """An RxContext as the core would send it to the mini-redirector."""
    fields.setdefault("srv_call", "local")
    fields.setdefault("net_root", "Data")
    return RxContext(request_id=next(_ids), major=major, **fields)


def failure(call: Callable[..., object], *args: Any, **kwargs: Any) -> NtStatusError:
    """The NtStatusError that ``call(*args, **kwargs)`` raises."""
    with pytest.raises(NtStatusError) as info:
        call(*args, **kwargs)
    return info.value


def status(call: Callable[..., object], *args: Any, **kwargs: Any) -> int:
    return failure(call, *args, **kwargs).status


# --- routine helpers -------------------------------------------------------------------------
def create(
    rdr: LocalMiniRdr,
    path: str,
    disposition: int = D.FILE_OPEN,
    access: int = A.GENERIC_READ,
    options: int = 0,
    attributes: int = 0,
    share: str = "Data",
) -> Result:
    params = CreateParameters(
        desired_access=access,
        file_attributes=attributes,
        disposition=disposition,
        create_options=options,
    )
    return rdr.create(rx(path=path, net_root=share, fobx=next(_ids), create=params))


def open_id(rdr: LocalMiniRdr, path: str, **kwargs: Any) -> int:
    srv_open: int = create(rdr, path, **kwargs).result["srv_open"]
    return srv_open


def read(rdr: LocalMiniRdr, srv_open: int, offset: int, length: int) -> Result:
    lowio = LowIoParameters(operation=LowIoOp.READ, offset=offset, length=length)
    return rdr.low_io_submit(rx(IrpMj.READ, srv_open=srv_open, lowio=lowio))


def write(rdr: LocalMiniRdr, srv_open: int, offset: int, data: Any) -> Result:
    lowio = LowIoParameters(operation=LowIoOp.WRITE, offset=offset, length=len(data))
    return rdr.low_io_submit(rx(IrpMj.WRITE, srv_open=srv_open, lowio=lowio), data)


def query(rdr: LocalMiniRdr, srv_open: int, info_class: int = Info.FileAllInformation) -> Any:
    ctx = rx(IrpMj.QUERY_INFORMATION, srv_open=srv_open, info=InfoParameters(info_class))
    return rdr.query_file_info(ctx).result


def set_info(rdr: LocalMiniRdr, srv_open: int, info_class: int, **args: Any) -> Result:
    ctx = rx(IrpMj.SET_INFORMATION, srv_open=srv_open, info=InfoParameters(info_class, args))
    return rdr.set_file_info(ctx)


def close(rdr: LocalMiniRdr, srv_open: int) -> Result:
    return rdr.close_srv_open(rx(IrpMj.CLOSE, srv_open=srv_open))


def qdir(rdr: LocalMiniRdr, srv_open: int, fobx: int, pattern: str = "*", **kw: Any) -> list[str]:
    return [entry["name"] for entry in qdir_entries(rdr, srv_open, fobx, pattern, **kw)]


def qdir_entries(
    rdr: LocalMiniRdr, srv_open: int, fobx: int, pattern: str = "*", **kw: Any
) -> list[dict[str, Any]]:
    params = QueryDirectoryParameters(pattern=pattern, **kw)
    ctx = rx(IrpMj.DIRECTORY_CONTROL, srv_open=srv_open, fobx=fobx, query_directory=params)
    entries: list[dict[str, Any]] = rdr.query_directory(ctx).result["entries"]
    return entries


def fsctl(rdr: LocalMiniRdr, code: int, **args: Any) -> Result:
    ctx = rx(IrpMj.FILE_SYSTEM_CONTROL, lowio=LowIoParameters(code=code), args=args)
    return rdr.dev_fcb_control(ctx)


def volume(rdr: LocalMiniRdr, srv_open: int, info_class: int) -> Any:
    ctx = rx(IrpMj.QUERY_VOLUME_INFORMATION, srv_open=srv_open, info=InfoParameters(info_class))
    return rdr.query_volume_info(ctx).result


# --- fixtures --------------------------------------------------------------------------------
@pytest.fixture
def root(tmp_path: Path) -> Path:
    share = tmp_path / "share"
    share.mkdir()
    return share


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("top secret")
    return folder


@pytest.fixture
def rdr(root: Path) -> Iterator[LocalMiniRdr]:
    instance = LocalMiniRdr("local-1", {"server": "local", "shares": {"Data": str(root)}})
    yield instance
    instance.close()


# --- registration and connections ------------------------------------------------------------
def test_identity(rdr: LocalMiniRdr) -> None:
    assert rdr.kind == "local"
    assert rdr.blocking is False
    assert rdr.lowio_ops == frozenset(
        {
            LowIoOp.READ,
            LowIoOp.WRITE,
            LowIoOp.SHAREDLOCK,
            LowIoOp.EXCLUSIVELOCK,
            LowIoOp.UNLOCK,
            LowIoOp.UNLOCK_MULTIPLE,
            LowIoOp.NOTIFY_CHANGE_DIRECTORY,
        }
    )
    assert rdr.servers() == ["local"]
    routines = set(LocalMiniRdr.implemented_routines())
    assert {Routine.MRxCreate, Routine.MRxLowIOSubmit, Routine.MRxQueryDirectory} <= routines
    assert {Routine.MRxDevFcbXXXControlFile, Routine.MRxCloseSrvOpen} <= routines
    assert Routine.MRxZeroExtend not in routines


def test_server_defaults_to_local_and_paths_expand_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "docs").mkdir()
    instance = LocalMiniRdr("l", {"shares": {"docs": "~/docs"}})
    try:
        assert instance.servers() == ["local"]
        listed = fsctl(instance, FsctlCode.RDBSS_LIST_SHARES).result
        assert listed["shares"] == {"docs": str(tmp_path / "docs")}
        assert instance.create_v_net_root(rx(net_root="DOCS")).status == S.STATUS_SUCCESS
    finally:
        instance.close()


@pytest.mark.parametrize(
    "bad", [{"shares": {"a/b": "/tmp"}}, {"shares": {"x": ""}}, {"server": ""}]
)
def test_bad_config_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LocalMiniRdr("l", bad)


def test_create_srv_call(rdr: LocalMiniRdr) -> None:
    assert rdr.create_srv_call(rx(srv_call="LOCAL")).status == S.STATUS_SUCCESS
    assert status(lambda: rdr.create_srv_call(rx(srv_call="other"))) == S.STATUS_BAD_NETWORK_PATH
    assert rdr.srv_call_winner_notify(rx()).status == S.STATUS_SUCCESS


def test_create_v_net_root(rdr: LocalMiniRdr, root: Path) -> None:
    assert rdr.create_v_net_root(rx(net_root="data")).status == S.STATUS_SUCCESS
    assert status(lambda: rdr.create_v_net_root(rx(net_root="nope"))) == S.STATUS_BAD_NETWORK_NAME
    root.rmdir()
    assert status(lambda: rdr.create_v_net_root(rx(net_root="Data"))) == S.STATUS_BAD_NETWORK_NAME


def test_finalize_routines_succeed(rdr: LocalMiniRdr) -> None:
    for routine in (rdr.finalize_v_net_root, rdr.finalize_net_root, rdr.finalize_srv_call):
        assert routine(rx()).status == S.STATUS_SUCCESS


# --- create ----------------------------------------------------------------------------------
# disposition -> (on an existing file: information or error, content after), (on a missing one)
DISPOSITIONS = {
    D.FILE_SUPERSEDE: ((CreateInformation.FILE_SUPERSEDED, b""), CreateInformation.FILE_CREATED),
    D.FILE_OPEN: ((CreateInformation.FILE_OPENED, b"hello"), S.STATUS_OBJECT_NAME_NOT_FOUND),
    D.FILE_CREATE: ((S.STATUS_OBJECT_NAME_COLLISION, b"hello"), CreateInformation.FILE_CREATED),
    D.FILE_OPEN_IF: ((CreateInformation.FILE_OPENED, b"hello"), CreateInformation.FILE_CREATED),
    D.FILE_OVERWRITE: (
        (CreateInformation.FILE_OVERWRITTEN, b""),
        S.STATUS_OBJECT_NAME_NOT_FOUND,
    ),
    D.FILE_OVERWRITE_IF: (
        (CreateInformation.FILE_OVERWRITTEN, b""),
        CreateInformation.FILE_CREATED,
    ),
}


@pytest.mark.parametrize("disposition", list(DISPOSITIONS))
def test_disposition_on_an_existing_file(
    rdr: LocalMiniRdr, root: Path, disposition: CreateDisposition
) -> None:
    (root / "f.txt").write_bytes(b"hello")
    expected, content = DISPOSITIONS[disposition][0]
    if isinstance(expected, NtStatus):
        assert status(lambda: create(rdr, "f.txt", disposition, RW)) == expected
    else:
        result = create(rdr, "f.txt", disposition, RW)
        assert result.information == expected
        assert result.result["directory"] is False
        assert result.result["size"] == len(content)
        assert result.result["name"] == "f.txt"
    assert (root / "f.txt").read_bytes() == content


@pytest.mark.parametrize("disposition", list(DISPOSITIONS))
def test_disposition_on_a_missing_file(
    rdr: LocalMiniRdr, root: Path, disposition: CreateDisposition
) -> None:
    expected = DISPOSITIONS[disposition][1]
    if isinstance(expected, NtStatus):
        assert status(lambda: create(rdr, "new.txt", disposition, RW)) == expected
        assert not (root / "new.txt").exists()
    else:
        result = create(rdr, "new.txt", disposition, RW)
        assert result.information == expected
        assert result.result["size"] == 0
        assert (root / "new.txt").is_file()


@pytest.mark.parametrize("disposition", [D.FILE_OPEN, D.FILE_CREATE, D.FILE_OPEN_IF])
def test_missing_parent_is_path_not_found(rdr: LocalMiniRdr, root: Path, disposition: int) -> None:
    assert (
        status(lambda: create(rdr, "nodir\\f.txt", disposition)) == S.STATUS_OBJECT_PATH_NOT_FOUND
    )
    (root / "file").write_text("x")
    assert status(lambda: create(rdr, "file\\f.txt", disposition)) == S.STATUS_OBJECT_PATH_NOT_FOUND


def test_srv_open_ids_are_distinct(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f.txt").write_text("x")
    ids = {open_id(rdr, "f.txt") for _ in range(5)}
    assert len(ids) == 5


def test_create_directory(rdr: LocalMiniRdr, root: Path) -> None:
    result = create(rdr, "sub", D.FILE_CREATE, A.FILE_LIST_DIRECTORY, Opt.FILE_DIRECTORY_FILE)
    assert result.information == CreateInformation.FILE_CREATED
    assert result.result["directory"] is True
    assert result.result["attributes"] & FileAttributes.DIRECTORY
    assert (root / "sub").is_dir()
    again = create(rdr, "sub", D.FILE_OPEN_IF, A.FILE_LIST_DIRECTORY, Opt.FILE_DIRECTORY_FILE)
    assert again.information == CreateInformation.FILE_OPENED
    assert again.result["directory"] is True


def test_open_a_directory_without_options(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "sub").mkdir()
    result = create(rdr, "sub", D.FILE_OPEN, A.GENERIC_READ)
    assert result.information == CreateInformation.FILE_OPENED
    assert result.result["directory"] is True


def test_open_the_share_root(rdr: LocalMiniRdr) -> None:
    result = create(rdr, "", D.FILE_OPEN, A.FILE_LIST_DIRECTORY, Opt.FILE_DIRECTORY_FILE)
    assert result.result["directory"] is True
    assert result.result["name"] == ""
    assert status(lambda: create(rdr, "", D.FILE_CREATE)) == S.STATUS_OBJECT_NAME_COLLISION


def test_directory_file_on_a_file_is_not_a_directory(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f.txt").write_text("x")
    opts = Opt.FILE_DIRECTORY_FILE
    assert (
        status(lambda: create(rdr, "f.txt", D.FILE_OPEN, options=opts)) == S.STATUS_NOT_A_DIRECTORY
    )


def test_non_directory_file_on_a_directory(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "sub").mkdir()
    opts = Opt.FILE_NON_DIRECTORY_FILE
    assert status(lambda: create(rdr, "sub", options=opts)) == S.STATUS_FILE_IS_A_DIRECTORY


def test_write_access_on_a_directory(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "sub").mkdir()
    for access in (A.GENERIC_WRITE, A.FILE_WRITE_DATA, A.GENERIC_ALL):
        assert status(create, rdr, "sub", access=access) == S.STATUS_FILE_IS_A_DIRECTORY
    assert status(lambda: create(rdr, "sub", D.FILE_OVERWRITE_IF, RW)) == (
        S.STATUS_FILE_IS_A_DIRECTORY
    )
    assert status(lambda: create(rdr, "sub", D.FILE_OVERWRITE_IF, A.GENERIC_READ)) == (
        S.STATUS_OBJECT_NAME_COLLISION
    )
    assert (root / "sub").is_dir()


def test_bad_create_parameters(rdr: LocalMiniRdr, root: Path) -> None:
    both = Opt.FILE_DIRECTORY_FILE | Opt.FILE_NON_DIRECTORY_FILE
    assert status(lambda: create(rdr, "x", D.FILE_CREATE, options=both)) == (
        S.STATUS_INVALID_PARAMETER
    )
    dir_opt = Opt.FILE_DIRECTORY_FILE
    assert status(create, rdr, "d", D.FILE_OVERWRITE_IF, options=dir_opt) == (
        S.STATUS_INVALID_PARAMETER
    )
    assert status(lambda: create(rdr, "x", 9)) == S.STATUS_INVALID_PARAMETER
    assert not (root / "x").exists()
    assert not (root / "d").exists()


def test_unknown_share(rdr: LocalMiniRdr) -> None:
    assert (
        status(lambda: create(rdr, "f", D.FILE_CREATE, share="nope")) == S.STATUS_BAD_NETWORK_NAME
    )


def test_share_names_are_case_insensitive(rdr: LocalMiniRdr, root: Path) -> None:
    create(rdr, "f.txt", D.FILE_CREATE, share="DATA")
    assert (root / "f.txt").exists()


def test_create_read_only(rdr: LocalMiniRdr, root: Path) -> None:
    sid = open_id(
        rdr, "ro.txt", disposition=D.FILE_CREATE, access=RW, attributes=FileAttributes.READONLY
    )
    assert not (root / "ro.txt").stat().st_mode & 0o222
    # the creating handle may still write, as on Windows
    assert write(rdr, sid, 0, b"abc").information == 3
    assert query(rdr, sid)["attributes"] == FileAttributes.READONLY
    close(rdr, sid)
    assert status(lambda: create(rdr, "ro.txt", access=A.GENERIC_WRITE)) == S.STATUS_ACCESS_DENIED
    assert status(lambda: create(rdr, "ro.txt", D.FILE_OVERWRITE_IF)) == S.STATUS_ACCESS_DENIED
    assert read(rdr, open_id(rdr, "ro.txt"), 0, 10).payload == b"abc"


def test_delete_on_close_file(rdr: LocalMiniRdr, root: Path) -> None:
    opts = Opt.FILE_DELETE_ON_CLOSE
    result = create(rdr, "tmp.txt", D.FILE_CREATE, RW, options=opts)
    assert result.result["delete_pending"] is True
    assert (root / "tmp.txt").exists()
    assert close(rdr, result.result["srv_open"]).status == S.STATUS_SUCCESS
    assert not (root / "tmp.txt").exists()


def test_delete_on_close_directory(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "empty").mkdir()
    (root / "full").mkdir()
    (root / "full" / "f").write_text("x")
    opts = Opt.FILE_DIRECTORY_FILE | Opt.FILE_DELETE_ON_CLOSE
    assert status(lambda: create(rdr, "full", options=opts)) == S.STATUS_DIRECTORY_NOT_EMPTY
    assert (root / "full" / "f").exists()
    sid = open_id(rdr, "empty", options=opts)
    assert (root / "empty").exists()
    close(rdr, sid)
    assert not (root / "empty").exists()


def test_delete_on_close_refusals(rdr: LocalMiniRdr, root: Path) -> None:
    opts = Opt.FILE_DELETE_ON_CLOSE
    assert status(lambda: create(rdr, "", options=opts)) == S.STATUS_ACCESS_DENIED
    (root / "ro").write_text("x")
    (root / "ro").chmod(0o444)
    assert status(lambda: create(rdr, "ro", options=opts)) == S.STATUS_CANNOT_DELETE
    assert (root / "ro").exists()
    # a new read-only file that cannot be deleted on close is not left behind
    ro = FileAttributes.READONLY
    assert status(create, rdr, "new", D.FILE_CREATE, attributes=ro, options=opts) == (
        S.STATUS_CANNOT_DELETE
    )
    assert not (root / "new").exists()


def test_open_of_a_delete_pending_file(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_text("x")
    sid = open_id(rdr, "f", options=Opt.FILE_DELETE_ON_CLOSE)
    assert status(lambda: create(rdr, "f")) == S.STATUS_DELETE_PENDING
    close(rdr, sid)
    assert status(lambda: create(rdr, "f")) == S.STATUS_OBJECT_NAME_NOT_FOUND


# --- access and low I/O ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("access", "can_read", "can_write"),
    [
        (A.GENERIC_READ, True, False),
        (A.FILE_READ_DATA, True, False),
        (A.GENERIC_WRITE, False, True),
        (A.FILE_WRITE_DATA, False, True),
        (A.FILE_APPEND_DATA, False, True),
        (A.GENERIC_ALL, True, True),
        (RW, True, True),
        (A.FILE_READ_ATTRIBUTES, False, False),
    ],
)
def test_access_checks(
    rdr: LocalMiniRdr, root: Path, access: int, can_read: bool, can_write: bool
) -> None:
    (root / "f").write_bytes(b"data")
    sid = open_id(rdr, "f", access=access)
    if can_read:
        assert read(rdr, sid, 0, 4).payload == b"data"
    else:
        assert status(lambda: read(rdr, sid, 0, 4)) == S.STATUS_ACCESS_DENIED
    if can_write:
        assert write(rdr, sid, 4, b"!").information == 1
        assert (root / "f").read_bytes() == b"data!"
    else:
        assert status(lambda: write(rdr, sid, 0, b"!")) == S.STATUS_ACCESS_DENIED
        assert (root / "f").read_bytes() == b"data"


def test_write_and_read_at_offsets(rdr: LocalMiniRdr, root: Path) -> None:
    sid = open_id(rdr, "f", disposition=D.FILE_CREATE, access=RW)
    assert write(rdr, sid, 0, b"hello world").information == 11
    assert write(rdr, sid, 6, bytearray(b"WORLD")).information == 5
    assert write(rdr, sid, 13, memoryview(b"!!")).information == 2
    assert (root / "f").read_bytes() == b"hello WORLD\x00\x00!!"
    result = read(rdr, sid, 6, 5)
    assert (result.information, bytes(result.payload or b"")) == (5, b"WORLD")


def test_short_read_and_end_of_file(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_bytes(b"0123456789")
    sid = open_id(rdr, "f")
    short = read(rdr, sid, 8, 100)
    assert (short.information, short.payload) == (2, b"89")
    assert status(lambda: read(rdr, sid, 10, 1)) == S.STATUS_END_OF_FILE
    assert status(lambda: read(rdr, sid, 50, 1)) == S.STATUS_END_OF_FILE
    empty = read(rdr, sid, 10, 0)
    assert (empty.status, empty.information, empty.payload) == (S.STATUS_SUCCESS, 0, b"")


def test_append_at_end_of_file(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "log").write_bytes(b"one\n")
    sid = open_id(rdr, "log", access=RW)
    assert write(rdr, sid, -1, b"two\n").information == 4
    assert write(rdr, sid, -1, b"three\n").information == 6
    assert (root / "log").read_bytes() == b"one\ntwo\nthree\n"


def test_append_only_handle_always_writes_at_the_end(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "log").write_bytes(b"one\n")
    sid = open_id(rdr, "log", access=A.FILE_APPEND_DATA)
    write(rdr, sid, 0, b"two\n")
    assert (root / "log").read_bytes() == b"one\ntwo\n"


def test_bad_ranges(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_bytes(b"abc")
    sid = open_id(rdr, "f", access=RW)
    assert status(lambda: read(rdr, sid, -1, 1)) == S.STATUS_INVALID_PARAMETER
    assert status(lambda: read(rdr, sid, 0, -1)) == S.STATUS_INVALID_PARAMETER
    assert status(lambda: read(rdr, sid, 0, (64 << 20) + 1)) == S.STATUS_INVALID_PARAMETER
    assert status(lambda: write(rdr, sid, -2, b"x")) == S.STATUS_INVALID_PARAMETER
    assert (root / "f").read_bytes() == b"abc"


def test_low_io_on_a_directory_and_unsupported_operations(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "sub").mkdir()
    dir_id = open_id(rdr, "sub")
    assert status(lambda: read(rdr, dir_id, 0, 1)) == S.STATUS_INVALID_DEVICE_REQUEST
    (root / "f").write_text("x")
    sid = open_id(rdr, "f")
    fsctl = LowIoParameters(operation=LowIoOp.FSCTL, code=0x90000)
    ctx = rx(IrpMj.FILE_SYSTEM_CONTROL, srv_open=sid, lowio=fsctl)
    assert status(lambda: rdr.low_io_submit(ctx)) == S.STATUS_INVALID_DEVICE_REQUEST


def test_byte_range_locks_between_two_opens(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_bytes(b"0123456789")
    a, b = open_id(rdr, "f"), open_id(rdr, "f")

    def lock(sid: int, op: LowIoOp, offset: int, length: int, flags: int = 1) -> object:
        params = LowIoParameters(operation=op, offset=offset, length=length, flags=flags)
        return rdr.low_io_submit(rx(IrpMj.LOCK_CONTROL, srv_open=sid, lowio=params))

    lock(a, LowIoOp.EXCLUSIVELOCK, 0, 5)
    assert status(lambda: lock(b, LowIoOp.SHAREDLOCK, 2, 2)) == S.STATUS_LOCK_NOT_GRANTED
    assert status(lambda: read(rdr, b, 0, 3)) == S.STATUS_FILE_LOCK_CONFLICT
    assert read(rdr, b, 5, 5).payload == b"56789"  # outside the lock
    assert status(lambda: lock(b, LowIoOp.UNLOCK, 0, 5)) == S.STATUS_RANGE_NOT_LOCKED
    lock(a, LowIoOp.UNLOCK, 0, 5)
    lock(b, LowIoOp.SHAREDLOCK, 2, 2)
    close(rdr, b)  # closing releases its locks
    lock(a, LowIoOp.EXCLUSIVELOCK, 0, 10)


def test_unknown_srv_open_is_an_invalid_handle(rdr: LocalMiniRdr) -> None:
    bogus = 424242
    calls: list[Callable[[], object]] = [
        lambda: read(rdr, bogus, 0, 1),
        lambda: write(rdr, bogus, 0, b"x"),
        lambda: query(rdr, bogus),
        lambda: set_info(rdr, bogus, Info.FileEndOfFileInformation, size=0),
        lambda: qdir(rdr, bogus, 1),
        lambda: rdr.flush(rx(IrpMj.FLUSH_BUFFERS, srv_open=bogus)),
        lambda: volume(rdr, bogus, FsInfo.FileFsSizeInformation),
        lambda: close(rdr, bogus),
    ]
    for call in calls:
        assert status(call) == S.STATUS_INVALID_HANDLE


def test_flush(rdr: LocalMiniRdr, root: Path) -> None:
    sid = open_id(rdr, "f", disposition=D.FILE_CREATE, access=RW)
    write(rdr, sid, 0, b"x")
    assert rdr.flush(rx(IrpMj.FLUSH_BUFFERS, srv_open=sid)).status == S.STATUS_SUCCESS
    dir_id = open_id(rdr, "")
    assert rdr.flush(rx(IrpMj.FLUSH_BUFFERS, srv_open=dir_id)).status == S.STATUS_SUCCESS


def test_close_forgets_the_open(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_text("x")
    sid = open_id(rdr, "f")
    assert close(rdr, sid).status == S.STATUS_SUCCESS
    assert status(lambda: read(rdr, sid, 0, 1)) == S.STATUS_INVALID_HANDLE
    assert status(lambda: close(rdr, sid)) == S.STATUS_INVALID_HANDLE


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_close_releases_every_descriptor_and_pending_delete(root: Path) -> None:
    (root / "a").write_text("x")
    before = _fd_count()
    instance = LocalMiniRdr("l", {"shares": {"Data": str(root)}})
    for _ in range(3):
        open_id(instance, "a")
    open_id(instance, "", options=Opt.FILE_DIRECTORY_FILE)
    open_id(instance, "tmp", disposition=D.FILE_CREATE, options=Opt.FILE_DELETE_ON_CLOSE)
    assert _fd_count() == before + 5
    instance.close()
    assert _fd_count() == before
    assert not (root / "tmp").exists()


# --- query information -----------------------------------------------------------------------
INFO_KEYS = {
    "name",
    "size",
    "allocation_size",
    "attributes",
    "creation_time",
    "last_access_time",
    "last_write_time",
    "change_time",
    "nlink",
    "directory",
    "delete_pending",
    "file_id",
    "mode",
}


@pytest.mark.parametrize(
    "info_class",
    [
        Info.FileBasicInformation,
        Info.FileStandardInformation,
        Info.FileNetworkOpenInformation,
        Info.FileAllInformation,
        Info.FileInternalInformation,
        Info.FileNameInformation,
        Info.FileAttributeTagInformation,
        Info.FilePositionInformation,
    ],
)
def test_query_file_info_classes(rdr: LocalMiniRdr, root: Path, info_class: int) -> None:
    (root / "sub").mkdir()
    (root / "sub" / "f.bin").write_bytes(b"x" * 5000)
    st = os.stat(root / "sub" / "f.bin")
    info = query(rdr, open_id(rdr, "sub\\f.bin"), info_class)
    assert set(info) >= INFO_KEYS
    assert info["name"] == "sub\\f.bin"
    assert info["size"] == 5000
    assert info["allocation_size"] == st.st_blocks * 512
    assert info["attributes"] == FileAttributes.NORMAL
    assert info["file_id"] == st.st_ino
    assert info["mode"] == st.st_mode
    assert info["nlink"] == 1
    assert info["last_write_time"] == st.st_mtime_ns
    assert info["last_access_time"] == st.st_atime_ns
    assert info["change_time"] == st.st_ctime_ns
    assert info["creation_time"] > 0
    assert info["directory"] is False
    assert info["delete_pending"] is False
    assert info["position"] == 0


def test_query_file_info_of_a_directory(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "sub").mkdir()
    info = query(rdr, open_id(rdr, "sub"))
    assert info["directory"] is True
    assert info["attributes"] == FileAttributes.DIRECTORY
    assert info["size"] == 0


def test_attributes(rdr: LocalMiniRdr, root: Path) -> None:
    (root / ".hidden").write_text("x")
    (root / "ro").write_text("x")
    (root / "ro").chmod(0o444)
    (root / ".rodir").mkdir()
    (root / ".rodir").chmod(0o555)
    try:
        assert query(rdr, open_id(rdr, ".hidden"))["attributes"] == FileAttributes.HIDDEN
        assert query(rdr, open_id(rdr, "ro"))["attributes"] == FileAttributes.READONLY
        expected = FileAttributes.DIRECTORY | FileAttributes.READONLY | FileAttributes.HIDDEN
        assert query(rdr, open_id(rdr, ".rodir"))["attributes"] == expected
    finally:
        (root / ".rodir").chmod(0o755)


def test_unknown_query_class(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_text("x")
    sid = open_id(rdr, "f")
    assert status(lambda: query(rdr, sid, Info.FileEaInformation)) == S.STATUS_INVALID_PARAMETER
    no_info = rx(IrpMj.QUERY_INFORMATION, srv_open=sid)
    assert status(lambda: rdr.query_file_info(no_info)) == S.STATUS_INVALID_PARAMETER


# --- set information -------------------------------------------------------------------------
def test_set_basic_times(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_text("x")
    sid = open_id(rdr, "f", access=RW)
    write_time = 1_600_000_000_123_456_789
    access_time = 1_500_000_000_000_000_000
    set_info(
        rdr,
        sid,
        Info.FileBasicInformation,
        last_write_time=write_time,
        last_access_time=access_time,
    )
    st = os.stat(root / "f")
    assert (st.st_mtime_ns, st.st_atime_ns) == (write_time, access_time)
    # 0 and absent leave a time unchanged
    set_info(rdr, sid, Info.FileBasicInformation, last_write_time=0, creation_time=0)
    assert os.stat(root / "f").st_mtime_ns == write_time
    set_info(rdr, sid, Info.FileBasicInformation, last_write_time=write_time + 10**9)
    st = os.stat(root / "f")
    assert (st.st_mtime_ns, st.st_atime_ns) == (write_time + 10**9, access_time)
    assert query(rdr, sid)["last_write_time"] == write_time + 10**9


def test_set_basic_read_only_attribute(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_text("x")
    sid = open_id(rdr, "f")
    set_info(rdr, sid, Info.FileBasicInformation, attributes=FileAttributes.READONLY)
    assert not (root / "f").stat().st_mode & 0o222
    assert query(rdr, sid)["attributes"] == FileAttributes.READONLY
    set_info(rdr, sid, Info.FileBasicInformation, attributes=FileAttributes.NORMAL)
    assert (root / "f").stat().st_mode & 0o200
    assert query(rdr, sid)["attributes"] == FileAttributes.NORMAL


def test_set_basic_bad_arguments(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_text("x")
    sid = open_id(rdr, "f")
    error = failure(lambda: set_info(rdr, sid, Info.FileBasicInformation, last_write_time="now"))
    assert error.status == S.STATUS_INVALID_PARAMETER
    assert "last_write_time" in str(error)
    error = failure(lambda: set_info(rdr, sid, Info.FileBasicInformation, attributes=True))
    assert error.status == S.STATUS_INVALID_PARAMETER
    assert "attributes" in str(error)
    dir_attr = FileAttributes.DIRECTORY
    assert status(lambda: set_info(rdr, sid, Info.FileBasicInformation, attributes=dir_attr)) == (
        S.STATUS_INVALID_PARAMETER
    )


def test_set_end_of_file(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_bytes(b"0123456789")
    sid = open_id(rdr, "f", access=RW)
    set_info(rdr, sid, Info.FileEndOfFileInformation, size=4)
    assert (root / "f").read_bytes() == b"0123"
    set_info(rdr, sid, Info.FileEndOfFileInformation, size=6)
    assert (root / "f").read_bytes() == b"0123\x00\x00"
    assert query(rdr, sid)["size"] == 6
    error = failure(lambda: set_info(rdr, sid, Info.FileEndOfFileInformation))
    assert error.status == S.STATUS_INVALID_PARAMETER
    assert "size" in str(error)
    assert status(lambda: set_info(rdr, sid, Info.FileEndOfFileInformation, size=-1)) == (
        S.STATUS_INVALID_PARAMETER
    )
    ro = open_id(rdr, "f")
    assert status(lambda: set_info(rdr, ro, Info.FileEndOfFileInformation, size=0)) == (
        S.STATUS_ACCESS_DENIED
    )
    assert (root / "f").stat().st_size == 6


def test_set_allocation(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_bytes(b"0123456789")
    sid = open_id(rdr, "f", access=RW)
    set_info(rdr, sid, Info.FileAllocationInformation, size=1 << 20)
    assert (root / "f").stat().st_size == 10
    set_info(rdr, sid, Info.FileAllocationInformation, size=3)
    assert (root / "f").read_bytes() == b"012"


def test_rename(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "a.txt").write_text("A")
    sid = open_id(rdr, "a.txt", access=RW | A.DELETE)
    set_info(rdr, sid, Info.FileRenameInformation, target="b.txt")
    assert not (root / "a.txt").exists()
    assert (root / "b.txt").read_text() == "A"
    assert query(rdr, sid)["name"] == "b.txt"
    assert read(rdr, sid, 0, 1).payload == b"A"


def test_rename_onto_an_existing_file(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "a").write_text("A")
    (root / "b").write_text("B")
    sid = open_id(rdr, "a")

    def rename(**kw: Any) -> Result:
        return set_info(rdr, sid, Info.FileRenameInformation, target="b", **kw)

    assert status(rename) == S.STATUS_OBJECT_NAME_COLLISION
    assert status(rename, replace=False) == S.STATUS_OBJECT_NAME_COLLISION
    assert ((root / "a").read_text(), (root / "b").read_text()) == ("A", "B")
    rename(replace=True)
    assert not (root / "a").exists()
    assert (root / "b").read_text() == "A"


def test_rename_across_directories(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "d1").mkdir()
    (root / "d2").mkdir()
    (root / "d1" / "f").write_text("F")
    sid = open_id(rdr, "d1\\f")
    set_info(rdr, sid, Info.FileRenameInformation, target="d2\\g")
    assert (root / "d2" / "g").read_text() == "F"
    assert query(rdr, sid)["name"] == "d2\\g"
    missing = "nodir\\g"
    assert status(set_info, rdr, sid, Info.FileRenameInformation, target=missing) == (
        S.STATUS_OBJECT_PATH_NOT_FOUND
    )
    assert (root / "d2" / "g").exists()


def test_rename_onto_a_directory_is_denied(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_text("F")
    (root / "full").mkdir()
    (root / "full" / "x").write_text("x")
    sid = open_id(rdr, "f")
    assert status(set_info, rdr, sid, Info.FileRenameInformation, target="full", replace=True) == (
        S.STATUS_ACCESS_DENIED
    )
    assert (root / "f").exists()
    assert (root / "full" / "x").exists()


def test_rename_a_directory_moves_the_opens_beneath_it(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "d").mkdir()
    (root / "d" / "f").write_text("x")
    dir_id = open_id(rdr, "d")
    child = open_id(rdr, "d\\f")
    set_info(rdr, dir_id, Info.FileRenameInformation, target="e")
    assert query(rdr, child)["name"] == "e\\f"
    set_info(rdr, child, Info.FileDispositionInformation, delete=True)
    close(rdr, child)
    assert not (root / "e" / "f").exists()
    assert (root / "e").is_dir()


def test_rename_bad_targets(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_text("x")
    sid = open_id(rdr, "f")

    def rename(target: Any) -> int:
        return status(lambda: set_info(rdr, sid, Info.FileRenameInformation, target=target))

    assert rename("..\\escaped") == S.STATUS_OBJECT_NAME_INVALID
    assert rename("f:stream") == S.STATUS_OBJECT_NAME_INVALID
    assert rename(42) == S.STATUS_INVALID_PARAMETER
    assert rename("") == S.STATUS_INVALID_PARAMETER
    assert (
        status(lambda: set_info(rdr, sid, Info.FileRenameInformation, target="g", replace="yes"))
        == S.STATUS_INVALID_PARAMETER
    )
    root_id = open_id(rdr, "")
    assert status(lambda: set_info(rdr, root_id, Info.FileRenameInformation, target="x")) == (
        S.STATUS_ACCESS_DENIED
    )
    assert sorted(os.listdir(root)) == ["f"]


def test_disposition_on_a_file(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_text("x")
    sid = open_id(rdr, "f", access=A.DELETE)
    set_info(rdr, sid, Info.FileDispositionInformation, delete=True)
    assert query(rdr, sid)["delete_pending"] is True
    assert (root / "f").exists()
    close(rdr, sid)
    assert not (root / "f").exists()


def test_disposition_can_be_cleared(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_text("x")
    sid = open_id(rdr, "f", access=A.DELETE)
    set_info(rdr, sid, Info.FileDispositionInformation, delete=True)
    set_info(rdr, sid, Info.FileDispositionInformation, delete=False)
    assert query(rdr, sid)["delete_pending"] is False
    close(rdr, sid)
    assert (root / "f").exists()


def test_disposition_on_directories(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "empty").mkdir()
    (root / "full").mkdir()
    (root / "full" / "x").write_text("x")
    full = open_id(rdr, "full")
    assert status(lambda: set_info(rdr, full, Info.FileDispositionInformation, delete=True)) == (
        S.STATUS_DIRECTORY_NOT_EMPTY
    )
    empty = open_id(rdr, "empty")
    set_info(rdr, empty, Info.FileDispositionInformation, delete=True)
    close(rdr, empty)
    close(rdr, full)
    assert not (root / "empty").exists()
    assert (root / "full" / "x").exists()


def test_disposition_bad_arguments_and_read_only(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_text("x")
    sid = open_id(rdr, "f")
    error = failure(lambda: set_info(rdr, sid, Info.FileDispositionInformation, delete=1))
    assert error.status == S.STATUS_INVALID_PARAMETER
    assert "delete" in str(error)
    (root / "f").chmod(0o444)
    assert status(lambda: set_info(rdr, sid, Info.FileDispositionInformation, delete=True)) == (
        S.STATUS_CANNOT_DELETE
    )


def test_failed_delete_at_close_is_reported_and_the_open_forgotten(
    rdr: LocalMiniRdr, root: Path
) -> None:
    (root / "d").mkdir()
    sid = open_id(rdr, "d")
    set_info(rdr, sid, Info.FileDispositionInformation, delete=True)
    (root / "d" / "late").write_text("x")
    result = close(rdr, sid)
    assert result.status == S.STATUS_DIRECTORY_NOT_EMPTY
    assert "d" in result.message
    assert (root / "d" / "late").exists()
    assert status(lambda: close(rdr, sid)) == S.STATUS_INVALID_HANDLE


def test_unknown_set_class(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_text("x")
    sid = open_id(rdr, "f")
    assert status(lambda: set_info(rdr, sid, Info.FileEaInformation)) == S.STATUS_INVALID_PARAMETER


# --- query directory -------------------------------------------------------------------------
NAMES = [".hidden", "a.txt", "aXc", "abc", "ac", "b.TXT", "readme.md", "sub"]


@pytest.fixture
def listing(rdr: LocalMiniRdr, root: Path) -> int:
    for name in NAMES:
        if name == "sub":
            (root / name).mkdir()
        else:
            (root / name).write_text(name)
    return open_id(rdr, "", options=Opt.FILE_DIRECTORY_FILE)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("*", NAMES),
        ("", NAMES),
        ("*.txt", ["a.txt", "b.TXT"]),
        ("*.TXT", ["a.txt", "b.TXT"]),
        ("a?c", ["aXc", "abc"]),
        ("A*", ["a.txt", "aXc", "abc", "ac"]),
        ("README.MD", ["readme.md"]),
        ("<.txt", ["a.txt", "b.TXT"]),
        ("<", ["aXc", "abc", "ac", "sub"]),
        ('readme"md', ["readme.md"]),
        ('abc"', ["abc"]),
        ("a>c", ["aXc", "abc"]),
        ("a>>.txt", ["a.txt"]),
        (".*", [".hidden"]),
    ],
)
def test_query_directory_patterns(
    rdr: LocalMiniRdr, listing: int, pattern: str, expected: list[str]
) -> None:
    assert qdir(rdr, listing, next(_ids), pattern) == expected


def test_query_directory_entries(rdr: LocalMiniRdr, root: Path, listing: int) -> None:
    entries = qdir_entries(rdr, listing, next(_ids))
    assert [e["file_index"] for e in entries] == list(range(len(NAMES)))
    by_name = {e["name"]: e for e in entries}
    assert by_name["sub"]["directory"] is True
    assert by_name["sub"]["attributes"] == FileAttributes.DIRECTORY
    assert by_name["readme.md"]["size"] == len("readme.md")
    assert by_name["readme.md"]["file_id"] == (root / "readme.md").stat().st_ino
    assert by_name[".hidden"]["attributes"] == FileAttributes.HIDDEN
    assert set(by_name["abc"]) >= INFO_KEYS


def test_query_directory_in_batches(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "d").mkdir()
    for i in range(5):
        (root / "d" / f"f{i}").write_text("x")
    sid = open_id(rdr, "d")
    fobx = next(_ids)
    batches = [qdir_entries(rdr, sid, fobx, max_entries=2) for _ in range(3)]
    assert [[e["name"] for e in b] for b in batches] == [["f0", "f1"], ["f2", "f3"], ["f4"]]
    assert [e["file_index"] for b in batches for e in b] == [0, 1, 2, 3, 4]
    assert status(lambda: qdir(rdr, sid, fobx, max_entries=2)) == S.STATUS_NO_MORE_FILES


def test_query_directory_single_entry(rdr: LocalMiniRdr, listing: int) -> None:
    fobx = next(_ids)
    assert qdir(rdr, listing, fobx, "a*", return_single_entry=True) == ["a.txt"]
    assert qdir(rdr, listing, fobx, "a*", return_single_entry=True) == ["aXc"]


def test_pattern_sticks_until_restart(rdr: LocalMiniRdr, listing: int) -> None:
    fobx = next(_ids)
    assert qdir(rdr, listing, fobx, "*.txt", max_entries=1) == ["a.txt"]
    # a later query's pattern is ignored: the enumeration goes on with "*.txt"
    assert qdir(rdr, listing, fobx, "sub", max_entries=5) == ["b.TXT"]
    assert status(lambda: qdir(rdr, listing, fobx, "*")) == S.STATUS_NO_MORE_FILES
    # restart_scan starts over, with the pattern it brings
    assert qdir(rdr, listing, fobx, "sub", restart_scan=True) == ["sub"]
    assert qdir(rdr, listing, fobx, "*.txt", restart_scan=True) == ["a.txt", "b.TXT"]


def test_no_such_file_then_no_more_files(rdr: LocalMiniRdr, listing: int) -> None:
    fobx = next(_ids)
    assert status(lambda: qdir(rdr, listing, fobx, "*.zip")) == S.STATUS_NO_SUCH_FILE
    assert status(lambda: qdir(rdr, listing, fobx, "*.zip")) == S.STATUS_NO_MORE_FILES


def test_cursors_are_per_handle_and_dropped_at_cleanup(rdr: LocalMiniRdr, listing: int) -> None:
    one, two = next(_ids), next(_ids)
    assert qdir(rdr, listing, one, max_entries=3) == NAMES[:3]
    assert qdir(rdr, listing, two, max_entries=1) == NAMES[:1]
    assert qdir(rdr, listing, one, max_entries=1) == NAMES[3:4]
    assert rdr.cleanup_fobx(rx(IrpMj.CLEANUP, fobx=one, srv_open=listing)).status == (
        S.STATUS_SUCCESS
    )
    assert qdir(rdr, listing, one, max_entries=1) == NAMES[:1]


def test_entries_that_vanish_are_skipped(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "d").mkdir()
    for name in ("a", "b", "c"):
        (root / "d" / name).write_text(name)
    sid = open_id(rdr, "d")
    fobx = next(_ids)
    assert qdir(rdr, sid, fobx, max_entries=1) == ["a"]
    (root / "d" / "b").unlink()
    (root / "d" / "z").write_text("new")  # not in the snapshot
    assert qdir(rdr, sid, fobx, max_entries=1) == ["c"]
    assert status(lambda: qdir(rdr, sid, fobx)) == S.STATUS_NO_MORE_FILES


def test_entries_show_delete_pending(rdr: LocalMiniRdr, root: Path, listing: int) -> None:
    sid = open_id(rdr, "abc")
    set_info(rdr, sid, Info.FileDispositionInformation, delete=True)
    entries = {e["name"]: e for e in qdir_entries(rdr, listing, next(_ids))}
    assert entries["abc"]["delete_pending"] is True
    assert entries["ac"]["delete_pending"] is False


def test_query_directory_refusals(rdr: LocalMiniRdr, root: Path, listing: int) -> None:
    file_id = open_id(rdr, "abc")
    assert status(lambda: qdir(rdr, file_id, next(_ids))) == S.STATUS_INVALID_PARAMETER
    assert status(lambda: qdir(rdr, listing, next(_ids), "sub\\*")) == S.STATUS_OBJECT_NAME_INVALID
    assert status(lambda: qdir(rdr, listing, next(_ids), max_entries=0)) == (
        S.STATUS_INVALID_PARAMETER
    )


# --- volume ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "info_class",
    [
        FsInfo.FileFsSizeInformation,
        FsInfo.FileFsFullSizeInformation,
        FsInfo.FileFsVolumeInformation,
        FsInfo.FileFsAttributeInformation,
        FsInfo.FileFsDeviceInformation,
    ],
)
def test_volume_info(rdr: LocalMiniRdr, root: Path, info_class: int) -> None:
    (root / "f").write_text("x")
    vfs = os.statvfs(root)
    for sid in (open_id(rdr, "f"), open_id(rdr, "")):
        info = volume(rdr, sid, info_class)
        assert info["total_bytes"] == vfs.f_blocks * vfs.f_frsize
        assert 0 <= info["avail_bytes"] <= info["free_bytes"] <= info["total_bytes"]
        assert info["bytes_per_sector"] == 512
        assert info["sectors_per_allocation_unit"] == max(1, vfs.f_frsize // 512)
        assert info["fs_name"] == "rdbss-local"
        assert info["label"] == "Data"
        assert info["max_name_length"] == vfs.f_namemax
        assert info["fs_attributes"] == 0x1 | 0x2 | 0x4
        assert info["device_characteristics"] == 0x10
        assert info["serial"] == zlib.crc32(os.fsencode(os.path.realpath(root)))


def test_volume_serial_is_stable_per_share(root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    config = {"shares": {"Data": str(root), "Other": str(other)}}
    first, second = LocalMiniRdr("a", config), LocalMiniRdr("b", config)
    try:
        serials = [
            volume(r, open_id(r, "", share=s), FsInfo.FileFsVolumeInformation)["serial"]
            for r in (first, second)
            for s in ("Data", "Other")
        ]
    finally:
        first.close()
        second.close()
    assert serials[0] == serials[2]
    assert serials[1] == serials[3]
    assert serials[0] != serials[1]


def test_unknown_volume_class(rdr: LocalMiniRdr) -> None:
    sid = open_id(rdr, "")
    assert status(lambda: volume(rdr, sid, FsInfo.FileFsLabelInformation)) == (
        S.STATUS_INVALID_PARAMETER
    )


# --- staying inside the share ----------------------------------------------------------------
def test_symlink_to_an_outside_file(rdr: LocalMiniRdr, root: Path, outside: Path) -> None:
    (root / "link").symlink_to(outside / "secret.txt")
    for disposition in (D.FILE_OPEN, D.FILE_OVERWRITE_IF, D.FILE_SUPERSEDE):
        assert status(create, rdr, "link", disposition, RW) == S.STATUS_ACCESS_DENIED
    assert (outside / "secret.txt").read_text() == "top secret"


def test_symlink_to_an_outside_directory(rdr: LocalMiniRdr, root: Path, outside: Path) -> None:
    (root / "out").symlink_to(outside)
    assert status(lambda: create(rdr, "out\\secret.txt")) == S.STATUS_ACCESS_DENIED
    assert status(lambda: create(rdr, "out\\new.txt", D.FILE_CREATE, RW)) == (
        S.STATUS_ACCESS_DENIED
    )
    assert status(lambda: create(rdr, "out", options=Opt.FILE_DIRECTORY_FILE)) == (
        S.STATUS_ACCESS_DENIED
    )
    assert sorted(os.listdir(outside)) == ["secret.txt"]


def test_rename_out_through_a_symlink(rdr: LocalMiniRdr, root: Path, outside: Path) -> None:
    (root / "out").symlink_to(outside)
    (root / "f").write_text("mine")
    sid = open_id(rdr, "f")
    stolen = "out\\stolen"
    assert status(set_info, rdr, sid, Info.FileRenameInformation, target=stolen) == (
        S.STATUS_ACCESS_DENIED
    )
    assert (root / "f").exists()
    assert not (outside / "stolen").exists()


def test_symlink_inside_the_share_is_followed(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "real.txt").write_text("inside")
    (root / "alias").symlink_to("real.txt")
    sid = open_id(rdr, "alias")
    assert read(rdr, sid, 0, 100).payload == b"inside"
    # deleting the alias removes the link, not what it points at
    set_info(rdr, sid, Info.FileDispositionInformation, delete=True)
    close(rdr, sid)
    assert not (root / "alias").is_symlink()
    assert (root / "real.txt").read_text() == "inside"


def test_listing_does_not_reveal_outside_files(
    rdr: LocalMiniRdr, root: Path, outside: Path
) -> None:
    (root / "link").symlink_to(outside / "secret.txt")
    entry = qdir_entries(rdr, open_id(rdr, ""), next(_ids))[0]
    assert entry["name"] == "link"
    # the link's own metadata, not its target's
    assert entry["file_id"] == (root / "link").lstat().st_ino
    assert entry["file_id"] != (outside / "secret.txt").stat().st_ino


@pytest.mark.parametrize(
    "path",
    ["..\\outside\\secret.txt", "a\\..\\..\\x", "..", "f.txt:stream", "f.txt::$DATA", "a\x00b"],
)
def test_bad_names_are_refused(rdr: LocalMiniRdr, root: Path, path: str) -> None:
    (root / "f.txt").write_text("x")
    for disposition in (D.FILE_OPEN, D.FILE_CREATE):
        assert status(create, rdr, path, disposition) == S.STATUS_OBJECT_NAME_INVALID
    assert sorted(os.listdir(root)) == ["f.txt"]


def test_messages_do_not_reveal_the_host_path(rdr: LocalMiniRdr, root: Path, outside: Path) -> None:
    (root / "f").write_text("x")
    (root / "link").symlink_to(outside)
    errors = [
        failure(lambda: create(rdr, "missing")),
        failure(lambda: create(rdr, "f", D.FILE_CREATE)),
        failure(lambda: create(rdr, "link\\secret.txt")),
        failure(lambda: create(rdr, "nodir\\x", D.FILE_CREATE)),
    ]
    for error in errors:
        assert str(root) not in str(error)
        assert str(outside) not in str(error)
    assert "missing" in str(errors[0])


# --- management ------------------------------------------------------------------------------
def test_list_shares(rdr: LocalMiniRdr, root: Path) -> None:
    assert fsctl(rdr, FsctlCode.RDBSS_LIST_SHARES).result == {
        "server": "local",
        "shares": {"Data": str(root)},
    }


def test_add_and_remove_a_share(rdr: LocalMiniRdr, tmp_path: Path) -> None:
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "hello.txt").write_text("hi")
    fsctl(rdr, FsctlCode.RDBSS_ADD_SHARE, share="More", path=str(folder))
    assert fsctl(rdr, FsctlCode.RDBSS_LIST_SHARES).result["shares"]["More"] == str(folder)
    assert rdr.create_v_net_root(rx(net_root="more")).status == S.STATUS_SUCCESS
    sid = open_id(rdr, "hello.txt", share="more")
    assert read(rdr, sid, 0, 2).payload == b"hi"
    fsctl(rdr, FsctlCode.RDBSS_REMOVE_SHARE, share="MORE")
    assert "More" not in fsctl(rdr, FsctlCode.RDBSS_LIST_SHARES).result["shares"]
    assert status(lambda: rdr.create_v_net_root(rx(net_root="more"))) == (S.STATUS_BAD_NETWORK_NAME)
    assert status(lambda: create(rdr, "hello.txt", share="more")) == S.STATUS_BAD_NETWORK_NAME
    # an open made before the removal keeps working until it is closed
    assert read(rdr, sid, 0, 2).payload == b"hi"


def test_add_share_refusals(rdr: LocalMiniRdr, root: Path, tmp_path: Path) -> None:
    def add(**args: Any) -> int:
        return status(lambda: fsctl(rdr, FsctlCode.RDBSS_ADD_SHARE, **args))

    assert add(share="data", path=str(tmp_path)) == S.STATUS_OBJECT_NAME_COLLISION
    assert add(share="new", path=str(tmp_path / "missing")) == S.STATUS_OBJECT_PATH_NOT_FOUND
    (tmp_path / "file").write_text("x")
    assert add(share="new", path=str(tmp_path / "file")) == S.STATUS_OBJECT_PATH_NOT_FOUND
    for name in ["", "a\\b", "a/b", "a:b", "a*", "a?", 'a"', "a<", "a>", "a|", "a\x00", "x" * 81]:
        assert add(share=name, path=str(tmp_path)) == S.STATUS_OBJECT_NAME_INVALID, name
    assert add(path=str(tmp_path)) == S.STATUS_INVALID_PARAMETER
    assert add(share="new") == S.STATUS_INVALID_PARAMETER
    assert list(fsctl(rdr, FsctlCode.RDBSS_LIST_SHARES).result["shares"]) == ["Data"]
    fsctl(rdr, FsctlCode.RDBSS_ADD_SHARE, share="x" * 80, path=str(tmp_path))


def test_remove_unknown_share_and_unknown_codes(rdr: LocalMiniRdr) -> None:
    assert status(lambda: fsctl(rdr, FsctlCode.RDBSS_REMOVE_SHARE, share="nope")) == (
        S.STATUS_BAD_NETWORK_NAME
    )
    assert status(lambda: fsctl(rdr, FsctlCode.RDBSS_PING)) == S.STATUS_INVALID_DEVICE_REQUEST


# --- threads ---------------------------------------------------------------------------------
def test_concurrent_opens_get_distinct_ids(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_text("x")
    ids: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [open_id(rdr, "f") for _ in range(50)]
        with lock:
            ids.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 400
    for sid in ids:
        close(rdr, sid)
    assert status(lambda: close(rdr, ids[0])) == S.STATUS_INVALID_HANDLE


def test_stat_mode_is_reported(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f").write_text("x")
    (root / "f").chmod(0o640)
    assert stat.S_IMODE(query(rdr, open_id(rdr, "f"))["mode"]) == 0o640


# --- security (POSIX owner, group and mode) and the notify interval option ------------------
def _sd(rdr: LocalMiniRdr, srv_open: int, info: int = 0x7) -> dict[str, Any]:
    ctx = rx(IrpMj.QUERY_SECURITY, srv_open=srv_open, info=InfoParameters(info_class=info))
    result: dict[str, Any] = rdr.query_sd_info(ctx).result
    return result


def _set_sd(rdr: LocalMiniRdr, srv_open: int, info: int, **fields: Any) -> Result:
    params = InfoParameters(info_class=info, args=fields)
    return rdr.set_sd_info(rx(IrpMj.SET_SECURITY, srv_open=srv_open, info=params))


def test_security_maps_the_posix_owner_group_and_mode(rdr: LocalMiniRdr, root: Path) -> None:
    (root / "f.txt").write_text("x")
    os.chmod(root / "f.txt", 0o640)
    srv_open = open_id(rdr, "f.txt")  # a read-only open can still read and set security
    sd = _sd(rdr, srv_open)
    st = os.stat(root / "f.txt")
    assert (sd["owner"], sd["group"]) == (f"S-1-22-1-{st.st_uid}", f"S-1-22-2-{st.st_gid}")
    assert sd["mode"] == st.st_mode and [a["sid"] for a in sd["dacl"]] == [sd["owner"], sd["group"]]
    assert _set_sd(rdr, srv_open, 0x4, mode=0o604).status == S.STATUS_SUCCESS
    assert os.stat(root / "f.txt").st_mode & 0o7777 == 0o604
    deny = [{"type": 1, "flags": 0, "mask": 0x120089, "sid": "S-1-1-0"}]
    assert "allow" in failure(_set_sd, rdr, srv_open, 0x4, dacl=deny).strerror
    assert os.stat(root / "f.txt").st_mode & 0o7777 == 0o604
    assert failure(_sd, rdr, srv_open, 0x8).status == S.STATUS_NOT_SUPPORTED  # no SACL


def test_security_of_an_attributes_only_open(rdr: LocalMiniRdr, root: Path) -> None:
    """An O_PATH open (no read access to the file) still answers and sets the mode."""
    (root / "locked.txt").write_text("x")
    os.chmod(root / "locked.txt", 0o000)
    srv_open = open_id(rdr, "locked.txt", access=A.FILE_READ_ATTRIBUTES)
    assert _sd(rdr, srv_open, 0x4)["dacl"] == []
    _set_sd(rdr, srv_open, 0x4, mode=0o600)
    assert os.stat(root / "locked.txt").st_mode & 0o777 == 0o600


@pytest.mark.parametrize("value", [0, -1, "1", True, 5000])
def test_a_bad_notify_interval_is_refused(root: Path, value: Any) -> None:
    with pytest.raises(ValueError, match="notify_interval"):
        LocalMiniRdr("l", {"server": "s", "shares": {"d": str(root)}, "notify_interval": value})


def _chown_to_root_status(folder: str) -> int:
    """Create a file in ``folder`` through the local mini-redirector and ask to give it to
    root; the status of that set."""
    rdr = LocalMiniRdr("l", {"server": "s", "shares": {"d": folder}})
    try:
        srv_open = open_id(rdr, "f", disposition=D.FILE_CREATE, share="d")
        params = InfoParameters(info_class=0x1, args={"owner": "S-1-22-1-0"})
        ctx = rx(IrpMj.SET_SECURITY, srv_call="s", net_root="d", srv_open=srv_open, info=params)
        try:
            return rdr.set_sd_info(ctx).status
        except NtStatusError as exc:
            return exc.status
    finally:
        rdr.close()


def _chown_to_root_status_as_nobody(folder: str) -> int:
    """``_chown_to_root_status`` in a worker process that became nobody first."""
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    return _chown_to_root_status(folder)


def test_a_chown_the_user_may_not_do_is_access_denied(tmp_path: Path) -> None:
    """A user who is not root cannot give a file away: STATUS_ACCESS_DENIED (as root, the check
    runs in a worker process that became nobody: forked from a fresh forkserver, not from this
    process, whose other threads may hold locks at the moment of a fork)."""
    if os.geteuid() != 0:
        assert _chown_to_root_status(str(tmp_path)) == S.STATUS_ACCESS_DENIED
        return
    # pytest's own temporary folders are root's alone (0700): one nobody can reach
    folder = Path(tempfile.mkdtemp(prefix="rdbss-chown-", dir="/tmp"))
    os.chmod(folder, 0o755)
    os.chown(folder, 65534, 65534)
    try:
        with multiprocessing.get_context("forkserver").Pool(1) as pool:
            status = pool.apply_async(_chown_to_root_status_as_nobody, (str(folder),)).get(60)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert status == S.STATUS_ACCESS_DENIED, hex(status)


# --- cancellation (the cancel routine of pending requests) ----------------------------------
def test_cancel_routine_ends_a_pending_lock_and_grants_the_next_waiter(
    rdr: LocalMiniRdr, root: Path
) -> None:
    (root / "f").write_bytes(bytes(10))
    completed: list[tuple[int, int]] = []
    rdr.attach_completion(lambda ctx, result: completed.append((ctx.request_id, result.status)))
    a, b, c = open_id(rdr, "f"), open_id(rdr, "f"), open_id(rdr, "f")

    def lock(sid: int, offset: int, length: int) -> RxContext:
        params = LowIoParameters(
            operation=LowIoOp.EXCLUSIVELOCK, offset=offset, length=length, flags=0
        )
        ctx = rx(IrpMj.LOCK_CONTROL, srv_open=sid, lowio=params, timeout_ms=30_000)
        rdr.low_io_submit(ctx)
        return ctx

    lock(a, 0, 5)
    b_waits, c_waits = lock(b, 0, 5), lock(c, 3, 5)  # c overlaps b: waits behind it too
    assert rdr.pending_requests() == 2
    assert rdr.cancel(b_waits.request_id) is True
    assert completed == [(b_waits.request_id, S.STATUS_CANCELLED)]
    assert rdr.cancel(b_waits.request_id) is False  # once only
    assert rdr.pending_requests() == 1
    unlock = LowIoParameters(operation=LowIoOp.UNLOCK, offset=0, length=5)
    rdr.low_io_submit(rx(IrpMj.LOCK_CONTROL, srv_open=a, lowio=unlock))
    assert completed[-1] == (c_waits.request_id, S.STATUS_SUCCESS)  # c, never the cancelled b
    assert status(lambda: write(rdr, b, 4, b"x")) == S.STATUS_FILE_LOCK_CONFLICT


def test_cancel_routine_ends_a_pending_notify_without_losing_changes(
    rdr: LocalMiniRdr, root: Path
) -> None:
    (root / "d").mkdir()
    completed: list[tuple[int, int]] = []
    rdr.attach_completion(lambda ctx, result: completed.append((ctx.request_id, result.status)))
    sid = open_id(rdr, "d", options=Opt.FILE_DIRECTORY_FILE)
    params = LowIoParameters(operation=LowIoOp.NOTIFY_CHANGE_DIRECTORY, completion_filter=0x3)

    def notify() -> tuple[RxContext, Result]:
        ctx = rx(IrpMj.DIRECTORY_CONTROL, srv_open=sid, fobx=7, lowio=params, timeout_ms=30_000)
        return ctx, rdr.low_io_submit(ctx)

    ctx, first = notify()
    assert first.status == S.STATUS_PENDING and rdr.pending_requests() == 1
    assert rdr.cancel(ctx.request_id, S.STATUS_IO_TIMEOUT) is True
    assert completed == [(ctx.request_id, S.STATUS_IO_TIMEOUT)] and rdr.pending_requests() == 0
    assert rdr.cancel(12345) is False
    (root / "d" / "new.txt").write_bytes(b"x")  # while nobody waits
    _, again = notify()  # the next notify on the handle reports it
    assert again.result == {"changes": [{"action": "added", "name": "new.txt"}]}


# --- the hot path's shortcuts ----------------------------------------------------------------
def test_paths_resolve_as_realpath_does(root: Path, outside: Path) -> None:
    """_resolve_below takes one lstat per component below the share's folder; it must name
    what realpath names: links inside and out, missing components, nested folders."""
    from rdbss.minirdrs.local.shares import resolve_below as _resolve_below

    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f.txt").write_text("x")
    (root / "a" / "up").symlink_to("..")
    (root / "a" / "out").symlink_to(outside)
    (root / "chain").symlink_to("a/up/a/b")
    real_root = os.path.realpath(root)
    cases = [
        [],
        ["a"],
        ["a", "b", "f.txt"],
        ["a", "b", "missing", "deeper"],
        ["a", "up", "a", "b"],
        ["a", "out", "secret.txt"],
        ["chain", "f.txt"],
        ["nothing"],
    ]
    for parts in cases:
        expected = os.path.realpath(os.path.join(real_root, *parts))
        resolved, st = _resolve_below(real_root, parts)
        assert resolved == expected, parts
        if st is not None:  # the lstat it took is the entry's own (the query open answers it)
            assert os.path.samestat(st, os.lstat(expected)), parts


def test_a_share_folder_re_pointed_while_running_is_followed(tmp_path: Path) -> None:
    """The share's resolved folder is kept between requests, but only while the configured
    path still leads to the same directory."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "which.txt").write_text("first")
    (second / "which.txt").write_text("second")
    link = tmp_path / "share"
    link.symlink_to(first)
    rdr = LocalMiniRdr("local-1", {"server": "local", "shares": {"Data": str(link)}})
    try:
        srv_open = open_id(rdr, "which.txt")
        assert read(rdr, srv_open, 0, 10).payload == b"first"
        close(rdr, srv_open)
        link.unlink()
        link.symlink_to(second)
        srv_open = open_id(rdr, "which.txt")
        assert read(rdr, srv_open, 0, 10).payload == b"second"
        close(rdr, srv_open)
        link.unlink()
        assert status(create, rdr, "which.txt") == S.STATUS_BAD_NETWORK_NAME
    finally:
        rdr.close()


def test_a_prepared_read_copies_after_its_handle_is_closed(rdr: LocalMiniRdr, root: Path) -> None:
    """The large shared-memory read is checked first and copied later on another thread from
    its own descriptor: a close in between must not make it read something else."""
    data = os.urandom(1 << 20)
    (root / "big.bin").write_bytes(data)
    srv_open = open_id(rdr, "big.bin")
    lowio = LowIoParameters(operation=LowIoOp.READ, offset=4096, length=65536)
    copy = rdr.prepare_read_into(rx(IrpMj.READ, srv_open=srv_open, lowio=lowio), 65536)
    assert copy is not None
    close(rdr, srv_open)
    (root / "other.bin").write_bytes(b"\0" * len(data))
    other = os.open(root / "other.bin", os.O_RDONLY)  # takes the closed descriptor's number
    try:
        target = memoryview(bytearray(65536))
        result = copy(target)
        assert result.information == 65536
        assert bytes(target) == data[4096 : 4096 + 65536]
    finally:
        os.close(other)
    write_only = open_id(rdr, "big.bin", access=A.FILE_WRITE_DATA)
    refused = failure(rdr.prepare_read_into, rx(IrpMj.READ, srv_open=write_only, lowio=lowio), 1)
    assert refused.status == S.STATUS_ACCESS_DENIED

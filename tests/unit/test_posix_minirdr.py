"""PosixMiniRdr (rdbss/minirdrs/posix.py) driven through a tiny in-memory backend: a dict of
share-relative paths. The backend defines primitives only (no routine), so what passes here
is the base's semantics on the primitive contract alone."""

from __future__ import annotations

import itertools
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from rdbss.minirdrs.base import ROUTINE_METHODS, OpenBase, Result
from rdbss.minirdrs.posix import REQUIRED_PRIMITIVES, OpenRequest, PosixMiniRdr, Volume
from rdbss.minirdrs.primitives import PosixPrimitives
from rdbss.wire.constants import (
    Access,
    CreateDisposition,
    CreateInformation,
    CreateOptions,
    FileAttributes,
    FileInformationClass,
    FsInformationClass,
    IrpMj,
    LowIoOp,
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
A = Access
Opt = CreateOptions
Info = FileInformationClass
_inodes = itertools.count(2)


@dataclass
class Node:
    is_dir: bool
    data: bytearray = field(default_factory=bytearray)
    mode: int = 0o644
    mtime_ns: int = 1_000_000_000
    atime_ns: int = 1_000_000_000
    ino: int = field(default_factory=lambda: next(_inodes))


@dataclass(frozen=True)
class MemStat:
    st_mode: int
    st_size: int
    st_ino: int
    st_atime_ns: int
    st_mtime_ns: int
    st_ctime_ns: int = 1_000_000_000
    st_nlink: int = 1
    st_blocks: int = 0


@dataclass(slots=True, kw_only=True)
class MemOpen(OpenBase[str]):
    node: Node


class MemMiniRdr(PosixMiniRdr[str, MemOpen]):
    """Shares are names; each is a dict of share-relative path -> Node ("" is the root)."""

    kind = "memory"
    lowio_ops = frozenset({LowIoOp.READ, LowIoOp.WRITE})

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, config)
        self.files: dict[str, dict[str, Node]] = {
            s: {"": Node(True, mode=0o755)} for s in config["shares"]
        }
        self.closed: list[str] = []
        self.requests: list[OpenRequest] = []  # what each open was asked
        self.answer_stat = False  # open answers the stat it learned
        self.fstats = 0
        self.readonly_calls = 0
        self.renames: list[tuple[MemOpen, str, Any]] = []

    def _node(self, share: str, rel: str) -> Node:
        node = self.files[share].get(rel)
        if node is None:
            raise FileNotFoundError(2, "No such file or directory")
        return node

    @staticmethod
    def _stat(node: Node) -> MemStat:
        kind = stat.S_IFDIR if node.is_dir else stat.S_IFREG
        return MemStat(kind | node.mode, len(node.data), node.ino, node.atime_ns, node.mtime_ns)

    def share_of(self, ctx: RxContext) -> str:
        if ctx.net_root not in self.files:
            raise NtStatusError(S.STATUS_BAD_NETWORK_NAME, f"no share {ctx.net_root!r}")
        return ctx.net_root

    def lookup(self, share: str, rel: str, *, follow: bool = True) -> MemStat | None:
        node = self.files[share].get(rel)
        return None if node is None else self._stat(node)

    def open(self, share: str, rel: str, how: OpenRequest) -> tuple[MemOpen, MemStat | None]:
        self.requests.append(how)
        if how.create:
            if rel in self.files[share]:
                raise FileExistsError(17, "File exists")
            self.files[share][rel] = Node(False)
        node = self._node(share, rel)
        if how.truncate:
            del node.data[:]
        if how.readonly and self.answer_stat:  # set with the open
            node.mode &= ~0o222
        op = MemOpen(
            share, rel, how.directory, how.can_read, how.can_write, how.append_only, node=node
        )
        return op, (self._stat(node) if self.answer_stat else None)

    def fstat(self, op: MemOpen) -> MemStat:
        self.fstats += 1
        return self._stat(op.node)

    def close_handle(self, op: MemOpen) -> None:
        self.closed.append(op.path)

    def read_at(self, op: MemOpen, offset: int, length: int) -> bytes:
        return bytes(op.node.data[offset : offset + length])

    def write_at(self, op: MemOpen, offset: int | None, data: memoryview) -> int:
        where = len(op.node.data) if offset is None else offset
        if where > len(op.node.data):
            op.node.data.extend(bytes(where - len(op.node.data)))
        op.node.data[where : where + len(data)] = data
        return len(data)

    def list_dir(self, op: MemOpen) -> list[tuple[str, Any]]:
        prefix = op.path + "\\" if op.path else ""
        return [
            (rel[len(prefix) :], self._stat(node))
            for rel, node in self.files[op.share].items()
            if rel and rel.startswith(prefix) and "\\" not in rel[len(prefix) :]
        ]

    def mkdir(self, share: str, rel: str) -> MemStat | None:
        self.files[share][rel] = node = Node(True, mode=0o755)
        return self._stat(node) if self.answer_stat else None

    def rename(self, op: MemOpen, target: str, *, replace: bool, existing: Any) -> None:
        self.renames.append((op, target, existing))
        files, rel = self.files[op.share], op.path
        for path in [p for p in files if p == rel or p.startswith(rel + "\\")]:
            files[target + path[len(rel) :]] = files.pop(path)

    def unlink(self, op: MemOpen) -> None:
        del self.files[op.share][op.path]

    def rmdir(self, op: MemOpen) -> None:
        del self.files[op.share][op.path]

    def set_size(self, op: MemOpen, size: int) -> None:
        del op.node.data[size:]
        op.node.data.extend(bytes(size - len(op.node.data)))

    def set_times(self, op: MemOpen, atime_ns: int | None, mtime_ns: int | None) -> None:
        op.node.atime_ns = op.node.atime_ns if atime_ns is None else atime_ns
        op.node.mtime_ns = op.node.mtime_ns if mtime_ns is None else mtime_ns

    def set_readonly(self, op: MemOpen, readonly: bool) -> None:
        self.readonly_calls += 1
        op.node.mode = op.node.mode & ~0o222 if readonly else op.node.mode | 0o200

    def statvfs(self, share: str) -> Volume:
        return Volume(total=1 << 20, free=1 << 19, avail=1 << 18, block=4096, serial=7)


_ids = itertools.count(1)


def rx(major: int = IrpMj.CREATE, **fields: Any) -> RxContext:
    fields.setdefault("net_root", "mem")
    return RxContext(request_id=next(_ids), major=major, **fields)


@pytest.fixture
def rdr() -> MemMiniRdr:
    return MemMiniRdr("mem", {"shares": ["mem"]})


def create(
    rdr: MemMiniRdr,
    path: str,
    disposition: int = D.FILE_OPEN,
    access: int = A.GENERIC_READ,
    options: int = 0,
    attributes: int = 0,
) -> Result:
    params = CreateParameters(
        desired_access=int(access),
        disposition=int(disposition),
        create_options=int(options),
        file_attributes=int(attributes),
    )
    return rdr.create(rx(path=path, create=params))


def srv_open(result: Result) -> int:
    return int(result.result["srv_open"])


def status(call: Any, *args: Any, **kwargs: Any) -> int:
    with pytest.raises(NtStatusError) as info:
        call(*args, **kwargs)
    return info.value.status


def write(rdr: MemMiniRdr, so: int, offset: int, data: bytes) -> Result:
    lowio = LowIoParameters(operation=LowIoOp.WRITE, offset=offset, length=len(data))
    return rdr.low_io_submit(rx(IrpMj.WRITE, srv_open=so, lowio=lowio), data)


def read(rdr: MemMiniRdr, so: int, offset: int, length: int) -> Result:
    lowio = LowIoParameters(operation=LowIoOp.READ, offset=offset, length=length)
    return rdr.low_io_submit(rx(IrpMj.READ, srv_open=so, lowio=lowio))


def set_info(rdr: MemMiniRdr, so: int, info_class: int, **args: Any) -> Result:
    info = InfoParameters(info_class=int(info_class), args=args)
    return rdr.set_file_info(rx(IrpMj.SET_INFORMATION, srv_open=so, info=info))


def close(rdr: MemMiniRdr, so: int) -> Result:
    return rdr.close_srv_open(rx(IrpMj.CLOSE, srv_open=so))


def test_the_backend_is_primitives_only() -> None:
    routines = set(ROUTINE_METHODS.values())
    assert not routines & set(vars(MemMiniRdr)), "the backend must not implement a routine"
    assert set(REQUIRED_PRIMITIVES) <= set(vars(MemMiniRdr))


def test_create_write_read_close(rdr: MemMiniRdr) -> None:
    made = create(rdr, "a.txt", D.FILE_CREATE, A.GENERIC_READ | A.GENERIC_WRITE)
    assert made.information == CreateInformation.FILE_CREATED
    assert made.result["directory"] is False
    so = srv_open(made)
    assert write(rdr, so, 0, b"hello").information == 5
    assert write(rdr, so, -1, b"!").information == 1  # -1: at the end
    assert read(rdr, so, 1, 100).payload == b"ello!"
    assert status(read, rdr, so, 6, 1) == S.STATUS_END_OF_FILE
    assert close(rdr, so).status == S.STATUS_SUCCESS
    assert rdr.closed == ["a.txt"]
    assert status(close, rdr, so) == S.STATUS_INVALID_HANDLE


def test_the_table_decides_each_disposition(rdr: MemMiniRdr) -> None:
    rw = A.GENERIC_READ | A.GENERIC_WRITE
    assert status(create, rdr, "x", D.FILE_OPEN) == S.STATUS_OBJECT_NAME_NOT_FOUND
    assert status(create, rdr, "x", D.FILE_OVERWRITE) == S.STATUS_OBJECT_NAME_NOT_FOUND
    so = srv_open(create(rdr, "x", D.FILE_OPEN_IF, rw))
    write(rdr, so, 0, b"data")
    close(rdr, so)
    assert status(create, rdr, "x", D.FILE_CREATE) == S.STATUS_OBJECT_NAME_COLLISION
    opened = create(rdr, "x", D.FILE_OPEN_IF)
    assert opened.information == CreateInformation.FILE_OPENED
    assert opened.result["size"] == 4
    overwritten = create(rdr, "x", D.FILE_OVERWRITE_IF, rw)
    assert overwritten.information == CreateInformation.FILE_OVERWRITTEN
    assert overwritten.result["size"] == 0
    superseded = create(rdr, "x", D.FILE_SUPERSEDE, rw)
    assert superseded.information == CreateInformation.FILE_SUPERSEDED


def test_missing_parent_and_kind_checks(rdr: MemMiniRdr) -> None:
    assert status(create, rdr, "no\\x", D.FILE_CREATE) == S.STATUS_OBJECT_PATH_NOT_FOUND
    d = create(rdr, "d", D.FILE_CREATE, options=Opt.FILE_DIRECTORY_FILE)
    assert d.result["directory"] is True
    assert rdr.files["mem"]["d"].is_dir
    nd = Opt.FILE_NON_DIRECTORY_FILE
    assert status(create, rdr, "d", options=nd) == S.STATUS_FILE_IS_A_DIRECTORY
    assert status(create, rdr, "d", access=A.GENERIC_WRITE) == S.STATUS_FILE_IS_A_DIRECTORY
    close(rdr, srv_open(create(rdr, "d\\f", D.FILE_CREATE)))
    opts = Opt.FILE_DIRECTORY_FILE
    assert status(create, rdr, "d\\f", options=opts) == S.STATUS_NOT_A_DIRECTORY
    assert status(create, rdr, "..\\x") == S.STATUS_OBJECT_NAME_INVALID


class _RootKnown(MemMiniRdr):
    """Knows the share root exists (as a backend that checked it at MRxCreateVNetRoot)."""

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, config)
        self.looked_up: list[str] = []

    def lookup(self, share: str, rel: str, *, follow: bool = True) -> MemStat | None:
        self.looked_up.append(rel)
        return super().lookup(share, rel, follow=follow)

    def parent_known(self, share: str, rel: str) -> bool:
        return "\\" not in rel


def test_a_known_parent_is_not_looked_up() -> None:
    rdr = _RootKnown("mem", {"shares": ["mem"]})
    close(rdr, srv_open(create(rdr, "d", D.FILE_CREATE, options=Opt.FILE_DIRECTORY_FILE)))
    assert rdr.looked_up == ["d"]  # (the root: known)
    rdr.looked_up.clear()
    close(rdr, srv_open(create(rdr, "d\\f", D.FILE_CREATE)))
    assert rdr.looked_up == ["d\\f", "d"]
    assert status(create, rdr, "no\\x", D.FILE_CREATE) == S.STATUS_OBJECT_PATH_NOT_FOUND


def test_open_gets_what_the_lookup_found_and_may_answer_the_stat(rdr: MemMiniRdr) -> None:
    close(rdr, srv_open(create(rdr, "f", D.FILE_CREATE, A.GENERIC_WRITE)))
    assert rdr.requests[-1].found is None  # a new file
    assert rdr.fstats == 1  # the open answered no stat: the create asked fstat
    rdr.answer_stat = True
    opened = create(rdr, "f", D.FILE_OPEN, A.GENERIC_READ)
    found = rdr.requests[-1].found
    assert found is not None and found.st_ino == opened.result["file_id"]
    assert rdr.fstats == 1  # the create answered the open's own stat
    close(rdr, srv_open(opened))
    close(rdr, srv_open(create(rdr, "d", D.FILE_CREATE, options=Opt.FILE_DIRECTORY_FILE)))
    assert rdr.requests[-1].directory and rdr.requests[-1].found is not None  # mkdir's stat
    assert rdr.fstats == 1


def test_an_open_may_set_the_readonly_attribute_itself(rdr: MemMiniRdr) -> None:
    made = create(rdr, "a", D.FILE_CREATE, A.GENERIC_WRITE, attributes=FileAttributes.READONLY)
    assert rdr.requests[-1].readonly and rdr.readonly_calls == 1  # the base set it
    assert made.result["attributes"] & FileAttributes.READONLY
    close(rdr, srv_open(made))
    rdr.answer_stat = True
    made = create(rdr, "b", D.FILE_CREATE, A.GENERIC_WRITE, attributes=FileAttributes.READONLY)
    assert rdr.readonly_calls == 1  # the open did
    assert made.result["attributes"] & FileAttributes.READONLY
    close(rdr, srv_open(made))
    close(rdr, srv_open(create(rdr, "c", D.FILE_CREATE, A.GENERIC_WRITE)))
    opened = create(rdr, "c", D.FILE_OPEN, A.GENERIC_READ, attributes=FileAttributes.READONLY)
    assert not rdr.requests[-1].readonly  # an open that does not overwrite leaves it
    close(rdr, srv_open(opened))


def test_query_open_answers_like_create_without_opening(rdr: MemMiniRdr) -> None:
    close(rdr, srv_open(create(rdr, "f", D.FILE_CREATE)))
    params = CreateParameters(desired_access=int(A.FILE_READ_ATTRIBUTES))
    got = rdr.query_open(rx(path="f", create=params))
    assert got.information == CreateInformation.FILE_OPENED
    assert "srv_open" not in got.result
    assert len(rdr._opens) == 0
    assert status(rdr.query_open, rx(path="g", create=params)) == S.STATUS_OBJECT_NAME_NOT_FOUND
    assert status(rdr.query_open, rx(path="g\\h", create=params)) == (
        S.STATUS_OBJECT_PATH_NOT_FOUND
    )
    wide = CreateParameters(desired_access=int(A.GENERIC_READ))
    assert status(rdr.query_open, rx(path="f", create=wide)) == S.STATUS_INVALID_PARAMETER


def test_access_checks(rdr: MemMiniRdr) -> None:
    so = srv_open(create(rdr, "f", D.FILE_CREATE, A.FILE_READ_DATA))
    assert status(write, rdr, so, 0, b"x") == S.STATUS_ACCESS_DENIED
    ro = srv_open(create(rdr, "f", access=A.FILE_WRITE_DATA))
    assert status(read, rdr, ro, 0, 1) == S.STATUS_ACCESS_DENIED
    assert status(read, rdr, so, -1, 1) == S.STATUS_INVALID_PARAMETER
    append = srv_open(create(rdr, "f", access=A.FILE_APPEND_DATA))
    write(rdr, ro, 0, b"abc")
    write(rdr, append, 0, b"Z")  # append only: the offset is ignored
    assert bytes(rdr.files["mem"]["f"].data) == b"abcZ"


def test_readonly_attribute_and_read_only_files(rdr: MemMiniRdr) -> None:
    made = create(rdr, "r", D.FILE_CREATE, attributes=FileAttributes.READONLY)
    assert made.result["attributes"] & FileAttributes.READONLY
    close(rdr, srv_open(made))
    assert status(create, rdr, "r", access=A.GENERIC_WRITE) == S.STATUS_ACCESS_DENIED
    so = srv_open(create(rdr, "r", access=A.GENERIC_READ))
    disposition = Info.FileDispositionInformation
    assert status(set_info, rdr, so, disposition, delete=True) == S.STATUS_CANNOT_DELETE
    set_info(rdr, so, Info.FileBasicInformation, attributes=int(FileAttributes.NORMAL))
    assert rdr.files["mem"]["r"].mode & 0o200


def test_delete_pending_then_gone_at_close(rdr: MemMiniRdr) -> None:
    so = srv_open(create(rdr, "f", D.FILE_CREATE))
    other = srv_open(create(rdr, "f"))
    set_info(rdr, so, Info.FileDispositionInformation, delete=True)
    assert status(create, rdr, "f") == S.STATUS_DELETE_PENDING
    close(rdr, so)  # the open marked delete-pending deletes as it closes
    assert "f" not in rdr.files["mem"]
    assert close(rdr, other).status == S.STATUS_SUCCESS


def test_delete_on_close_refuses_a_full_directory(rdr: MemMiniRdr) -> None:
    close(rdr, srv_open(create(rdr, "d", D.FILE_CREATE, options=Opt.FILE_DIRECTORY_FILE)))
    close(rdr, srv_open(create(rdr, "d\\f", D.FILE_CREATE)))
    opts = Opt.FILE_DIRECTORY_FILE | Opt.FILE_DELETE_ON_CLOSE
    assert status(create, rdr, "d", options=opts) == S.STATUS_DIRECTORY_NOT_EMPTY
    assert status(create, rdr, "", options=opts) == S.STATUS_ACCESS_DENIED
    so = srv_open(create(rdr, "d\\f", options=Opt.FILE_DELETE_ON_CLOSE))
    close(rdr, so)
    assert "d\\f" not in rdr.files["mem"]


def test_a_failed_create_leaves_nothing(rdr: MemMiniRdr) -> None:
    close(rdr, srv_open(create(rdr, "d", D.FILE_CREATE, options=Opt.FILE_DIRECTORY_FILE)))
    close(rdr, srv_open(create(rdr, "d\\f", D.FILE_CREATE)))
    # FILE_DELETE_ON_CLOSE of a new directory can never fail; a new file can, once read-only
    made = status(
        create,
        rdr,
        "new",
        D.FILE_CREATE,
        options=Opt.FILE_DELETE_ON_CLOSE,
        attributes=FileAttributes.READONLY,
    )
    assert made == S.STATUS_CANNOT_DELETE
    assert "new" not in rdr.files["mem"]


def test_rename_moves_the_open_and_its_children(rdr: MemMiniRdr) -> None:
    d = srv_open(create(rdr, "d", D.FILE_CREATE, options=Opt.FILE_DIRECTORY_FILE))
    f = srv_open(create(rdr, "d\\f", D.FILE_CREATE))
    set_info(rdr, d, Info.FileRenameInformation, target="e")
    assert rdr.renames[-1] == (rdr._opens.get(d), "e", None)  # the open; nothing at "e"
    assert set(rdr.files["mem"]) == {"", "e", "e\\f"}
    assert rdr._opens.get(f).path == "e\\f"
    close(rdr, srv_open(create(rdr, "g", D.FILE_CREATE)))
    rename = Info.FileRenameInformation
    assert status(set_info, rdr, f, rename, target="g") == S.STATUS_OBJECT_NAME_COLLISION
    set_info(rdr, f, rename, target="g", replace=True)
    assert rdr.renames[-1][2] is not None  # what the base found at "g"
    assert "g" in rdr.files["mem"] and "e\\f" not in rdr.files["mem"]
    replacing_a_dir = status(set_info, rdr, f, rename, target="e", replace=True)
    assert replacing_a_dir == S.STATUS_ACCESS_DENIED
    assert status(set_info, rdr, f, rename, target="x\\y") == S.STATUS_OBJECT_PATH_NOT_FOUND
    assert status(set_info, rdr, f, rename, target="") == S.STATUS_INVALID_PARAMETER


def test_sizes_and_times(rdr: MemMiniRdr) -> None:
    so = srv_open(create(rdr, "f", D.FILE_CREATE, A.GENERIC_READ | A.GENERIC_WRITE))
    set_info(rdr, so, Info.FileEndOfFileInformation, size=10)
    assert len(rdr.files["mem"]["f"].data) == 10
    set_info(rdr, so, Info.FileAllocationInformation, size=20)  # never grows the file
    assert len(rdr.files["mem"]["f"].data) == 10
    set_info(rdr, so, Info.FileAllocationInformation, size=3)
    assert len(rdr.files["mem"]["f"].data) == 3
    set_info(rdr, so, Info.FileBasicInformation, last_write_time=5_000_000_000)
    node = rdr.files["mem"]["f"]
    assert (node.mtime_ns, node.atime_ns) == (5_000_000_000, 1_000_000_000)
    size = Info.FileEndOfFileInformation
    assert status(set_info, rdr, so, size, size=-1) == S.STATUS_INVALID_PARAMETER
    ro = srv_open(create(rdr, "f"))
    assert status(set_info, rdr, ro, size, size=1) == S.STATUS_ACCESS_DENIED
    info = rdr.query_file_info(
        rx(
            IrpMj.QUERY_INFORMATION,
            srv_open=so,
            info=InfoParameters(info_class=int(Info.FileStandardInformation)),
        )
    )
    assert info.result["size"] == 3 and info.result["last_write_time"] == 5_000_000_000


def test_query_directory_lists_sorted_matches(rdr: MemMiniRdr) -> None:
    d = srv_open(create(rdr, "", options=Opt.FILE_DIRECTORY_FILE))
    for name in ("b.txt", "a.txt", "c.dat"):
        close(rdr, srv_open(create(rdr, name, D.FILE_CREATE)))
    pending = srv_open(create(rdr, "c.dat"))
    set_info(rdr, pending, Info.FileDispositionInformation, delete=True)

    def query(pattern: str, restart: bool = False) -> list[dict[str, Any]]:
        params = QueryDirectoryParameters(pattern=pattern, restart_scan=restart)
        got = rdr.query_directory(
            rx(IrpMj.DIRECTORY_CONTROL, srv_open=d, fobx=1, query_directory=params)
        )
        return list(got.result["entries"])

    assert [e["name"] for e in query("*.txt")] == ["a.txt", "b.txt"]
    assert status(query, "*.txt") == S.STATUS_NO_MORE_FILES
    entries = query("*", restart=True)
    assert [e["name"] for e in entries] == ["a.txt", "b.txt", "c.dat"]
    assert [e["delete_pending"] for e in entries] == [False, False, True]
    assert status(query, "*.none", restart=True) == S.STATUS_NO_SUCH_FILE
    f = srv_open(create(rdr, "a.txt"))
    params = QueryDirectoryParameters(pattern="*")
    ctx = rx(IrpMj.DIRECTORY_CONTROL, srv_open=f, query_directory=params)
    assert status(rdr.query_directory, ctx) == S.STATUS_INVALID_PARAMETER


def test_volume(rdr: MemMiniRdr) -> None:
    info = InfoParameters(info_class=int(FsInformationClass.FileFsFullSizeInformation))
    got = rdr.query_volume_info(rx(IrpMj.QUERY_VOLUME_INFORMATION, info=info)).result
    assert (got["total_bytes"], got["free_bytes"], got["avail_bytes"]) == (
        1 << 20,
        1 << 19,
        1 << 18,
    )
    assert got["label"] == "mem" and got["serial"] == 7
    assert status(rdr.query_volume_info, rx(net_root="nope", info=info)) == (
        S.STATUS_BAD_NETWORK_NAME
    )


def test_io_on_a_directory_and_unknown_operations(rdr: MemMiniRdr) -> None:
    d = srv_open(create(rdr, "", options=Opt.FILE_DIRECTORY_FILE))
    assert status(read, rdr, d, 0, 1) == S.STATUS_INVALID_DEVICE_REQUEST
    f = srv_open(create(rdr, "f", D.FILE_CREATE))
    lowio = LowIoParameters(operation=LowIoOp.SHAREDLOCK, offset=0, length=1)
    ctx = rx(IrpMj.LOCK_CONTROL, srv_open=f, lowio=lowio)
    assert status(rdr.low_io_submit, ctx) == S.STATUS_INVALID_DEVICE_REQUEST


def test_close_deletes_what_was_pending(rdr: MemMiniRdr) -> None:
    so = srv_open(create(rdr, "f", D.FILE_CREATE, options=Opt.FILE_DELETE_ON_CLOSE))
    assert so
    rdr.close()
    assert "f" not in rdr.files["mem"]
    assert rdr.closed == ["f"]


def test_defaults_of_a_store_without_times_or_read_only(rdr: MemMiniRdr) -> None:
    so = srv_open(create(rdr, "f", D.FILE_CREATE))
    op = rdr._opens.get(so)
    PosixPrimitives.set_readonly(rdr, op, False)  # nothing to do: accepted
    assert status(PosixPrimitives.set_readonly, rdr, op, True) == S.STATUS_NOT_SUPPORTED
    assert status(PosixPrimitives.set_times, rdr, op, 1, None) == S.STATUS_NOT_SUPPORTED
    assert PosixPrimitives.is_empty(rdr, rdr._opens.get(srv_open(create(rdr, "")))) is False

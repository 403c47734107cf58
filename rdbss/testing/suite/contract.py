"""The mini-redirector contract (see docs/routines.md, The routines and Low I/O) every backend
runs against its real server: create dispositions and options, low I/O reads and writes, sizes,
rename, delete, directory enumeration, file information and name validation. Each check names the
exact NTSTATUS; bytes are checked with the backend's independent client."""

from __future__ import annotations

import os
import time

import pytest

from rdbss.client import FileInfo
from rdbss.model.names import parse_unc
from rdbss.testing.suite.harness import (
    ConformanceBackend,
    Scratch,
    assert_status,
    listdir,
    opened,
    query_directory_status,
    raises_status,
    read_status,
    scan,
)
from rdbss.wire import (
    Access,
    CreateDisposition,
    CreateInformation,
    CreateOptions,
    FileAttributes,
    FileInformationClass,
    LowIoOp,
    NtStatus,
    Routine,
    ShareAccess,
)

S = NtStatus
D = CreateDisposition
CI = CreateInformation
O = CreateOptions  # noqa: E741 - the NT name of the flag family
RW = Access.GENERIC_READ | Access.GENERIC_WRITE
MiB = 1 << 20
OLD = b"old content"

LOWIO = Routine.MRxLowIOSubmit
READ = LowIoOp.READ
WRITE = LowIoOp.WRITE


def names(entries: list[FileInfo]) -> list[str]:
    return sorted(e.name for e in entries)


# ================================================================================ create
# (disposition, whether the file exists, the CreateInformation expected on success, the NTSTATUS
# expected on failure)
_DISPOSITIONS: list[tuple[D, bool, int | None, int | None]] = [
    (D.FILE_SUPERSEDE, False, CI.FILE_CREATED, None),
    (D.FILE_OPEN, False, None, S.STATUS_OBJECT_NAME_NOT_FOUND),
    (D.FILE_CREATE, False, CI.FILE_CREATED, None),
    (D.FILE_OPEN_IF, False, CI.FILE_CREATED, None),
    (D.FILE_OVERWRITE, False, None, S.STATUS_OBJECT_NAME_NOT_FOUND),
    (D.FILE_OVERWRITE_IF, False, CI.FILE_CREATED, None),
    (D.FILE_SUPERSEDE, True, CI.FILE_SUPERSEDED, None),
    (D.FILE_OPEN, True, CI.FILE_OPENED, None),
    (D.FILE_CREATE, True, None, S.STATUS_OBJECT_NAME_COLLISION),
    (D.FILE_OPEN_IF, True, CI.FILE_OPENED, None),
    (D.FILE_OVERWRITE, True, CI.FILE_OVERWRITTEN, None),
    (D.FILE_OVERWRITE_IF, True, CI.FILE_OVERWRITTEN, None),
]
_TRUNCATING = {CI.FILE_SUPERSEDED, CI.FILE_OVERWRITTEN}


@pytest.mark.parametrize(
    ("disposition", "exists", "information", "error"),
    _DISPOSITIONS,
    ids=[f"{d.name}-{'existing' if e else 'missing'}" for d, e, _, _ in _DISPOSITIONS],
)
def test_create_disposition(
    backend: ConformanceBackend,
    disposition: D,
    exists: bool,
    information: int | None,
    error: int | None,
) -> None:
    backend.requires(Routine.MRxCreate)
    c = backend.client
    d = backend.fresh_dir()
    if exists:
        d.put("f.bin", OLD)
    if error is not None:
        with raises_status(error):
            c.create(d.path("f.bin"), access=RW, disposition=disposition)
        if exists:
            assert d.get("f.bin") == OLD, "a failed create changed the file"
        else:
            assert d.absent_on_server("f.bin"), "a failed create left a file behind"
        return
    with opened(c, d.path("f.bin"), access=RW, disposition=disposition) as h:
        assert h.information == information, (
            f"{disposition.name} on a {'existing' if exists else 'missing'} file answered "
            f"CreateInformation {h.information}, expected {information}"
        )
        assert not h.info.is_dir
        truncated = information in _TRUNCATING or not exists
        expected = b"" if truncated else OLD
        assert h.info.size == len(expected), "the create result reports the wrong size"
        # the name exists on the server as soon as the create succeeds; the content is checked
        # after the close (a mini-redirector may stage data until then)
        assert not d.absent_on_server("f.bin"), "the file is not on the server after the create"
    assert d.get("f.bin") == expected


@pytest.mark.parametrize("disposition", [D.FILE_OVERWRITE, D.FILE_OVERWRITE_IF, D.FILE_SUPERSEDE])
def test_overwrite_truncates_and_leaves_no_old_bytes(
    backend: ConformanceBackend, disposition: D
) -> None:
    backend.requires(LOWIO, WRITE)
    c = backend.client
    d = backend.fresh_dir()
    d.put("f.bin", b"X" * 10_000)
    with opened(c, d.path("f.bin"), access=RW, disposition=disposition) as h:
        assert h.info.size == 0
        assert c.write_handle(h.fobx, 0, b"new") == 3
    assert d.get("f.bin") == b"new"


def test_directory_and_non_directory_options(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxCreate)
    c = backend.client
    d = backend.fresh_dir()
    d.put("file.txt", b"data")
    with raises_status(S.STATUS_NOT_A_DIRECTORY):
        c.create(d.path("file.txt"), options=O.FILE_DIRECTORY_FILE)
    with raises_status(S.STATUS_FILE_IS_A_DIRECTORY):
        c.create(d.unc, options=O.FILE_NON_DIRECTORY_FILE)
    # a new directory
    with opened(
        c,
        d.path("sub"),
        access=Access.FILE_LIST_DIRECTORY,
        disposition=D.FILE_CREATE,
        options=O.FILE_DIRECTORY_FILE,
    ) as h:
        assert h.information == CI.FILE_CREATED
        assert h.info.is_dir
    # opening it again, with FILE_OPEN_IF and with no option at all
    with opened(c, d.path("sub"), disposition=D.FILE_OPEN_IF, options=O.FILE_DIRECTORY_FILE) as h:
        assert h.information == CI.FILE_OPENED
        assert h.info.is_dir
        assert h.info.attributes & FileAttributes.DIRECTORY
    with opened(c, d.path("sub")) as h:
        assert h.info.is_dir
    # a directory where a name exists, a file where a directory exists
    with raises_status(S.STATUS_OBJECT_NAME_COLLISION):
        c.create(d.path("file.txt"), disposition=D.FILE_CREATE, options=O.FILE_DIRECTORY_FILE)
    with raises_status(S.STATUS_OBJECT_NAME_COLLISION):
        c.create(d.path("sub"), disposition=D.FILE_CREATE, options=O.FILE_NON_DIRECTORY_FILE)
    assert d.get("file.txt") == b"data"


def test_invalid_create_option_combinations(backend: ConformanceBackend) -> None:
    """NtCreateFile refuses FILE_DIRECTORY_FILE with FILE_NON_DIRECTORY_FILE, and
    FILE_DIRECTORY_FILE with a disposition other than CREATE/OPEN/OPEN_IF."""
    backend.requires(Routine.MRxCreate)
    c = backend.client
    d = backend.fresh_dir()
    with raises_status(S.STATUS_INVALID_PARAMETER):
        c.create(
            d.path("x"),
            disposition=D.FILE_OPEN_IF,
            options=O.FILE_DIRECTORY_FILE | O.FILE_NON_DIRECTORY_FILE,
        )
    with raises_status(S.STATUS_INVALID_PARAMETER):
        c.create(d.path("y"), disposition=D.FILE_OVERWRITE_IF, options=O.FILE_DIRECTORY_FILE)
    for name in ("x", "y"):
        with raises_status(S.STATUS_OBJECT_NAME_NOT_FOUND):
            c.stat(d.path(name))


def test_missing_parent_is_object_path_not_found(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxCreate)
    c = backend.client
    d = backend.fresh_dir()
    d.put("file.txt", b"data")
    for disposition in (D.FILE_OPEN, D.FILE_CREATE, D.FILE_OPEN_IF, D.FILE_OVERWRITE_IF):
        with raises_status(S.STATUS_OBJECT_PATH_NOT_FOUND):
            c.create(d.path("nodir", "f.txt"), access=RW, disposition=disposition)
    with raises_status(S.STATUS_OBJECT_PATH_NOT_FOUND):
        c.create(d.path("nodir", "sub"), disposition=D.FILE_CREATE, options=O.FILE_DIRECTORY_FILE)
    with raises_status(S.STATUS_OBJECT_PATH_NOT_FOUND):
        c.create(d.path("nodir", "deeper", "f.txt"))
    # a file used as a folder: the path, not the name, is not found
    with raises_status(S.STATUS_OBJECT_PATH_NOT_FOUND):
        c.create(d.path("file.txt", "f.txt"))
    with raises_status(S.STATUS_OBJECT_NAME_NOT_FOUND):
        c.create(d.path("missing.txt"))
    with raises_status(S.STATUS_OBJECT_NAME_NOT_FOUND):
        c.stat(d.path("nodir"))
    assert d.get("file.txt") == b"data"


def test_open_of_a_delete_pending_file_is_refused(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxSetFileInfo)
    c = backend.client
    d = backend.fresh_dir()
    d.put("f.txt", b"data")
    with opened(c, d.path("f.txt"), access=Access.DELETE) as h:
        c.set_info(h.fobx, FileInformationClass.FileDispositionInformation, delete=True)
        with raises_status(S.STATUS_DELETE_PENDING):
            c.create(d.path("f.txt"))
    with raises_status(S.STATUS_OBJECT_NAME_NOT_FOUND):
        c.stat(d.path("f.txt"))


def test_sharing_modes_between_opens(backend: ConformanceBackend) -> None:
    """IoCheckShareAccess across opens through the daemon: the core decides, so it holds on
    every backend whatever the server enforces."""
    c = backend.client
    d = backend.fresh_dir()
    d.put("s.txt", b"shared")
    other = backend.connect()
    try:
        with opened(
            c, d.path("s.txt"), access=Access.GENERIC_READ, share=ShareAccess.FILE_SHARE_READ
        ):
            with opened(other, d.path("s.txt"), access=Access.GENERIC_READ, share=ShareAccess.ALL):
                pass  # reading alongside a reader that shares read: fine
            with raises_status(S.STATUS_SHARING_VIOLATION):
                other.create(d.path("s.txt"), access=Access.GENERIC_WRITE)
            with raises_status(S.STATUS_SHARING_VIOLATION):
                other.create(d.path("s.txt"), access=Access.DELETE)
            # attribute-only opens take no part in sharing
            with opened(
                other, d.path("s.txt"), access=Access.FILE_READ_ATTRIBUTES, share=ShareAccess.NONE
            ):
                pass
        with opened(other, d.path("s.txt"), access=Access.GENERIC_WRITE):  # free again
            pass
    finally:
        other.close()


# ================================================================================ read / write
def flush_if_registered(backend: ConformanceBackend, fobx: int) -> bool:
    """FlushFileBuffers (MRxFlush) when registered: afterwards the server has the data. Without
    a flush, only a close guarantees that: a mini-redirector may stage writes until then."""
    if not backend.registers(Routine.MRxFlush):
        return False
    backend.client.flush_handle(fobx)
    return True


def test_write_and_read_at_offsets(backend: ConformanceBackend) -> None:
    backend.requires(LOWIO, WRITE)
    backend.requires(LOWIO, READ)
    c = backend.client
    d = backend.fresh_dir()
    with opened(c, d.path("f.bin"), access=RW, disposition=D.FILE_CREATE) as h:
        assert c.write_handle(h.fobx, 0, b"hello world") == 11
        assert c.write_handle(h.fobx, 6, b"WORLD") == 5
        assert c.read_handle(h.fobx, 6, 5) == b"WORLD"
        assert c.read_handle(h.fobx, 0, 3) == b"hel"
        # a read that straddles EOF returns what there is, successfully
        status, data = read_status(c, h.fobx, 4, 100)
        assert_status(status, S.STATUS_SUCCESS, "read across EOF")
        assert data == b"o WORLD"
        if flush_if_registered(backend, h.fobx):
            assert d.get("f.bin") == b"hello WORLD", "the server lacks the data after a flush"
    assert d.get("f.bin") == b"hello WORLD"


def test_write_past_eof_extends_with_zeros(backend: ConformanceBackend) -> None:
    backend.requires(LOWIO, WRITE)
    backend.requires(LOWIO, READ)
    c = backend.client
    d = backend.fresh_dir()
    with opened(c, d.path("sparse.bin"), access=RW, disposition=D.FILE_CREATE) as h:
        c.write_handle(h.fobx, 0, b"ab")
        c.write_handle(h.fobx, 100_000, b"cd")
        assert c.read_handle(h.fobx, 2, 10) == b"\0" * 10
        assert c.read_handle(h.fobx, 99_998, 10) == b"\0\0cd"
    assert d.get("sparse.bin") == b"ab" + b"\0" * 99_998 + b"cd"


def test_read_at_or_past_eof_is_end_of_file(backend: ConformanceBackend) -> None:
    backend.requires(LOWIO, READ)
    c = backend.client
    d = backend.fresh_dir()
    d.put("f.bin", b"0123456789")
    d.put("empty.bin", b"")
    with opened(c, d.path("f.bin")) as h:
        for offset in (10, 11, 1 << 20):
            status, data = read_status(c, h.fobx, offset, 5)
            assert_status(status, S.STATUS_END_OF_FILE, f"read at offset {offset} of 10 bytes")
            assert data == b""
        assert c.read_handle(h.fobx, 10, 5) == b""  # the client's view: empty, not an error
    with opened(c, d.path("empty.bin")) as h:
        status, _ = read_status(c, h.fobx, 0, 5)
        assert_status(status, S.STATUS_END_OF_FILE, "read of an empty file")


def test_append_writes_at_end_of_file(backend: ConformanceBackend) -> None:
    backend.requires(LOWIO, WRITE)
    c = backend.client
    d = backend.fresh_dir()
    d.put("log.txt", b"abc")
    with opened(c, d.path("log.txt"), access=RW) as h:
        assert c.write_handle(h.fobx, -1, b"def") == 3
        assert c.write_handle(h.fobx, -1, b"ghi") == 3
    assert d.get("log.txt") == b"abcdefghi"
    with c.open(d.path("log.txt"), "ab") as f:
        f.write(b"jkl")
    assert d.get("log.txt") == b"abcdefghijkl"


def test_large_io_crosses_chunk_sizes(backend: ConformanceBackend) -> None:
    backend.requires(LOWIO, WRITE)
    backend.requires(LOWIO, READ)
    c = backend.client
    d = backend.fresh_dir()
    up = os.urandom(5 * MiB + 12_345)  # over the client's 4 MiB write and 1 MiB read chunks
    assert c.write_bytes(d.path("up.bin"), up) == len(up)
    assert d.get("up.bin") == up
    down = os.urandom(3 * MiB + 7)
    d.put("down.bin", down)
    assert c.read_bytes(d.path("down.bin")) == down
    with opened(c, d.path("down.bin")) as h:
        # one read bigger than any chunk returns everything up to EOF
        assert c.read_handle(h.fobx, 0, 4 * MiB) == down
        assert c.read_handle(h.fobx, MiB - 3, 10) == down[MiB - 3 : MiB + 7]
    with opened(c, d.path("big-write.bin"), access=RW, disposition=D.FILE_CREATE) as h:
        assert c.write_handle(h.fobx, 0, up[: 4 * MiB]) == 4 * MiB
    assert d.get("big-write.bin") == up[: 4 * MiB]


def test_data_written_directly_is_read_through_rdbss(backend: ConformanceBackend) -> None:
    backend.requires(LOWIO, READ)
    c = backend.client
    d = backend.fresh_dir()
    d.put("direct.txt", b"written on the server")
    assert c.read_bytes(d.path("direct.txt")) == b"written on the server"
    d.put("direct.txt", b"changed")
    assert c.read_bytes(d.path("direct.txt")) == b"changed"


# ================================================================================ sizes
def test_end_of_file_truncates_and_extends(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxSetFileInfo)
    backend.requires(Routine.MRxQueryFileInfo)
    c = backend.client
    d = backend.fresh_dir()
    data = bytes(range(100))
    d.put("f.bin", data)
    eof = FileInformationClass.FileEndOfFileInformation
    can_read = backend.registers(LOWIO, READ)
    for size, expected in ((10, data[:10]), (50, data[:10] + b"\0" * 40), (0, b"")):
        with opened(c, d.path("f.bin"), access=RW) as h:
            c.set_info(h.fobx, eof, size=size)
            assert c.query_info(h.fobx).size == size
            if can_read and size:
                assert c.read_handle(h.fobx, 0, 100) == expected
            if flush_if_registered(backend, h.fobx):
                assert d.get("f.bin") == expected, f"server after a flush at size {size}"
        assert d.get("f.bin") == expected, f"server after closing at size {size}"
        assert c.stat(d.path("f.bin")).size == size
    c.truncate(d.path("f.bin"), 7)
    assert c.stat(d.path("f.bin")).size == 7
    assert d.get("f.bin") == b"\0" * 7


# ================================================================================ rename
def test_rename_to_a_new_name(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxSetFileInfo)
    c = backend.client
    d = backend.fresh_dir()
    d.put("a.txt", b"AAA")
    c.rename(d.path("a.txt"), d.path("b.txt"))
    assert d.get("b.txt") == b"AAA"
    assert d.absent_on_server("a.txt")
    with raises_status(S.STATUS_OBJECT_NAME_NOT_FOUND):
        c.stat(d.path("a.txt"))
    assert c.stat(d.path("b.txt")).size == 3


def test_rename_across_directories(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxSetFileInfo)
    c = backend.client
    d = backend.fresh_dir()
    c.mkdir(d.path("one"))
    c.mkdir(d.path("two"))
    d.put("one\\f.txt", b"moved")
    c.rename(d.path("one", "f.txt"), d.path("two", "g.txt"))
    assert d.get("two\\g.txt") == b"moved"
    assert d.absent_on_server("one\\f.txt")
    # a directory moves with its content
    c.rename(d.path("two"), d.path("one", "three"))
    assert d.get("one\\three\\g.txt") == b"moved"
    with raises_status(S.STATUS_OBJECT_NAME_NOT_FOUND):
        c.stat(d.path("two"))


def test_rename_over_an_existing_file(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxSetFileInfo)
    c = backend.client
    d = backend.fresh_dir()
    d.put("a.txt", b"AAA")
    d.put("b.txt", b"BBBBBB")
    with raises_status(S.STATUS_OBJECT_NAME_COLLISION):
        c.rename(d.path("a.txt"), d.path("b.txt"))
    assert d.get("a.txt") == b"AAA"
    assert d.get("b.txt") == b"BBBBBB"
    c.rename(d.path("a.txt"), d.path("b.txt"), replace=True)
    assert d.get("b.txt") == b"AAA"
    assert d.absent_on_server("a.txt")


def test_rename_into_a_missing_directory(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxSetFileInfo)
    c = backend.client
    d = backend.fresh_dir()
    d.put("a.txt", b"AAA")
    with raises_status(S.STATUS_OBJECT_PATH_NOT_FOUND):
        c.rename(d.path("a.txt"), d.path("nodir", "a.txt"))
    assert d.get("a.txt") == b"AAA"


# ================================================================================ delete
def test_delete_on_close_removes_a_file_at_close(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxCreate)
    c = backend.client
    d = backend.fresh_dir()
    d.put("f.txt", b"data")
    h = c.create(
        d.path("f.txt"),
        access=Access.DELETE,
        options=O.FILE_NON_DIRECTORY_FILE | O.FILE_DELETE_ON_CLOSE,
    )
    try:
        assert d.get("f.txt") == b"data", "the file went before its handle was closed"
    finally:
        c.close_handle(h.fobx)
    assert d.absent_on_server("f.txt")
    with raises_status(S.STATUS_OBJECT_NAME_NOT_FOUND):
        c.stat(d.path("f.txt"))
    # the client helper does the same
    d.put("g.txt", b"data")
    c.remove(d.path("g.txt"))
    assert d.absent_on_server("g.txt")


def test_delete_on_close_removes_an_empty_directory(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxCreate)
    c = backend.client
    d = backend.fresh_dir()
    c.mkdir(d.path("empty"))
    c.rmdir(d.path("empty"))
    with raises_status(S.STATUS_OBJECT_NAME_NOT_FOUND):
        c.stat(d.path("empty"))
    if backend.registers(Routine.MRxQueryDirectory):
        assert listdir(c, d.unc) == []


def test_delete_disposition_on_a_file_and_an_empty_directory(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxSetFileInfo)
    c = backend.client
    d = backend.fresh_dir()
    d.put("f.txt", b"data")
    c.mkdir(d.path("empty"))
    c.delete(d.path("f.txt"))
    assert d.absent_on_server("f.txt")
    c.delete(d.path("empty"))
    with raises_status(S.STATUS_OBJECT_NAME_NOT_FOUND):
        c.stat(d.path("empty"))
    if backend.registers(Routine.MRxQueryDirectory):
        assert listdir(c, d.unc) == []


def test_delete_of_a_non_empty_directory_is_refused(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxSetFileInfo)
    c = backend.client
    d = backend.fresh_dir()
    c.mkdir(d.path("full"))
    d.put("full\\f.txt", b"keep me")
    # refused when asked (FileDispositionInformation), not later at close
    with (
        opened(c, d.path("full"), access=Access.DELETE) as h,
        raises_status(S.STATUS_DIRECTORY_NOT_EMPTY),
    ):
        c.set_info(h.fobx, FileInformationClass.FileDispositionInformation, delete=True)
    with raises_status(S.STATUS_DIRECTORY_NOT_EMPTY):
        c.delete(d.path("full"))
    assert c.stat(d.path("full")).is_dir
    assert d.get("full\\f.txt") == b"keep me"


def test_delete_of_a_missing_name(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxCreate)
    c = backend.client
    d = backend.fresh_dir()
    with raises_status(S.STATUS_OBJECT_NAME_NOT_FOUND):
        c.delete(d.path("missing.txt"))
    with raises_status(S.STATUS_OBJECT_NAME_NOT_FOUND):
        c.remove(d.path("missing.txt"))
    with raises_status(S.STATUS_OBJECT_PATH_NOT_FOUND):
        c.delete(d.path("nodir", "missing.txt"))


# ================================================================================ directories
_ENTRIES = ["abc.txt", "aXc.log", "AYC.dat", "ABD.TXT", "b.txt"]
_SUBDIRS = ["sub1", "sub2"]


def _populate(backend: ConformanceBackend) -> Scratch:
    d = backend.fresh_dir()
    for i, name in enumerate(_ENTRIES):
        d.put(name, b"x" * (i + 1))
    for name in _SUBDIRS:
        backend.client.mkdir(d.path(name))
    return d


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("*", sorted(_ENTRIES + _SUBDIRS)),
        ("*.txt", ["ABD.TXT", "abc.txt", "b.txt"]),
        ("*.TXT", ["ABD.TXT", "abc.txt", "b.txt"]),
        ("a?c*", ["AYC.dat", "aXc.log", "abc.txt"]),
        ("sub*", ["sub1", "sub2"]),
        ("B.TXT", ["b.txt"]),
    ],
    ids=["star", "star-dot-txt", "star-dot-TXT", "a-qm-c-star", "sub-star", "exact-other-case"],
)
def test_directory_patterns(backend: ConformanceBackend, pattern: str, expected: list[str]) -> None:
    """Patterns match as FsRtlIsNameInExpression does for a Win32 caller: ignoring case."""
    backend.requires(Routine.MRxQueryDirectory)
    d = _populate(backend)
    assert listdir(backend.client, d.unc, pattern) == sorted(expected)


def test_directory_entries_carry_size_and_directory_flag(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxQueryDirectory)
    c = backend.client
    d = _populate(backend)
    entries = {e.name: e for e in scan(c, d.unc)}
    assert sorted(entries) == sorted(_ENTRIES + _SUBDIRS), "'.'/'..' or other extra entries"
    for i, name in enumerate(_ENTRIES):
        assert not entries[name].is_dir, name
        assert not entries[name].attributes & FileAttributes.DIRECTORY, name
        assert entries[name].size == i + 1, name
    for name in _SUBDIRS:
        assert entries[name].is_dir, name
        assert entries[name].attributes & FileAttributes.DIRECTORY, name


def test_directory_enumeration_resumes_across_batches(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxQueryDirectory)
    c = backend.client
    d = _populate(backend)
    everything = sorted(_ENTRIES + _SUBDIRS)
    dir_access = Access.FILE_LIST_DIRECTORY
    with (
        opened(c, d.unc, access=dir_access, options=O.FILE_DIRECTORY_FILE) as h,
        opened(c, d.unc, access=dir_access, options=O.FILE_DIRECTORY_FILE) as other,
    ):
        seen: list[str] = []
        first_batch: list[str] = []
        for _ in range(len(everything) + 1):  # a bound: never loop forever
            status, batch = query_directory_status(c, h.fobx, "*", max_entries=2)
            if status == S.STATUS_NO_MORE_FILES:
                break
            assert_status(status, S.STATUS_SUCCESS, "a batch before the end")
            assert 1 <= len(batch) <= 2, f"a batch of {len(batch)} entries with max_entries=2"
            seen += [e.name for e in batch]
            first_batch = first_batch or [e.name for e in batch]
            # another handle enumerates on its own, from the start
            if len(seen) == 2:
                status, batch = query_directory_status(c, other.fobx, "*", max_entries=2)
                assert_status(status, S.STATUS_SUCCESS, "first batch on a second handle")
                assert [e.name for e in batch] == first_batch
        else:
            pytest.fail("the enumeration did not end with STATUS_NO_MORE_FILES")
        assert sorted(seen) == everything, "entries missing or repeated across batches"
        assert len(seen) == len(set(seen)), f"an entry came twice: {seen}"
        status, _ = query_directory_status(c, h.fobx, "*", max_entries=2)
        assert_status(status, S.STATUS_NO_MORE_FILES, "a query after the end")
        status, batch = query_directory_status(c, h.fobx, "*", restart=True)
        assert_status(status, S.STATUS_SUCCESS, "a restarted scan")
        assert names(batch) == everything


def test_directory_query_matching_nothing_is_no_such_file(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxQueryDirectory)
    c = backend.client
    d = _populate(backend)
    with opened(c, d.unc, access=Access.FILE_LIST_DIRECTORY, options=O.FILE_DIRECTORY_FILE) as h:
        status, batch = query_directory_status(c, h.fobx, "*.nothing")
        assert_status(status, S.STATUS_NO_SUCH_FILE, "first query matching nothing")
        assert batch == []
    with opened(c, d.unc, access=Access.FILE_LIST_DIRECTORY, options=O.FILE_DIRECTORY_FILE) as h:
        status, batch = query_directory_status(c, h.fobx, "*.dat")
        assert_status(status, S.STATUS_SUCCESS, "first query matching one entry")
        assert names(batch) == ["AYC.dat"]
        status, batch = query_directory_status(c, h.fobx, "*.dat")
        assert_status(status, S.STATUS_NO_MORE_FILES, "the query after the last match")


# ================================================================================ information
def test_query_info_size_and_directory_flag(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxQueryFileInfo)
    c = backend.client
    d = backend.fresh_dir()
    d.put("f.bin", b"z" * 1234)
    with opened(c, d.path("f.bin")) as h:
        assert h.info.size == 1234, "size in the create result"
        info = c.query_info(h.fobx)
        assert info.size == 1234
        assert not info.is_dir
        assert not info.attributes & FileAttributes.DIRECTORY
    with opened(c, d.unc, options=O.FILE_DIRECTORY_FILE) as h:
        info = c.query_info(h.fobx)
        assert info.is_dir
        assert info.attributes & FileAttributes.DIRECTORY
    assert c.stat(d.path("f.bin")).size == 1234


def test_last_write_time_moves_forward_after_a_write(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxQueryFileInfo)
    backend.requires(LOWIO, WRITE)
    c = backend.client
    d = backend.fresh_dir()
    hour_ns = 3600 * 10**9
    with opened(c, d.path("t.bin"), access=RW, disposition=D.FILE_CREATE) as h:
        before = c.query_info(h.fobx)
        assert abs(before.last_write_time - time.time_ns()) < hour_ns, (
            f"last_write_time {before.last_write_time} is not POSIX nanoseconds of now"
        )
        c.write_handle(h.fobx, 0, b"0123456789")
        during = c.query_info(h.fobx)
        assert during.size == 10, "query info does not see the write through the same handle"
        assert during.last_write_time >= before.last_write_time
    after = c.stat(d.path("t.bin"))
    assert after.size == 10
    assert after.last_write_time >= before.last_write_time
    assert abs(after.last_write_time - time.time_ns()) < hour_ns


def test_query_volume_information(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxQueryVolumeInfo)
    volume = backend.client.volume(backend.setup.root)
    total, free = volume.get("total_bytes"), volume.get("free_bytes")
    assert isinstance(total, int) and isinstance(free, int), volume
    assert total >= free >= 0, volume


# ================================================================================ names
def test_dot_dot_inside_the_share_resolves(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxCreate)
    c = backend.client
    d = backend.fresh_dir()
    d.put("f.txt", b"data")
    with opened(c, d.path("nodir", "..", "f.txt")) as h:
        assert h.info.size == 4
    with opened(c, d.path(".", "sub", "..", "..", d.rel.rsplit("\\", 1)[-1], "f.txt")) as h:
        assert h.info.size == 4


#: (id, a name relative to a test folder or the number of levels a ".." climbs above the share
#: root, the expected status)
_REFUSED: list[tuple[str, str | int, int]] = [
    ("dotdot-above-root", 1, S.STATUS_OBJECT_PATH_SYNTAX_BAD),
    ("dotdot-far-above-root", 3, S.STATUS_OBJECT_PATH_SYNTAX_BAD),
    ("nul", "f.txt\x00.exe", S.STATUS_OBJECT_NAME_INVALID),
    ("stream", "f.txt:stream", S.STATUS_OBJECT_NAME_INVALID),
    ("default-stream", "f.txt::$DATA", S.STATUS_OBJECT_NAME_INVALID),
    ("star", "a*b", S.STATUS_OBJECT_NAME_INVALID),
    ("question-mark", "a?b", S.STATUS_OBJECT_NAME_INVALID),
    ("device-name", "CON", S.STATUS_OBJECT_NAME_INVALID),
    ("device-name-with-extension", "nul.txt", S.STATUS_OBJECT_NAME_INVALID),
    ("drive-absolute", "C:\\Windows\\win.ini", S.STATUS_OBJECT_NAME_INVALID),
    ("control-character", "a\x01b", S.STATUS_OBJECT_NAME_INVALID),
]


@pytest.mark.parametrize(
    ("name", "status"), [r[1:] for r in _REFUSED], ids=[r[0] for r in _REFUSED]
)
def test_bad_names_are_refused_before_the_minirdr(
    backend: ConformanceBackend, name: str | int, status: int
) -> None:
    """Names that leave the share or are not plain file names are refused by the core, with the
    right status, as a create and as a rename target, and no request reaches the
    mini-redirector."""
    backend.requires(Routine.MRxCreate)
    c = backend.client
    d = backend.fresh_dir()
    d.put("f.txt", b"data")
    if isinstance(name, int):
        depth = len(parse_unc(d.unc).components)
        unc = d.path(*([".."] * (depth + name)), "etc", "passwd")
    else:
        unc = d.path(name)
    before = backend.requests_sent()
    with raises_status(status):
        c.create(unc, access=RW, disposition=D.FILE_OPEN_IF)
    assert backend.requests_sent() == before, "the refused name was sent to the mini-redirector"
    if backend.registers(Routine.MRxSetFileInfo):
        with opened(c, d.path("f.txt"), access=Access.DELETE) as h:
            before = backend.requests_sent()
            with raises_status(status):
                c.set_info(h.fobx, FileInformationClass.FileRenameInformation, target=unc)
            assert backend.requests_sent() == before, "the refused rename target was sent"
    assert d.get("f.txt") == b"data"


# ============================================================================ extended attributes
def test_extended_attributes(backend: ConformanceBackend) -> None:
    backend.requires(Routine.MRxSetEaInfo)
    backend.requires(Routine.MRxQueryEaInfo)
    c = backend.client
    d = backend.fresh_dir()
    d.put("ea.txt", b"data")
    access = Access.GENERIC_READ | Access.FILE_READ_EA | Access.FILE_WRITE_EA
    with opened(c, d.path("ea.txt"), access=access) as h:
        assert c.query_eas(h.fobx) == {}
        c.set_eas(h.fobx, {"COLOR": b"blue", "SIZE": b"\x00XL\xff"})
        got = {k.upper(): v for k, v in c.query_eas(h.fobx).items()}  # names: case-insensitive
        assert got == {"COLOR": b"blue", "SIZE": b"\x00XL\xff"}
        c.set_eas(h.fobx, {"COLOR": None})  # an empty value deletes
        assert {k.upper() for k in c.query_eas(h.fobx)} == {"SIZE"}
        with raises_status(S.STATUS_INVALID_PARAMETER):
            c.set_eas(h.fobx, {"bad:name": b"x"})
    with opened(c, d.path("ea.txt"), access=Access.FILE_READ_EA) as h:  # kept on the file
        assert {k.upper(): v for k, v in c.query_eas(h.fobx).items()} == {"SIZE": b"\x00XL\xff"}

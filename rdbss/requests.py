"""What clients send and how they read the answers: one builder per request (an RxContext, its
payload, the statuses that count as success and a parser for the completion), shared by the
blocking client (``rdbss.client``) and the asyncio client (``rdbss.aio``). Pure code: no
sockets."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rdbss.model.idempotent import CONNECTION_LOST
from rdbss.wire import (
    DEFAULT_LIMITS,
    Access,
    Compound,
    CompoundCompletion,
    CreateDisposition,
    CreateOptions,
    CreateParameters,
    FileAttributes,
    FileInformationClass,
    FsInformationClass,
    InfoParameters,
    IrpMj,
    IrpMn,
    LowIoParameters,
    NtStatus,
    QueryDirectoryParameters,
    RxCompletion,
    RxContext,
    RxFlags,
    ShareAccess,
    error_for_status,
)
from rdbss.wire.rxcontext import APPEND_OFFSET, MAX_I64, MAX_TEXT_LEN, MAX_TIMEOUT_MS, MAX_U32

S = NtStatus

#: RxFlags as plain ints: IntFlag arithmetic costs a microsecond on every request
_RELATED = int(RxFlags.RELATED)
T = TypeVar("T")
Data = bytes | bytearray | memoryview
#: A shared-memory slot for a large read or write (rdbss.shm): the request arguments that name
#: it, and the client's view of it.
Shared = tuple[dict[str, Any], memoryview]
_INTERNAL = frozenset({"srv_open", "fobx"})  # ids of the daemon's, not file information
_DIRECTORY_ATTRIBUTE = int(FileAttributes.DIRECTORY)
_KNOWN = frozenset(
    {
        "name",
        "size",
        "attributes",
        "creation_time",
        "last_access_time",
        "last_write_time",
        "change_time",
        "directory",
    }
)

_NOT_EXTRA = _KNOWN | _INTERNAL


@dataclass(frozen=True, slots=True)
class FileInfo:
    name: str
    size: int
    attributes: int
    creation_time: int  # POSIX nanoseconds
    last_access_time: int
    last_write_time: int
    change_time: int
    is_dir: bool
    extra: dict[str, Any]

    @property
    def mtime(self) -> float:
        return self.last_write_time / 1e9

    @classmethod
    def from_result(cls, result: dict[str, Any], name: str = "") -> FileInfo:
        """(Made once per entry of every listing: one lookup per key, arguments by position.)"""
        get = result.get
        attributes = int(get("attributes", 0))
        directory = get("directory")  # (an IntFlag & costs a microsecond: only if needed)
        is_dir = bool(attributes & _DIRECTORY_ATTRIBUTE if directory is None else directory)
        return cls(
            str(get("name", name)),
            int(get("size", 0)),
            attributes,
            int(get("creation_time", 0)),
            int(get("last_access_time", 0)),
            int(get("last_write_time", 0)),
            int(get("change_time", 0)),
            is_dir,
            {k: v for k, v in result.items() if k not in _NOT_EXTRA},
        )


@dataclass(frozen=True, slots=True)
class Handle:
    fobx: int
    path: str
    information: int  # CreateInformation
    info: FileInfo


@dataclass(slots=True)
class Request(Generic[T]):
    ctx: RxContext
    parse: Callable[[RxCompletion, memoryview | None], T]
    payload: Data | None = None
    ok: tuple[int, ...] = (S.STATUS_SUCCESS,)


def _result(done: RxCompletion) -> dict[str, Any]:
    return done.result if isinstance(done.result, dict) else {}


def _nothing(done: RxCompletion, data: memoryview | None) -> None:
    return None


# ----------------------------------------------------------------------------- refusals
# What the codec would refuse (rxcontext's ranges and lengths), refused here before sending,
# with the argument's name: the caller learns at once what to change.


def _in_range(name: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int):
        raise error_for_status(S.STATUS_INVALID_PARAMETER, f"{name} must be an integer")
    if not low <= value <= high:
        raise error_for_status(
            S.STATUS_INVALID_PARAMETER, f"{name} {value} is out of range ({low} .. {high})"
        )


def check_timeout(timeout_ms: int) -> None:
    """A deadline the daemon takes: 0 .. MAX_TIMEOUT_MS milliseconds (~24.8 days)."""
    if not 0 <= timeout_ms <= MAX_TIMEOUT_MS:
        raise error_for_status(
            S.STATUS_INVALID_PARAMETER,
            f"timeout of {timeout_ms} ms is out of range (0 .. {MAX_TIMEOUT_MS} ms)",
        )


def check_path(path: str) -> None:
    """A name the daemon can take: at most MAX_TEXT_LEN characters, no NUL."""
    if len(path) > MAX_TEXT_LEN:
        raise error_for_status(
            S.STATUS_OBJECT_NAME_INVALID,
            f"path of {len(path)} characters is longer than the limit of {MAX_TEXT_LEN}",
        )
    if "\x00" in path:
        raise error_for_status(S.STATUS_OBJECT_NAME_INVALID, "NUL character in a path")


def _ctx(major: int, timeout_ms: int, **fields: Any) -> RxContext:
    if not 0 <= timeout_ms <= MAX_TIMEOUT_MS:
        check_timeout(timeout_ms)
    fobx = fields.get("fobx")
    if fobx is not None and not 0 <= fobx <= MAX_I64:
        _in_range("handle (fobx)", fobx, 0, MAX_I64)
    return RxContext(request_id=0, major=major, timeout_ms=timeout_ms, **fields)


def _byte_range(offset: int, length: int, *, append: bool = False) -> None:
    low = APPEND_OFFSET if append else 0
    if not (low <= offset <= MAX_I64 and 0 <= length <= MAX_I64):
        _in_range("offset", offset, low, MAX_I64)
        _in_range("length", length, 0, MAX_I64)


def create(
    path: str,
    timeout_ms: int,
    *,
    access: int = Access.GENERIC_READ,
    disposition: int = CreateDisposition.FILE_OPEN,
    options: int = CreateOptions.NONE,
    share: int = ShareAccess.ALL,
    attributes: int = FileAttributes.NORMAL,
) -> Request[Handle]:
    """IRP_MJ_CREATE: open or create ``path``."""
    check_path(path)
    for name, value in (
        ("access", access),
        ("disposition", disposition),
        ("options", options),
        ("share", share),
        ("attributes", attributes),
    ):
        if not 0 <= value <= MAX_U32:
            _in_range(name, int(value), 0, MAX_U32)
    params = CreateParameters(
        desired_access=int(access),
        file_attributes=int(attributes),
        share_access=int(share),
        disposition=int(disposition),
        create_options=int(options),
    )

    def parse(done: RxCompletion, data: memoryview | None) -> Handle:
        result = _result(done)
        return Handle(int(result["fobx"]), path, done.information, FileInfo.from_result(result))

    return Request(_ctx(IrpMj.CREATE, timeout_ms, path=path, create=params), parse)


def close(fobx: int, timeout_ms: int) -> Request[None]:
    return Request(_ctx(IrpMj.CLOSE, timeout_ms, fobx=fobx), _nothing)


def _read_parse(done: RxCompletion, data: memoryview | None) -> bytes:
    if done.status == S.STATUS_END_OF_FILE or data is None:
        return b""
    return bytes(data)


def read(fobx: int, offset: int, length: int, timeout_ms: int) -> Request[bytes]:
    """Bytes at ``offset``; b"" past the end of the file."""
    _byte_range(offset, length)
    lowio = LowIoParameters(offset=offset, length=length)
    return Request(
        _ctx(IrpMj.READ, timeout_ms, fobx=fobx, lowio=lowio),
        _read_parse,
        ok=(S.STATUS_SUCCESS, S.STATUS_END_OF_FILE),
    )


def read_into(
    fobx: int,
    offset: int,
    target: memoryview,
    timeout_ms: int,
    shared: Shared | None = None,
) -> Request[int]:
    """Read ``len(target)`` bytes at ``offset`` into ``target``; parses to the count (0 past
    the end). ``shared``: the arguments that place the bytes in a shared-memory slot and that
    slot's view (rdbss.shm); an answer with a payload instead is copied from the payload."""
    ctx = read(fobx, offset, len(target), timeout_ms).ctx
    if shared is not None:
        ctx.args = dict(shared[0])

    def parse(done: RxCompletion, data: memoryview | None) -> int:
        if done.status == S.STATUS_END_OF_FILE:
            return 0
        if data is not None:
            if len(data) > len(target):
                raise error_for_status(S.STATUS_INVALID_NETWORK_RESPONSE, "read past the ask")
            target[: len(data)] = data
            return len(data)
        placed = _result(done).get("shm")
        if shared is None or type(placed) is not int or not 0 <= placed <= len(target):
            raise error_for_status(
                S.STATUS_INVALID_NETWORK_RESPONSE, "a read answered without its bytes"
            )
        if target is not shared[1]:  # else the caller reads the slot itself (zero copy)
            target[:placed] = shared[1][:placed]
        return placed

    return Request(ctx, parse, ok=(S.STATUS_SUCCESS, S.STATUS_END_OF_FILE))


#: The most one WRITE carries through the sockets (the daemon drops a larger message): the
#: clients send larger writes as pieces of this size, one after the other.
MAX_WRITE_BYTES = DEFAULT_LIMITS.max_payload_bytes


def write_pieces(
    offset: int, length: int, step: int = MAX_WRITE_BYTES
) -> Iterator[tuple[int, int, int]]:
    """(where, start, end) of the WRITEs of at most ``step`` bytes that a write of ``length``
    bytes at ``offset`` goes out as, one after the other (-1, an append, stays -1: each piece
    appends after the last)."""
    for start in range(0, length, step):
        where = offset if offset == -1 else offset + start
        yield where, start, min(length, start + step)


def write(
    fobx: int,
    offset: int,
    data: Data,
    timeout_ms: int,
    shared: Shared | None = None,
) -> Request[int]:
    """Write at ``offset`` (-1 appends); parses to the bytes written. ``shared``: the arguments
    that name a shared-memory slot and that slot's view (rdbss.shm): ``data`` is copied into
    the slot here and the request carries no payload."""
    _byte_range(offset, len(data), append=True)
    lowio = LowIoParameters(offset=offset, length=len(data))
    ctx = _ctx(IrpMj.WRITE, timeout_ms, fobx=fobx, lowio=lowio)
    payload: Data | None = data
    if shared is not None:
        args, slot = shared
        slot[: len(data)] = data
        ctx.args = dict(args)
        payload = None
    return Request(ctx, lambda done, _: done.information, payload=payload)


def query_info(
    fobx: int, timeout_ms: int, info_class: int = FileInformationClass.FileAllInformation
) -> Request[FileInfo]:
    info = InfoParameters(info_class=int(info_class))
    return Request(
        _ctx(IrpMj.QUERY_INFORMATION, timeout_ms, fobx=fobx, info=info),
        lambda done, _: FileInfo.from_result(_result(done)),
    )


def set_info(fobx: int, timeout_ms: int, info_class: int, **args: Any) -> Request[None]:
    info = InfoParameters(info_class=int(info_class), args=args)
    return Request(_ctx(IrpMj.SET_INFORMATION, timeout_ms, fobx=fobx, info=info), _nothing)


def flush(fobx: int, timeout_ms: int) -> Request[None]:
    return Request(_ctx(IrpMj.FLUSH_BUFFERS, timeout_ms, fobx=fobx), _nothing)


def _entries(done: RxCompletion, data: memoryview | None) -> list[FileInfo] | None:
    if done.status != S.STATUS_SUCCESS:
        return None
    return [FileInfo.from_result(e) for e in _result(done).get("entries", [])]


def query_directory(
    fobx: int,
    timeout_ms: int,
    pattern: str = "*",
    *,
    restart: bool = False,
    max_entries: int = 512,
) -> Request[list[FileInfo] | None]:
    """One batch of directory entries; parses to None at the end of the enumeration."""
    check_path(pattern)
    _in_range("max_entries", max_entries, 0, MAX_U32)
    qd = QueryDirectoryParameters(pattern=pattern, restart_scan=restart, max_entries=max_entries)
    return Request(
        _ctx(
            IrpMj.DIRECTORY_CONTROL,
            timeout_ms,
            minor=IrpMn.QUERY_DIRECTORY,
            fobx=fobx,
            query_directory=qd,
        ),
        _entries,
        ok=(S.STATUS_SUCCESS, S.STATUS_NO_MORE_FILES, S.STATUS_NO_SUCH_FILE),
    )


def query_volume(
    fobx: int, timeout_ms: int, info_class: int = FsInformationClass.FileFsFullSizeInformation
) -> Request[dict[str, Any]]:
    info = InfoParameters(info_class=int(info_class))
    return Request(
        _ctx(IrpMj.QUERY_VOLUME_INFORMATION, timeout_ms, fobx=fobx, info=info),
        lambda done, _: dict(_result(done)),
    )


def lock(
    fobx: int,
    offset: int,
    length: int,
    timeout_ms: int,
    *,
    exclusive: bool = True,
    wait: bool = False,
) -> Request[None]:
    """A byte-range lock (IRP_MN_LOCK): fails at once with STATUS_LOCK_NOT_GRANTED unless
    ``wait``, which waits (up to the deadline) for a conflicting lock to go."""
    _byte_range(offset, length)
    flags = (0x2 if exclusive else 0) | (0 if wait else 0x1)
    lowio = LowIoParameters(offset=offset, length=length, flags=flags)
    return Request(
        _ctx(IrpMj.LOCK_CONTROL, timeout_ms, minor=IrpMn.LOCK, fobx=fobx, lowio=lowio), _nothing
    )


def unlock(fobx: int, offset: int, length: int, timeout_ms: int) -> Request[None]:
    _byte_range(offset, length)
    lowio = LowIoParameters(offset=offset, length=length)
    return Request(
        _ctx(IrpMj.LOCK_CONTROL, timeout_ms, minor=IrpMn.UNLOCK_SINGLE, fobx=fobx, lowio=lowio),
        _nothing,
    )


def unlock_all(fobx: int, timeout_ms: int) -> Request[None]:
    return Request(
        _ctx(
            IrpMj.LOCK_CONTROL,
            timeout_ms,
            minor=IrpMn.UNLOCK_ALL,
            fobx=fobx,
            lowio=LowIoParameters(),
        ),
        _nothing,
    )


def query_eas(fobx: int, timeout_ms: int) -> Request[dict[str, bytes]]:
    """IRP_MJ_QUERY_EA: every extended attribute of the open file."""
    info = InfoParameters(info_class=FileInformationClass.FileEaInformation)
    return Request(
        _ctx(IrpMj.QUERY_EA, timeout_ms, fobx=fobx, info=info),
        lambda done, _: {str(k): bytes(v) for k, v in _result(done).get("eas", {}).items()},
    )


def set_eas(fobx: int, eas: dict[str, bytes | None], timeout_ms: int) -> Request[None]:
    """IRP_MJ_SET_EA: set (or, with None, delete) extended attributes."""
    info = InfoParameters(info_class=FileInformationClass.FileEaInformation, args={"eas": eas})
    return Request(_ctx(IrpMj.SET_EA, timeout_ms, fobx=fobx, info=info), _nothing)


#: SecurityInformation bits: OWNER, GROUP, DACL (SACL is 0x8).
OWNER_GROUP_DACL = 0x7


def query_security(fobx: int, info: int, timeout_ms: int) -> Request[dict[str, Any]]:
    """IRP_MJ_QUERY_SECURITY: the parts of the security descriptor ``info`` (SecurityInformation
    bits) names, as a map (``owner``, ``group``, ``dacl``...; see
    rdbss.minirdrs.common.security)."""
    params = InfoParameters(info_class=int(info))
    return Request(
        _ctx(IrpMj.QUERY_SECURITY, timeout_ms, fobx=fobx, info=params),
        lambda done, _: _result(done),
    )


def set_security(fobx: int, info: int, fields: dict[str, Any], timeout_ms: int) -> Request[None]:
    """IRP_MJ_SET_SECURITY: set the parts ``info`` names from ``fields`` (``owner``, ``group``,
    ``dacl``, or ``mode`` on POSIX backends)."""
    params = InfoParameters(info_class=int(info), args=dict(fields))
    return Request(_ctx(IrpMj.SET_SECURITY, timeout_ms, fobx=fobx, info=params), _nothing)


def query_quota(
    fobx: int, timeout_ms: int, sids: list[str] | None = None
) -> Request[list[dict[str, Any]]]:
    """IRP_MJ_QUERY_QUOTA on any handle of a share: its quota entries ({"sid", "used",
    "threshold", "limit", "change_time"}; -1 = no threshold / limit), or those of ``sids``."""
    params = InfoParameters(args={"sids": list(sids)} if sids else {})
    return Request(
        _ctx(IrpMj.QUERY_QUOTA, timeout_ms, fobx=fobx, info=params),
        lambda done, _: list(_result(done).get("entries", [])),
    )


def set_quota(fobx: int, entries: list[dict[str, Any]], timeout_ms: int) -> Request[None]:
    """IRP_MJ_SET_QUOTA: set the threshold and limit of each {"sid", "threshold", "limit"}."""
    params = InfoParameters(args={"entries": list(entries)})
    return Request(_ctx(IrpMj.SET_QUOTA, timeout_ms, fobx=fobx, info=params), _nothing)


def _changes(done: RxCompletion, data: memoryview | None) -> list[dict[str, Any]] | None:
    if done.status == S.STATUS_NOTIFY_ENUM_DIR:
        return None
    return list(_result(done).get("changes", []))


def notify(
    fobx: int, completion_filter: int, timeout_ms: int, *, tree: bool = False
) -> Request[list[dict[str, Any]] | None]:
    """IRP_MN_NOTIFY_CHANGE_DIRECTORY on an open directory: waits (up to the deadline) for
    changes the FILE_NOTIFY_CHANGE_* filter selects; parses to [{"action", "name"}...], or None
    when there were too many (STATUS_NOTIFY_ENUM_DIR: list the folder again)."""
    _in_range("completion_filter", completion_filter, 0, MAX_U32)
    lowio = LowIoParameters(completion_filter=completion_filter, watch_tree=tree)
    return Request(
        _ctx(
            IrpMj.DIRECTORY_CONTROL,
            timeout_ms,
            minor=IrpMn.NOTIFY_CHANGE_DIRECTORY,
            fobx=fobx,
            lowio=lowio,
        ),
        _changes,
        ok=(S.STATUS_SUCCESS, S.STATUS_NOTIFY_ENUM_DIR),
    )


def control(code: int, timeout_ms: int, **args: Any) -> Request[Any]:
    """A management request on the device FCB (MRxDevFcbXXXControlFile)."""
    lowio = LowIoParameters(code=int(code))
    return Request(
        _ctx(IrpMj.FILE_SYSTEM_CONTROL, timeout_ms, lowio=lowio, args=args or None),
        lambda done, _: done.result,
    )


# ----------------------------------------------------------------------------- compounds


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """One item's answer in a compound: its NTSTATUS and, when that counts as success for the
    item, its parsed value."""

    status: int
    value: T | None
    message: str = ""
    ok: bool = True

    def unwrap(self) -> T:
        """The value, or the item's NtStatusError raised."""
        if not self.ok:
            raise error_for_status(self.status, self.message)
        return self.value  # type: ignore[return-value]

    def error(self) -> Exception | None:
        return None if self.ok else error_for_status(self.status, self.message)


def related(request: Request[T]) -> Request[T]:
    """Make a request act on the handle of the compound's previous create (SMB2 related
    operations): build it with any handle (e.g. 0) and wrap it in this."""
    request.ctx.fobx = None
    request.ctx.flags |= _RELATED
    return request


def compound(requests: Sequence[Request[Any]], timeout_ms: int) -> Compound:
    """One message carrying ``requests`` (at most ``DEFAULT_LIMITS.max_compound_items``)."""
    check_timeout(timeout_ms)
    cx = Compound(request_id=0, items=[], timeout_ms=timeout_ms)
    for index, request in enumerate(requests):
        cx.items.append(request.ctx)
        if request.payload is not None:
            cx.payload_items.append(index)
            cx.payloads.append(request.payload)
    return cx


def parse_compound(
    requests: Sequence[Request[Any]], answer: RxCompletion | CompoundCompletion
) -> list[Outcome[Any]]:
    """Each item's outcome; raises when the compound as a whole was refused."""
    if isinstance(answer, RxCompletion) or answer.status != S.STATUS_SUCCESS:
        raise error_for_status(answer.status, answer.message)
    if len(answer.items) != len(requests):
        raise error_for_status(
            S.STATUS_INVALID_NETWORK_RESPONSE,
            f"{len(answer.items)} answers to a compound of {len(requests)} items",
        )
    data = dict(zip(answer.payload_items, answer.payloads, strict=True))
    outcomes: list[Outcome[Any]] = []
    for index, (request, done) in enumerate(zip(requests, answer.items, strict=True)):
        if done.status in request.ok:
            value = request.parse(done, data.get(index))
            outcomes.append(Outcome(done.status, value, done.message))
        else:
            outcomes.append(Outcome(done.status, None, done.message, ok=False))
    return outcomes


def split_compound(
    requests: Sequence[Request[Any]], max_items: int = DEFAULT_LIMITS.max_compound_items
) -> Iterator[Sequence[Request[Any]]]:
    """Cut a long list into compounds the codec accepts: at most ``max_items`` items and
    reads of at most ``max_compound_payload_bytes`` together, never separating a related
    item from the create before it (a single over-long chain raises STATUS_INVALID_PARAMETER)."""
    budget = DEFAULT_LIMITS.max_compound_payload_bytes
    start = 0
    while start < len(requests):
        end, total, cut = start, 0, start
        while end < len(requests) and end - start < max_items:
            ctx = requests[end].ctx
            size = ctx.lowio.length if ctx.major == IrpMj.READ and ctx.lowio else 0
            size += len(requests[end].payload or b"")
            if total + size > budget and end > start:
                break
            total += size
            end += 1
            if end == len(requests) or not requests[end].ctx.flags & _RELATED:
                cut = end  # a clean place to cut: the next item does not need this chain
        if end == len(requests):
            cut = end
        if cut == start:
            raise error_for_status(
                S.STATUS_INVALID_PARAMETER,
                "a create and its related items do not fit in one compound",
            )
        yield requests[start:cut]
        start = cut


def stat_items(path: str, timeout_ms: int) -> list[Request[Any]]:
    """A stat as two compound items: a create for attributes and a related close."""
    return [
        create(path, timeout_ms, access=Access.FILE_READ_ATTRIBUTES),
        related(close(0, timeout_ms)),
    ]


_STAT_ACCESS = int(Access.FILE_READ_ATTRIBUTES)
_NORMAL = int(FileAttributes.NORMAL)
_SHARE_ALL = int(ShareAccess.ALL)
_CREATE, _CLOSE = int(IrpMj.CREATE), int(IrpMj.CLOSE)


def stat_compound(path: str, timeout_ms: int) -> Compound:
    """One stat's compound, the message ``compound(stat_items(path, timeout_ms), timeout_ms)``
    is, built directly: the caller of a single stat needs no Request objects to parse with."""
    check_path(path)
    check_timeout(timeout_ms)
    params = CreateParameters(
        desired_access=_STAT_ACCESS, file_attributes=_NORMAL, share_access=_SHARE_ALL
    )
    return Compound(
        request_id=0,
        items=[
            RxContext(request_id=0, major=_CREATE, timeout_ms=timeout_ms, path=path, create=params),
            RxContext(request_id=0, major=_CLOSE, timeout_ms=timeout_ms, flags=_RELATED),
        ],
        timeout_ms=timeout_ms,
    )


def stat_result(answer: RxCompletion | CompoundCompletion) -> FileInfo:
    """What ``stat_compound``'s answer says of the file; raises as ``parse_compound`` and the
    create's ``Outcome.unwrap`` would."""
    if isinstance(answer, RxCompletion) or answer.status != S.STATUS_SUCCESS:
        raise error_for_status(answer.status, answer.message)
    if len(answer.items) != 2:
        raise error_for_status(
            S.STATUS_INVALID_NETWORK_RESPONSE,
            f"{len(answer.items)} answers to a compound of 2 items",
        )
    opened = answer.items[0]
    if opened.status != S.STATUS_SUCCESS:
        raise error_for_status(opened.status, opened.message)
    result = _result(opened)
    int(result["fobx"])  # a create's answer names its handle (0: closed already)
    return FileInfo.from_result(result)


def list_items(
    path: str, timeout_ms: int, pattern: str = "*", *, max_entries: int = 512
) -> list[Request[Any]]:
    """The start of a folder's listing as three compound items: a create for listing and two
    related query-directory requests (of ``max_entries`` each). A folder whose entries fit in
    one batch is listed in one round trip (the second query answers the end of the
    enumeration); the handle stays open for the rest of a longer one, whose enumeration goes
    on where the second query stopped."""
    query = functools.partial(query_directory, 0, timeout_ms, pattern, max_entries=max_entries)
    return [list_open(path, timeout_ms), related(query()), related(query())]


def list_open(path: str, timeout_ms: int) -> Request[Handle]:
    """The open of a folder to list it."""
    return create(
        path,
        timeout_ms,
        access=Access.FILE_LIST_DIRECTORY,
        options=CreateOptions.FILE_DIRECTORY_FILE,
    )


def list_result(outcomes: Sequence[Outcome[Any]]) -> tuple[list[FileInfo], bool]:
    """The entries the two queries of ``list_items`` listed, and whether the listing is over;
    raises the first query's error (or the second's). ([], False) when the first query found
    its connection lost: the core sends a compound's items again only as a whole, so a query
    alone (which it sends again) starts the enumeration on the handle."""
    if outcomes[1].status in CONNECTION_LOST:
        return [], False
    first: list[FileInfo] | None = outcomes[1].unwrap()
    second: list[FileInfo] | None = outcomes[2].unwrap()
    if first is None:
        return [], True
    if second is None:
        return first, True
    return first + second, False


# ----------------------------------------------------------------------------- small files

#: The first read of a whole file in one compound: a mini-redirector answers a read in full
#: unless the file ends there, and none splits one this small (SMB2's smallest largest read is
#: 64 KiB, MS-SMB2 3.3.5.4), so a shorter answer is the whole file.
SMALL_READ_BYTES = 64 << 10


def read_file_items(
    path: str, timeout_ms: int, window: int = SMALL_READ_BYTES
) -> list[Request[Any]]:
    """A small file's read as three compound items: a create for reading (never a directory),
    a related READ of its first ``window`` bytes and a related close."""
    return [
        create(path, timeout_ms, options=CreateOptions.FILE_NON_DIRECTORY_FILE),
        related(read(0, 0, window, timeout_ms)),
        related(close(0, timeout_ms)),
    ]


#: a file found longer than its first window, of up to this size (what its create answered), is
#: read again whole in one more compound: one create, one READ and a close, where an open file
#: costs a round trip per request; a larger one goes through an open file (shared memory)
WHOLE_READ_BYTES = 1 << 20


def whole_read_window(outcomes: Sequence[Outcome[Any]]) -> int | None:
    """The READ window to read again whole, in one compound, the file ``read_file_items`` found
    longer than its window: the size its create answered plus SMALL_READ_BYTES, so that a
    shorter answer still proves the end of a file that grew a little since; None for a file
    larger than WHOLE_READ_BYTES."""
    handle: Handle = outcomes[0].unwrap()
    size = handle.info.size
    return size + SMALL_READ_BYTES if size <= WHOLE_READ_BYTES else None


def read_file_result(outcomes: Sequence[Outcome[Any]]) -> bytes:
    """The bytes ``read_file_items`` read; raises the first failing item's error in the order
    a create, a read and a close one after the other would have met it."""
    outcomes[0].unwrap()
    data: bytes = outcomes[1].unwrap()
    outcomes[2].unwrap()
    return data


def write_file_items(
    path: str,
    data: Data,
    timeout_ms: int,
    disposition: int = CreateDisposition.FILE_OVERWRITE_IF,
) -> list[Request[Any]]:
    """A small file's write as compound items: a create for writing (never a directory), a
    related WRITE of ``data`` at 0 (none when ``data`` is empty) and a related close, whose
    answer comes last: nothing counts as written before the file is closed."""
    items: list[Request[Any]] = [
        create(
            path,
            timeout_ms,
            access=Access.GENERIC_WRITE,
            disposition=disposition,
            options=CreateOptions.FILE_NON_DIRECTORY_FILE,
        )
    ]
    if len(data):
        items.append(related(write(0, 0, data, timeout_ms)))
    items.append(related(close(0, timeout_ms)))
    return items


def write_file_result(outcomes: Sequence[Outcome[Any]]) -> int:
    """The bytes ``write_file_items`` wrote; raises the first failing item's error in the
    order a create, a write and a close one after the other would have met it."""
    written = 0
    outcomes[0].unwrap()
    if len(outcomes) == 3:
        written = int(outcomes[1].unwrap())
    outcomes[-1].unwrap()
    return written

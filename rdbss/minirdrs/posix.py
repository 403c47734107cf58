"""A mini-redirector for a POSIX-like file store, written once on a few primitives.

``PosixMiniRdr`` implements MRxCreate, MRxQueryOpen, READ/WRITE with their access checks,
MRxQueryDirectory, MRxQueryFileInfo, MRxQueryVolumeInfo, MRxSetFileInfo (basic, end of file,
allocation, rename, disposition), delete-pending and MRxCleanupFobx/MRxCloseSrvOpen, with the
rules of rdbss/model/create.py and the SrvOpen table of rdbss/minirdrs/base.py, on the
primitives of rdbss/minirdrs/primitives.py (``PosixPrimitives``: the backend's contract). A
backend subclasses ``PosixMiniRdr[ShareT, OpenT]``, implements the primitives and adds what
only it has (connections, change notify, locks, EAs, security) through the hooks here:
``check_io`` (before each READ/WRITE: byte-range locks), ``lowio_other`` (the low I/O
operations besides READ and WRITE), ``end_fobx``/``end_srv_open`` (what a handle or an open
held besides its enumeration), ``renamed`` (after a rename, every open already moved).

``current_request()`` is the request a routine of this class is serving on this thread (a
backend whose primitives wait on a network reads its deadline there).
"""

from __future__ import annotations

import contextlib
import contextvars
import operator
import stat
from collections.abc import Mapping
from typing import Any, ClassVar, cast

from rdbss.minirdrs.base import FILE_INFO_CLASSES as _FILE_INFO_CLASSES
from rdbss.minirdrs.base import (
    MAX_READ_BYTES,
    MiniRdr,
    OpenTable,
    Result,
    lowio_of,
    posix_volume,
    set_file_info_with,
    volume_info_class,
)
from rdbss.minirdrs.common.args import TIME_ARGS, arg_bool, arg_int, arg_str, components, show
from rdbss.minirdrs.common.fileinfo import StatLike
from rdbss.minirdrs.common.listing import Enumerations
from rdbss.minirdrs.common.wildcard import is_name_in_expression
from rdbss.minirdrs.primitives import (
    REQUIRED_PRIMITIVES,
    ChainItem,
    OpenRequest,
    OpenT,
    PosixPrimitives,
    ShareT,
    Volume,
)
from rdbss.model.compound import ChainKind, chain_of
from rdbss.model.create import (
    INFORMATION,
    Action,
    check_create_parameters,
    check_open_existing,
    data_access,
    decide_create,
)
from rdbss.model.dispatch import is_query_open
from rdbss.wire.constants import CreateInformation, CreateOptions, FileAttributes, LowIoOp
from rdbss.wire.rxcontext import CreateParameters, LowIoParameters, RxContext
from rdbss.wire.status import NtStatus, NtStatusError, status_from_errno

S = NtStatus

_DELETE_ON_CLOSE = int(CreateOptions.FILE_DELETE_ON_CLOSE)
_DIRECTORY_FILE = int(CreateOptions.FILE_DIRECTORY_FILE)

_current: contextvars.ContextVar[RxContext | None] = contextvars.ContextVar(
    "rdbss_posix_request", default=None
)


def current_request() -> RxContext | None:
    """The request a PosixMiniRdr routine is serving on this thread (None outside one)."""
    return _current.get()


class _HostErrors:
    """A context mapping an OSError of a primitive to its NtStatusError, naming ``rel``: a
    class, not a generator context manager, as it wraps every primitive of every request."""

    __slots__ = ("rel", "what")

    def __init__(self, what: str, rel: str) -> None:
        self.what, self.rel = what, rel

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, OSError) and not isinstance(exc, NtStatusError):
            reason = exc.strerror or type(exc).__name__
            raise NtStatusError(
                status_from_errno(exc.errno), f"{self.what} {show(self.rel)}: {reason}"
            ) from None


class _Serving:
    """The request a routine serves, as ``current_request`` for the time of the routine."""

    __slots__ = ("ctx", "token")

    def __init__(self, ctx: RxContext) -> None:
        self.ctx = ctx

    def __enter__(self) -> None:
        self.token = _current.set(self.ctx)

    def __exit__(self, *exc: object) -> None:
        _current.reset(self.token)


#: a listing's sort key: the name
_first = operator.itemgetter(0)


def _join(parent: str, name: str) -> str:
    return f"{parent}\\{name}" if parent else name


class PosixMiniRdr(MiniRdr, PosixPrimitives[ShareT, OpenT]):
    """The routines of a POSIX-like store on ``PosixPrimitives``."""

    #: FileFsAttributeInformation's file system name
    fs_name: ClassVar[str] = "rdbss"

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, config)
        self._opens: OpenTable[OpenT] = OpenTable()
        self._enumerations: Enumerations[StatLike | None] = Enumerations()

    # --- hooks -------------------------------------------------------------------------------
    def check_io(self, ctx: RxContext, op: OpenT, offset: int, length: int, write: bool) -> None:
        """Before a READ or WRITE: byte-range lock conflicts (none by default)."""

    def lowio_other(self, ctx: RxContext, op: OpenT, lowio: LowIoParameters) -> Result:
        """A low I/O operation other than READ and WRITE (locks, change notify)."""
        raise NtStatusError(
            S.STATUS_INVALID_DEVICE_REQUEST,
            f"low I/O operation {lowio.operation!r} not supported",
        )

    def end_fobx(self, ctx: RxContext) -> None:
        """A handle closes: end what it held besides its enumeration."""

    def end_srv_open(self, srv_open: int | None, op: OpenT) -> None:
        """An open closes: end what it held (before its handle is released)."""

    def renamed(self, share: ShareT, old: str, new: str) -> None:
        """After a rename (every open was moved already)."""

    def parent_known(self, share: ShareT, rel: str) -> bool:
        """True when the parent folder of ``rel`` is known to exist without looking it up (the
        share root, checked at MRxCreateVNetRoot; any parent, for a backend whose ``lookup``
        checks the parent itself with the same statuses). False (the default) looks it up."""
        return False

    # --- helpers ------------------------------------------------------------------------------
    #: ``with self._host(what, rel):`` maps an OSError of a primitive to its NtStatusError
    _host = _HostErrors

    def _serving(self, ctx: RxContext) -> _Serving:
        """``with self._serving(ctx):`` makes ``ctx`` the thread's ``current_request``."""
        return _Serving(ctx)

    def _open_of(self, ctx: RxContext) -> OpenT:
        return self._opens.get(ctx.srv_open)

    def _check_parent(self, share: ShareT, rel: str) -> None:
        if self.parent_known(share, rel):
            return
        parent = rel.rpartition("\\")[0]
        with self._host("cannot query", parent):
            st = self.lookup(share, parent)
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise NtStatusError(
                S.STATUS_OBJECT_PATH_NOT_FOUND, f"{show(rel)}: parent folder not found"
            )

    def _check_deletable(self, op: OpenT, st: StatLike | None = None) -> None:
        """Refuse what cannot be marked delete-pending: the share root, a non-empty directory,
        a read-only file (``st``: the open's stat when the caller has it)."""
        if not op.path:
            raise NtStatusError(S.STATUS_ACCESS_DENIED, "the share root cannot be deleted")
        with self._host("cannot delete", op.path):
            if op.is_dir:
                if not self.is_empty(op):
                    raise NtStatusError(
                        S.STATUS_DIRECTORY_NOT_EMPTY, f"{show(op.path)} is not empty"
                    )
            elif not (st if st is not None else self.fstat(op)).st_mode & 0o222:
                raise NtStatusError(S.STATUS_CANNOT_DELETE, f"{show(op.path)} is read-only")

    def _close_quietly(self, op: OpenT) -> None:
        with contextlib.suppress(NtStatusError, OSError):
            self.close_handle(op)

    def _abandon(self, op: OpenT, *, created: bool) -> None:
        """Undo a create that failed after opening: close, and remove what it made."""
        self._close_quietly(op)
        if created:
            with contextlib.suppress(NtStatusError):
                self._delete(op)

    def _delete(self, op: OpenT) -> None:
        try:
            with self._host("cannot delete", op.path):
                if op.is_dir:
                    self.rmdir(op)
                else:
                    self.unlink(op)
        except NtStatusError as exc:
            if exc.status != S.STATUS_OBJECT_NAME_NOT_FOUND:
                raise  # (not found: already gone, what was asked for)

    # --- create -------------------------------------------------------------------------------
    def _look_up(self, ctx: RxContext) -> tuple[ShareT, str, CreateParameters, StatLike | None]:
        """A create's share, path (checked) and parameters, and what the path names now."""
        share = self.share_of(ctx)
        rel = "\\".join(components(ctx.path or ""))
        with self._host("cannot open", rel):
            st = self.lookup(share, rel)
        return share, rel, ctx.create or CreateParameters(), st

    def _check_not_pending(self, share: ShareT, rel: str) -> None:
        if self._opens.delete_pending_at(share, rel):
            raise NtStatusError(S.STATUS_DELETE_PENDING, f"{show(rel)} is being deleted")

    def create(self, ctx: RxContext) -> Result:
        with self._serving(ctx):
            share, rel, params, st = self._look_up(ctx)
            disposition, options = check_create_parameters(params)
            self._check_not_pending(share, rel)
            can_read, can_write, append_only = data_access(params.desired_access)
            readonly = bool(params.file_attributes & FileAttributes.READONLY)
            if st is None:
                self._check_parent(share, rel)
                decide_create(rel, disposition, options, can_write, exists=False)
                is_dir = bool(options & _DIRECTORY_FILE)
                with self._host("cannot create", rel):
                    made = self.mkdir(share, rel) if is_dir else None
                    how = OpenRequest(
                        is_dir,
                        can_read,
                        can_write,
                        append_only,
                        create=not is_dir,
                        readonly=readonly,
                        found=made,
                    )
                    op, learned = self.open(share, rel, how)
                information = int(CreateInformation.FILE_CREATED)
            else:
                is_dir = stat.S_ISDIR(st.st_mode)
                action = decide_create(
                    rel,
                    disposition,
                    options,
                    can_write,
                    exists=True,
                    is_dir=is_dir,
                    is_regular=stat.S_ISREG(st.st_mode),
                )
                overwrite = action is not Action.OPEN
                if not is_dir and (can_write or overwrite) and not st.st_mode & 0o222:
                    raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(rel)} is read-only")
                readonly = readonly and overwrite
                how = OpenRequest(
                    is_dir,
                    can_read,
                    can_write,
                    append_only,
                    truncate=overwrite,
                    readonly=readonly,
                    found=st,
                )
                with self._host("cannot open", rel):
                    op, learned = self.open(share, rel, how)
                information = int(INFORMATION[action])
            return self._opened(
                op,
                learned,
                options,
                readonly=readonly,
                created=st is None,
                information=information,
            )

    def _opened(
        self,
        op: OpenT,
        learned: StatLike | None,
        options: int,
        *,
        readonly: bool,
        created: bool,
        information: int,
    ) -> Result:
        """A create's last steps once ``open`` succeeded (``learned``: the stat it answered);
        undone if one fails."""
        rel = op.path
        try:
            with self._host("cannot open", rel):
                st = learned if learned is not None else self.fstat(op)
                if not op.is_dir and not stat.S_ISREG(st.st_mode):  # replaced since the lookup
                    raise NtStatusError(
                        S.STATUS_ACCESS_DENIED, f"{show(rel)} is not a regular file"
                    )
                if readonly and st.st_mode & 0o222:  # the open did not set it
                    self.set_readonly(op, True)
                    st = self.fstat(op)
            if options & _DELETE_ON_CLOSE:
                self._check_deletable(op, st)
                self._opens.mark_delete_pending(op)
        except NtStatusError:
            self._abandon(op, created=created)
            raise
        info = self.file_info(st, rel, delete_pending=op.delete_pending)
        srv_open = self._opens.add(op)
        return Result(
            information=information,
            result={**info, "srv_open": srv_open, "directory": op.is_dir},
        )

    def query_open(self, ctx: RxContext) -> Result:
        """MRxQueryOpen: what ``create`` answers for FILE_READ_ATTRIBUTES and FILE_OPEN (the
        same checks, in the same order, so the same status), from one lookup, opening
        nothing."""
        with self._serving(ctx):
            share, rel, params, st = self._look_up(ctx)
            return self._query_open_answer(share, rel, params, st)

    def _query_open_answer(
        self, share: ShareT, rel: str, params: CreateParameters, st: StatLike | None
    ) -> Result:
        """MRxQueryOpen's checks and answer once the lookup found ``st`` (or nothing)."""
        disposition, options = check_create_parameters(params)
        if not is_query_open(params):
            raise NtStatusError(
                S.STATUS_INVALID_PARAMETER, "MRxQueryOpen answers an open for attributes only"
            )
        self._check_not_pending(share, rel)
        if st is None:
            self._check_parent(share, rel)
            raise NtStatusError(S.STATUS_OBJECT_NAME_NOT_FOUND, f"{show(rel)} not found")
        is_dir = check_open_existing(
            rel,
            options,
            disposition,
            False,
            is_dir=stat.S_ISDIR(st.st_mode),
            is_regular=stat.S_ISREG(st.st_mode),
        )
        info = self.file_info(st, rel)  # (a new map: completed in place)
        info["directory"] = is_dir
        return Result(information=int(CreateInformation.FILE_OPENED), result=info)

    # --- a create with its related items ------------------------------------------------------
    def create_with_related(
        self,
        create: RxContext,
        related: list[RxContext],
        payloads: list[memoryview | None],
    ) -> list[Result | Exception] | None:
        """A create and a chain of related READs, WRITEs, file-information queries and a close
        (rdbss/model/compound.py ``chain_of``) on a backend that takes chains
        (``chain_limits``): the create as alone, then every related item's checks as alone and
        ONE ``run_chain`` for what goes to the server; each item answered as alone. None for
        any other chain, and for a create with FILE_DELETE_ON_CLOSE."""
        limits = self.chain_limits(create)
        if limits is None or (create.create and create.create.create_options & _DELETE_ON_CLOSE):
            return None
        sizes = [None if p is None else len(p) for p in payloads]
        kinds = chain_of(related, sizes, *limits)
        if kinds is None:
            return None
        try:
            created = self.create(create)
        except Exception as exc:
            return [exc]
        srv_open = created.result["srv_open"]
        op = self._opens.get(srv_open)
        outcomes: list[Result | Exception | ChainItem] = []
        for kind, ctx, payload in zip(kinds, related, payloads, strict=True):
            try:
                with self._serving(ctx):
                    outcomes.append(self._chain_item(kind, ctx, op, srv_open, payload))
            except Exception as exc:
                outcomes.append(exc)
        items = [item for item in outcomes if isinstance(item, ChainItem)]
        answers: list[object] = []
        if items:
            with self._serving(create):
                try:
                    answers = self.run_chain(create, op, items)
                except Exception as exc:
                    answers = [exc] * len(items)
        answered = iter(answers)
        return [
            created,
            *(
                self._chain_answer(op, item, next(answered))
                if isinstance(item, ChainItem)
                else item
                for item in outcomes
            ),
        ]

    def _chain_item(
        self,
        kind: ChainKind,
        ctx: RxContext,
        op: OpenT,
        srv_open: int,
        payload: memoryview | None,
    ) -> Result | ChainItem:
        """A related item's checks, as ``low_io_submit``, ``query_file_info`` and
        ``close_srv_open`` make them before they reach the server (the close takes the open out
        of the table); what is left for the server."""
        if kind is ChainKind.CLOSE:
            self._opens.pop(srv_open)
            self._enumerations.forget_srv_open(srv_open)
            self.end_srv_open(srv_open, op)
            return ChainItem(kind)
        if kind is ChainKind.QUERY_INFO:
            info_class = ctx.info.info_class if ctx.info is not None else None
            if info_class not in _FILE_INFO_CLASSES:
                raise NtStatusError(S.STATUS_INVALID_PARAMETER, f"file info class {info_class!r}")
            return ChainItem(kind)
        lowio = lowio_of(ctx)
        if op.is_dir:
            raise NtStatusError(S.STATUS_INVALID_DEVICE_REQUEST, f"{show(op.path)} is a directory")
        if kind is ChainKind.READ:
            self.check_io(ctx, op, lowio.offset, lowio.length, False)
            self._check_read(op, lowio.offset, lowio.length)
            return ChainItem(kind, lowio.offset, lowio.length)
        assert payload is not None  # chain_of: a WRITE with data
        self.check_io(ctx, op, lowio.offset, len(payload), True)
        if not op.can_write:
            raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(op.path)} is not open for writing")
        where = None if op.append_only else lowio.offset
        return ChainItem(kind, where, len(payload), bytes(payload))

    def _chain_answer(self, op: OpenT, item: ChainItem, answer: object) -> Result | Exception:
        """What the routine alone answers for what ``run_chain`` answered for ``item``."""
        what = {
            ChainKind.READ: "cannot read",
            ChainKind.WRITE: "cannot write",
            ChainKind.QUERY_INFO: "cannot query",
            ChainKind.CLOSE: "cannot close",
        }[item.kind]
        try:
            with self._host(what, op.path):
                if isinstance(answer, Exception):
                    raise answer
        except NtStatusError as exc:
            if item.kind is not ChainKind.CLOSE:
                return exc
            return Result(status=exc.status, message=exc.strerror or "")
        except Exception as exc:
            return exc
        if item.kind is ChainKind.READ:
            data = cast(bytes, answer)
            if not data:
                return NtStatusError(
                    S.STATUS_END_OF_FILE, f"{show(op.path)}: offset {item.offset} is past EOF"
                )
            return Result(information=len(data), payload=data)
        if item.kind is ChainKind.WRITE:
            return Result(information=cast(int, answer))
        if item.kind is ChainKind.QUERY_INFO:
            info = self.file_info(cast(StatLike, answer), op.path, delete_pending=op.delete_pending)
            info["position"] = 0
            return Result(result=info)
        if op.delete_pending:
            try:
                self._delete(op)
            except NtStatusError as exc:
                return Result(status=exc.status, message=exc.strerror or "")
        return Result()

    # --- low I/O ------------------------------------------------------------------------------
    def low_io_submit(
        self, ctx: RxContext, payload: bytes | bytearray | memoryview | None = None
    ) -> Result:
        with self._serving(ctx):
            op = self._open_of(ctx)
            lowio = lowio_of(ctx)
            if lowio.operation == LowIoOp.NOTIFY_CHANGE_DIRECTORY:
                if not op.is_dir:
                    raise NtStatusError(
                        S.STATUS_INVALID_PARAMETER, f"{show(op.path)} is not a directory"
                    )
                return self.lowio_other(ctx, op, lowio)
            if op.is_dir:
                raise NtStatusError(
                    S.STATUS_INVALID_DEVICE_REQUEST, f"{show(op.path)} is a directory"
                )
            if lowio.operation == LowIoOp.READ:
                self.check_io(ctx, op, lowio.offset, lowio.length, False)
                return self._read(op, lowio.offset, lowio.length)
            if lowio.operation == LowIoOp.WRITE:
                length = len(payload) if payload is not None else lowio.length
                self.check_io(ctx, op, lowio.offset, length, True)
                if lowio.length < 0:
                    raise NtStatusError(
                        S.STATUS_INVALID_PARAMETER, f"negative length {lowio.length}"
                    )
                return self._write(op, lowio.offset, payload)
            return self.lowio_other(ctx, op, lowio)

    def _check_read(self, op: OpenT, offset: int, length: int) -> None:
        if not op.can_read:
            raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(op.path)} is not open for reading")
        if offset < 0 or length < 0:
            raise NtStatusError(S.STATUS_INVALID_PARAMETER, f"bad read range {offset}+{length}")
        if length > MAX_READ_BYTES:
            raise NtStatusError(
                S.STATUS_INVALID_PARAMETER, f"read of {length} bytes over {MAX_READ_BYTES}"
            )

    def _read(self, op: OpenT, offset: int, length: int) -> Result:
        self._check_read(op, offset, length)
        if length == 0:
            return Result(information=0, payload=b"")
        ctx = current_request()
        with self._host("cannot read", op.path):
            if ctx is not None and self.read_later(ctx, op, offset, length):
                return Result(status=S.STATUS_PENDING)
            data = self.read_at(op, offset, length)
        if not data:
            raise NtStatusError(
                S.STATUS_END_OF_FILE, f"{show(op.path)}: offset {offset} is past EOF"
            )
        return Result(information=len(data), payload=data)

    def _write(
        self, op: OpenT, offset: int, payload: bytes | bytearray | memoryview | None
    ) -> Result:
        if not op.can_write:
            raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(op.path)} is not open for writing")
        if offset < -1:
            raise NtStatusError(S.STATUS_INVALID_PARAMETER, f"bad write offset {offset}")
        if payload is None:
            raise NtStatusError(S.STATUS_INVALID_PARAMETER, "write without data")
        view = memoryview(payload).cast("B")
        where = None if offset == -1 or op.append_only else offset
        ctx = current_request()
        with self._host("cannot write", op.path):
            if ctx is not None and self.write_later(ctx, op, where, view):
                return Result(status=S.STATUS_PENDING)
            written = self.write_at(op, where, view)
        return Result(information=written)

    # --- file information ---------------------------------------------------------------------
    def query_file_info(self, ctx: RxContext) -> Result:
        with self._serving(ctx):
            op = self._open_of(ctx)
            info_class = ctx.info.info_class if ctx.info is not None else None
            if info_class not in _FILE_INFO_CLASSES:
                raise NtStatusError(S.STATUS_INVALID_PARAMETER, f"file info class {info_class!r}")
            with self._host("cannot query", op.path):
                st = self.fstat(op)
            info = self.file_info(st, op.path, delete_pending=op.delete_pending)
            info["position"] = 0
            return Result(result=info)

    def set_file_info(self, ctx: RxContext) -> Result:
        with self._serving(ctx):
            return set_file_info_with(self, self._open_of(ctx), ctx)

    def _set_basic(self, op: OpenT, args: Mapping[str, Any]) -> None:
        times = {key: arg_int(args, key, default=0) for key in TIME_ARGS}
        attributes = arg_int(args, "attributes", default=0)
        if attributes & FileAttributes.DIRECTORY and not op.is_dir:
            raise NtStatusError(S.STATUS_INVALID_PARAMETER, "attributes: DIRECTORY on a file")
        atime, mtime = times["last_access_time"], times["last_write_time"]
        with self._host("cannot set attributes of", op.path):
            if atime > 0 or mtime > 0:
                self.set_times(op, atime if atime > 0 else None, mtime if mtime > 0 else None)
            if attributes:
                self.set_readonly(op, bool(attributes & FileAttributes.READONLY))

    def _checked_size(self, op: OpenT, args: Mapping[str, Any], what: str) -> int:
        size = arg_int(args, "size")
        if size < 0:
            raise NtStatusError(S.STATUS_INVALID_PARAMETER, "argument 'size' must not be negative")
        if op.is_dir:
            raise NtStatusError(S.STATUS_INVALID_PARAMETER, f"{what} of a directory")
        if not op.can_write:
            raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(op.path)} is not open for writing")
        return size

    def _set_end_of_file(self, op: OpenT, args: Mapping[str, Any]) -> None:
        size = self._checked_size(op, args, "end of file")
        with self._host("cannot set the size of", op.path):
            self.set_size(op, size)

    def _set_allocation(self, op: OpenT, args: Mapping[str, Any]) -> None:
        size = self._checked_size(op, args, "allocation size")
        with self._host("cannot set the allocation of", op.path):
            if size < self.fstat(op).st_size:
                self.set_size(op, size)

    def _set_rename(self, op: OpenT, args: Mapping[str, Any]) -> None:
        target = "\\".join(components(arg_str(args, "target")))
        replace = arg_bool(args, "replace", default=False)
        if not target:
            raise NtStatusError(S.STATUS_INVALID_PARAMETER, "cannot rename onto the share root")
        if target == op.path:
            return
        if not op.path:
            raise NtStatusError(S.STATUS_ACCESS_DENIED, "the share root cannot be renamed")
        self._check_parent(op.share, target)
        with self._host("cannot query", target):
            existing = self.lookup(op.share, target, follow=False)
        if existing is not None:
            if not replace:
                raise NtStatusError(
                    S.STATUS_OBJECT_NAME_COLLISION, f"{show(target)} already exists"
                )
            if stat.S_ISDIR(existing.st_mode):
                raise NtStatusError(
                    S.STATUS_ACCESS_DENIED, f"{show(target)} is a directory: cannot replace it"
                )
        with self._host(f"cannot rename {show(op.path)} to", target):
            self.rename(op, target, replace=replace, existing=existing)
        old = op.path
        self._opens.renamed(op.share, old, target)
        self.renamed(op.share, old, target)

    def _set_disposition(self, op: OpenT, args: Mapping[str, Any]) -> None:
        delete = arg_bool(args, "delete")
        if delete:
            self._check_deletable(op)
        self._opens.mark_delete_pending(op, delete)

    # --- directories --------------------------------------------------------------------------
    def query_directory(self, ctx: RxContext) -> Result:
        with self._serving(ctx):
            op = self._open_of(ctx)
            if not op.is_dir:
                raise NtStatusError(
                    S.STATUS_INVALID_PARAMETER, f"{show(op.path)} is not a directory"
                )

            def load(pattern: str) -> list[tuple[str, StatLike | None]]:
                with self._host("cannot list", op.path):
                    listed = self.list_dir(op)
                if pattern == "*":  # every name matches (none is empty): no match per entry
                    return sorted((item for item in listed if item[0]), key=_first)
                return sorted(
                    ((n, st) for n, st in listed if is_name_in_expression(pattern, n)),
                    key=_first,
                )

            # the delete-pending names as this query finds them, looked up once for all entries
            pending = self._opens.delete_pending_paths(op.share)

            def describe(name: str, st: StatLike | None) -> dict[str, Any] | None:
                rel = _join(op.path, name)
                if st is None:
                    with self._host("cannot query", rel):
                        st = self.child_stat(op, name, rel)
                if st is None:
                    return None  # gone since the listing
                return self.file_info(st, rel, delete_pending=rel in pending)

            return self._enumerations.query(ctx, show(op.path), load, describe)

    # --- volume -------------------------------------------------------------------------------
    def query_volume_info(self, ctx: RxContext) -> Result:
        with self._serving(ctx):
            share = self._open_of(ctx).share if ctx.srv_open is not None else self.share_of(ctx)
            volume_info_class(ctx)
            with self._host("cannot query the volume of", ""):
                vol = self.statvfs(share)
            return posix_volume(
                total=vol.total,
                free=vol.free,
                avail=vol.avail,
                block=vol.block,
                fs_name=self.fs_name,
                label=self.share_label(share),
                serial=vol.serial,
                max_name_length=vol.max_name_length,
            )

    # --- cleanup and close --------------------------------------------------------------------
    def cleanup_fobx(self, ctx: RxContext) -> Result:
        """A handle closes: its enumeration (and what ``end_fobx`` ends) goes now, even when
        its SrvOpen stays open for other handles or for a delayed close."""
        self._enumerations.forget_fobx(ctx.fobx)
        self.end_fobx(ctx)
        return Result()

    def close_srv_open(self, ctx: RxContext) -> Result:
        with self._serving(ctx):
            op = self._opens.pop(ctx.srv_open)
            self._enumerations.forget_srv_open(ctx.srv_open)
            self.end_srv_open(ctx.srv_open, op)
            try:
                with self._host("cannot close", op.path):
                    self.close_handle(op)
                if op.delete_pending:
                    self._delete(op)
            except NtStatusError as exc:
                return Result(status=exc.status, message=exc.strerror or "")
            return Result()

    def close(self) -> None:
        """Close every open, deleting what was delete-pending as closing its handle would."""
        opens = self._opens.clear()
        self._enumerations.clear()
        for op in opens:
            self._close_quietly(op)
            if op.delete_pending:
                with contextlib.suppress(NtStatusError):
                    self._delete(op)


__all__ = [
    "REQUIRED_PRIMITIVES",
    "OpenRequest",
    "PosixMiniRdr",
    "StatLike",
    "Volume",
    "current_request",
]

"""The SFTP mini-redirector: serves folders of SSH servers (OpenSSH sshd) as
``\\\\<server>\\<share>``, with asyncssh.

Configuration: see :mod:`rdbss.minirdrs.sftp.config`. The package, by concern:
- :mod:`~rdbss.minirdrs.sftp.session`: one SSH connection and one SFTP client per SrvCall
  (server name), and how a routine waits for a coroutine with a deadline;
  :mod:`~rdbss.minirdrs.sftp.loop`: the private event loop asyncssh runs on.
- :mod:`~rdbss.minirdrs.sftp.remote`: the server's files (lookup inside the share, open, list,
  delete, close) as coroutines; this module turns them into the primitives of
  rdbss/minirdrs/primitives.py, and ``PosixMiniRdr`` (rdbss/minirdrs/posix.py) makes the
  routines of them: MRxCreate, MRxQueryOpen, READ/WRITE, query directory, file and volume
  information, set-info, delete-pending and close.
- :mod:`~rdbss.minirdrs.sftp.folders`: a folder's entries in two round trips;
  :mod:`~rdbss.minirdrs.sftp.prefetch`: a small file read whole on the event loop alone (the
  direct path for a compound).
- :mod:`~rdbss.minirdrs.sftp.attrs`: SFTP attributes as stats;
  :mod:`~rdbss.minirdrs.sftp.errors`: asyncssh failures as NTSTATUS values;
  :mod:`~rdbss.minirdrs.sftp.quiet`: asyncssh's per-request debug messages, not built while
  DEBUG is off.

What SFTP v3 changes:
- statuses: v3 reports most failures as a bare "Failure", so the routines look before they act
  (collision, non-empty directory, read-only file...) and look again after a failure.
- a name that is itself a symbolic link cannot be opened (STATUS_ACCESS_DENIED, as O_NOFOLLOW
  does locally); a link among the parents is followed while it stays in the share.
- times have whole-second precision; there is no creation time (the change time is reported)
  and no inode number (``file_id`` is a hash of the server path, so it changes on rename).
- no byte-range locks: SFTP has none, so no lock operation is registered.
- change notification: SFTP cannot tell us about changes, so a pending notify polls the
  folder's listing.
- large transfers (:mod:`rdbss.model.pipelining`): a write of 256 KiB or more at an explicit
  offset is answered STATUS_PENDING and sent without waiting for the writes before it, so the
  server always has several in flight; it completes when the server acknowledged all of it,
  with its own failure. A read of 256 KiB or more is pipelined alike, after the writes in
  flight. Every other request on the connection waits first until each transfer in
  flight is answered (``_call``), so a read never overtakes a write; a write whose request was
  cancelled before it failed is reported by the next flush or close of its open.
- round trips: a primitive is one round trip, its independent requests pipelined (OpenSSH
  answers them in order). The lookup's stat (``SftpStat``: with its server path and attributes)
  comes back to the open as ``OpenRequest.found``, and the open answers the stat sent along
  with it, so a create is two round trips and a query open one. A compound's create and its
  related READs, WRITEs, queries and close (a small file read or written whole) run the
  create as alone, then every related item as ONE coroutine (:mod:`~rdbss.minirdrs.sftp.chain`):
  one round trip, the close pipelined behind the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import stat
import threading
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, TypeVar, cast

import asyncssh

from rdbss.minirdrs.base import QuietConnections, Result
from rdbss.minirdrs.common.args import components, show
from rdbss.minirdrs.common.fileinfo import StatLike
from rdbss.minirdrs.common.notify import Entry, Lister
from rdbss.minirdrs.common.security import (
    POSIX_INFORMATION,
    check_query_information,
    posix_change,
    posix_descriptor,
)
from rdbss.minirdrs.polled import PolledNotifyMiniRdr
from rdbss.minirdrs.posix import current_request
from rdbss.minirdrs.primitives import ChainItem, OpenRequest, Volume
from rdbss.minirdrs.sftp.attrs import SftpStat, mode_of, security_of, stat_of
from rdbss.minirdrs.sftp.chain import achain
from rdbss.minirdrs.sftp.config import SftpConfigError, parse_config
from rdbss.minirdrs.sftp.errors import fail
from rdbss.minirdrs.sftp.prefetch import aprefetch, create_of, prefetched, refused, wanted
from rdbss.minirdrs.sftp.quiet import check_level_first
from rdbss.minirdrs.sftp.remote import (
    Open,
    Target,
    achmod_readonly,
    aclose_handle,
    acollision,
    aentries,
    afollow,
    ais_empty,
    alist,
    alocate,
    aopen_and_stat,
    aremove,
    arepin,
    aset_security,
    astat,
    awhere,
    join,
    pflags_of,
    report_write_error,
    unresolved,
)
from rdbss.minirdrs.sftp.session import CLOSE_WAIT_S, Conn, Sessions, Share
from rdbss.model.pipelining import pipelines
from rdbss.wire.constants import CreateDisposition, IrpMj, LowIoOp, Routine
from rdbss.wire.rxcontext import Compound, CreateParameters, RxContext
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.minirdr.sftp")

S = NtStatus
T = TypeVar("T")

#: Seconds between two listings of a folder with a pending change notification.
NOTIFY_INTERVAL_S = 1.0


#: set while the create of a chain runs (``create_with_related``): its open is made unsplit
_chained: contextvars.ContextVar[bool] = contextvars.ContextVar("rdbss_sftp_chain", default=False)


#: a request on the direct path: its connection, what it does (for messages) and its coroutine
_Direct = tuple[Conn, str, Callable[[], Awaitable[Result | None]]]


def _expects_existing(ctx: RxContext | None) -> bool:
    """A request whose name is expected to exist (a stat, an open of an existing file), so its
    lookup asks the server less (``alocate``'s ``expect``)."""
    if ctx is None:
        return False
    if ctx.routine == Routine.MRxQueryOpen:
        return True
    return (
        ctx.routine == Routine.MRxCreate
        and ctx.create is not None
        and ctx.create.disposition == CreateDisposition.FILE_OPEN
    )


class SftpMiniRdr(QuietConnections, PolledNotifyMiniRdr[Share, Open]):
    """Serves folders of SSH servers over SFTP (asyncssh)."""

    kind: ClassVar[str] = "sftp"
    blocking: ClassVar[bool] = True
    fs_name: ClassVar[str] = "rdbss-sftp"
    lowio_ops: ClassVar[frozenset[LowIoOp]] = frozenset(
        {LowIoOp.READ, LowIoOp.WRITE, LowIoOp.NOTIFY_CHANGE_DIRECTORY}
    )

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, config)
        try:
            self.settings = parse_config(config)
        except SftpConfigError as exc:
            raise ValueError(str(exc)) from None
        # SFTP cannot tell us about changes: pending notifies poll the folder's listing
        self.start_watches(config, NOTIFY_INTERVAL_S)
        self.timeout = self.settings.timeout
        self._sessions = Sessions(name, self.settings)
        self._closing = False
        # pipelined transfers not answered yet: request id -> the request
        self._transfers_lock = threading.Lock()
        self._pending: dict[int, RxContext] = {}
        # asyncssh logs every connect and SFTP session at INFO; keep the daemon log for ours
        aslog = logging.getLogger("asyncssh")
        if aslog.level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
            aslog.setLevel(logging.WARNING)
        check_level_first()  # (its per-request debug messages cost CPU even when off)

    def servers(self) -> list[str]:
        return [server.name for server in self.settings.servers.values()]

    # --- plumbing -----------------------------------------------------------------------------
    def _call(self, share: Share, factory: Callable[[], Awaitable[T]], what: str) -> T:
        """One round trip for the request being served (its deadline), or for close(), once
        every pipelined transfer in flight on the connection was answered (the ordering
        barrier: nothing overtakes a write)."""
        if prefetched.get() is not None:  # on the loop thread: waiting here would never end
            raise refused(what)
        timeout = CLOSE_WAIT_S if self._closing else self._sessions.deadline(current_request())
        transfers = share.conn.transfers

        async def in_order() -> T:
            await transfers.settled()
            return await factory()

        return self._sessions.run(share.conn, in_order, timeout, what)

    def _remote(self, share: Share, rel: str) -> str:
        """The server path of ``rel``, looked up (one round trip)."""
        parts = rel.split("\\") if rel else []
        return self._call(
            share, lambda: alocate(share, parts, rel), f"cannot open {show(rel)}"
        ).remote

    # --- connections --------------------------------------------------------------------------
    def connection_lost(self, ctx: RxContext) -> bool:
        return self._sessions.lost(ctx.srv_call)

    def create_srv_call(self, ctx: RxContext) -> Result:
        self._sessions.connect(ctx)
        return Result()

    def create_v_net_root(self, ctx: RxContext) -> Result:
        self._sessions.check_share(ctx)
        return Result()

    def finalize_srv_call(self, ctx: RxContext) -> Result:
        """Drop the server's connection. Opens made on it stay in the table, dead: the core
        still closes them (MRxCloseSrvOpen), and each close reports what was lost."""
        try:
            self._sessions.finalize(ctx.srv_call)
        except Exception:  # finalize never fails
            log.exception("finalize of SrvCall %r failed", ctx.srv_call)
        return Result()

    def close(self) -> None:
        """Close every open (deleting what was delete-pending, as closing its handle would) and
        every connection, then stop the event loop."""
        self._watches.close()
        self._closing = True
        super().close()
        self._sessions.close()

    # --- primitives: lookup and open ----------------------------------------------------------
    def share_of(self, ctx: RxContext) -> Share:
        return self._sessions.share_of(ctx)

    def lookup(self, share: Share, rel: str, *, follow: bool = True) -> SftpStat | None:
        """One round trip (``alocate``; a symbolic link followed: ``_follow``)."""
        parts = rel.split("\\") if rel else []
        expect = _expects_existing(current_request())
        got = prefetched.get()
        what = f"cannot open {show(rel)}"
        if got is not None and got.rel == rel:
            target = self._fetched(share, got.lookup, what)
        else:
            target = self._call(share, lambda: alocate(share, parts, rel, expect=expect), what)
        return self._found(share, rel, target, follow=follow)

    def _fetched(self, share: Share, answer: T | BaseException, what: str) -> T:
        """A prefetched step's answer, or what ``_call`` raises for its exception."""
        if isinstance(answer, BaseException):
            timeout = self._sessions.deadline(current_request())
            raise self._sessions.status_of(share.conn, cast(Exception, answer), timeout, what)
        return answer

    def _found(self, share: Share, rel: str, target: Target, *, follow: bool) -> SftpStat | None:
        if target.attrs is None:
            return None
        if follow and stat.S_ISLNK(mode_of(target.attrs)):
            return self._follow(share, rel, target.remote)
        return stat_of(target.attrs, target.remote)

    # --- the direct path ----------------------------------------------------------------------
    def start_direct(
        self, ctx: RxContext, done: Callable[[Result | Exception | None], None]
    ) -> bool:
        """A stat (MRxQueryOpen) or a small READ (one request, no shared memory) as one
        coroutine on the connection's event loop, answered from there: after the transfers in
        flight (the ordering barrier, as ``_call``), within the request's deadline. Only on a
        connection that is up (a stat: with its share resolved); anything out of the ordinary
        (a symbolic link to follow, a READ the checks refuse) goes to the worker."""
        if self._closing:
            return False
        if ctx.routine == Routine.MRxQueryOpen:
            direct = self._direct_query_open(ctx)
        elif ctx.routine == Routine.MRxLowIOSubmit:
            direct = self._direct_read(ctx)
        else:
            return False
        if direct is None:
            return False
        conn, what, body = direct
        timeout = self._sessions.deadline(ctx)

        async def run() -> None:
            outcome: Result | Exception | None
            try:
                async with asyncio.timeout(timeout):
                    await conn.transfers.settled()
                    outcome = await body()
            except Exception as exc:
                outcome = self._sessions.status_of(conn, exc, timeout, what)
            except asyncio.CancelledError:  # the loop stops (close)
                done(NtStatusError(S.STATUS_CANCELLED, f"{what}: shutting down"))
                raise
            done(outcome)

        self._sessions.loop.submit(run)
        return True

    def start_direct_compound(
        self, cx: Compound, here: Callable[[], None], worker: Callable[[], None]
    ) -> bool:
        """A small file read whole (rdbss/minirdrs/sftp/prefetch.py), after the closes of
        other handles the core sent with it: its requests made in one coroutine on the
        connection's event loop (after the transfers in flight, within the create's deadline),
        then the compound's routines run there, answering from what the server said. A name
        that is no regular file (a folder, a link) goes to the worker; so does a compound
        that closes a delete-pending open."""
        create = create_of(cx)
        if self._closing or create is None:
            return False
        share = self._sessions.share_known(create)
        if share is None:
            return False
        try:
            max_read = share.conn.client().limits.max_read_len
        except Exception:  # (the connection went meanwhile)
            return False
        want = wanted(cx, max_read)
        if want is None:
            return False
        closing: list[Open] = []
        for srv_open in want.closes:
            op = self._opens.find(srv_open)
            if op is None:
                continue  # (its close answers so, asking the server nothing)
            if op.delete_pending or op.conn is not share.conn:
                return False  # a close that deletes (or of another connection): the worker
            if op.file is not None:
                closing.append(op)
        timeout = self._sessions.deadline(create)

        async def run() -> None:
            deadline = asyncio.get_running_loop().time() + timeout
            try:
                got = await aprefetch(share, want, deadline, closing)
            except asyncio.CancelledError:  # the loop stops (close): the worker answers it
                worker()
                raise
            if got is None:
                worker()
                return
            token = prefetched.set(got)
            try:
                here()
            finally:
                prefetched.reset(token)

        self._sessions.loop.submit(run)
        return True

    def _direct_query_open(self, ctx: RxContext) -> _Direct | None:
        share = self._sessions.share_known(ctx)
        if share is None:
            return None
        rel = "\\".join(components(ctx.path or ""))
        parts = rel.split("\\") if rel else []

        async def query_open() -> Result | None:
            target = await alocate(share, parts, rel, expect=True)
            if target.attrs is not None and stat.S_ISLNK(mode_of(target.attrs)):
                return None  # followed or refused by the worker's lookup (_follow)
            with self._serving(ctx):
                found = self._found(share, rel, target, follow=False)
                params = ctx.create or CreateParameters()
                return self._query_open_answer(share, rel, params, found)

        return share.conn, f"cannot open {show(rel)}", query_open

    def _direct_read(self, ctx: RxContext) -> _Direct | None:
        lowio = ctx.lowio
        if ctx.args or lowio is None or lowio.operation != LowIoOp.READ or lowio.length <= 0:
            return None  # shared memory, another operation, nothing to read: the worker
        if pipelines(lowio.offset, lowio.length, append_only=False):
            return None
        op = self._opens.find(ctx.srv_open)
        if op is None or op.is_dir or op.file is None or op.conn.lost:
            return None
        try:
            with self._serving(ctx):
                self._check_read(op, lowio.offset, lowio.length)
                self.check_io(ctx, op, lowio.offset, lowio.length, False)
        except NtStatusError:
            return None  # the worker answers it, as always
        return (
            op.conn,
            f"cannot read {show(op.path)}",
            self._reader(op, op.file, lowio.offset, lowio.length),
        )

    def parent_known(self, share: Share, rel: str) -> bool:
        """A lookup resolves the parent itself (inside the share, a folder: else
        OBJECT_PATH_NOT_FOUND or ACCESS_DENIED, as the base's parent check answers), so the
        base's check before or after one needs no round trip of its own."""
        return True

    def _follow(self, share: Share, rel: str, remote: str) -> SftpStat:
        """A symbolic link looked up to be followed: refused as the name a create opens (as
        O_NOFOLLOW does locally); followed as a parent (a rename's target folder) while it
        stays in the share."""
        request = current_request()
        if request is None or request.major == IrpMj.CREATE:
            raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(rel)} is a symbolic link")
        attrs = self._call(share, lambda: afollow(share, remote), f"cannot open {show(rel)}")
        if attrs is None:
            raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(rel)} leads outside the share")
        return stat_of(attrs, remote)

    def open(self, share: Share, rel: str, how: OpenRequest) -> tuple[Open, SftpStat | None]:
        """An open, with its stat in the same round trip; a directory or an attributes-only
        open takes no handle and answers what the lookup (or mkdir) found. A new file's server
        path is resolved in the open's round trip. ``how.readonly``: a new file is made with
        no write bits (OPEN's attributes); an overwritten file or a new directory loses them
        in the round trip after."""
        got = prefetched.get()
        if got is not None:
            return self._open_fetched(share, rel, how, got.opened)
        found = how.found if isinstance(how.found, SftpStat) else None
        parts = rel.split("\\") if rel else []
        remote = found.remote if found is not None else ""
        if not how.create and not remote:  # not looked up in this request
            remote = self._remote(share, rel)
        if how.directory or not (how.can_read or how.writes or how.create):
            op = self._record(share, rel, how, remote)
            known = found.attrs if found is not None else None
            if how.readonly and known is not None:
                attrs = self._call(
                    share,
                    lambda: achmod_readonly(share.conn.client(), remote, rel, known, readonly=True),
                    f"cannot set attributes of {show(rel)}",
                )
                found = stat_of(attrs, remote)
            return op, found
        pflags = pflags_of(how.can_read, how.writes, how.append_only)
        if how.create:
            pflags |= asyncssh.FXF_CREAT | asyncssh.FXF_EXCL
        if how.truncate:
            pflags |= asyncssh.FXF_TRUNC
        path = remote or unresolved(share, parts)
        mode = asyncssh.SFTPAttrs(permissions=0o444) if how.readonly and how.create else None

        unsplit = _chained.get()

        async def do_open() -> tuple[asyncssh.SFTPClientFile, asyncssh.SFTPAttrs, str]:
            sftp = share.conn.client()
            where = asyncio.ensure_future(awhere(sftp, share, parts)) if not remote else None
            try:
                handle, attrs = await aopen_and_stat(
                    sftp, path, pflags, mode or asyncssh.SFTPAttrs(), unsplit=unsplit
                )
            except asyncssh.SFTPError as exc:
                if where is not None:
                    where.cancel()
                if how.create:
                    await acollision(sftp, exc, path, rel)
                fail(exc, "cannot create" if how.create else "cannot open", rel)
            try:
                if how.readonly and not how.create:
                    attrs = await achmod_readonly(sftp, path, rel, attrs, readonly=True)
                return handle, attrs, remote or await cast("asyncio.Future[str]", where)
            except BaseException:
                with contextlib.suppress(Exception):
                    await handle.close()
                raise

        handle, attrs, real = self._call(share, do_open, f"cannot open {show(rel)}")
        op = self._record(share, rel, how, real)
        op.file = handle
        return op, stat_of(attrs, real)

    def _open_fetched(
        self,
        share: Share,
        rel: str,
        how: OpenRequest,
        opened: Open | BaseException | None,
    ) -> tuple[Open, SftpStat]:
        """``open`` on the direct path: the open the prefetch made, which is the open for
        reading only of a regular file (``wanted``'s rules leave the create no other); its
        stat is the lookup's."""
        what = f"cannot open {show(rel)}"
        found = how.found
        if opened is None or not isinstance(found, SftpStat):
            raise refused(what)
        if how != OpenRequest(False, True, False, found=found):
            raise refused(what)
        return self._fetched(share, opened, what), found

    @staticmethod
    def _record(share: Share, rel: str, how: OpenRequest, remote: str) -> Open:
        return Open(share, rel, how.directory, how.can_read, how.can_write, how.append_only,
                    remote=remote)  # fmt: skip

    def mkdir(self, share: Share, rel: str) -> SftpStat:
        """mkdir and the new directory's lstat in one round trip (its server path resolved
        alongside): the open that follows gets that stat as ``how.found``."""
        parts = rel.split("\\") if rel else []
        path = unresolved(share, parts)

        async def make() -> tuple[asyncssh.SFTPAttrs, str]:
            sftp = share.conn.client()
            where = asyncio.ensure_future(awhere(sftp, share, parts))
            lstat = asyncio.ensure_future(sftp.lstat(path))
            try:
                await sftp.mkdir(path)
            except asyncssh.SFTPError as exc:
                lstat.cancel()
                where.cancel()
                await acollision(sftp, exc, path, rel)
                fail(exc, "cannot create", rel)
            return await lstat, await where

        attrs, real = self._call(share, make, f"cannot create {show(rel)}")
        return stat_of(attrs, real)

    def fstat(self, op: Open) -> SftpStat:
        attrs = self._call(op.share, lambda: astat(op), f"cannot query {show(op.path)}")
        return stat_of(attrs, op.remote)

    def close_handle(self, op: Open) -> None:
        """Close the handle once every write in flight was acknowledged (``_call``), and report
        a pipelined write that failed after its request was answered. On a lost connection
        there is nothing to close: every write was acknowledged by the server before it was
        answered, so nothing is lost."""
        if op.closed_early:  # by the direct path, ahead of this close
            op.closed_early = False
            failed, op.close_error = op.close_error, None
            if failed is not None:
                timeout = self._sessions.deadline(current_request())
                what = f"close {show(op.path)}"
                raise self._sessions.status_of(op.conn, cast(Exception, failed), timeout, what)
            report_write_error(op)
            return
        if op.file is None:
            return
        if op.conn.lost:
            op.file = None
            report_write_error(op)
            return

        async def close() -> None:
            await aclose_handle(op)
            report_write_error(op)

        self._call(op.share, close, f"close {show(op.path)}")

    # --- a create with its related items ------------------------------------------------------
    def create_with_related(
        self,
        create: RxContext,
        related: list[RxContext],
        payloads: list[memoryview | None],
    ) -> list[Result | Exception] | None:
        """The base's chain (rdbss/minirdrs/posix.py), its open made unsplit for ``achain``."""
        token = _chained.set(True)
        try:
            return super().create_with_related(create, related, payloads)
        finally:
            _chained.reset(token)

    def chain_limits(self, create: RxContext) -> tuple[int, int] | None:
        """The server's longest read and write request (its limits@openssh.com, or asyncssh's
        safe defaults)."""
        try:
            sftp = self._sessions.conn_of(create.srv_call).client()
        except NtStatusError:
            return None  # the create answers it
        return sftp.limits.max_read_len, sftp.limits.max_write_len

    def run_chain(self, create: RxContext, op: Open, items: list[ChainItem]) -> list[object]:
        """Every item's request sent at once after the transfers in flight (``_call``'s
        barrier), in ONE coroutine on the event loop (rdbss/minirdrs/sftp/chain.py); a failure
        of one item is its own answer."""
        conn = op.conn
        got = prefetched.get()
        if got is not None:
            if got.chain is None or not got.matches(items):
                raise refused(f"cannot open {show(op.path)}")
            answers = got.answers(items)
        elif conn.lost:  # nothing to send: each primitive answers what it answers then
            return super().run_chain(create, op, items)
        else:
            answers = self._call(
                op.share, lambda: achain(op, items), f"cannot open {show(op.path)}"
            )
        timeout = self._sessions.deadline(create)
        what = f"cannot access {show(op.path)}"
        return [
            self._sessions.status_of(conn, answer, timeout, what)
            if isinstance(answer, Exception)
            else answer
            for answer in answers
        ]

    # --- primitives: data ---------------------------------------------------------------------
    def read_at(self, op: Open, offset: int, length: int) -> bytes:
        handle = op.file
        if handle is None:
            raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(op.path)} is not open for reading")

        async def read() -> bytes:
            try:
                # asyncssh pipelines a large read as parallel requests of the server's limit
                return cast(bytes, await handle.read(length, offset))
            except asyncssh.SFTPError as exc:
                fail(exc, "cannot read", op.path)

        return self._call(op.share, read, f"cannot read {show(op.path)}")

    def write_at(self, op: Open, offset: int | None, data: memoryview) -> int:
        handle = op.file
        if handle is None:
            raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(op.path)} is not open for writing")
        payload = bytes(data)

        async def write() -> int:
            try:
                where = offset
                if op.append_only:
                    where = 0  # opened with FXF_APPEND: the server writes at its end
                elif where is None:
                    where = (await handle.stat()).size or 0
                if payload:
                    # asyncssh sends a large write as requests of the server's limit, several
                    # in flight, and returns once every one is acknowledged (a failed one fails
                    # the whole write): the write is answered only when the server has it all
                    await handle.write(payload, where)
                    await arepin(op)
                return len(payload)
            except asyncssh.SFTPError as exc:
                fail(exc, "cannot write", op.path)

        return self._call(op.share, write, f"cannot write {show(op.path)}")

    def write_later(self, ctx: RxContext, op: Open, offset: int | None, data: memoryview) -> bool:
        """A large write at an explicit offset is pipelined (:mod:`rdbss.model.pipelining`):
        handed to the connection's event loop, answered when the server acknowledged it all."""
        handle = op.file
        if handle is None or not pipelines(offset, len(data), append_only=op.append_only):
            return False
        assert offset is not None
        payload = bytes(data)

        async def write() -> Result:
            try:
                # asyncssh sends the write as requests of the server's limit, many in flight,
                # and returns once every one is acknowledged (a failed one fails the write)
                await handle.write(payload, offset)
                await arepin(op)
            except asyncssh.SFTPError as exc:
                fail(exc, "cannot write", op.path)
            return Result(information=len(payload))

        self._later(ctx, op, offset, len(payload), write, write=True)
        return True

    def read_later(self, ctx: RxContext, op: Open, offset: int, length: int) -> bool:
        """A large READ is pipelined as a write is (after the writes in flight, beside other
        reads): answered with its bytes when they are in."""
        if op.file is None or not pipelines(offset, length, append_only=False):
            return False
        self._later(ctx, op, offset, length, self._reader(op, op.file, offset, length), write=False)
        return True

    def read_into(self, ctx: RxContext, target: memoryview) -> Result | None:
        """A large shared-memory READ is pipelined as ``read_later`` does it, its bytes put
        into the slot on the event loop (the request answers STATUS_PENDING). Anything else:
        None (the host runs the READ as usual)."""
        lowio = ctx.lowio
        if lowio is None or lowio.operation != LowIoOp.READ:
            return None
        if not pipelines(lowio.offset, len(target), append_only=False):
            return None
        with self._serving(ctx):
            op = self._open_of(ctx)
            handle = op.file
            if op.is_dir or handle is None:
                return None
            self._check_read(op, lowio.offset, lowio.length)
            self.check_io(ctx, op, lowio.offset, lowio.length, False)
            offset, slot = lowio.offset, target[:]  # the slot outlives ``target``
            read = self._reader(op, handle, offset, len(slot), slot)

            async def read_and_release() -> Result:
                try:
                    return await read()
                finally:
                    slot.release()

            try:
                self._later(ctx, op, offset, len(slot), read_and_release, write=False)
            except BaseException:
                slot.release()
                raise
            return Result(status=S.STATUS_PENDING)

    @staticmethod
    def _reader(
        op: Open,
        handle: asyncssh.SFTPClientFile,
        offset: int,
        length: int,
        slot: memoryview | None = None,
    ) -> Callable[[], Awaitable[Result]]:
        """A READ's coroutine: its answer, with the bytes as payload or (``slot``) put there."""

        async def read() -> Result:
            try:
                # asyncssh pipelines a large read as parallel requests of the server's limit
                data = cast(bytes, await handle.read(length, offset))
            except asyncssh.SFTPError as exc:
                fail(exc, "cannot read", op.path)
            if not data:
                return Result(
                    status=S.STATUS_END_OF_FILE,
                    message=f"{show(op.path)}: offset {offset} is past EOF",
                    result=None if slot is None else {"shm": 0},
                )
            if slot is None:
                return Result(information=len(data), payload=data)
            slot[: len(data)] = data
            return Result(information=len(data), result={"shm": len(data)})

        return read

    def _later(
        self,
        ctx: RxContext,
        op: Open,
        offset: int,
        length: int,
        transfer: Callable[[], Awaitable[Result]],
        *,
        write: bool,
    ) -> None:
        """Run a pipelined transfer on the connection's event loop, after what it must wait for
        (``InFlight.begin``), under the request's deadline; answer it when done."""
        conn = op.conn
        conn.client()  # a lost connection answers at once
        timeout = self._sessions.deadline(ctx)
        what = f"cannot {'write' if write else 'read'} {show(op.path)}"
        with self._transfers_lock:
            self._pending[ctx.request_id] = ctx

        async def ordered(before: list[asyncio.Task[object]]) -> Result:
            if before:
                await asyncio.wait(before)
            return await transfer()

        async def run() -> None:
            # in flight from run's own first step (pipeline.py): wait_for runs ``ordered`` in a
            # task of its own, which starts a loop turn later, after a close or a flush handed
            # over next (the rest of a compound) would have passed the barrier
            before = conn.transfers.begin(op, offset, length, write=write)
            try:
                result = await asyncio.wait_for(ordered(before), timeout)
            except asyncio.CancelledError:  # the loop stops
                result = Result(status=S.STATUS_CANCELLED, message=f"{what}: shutting down")
            except Exception as exc:
                error = self._sessions.status_of(conn, exc, timeout, what)
                if not isinstance(error, NtStatusError):
                    log.error("pipelined transfer failed", exc_info=error)
                    error = NtStatusError(S.STATUS_INTERNAL_ERROR, f"{what}: {error!r}")
                result = Result(status=error.status, message=error.strerror or "")
            finally:
                conn.transfers.end()
            with self._transfers_lock:
                waiting = self._pending.pop(ctx.request_id, None) is not None
            if waiting:
                self.complete_later(ctx, result)
            elif write and result.status != S.STATUS_SUCCESS and op.write_error is None:
                op.write_error = (result.status, result.message)  # answered by a cancel

        self._sessions.loop.submit(run)

    def cancel(self, request_id: int, status: int = NtStatus.STATUS_CANCELLED) -> bool:
        """A pending change notification ends; a pipelined transfer is answered ``status`` now
        (what was sent of a write may still land: a failure is reported by the next flush or
        close of its open)."""
        with self._transfers_lock:
            ctx = self._pending.pop(request_id, None)
        if ctx is None:
            return super().cancel(request_id, status)
        self.complete_later(ctx, Result(status=status, message="cancelled"))
        return True

    def pending_requests(self) -> int:
        with self._transfers_lock:
            transfers = len(self._pending)
        return super().pending_requests() + transfers

    def flush(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        handle = op.file
        if handle is None or not op.can_write:
            return Result()

        async def fsync() -> None:
            report_write_error(op)
            try:
                await handle.fsync()
            except asyncssh.SFTPOpUnsupported:
                pass  # no fsync@openssh.com: the server's own write-back is all there is
            except asyncssh.SFTPError as exc:
                fail(exc, "cannot flush", op.path)

        with self._serving(ctx):
            self._call(op.share, fsync, f"cannot flush {show(op.path)}")
        return Result()

    def set_size(self, op: Open, size: int) -> None:
        handle = op.file
        if handle is None:
            raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(op.path)} is not open for writing")

        async def truncate() -> None:
            try:
                await handle.truncate(size)
                await arepin(op)
            except asyncssh.SFTPError as exc:
                fail(exc, "cannot set the size of", op.path)

        self._call(op.share, truncate, f"cannot set the size of {show(op.path)}")

    # --- primitives: metadata -----------------------------------------------------------------
    def set_times(self, op: Open, atime_ns: int | None, mtime_ns: int | None) -> None:
        """SFTP v3 sets both times at once, in whole seconds. Times set through a handle stick
        until it is closed (MS-FSA 2.1.5.14.2): every later write or size change puts them
        back (``arepin``)."""

        async def apply() -> None:
            sftp = op.conn.client()
            try:
                current = await sftp.stat(op.remote)
                atime = atime_ns // 1_000_000_000 if atime_ns else int(current.atime or 0)
                mtime = mtime_ns // 1_000_000_000 if mtime_ns else int(current.mtime or 0)
                await sftp.setstat(op.remote, asyncssh.SFTPAttrs(atime=atime, mtime=mtime))
            except asyncssh.SFTPError as exc:
                fail(exc, "cannot set attributes of", op.path)
            if op.file is not None:
                op.pinned_times = (atime, mtime)

        self._call(op.share, apply, f"cannot set attributes of {show(op.path)}")

    def set_readonly(self, op: Open, readonly: bool) -> None:
        """The write bits changed from the mode a fresh stat reports."""

        async def apply() -> None:
            sftp = op.conn.client()
            try:
                current = await sftp.stat(op.remote)
            except asyncssh.SFTPError as exc:
                fail(exc, "cannot set attributes of", op.path)
            await achmod_readonly(sftp, op.remote, op.path, current, readonly=readonly)

        self._call(op.share, apply, f"cannot set attributes of {show(op.path)}")

    def statvfs(self, share: Share) -> Volume:
        async def query() -> asyncssh.SFTPVFSAttrs:
            try:
                return await share.conn.client().statvfs(share.root)
            except asyncssh.SFTPOpUnsupported:
                raise NtStatusError(
                    S.STATUS_NOT_IMPLEMENTED, "the server has no statvfs@openssh.com"
                ) from None
            except asyncssh.SFTPError as exc:
                fail(exc, "cannot query the volume of", "")

        vfs = self._call(share, query, "cannot query the volume")
        frsize = vfs.frsize or vfs.bsize
        server = share.conn.server
        return Volume(
            total=vfs.blocks * frsize,
            free=vfs.bfree * frsize,
            avail=vfs.bavail * frsize,
            block=frsize,
            serial=zlib.crc32(f"{server.host}:{server.port}:{share.root}".encode()),
            max_name_length=vfs.namemax or 255,
        )

    def share_label(self, share: Share) -> str:
        return share.name

    # --- primitives: directories and names ----------------------------------------------------
    def list_dir(self, op: Open) -> list[tuple[str, StatLike | None]]:
        listed = self._call(op.share, lambda: alist(op), f"cannot list {show(op.path)}")
        return [(name, stat_of(attrs, join(op.remote, name))) for name, attrs in listed]

    def is_empty(self, op: Open) -> bool:
        sftp = op.conn.client()
        return self._call(
            op.share, lambda: ais_empty(sftp, op.remote), f"cannot list {show(op.path)}"
        )

    def unlink(self, op: Open) -> None:
        self._remove(op, is_dir=False)

    def rmdir(self, op: Open) -> None:
        self._remove(op, is_dir=True)

    def _remove(self, op: Open, *, is_dir: bool) -> None:
        share, rel, remote = op.share, op.path, op.remote
        self._call(
            share,
            lambda: aremove(share.conn.client(), remote, rel, is_dir=is_dir),
            f"cannot delete {show(rel)}",
        )

    def rename(self, op: Open, target: str, *, replace: bool, existing: StatLike | None) -> None:
        """posix-rename@openssh.com onto the existing file the base found (its server path from
        that lookup), else RENAME, with the new parent resolved in the same round trip; then
        every open at or under the old name points at its new server path."""
        share, rel, old_remote = op.share, op.path, op.remote
        found = existing if isinstance(existing, SftpStat) and existing.remote else None
        parts = target.split("\\")
        what = f"cannot rename {show(rel)} to"

        async def do_rename(sftp: asyncssh.SFTPClient, new_remote: str) -> None:
            try:
                if found is not None:
                    await sftp.posix_rename(old_remote, new_remote)
                else:
                    await sftp.rename(old_remote, new_remote)
            except asyncssh.SFTPOpUnsupported:
                raise NtStatusError(
                    S.STATUS_NOT_SUPPORTED,
                    f"{what} {show(target)}: the server cannot replace (no posix-rename)",
                ) from None
            except asyncssh.SFTPError as exc:
                if isinstance(exc, asyncssh.SFTPFailure):
                    await acollision(sftp, exc, new_remote, target)
                fail(exc, what, target)

        async def move() -> str:
            sftp = share.conn.client()
            if found is not None:
                await do_rename(sftp, found.remote)
                return found.remote
            where = asyncio.ensure_future(awhere(sftp, share, parts))
            try:
                await do_rename(sftp, unresolved(share, parts))
            except BaseException:
                where.cancel()
                raise
            return await where

        new_remote = self._call(share, move, f"{what} {show(target)}")
        prefix = rel + "\\"
        with self._opens.lock:
            for other in self._opens.values():
                if other.share is not share:
                    continue
                if other.path == rel:
                    other.remote = new_remote
                elif other.path.startswith(prefix):
                    rest = other.path[len(prefix) :]
                    other.remote = new_remote + "/" + rest.replace("\\", "/")

    # --- hooks: change notify -----------------------------------------------------------------
    def notify_place(self, op: Open) -> tuple[str, str]:
        return op.conn.server.name.lower(), op.remote

    def _lister(self, op: Open) -> Lister:
        """Lists a folder below the watched one on the server (one readdir; called from the
        notify poller's thread, the SFTP calls run on the connection's event loop)."""

        def list_folder(sub: str) -> list[tuple[str, Entry]]:
            remote = op.remote
            for part in sub.split("\\") if sub else []:
                remote = join(remote, part)
            rel = "\\".join(p for p in (op.path, sub) if p)
            return self._sessions.run(
                op.conn,
                lambda: aentries(op.conn, remote, rel),
                self.timeout,
                f"cannot list {show(rel)}",
            )

        return list_folder

    # --- security: the server's uid, gid and permissions as a security descriptor ----------
    def query_sd_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        info = check_query_information(
            ctx.info.info_class if ctx.info is not None else None, POSIX_INFORMATION
        )
        with self._serving(ctx):
            attrs = self._call(
                op.share, lambda: astat(op), f"cannot query the security of {show(op.path)}"
            )
        if attrs.uid is None or attrs.gid is None or attrs.permissions is None:
            raise NtStatusError(
                S.STATUS_NOT_SUPPORTED,
                f"{show(op.path)}: the server sends no owner, group or permissions",
            )
        return Result(result=posix_descriptor(info, security_of(attrs)))

    def set_sd_info(self, ctx: RxContext) -> Result:
        op = self._open_of(ctx)
        info = ctx.info.info_class if ctx.info is not None else None
        args = ctx.info.args if ctx.info is not None else None
        check_query_information(info, POSIX_INFORMATION)  # answers bad bits without a round trip

        with self._serving(ctx):
            self._call(
                op.share,
                lambda: aset_security(op, lambda attrs: posix_change(info, args, attrs)),
                f"cannot change the security of {show(op.path)}",
            )
        return Result()

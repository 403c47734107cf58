"""Requests on an open handle (see docs/routines.md, The routines and Low I/O): the core finds
the handle's SrvOpen, lets buffering answer or hold what it can (cached reads, deferred
writes), routes the rest to the SrvOpen's mini-redirector (RxFsdDispatch: model/dispatch.py),
and follows what a request changes (a rename's new name, delete pending, the file's size).
A handle orphaned by a lost mini-redirector or connection is re-opened by path first."""

from __future__ import annotations

import logging

from rdbss.core.answers import Answers
from rdbss.core.buffering import Buffering
from rdbss.core.caching import Caching
from rdbss.core.connections import Connections
from rdbss.core.handles import Handles
from rdbss.core.sending import Sending
from rdbss.core.services import CoreState
from rdbss.core.types import Payload, Then
from rdbss.model.attrcache import ANSWERED_CLASSES, LEARNED_CLASSES, changes_attributes
from rdbss.model.buffering import FcbState
from rdbss.model.dispatch import routine_for
from rdbss.model.idempotent import CONNECTION_LOST, is_idempotent, resent_if_unsent, unsent
from rdbss.model.names import UncName, parse_unc
from rdbss.model.structs import Condition, Fcb, Fobx, NetRoot, SrvOpen
from rdbss.shm import Maps
from rdbss.wire.constants import (
    READ_ACCESS,
    CreateDisposition,
    FileInformationClass,
    IrpMj,
    LowIoOp,
    Routine,
)
from rdbss.wire.rxcontext import CreateParameters, LowIoParameters, RxCompletion, RxContext
from rdbss.wire.status import NETWORK_ERRORS, NtStatus, NtStatusError

log = logging.getLogger("rdbss.core")

S = NtStatus
_READ = LowIoOp.READ


class Files:
    def __init__(
        self,
        state: CoreState,
        answers: Answers,
        sending: Sending,
        connections: Connections,
        buffering: Buffering,
        caching: Caching,
        handles: Handles,
    ) -> None:
        self.state = state
        self.answers = answers
        self.sending = sending
        self.connections = connections
        self.buffering = buffering
        self.caching = caching
        self.handles = handles
        self.shared = Maps()  # client arenas, for writes whose bytes must leave them (rdbss.shm)

    def fobx(self, ident: bytes, ctx: RxContext) -> Fobx:
        fobx = self.state.fobxs.get(ctx.fobx) if ctx.fobx is not None else None
        if fobx is None or fobx.owner != ident:
            raise NtStatusError(S.STATUS_INVALID_HANDLE, f"no open handle {ctx.fobx}")
        return fobx

    def request(self, ident: bytes, ctx: RxContext, payload: Payload) -> None:
        fobx = self.fobx(ident, ctx)
        if ctx.major == IrpMj.CLOSE:
            self.handles.close(ident, ctx, fobx, lambda: self.resume(ident, ctx, None))
            return
        if fobx.orphaned_status != S.STATUS_SUCCESS:
            if fobx.reopen_failed:
                raise NtStatusError(
                    fobx.orphaned_status,
                    "the handle was lost when its mini-redirector went down and could not be "
                    "re-opened; open the file again",
                )
            self._reopen(ident, ctx, fobx, payload, 0)
            return
        routine, op = routine_for(ctx)
        if op is not None:
            if ctx.lowio is None:
                ctx.lowio = LowIoParameters(operation=op)
            ctx.lowio.operation = op
        srv_open = fobx.srv_open
        fcb = srv_open.fcb
        if ctx.args and "shm" in ctx.args:
            payload = self._unshare(ident, ctx, srv_open, op, payload)
        if fcb.write_error is not None:
            status, message = fcb.write_error
            fcb.write_error = None
            raise NtStatusError(status, f"a deferred write of {fcb.path} failed: {message}")
        if (
            op == LowIoOp.WRITE
            and fcb.buffering & FcbState.WRITEBUFFERING_ENABLED
            and self.caching.defer_write(ident, ctx, fobx, payload)
        ):
            return
        if fcb.dirty or fcb.flushing:
            # sent first: the mini-redirector applies them before this request
            self.caching.flush(fcb, ctx.timeout_ms)
            if routine == Routine.MRxFlush and fcb.flushing:
                # a flush answers once the deferred writes are done (and says if one failed)
                fcb.flush_waiters.append(lambda: self.resume(ident, ctx, payload))
                return
        ctx.routine = routine
        ctx.srv_open = srv_open.mrx_id
        ctx.srv_call = fcb.net_root.srv_call.name
        ctx.net_root = fcb.net_root.name
        ctx.path = fcb.path
        if (
            op == LowIoOp.READ
            and fcb.buffering & FcbState.READCACHING_ENABLED
            and srv_open.desired_access & READ_ACCESS
            and self.caching.cached_read(ident, ctx, fobx)
        ):
            return
        # a read changes no attribute, takes no lease and is always idempotent: its relay and
        # its retry after a lost connection are all that follow its answer
        then = (
            self.retrying(ident, ctx, payload, self.answers.relay(ident, ctx))
            if op == _READ
            else self._continuation(ident, ctx, payload, fobx, fcb, routine, op)
        )
        if then is None:
            return
        self.sending.send(
            srv_open.minirdr,
            ctx,
            payload,
            then,
            net_root=fcb.net_root,
            owner=(ident, ctx.request_id),
        )

    def _continuation(
        self,
        ident: bytes,
        ctx: RxContext,
        payload: Payload,
        fobx: Fobx,
        fcb: Fcb,
        routine: Routine,
        op: LowIoOp | None,
    ) -> Then | None:
        """What follows the answer of a handle request other than a read, with the state it
        changes before it goes (locks, delayed closes, the enumeration, leases); None when the
        attribute cache answered it here."""
        if routine == Routine.MRxQueryFileInfo and self._cached_query(ident, ctx, fcb):
            return None
        then = self.answers.relay(ident, ctx)
        if op == LowIoOp.WRITE:
            then = self.caching.writing(fcb, ctx, payload, then)
        elif op in (LowIoOp.SHAREDLOCK, LowIoOp.EXCLUSIVELOCK) and not fcb.locked:
            fcb.locked = True  # locks are checked by the mini-redirector: no more caching
            self.buffering.rebuffer(fcb)
        elif routine == Routine.MRxSetFileInfo and ctx.info is not None:
            info_class = ctx.info.info_class
            if info_class == FileInformationClass.FileRenameInformation:
                then = self._prepare_rename(ident, ctx, fobx)  # refuses a bad target
                # the names change: server opens kept for delayed closes there go first
                self.buffering.close_delayed_on(fcb.net_root, None, "a rename")
            elif info_class == FileInformationClass.FileDispositionInformation:
                self.buffering.close_delayed_on(fcb.net_root, fcb, "a delete")
                then = self._track_disposition(ctx, fcb, then)
            elif info_class in (
                FileInformationClass.FileEndOfFileInformation,
                FileInformationClass.FileAllocationInformation,
            ):
                then = self.caching.changing(fcb, then)
        then = self._attribute_rules(ctx, fcb, routine, then)
        idempotent = is_idempotent(ctx, enumerating=fobx.enumerated)
        if idempotent or resent_if_unsent(ctx):
            then = self.retrying(ident, ctx, payload, then, unsent_only=not idempotent)
        if routine == Routine.MRxQueryDirectory:
            fobx.enumerated = True
        elif routine == Routine.MRxSetFileInfo:
            self.caching.leases.setting(fcb, ctx)  # a rename, delete or resize breaks leases
        return then

    # ------------------------------------------------------------------ attributes
    def _cached_query(self, ident: bytes, ctx: RxContext, fcb: Fcb) -> bool:
        """A size-and-times query on a handle answered from the attribute cache."""
        if ctx.info is None or ctx.info.info_class not in ANSWERED_CLASSES:
            return False
        info = self.caching.attrs.query(fcb)
        if info is None:
            return False
        self.answers.answer(ident, ctx, S.STATUS_SUCCESS, result=info)
        return True

    def _attribute_rules(self, ctx: RxContext, fcb: Fcb, routine: Routine, then: Then) -> Then:
        """What a request tells the attribute cache (a listing, a query) or takes from it (a
        change of the file), core/attrcache.py."""
        attrs = self.caching.attrs
        if routine == Routine.MRxQueryDirectory:
            return attrs.listing(fcb, then)
        if routine == Routine.MRxQueryFileInfo:
            if ctx.info is not None and ctx.info.info_class in LEARNED_CLASSES:
                return attrs.learning(fcb.net_root, fcb.path, then)
            return then
        if not changes_attributes(ctx.major):
            return then
        info = ctx.info if routine == Routine.MRxSetFileInfo else None
        if info is not None and info.info_class == FileInformationClass.FileRenameInformation:
            return attrs.renaming(fcb, str(info.args.get("target", "")), then)
        if info is not None and info.info_class == FileInformationClass.FileDispositionInformation:
            return attrs.deleting(fcb.net_root, fcb.path, then)
        return attrs.changing(fcb.net_root, fcb.path, then)

    def _unshare(
        self, ident: bytes, ctx: RxContext, srv_open: SrvOpen, op: int | None, payload: Payload
    ) -> Payload:
        """The shared-memory hint (rdbss.shm) works between a client and a mini-redirector of
        this host only. Elsewhere a READ's bytes come back in the answer instead, and a WRITE's
        are copied out of the client's arena here and sent as its payload, as they are for a
        write the core may keep (write-behind). A WRITE with the hint from a client on another
        host, or with a payload too, is refused."""
        if op == LowIoOp.WRITE:
            if ident[:1] != b"c" or payload is not None:
                raise NtStatusError(
                    S.STATUS_INVALID_PARAMETER,
                    "shared memory is for writes without a payload from this host's clients",
                )
            if self._shares_memory(ident, srv_open.minirdr) and not (
                srv_open.fcb.buffering & FcbState.WRITEBUFFERING_ENABLED
            ):
                return None
            assert ctx.lowio is not None
            view = self.shared.target(ctx.args, ctx.lowio.length)
            assert view is not None
            with view:
                payload = bytes(view)
        elif self._shares_memory(ident, srv_open.minirdr):
            return payload
        ctx.args = {k: v for k, v in (ctx.args or {}).items() if k not in ("shm", "shm_off")}
        return payload

    def _shares_memory(self, ident: bytes, minirdr: str | None) -> bool:
        """A client and a mini-redirector that can share /dev/shm: both on this host."""
        peer = self.state.peers.get(minirdr or "")
        return ident[:1] == b"c" and peer is not None and not peer.host

    def resume(self, ident: bytes, ctx: RxContext, payload: Payload) -> None:
        try:
            self.request(ident, ctx, payload)
        except NtStatusError as exc:
            self.answers.answer(ident, ctx, exc.status, message=exc.strerror or "")

    def retrying(
        self,
        ident: bytes,
        ctx: RxContext,
        payload: Payload,
        then: Then,
        *,
        unsent_only: bool = False,
    ) -> Then:
        """Wrap a handle request's continuation: when its connection was lost, the request runs
        again from the start (its handle, orphaned by the loss, is re-opened on the connection
        built again) instead of failing; ``then`` gets the final answer. ``unsent_only``: only
        when the answer says the request never reached the server (model/idempotent.py)."""
        request_id = ctx.request_id

        def again(done: RxCompletion, data: Payload) -> None:
            # (most answers are not a lost connection: no look at the request's retries)
            left = (
                self.answers.retry_left(ident, request_id, done)
                if done.status in CONNECTION_LOST and (not unsent_only or unsent(done))
                else None
            )
            if left is None:
                then(done, data)
                return
            ctx.request_id, ctx.timeout_ms = request_id, left
            self.resume(ident, ctx, payload)

        return again

    def _reopen(
        self, ident: bytes, ctx: RxContext, fobx: Fobx, payload: Payload, attempt: int
    ) -> None:
        """Re-establish a handle whose SrvOpen died with its mini-redirector: open the same
        path again (same access, share and options, but FILE_OPEN: never create or truncate),
        then carry on with the request that found it orphaned. While the mini-redirector is
        still down the request gets the network status and the handle stays orphaned."""
        srv_open = fobx.srv_open
        fcb = srv_open.fcb
        name = UncName(fcb.net_root.srv_call.name, fcb.net_root.name, fcb.path)

        def resume() -> None:
            v_net_root = self.state.prefix.v_net_root(name)
            if v_net_root is not None and v_net_root.condition == Condition.BAD:
                self.answers.answer(
                    ident,
                    ctx,
                    v_net_root.status,
                    message=f"cannot re-open the handle: {v_net_root.message}",
                )
            elif attempt < 3:
                self._reopen(ident, ctx, fobx, payload, attempt + 1)
            else:
                self.answers.answer(
                    ident,
                    ctx,
                    fobx.orphaned_status,
                    message="re-opening the handle kept being interrupted",
                )

        try:
            v_net_root = self.connections.find_or_construct(name, resume)
        except NtStatusError as exc:
            self.answers.answer(
                ident, ctx, exc.status, message=f"cannot re-open the handle: {exc.strerror}"
            )
            return
        if v_net_root is None:
            self.connections.park(ident, ctx.request_id, name, resume)
            return  # parked until the NetRoot is built again
        minirdr = v_net_root.net_root.minirdr
        assert minirdr is not None
        reopen = RxContext(
            request_id=0,
            major=IrpMj.CREATE,
            routine=Routine.MRxCreate,
            timeout_ms=ctx.timeout_ms,
            path=fcb.path,
            fobx=fobx.id,
            srv_call=name.server,
            net_root=name.share,
            create=CreateParameters(
                desired_access=srv_open.desired_access,
                share_access=srv_open.share_access,
                disposition=CreateDisposition.FILE_OPEN,
                create_options=srv_open.create_options,
            ),
            origin=ctx.origin,
        )

        def then(done: RxCompletion, _payload: Payload) -> None:
            result = done.result if isinstance(done.result, dict) else {}
            mrx_id = result.get("srv_open")
            if fobx.id not in self.state.fobxs:
                return  # closed meanwhile
            current = self.state.prefix.v_net_root(name) is v_net_root
            if done.status == S.STATUS_SUCCESS and isinstance(mrx_id, int) and not current:
                # the connection it re-opened on was lost again meanwhile (another request
                # found out): that open is dead with it, re-open on the next connection
                resume()
                return
            if done.status in CONNECTION_LOST:
                resume()  # torn down by now: re-open on the connection built again
                return
            if done.status == S.STATUS_SUCCESS and isinstance(mrx_id, int):
                self._rehome(fcb, v_net_root.net_root)
                if any(
                    f.orphaned_status == S.STATUS_SUCCESS for f in srv_open.fobxs if f is not fobx
                ):
                    # another handle of this (collapsed) SrvOpen re-opened it first: this
                    # second server open is not needed
                    self._close_extra(minirdr, mrx_id, fcb, ctx.origin)
                else:
                    srv_open.mrx_id = mrx_id
                    srv_open.minirdr = minirdr
                    srv_open.peer_pid = (
                        self.state.peers[minirdr].pid if minirdr in self.state.peers else 0
                    )
                    for other in srv_open.fobxs:
                        if not other.reopen_failed:
                            other.orphaned_status = S.STATUS_SUCCESS
                fobx.orphaned_status = S.STATUS_SUCCESS
                log.info("re-opened handle fobx=%d path=%s via %s", fobx.id, fcb.path, minirdr)
                try:
                    self.request(ident, ctx, payload)
                except NtStatusError as exc:
                    self.answers.answer(ident, ctx, exc.status, message=exc.strerror or "")
                return
            if done.status not in NETWORK_ERRORS and done.status != S.STATUS_CANCELLED:
                fobx.reopen_failed = True  # the file is gone or refused: no more attempts
                fobx.orphaned_status = done.status
            self.answers.answer(
                ident, ctx, done.status, message=f"cannot re-open the handle: {done.message}"
            )

        try:
            self.sending.send(
                minirdr,
                reopen,
                None,
                then,
                net_root=v_net_root.net_root,
                owner=(ident, ctx.request_id),
            )
        except NtStatusError as exc:
            self.answers.answer(ident, ctx, exc.status, message=exc.strerror or "")

    def _rehome(self, fcb: Fcb, net_root: NetRoot) -> None:
        """A handle of ``fcb`` was re-opened on ``net_root``, the NetRoot built again after its
        own was torn down: the Fcb (its SrvOpens, their handles) moves there. Otherwise it keeps
        pointing at the dead NetRoot, and the next loss of the new connection neither finds nor
        orphans its handles, and the scavenger sees the new connection as idle. When the file
        was opened again on the new NetRoot meanwhile, its SrvOpens join that Fcb (one Fcb per
        file and NetRoot)."""
        old = fcb.net_root
        if old is net_root:
            return
        if old.fcbs.get(fcb.key) is fcb:
            del old.fcbs[fcb.key]
        there = net_root.fcbs.get(fcb.key)
        if there is None:
            fcb.net_root = net_root
            net_root.fcbs[fcb.key] = fcb
            return
        for srv_open in fcb.srv_opens:
            srv_open.fcb = there
            there.srv_opens.append(srv_open)
        fcb.srv_opens.clear()
        there.write_error = there.write_error or fcb.write_error
        self.caching.purge(fcb)
        self.buffering.rebuffer(there)

    def _close_extra(self, minirdr: str, mrx_id: int, fcb: Fcb, origin: str | None) -> None:
        close = RxContext(
            request_id=0,
            major=IrpMj.CLOSE,
            routine=Routine.MRxCloseSrvOpen,
            srv_open=mrx_id,
            srv_call=fcb.net_root.srv_call.name,
            net_root=fcb.net_root.name,
            path=fcb.path,
            origin=origin,
        )
        self.sending.send_quietly(minirdr, close)

    def _prepare_rename(self, ident: bytes, ctx: RxContext, fobx: Fobx) -> Then:
        """Rename targets arrive as UNC names; the mini-redirector gets a share-relative path."""
        assert ctx.info is not None
        target = ctx.info.args.get("target")
        if not isinstance(target, str):
            raise NtStatusError(S.STATUS_INVALID_PARAMETER, "rename needs a target name")
        fcb = fobx.fcb
        net_root = fcb.net_root
        if target.startswith(("\\\\", "//")):
            name = parse_unc(target)
            if name.key != net_root.prefix.lower():
                raise NtStatusError(
                    S.STATUS_NOT_SAME_DEVICE, "rename cannot move a file to another share"
                )
            new_path = name.path
        else:
            new_path = parse_unc(f"{net_root.prefix}\\{target}").path
        if not new_path:
            raise NtStatusError(S.STATUS_ACCESS_DENIED, "cannot rename onto the share root")
        ctx.info.args["target"] = new_path
        relay = self.answers.relay(ident, ctx)

        def then(done: RxCompletion, payload: Payload) -> None:
            if done.status == S.STATUS_SUCCESS:
                net_root.fcbs.pop(fcb.key, None)
                fcb.path = new_path
                net_root.fcbs[fcb.key] = fcb
            relay(done, payload)

        return then

    def _track_disposition(self, ctx: RxContext, fcb: Fcb, relay: Then) -> Then:
        assert ctx.info is not None
        delete = bool(ctx.info.args.get("delete", True))

        def then(done: RxCompletion, payload: Payload) -> None:
            if done.status == S.STATUS_SUCCESS:
                fcb.delete_pending = delete
            relay(done, payload)

        return then

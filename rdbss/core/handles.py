"""Handles (see docs/routines.md, Create, collapsing and close): a Fobx is added when a create
succeeds or collapses, and dropped at its close (IRP_MJ_CLEANUP then IRP_MJ_CLOSE), when its
owner is gone, or when its create was cancelled. The last handle of a SrvOpen closes it on the
mini-redirector unless buffering keeps it for a delayed close; the last SrvOpen of an Fcb drops
the Fcb."""

from __future__ import annotations

import logging
from collections.abc import Callable

from rdbss.core.answers import Answers
from rdbss.core.buffering import Buffering
from rdbss.core.caching import Caching
from rdbss.core.sending import Sending
from rdbss.core.services import CoreState
from rdbss.core.types import Payload, Then, srv_open_context
from rdbss.model.structs import Fobx
from rdbss.wire.constants import WRITE_ACCESS, IrpMj, Routine
from rdbss.wire.rxcontext import RxCompletion, RxContext
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.core")

S = NtStatus


class Handles:
    def __init__(
        self,
        state: CoreState,
        answers: Answers,
        sending: Sending,
        buffering: Buffering,
        caching: Caching,
    ) -> None:
        self.state = state
        self.answers = answers
        self.sending = sending
        self.buffering = buffering
        self.caching = caching

    def add(self, fobx: Fobx) -> None:
        """A new handle: in the table, counted for its owner."""
        self.state.fobxs[fobx.id] = fobx
        handles_of = self.state.handles_of
        handles_of[fobx.owner] = handles_of.get(fobx.owner, 0) + 1

    def close(self, ident: bytes, ctx: RxContext, fobx: Fobx, resume: Callable[[], None]) -> None:
        """IRP_MJ_CLEANUP then IRP_MJ_CLOSE: forget the handle at once (close never fails for
        the caller), tell the mini-redirector, answer when it has closed its SrvOpen. While
        deferred writes of the file are under way, ``resume`` runs the close again after them."""
        request_id = ctx.request_id
        fcb = fobx.fcb
        self.caching.flush(fcb, ctx.timeout_ms)
        if fcb.flushing:  # the close answers once the deferred writes are done
            fcb.flush_waiters.append(resume)
            return
        error = fcb.write_error
        fcb.write_error = None

        def answer(done: RxCompletion, payload: Payload) -> None:
            # the handle is gone whatever the mini-redirector says; report what it said
            done.request_id = request_id
            if error is not None and done.status == S.STATUS_SUCCESS:
                done.status = error[0]
                done.message = f"a deferred write of {fcb.path} failed: {error[1]}"
            self.answers.to_client(ident, done, None)

        self.release(fobx, ctx.origin, answer)

    def release(self, fobx: Fobx, origin: str | None, then: Then, delay: bool = True) -> None:
        """Drop a handle from the tables and close it on its mini-redirector (MRxCleanupFobx,
        then MRxCloseSrvOpen when it was the SrvOpen's last handle, unless the SrvOpen is kept
        for a delayed close); ``then`` gets the close's completion, or SUCCESS when there was
        nothing to close remotely."""
        self.caching.flush(fobx.fcb)  # sent before the cleanup and close
        srv_open = fobx.srv_open
        then = self.caching.attrs.closing_srv_open(srv_open, then)
        peer = self.state.peers.get(srv_open.minirdr)
        alive = peer is not None and peer.pid == srv_open.peer_pid
        delayed = (
            delay
            and alive
            and len(srv_open.fobxs) == 1
            and peer is not None
            and Routine.MRxCloseSrvOpen in peer.routines
            and self.buffering.may_delay(srv_open, fobx)
        )
        self.unlink(fobx, delayed)
        if delayed:
            self.buffering.delay_close(srv_open)
        done = RxCompletion(0, S.STATUS_SUCCESS)
        if peer is None or peer.pid != srv_open.peer_pid:
            # the process that held this SrvOpen is gone, and its state with it: a handle that
            # could write says so instead of pretending its unflushed writes are safe
            if srv_open.desired_access & WRITE_ACCESS and not srv_open.fobxs:
                done.status = S.STATUS_CONNECTION_DISCONNECTED
                done.message = (
                    f"mini-redirector {srv_open.minirdr!r} ended while this handle was open; "
                    "writes not flushed before may not have reached the server"
                )
            then(done, None)
            return
        # the same process still holds the SrvOpen (even if its connection dropped): it closes
        # it and reports, e.g., data it staged and could not upload

        def handle_ctx(major: int, routine: Routine) -> RxContext:
            return srv_open_context(srv_open, major, routine, fobx=fobx.id, origin=origin)

        if Routine.MRxCleanupFobx in peer.routines:
            cleanup = handle_ctx(IrpMj.CLEANUP, Routine.MRxCleanupFobx)
            self.sending.send_quietly(peer.name, cleanup)
        if srv_open.fobxs or delayed or Routine.MRxCloseSrvOpen not in peer.routines:
            then(done, None)
            return
        try:
            close = handle_ctx(IrpMj.CLOSE, Routine.MRxCloseSrvOpen)
            self.sending.send(peer.name, close, None, then)
        except NtStatusError:
            then(done, None)

    def holds(self, ident: bytes) -> bool:
        """Whether a client has open handles (a request without a handle ends by its deadline,
        well within the time a quiet remote client is remembered)."""
        return bool(self.state.handles_of.get(ident))

    def unlink(self, fobx: Fobx, delayed: bool = False) -> None:
        """Drop a handle from the core's tables; its SrvOpen too when it was the last handle
        (unless kept for a delayed close), and its Fcb, purged, when that was the Fcb's last
        SrvOpen. The Fcb's buffering state follows the handles left."""
        del self.state.fobxs[fobx.id]
        self.state.handles_of[fobx.owner] -= 1
        if not self.state.handles_of[fobx.owner]:
            del self.state.handles_of[fobx.owner]
        srv_open = fobx.srv_open
        srv_open.fcb.net_root.last_used = self.state.clock()
        fcb = srv_open.fcb
        srv_open.fobxs.remove(fobx)
        if not srv_open.fobxs and not delayed:
            fcb.srv_opens.remove(srv_open)
            if not fcb.srv_opens:
                if fcb.net_root.fcbs.get(fcb.key) is fcb:
                    del fcb.net_root.fcbs[fcb.key]
                self.caching.purge(fcb)
        if fcb.srv_opens:
            self.buffering.rebuffer(fcb)

    def orphan(self, minirdr: str) -> None:
        """The mini-redirector ``minirdr`` went down: its handles are orphaned, to be re-opened
        on their next use."""
        for fobx in self.state.fobxs.values():
            if fobx.srv_open.minirdr == minirdr:
                fobx.orphaned_status = S.STATUS_CONNECTION_DISCONNECTED

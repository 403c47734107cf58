"""The Fcb buffering state (see docs/routines.md, Buffering states): open collapsing, the
state each Fcb's handles allow, and delayed close with its scavenger. The data that the state
allows to be kept (the read cache, deferred writes) is ``Caching``'s (caching.py). What buffering
needs back from the core (closing a handle, opening afresh) is ``BufferingHost``.

Each Fcb's buffering state comes from its mini-redirector's grant (``Register.buffering``) and
the handles open on it (model/buffering.py). Compatible opens collapse onto one SrvOpen
(RxSearchForCollapsibleOpen); a last close may be kept (CLOSE_DELAYED) for ``close_delay_s``.
A state that loses a bit first flushes deferred writes and purges what it no longer allows.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from typing import Protocol

from rdbss.core.answers import Answers
from rdbss.core.caching import Caching
from rdbss.core.sending import Sending
from rdbss.core.services import CoreState
from rdbss.core.types import Payload, Then, srv_open_context
from rdbss.model.buffering import (
    READ_BITS,
    WRITE_BITS,
    FcbState,
    collapsible_onto,
    compute_buffering_state,
    describe,
    lost,
    may_collapse,
)
from rdbss.model.names import UncName
from rdbss.model.structs import Condition, Fcb, Fobx, NetRoot, SrvCall, SrvOpen, VNetRoot
from rdbss.wire.constants import (
    CreateInformation,
    CreateOptions,
    FileInformationClass,
    IrpMj,
    Routine,
)
from rdbss.wire.rxcontext import (
    CreateParameters,
    InfoParameters,
    RxCompletion,
    RxContext,
)
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.core")

S = NtStatus

#: What answers a collapsed create: the mini-redirector's MRxCollapseOpen, else a query.
_COLLAPSE_ANSWERS = frozenset({Routine.MRxCollapseOpen, Routine.MRxQueryFileInfo})


class BufferingHost(Protocol):
    """What buffering asks of the rest of the core."""

    def release(self, fobx: Fobx, origin: str | None, then: Then, delay: bool = True) -> None:
        """Drop a handle and close it on its mini-redirector."""
        ...

    def create_again(self, ident: bytes, ctx: RxContext, name: UncName, vnr: VNetRoot) -> None:
        """Send a create to its mini-redirector without collapsing it (its connection is
        resolved again when ``vnr`` is no longer Good)."""
        ...


class Buffering:
    def __init__(
        self,
        state: CoreState,
        answers: Answers,
        sending: Sending,
        caching: Caching,
        host: BufferingHost,
    ) -> None:
        self.state = state
        self.answers = answers
        self.sending = sending
        self.host = host
        self.caching = caching
        self.fcb_serials = itertools.count(1)
        self.delayed: dict[int, SrvOpen] = {}  # id -> CLOSE_DELAYED SrvOpen, oldest first
        self.counters = {
            "collapsed_opens": 0,
            "delayed_closes": 0,
            "delayed_reused": 0,
            "delayed_closed": 0,
            "buffering_changes": 0,
        }

    # ------------------------------------------------------------------ open collapsing
    def collapsible(self, fcb: Fcb, create: CreateParameters, minirdr: str) -> SrvOpen | None:
        """RxSearchForCollapsibleOpen: a Good SrvOpen of ``fcb`` with the same access, sharing
        and options, while the Fcb's buffering state has COLLAPSING_ENABLED."""
        if fcb.directory or not fcb.buffering & FcbState.COLLAPSING_ENABLED:
            return None
        if not may_collapse(create.disposition, create.create_options):
            return None
        peer = self.state.peers.get(minirdr)
        if peer is None or not peer.routines & _COLLAPSE_ANSWERS:
            return None  # nothing would give the create its file information
        for srv_open in fcb.srv_opens:
            if (
                srv_open.minirdr == minirdr
                and srv_open.peer_pid == peer.pid
                and srv_open.condition == Condition.GOOD
                and srv_open.grant & FcbState.COLLAPSING_ENABLED
                and all(f.orphaned_status == S.STATUS_SUCCESS for f in srv_open.fobxs)
                and collapsible_onto(
                    create.desired_access,
                    create.share_access,
                    create.create_options,
                    srv_open.desired_access,
                    srv_open.share_access,
                    srv_open.create_options,
                )
            ):
                return srv_open
        return None

    def collapse(
        self, ident: bytes, ctx: RxContext, name: UncName, vnr: VNetRoot, srv_open: SrvOpen
    ) -> None:
        """Attach a new Fobx to ``srv_open``. The mini-redirector's MRxCollapseOpen, when it
        registered one, or else MRxQueryFileInfo on the SrvOpen gives the create's answer
        fresh file information. A server open that no longer names the file (it was deleted or
        replaced behind the core's back) is dropped and the create goes to MRxCreate."""
        fcb = srv_open.fcb
        net_root = fcb.net_root
        fobx = Fobx(next(self.state.fobx_ids), srv_open, ident)
        if srv_open.close_delayed_at is not None:
            self.delayed.pop(id(srv_open), None)
            srv_open.close_delayed_at = None
            self.counters["delayed_reused"] += 1
        srv_open.fobxs.append(fobx)
        srv_open.collapsed += 1
        self.counters["collapsed_opens"] += 1
        self.state.fobxs[fobx.id] = fobx
        self.state.handles_of[ident] = self.state.handles_of.get(ident, 0) + 1
        self.rebuffer(fcb)
        peer = self.state.peers[srv_open.minirdr]
        routine = (
            Routine.MRxCollapseOpen
            if Routine.MRxCollapseOpen in peer.routines
            else Routine.MRxQueryFileInfo
        )
        ask = RxContext(
            request_id=0,
            major=IrpMj.CREATE if routine == Routine.MRxCollapseOpen else IrpMj.QUERY_INFORMATION,
            routine=routine,
            timeout_ms=ctx.timeout_ms,
            path=fcb.path,
            fobx=fobx.id,
            srv_open=srv_open.mrx_id,
            srv_call=net_root.srv_call.name,
            net_root=net_root.name,
            create=ctx.create,
            info=InfoParameters(info_class=FileInformationClass.FileAllInformation),
            origin=ctx.origin,
        )
        request_id = ctx.request_id

        def then(done: RxCompletion, payload: Payload) -> None:
            info = done.result if isinstance(done.result, dict) else {}
            if fobx.id not in self.state.fobxs:
                return  # its owner vanished meanwhile (swept)
            if done.status == S.STATUS_SUCCESS and info.get("nlink", 1) != 0:
                log.debug("collapsed req=%s fobx=%d onto %s", ctx.origin, fobx.id, fcb.path)
                result = {**info, "directory": fcb.directory, "fobx": fobx.id}
                self.caching.leases.granted(ident, ctx, fobx, result)
                opened = CreateInformation.FILE_OPENED
                self.answers.to_client(
                    ident, RxCompletion(request_id, S.STATUS_SUCCESS, opened, result)
                )
                return
            log.info(
                "collapsed open of %s not usable (status 0x%08X); opening afresh",
                fcb.path,
                done.status,
            )
            srv_open.condition = Condition.BAD  # never collapse onto it again
            self.host.release(fobx, ctx.origin, lambda done, payload: None, delay=False)
            ctx.request_id = request_id
            try:
                self.host.create_again(ident, ctx, name, vnr)
            except NtStatusError as exc:
                self.answers.answer(ident, ctx, exc.status, message=exc.strerror or "")

        try:
            self.sending.send(srv_open.minirdr, ask, None, then, net_root=net_root)
        except NtStatusError as exc:
            then(RxCompletion(0, exc.status, message=exc.strerror or ""), None)

    # ------------------------------------------------------------------ buffering state
    def rebuffer(self, fcb: Fcb, arriving: int | None = None) -> None:
        """Recompute the Fcb's buffering state from its grant and its handles (plus an open
        ``arriving`` with that access). Cached data a lost bit no longer allows is purged
        before anything else happens; MRxCompleteBufferingStateChangeRequest then tells a
        mini-redirector that registered it."""
        accesses = [so.desired_access for so in fcb.srv_opens for _ in so.fobxs]
        if arriving is not None:
            accesses.append(arriving)
        grant = 0
        if fcb.srv_opens:
            grant = fcb.srv_opens[0].grant
            for srv_open in fcb.srv_opens[1:]:
                grant &= srv_open.grant
        new = compute_buffering_state(grant, accesses, fcb.locked)
        old = fcb.buffering
        if new == old:
            return
        fcb.buffering = new
        gone = lost(old, new)
        if not gone:
            return
        self.counters["buffering_changes"] += 1
        if gone & FcbState.WRITEBUFFERING_ENABLED:
            self.caching.flush(fcb)  # deferred writes go before whatever changed the state
        if gone & (READ_BITS | WRITE_BITS):
            # readers' leases hold while only the write bits go: what they read stays true
            self.caching.purge(fcb, leases=bool(gone & READ_BITS))
        log.debug("buffering of %s: %s -> %s", fcb.path, describe(old), describe(new))
        for srv_open in fcb.srv_opens:
            peer = self.state.peers.get(srv_open.minirdr)
            if peer is None or Routine.MRxCompleteBufferingStateChangeRequest not in peer.routines:
                continue
            note = srv_open_context(
                srv_open,
                IrpMj.FILE_SYSTEM_CONTROL,
                Routine.MRxCompleteBufferingStateChangeRequest,
                args={"buffering": new},
            )
            self.sending.send_quietly(peer.name, note)

    # ------------------------------------------------------------- delayed close and its scavenger
    def may_delay(self, srv_open: SrvOpen, fobx: Fobx) -> bool:
        """RxCommonClose's test: keep the SrvOpen of a file's last handle (CLOSE_DELAYED)?"""
        fcb = srv_open.fcb
        wanted = FcbState.DELAY_CLOSE | FcbState.COLLAPSING_ENABLED
        return (
            self.state.settings.close_delay_s > 0
            and self.state.settings.max_delayed_closes > 0
            and not self.state.stopping
            and fcb.buffering & wanted == wanted
            and not fcb.directory
            and not fcb.delete_pending
            and not srv_open.create_options
            & (CreateOptions.FILE_DELETE_ON_CLOSE | CreateOptions.FILE_OPEN_FOR_BACKUP_INTENT)
            and srv_open.condition == Condition.GOOD
            and fobx.orphaned_status == S.STATUS_SUCCESS
            and self.state.prefix.srv_call(fcb.net_root.srv_call.name) is fcb.net_root.srv_call
        )

    def delay_close(self, srv_open: SrvOpen) -> None:
        srv_open.close_delayed_at = self.state.clock()
        self.delayed[id(srv_open)] = srv_open
        self.counters["delayed_closes"] += 1
        srv_call = srv_open.fcb.net_root.srv_call
        same = [so for so in self.delayed.values() if so.fcb.net_root.srv_call is srv_call]
        for oldest in same[: max(0, len(same) - self.state.settings.max_delayed_closes)]:
            self.close_delayed(oldest, "too many delayed closes on the server")

    def scavenge_delayed_closes(self, now: float) -> None:
        """The SrvOpen scavenger: close the server opens kept past ``close_delay_s`` (all of
        them when the daemon is stopping)."""
        limit = now - self.state.settings.close_delay_s
        for srv_open in list(self.delayed.values()):
            at = srv_open.close_delayed_at
            if not self.state.stopping and at is not None and at > limit:
                break  # oldest first: the rest are younger
            self.close_delayed(srv_open, "expired")

    def close_delayed(self, srv_open: SrvOpen, reason: str) -> None:
        """Close a SrvOpen kept for a delayed close: MRxCloseSrvOpen (when its process still
        holds it), and the Fcb goes when it was its last SrvOpen."""
        self.delayed.pop(id(srv_open), None)
        srv_open.close_delayed_at = None
        fcb = srv_open.fcb
        fcb.srv_opens = [so for so in fcb.srv_opens if so is not srv_open]
        if not fcb.srv_opens:
            if fcb.net_root.fcbs.get(fcb.key) is fcb:
                del fcb.net_root.fcbs[fcb.key]
            self.caching.purge(fcb)
        else:
            self.rebuffer(fcb)
        self.counters["delayed_closed"] += 1
        log.debug("delayed close of %s ends: %s", fcb.path, reason)
        peer = self.state.peers.get(srv_open.minirdr)
        if peer is None or peer.pid != srv_open.peer_pid:
            return
        if Routine.MRxCloseSrvOpen not in peer.routines:
            return
        close = srv_open_context(
            srv_open, IrpMj.CLOSE, Routine.MRxCloseSrvOpen, origin=f"delayed-close:{reason}"
        )

        def then(done: RxCompletion, payload: Payload) -> None:
            if done.status != S.STATUS_SUCCESS:
                self.answers.note_error(done.status, Routine.MRxCloseSrvOpen, done.message)

        with contextlib.suppress(NtStatusError):
            self.sending.send(peer.name, close, None, then, net_root=fcb.net_root)

    def close_delayed_on(self, net_root: NetRoot, fcb: Fcb | None, reason: str) -> None:
        """Close the delayed closes of one file (``fcb``) or of a whole share (None)."""
        for srv_open in list(self.delayed.values()):
            if srv_open.fcb.net_root is net_root and (fcb is None or srv_open.fcb is fcb):
                self.close_delayed(srv_open, reason)

    # ------------------------------------------------------------------ losses
    def peer_down(self, name: str) -> None:
        """The mini-redirector ``name`` went down: its delayed closes end, deferred writes on
        its handles are lost."""
        for srv_open in list(self.delayed.values()):
            if srv_open.minirdr == name:
                self.close_delayed(srv_open, "its mini-redirector went down")
        self.caching.peer_down(name)

    def connection_lost(self, srv_call: SrvCall) -> None:
        """The connection to ``srv_call`` is gone: its delayed closes end, its deferred writes
        are lost."""
        for srv_open in list(self.delayed.values()):
            if srv_open.fcb.net_root.srv_call is srv_call:
                self.close_delayed(srv_open, "the connection was lost")
        self.caching.connection_lost(srv_call)

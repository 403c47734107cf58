"""The core's buffering (see docs/routines.md, Buffering states): open collapsing, the Fcb
buffering state, delayed close with its scavenger, the read cache and write-behind. The core
calls ``Buffering`` at its hooks: create, file requests, close, tick, peer and connection loss,
status; what it needs back from the core (closing a handle, opening afresh) is ``BufferingHost``.

Each Fcb's buffering state comes from its mini-redirector's grant (``Register.buffering``) and
the handles open on it (model/buffering.py). Compatible opens collapse onto one SrvOpen; a last
close may be kept (CLOSE_DELAYED) for ``close_delay_s``; while READCACHING holds, reads are
cached (model/filecache.py); while WRITEBUFFERING holds, writes are acknowledged and deferred.
Deferred writes are sent just before any other request on the file: a mini-redirector runs one
connection's requests in order, so that request sees them done.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from typing import Any, Protocol

from rdbss.core.answers import Answers
from rdbss.core.sending import Sending
from rdbss.core.services import CoreState
from rdbss.core.types import Payload, Then, as_bytes, srv_open_context
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
from rdbss.model.filecache import ReadCache
from rdbss.model.names import UncName
from rdbss.model.structs import Condition, Fcb, Fobx, NetRoot, SrvCall, SrvOpen, VNetRoot
from rdbss.wire.constants import (
    Access,
    CreateInformation,
    CreateOptions,
    FileInformationClass,
    IrpMj,
    LowIoOp,
    Routine,
)
from rdbss.wire.rxcontext import (
    CreateParameters,
    InfoParameters,
    LowIoParameters,
    RxCompletion,
    RxContext,
)
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.core")

S = NtStatus

#: What answers a collapsed create: the mini-redirector's MRxCollapseOpen, else a query.
_COLLAPSE_ANSWERS = frozenset({Routine.MRxCollapseOpen, Routine.MRxQueryFileInfo})
#: Access that writes data anywhere in a file (FILE_APPEND_DATA alone only appends).
_WRITE_DATA = int(Access.FILE_WRITE_DATA | Access.GENERIC_WRITE | Access.GENERIC_ALL)


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
        self, state: CoreState, answers: Answers, sending: Sending, host: BufferingHost
    ) -> None:
        self.state = state
        self.answers = answers
        self.sending = sending
        self.host = host
        self.cache = ReadCache(state.settings.cache_bytes)
        self.fcb_serials = itertools.count(1)
        self.delayed: dict[int, SrvOpen] = {}  # id -> CLOSE_DELAYED SrvOpen, oldest first
        self.dirty: dict[int, Fcb] = {}  # serial -> Fcb with deferred writes
        self.dirty_total = 0
        self.counters = {
            "collapsed_opens": 0,
            "delayed_closes": 0,
            "delayed_reused": 0,
            "delayed_closed": 0,
            "buffering_changes": 0,
            "deferred_writes": 0,
            "write_behind_errors": 0,
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
            self.flush(fcb)  # deferred writes go before whatever changed the state
        if gone & (READ_BITS | WRITE_BITS):
            self.purge(fcb)
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

    def purge(self, fcb: Fcb) -> None:
        """Drop the Fcb's cached data; reads already on their way fill nothing."""
        fcb.generation += 1
        self.cache.purge(fcb.serial)

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
            self.purge(fcb)
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

    # ------------------------------------------------------------------ the read cache
    def cached_read(self, ident: bytes, ctx: RxContext, fobx: Fobx) -> bool:
        """A read while the Fcb has READCACHING: answer it from the cache, or send it widened
        to whole blocks and fill the cache with the answer. False: send it as it is."""
        fcb = fobx.fcb
        lowio = ctx.lowio
        assert lowio is not None
        offset, length = lowio.offset, lowio.length
        data = self.cache.lookup(fcb.serial, offset, length)
        if data is not None:
            if not data and length:
                self.answers.answer(
                    ident, ctx, S.STATUS_END_OF_FILE, message=f"offset {offset} is past the end"
                )
            else:
                self.answers.answer(ident, ctx, S.STATUS_SUCCESS, len(data), payload=data)
            return True
        widened = ReadCache.widen(offset, length)
        if widened is None:
            return False
        start, span = widened
        generation = fcb.generation
        relay = self.answers.relay(ident, ctx)
        lowio.offset, lowio.length = start, span
        if ctx.args and "shm" in ctx.args:
            # the widened blocks are for the cache, here: they come back in the answer, and
            # the client's slot (sized for its own range) is never written past
            ctx.args = {k: v for k, v in ctx.args.items() if k not in ("shm", "shm_off")}

        def then(done: RxCompletion, payload: Payload) -> None:
            if done.status != S.STATUS_SUCCESS or payload is None:
                relay(done, payload)
                return
            block = as_bytes(payload)
            if fcb.generation == generation and fcb.buffering & FcbState.READCACHING_ENABLED:
                self.cache.fill(fcb.serial, start, block, span)
            piece = block[offset - start : offset - start + length]
            if not piece and length:
                done.status = S.STATUS_END_OF_FILE
                done.message = f"offset {offset} is past the end"
                relay(done, None)
                return
            done.information = len(piece)
            relay(done, piece)

        srv_open = fobx.srv_open
        self.sending.send(srv_open.minirdr, ctx, None, then, net_root=fcb.net_root)
        return True

    def writing(self, fcb: Fcb, ctx: RxContext, payload: Payload, relay: Then) -> Then:
        """A write goes through to the mini-redirector (write-through); the cached blocks it
        touches are dropped when it is sent and again when it completes, and reads in flight
        meanwhile fill nothing."""
        lowio = ctx.lowio
        assert lowio is not None
        offset = lowio.offset
        length = len(payload) if payload is not None else lowio.length
        fcb.generation += 1
        self.cache.invalidate(fcb.serial, offset, length)

        def then(done: RxCompletion, payload: Payload) -> None:
            fcb.generation += 1
            self.cache.invalidate(fcb.serial, offset, length)
            relay(done, payload)

        return then

    def changing(self, fcb: Fcb, relay: Then) -> Then:
        """A request that changes the file's size: nothing cached survives it."""
        self.purge(fcb)

        def then(done: RxCompletion, payload: Payload) -> None:
            self.purge(fcb)
            relay(done, payload)

        return then

    # ------------------------------------------------------------------ write-behind
    def flush_deferred_writes(self, now: float) -> None:
        """Send deferred writes older than ``write_behind_s`` (all when stopping)."""
        for fcb in list(self.dirty.values()):
            if self.state.stopping or now - fcb.dirty_since >= self.state.settings.write_behind_s:
                self.flush(fcb)

    def defer_write(self, ident: bytes, ctx: RxContext, fobx: Fobx, payload: Payload) -> bool:
        """WRITEBUFFERING: acknowledge a write at once and keep it; it goes to the
        mini-redirector later, in order, before any other request on the file. False: send it
        now (an append, a handle that cannot write data, over the dirty limit)."""
        fcb = fobx.fcb
        lowio = ctx.lowio
        assert lowio is not None
        offset = lowio.offset
        if (
            offset < 0
            or payload is None
            or self.state.settings.write_behind_s <= 0
            or not fobx.srv_open.desired_access & _WRITE_DATA
            or (fcb.dirty_fobx is not None and fcb.dirty_fobx is not fobx)
        ):
            return False
        data = as_bytes(payload)
        if not data:
            return False
        if self.dirty_total + len(data) > self.state.settings.dirty_bytes:
            self.flush(fcb)
            if self.dirty_total + len(data) > self.state.settings.dirty_bytes:
                return False
        if fcb.dirty and fcb.dirty[-1][0] + len(fcb.dirty[-1][1]) == offset:
            fcb.dirty[-1][1].extend(data)  # sequential writes become one
        else:
            fcb.dirty.append((offset, bytearray(data)))
        if not fcb.dirty_bytes:
            fcb.dirty_since = self.state.clock()
            self.dirty[fcb.serial] = fcb
        fcb.dirty_bytes += len(data)
        fcb.dirty_fobx = fobx
        self.dirty_total += len(data)
        self.counters["deferred_writes"] += 1
        fcb.generation += 1
        self.cache.invalidate(fcb.serial, offset, len(data))
        self.answers.answer(ident, ctx, S.STATUS_SUCCESS, len(data))
        if fcb.dirty_bytes >= self.state.settings.dirty_bytes // 4:
            self.flush(fcb)
        return True

    def flush(self, fcb: Fcb, timeout_ms: int = 30_000) -> None:
        """Send the Fcb's deferred writes (in order: a mini-redirector runs one connection's
        requests in order, so whatever is sent after them sees them done), each with the
        deadline of the request that needs them. A failure is kept in ``write_error`` for the
        next request on the file, or its close."""
        if not fcb.dirty:
            return
        extents, fcb.dirty = fcb.dirty, []
        self.dirty_total -= fcb.dirty_bytes
        fcb.dirty_bytes = 0
        self.dirty.pop(fcb.serial, None)
        fobx = fcb.dirty_fobx
        fcb.dirty_fobx = None
        assert fobx is not None
        srv_open = fobx.srv_open
        for offset, data in extents:
            fcb.flushing += 1
            ctx = RxContext(
                request_id=0,
                major=IrpMj.WRITE,
                routine=Routine.MRxLowIOSubmit,
                srv_open=srv_open.mrx_id,
                srv_call=fcb.net_root.srv_call.name,
                net_root=fcb.net_root.name,
                path=fcb.path,
                fobx=fobx.id,
                lowio=LowIoParameters(operation=LowIoOp.WRITE, offset=offset, length=len(data)),
                timeout_ms=timeout_ms,
                origin="write-behind",
            )
            then = self._flushed(fcb, offset, len(data))
            try:
                self.sending.send(srv_open.minirdr, ctx, bytes(data), then, net_root=fcb.net_root)
            except NtStatusError as exc:
                then(RxCompletion(0, exc.status, message=exc.strerror or ""), None)

    def _flushed(self, fcb: Fcb, offset: int, length: int) -> Then:
        def then(done: RxCompletion, payload: Payload) -> None:
            fcb.flushing -= 1
            fcb.generation += 1
            self.cache.invalidate(fcb.serial, offset, length)
            if done.status != S.STATUS_SUCCESS or done.information != length:
                status = done.status if done.status != S.STATUS_SUCCESS else S.STATUS_DISK_FULL
                message = done.message or f"{done.information} of {length} bytes written"
                log.warning("deferred write of %s failed: %s", fcb.path, message)
                self.counters["write_behind_errors"] += 1
                if fcb.write_error is None:
                    fcb.write_error = (status, message)
            if not fcb.flushing:
                waiters, fcb.flush_waiters = fcb.flush_waiters, []
                for resume in waiters:
                    resume()

        return then

    def lose_deferred(self, fcb: Fcb, reason: str) -> None:
        """Deferred writes that can no longer be sent: dropped, and the loss reported."""
        self.dirty_total -= fcb.dirty_bytes
        self.dirty.pop(fcb.serial, None)
        fcb.dirty, fcb.dirty_bytes, fcb.dirty_fobx = [], 0, None
        self.counters["write_behind_errors"] += 1
        fcb.write_error = (S.STATUS_CONNECTION_DISCONNECTED, f"{reason} before they were sent")
        log.warning("deferred writes of %s lost: %s", fcb.path, reason)

    # ------------------------------------------------------------------ status
    def status(self, now: float, max_files: int = 50) -> dict[str, Any]:
        """Open collapsing, delayed closes and the read cache, for ``rdbss status``."""
        files = []
        for v_net_root in self.state.prefix.v_net_roots():
            for fcb in v_net_root.net_root.fcbs.values():
                delayed = [so for so in fcb.srv_opens if so.close_delayed_at is not None]
                if not fcb.buffering and not delayed:
                    continue
                files.append(
                    {
                        "name": f"{v_net_root.net_root.prefix}\\{fcb.path}",
                        "state": describe(fcb.buffering),
                        "srv_opens": len(fcb.srv_opens),
                        "handles": fcb.handles,
                        "collapsed": sum(so.collapsed for so in fcb.srv_opens),
                        "delayed_close_s": [
                            round(now - (so.close_delayed_at or now), 1) for so in delayed
                        ],
                        "cached_bytes": self.cache.cached(fcb.serial),
                    }
                )
                if len(files) >= max_files:
                    break
        stats = self.cache.stats
        return {
            **self.counters,
            "delayed_now": len(self.delayed),
            "close_delay_s": self.state.settings.close_delay_s,
            "cache_bytes": self.cache.bytes,
            "cache_limit": self.cache.limit,
            "cache_hits": stats.hits,
            "cache_misses": stats.misses,
            "dirty_bytes": self.dirty_total,
            "files": files,
        }

    # ------------------------------------------------------------------ losses
    def peer_down(self, name: str) -> None:
        """The mini-redirector ``name`` went down: its delayed closes end, deferred writes on
        its handles are lost."""
        for srv_open in list(self.delayed.values()):
            if srv_open.minirdr == name:
                self.close_delayed(srv_open, "its mini-redirector went down")
        for fcb in list(self.dirty.values()):
            if fcb.dirty_fobx is not None and fcb.dirty_fobx.srv_open.minirdr == name:
                self.lose_deferred(fcb, f"mini-redirector {name!r} went down")

    def connection_lost(self, srv_call: SrvCall) -> None:
        """The connection to ``srv_call`` is gone: its delayed closes end, its deferred writes
        are lost."""
        for srv_open in list(self.delayed.values()):
            if srv_open.fcb.net_root.srv_call is srv_call:
                self.close_delayed(srv_open, "the connection was lost")
        for fcb in list(self.dirty.values()):
            if fcb.net_root.srv_call is srv_call:
                self.lose_deferred(fcb, f"the connection to \\\\{srv_call.name} was lost")

"""Data caching (see docs/routines.md, Buffering states): the read cache while an Fcb has
READCACHING, and write-behind while it has WRITEBUFFERING; the clients' read leases
(leases.py) break whenever data cached here would go stale. ``Buffering`` decides the states;
``Caching`` keeps the data. Deferred writes are sent just before any other request on the
file: a mini-redirector runs one connection's requests in order, so that request sees them
done."""

from __future__ import annotations

import logging

from rdbss.core.answers import Answers
from rdbss.core.attrcache import Attributes
from rdbss.core.leases import Leases
from rdbss.core.sending import Sending
from rdbss.core.services import CoreState
from rdbss.core.types import Payload, Then, as_bytes
from rdbss.model.buffering import FcbState
from rdbss.model.filecache import ReadCache
from rdbss.model.structs import Fcb, Fobx, SrvCall
from rdbss.wire.constants import Access, IrpMj, LowIoOp, Routine
from rdbss.wire.rxcontext import LowIoParameters, RxCompletion, RxContext
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.core")

S = NtStatus

#: Access that writes data anywhere in a file (FILE_APPEND_DATA alone only appends).
_WRITE_DATA = int(Access.FILE_WRITE_DATA | Access.GENERIC_WRITE | Access.GENERIC_ALL)


class Caching:
    def __init__(self, state: CoreState, answers: Answers, sending: Sending) -> None:
        self.state = state
        self.answers = answers
        self.sending = sending
        self.cache = ReadCache(state.settings.cache_bytes)
        self.leases = Leases(state)
        self.attrs = Attributes(state)  # the attribute cache (core/attrcache.py)
        self.dirty: dict[int, Fcb] = {}  # serial -> Fcb with deferred writes
        self.dirty_total = 0
        self.counters = {"deferred_writes": 0, "write_behind_errors": 0}

    def purge(self, fcb: Fcb, leases: bool = True) -> None:
        """Drop the Fcb's cached data (and break its leases, unless ``leases`` is False); reads
        already on their way fill nothing."""
        fcb.generation += 1
        self.cache.purge(fcb.serial)
        if leases or not fcb.srv_opens:
            self.leases.breaks(fcb)

    def _changed(self, fcb: Fcb, offset: int, length: int) -> None:
        """``length`` bytes at ``offset`` change: their cached blocks go, the Fcb's leases
        break, and reads on their way meanwhile fill nothing."""
        fcb.generation += 1
        self.cache.invalidate(fcb.serial, offset, length)
        self.leases.breaks(fcb)

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
        self._changed(fcb, offset, length)

        def then(done: RxCompletion, payload: Payload) -> None:
            self._changed(fcb, offset, length)
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
        self.attrs.changed(fcb)
        self._changed(fcb, offset, len(data))
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
            self.attrs.changed(fcb)
            self._changed(fcb, offset, length)
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

    # ------------------------------------------------------------------ losses
    def peer_down(self, name: str) -> None:
        """The mini-redirector ``name`` went down: deferred writes on its handles are lost,
        leases on its files break, and the attributes it told are forgotten."""
        self.leases.peer_down(name)
        self.attrs.peer_down(name)
        for fcb in list(self.dirty.values()):
            if fcb.dirty_fobx is not None and fcb.dirty_fobx.srv_open.minirdr == name:
                self.lose_deferred(fcb, f"mini-redirector {name!r} went down")

    def connection_lost(self, srv_call: SrvCall) -> None:
        """The connection to ``srv_call`` is gone: its deferred writes are lost, leases on its
        files break, and the attributes it told are forgotten."""
        self.leases.connection_lost(srv_call)
        self.attrs.connection_lost(srv_call)
        for fcb in list(self.dirty.values()):
            if fcb.net_root.srv_call is srv_call:
                self.lose_deferred(fcb, f"the connection to \\\\{srv_call.name} was lost")

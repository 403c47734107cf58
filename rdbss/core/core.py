"""The RDBSS core: the entry points the I/O side calls (a client's request or cancel, a peer's
message, the clock's tick) and the dispatcher between the parts that do the work:

- answers.py: every client request answered exactly once (bundles, recent errors);
- sending.py: requests to peers with their deadlines and continuations, batches, cancels;
- peers.py: who is registered and who serves a server;
- connections.py: the prefix table, building and losing connections, the idle scavenger;
- create.py, handles.py, files.py: creates, handles and the requests on them;
- buffering.py: collapsing, the Fcb buffering state, delayed close; caching.py: the read
  cache and write-behind;
- compounds.py: a client's compound; device.py: management codes; status.py: the status.

It never blocks and holds no sockets: ``CoreServer`` (rdbss/actors/core_server.py) feeds it
messages and carries out what it sends through the ``Outbox``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

from rdbss.core.answers import Answers
from rdbss.core.buffering import Buffering
from rdbss.core.caching import Caching
from rdbss.core.compounds import Compounds
from rdbss.core.connections import Connections
from rdbss.core.create import Creates
from rdbss.core.device import Device
from rdbss.core.files import Files
from rdbss.core.handles import Handles
from rdbss.core.peers import Peers
from rdbss.core.sending import Sending
from rdbss.core.services import CoreState, Metrics, NoMetrics
from rdbss.core.status import core_status
from rdbss.core.types import (
    BUNDLE_OK,
    CONNMGR,
    CoreSettings,
    LiveRequest,
    Outbox,
    Payload,
    Then,
    event,
    finalize_note,
)
from rdbss.model.names import UncName
from rdbss.model.structs import Fobx, VNetRoot
from rdbss.wire.constants import IrpMj
from rdbss.wire.rxcontext import (
    LEAVING,
    REGISTERED_NEW,
    REGISTERED_STILL,
    UNKNOWN_PEER,
    Compound,
    CompoundCompletion,
    Heartbeat,
    Register,
    RxCancel,
    RxCompletion,
    RxContext,
)
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.core")

S = NtStatus


def _assume_alive(ident: bytes) -> bool:
    return True


@functools.lru_cache(maxsize=1024)
def _tail(ident: bytes) -> str:
    """How a client is named in a request's origin (the end of its identity, in hex)."""
    return ident.hex()[-6:]


class RdbssCore:
    def __init__(
        self,
        outbox: Outbox,
        clock: Callable[[], float],
        settings: CoreSettings,
        metrics: Metrics | None = None,
        is_client_alive: Callable[[bytes], bool] = _assume_alive,
    ) -> None:
        state = self.state = CoreState(
            outbox, clock, settings, metrics or NoMetrics(), timed=metrics is not None
        )
        self.out, self.clock, self.settings, self.metrics = outbox, clock, settings, state.metrics
        self.prefix, self.peers, self.fobxs = state.prefix, state.peers, state.fobxs
        #: whether a client is still there (the I/O side knows: a local process, a remote probe)
        self.is_client_alive = is_client_alive
        self.answers = Answers(state)
        self.sending = Sending(state, self.answers)
        self.pending = self.sending.pending
        self.peer_table = Peers(state)
        self.caching = Caching(state, self.answers, self.sending)
        self.buffering = Buffering(state, self.answers, self.sending, self.caching, self)
        self.connections = Connections(
            state, self.peer_table, self.answers, self.sending, self.buffering
        )
        self.handles = Handles(state, self.answers, self.sending, self.buffering, self.caching)
        parts = (state, self.answers, self.sending, self.connections, self.buffering, self.caching)
        self.files = Files(*parts, self.handles)
        self.creates = Creates(*parts, self.handles)
        self.compounds = Compounds(state, self.answers, self.sending, self.handles)
        self.device = Device(
            state, self.answers, self.sending, self.buffering, self.status, self.peer_down
        )
        # what the lower parts call back up
        self.answers.collect = self.compounds.collect
        self.sending.peer_down = self.peer_down
        self.sending.connection_lost = self.connections.connection_lost
        self.compounds.dispatch = self._dispatch
        self._next_sweep = 0.0
        self._next_scavenge = 0.0

    @property
    def stopping(self) -> bool:
        return self.state.stopping

    @stopping.setter
    def stopping(self, value: bool) -> None:
        self.state.stopping = value

    # ------------------------------------------------------------------ clients
    def on_client(self, ident: bytes, ctx: RxContext | Compound, payload: Payload) -> None:
        ctx.origin = f"{_tail(ident)}:{ctx.request_id}"
        answers = self.answers
        inflight = answers.inflight_of.get(ident, 0)
        answers.inflight_of[ident] = inflight + 1
        if isinstance(ctx, Compound):
            self.compounds.start(ident, ctx, inflight)
            return
        answers.live[(ident, ctx.request_id)] = LiveRequest(
            ident, ctx.request_id, None, None, None, self.clock() + ctx.timeout_ms / 1000.0
        )
        if ctx.flags & BUNDLE_OK:
            answers.bundle_ok.add(ident)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("request major=0x%02x fobx=%s", ctx.major, ctx.fobx, extra=event(ctx))
        try:
            if inflight >= self.settings.max_inflight_per_client:
                raise NtStatusError(
                    S.STATUS_INSUFFICIENT_RESOURCES,
                    f"too many requests in flight from this client "
                    f"(limit {self.settings.max_inflight_per_client})",
                )
            self._dispatch(ident, ctx, payload)
        except NtStatusError as exc:
            answers.answer(ident, ctx, exc.status, message=exc.strerror or "")

    def on_cancel(self, ident: bytes, cancel: RxCancel) -> None:
        """A client cancels one of its own requests (an IRP cancel). Only that client's requests
        are looked up; an unknown, finished or already cancelled one is ignored."""
        live = self.answers.live.get((ident, cancel.request_id))
        if live is None or live.cancelled is not None:
            log.debug("cancel of no pending request req=%s:%d", ident.hex()[-6:], cancel.request_id)
            return
        self.sending.cancel(live, cancel.reason)

    def _dispatch(self, ident: bytes, ctx: RxContext, payload: Payload) -> None:
        """Route one client request (or compound item); raises NtStatusError to refuse it."""
        if self.state.stopping and ctx.major != IrpMj.CLOSE:
            raise NtStatusError(S.STATUS_REDIRECTOR_NOT_STARTED, "the daemon is stopping")
        if ctx.major == IrpMj.CREATE:
            if self.state.handles_of.get(ident, 0) >= self.settings.max_handles_per_client:
                raise NtStatusError(
                    S.STATUS_TOO_MANY_OPENED_FILES,
                    f"too many open handles for this client "
                    f"(limit {self.settings.max_handles_per_client})",
                )
            self.creates.create(ident, ctx)
        elif ctx.fobx is None and ctx.major in (
            IrpMj.FILE_SYSTEM_CONTROL,
            IrpMj.DEVICE_CONTROL,
        ):
            self.device.control(ident, ctx)
        else:
            self.files.request(ident, ctx, payload)

    def sweep_dead_clients(self) -> int:
        """Close the handles of local client processes that are gone (a client that crashed or
        exited without closing). Returns how many handles were closed."""
        closed = 0
        live = self.answers.live
        for owner in list(self.state.handles_of.keys() | {r.ident for r in live.values()}):
            if self.is_client_alive(owner):
                continue
            # its requests first: a queued one must not run, a pending one must let go
            for request in [r for r in live.values() if r.ident == owner]:
                if request.cancelled is None:
                    self.sending.cancel(request, "gone")
            handles = [f for f in self.fobxs.values() if f.owner == owner]
            if handles:
                log.info("client %s is gone; closing its %d handles", owner.hex(), len(handles))
            for fobx in handles:
                self.handles.release(fobx, f"{owner.hex()[-6:]}:sweep", _ignore)
                closed += 1
        return closed

    def holds(self, ident: bytes) -> bool:
        """Whether a client has open handles (a request without a handle ends by its deadline,
        well within the time a quiet remote client is remembered)."""
        return self.handles.holds(ident)

    # ------------------------------------------------------------------ peers
    def on_peer(self, name: str, msg: Any, payload: Payload) -> None:
        now = self.clock()
        if isinstance(msg, Register):
            self._register(name, msg, now)
            return
        peer = self.peers.get(name)
        if peer is None:
            # unknown (e.g. the core restarted): ask it to register again
            self.out.to_peer(name, Heartbeat(name="core", seq=UNKNOWN_PEER))
            return
        peer.last_seen = now
        if isinstance(msg, Heartbeat):
            if msg.seq == LEAVING:
                self.peer_down(name, S.STATUS_CONNECTION_DISCONNECTED, "the process is stopping")
                return
            peer.pending = msg.pending
            self.out.to_peer(name, Heartbeat(name="core", seq=msg.seq))
        elif isinstance(msg, RxCompletion):
            self.sending.complete(msg, payload)
        elif isinstance(msg, CompoundCompletion):
            # a mini-redirector's answer to a batch: each item completes as if alone; what the
            # continuations send meanwhile goes out batched again
            payload_of = dict(zip(msg.payload_items, msg.payloads, strict=True))
            with self.sending.batch():
                for index, item in enumerate(msg.items):
                    self.sending.complete(item, payload_of.get(index))
        elif isinstance(msg, RxContext):
            self.device.peer_request(peer, msg, payload)

    def _register(self, name: str, reg: Register, now: float) -> None:
        if reg.name != name:
            log.error("peer %r registered as %r; ignored", name, reg.name)
            return
        known = self.peer_table.same_process(name, reg)
        if known is not None:
            # the same process again (it missed our answers for a while, e.g. a link that came
            # back): it still holds its connections and handles, so nothing is torn down
            known.last_seen = now
            self.out.to_peer(name, Heartbeat(name="core", seq=REGISTERED_STILL))
            return
        if name in self.peers:
            # a restarted process under the same name: whatever the old one held is gone
            self.peer_down(name, S.STATUS_CONNECTION_DISCONNECTED, "registered again (restarted)")
        peer = self.peer_table.add(name, reg, now)
        self.connections.forget_failures(peer.claims)
        self.peer_table.wake_awaiting()
        log.info(
            "registered peer=%s role=%s kind=%s pid=%d host=%s routines=%d",
            name,
            reg.role,
            reg.kind,
            reg.pid,
            reg.host or "-",
            len(reg.routines),
        )
        self.out.to_peer(name, Heartbeat(name="core", seq=REGISTERED_NEW))

    def peer_down(self, name: str, status: int, reason: str) -> None:
        """A peer died, exited or went silent: complete its in-flight requests at once, drop its
        connections, orphan its handles. Everything else goes on untouched."""
        peer = self.peer_table.remove(name)
        if peer is None:
            return
        self.metrics.peer_down(name, reason)
        log.warning("peer down peer=%s pid=%d reason=%s", name, peer.pid, reason)
        self.sending.fail_peer(name, status, f"{peer.role} {name!r} went down: {reason}")
        self.connections.peer_down(name)
        self.handles.orphan(name)
        self.buffering.peer_down(name)
        if peer.role == "minirdr" and CONNMGR in self.peers:
            self.out.to_peer(CONNMGR, finalize_note(next(self.state.ids), minirdr=name))

    # ------------------------------------------------------------------ time
    def tick(self) -> None:
        """Expire deadlines and silent peers. Call often (every poll wake-up)."""
        now = self.clock()
        if self.peer_table.awaiting and not self.peer_table.expecting():
            self.peer_table.wake_awaiting()  # the grace is over: they fail as usual now
        self.sending.expire(now)
        limit = now - self.settings.peer_timeout_s
        for peer in list(self.peers.values()):
            if peer.last_seen < limit:
                self.peer_down(peer.name, S.STATUS_IO_TIMEOUT, "stopped answering heartbeats")
        if self.caching.dirty:
            self.caching.flush_deferred_writes(now)
        if self.buffering.delayed:
            self.buffering.scavenge_delayed_closes(now)
        if now >= self._next_sweep:
            self._next_sweep = now + self.settings.sweep_interval_s
            self.sweep_dead_clients()
        if now >= self._next_scavenge:
            self._next_scavenge = now + min(1.0, self.settings.idle_timeout_s / 2)
            self.scavenge(now)
            self.metrics.snapshot(self.status)

    def scavenge(self, now: float) -> None:
        """Finalize connections idle for longer than ``idle_timeout_s``."""
        self.connections.scavenge(now)

    def next_deadline(self) -> float | None:
        return self.sending.next_deadline()

    # ------------------------------------------------------------------ batches
    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Hold back what is sent to mini-redirectors, and bundled answers, until the outermost
        batch ends (Sending.batch)."""
        with self.sending.batch():
            yield

    def begin_batch(self) -> None:
        """``batch()`` without a generator, for the server's loop (every wake-up opens one)."""
        self.sending.begin_batch()

    def end_batch(self) -> None:
        self.sending.end_batch()

    # ------------------------------------------------------------------ BufferingHost
    def release(self, fobx: Fobx, origin: str | None, then: Then, delay: bool = True) -> None:
        self.handles.release(fobx, origin, then, delay)

    def create_again(self, ident: bytes, ctx: RxContext, name: UncName, vnr: VNetRoot) -> None:
        self.creates.create_again(ident, ctx, name, vnr)

    def close(self) -> None:
        """The core stops: what it keeps outside its process (the lease table) goes."""
        self.caching.leases.close()

    def status(self) -> dict[str, Any]:
        return core_status(self.state, self.answers, self.sending, self.buffering, self.caching)


def _ignore(done: RxCompletion, payload: Payload) -> None:
    pass

"""Sending to peers and completing: every request the core sends to a peer is tracked with a
deadline until its completion, a timeout, a cancel or the peer's death runs its continuation
(STATUS_PENDING semantics). Requests to a mini-redirector may be held back in a batch and leave
as one Compound per peer (see docs/routines.md, The routines)."""

from __future__ import annotations

import contextlib
import heapq
import logging
from collections.abc import Callable, Iterator

from rdbss.core.answers import Answers
from rdbss.core.services import CoreState
from rdbss.core.types import (
    CORK_ITEMS,
    RELATED,
    LiveRequest,
    Payload,
    Pending,
    Then,
    cancel_status,
)
from rdbss.model.compound import split_batch
from rdbss.model.idempotent import CONNECTION_LOST
from rdbss.model.structs import NetRoot
from rdbss.wire.codec import DEFAULT_LIMITS
from rdbss.wire.constants import IrpMj, LowIoOp, Routine
from rdbss.wire.rxcontext import Compound, RxCancel, RxCompletion, RxContext
from rdbss.wire.status import NtStatus, NtStatusError, status_name

log = logging.getLogger("rdbss.core")

S = NtStatus
_MAX_ABANDONED = 1024  # abandoned creates remembered, to close what they open if they succeed


def _unwired(*args: object) -> None:
    raise AssertionError("Sending used before the core wired it")


class Sending:
    def __init__(self, state: CoreState, answers: Answers) -> None:
        self.state = state
        self.out = state.out
        self.peers = state.peers
        self.answers = answers
        self.pending: dict[int, Pending] = {}
        self.deadlines: list[tuple[float, int]] = []
        # creates answered without their mini-redirector (deadline, cancel): core id -> where
        # they went, so an open that still succeeds later is closed again
        self.abandoned_creates: dict[int, tuple[str, NetRoot]] = {}
        # messages to mini-redirectors held back in a batch (one Compound per peer at its end)
        self.cork: dict[str, list[tuple[RxContext, Payload]]] | None = None
        self.cork_depth = 0
        self.cancels_after: list[tuple[str, RxCancel]] = []  # sent once the cork is flushed
        #: the core's reaction to a peer that cannot be reached, and to a lost connection
        self.peer_down: Callable[[str, int, str], None] = _unwired
        self.connection_lost: Callable[[NetRoot, int, str], None] = _unwired

    def send(
        self,
        peer_name: str,
        ctx: RxContext,
        payload: Payload,
        then: Then,
        timeout_ms: int | None = None,
        net_root: NetRoot | None = None,
        owner: tuple[bytes, int] | None = None,
    ) -> None:
        """Send ``ctx`` (already carrying its routine) to a peer and wait for it without blocking:
        ``then`` runs with the completion, a timeout or the peer's death. ``net_root`` names the
        connection the request uses: a completion saying that connection is lost tears it down
        so the next request builds it again. ``owner`` (client, request id) is the client
        request it serves, so that request's cancel reaches the peer; a request already
        cancelled is not sent (MINIRDR_CALL on a cancelled RX_CONTEXT: STATUS_CANCELLED)."""
        live = self.answers.live.get(owner) if owner is not None else None
        if live is not None and live.cancelled is not None:
            raise NtStatusError(cancel_status(live.cancelled), "the request was cancelled")
        peer = self.peers.get(peer_name)
        routine = ctx.routine or ""
        if peer is None:
            raise NtStatusError(
                S.STATUS_CONNECTION_DISCONNECTED, f"{peer_name!r} is not running (restarting?)"
            )
        if peer.role == "minirdr":
            if routine not in peer.routines:
                raise NtStatusError(
                    S.STATUS_NOT_IMPLEMENTED, f"{peer_name!r} does not implement {routine}"
                )
            if routine == Routine.MRxLowIOSubmit:
                op = ctx.lowio.operation if ctx.lowio else -1
                if op not in peer.lowio_ops:
                    name = LowIoOp(op).name if op in LowIoOp._value2member_map_ else str(op)
                    raise NtStatusError(
                        S.STATUS_NOT_IMPLEMENTED,
                        f"{peer_name!r} does not implement low I/O {name}",
                    )
        state = self.state
        core_id = next(state.ids)
        wanted = timeout_ms if timeout_ms is not None else ctx.timeout_ms
        timeout = min(max(wanted, 1), state.settings.max_timeout_ms)
        # forwarded in place (no copy); the caller's id comes back if the send fails, because
        # the error answer to the client is built from this same context
        origin_id, origin_timeout = ctx.request_id, ctx.timeout_ms
        ctx.request_id = core_id
        ctx.timeout_ms = timeout
        if self.cork is not None and peer.role == "minirdr":
            batch = self.cork.get(peer_name)
            if batch is None:
                batch = self.cork[peer_name] = []
            elif len(batch) >= CORK_ITEMS and not ctx.flags & RELATED:
                # a long batch leaves now, so the mini-redirector works on it while the rest
                # is read (never between a create and its related items)
                self.cork[peer_name] = []
                self.send_batch(peer_name, batch)
                batch = self.cork.setdefault(peer_name, [])
            batch.append((ctx, payload))
        elif not self.out.to_peer(peer_name, ctx, payload):
            ctx.request_id, ctx.timeout_ms = origin_id, origin_timeout
            self.peer_down(peer_name, S.STATUS_CONNECTION_DISCONNECTED, "unreachable")
            raise NtStatusError(S.STATUS_CONNECTION_DISCONNECTED, f"{peer_name!r} is unreachable")
        now = state.clock()
        deadline = now + timeout / 1000.0
        self.pending[core_id] = Pending(
            peer_name, deadline, then, ctx.origin, routine, net_root, now, owner
        )
        if live is not None:
            live.core_id = core_id
        heapq.heappush(self.deadlines, (deadline, core_id))
        if len(self.deadlines) > 2 * len(self.pending) + 1024:
            # answered requests leave their entry until it expires: under load that is
            # rate x timeout entries, so drop them once they outnumber the pending ones
            self.deadlines = [(p.deadline, i) for i, p in self.pending.items()]
            heapq.heapify(self.deadlines)
        peer.requests += 1

    def send_quietly(self, peer_name: str, ctx: RxContext, net_root: NetRoot | None = None) -> None:
        """Send a request of the core's own whose answer nobody waits for; a refusal is fine."""
        with contextlib.suppress(NtStatusError):
            self.send(peer_name, ctx, None, _ignore, net_root=net_root)

    def complete(self, done: RxCompletion, payload: Payload) -> None:
        pending = self.pending.pop(done.request_id, None)
        if pending is None:
            log.debug("late or unknown completion id=%d dropped", done.request_id)
            abandoned = self.abandoned_creates.pop(done.request_id, None)
            if abandoned is not None and done.status == S.STATUS_SUCCESS:
                self._close_abandoned(done, *abandoned)
            return
        if done.status in CONNECTION_LOST and pending.net_root is not None:
            self.connection_lost(pending.net_root, done.status, done.message)
        self.run_then(pending, done, payload)

    def _close_abandoned(self, done: RxCompletion, peer: str, net_root: NetRoot) -> None:
        """A create answered after the core gave up on it opened a SrvOpen no handle refers to:
        close it again (MRxCloseSrvOpen) so the mini-redirector does not hold it forever."""
        result = done.result if isinstance(done.result, dict) else {}
        mrx_id = result.get("srv_open")
        if not isinstance(mrx_id, int) or peer not in self.peers:
            return
        log.info(
            "closing the open of an abandoned create id=%d srv_open=%d", done.request_id, mrx_id
        )
        close = RxContext(
            request_id=0,
            major=IrpMj.CLOSE,
            routine=Routine.MRxCloseSrvOpen,
            srv_open=mrx_id,
            srv_call=net_root.srv_call.name,
            net_root=net_root.name,
        )
        self.send_quietly(peer, close)

    def run_then(self, pending: Pending, done: RxCompletion, payload: Payload) -> None:
        state = self.state
        if state.timed:  # the status name costs a lookup per answer
            state.metrics.request_done(
                pending.routine,
                pending.peer,
                status_name(done.status),
                state.clock() - pending.started,
            )
        try:
            pending.then(done, payload)
        except Exception:  # a bug in a continuation must not take the core down
            log.exception("continuation failed req=%s routine=%s", pending.origin, pending.routine)

    def fail_peer(self, name: str, status: int, message: str) -> None:
        """A peer went down: every request it holds completes with ``status`` now."""
        for core_id, pending in list(self.pending.items()):
            if pending.peer == name:
                del self.pending[core_id]
                self.run_then(pending, RxCompletion(core_id, status, message=message), None)

    # ------------------------------------------------------------------ cancel and deadlines
    def cancel(self, live: LiveRequest, reason: str) -> None:
        """RX_CONTEXT_FLAG_CANCELLED: a request parked on a connection is answered at once; one
        held by a mini-redirector is cancelled there (its cancel routine, or it is never run)
        and answered by the mini-redirector, or after ``cancel_grace_s``."""
        live.cancelled = reason
        origin = f"{live.ident.hex()[-6:]}:{live.request_id}"
        log.info("cancel req=%s reason=%s", origin, reason)
        status = cancel_status(reason)
        if live.parked is not None:
            v_net_root, resume = live.parked
            live.parked = None
            if resume in v_net_root.waiters:
                v_net_root.waiters.remove(resume)
                self.answers.to_client(
                    live.ident,
                    RxCompletion(
                        live.request_id, status, message="cancelled while waiting to connect"
                    ),
                )
                return
        pending = self.pending.get(live.core_id) if live.core_id is not None else None
        if pending is not None and pending.cancel_reason is None:
            assert live.core_id is not None
            self.cancel_pending(live.core_id, pending, reason)
        # else: nothing the core can stop (a close under way): it completes as usual

    def cancel_pending(self, core_id: int, pending: Pending, reason: str) -> None:
        """Tell the peer holding a request to drop it, and bound how long the core waits for it."""
        pending.cancel_reason = reason
        peer = self.peers.get(pending.peer)
        if peer is not None and peer.role == "minirdr":
            cancel = RxCancel(core_id, reason)
            if self.cork is not None:  # after the request it names, which may be corked
                self.cancels_after.append((pending.peer, cancel))
            else:
                self.out.to_peer(pending.peer, cancel)
        if core_id not in self.pending:
            return  # already answered (its deadline passed): only the peer had to hear it
        grace = self.state.clock() + self.state.settings.cancel_grace_s
        if grace < pending.deadline:
            pending.deadline = grace
            heapq.heappush(self.deadlines, (grace, core_id))

    def expire(self, now: float) -> None:
        """Complete the requests whose deadline passed: a timeout, or a cancel its peer did not
        confirm in time."""
        while self.deadlines and self.deadlines[0][0] <= now:
            _, core_id = heapq.heappop(self.deadlines)
            pending = self.pending.get(core_id)
            if pending is None or pending.deadline > now:
                continue  # answered, or an entry its cancel's grace replaced
            del self.pending[core_id]
            if pending.cancel_reason in (None, "deadline"):
                log.warning(
                    "request timed out req=%s routine=%s peer=%s",
                    pending.origin,
                    pending.routine,
                    pending.peer,
                )
                if pending.cancel_reason is None:
                    self.cancel_pending(core_id, pending, "deadline")  # drop the work
                done = RxCompletion(
                    core_id,
                    S.STATUS_IO_TIMEOUT,
                    message=f"{pending.routine} on {pending.peer!r} did not answer in time",
                )
            else:
                done = RxCompletion(
                    core_id,
                    cancel_status(pending.cancel_reason),
                    message=f"{pending.routine} cancelled ({pending.cancel_reason}); "
                    f"{pending.peer!r} did not confirm in time, its answer will be discarded",
                )
            if pending.routine == Routine.MRxCreate and pending.net_root is not None:
                self.abandoned_creates[core_id] = (pending.peer, pending.net_root)
                if len(self.abandoned_creates) > _MAX_ABANDONED:
                    del self.abandoned_creates[next(iter(self.abandoned_creates))]
            self.run_then(pending, done, None)

    def next_deadline(self) -> float | None:
        return self.deadlines[0][0] if self.deadlines else None

    # ------------------------------------------------------------------ batches
    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Hold back what is sent to mini-redirectors until the outermost block ends, then
        send one message per peer (a Compound when it carries several requests). The server
        wraps each drain of a socket in one: requests that arrived together travel together,
        and nothing waits for more to arrive. Answers for a client that takes bundles leave
        as one CompletionBundle at the end, likewise."""
        self.begin_batch()
        try:
            yield
        finally:
            self.end_batch()

    def begin_batch(self) -> None:
        """``batch()`` without a generator, for the server's loop (every wake-up opens one)."""
        if self.cork is None:
            self.cork = {}
        self.answers.hold()
        self.cork_depth += 1

    def end_batch(self) -> None:
        self.cork_depth -= 1
        if self.cork_depth == 0:
            if self.cork or self.cancels_after:
                self._flush_cork()
            else:
                self.cork = None
            self.answers.release()

    def _flush_cork(self) -> None:
        cork, self.cork = self.cork, None
        for peer_name, batch in (cork or {}).items():
            self.send_batch(peer_name, batch)
        cancels, self.cancels_after = self.cancels_after, []
        for peer_name, cancel in cancels:
            self.out.to_peer(peer_name, cancel)

    def send_batch(self, peer_name: str, batch: list[tuple[RxContext, Payload]]) -> None:
        """Held-back requests to one mini-redirector: one message, a Compound when several."""
        parts = (
            (batch,)  # one request (the usual case one at a time): nothing to cut
            if len(batch) == 1
            else split_batch(
                batch,
                DEFAULT_LIMITS.max_compound_items,
                _related,
                _payload_bytes,
                DEFAULT_LIMITS.max_compound_payload_bytes,
            )
        )
        for part in parts:
            if not part:
                continue
            if len(part) == 1:
                sent = self.out.to_peer(peer_name, part[0][0], part[0][1])
            else:
                cx = Compound(0, [ctx for ctx, _ in part])
                for index, (_, payload) in enumerate(part):
                    if payload is not None:
                        cx.payload_items.append(index)
                        cx.payloads.append(payload)
                sent = self.out.to_peer(peer_name, cx)
            if sent:
                continue
            message = f"{peer_name!r} is unreachable"
            for ctx, _ in part:
                pending = self.pending.pop(ctx.request_id, None)
                if pending is not None:
                    self.run_then(
                        pending,
                        RxCompletion(
                            ctx.request_id, S.STATUS_CONNECTION_DISCONNECTED, message=message
                        ),
                        None,
                    )
            self.peer_down(peer_name, S.STATUS_CONNECTION_DISCONNECTED, "unreachable")

    def batched_to(self, ctx: RxContext) -> str | None:
        """The peer whose held-back batch ``ctx`` just joined, if it did."""
        pending = self.pending.get(ctx.request_id)
        if pending is None or self.cork is None:
            return None
        batch = self.cork.get(pending.peer)
        return pending.peer if batch and batch[-1][0] is ctx else None


def _ignore(done: RxCompletion, payload: Payload) -> None:
    pass


def _related(item: tuple[RxContext, Payload]) -> bool:
    return bool(item[0].flags & RELATED)


def _payload_bytes(item: tuple[RxContext, Payload]) -> int:
    payload = item[1]
    return 0 if payload is None else memoryview(payload).nbytes

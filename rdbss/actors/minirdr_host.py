"""Runs one mini-redirector behind the bus.

Registration sends exactly the routines the mini-redirector implements. Requests run:
- on the socket thread, for a non-blocking mini-redirector (local disk): the hot path;
- on the connection's own ``ConnectionWorker`` actor, for connection routines and for every
  routine of a blocking (network) mini-redirector, so a slow connect or a slow server blocks only
  the requests of that connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pykka

from rdbss.actors.peer import PeerBridge
from rdbss.minirdrs.base import CONNECTION_ROUTINES, ROUTINE_METHODS, MiniRdr, Result
from rdbss.wire.constants import Routine, RxFlags
from rdbss.wire.rxcontext import Compound, CompoundCompletion, Register, RxCompletion, RxContext
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.minirdr")

#: RxFlags as plain ints: IntFlag arithmetic costs a microsecond on every request
_RELATED = int(RxFlags.RELATED)


#: routine name (as on the wire) -> the MiniRdr method, without building an enum per request
_METHOD_OF: dict[str, str] = {str(routine): method for routine, method in ROUTINE_METHODS.items()}


def completion(ctx: RxContext, result: Result) -> RxCompletion:
    return RxCompletion(
        ctx.request_id, result.status, result.information, result.result, result.message
    )


def execute(
    minirdr: MiniRdr, ctx: RxContext, payload: memoryview | None
) -> tuple[RxCompletion, Any] | None:
    """Call one routine; every outcome becomes a completion (never an exception). None when the
    routine answered STATUS_PENDING: it completes later through ``complete_later``."""
    name = _METHOD_OF.get(ctx.routine) if isinstance(ctx.routine, str) else None
    if name is None:
        status = NtStatus.STATUS_NOT_IMPLEMENTED
        return RxCompletion(
            ctx.request_id, status, message=f"unknown routine {ctx.routine!r}"
        ), None
    routine = ctx.routine
    method = getattr(minirdr, name)
    try:
        result = method(ctx, payload) if routine == Routine.MRxLowIOSubmit else method(ctx)
        if not isinstance(result, Result):
            raise TypeError(f"{routine} returned {type(result).__name__}, not Result")
    except NtStatusError as exc:
        return RxCompletion(ctx.request_id, exc.status, message=exc.strerror or ""), None
    except Exception as exc:
        log.exception("routine %s failed req=%s", ctx.routine, ctx.origin)
        message = f"{type(exc).__name__}: {exc}"
        return RxCompletion(ctx.request_id, NtStatus.STATUS_INTERNAL_ERROR, message=message), None
    if result.status == NtStatus.STATUS_PENDING:
        return None
    return completion(ctx, result), result.payload


Emit = Callable[[RxCompletion, Any], None]


def execute_compound(
    minirdr: MiniRdr, cx: Compound, emit: Emit | None = None
) -> CompoundCompletion:
    """Run a compound's items in order and answer them in one message. A RELATED item gets the
    SrvOpen of the compound's previous create, or that create's status when it failed
    (STATUS_INVALID_HANDLE when no create came before it), as SMB2 does. Items that answer
    STATUS_PENDING are left out: they complete later on their own. With ``emit``, each answer
    goes out as soon as its item is done instead (the returned compound is then empty)."""
    payload_of = dict(zip(cx.payload_items, cx.payloads, strict=True))
    items: list[RxCompletion] = []
    payload_items: list[int] = []
    payloads: list[Any] = []
    created: RxCompletion | None = None  # the previous create's completion
    for index, ctx in enumerate(cx.items):
        answer: tuple[RxCompletion, Any] | None
        if ctx.flags & _RELATED and ctx.routine != Routine.MRxCreate:
            if created is None:
                answer = (
                    RxCompletion(
                        ctx.request_id,
                        NtStatus.STATUS_INVALID_HANDLE,
                        message="a related item with no create before it in the compound",
                    ),
                    None,
                )
            elif created.status != NtStatus.STATUS_SUCCESS:
                answer = (
                    RxCompletion(
                        ctx.request_id,
                        created.status,
                        message=f"the create failed: {created.message}",
                    ),
                    None,
                )
            else:
                result = created.result if isinstance(created.result, dict) else {}
                ctx.srv_open = result.get("srv_open")
                answer = execute(minirdr, ctx, payload_of.get(index))
        else:
            answer = execute(minirdr, ctx, payload_of.get(index))
        if ctx.routine == Routine.MRxCreate:
            created = (
                answer[0]
                if answer is not None
                else RxCompletion(0, NtStatus.STATUS_INVALID_HANDLE, message="create pending")
            )
        if answer is None:
            continue
        done, payload = answer
        if emit is not None:
            emit(done, payload)
            continue
        if payload is not None:
            payload_items.append(len(items))
            payloads.append(payload)
        items.append(done)
    return CompoundCompletion(
        cx.request_id, NtStatus.STATUS_SUCCESS, items, payload_items, payloads=payloads
    )


class ConnectionWorker(pykka.ThreadingActor):
    """Runs the routines of one SrvCall (connection) in order, off the socket thread."""

    use_daemon_thread = True

    def __init__(self, minirdr: MiniRdr, bridge: PeerBridge, srv_call: str) -> None:
        super().__init__()
        self.minirdr = minirdr
        self.bridge = bridge
        self.srv_call = srv_call

    def on_receive(self, message: Any) -> None:
        ctx, payload = message
        if isinstance(ctx, Compound):
            # a network call may be slow: answer each item when it is done, so a quick one
            # never waits for a slow one after it
            execute_compound(self.minirdr, ctx, self.bridge.post)
            return
        answer = execute(self.minirdr, ctx, payload)
        if answer is not None:
            self.bridge.post(*answer)

    def on_stop(self) -> None:
        self.bridge.close_thread_socket()


class MiniRdrHost:
    def __init__(self, bridge: PeerBridge, minirdr: MiniRdr) -> None:
        self.bridge = bridge
        self.minirdr = minirdr
        self.workers: dict[str, pykka.ActorRef[Any]] = {}
        bridge.handler = self.on_message
        minirdr.attach_completion(self._complete_later)

    def _complete_later(self, ctx: RxContext, result: Result) -> None:
        """RxLowIoCompletion: a routine that answered STATUS_PENDING finishes (any thread)."""
        self.bridge.post(completion(ctx, result), result.payload)

    @staticmethod
    def registration(name: str, minirdr: MiniRdr) -> Register:
        return Register(
            name=name,
            kind=minirdr.kind,
            routines=[str(r) for r in minirdr.registration_routines()],
            lowio_ops=sorted(int(op) for op in minirdr.registration_lowio_ops()),
            servers=minirdr.servers(),
            mrx_flags=minirdr.mrx_flags,
            role="minirdr",
        )

    def on_message(
        self, msg: RxContext | RxCompletion | Compound, payload: memoryview | None
    ) -> None:
        if isinstance(msg, Compound):
            self._on_compound(msg)
            return
        if not isinstance(msg, RxContext):
            return
        routine = msg.routine
        if self.minirdr.blocking or routine in CONNECTION_ROUTINES:
            self._worker(msg.srv_call or "").tell((msg, payload))
            return
        answer = execute(self.minirdr, msg, payload)
        if answer is not None:
            self.bridge.send(*answer)

    def _on_compound(self, cx: Compound) -> None:
        if not self.minirdr.blocking:
            if any(ctx.routine in CONNECTION_ROUTINES for ctx in cx.items):
                # connection routines keep running on their connection's worker, as alone
                # (they never are related items: what is left keeps its order)
                cx = self._hand_off_connection_routines(cx)
                if not cx.items:
                    return
            self.bridge.send(execute_compound(self.minirdr, cx))
            return
        # one sub-compound per connection, in order, on that connection's worker
        by_conn: dict[str, Compound] = {}
        payload_of = dict(zip(cx.payload_items, cx.payloads, strict=True))
        for index, ctx in enumerate(cx.items):
            key = (ctx.srv_call or "").lower()
            part = by_conn.setdefault(key, Compound(cx.request_id, [], timeout_ms=cx.timeout_ms))
            if index in payload_of:
                part.payload_items.append(len(part.items))
                part.payloads.append(payload_of[index])
            part.items.append(ctx)
        for part in by_conn.values():
            self._worker(part.items[0].srv_call or "").tell((part, None))

    def _hand_off_connection_routines(self, cx: Compound) -> Compound:
        rest = Compound(cx.request_id, [], timeout_ms=cx.timeout_ms)
        payload_of = dict(zip(cx.payload_items, cx.payloads, strict=True))
        for index, ctx in enumerate(cx.items):
            if ctx.routine in CONNECTION_ROUTINES:
                self._worker(ctx.srv_call or "").tell((ctx, payload_of.get(index)))
                continue
            if index in payload_of:
                rest.payload_items.append(len(rest.items))
                rest.payloads.append(payload_of[index])
            rest.items.append(ctx)
        return rest

    def _worker(self, srv_call: str) -> pykka.ActorRef[Any]:
        key = srv_call.lower()
        ref = self.workers.get(key)
        if ref is None or not ref.is_alive():
            ref = ConnectionWorker.start(self.minirdr, self.bridge, srv_call)
            self.workers[key] = ref
        return ref

    def stop(self) -> None:
        for ref in self.workers.values():
            try:
                ref.stop(block=True, timeout=2.0)
            except Exception:  # a worker stuck in a network call: it is a daemon thread
                log.warning("worker did not stop in time")
        try:
            self.minirdr.close()
        except Exception:
            log.exception("mini-redirector close failed")

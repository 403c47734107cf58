"""Runs one mini-redirector behind the bus.

Registration sends exactly the routines the mini-redirector implements. Requests run:
- on the socket thread, for a non-blocking mini-redirector (local disk): the hot path; a large
  shared-memory READ is checked there and copied on a small pool (``_pooled_read``);
- on the connection's own ``ConnectionWorker`` actor, for connection routines and for every
  routine of a blocking (network) mini-redirector, so a slow connect or a slow server blocks only
  the requests of that connection. A worker answers a compound item by item as each is done,
  except the items ``MiniRdr.create_with_related`` answered at once (a small file read or
  written whole): those go to the core as one CompoundCompletion;
- on the mini-redirector's own event loop (``MiniRdr.start_direct``: SFTP stats and small
  reads; ``MiniRdr.start_direct_compound``: an SFTP small file read whole), for a blocking
  mini-redirector whose routines wait on such a loop: handed there from the socket thread and
  answered from there, two thread hops fewer. Offered only while the connection's worker
  holds no request, so it never overtakes one that came before it; the mini-redirector keeps
  its own ordering barrier and the request's deadline there. A request that comes after it
  may run beside it on the worker.

Cancellation (RxCancel from the core: the client cancelled, the deadline passed or the client is
gone): a request still queued for a worker is never run (answered STATUS_CANCELLED, or
STATUS_IO_TIMEOUT for a deadline, which the core has answered already); so is one whose own
deadline passed while it was queued. A request the mini-redirector answered STATUS_PENDING goes
to its cancel routine (``MiniRdr.cancel``), which completes it and frees what it held; a cancel
that arrives while a worker runs the request is applied as soon as it goes pending. A routine
running synchronously is not interrupted: it finishes and the core discards its answer; so is
one on the direct path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pykka

from rdbss.actors.peer import PeerBridge
from rdbss.minirdrs.base import CONNECTION_ROUTINES, ROUTINE_METHODS, MiniRdr, Result
from rdbss.model.buffering import grant_for
from rdbss.model.idempotent import UNSENT
from rdbss.model.idempotent import unsent as is_unsent
from rdbss.shm import Maps
from rdbss.wire.codec import printable
from rdbss.wire.constants import LowIoOp, Routine, RxFlags
from rdbss.wire.rxcontext import (
    MAX_TEXT_LEN,
    Compound,
    CompoundCompletion,
    Register,
    RxCancel,
    RxCompletion,
    RxContext,
)
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.minirdr")

#: RxFlags as plain ints: IntFlag arithmetic costs a microsecond on every request
_RELATED = int(RxFlags.RELATED)


#: routine name (as on the wire) -> the MiniRdr method, without building an enum per request
_METHOD_OF: dict[str, str] = {str(routine): method for routine, method in ROUTINE_METHODS.items()}
#: Routines run even on a connection known lost (``MiniRdr.connection_lost``): they build or
#: drop connections, or answer without the server (a cleanup; a close says what the loss took).
_RUN_WHEN_LOST = frozenset(
    {str(r) for r in CONNECTION_ROUTINES} | {Routine.MRxCleanupFobx, Routine.MRxCloseSrvOpen}
)


def completion(ctx: RxContext, result: Result) -> RxCompletion:
    message = printable(result.message, MAX_TEXT_LEN) if result.message else ""
    return RxCompletion(ctx.request_id, result.status, result.information, result.result, message)


def unsent(ctx: RxContext) -> RxCompletion:
    """The answer to a request that found its connection known lost and was not run: nothing of
    it reached the server, which the core may send again (rdbss/model/idempotent.py)."""
    return RxCompletion(
        ctx.request_id,
        NtStatus.STATUS_CONNECTION_DISCONNECTED,
        result={UNSENT: True},
        message=f"the connection to server {ctx.srv_call!r} was lost; not sent",
    )


def cancel_status(reason: str) -> int:
    return NtStatus.STATUS_IO_TIMEOUT if reason == "deadline" else NtStatus.STATUS_CANCELLED


# arenas of local clients (rdbss.shm), mapped on first use; one table per process
SHARED = Maps()

#: Shared-memory READs at least this large are copied on a pool thread (``POOL_THREADS`` of
#: them), so that several large reads copy at once instead of one after the other on the I/O
#: thread; smaller ones cost less than the hand-off.
POOLED_READ_BYTES = 1 << 20
POOL_THREADS = 2
_LOWIO = str(Routine.MRxLowIOSubmit)
_READ = int(LowIoOp.READ)


def _into_shared(result: Result, target: memoryview) -> None:
    """A READ that asked for shared memory: its bytes go there, the answer says how many."""
    if result.payload is not None:
        data = memoryview(result.payload)
        if len(data) > len(target):
            raise NtStatusError(NtStatus.STATUS_INTERNAL_ERROR, "read more than was asked")
        target[: len(data)] = data
        result.information = len(data)
        result.payload = None
    if result.status in (NtStatus.STATUS_SUCCESS, NtStatus.STATUS_END_OF_FILE):
        result.result = {"shm": result.information}


def _shared_source(ctx: RxContext, length: int, payload: memoryview | None) -> memoryview | None:
    """The slot a WRITE with the shared-memory hint takes its bytes from (rdbss.shm), read
    only; None for a WRITE without it."""
    view = SHARED.target(ctx.args, length)
    if view is None:
        return None
    if payload is not None:
        view.release()
        raise NtStatusError(
            NtStatus.STATUS_INVALID_PARAMETER, "a write with both a payload and shared memory"
        )
    source = view.toreadonly()
    view.release()
    return source


def failure(ctx: RxContext, exc: Exception) -> RxCompletion:
    """The completion of a routine that raised: its NTSTATUS, or INTERNAL_ERROR for a bug."""
    # error texts may quote a server's reply: made printable, or the core could not decode them
    if isinstance(exc, NtStatusError):
        message = printable(exc.strerror or "", MAX_TEXT_LEN)
        return RxCompletion(ctx.request_id, exc.status, message=message)
    log.error("routine %s failed req=%s", ctx.routine, ctx.origin, exc_info=exc)
    message = printable(f"{type(exc).__name__}: {exc}", MAX_TEXT_LEN)
    return RxCompletion(ctx.request_id, NtStatus.STATUS_INTERNAL_ERROR, message=message)


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
    if routine not in _RUN_WHEN_LOST and minirdr.connection_lost(ctx):
        return unsent(ctx), None
    method = getattr(minirdr, name)
    target: memoryview | None = None
    source: memoryview | None = None
    try:
        lowio = ctx.lowio if routine == Routine.MRxLowIOSubmit else None
        if ctx.args and lowio is not None:
            if lowio.operation == LowIoOp.READ:
                target = SHARED.target(ctx.args, lowio.length)
            elif lowio.operation == LowIoOp.WRITE:
                source = _shared_source(ctx, lowio.length, payload)
                if source is not None:
                    payload = source
        result = None if target is None else minirdr.read_into(ctx, target)
        if result is None:
            result = method(ctx, payload) if routine == Routine.MRxLowIOSubmit else method(ctx)
        if not isinstance(result, Result):
            raise TypeError(f"{routine} returned {type(result).__name__}, not Result")
        if target is not None:
            _into_shared(result, target)
    except Exception as exc:
        return failure(ctx, exc), None
    finally:
        if target is not None:
            target.release()
        if source is not None:
            source.release()
    if result.status == NtStatus.STATUS_PENDING:
        return None
    return completion(ctx, result), result.payload


Emit = Callable[[RxCompletion, Any], None]


def _take_related(
    minirdr: MiniRdr, cx: Compound, index: int, payload_of: dict[int, Any]
) -> dict[int, tuple[RxCompletion, Any] | None]:
    """Offer the create at ``index`` and the RELATED items right after it to
    ``MiniRdr.create_with_related``: their answers by index, or none when it does not take
    them (they then run one by one)."""
    end = index + 1
    while (
        end < len(cx.items)
        and cx.items[end].flags & _RELATED
        and cx.items[end].routine != Routine.MRxCreate
    ):
        end += 1
    if end == index + 1:
        return {}
    create, related = cx.items[index], cx.items[index + 1 : end]
    if minirdr.connection_lost(create):
        return {}  # one by one: the create is answered unsent, its related items with it
    payloads = [payload_of.get(i) for i in range(index + 1, end)]
    try:
        outcomes = minirdr.create_with_related(create, related, payloads)
    except Exception as exc:
        outcomes = [exc]  # the create failed: its related items are answered as such
    if outcomes is None:
        return {}
    answers: dict[int, tuple[RxCompletion, Any] | None] = {}
    for offset, (ctx, outcome) in enumerate(zip([create, *related], outcomes, strict=False)):
        if isinstance(outcome, Exception):
            answers[index + offset] = failure(ctx, outcome), None
        else:
            answers[index + offset] = completion(ctx, outcome), outcome.payload
    return answers


def _is_read(ctx: RxContext) -> bool:
    return ctx.routine == _LOWIO and ctx.lowio is not None and ctx.lowio.operation == _READ


#: an answer carrying at least this much (or filling a shared-memory slot) is large
LARGE_ANSWER_BYTES = 64 << 10


def execute_compound(
    minirdr: MiniRdr,
    cx: Compound,
    emit: Emit | None = None,
    large: Emit | None = None,
    together: Callable[[CompoundCompletion], None] | None = None,
) -> CompoundCompletion:
    """Run a compound's items in order and answer them in one message (a create and the
    RELATED items after it go to ``MiniRdr.create_with_related`` first). A RELATED item gets the
    SrvOpen of the compound's previous create, or that create's status when it failed
    (STATUS_INVALID_HANDLE when no create came before it), as SMB2 does. Items that answer
    STATUS_PENDING are left out: they complete later on their own. With ``emit``, each answer
    goes out as soon as its item is done instead (the returned compound is then empty), and
    with ``together`` as well, the answers ``create_with_related`` gave at once go out as one
    CompoundCompletion (one message to the core, not one per item); with ``large``, only the
    answers of LARGE_ANSWER_BYTES or more do."""
    payload_of = dict(zip(cx.payload_items, cx.payloads, strict=True))
    chained: list[tuple[RxCompletion, Any]] = []  # taken answers not emitted yet

    def emit_chained() -> None:
        if emit is None or not chained:
            return
        if together is None or len(chained) == 1:
            for done, payload in chained:
                emit(done, payload)
        else:
            out = CompoundCompletion(cx.request_id, NtStatus.STATUS_SUCCESS, [])
            for done, payload in chained:
                if payload is not None:
                    out.payload_items.append(len(out.items))
                    out.payloads.append(payload)
                out.items.append(done)
            together(out)
        chained.clear()

    items: list[RxCompletion] = []
    payload_items: list[int] = []
    payloads: list[Any] = []
    created: RxCompletion | None = None  # the previous create's completion
    taken: dict[int, tuple[RxCompletion, Any] | None] = {}  # by create_with_related
    for index, ctx in enumerate(cx.items):
        answer: tuple[RxCompletion, Any] | None
        if ctx.routine == Routine.MRxCreate and index + 1 < len(cx.items):
            taken.update(_take_related(minirdr, cx, index, payload_of))
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
                        result={UNSENT: True} if is_unsent(created) else None,
                        message=f"the create failed: {created.message}",
                    ),
                    None,
                )
            else:
                result = created.result if isinstance(created.result, dict) else {}
                ctx.srv_open = result.get("srv_open")
                answer = (
                    taken[index] if index in taken else execute(minirdr, ctx, payload_of.get(index))
                )
        elif index in taken:
            answer = taken[index]
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
            if index in taken:
                chained.append(answer)
                continue
            emit_chained()
            emit(done, payload)
            continue
        if large is not None and (
            (payload is not None and memoryview(payload).nbytes >= LARGE_ANSWER_BYTES)
            or (isinstance(done.result, dict) and done.result.get("shm", 0) >= LARGE_ANSWER_BYTES)
        ):
            large(done, payload)
            continue
        if payload is not None:
            payload_items.append(len(items))
            payloads.append(payload)
        items.append(done)
    emit_chained()
    return CompoundCompletion(
        cx.request_id, NtStatus.STATUS_SUCCESS, items, payload_items, payloads=payloads
    )


class ConnectionWorker(pykka.ThreadingActor):
    """Runs the routines of one SrvCall (connection) in order, off the socket thread."""

    use_daemon_thread = True

    def __init__(
        self,
        minirdr: MiniRdr,
        bridge: PeerBridge,
        srv_call: str,
        host: MiniRdrHost | None = None,
    ) -> None:
        super().__init__()
        self.minirdr = minirdr
        self.bridge = bridge
        self.srv_call = srv_call
        self.host = host

    def on_receive(self, message: Any) -> None:
        try:
            self._run(*message)
        finally:
            if self.host is not None:
                self.host.finished(self.srv_call)

    def _run(self, ctx: RxContext | Compound, payload: memoryview | None) -> None:
        if isinstance(ctx, Compound):
            # a network call may be slow: answer each item when it is done, so a quick one
            # never waits for a slow one after it; a chain's answers, done at once, together
            execute_compound(self.minirdr, ctx, self.bridge.post, together=self.bridge.post)
            return
        if self.host is not None:
            verdict = self.host.begin(ctx)
            if verdict is not True:
                if verdict is not False:
                    self.bridge.post(verdict)
                return
        answer = execute(self.minirdr, ctx, payload)
        if self.host is not None:
            self.host.ran(ctx, pending=answer is None)
        if answer is not None:
            self.bridge.post(*answer)

    def on_stop(self) -> None:
        self.bridge.close_thread_socket()


class MiniRdrHost:
    def __init__(self, bridge: PeerBridge, minirdr: MiniRdr) -> None:
        self.bridge = bridge
        self.minirdr = minirdr
        self.workers: dict[str, pykka.ActorRef[Any]] = {}
        # requests handed to a worker: core id -> own deadline (monotonic) while queued; the ones
        # a worker is running; cancel reasons that arrived for either
        self._cancel_lock = threading.Lock()
        self._queued: dict[int, float] = {}
        self._running: set[int] = set()
        self._cancelled: dict[int, str] = {}
        self._dropped: set[int] = set()  # queued, cancelled and answered: skip without a word
        # per connection (lower-case SrvCall): messages handed to its worker and not finished;
        # requests on the direct path (MiniRdr.start_direct) not answered yet
        self._held: dict[str, int] = {}
        self._direct = 0
        self._pool: ThreadPoolExecutor | None = None  # large shared-memory reads (_pooled_read)
        self._copying = 0
        bridge.handler = self.on_message
        bridge.pending_count = self.pending_count
        minirdr.attach_completion(self._complete_later)

    def _complete_later(self, ctx: RxContext, result: Result) -> None:
        """RxLowIoCompletion: a routine that answered STATUS_PENDING finishes (any thread)."""
        self.bridge.post(completion(ctx, result), result.payload)

    @staticmethod
    def registration(name: str, minirdr: MiniRdr, caching: str = "off") -> Register:
        return Register(
            name=name,
            kind=minirdr.kind,
            routines=[str(r) for r in minirdr.registration_routines()],
            lowio_ops=sorted(int(op) for op in minirdr.registration_lowio_ops()),
            servers=minirdr.servers(),
            mrx_flags=minirdr.mrx_flags,
            role="minirdr",
            buffering=grant_for(caching, minirdr.registration_buffering_mask()),
        )

    def on_message(
        self, msg: RxContext | RxCompletion | RxCancel | Compound, payload: memoryview | None
    ) -> None:
        if isinstance(msg, RxCancel):
            self.cancel(msg)
            return
        if isinstance(msg, Compound):
            self._on_compound(msg)
            return
        if not isinstance(msg, RxContext):
            return
        routine = msg.routine
        if self.minirdr.blocking or routine in CONNECTION_ROUTINES:
            if routine not in CONNECTION_ROUTINES and self._go_direct(msg):
                return
            self._queue(msg, payload)
            return
        if (
            msg.args
            and routine == _LOWIO
            and msg.lowio is not None
            and msg.lowio.operation == _READ
            and msg.lowio.length >= POOLED_READ_BYTES
            and self._pooled_read(msg)
        ):
            return
        answer = execute(self.minirdr, msg, payload)
        if answer is not None:
            self.bridge.send(*answer)

    def _pooled_alone(self, ctx: RxContext) -> bool:
        return (
            bool(ctx.args)
            and not ctx.flags & _RELATED
            and ctx.lowio is not None
            and ctx.lowio.length >= POOLED_READ_BYTES
            and self._pooled_read(ctx)
        )

    def _pooled_read(self, ctx: RxContext) -> bool:
        """A large shared-memory READ: checked here, copied on the pool. False when the
        mini-redirector does not split its reads (it then runs as usual)."""
        assert ctx.lowio is not None
        target: memoryview | None = None
        try:
            target = SHARED.target(ctx.args, ctx.lowio.length)
            copy = None if target is None else self.minirdr.prepare_read_into(ctx, len(target))
        except Exception as exc:
            if target is not None:
                target.release()
            self.bridge.send(failure(ctx, exc))
            return True
        if target is None or copy is None:
            if target is not None:
                target.release()
            return False
        view = target[:]  # the pool's own view: it outlives this one
        target.release()
        with self._cancel_lock:
            self._copying += 1
        if self._pool is None:
            self._pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="read-copy")
        self._pool.submit(self._copy, ctx, copy, view)
        return True

    def _copy(self, ctx: RxContext, copy: Callable[[memoryview], Result], view: memoryview) -> None:
        """On a pool thread: one large read into its shared-memory slot, then its answer."""
        try:
            result = copy(view)
            _into_shared(result, view)
            answer = completion(ctx, result)
        except Exception as exc:
            answer = failure(ctx, exc)
        finally:
            view.release()
            with self._cancel_lock:
                self._copying -= 1
        self.bridge.post(answer)

    def _on_compound(self, cx: Compound) -> None:
        if not self.minirdr.blocking:
            if any(ctx.routine in CONNECTION_ROUTINES for ctx in cx.items):
                # connection routines keep running on their connection's worker, as alone
                # (they never are related items: what is left keeps its order)
                cx = self._hand_off_connection_routines(cx)
                if not cx.items:
                    return
            if all(_is_read(ctx) for ctx in cx.items):
                # reads only (separate requests the core sent together): none changes what
                # another sees, so each large shared-memory one copies on the pool, as alone
                cx.items = [ctx for ctx in cx.items if not self._pooled_alone(ctx)]
                if not cx.items:
                    return
            # a large answer leaves as soon as it is ready (the core forwards it while the
            # rest run); the small ones together at the end
            answers = execute_compound(self.minirdr, cx, large=self.bridge.send)
            if answers.items:
                self.bridge.send(answers)
            return
        if self._go_direct_compound(cx):
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
            self._hand(part.items[0].srv_call or "", part, None)

    def _hand_off_connection_routines(self, cx: Compound) -> Compound:
        rest = Compound(cx.request_id, [], timeout_ms=cx.timeout_ms)
        payload_of = dict(zip(cx.payload_items, cx.payloads, strict=True))
        for index, ctx in enumerate(cx.items):
            if ctx.routine in CONNECTION_ROUTINES:
                self._hand(ctx.srv_call or "", ctx, payload_of.get(index))
                continue
            if index in payload_of:
                rest.payload_items.append(len(rest.items))
                rest.payloads.append(payload_of[index])
            rest.items.append(ctx)
        return rest

    def _queue(self, ctx: RxContext, payload: memoryview | None) -> None:
        """Hand a request to its connection's worker, with its own deadline while queued."""
        with self._cancel_lock:
            self._queued[ctx.request_id] = time.monotonic() + ctx.timeout_ms / 1000.0
        self._hand(ctx.srv_call or "", ctx, payload)

    def _hand(self, srv_call: str, msg: RxContext | Compound, payload: memoryview | None) -> None:
        key = srv_call.lower()
        with self._cancel_lock:
            self._held[key] = self._held.get(key, 0) + 1
            ref = self.workers.get(key)
            if ref is None or not ref.is_alive():
                ref = ConnectionWorker.start(self.minirdr, self.bridge, srv_call, self)
                self.workers[key] = ref
        ref.tell((msg, payload))

    def finished(self, srv_call: str) -> None:
        """A worker is done with one message it was handed."""
        key = srv_call.lower()
        with self._cancel_lock:
            left = self._held.get(key, 0) - 1
            if left > 0:
                self._held[key] = left
            else:
                self._held.pop(key, None)

    # ---------------------------------------------------------------- the direct path
    def _go_direct(self, ctx: RxContext) -> bool:
        """Offer a request to the mini-redirector's direct path (``MiniRdr.start_direct``):
        only while its connection's worker holds nothing, so it never overtakes a request
        that came before it. The request is not queued, so a cancel finds it running (as on a
        worker): it finishes and the core discards its answer."""
        key = (ctx.srv_call or "").lower()
        with self._cancel_lock:
            if self._held.get(key):
                return False
            self._direct += 1
        started = False
        try:
            started = self.minirdr.start_direct(
                ctx, lambda outcome: self._direct_done(ctx, outcome)
            )
        except Exception:
            log.exception("direct path failed to start req=%s", ctx.origin)
        if not started:
            with self._cancel_lock:
                self._direct -= 1
        return started

    def _go_direct_compound(self, cx: Compound) -> bool:
        """Offer a compound to the mini-redirector's direct path
        (``MiniRdr.start_direct_compound``), on the rules of ``_go_direct``: all its items on
        one connection whose worker holds nothing."""
        key = (cx.items[0].srv_call or "").lower() if cx.items else ""
        if not key or any((ctx.srv_call or "").lower() != key for ctx in cx.items):
            return False
        with self._cancel_lock:
            if self._held.get(key):
                return False
            self._direct += 1

        def finish() -> None:
            with self._cancel_lock:
                self._direct -= 1

        def here() -> None:
            try:
                execute_compound(self.minirdr, cx, self.bridge.post, together=self.bridge.post)
            except Exception:
                log.exception("direct compound failed req=%s", cx.origin)
            finally:
                finish()

        def worker() -> None:
            try:
                self._hand(cx.items[0].srv_call or "", cx, None)
            finally:
                finish()

        started = False
        try:
            started = self.minirdr.start_direct_compound(cx, here, worker)
        except Exception:
            log.exception("direct path failed to start req=%s", cx.origin)
        if not started:
            finish()
        return started

    def _direct_done(self, ctx: RxContext, outcome: Result | Exception | None) -> None:
        """The direct path's answer (on the mini-redirector's loop): posted, or, for None, the
        request handed to its worker after all."""
        try:
            if outcome is None:
                self._queue(ctx, None)
            elif isinstance(outcome, Exception):
                self.bridge.post(failure(ctx, outcome))
            else:
                self.bridge.post(completion(ctx, outcome), outcome.payload)
        finally:
            with self._cancel_lock:
                self._direct -= 1

    # ---------------------------------------------------------------- cancellation
    def cancel(self, cancel: RxCancel) -> None:
        """RX_CONTEXT_FLAG_CANCELLED for one request (I/O thread)."""
        request_id = cancel.request_id
        with self._cancel_lock:
            queued = self._queued.pop(request_id, None) is not None
            if queued:
                self._dropped.add(request_id)  # the worker skips it when it gets there
            elif request_id in self._running:
                self._cancelled[request_id] = cancel.reason  # applied once it goes pending
                return
        if queued:
            log.info("dropped before it ran id=%d reason=%s", request_id, cancel.reason)
            self.bridge.send(
                RxCompletion(
                    request_id, cancel_status(cancel.reason), message="cancelled before it ran"
                )
            )
            return
        self._cancel_pending(request_id, cancel.reason)

    def _cancel_pending(self, request_id: int, reason: str) -> None:
        try:
            found = self.minirdr.cancel(request_id, cancel_status(reason))
        except Exception:
            log.exception("cancel routine failed id=%d", request_id)
            return
        log.info("cancel id=%d reason=%s %s", request_id, reason, "done" if found else "not held")

    def begin(self, ctx: RxContext) -> RxCompletion | bool:
        """A worker takes a queued request: True to run it; False to skip it (cancelled and
        answered already); or the answer that replaces it (its own deadline passed while it
        waited behind others)."""
        now = time.monotonic()
        with self._cancel_lock:
            if ctx.request_id in self._dropped:
                self._dropped.discard(ctx.request_id)
                return False
            deadline = self._queued.pop(ctx.request_id, None)
            if deadline is None or now < deadline:
                self._running.add(ctx.request_id)
                return True
        reason = "deadline"
        log.info(
            "dropped before it ran req=%s routine=%s reason=%s", ctx.origin, ctx.routine, reason
        )
        return RxCompletion(
            ctx.request_id,
            cancel_status(reason),
            message=f"{ctx.routine} was not run: its deadline passed while it was queued",
        )

    def ran(self, ctx: RxContext, *, pending: bool) -> None:
        """A worker finished running a request; a cancel that came meanwhile applies now to
        what went pending (RxSetMinirdrCancelRoutine on an already cancelled context)."""
        with self._cancel_lock:
            self._running.discard(ctx.request_id)
            reason = self._cancelled.pop(ctx.request_id, None)
        if reason is not None and pending:
            self._cancel_pending(ctx.request_id, reason)

    def pending_count(self) -> int:
        """Requests this process holds: queued or running on workers, and STATUS_PENDING ones."""
        with self._cancel_lock:
            held = len(self._queued) + len(self._running) + self._copying + self._direct
        return held + self.minirdr.pending_requests()

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # each copy is a bounded local read
        for ref in self.workers.values():
            try:
                ref.stop(block=True, timeout=2.0)
            except Exception:  # a worker stuck in a network call: it is a daemon thread
                log.warning("worker did not stop in time")
        try:
            self.minirdr.close()
        except Exception:
            log.exception("mini-redirector close failed")
        SHARED.close()

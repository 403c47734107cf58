"""Answering clients: every client request is answered exactly once, through ``Answers``. It
keeps the requests not answered yet (so a cancel finds them), how many each client has in
flight, the answers held back in a batch for clients that take them bundled, and the recent
errors ``rdbss status`` shows."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rdbss.core.services import CoreState
from rdbss.core.types import SUB_ID_BASE, LiveRequest, Payload, RecentError, Then, event
from rdbss.model.idempotent import may_retry
from rdbss.wire.codec import DEFAULT_LIMITS
from rdbss.wire.framing import bundles
from rdbss.wire.rxcontext import CompletionBundle, RxCompletion, RxContext
from rdbss.wire.status import NtStatus, status_name

log = logging.getLogger("rdbss.core")

S = NtStatus

#: Error statuses that are part of normal operation, not worth showing as recent errors.
_ORDINARY = frozenset(
    {
        S.STATUS_END_OF_FILE,
        S.STATUS_NO_SUCH_FILE,
        S.STATUS_OBJECT_NAME_NOT_FOUND,
        S.STATUS_OBJECT_NAME_COLLISION,
    }
)


def _no_compounds(done: RxCompletion, payload: Payload) -> None:
    raise AssertionError("a compound item's answer with no compounds wired")


class Answers:
    def __init__(self, state: CoreState) -> None:
        self.state = state
        self.out = state.out
        self.live: dict[tuple[bytes, int], LiveRequest] = {}  # client requests not answered
        self.inflight_of: dict[bytes, int] = {}  # client -> requests under way
        # answers held back in a batch, per client that takes them bundled (RxFlags.BUNDLE_OK)
        self.held: dict[bytes, list[tuple[RxCompletion, Payload]]] | None = None
        self.bundle_ok: set[bytes] = set()
        self.completed = 0
        self.recent_errors: list[RecentError] = []
        #: where the answer to an item of a compound goes (Compounds.collect)
        self.collect: Callable[[RxCompletion, Payload], None] = _no_compounds

    def to_client(self, ident: bytes, done: RxCompletion, payload: Payload = None) -> None:
        """Every client request is answered exactly once, here."""
        if done.request_id >= SUB_ID_BASE:
            self.collect(done, payload)  # an item of a compound
            return
        self.live.pop((ident, done.request_id), None)
        bundle = self.held is not None and ident in self.bundle_ok
        self.answered(ident)
        if bundle:
            assert self.held is not None
            self.held.setdefault(ident, []).append((done, payload))
            return
        self.out.to_client(ident, done, payload)

    def answered(self, ident: bytes) -> None:
        """One more of the client's requests is answered: count it, and forget what its
        requests in flight said (bundling) once none is left."""
        self.completed += 1
        left = self.inflight_of.get(ident, 0) - 1
        if left > 0:
            self.inflight_of[ident] = left
        else:
            self.inflight_of.pop(ident, None)
            self.bundle_ok.discard(ident)  # its next request says so again

    def answer(
        self,
        ident: bytes,
        ctx: RxContext,
        status: int,
        information: int = 0,
        result: Any = None,
        message: str = "",
        payload: Payload = None,
    ) -> None:
        self.note_error(status, ctx.routine or f"IRP_MJ 0x{ctx.major:02x}", message)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("answer", extra=event(ctx, status))
        self.to_client(
            ident, RxCompletion(ctx.request_id, status, information, result, message), payload
        )

    def note_error(self, status: int, routine: str, message: str) -> None:
        """Remember an error for ``status`` (not warnings, not the ordinary ends of things)."""
        if status >> 30 != 3 or status in _ORDINARY:
            return
        self.recent_errors.append(RecentError(self.state.clock(), status, routine, message))
        del self.recent_errors[:-20]

    def relay(self, ident: bytes, ctx: RxContext) -> Then:
        """The usual continuation: hand the completion back to the client as it came."""
        request_id = ctx.request_id

        def then(done: RxCompletion, payload: Payload) -> None:
            if done.status:  # (a success is no error: no call)
                self.note_error(done.status, ctx.routine or "", done.message)
            done.request_id = request_id
            if log.isEnabledFor(logging.DEBUG):
                log.debug("answer", extra=event(ctx, done.status))
            self.to_client(ident, done, payload)

        return then

    def retry_left(self, ident: bytes, request_id: int, done: RxCompletion) -> int | None:
        """A client request (not a compound's item) failed with ``done``: when its connection
        was lost (torn down by now) and it has retries and time left (model/idempotent.py), count
        the retry and return the milliseconds left before its deadline; else None. The caller
        checked that the request may be sent again (idempotent, or unsent)."""
        live = self.live.get((ident, request_id))
        if live is None or live.cancelled is not None:
            return None
        left_ms = (live.deadline - self.state.clock()) * 1000.0
        if not may_retry(done.status, live.retries, left_ms):
            return None
        live.retries += 1
        log.info(
            "sending req=%s:%d again (%s: %s)",
            ident.hex()[-6:],
            request_id,
            status_name(done.status),
            done.message,
        )
        return int(left_ms)

    # ------------------------------------------------------------------ batches
    def hold(self) -> None:
        """A batch begins: answers for clients that take bundles wait for its end."""
        if self.held is None:
            self.held = {}

    def release(self) -> None:
        """The batch ends: each client's held answers leave, as a CompletionBundle when several."""
        held, self.held = self.held, None
        limits = DEFAULT_LIMITS
        for ident, ready in (held or {}).items():
            if len(ready) == 1:
                self.out.to_client(ident, ready[0][0], ready[0][1])
                continue
            for bundle in bundles(
                ready,
                CompletionBundle,
                limits.max_compound_items,
                limits.max_compound_payload_bytes,
            ):
                self.out.to_client(ident, bundle, None)

"""A client's compound (see docs/routines.md, The routines; MS-SMB2 3.2.4.1.4 for the model):
every item goes the way it would alone (so a create still waits for its connection, a handle
is still re-opened...), but what the items send to the mini-redirectors leaves as one message
per peer, and the client gets one answer when every item has one. A RELATED item acts on the
previous create's handle: it rides in the same message as that create when it can, else waits
for the create's answer. A create and its related close (a stat) become one MRxQueryOpen."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from rdbss.core.answers import Answers
from rdbss.core.handles import Handles
from rdbss.core.query_open import QueryOpens
from rdbss.core.sending import Sending
from rdbss.core.services import CoreState
from rdbss.core.types import RELATED, SUB_ID_BASE, Payload, Then, as_sent
from rdbss.model.attrcache import changes_attributes
from rdbss.model.compound import rides_with_create, stat_pair
from rdbss.model.dispatch import routine_for
from rdbss.model.idempotent import (
    CONNECTION_LOST,
    UNSENT,
    may_retry,
    replayable,
    resent_whole_if_unsent,
    unsent,
)
from rdbss.model.structs import NetRoot
from rdbss.wire.codec import DEFAULT_LIMITS
from rdbss.wire.constants import IrpMj, Routine
from rdbss.wire.rxcontext import (
    Compound,
    CompoundCompletion,
    LowIoParameters,
    RxCompletion,
    RxContext,
)
from rdbss.wire.status import NtStatus, NtStatusError, status_name

log = logging.getLogger("rdbss.core")

S = NtStatus


@dataclass(slots=True)
class Chain:
    """A create in a client's compound and the related items after it."""

    create: RxContext
    peer: str | None = None  # set when the create went out in the current batch to this peer
    status: int | None = None  # the create's status, once answered
    unsent: bool = False  # that answer says the create never reached the server
    fobx: int | None = None  # its handle, once it succeeded
    deferred: list[tuple[int, RxContext, Payload]] = field(default_factory=list)
    # a directory query rode along: its enumeration ends with the handle's cleanup, so the
    # close waits for the create's answer and goes as a close alone (cleanup, then close)
    listed: bool = False


@dataclass(slots=True)
class CompoundState:
    """A client's compound under way: one answer slot per item."""

    ident: bytes
    request_id: int
    item_ids: list[int]
    results: list[RxCompletion | None]
    payloads: dict[int, Payload] = field(default_factory=dict)
    chains: dict[int, Chain] = field(default_factory=dict)  # create's index -> chain
    left: int = 0
    # a compound that may be sent again whole after a lost connection (model/idempotent.py):
    # its items, what the first attempt changes in them, its deadline and retries so far
    items: list[RxContext] | None = None
    sent_as: list[tuple[int, str | None, int, int | None]] = field(default_factory=list)
    origin: str | None = None
    deadline: float = 0.0
    retries: int = 0
    # sent again only when no item reached the server (every answer unsent), with its data
    unsent_only: bool = False
    sent_payloads: dict[int, Payload] = field(default_factory=dict)


def _unwired(ident: bytes, ctx: RxContext, payload: Payload) -> None:
    raise AssertionError("Compounds used before the core wired it")


class Compounds:
    def __init__(
        self, state: CoreState, answers: Answers, sending: Sending, handles: Handles
    ) -> None:
        self.state = state
        self.answers = answers
        self.sending = sending
        self.handles = handles
        self.sub_ids = itertools.count(SUB_ID_BASE)
        self.subs: dict[int, tuple[CompoundState, int]] = {}
        #: how the core routes one request (raises NtStatusError to refuse it)
        self.dispatch: Callable[[bytes, RxContext, Payload], None] = _unwired
        self.query_opens = QueryOpens(state, answers, sending, handles)

    def start(
        self, ident: bytes, cx: Compound, inflight: int, retries: int = 0, deadline: float = 0.0
    ) -> None:
        """A client's compound: every item goes the way it would alone (so a create still waits
        for its connection, a handle is still re-opened...), but what they send to the
        mini-redirectors leaves as one message per peer, and the client gets one answer when
        every item has one. A RELATED item acts on the previous create's handle: it rides in
        the same message as that create when it can, else waits for the create's answer."""
        n = len(cx.items)
        refusal: NtStatusError | None = None
        wanted = sum(
            i.lowio.length for i in cx.items if i.major == IrpMj.READ and i.lowio is not None
        )
        if inflight >= self.state.settings.max_inflight_per_client:
            refusal = NtStatusError(
                S.STATUS_INSUFFICIENT_RESOURCES,
                f"too many requests in flight from this client "
                f"(limit {self.state.settings.max_inflight_per_client})",
            )
        elif wanted > DEFAULT_LIMITS.max_compound_payload_bytes:
            refusal = NtStatusError(
                S.STATUS_INVALID_PARAMETER,
                f"the compound's reads ask for {wanted} bytes; at most "
                f"{DEFAULT_LIMITS.max_compound_payload_bytes} fit in one answer",
            )
        if (
            refusal is None
            and n == 2
            and not cx.payload_items
            and stat_pair(cx.items, 0)
            and self.query_opens.stat_alone(ident, cx, retries, deadline, self.start)
        ):
            return
        progress = CompoundState(ident, cx.request_id, [i.request_id for i in cx.items], [None] * n)
        progress.left = n
        if refusal is not None or n == 0:
            status = refusal.status if refusal is not None else S.STATUS_SUCCESS
            message = refusal.strerror or "" if refusal is not None else ""
            self.answers.note_error(status, "compound", message)
            self._finish_compound(progress, status, message)
            return
        payload_of = dict(zip(cx.payload_items, cx.payloads, strict=True))
        resend = not payload_of and replayable(cx.items)
        if resend or resent_whole_if_unsent(cx.items):
            progress.items, progress.origin, progress.retries = cx.items, cx.origin, retries
            progress.sent_as = [(i.major, i.path, i.flags, i.fobx) for i in cx.items]
            progress.deadline = deadline or self.state.clock() + cx.timeout_ms / 1000.0
            progress.unsent_only, progress.sent_payloads = not resend, payload_of
        for index, item in enumerate(cx.items):  # first, as a query open answers two items
            sub_id = next(self.sub_ids)
            self.subs[sub_id] = (progress, index)
            item.request_id = sub_id
            item.origin = f"{cx.origin}/{index}"
            if item.timeout_ms <= 0:
                item.timeout_ms = cx.timeout_ms
        chain: Chain | None = None
        fused = -1  # the close answered with its create's query open
        with self.sending.batch():
            for index, item in enumerate(cx.items):
                if index == fused:
                    continue
                payload = payload_of.get(index)
                if item.major == IrpMj.CREATE:
                    if stat_pair(cx.items, index) and self.query_opens.query_open(
                        ident, item, cx.items[index + 1], self._each
                    ):
                        fused, chain = index + 1, None
                        continue
                    chain = Chain(item)
                    progress.chains[index] = chain
                    self._item(ident, item, payload)
                    answered = progress.results[index]
                    if answered is not None:
                        chain.status = answered.status
                    else:
                        chain.peer = self.sending.batched_to(item)
                elif item.flags & RELATED:
                    if chain is None:
                        self.answers.answer(
                            ident,
                            item,
                            S.STATUS_INVALID_HANDLE,
                            message="a related item with no create before it in the compound",
                        )
                    else:
                        self._related(ident, chain, index, item, payload)
                else:
                    self._item(ident, item, payload)

    def _each(self, ident: bytes, opened: RxCompletion, closed: RxCompletion) -> None:
        """A query open's two answers, each to its item of the compound under way."""
        self.answers.to_client(ident, opened, None)
        self.answers.to_client(ident, closed, None)

    def _item(self, ident: bytes, ctx: RxContext, payload: Payload) -> None:
        try:
            self.dispatch(ident, ctx, payload)
        except NtStatusError as exc:
            self.answers.answer(ident, ctx, exc.status, message=exc.strerror or "")
        except Exception:  # a bug must cost one item, never the compound or the core
            log.exception("compound item failed req=%s", ctx.origin)
            self.answers.answer(
                ident, ctx, S.STATUS_INTERNAL_ERROR, message="internal error in the rdbss core"
            )

    def _related(
        self, ident: bytes, chain: Chain, index: int, item: RxContext, payload: Payload
    ) -> None:
        if chain.status is not None:  # the create has answered
            if chain.status != S.STATUS_SUCCESS:
                self.answers.answer(
                    ident,
                    item,
                    chain.status,
                    result={UNSENT: True} if chain.unsent else None,
                    message="the compound's create failed",
                )
                return
            item.fobx = chain.fobx
            item.flags &= ~RELATED
            self._item(ident, item, payload)
            return
        if (
            chain.peer is None
            or chain.deferred
            or not self._ride_along(ident, chain, item, payload)
        ):
            chain.deferred.append((index, item, payload))

    def _ride_along(self, ident: bytes, chain: Chain, item: RxContext, payload: Payload) -> bool:
        """Put a related item in the same batch as its create (the mini-redirector gives it the
        create's SrvOpen); False when it must wait for the create's answer instead."""
        peer_name = chain.peer
        peer = self.state.peers.get(peer_name) if peer_name is not None else None
        create = chain.create
        pending = self.sending.pending.get(create.request_id)
        if (
            peer is None
            or peer_name is None
            or pending is None
            or pending.routine != Routine.MRxCreate  # collapsed: no new SrvOpen to act on
            or not rides_with_create(item)
            or (
                item.major == IrpMj.CLOSE
                and (Routine.MRxCloseSrvOpen not in peer.routines or chain.listed)
            )
            or (
                item.major == IrpMj.DIRECTORY_CONTROL
                and Routine.MRxQueryDirectory not in peer.routines
            )
        ):
            return False
        fobx_id = create.fobx
        item.fobx = fobx_id
        item.srv_open = None
        item.srv_call = create.srv_call
        item.net_root = create.net_root
        item.path = create.path
        item.flags |= RELATED
        if item.major == IrpMj.CLOSE:
            # no MRxCleanupFobx first: what it releases (enumerations, change watches, locks,
            # all per handle) comes from routines that never ride along with their create (a
            # close after a directory query that rode along waits for the create's answer)
            request_id = item.request_id

            def closed(done: RxCompletion, _payload: Payload) -> None:
                fobx = self.state.fobxs.get(fobx_id) if fobx_id is not None else None
                if fobx is not None:
                    self.handles.unlink(fobx)  # the create's answer came first and registered it
                done.request_id = request_id
                self.answers.to_client(ident, done, None)

            item.routine = Routine.MRxCloseSrvOpen
            item.major = IrpMj.CLOSE
            try:
                then = self._ride_attributes(create, item, pending.net_root, closed)
                self.sending.send(peer_name, item, None, then, net_root=pending.net_root)
            except NtStatusError as exc:
                self.answers.answer(ident, item, exc.status, message=exc.strerror or "")
            return True
        try:
            routine, op = routine_for(item)
            if op is not None:
                if item.lowio is None:
                    item.lowio = LowIoParameters(operation=op)
                item.lowio.operation = op
            item.routine = routine
            then = self._ride_attributes(
                create, item, pending.net_root, self.answers.relay(ident, item)
            )
            if item.major == IrpMj.DIRECTORY_CONTROL:
                then = self._listed(fobx_id, then)
                chain.listed = True
            self.sending.send(peer_name, item, payload, then, net_root=pending.net_root)
        except NtStatusError as exc:
            self.answers.answer(ident, item, exc.status, message=exc.strerror or "")
        return True

    def _ride_attributes(
        self, create: RxContext, item: RxContext, net_root: NetRoot | None, then: Then
    ) -> Then:
        """A related item that changes its file (a write; the close of a handle that could
        write or delete) drops the file from the attribute cache (core/attrcache.py)."""
        attrs = self.handles.caching.attrs
        if net_root is None or create.path is None or create.create is None:
            return then
        if item.major == IrpMj.CLOSE:
            params = create.create
            access, options = params.desired_access, params.create_options
            return attrs.closing(net_root, create.path, access, options, False, then)
        if item.major == IrpMj.DIRECTORY_CONTROL:
            return attrs.listing_at(net_root, create.path, then)
        if changes_attributes(item.major):
            return attrs.changing(net_root, create.path, then)
        return then

    def _listed(self, fobx_id: int | None, then: Then) -> Then:
        """A directory query riding along with its create: once answered, its handle is
        enumerating (a later query on it is not sent again after a lost connection, as it
        would start over), as ``Files.request`` marks a handle it sends a query for."""

        def listed(done: RxCompletion, payload: Payload) -> None:
            fobx = self.state.fobxs.get(fobx_id) if fobx_id is not None else None
            # (the create's answer came first and registered the handle; a query that found
            # its connection lost started no enumeration)
            if fobx is not None and done.status not in CONNECTION_LOST:
                fobx.enumerated = True
            then(done, payload)

        return listed

    def collect(self, done: RxCompletion, payload: Payload) -> None:
        """The answer to one item of a compound; the compound is answered with its last."""
        entry = self.subs.pop(done.request_id, None)
        if entry is None:
            return
        progress, index = entry
        progress.results[index] = done
        if payload is not None:
            progress.payloads[index] = payload
        progress.left -= 1
        # the answer that was the last one finishes the compound; one answered inside this
        # call (a deferred item the create's failure answers at once) would be counted twice
        last = progress.left == 0
        chain = progress.chains.get(index)
        if chain is not None:
            chain.status = done.status
            chain.unsent = unsent(done)
            if done.status == S.STATUS_SUCCESS and isinstance(done.result, dict):
                fobx = done.result.get("fobx")
                chain.fobx = fobx if isinstance(fobx, int) else None
            deferred, chain.deferred = chain.deferred, []
            if deferred:
                with self.sending.batch():
                    for j, item, item_payload in deferred:
                        self._related(progress.ident, chain, j, item, item_payload)
        if last and not self._replay(progress):
            self._finish_compound(progress, S.STATUS_SUCCESS, "")

    def _replay(self, progress: CompoundState) -> bool:
        """A compound whose items all answered: when one found its connection lost (torn down
        by now) and the compound may be sent again (model/idempotent.py), send it again whole,
        as the client sent it, on the connection built again; False to answer it as it is."""
        if progress.items is None:
            return False
        lost = next(
            (d for d in progress.results if d is not None and d.status in CONNECTION_LOST), None
        )
        left_ms = (progress.deadline - self.state.clock()) * 1000.0
        if lost is None or not may_retry(lost.status, progress.retries, left_ms):
            return False
        if progress.unsent_only and not all(d is not None and unsent(d) for d in progress.results):
            return False  # an item may have reached the server
        items = progress.items
        for item, item_id, (major, path, flags, fobx) in zip(
            items, progress.item_ids, progress.sent_as, strict=True
        ):
            item.major = major
            as_sent(item, item_id, path, flags, fobx, min(item.timeout_ms, int(left_ms)))
        log.info(
            "sending compound req=%s again (%s: %s)",
            progress.origin,
            status_name(lost.status),
            lost.message,
        )
        payloads = progress.sent_payloads
        again = Compound(
            request_id=progress.request_id,
            items=items,
            payload_items=sorted(payloads),
            timeout_ms=int(left_ms),
            origin=progress.origin,
        )
        again.payloads = [payloads[index] for index in again.payload_items]
        self.start(progress.ident, again, 0, progress.retries + 1, progress.deadline)
        return True

    def _finish_compound(self, progress: CompoundState, status: int, message: str) -> None:
        answer = CompoundCompletion(progress.request_id, status, message=message)
        for index, done in enumerate(progress.results):
            if done is None:
                continue  # only when the whole compound was refused
            done.request_id = progress.item_ids[index]
            payload = progress.payloads.get(index)
            if payload is not None:
                answer.payload_items.append(index)
                answer.payloads.append(payload)
            answer.items.append(done)
        self.answers.answered(progress.ident)
        self.state.out.to_client(progress.ident, answer, None)

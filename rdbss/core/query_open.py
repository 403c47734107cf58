"""Stats as one MRxQueryOpen (IRP_MJ_QUERY_OPEN): a create for attributes and its related close
in a client's compound open no Fcb, SrvOpen or Fobx here and no handle in the mini-redirector;
the attribute cache answers them first when it can. A compound that is one stat and nothing
else is answered as the compound itself, with none of a compound's bookkeeping."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from rdbss.core.answers import Answers
from rdbss.core.handles import Handles
from rdbss.core.sending import Sending
from rdbss.core.services import CoreState
from rdbss.core.types import Payload, address, as_sent
from rdbss.model.dispatch import answers_for_open_file, is_query_open
from rdbss.model.idempotent import CONNECTION_LOST, may_retry
from rdbss.model.names import parse_unc
from rdbss.model.structs import Condition
from rdbss.wire.constants import CreateInformation, IrpMj, Routine
from rdbss.wire.rxcontext import Compound, CompoundCompletion, RxCompletion, RxContext
from rdbss.wire.status import NtStatus, NtStatusError, status_name

log = logging.getLogger("rdbss.core")
S = NtStatus


@dataclass(slots=True)
class QueryOpens:
    """The core's services a query open uses (those of its Compounds)."""

    state: CoreState
    answers: Answers
    sending: Sending
    handles: Handles

    def stat_alone(
        self,
        ident: bytes,
        cx: Compound,
        retries: int,
        deadline: float,
        restart: Callable[[bytes, Compound, int, int, float], None],
    ) -> bool:
        """A compound that is one stat (a create for attributes and its related close) as one
        MRxQueryOpen answered as the compound itself: no CompoundState, no sub-request ids, no
        answer slots to gather. False (nothing done) to take the usual way. A lost connection
        sends it again whole (``restart``: the compound's start), as any compound is."""
        create, close = cx.items
        if create.major != IrpMj.CREATE:
            return False
        sent_as = (create.request_id, create.path, create.flags, create.fobx, create.timeout_ms)
        if deadline == 0.0:
            deadline = self.state.clock() + cx.timeout_ms / 1000.0
        create.origin = f"{cx.origin}/0"
        if create.timeout_ms <= 0:
            create.timeout_ms = cx.timeout_ms

        def answer(ident: bytes, opened: RxCompletion, closed: RxCompletion) -> None:
            left_ms = (deadline - self.state.clock()) * 1000.0
            if opened.status in CONNECTION_LOST and may_retry(opened.status, retries, left_ms):
                log.info(
                    "sending compound req=%s again (%s: %s)",
                    cx.origin,
                    status_name(opened.status),
                    opened.message,
                )
                as_sent(create, *sent_as[:4], min(sent_as[4], int(left_ms)))
                cx.timeout_ms = int(left_ms)
                restart(ident, cx, 0, retries + 1, deadline)
                return
            opened.request_id, closed.request_id = sent_as[0], close.request_id
            done = CompoundCompletion(cx.request_id, S.STATUS_SUCCESS, items=[opened, closed])
            self.answers.answered(ident)
            self.state.out.to_client(ident, done, None)

        return self.query_open(ident, create, close, answer)

    def query_open(
        self,
        ident: bytes,
        create: RxContext,
        close: RxContext,
        answer: Callable[[bytes, RxCompletion, RxCompletion], None],
    ) -> bool:
        """A create for attributes and its related close (a stat) as one MRxQueryOpen
        (IRP_MJ_QUERY_OPEN): no Fcb, SrvOpen or Fobx made and dropped here, no open and close
        in the mini-redirector. Only when the file's Fcb here, if it has one, holds nothing the
        server does not show (``answers_for_open_file``: no deferred write, no delete pending;
        an attribute-only open has no share access to check), its connection is up and its
        mini-redirector has the routine, and the create would not collapse onto one of the
        file's SrvOpens; False to take both items the usual way, which also
        answers every error but the file's own. The attribute cache (core/attrcache.py)
        answers it first when it can (a file with no Fcb), with no message at all, whether
        the mini-redirector has the routine or not. ``answer`` takes the create's and the
        close's answers together."""
        if self.state.stopping or create.path is None or not is_query_open(create.create):
            return False
        try:
            name = parse_unc(create.path)
        except NtStatusError:
            return False
        v_net_root = self.state.prefix.v_net_root(name)
        if v_net_root is None or v_net_root.condition != Condition.GOOD:
            return False
        net_root = v_net_root.net_root
        minirdr = net_root.minirdr
        peer = self.state.peers.get(minirdr) if minirdr is not None else None
        if minirdr is None or peer is None:
            return False
        assert create.create is not None
        fcb = net_root.fcbs.get(name.path.lower())
        if fcb is not None and (
            not answers_for_open_file(fcb)
            or self.handles.buffering.collapsible(fcb, create.create, minirdr) is not None
        ):
            return False  # (a create that collapses onto an open SrvOpen opens nothing either)
        attrs = self.handles.caching.attrs
        cached = (
            attrs.stat(net_root, name.path, create.create.create_options) if fcb is None else None
        )
        create_id, close_id = create.request_id, close.request_id
        if cached is not None:  # the attribute cache answers: no message at all
            net_root.last_used = self.state.clock()
            opened = RxCompletion(
                create_id, S.STATUS_SUCCESS, CreateInformation.FILE_OPENED, {**cached, "fobx": 0}
            )
            answer(ident, opened, RxCompletion(close_id, S.STATUS_SUCCESS))
            return True
        if Routine.MRxQueryOpen not in peer.routines:
            return False
        net_root.last_used = self.state.clock()
        address(create, Routine.MRxQueryOpen, net_root, name.path, None)

        def then(done: RxCompletion, payload: Payload) -> None:
            self.answers.note_error(done.status, Routine.MRxQueryOpen, done.message)
            result = done.result
            if done.status == S.STATUS_SUCCESS:
                # a create's answer (its handle already closed again), then the close's
                result = {**(result if isinstance(result, dict) else {}), "fobx": 0}
                closed = RxCompletion(close_id, S.STATUS_SUCCESS)
            else:
                closed = RxCompletion(close_id, done.status, message="the compound's create failed")
            opened = RxCompletion(create_id, done.status, done.information, result, done.message)
            answer(ident, opened, closed)

        try:
            self.sending.send(
                minirdr,
                create,
                None,
                attrs.learning(net_root, name.path, then),
                net_root=net_root,
                owner=(ident, create_id),
            )
        except NtStatusError as exc:
            failed = "the compound's create failed"
            self.answers.note_error(exc.status, Routine.MRxQueryOpen, exc.strerror or "")
            self.answers.note_error(exc.status, f"IRP_MJ 0x{close.major:02x}", failed)
            answer(
                ident,
                RxCompletion(create_id, exc.status, message=exc.strerror or ""),
                RxCompletion(close_id, exc.status, message=failed),
            )
        return True

"""Create (see docs/routines.md, Create, collapsing and close): a client's create waits for its
connection, then either collapses onto a compatible SrvOpen of a file already open (a new Fobx,
no MRxCreate) or goes to the mini-redirector as MRxCreate, after conflicting delayed closes are
closed and stale cached data purged (what an oplock break gives before an open proceeds,
MS-FSA 2.1.5.1). A create whose connection was lost is sent again when it only opens."""

from __future__ import annotations

import logging

from rdbss.core.answers import Answers
from rdbss.core.buffering import Buffering
from rdbss.core.caching import Caching
from rdbss.core.connections import Connections
from rdbss.core.handles import Handles
from rdbss.core.sending import Sending
from rdbss.core.services import CoreState
from rdbss.core.types import Payload, Then, address, cancel_status
from rdbss.model.buffering import conflicts
from rdbss.model.idempotent import is_idempotent, unsent
from rdbss.model.names import UncName, parse_unc
from rdbss.model.sharing import check_create_parameters, check_share_access
from rdbss.model.structs import Condition, Fcb, Fobx, NetRoot, SrvOpen, VNetRoot
from rdbss.wire.constants import CreateDisposition, CreateInformation, Routine
from rdbss.wire.rxcontext import RxCompletion, RxContext
from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.core")

S = NtStatus


class Creates:
    def __init__(
        self,
        state: CoreState,
        answers: Answers,
        sending: Sending,
        connections: Connections,
        buffering: Buffering,
        caching: Caching,
        handles: Handles,
    ) -> None:
        self.state = state
        self.answers = answers
        self.sending = sending
        self.connections = connections
        self.buffering = buffering
        self.caching = caching
        self.handles = handles

    def create(self, ident: bytes, ctx: RxContext) -> None:
        if ctx.path is None:
            raise NtStatusError(S.STATUS_OBJECT_NAME_INVALID, "create needs a path")
        if ctx.create is not None:
            check_create_parameters(ctx.create.disposition, ctx.create.create_options)
        self.open(ident, ctx, parse_unc(ctx.path), 0)

    def open(self, ident: bytes, ctx: RxContext, name: UncName, attempt: int) -> None:
        def resume() -> None:
            self._open_resumed(ident, ctx, name, attempt)

        try:
            v_net_root = self.connections.find_or_construct(name, resume)
            if v_net_root is None:
                self.connections.park(ident, ctx.request_id, name, resume)
            else:
                self.create_on(ident, ctx, name, v_net_root)
        except NtStatusError as exc:
            self.answers.answer(ident, ctx, exc.status, message=exc.strerror or "")

    def _open_resumed(self, ident: bytes, ctx: RxContext, name: UncName, attempt: int) -> None:
        """A create parked on a NetRoot in transition wakes up: the NetRoot became Good or Bad,
        or it was dropped (its mini-redirector went down) and the name must be resolved again."""
        v_net_root = self.state.prefix.v_net_root(name)
        if v_net_root is not None and v_net_root.condition == Condition.BAD:
            self.answers.answer(
                ident,
                ctx,
                v_net_root.status,
                message=f"cannot connect to {name.net_root_prefix}: {v_net_root.message}",
            )
        elif attempt < 3:
            self.open(ident, ctx, name, attempt + 1)
        else:
            self.answers.answer(
                ident,
                ctx,
                S.STATUS_CONNECTION_DISCONNECTED,
                message=f"connecting to {name.net_root_prefix} kept being interrupted",
            )

    def create_on(
        self, ident: bytes, ctx: RxContext, name: UncName, vnr: VNetRoot, collapse: bool = True
    ) -> None:
        """RxCollapseOrCreateSrvOpen: a compatible open of a file already open reuses its
        SrvOpen (a new Fobx, no MRxCreate); any other goes to the mini-redirector, after the
        server opens kept for a delayed close that conflict with it are closed and cached data
        it would make stale is purged (what an oplock break gives before the open proceeds)."""
        net_root = vnr.net_root
        net_root.last_used = self.state.clock()
        minirdr = net_root.minirdr
        assert minirdr is not None
        create = ctx.create
        existing = net_root.fcbs.get(name.path.lower())
        self.caching.leases.opening(ctx, existing)  # an open that writes breaks leases first
        if existing is not None:
            self.caching.flush(existing)  # deferred writes reach the server before this open
            if existing.delete_pending:
                raise NtStatusError(
                    S.STATUS_DELETE_PENDING, f"{name.path} is being deleted (delete pending)"
                )
            if create is not None:
                check_share_access(
                    ((so.desired_access, so.share_access) for so in existing.srv_opens if so.fobxs),
                    create.desired_access,
                    create.share_access,
                )
                candidate = (
                    self.buffering.collapsible(existing, create, minirdr) if collapse else None
                )
                if candidate is not None:
                    self.buffering.collapse(ident, ctx, name, vnr, candidate)
                    return
                for srv_open in [so for so in existing.srv_opens if not so.fobxs]:
                    held = (srv_open.desired_access, srv_open.share_access)
                    if conflicts(
                        create.desired_access, create.share_access, create.disposition, held
                    ):
                        self.buffering.close_delayed(srv_open, "a conflicting open")
                self.buffering.rebuffer(existing, create.desired_access)
        request_id = ctx.request_id
        fobx_id = next(self.state.fobx_ids)
        address(ctx, Routine.MRxCreate, net_root, name.path, fobx_id)
        retry = is_idempotent(ctx)  # else only what never reached the server (unsent)

        def then(done: RxCompletion, payload: Payload) -> None:
            done.request_id = request_id
            result = done.result if isinstance(done.result, dict) else {}
            mrx_id = result.get("srv_open")
            if done.status == S.STATUS_SUCCESS and isinstance(mrx_id, int):
                key = name.path.lower()
                fcb = net_root.fcbs.get(key)
                if fcb is None:
                    fcb = Fcb(
                        net_root,
                        name.path,
                        directory=bool(result.get("directory")),
                        serial=next(self.buffering.fcb_serials),
                    )
                    net_root.fcbs[key] = fcb
                peer = self.state.peers.get(minirdr)
                srv_open = SrvOpen(
                    fcb,
                    minirdr,
                    mrx_id,
                    desired_access=create.desired_access if create else 0,
                    share_access=create.share_access if create else 0,
                    create_options=create.create_options if create else 0,
                    peer_pid=peer.pid if peer is not None else 0,
                    grant=peer.buffering if peer is not None else 0,
                )
                if done.information in (
                    CreateInformation.FILE_OVERWRITTEN,
                    CreateInformation.FILE_SUPERSEDED,
                    CreateInformation.FILE_CREATED,
                ):
                    self.caching.purge(fcb)  # whatever was cached of the file is gone
                fcb.srv_opens.append(srv_open)
                fobx = Fobx(fobx_id, srv_open, ident)
                srv_open.fobxs.append(fobx)
                self.handles.add(fobx)
                self.buffering.rebuffer(fcb)
                done.result = {**result, "fobx": fobx_id}
                self.caching.leases.granted(ident, ctx, fobx, done.result)
                live = self.answers.live.get((ident, request_id))
                if live is not None and live.cancelled is not None:
                    # cancelled while the mini-redirector opened it: nobody will use the handle
                    self.handles.release(fobx, ctx.origin, lambda done, payload: None)
                    done = RxCompletion(
                        request_id,
                        cancel_status(live.cancelled),
                        message="cancelled; the file was opened and closed again",
                    )
            elif done.status == S.STATUS_SUCCESS:
                done.status = S.STATUS_INVALID_NETWORK_RESPONSE
                done.message = f"{minirdr!r} answered a create without a srv_open id"
            else:
                fcb = net_root.fcbs.get(name.path.lower())
                if fcb is not None:
                    self.buffering.rebuffer(fcb)  # the open that changed the state did not happen
                resend = retry or unsent(done)
                left = self.answers.retry_left(ident, request_id, done) if resend else None
                if left is not None:  # its connection was lost: open on the one built again
                    ctx.request_id, ctx.timeout_ms = request_id, left
                    self.open(ident, ctx, name, 0)
                    return
            self.answers.to_client(ident, done, payload)

        learned = self._with_attributes(ctx, net_root, name.path, then)
        self.sending.send(minirdr, ctx, None, learned, net_root=net_root, owner=(ident, request_id))

    def _with_attributes(self, ctx: RxContext, net_root: NetRoot, path: str, then: Then) -> Then:
        """The attribute cache (core/attrcache.py) keeps what the create answers; one that may
        make, overwrite or supersede the file changes it and its folder first."""
        create = ctx.create
        if create is not None and create.disposition != CreateDisposition.FILE_OPEN:
            return self.caching.attrs.creating(net_root, path, then)
        return self.caching.attrs.learning(net_root, path, then)

    def create_again(self, ident: bytes, ctx: RxContext, name: UncName, vnr: VNetRoot) -> None:
        """Send a create to MRxCreate without collapsing it; when ``vnr`` is no longer the Good
        VNetRoot of ``name``, the name is resolved again first."""
        if self.state.prefix.v_net_root(name) is vnr and vnr.condition == Condition.GOOD:
            self.create_on(ident, ctx, name, vnr, collapse=False)
        else:
            self.open(ident, ctx, name, 0)

"""Connections (see docs/routines.md, Connections): the core resolves a name to its VNetRoot
through the prefix table and has the connection manager build what is missing
(RxConstructNetRoot). A request whose NetRoot is still being built waits on that NetRoot's
transition list, never on the core. A failed NetRoot answers with its status for a while,
doubling with every failure in a row; idle connections are finalized by the scavenger; a lost
connection is torn down and its handles orphaned, to be re-opened on the one built again."""

from __future__ import annotations

import logging
from collections.abc import Callable

from rdbss.core.answers import Answers
from rdbss.core.buffering import Buffering
from rdbss.core.peers import Peers
from rdbss.core.sending import Sending
from rdbss.core.services import CoreState
from rdbss.core.types import CONNMGR, Payload, finalize_note
from rdbss.model.names import UncName
from rdbss.model.structs import Condition, NetRoot, VNetRoot
from rdbss.wire.constants import IrpMj, Routine
from rdbss.wire.rxcontext import RxCompletion, RxContext
from rdbss.wire.status import NtStatus, NtStatusError, status_name

log = logging.getLogger("rdbss.core")

S = NtStatus


def wake(v_net_root: VNetRoot) -> None:
    """Run what waits on ``v_net_root``'s transition (it became Good or Bad, or was dropped)."""
    waiters, v_net_root.waiters = v_net_root.waiters, []
    for resume in waiters:
        assert callable(resume)
        resume()


class Connections:
    def __init__(
        self,
        state: CoreState,
        peers: Peers,
        answers: Answers,
        sending: Sending,
        buffering: Buffering,
    ) -> None:
        self.state = state
        self.prefix = state.prefix
        self.peers = peers
        self.answers = answers
        self.sending = sending
        self.buffering = buffering
        self.failures: dict[str, int] = {}  # NetRoot key -> failed constructions in a row

    def find_or_construct(self, name: UncName, resume: Callable[[], None]) -> VNetRoot | None:
        """The Good VNetRoot for ``name``, or None after parking ``resume`` on one being built."""
        now = self.state.clock()
        v_net_root = self.prefix.v_net_root(name)
        if v_net_root is not None:
            if v_net_root.condition == Condition.GOOD:
                return v_net_root
            if v_net_root.condition == Condition.IN_TRANSITION:
                v_net_root.waiters.append(resume)
                return None
            if v_net_root.condition == Condition.BAD and now < v_net_root.retry_at:
                raise NtStatusError(
                    v_net_root.status,
                    f"cannot connect to {name.net_root_prefix}: {v_net_root.message} "
                    "(failed recently; not retried yet)",
                )
        v_net_root = self.prefix.find_or_create_v_net_root(name)
        v_net_root.waiters.append(resume)
        v_net_root.transition(Condition.IN_TRANSITION)
        v_net_root.net_root.minirdr = None  # decided afresh by this construction
        self._construct(name, v_net_root)
        return None

    def park(
        self, ident: bytes, request_id: int, name: UncName, resume: Callable[[], None]
    ) -> None:
        """Remember where a client request waits for its connection (to cancel it there)."""
        live = self.answers.live.get((ident, request_id))
        v_net_root = self.prefix.v_net_root(name)
        if live is not None and v_net_root is not None and resume in v_net_root.waiters:
            live.parked = (v_net_root, resume)

    def _construct(self, name: UncName, vnr: VNetRoot) -> None:
        peers = self.peers
        candidates = peers.candidates(name.server)
        unknown = not candidates and not peers.departed_serving(name.server)
        if (unknown or CONNMGR not in peers.peers) and peers.expecting():
            # not "no such server" yet: who serves it may still be registering (a known server
            # whose mini-redirector went down is answered at once below)
            def again() -> None:
                if self.prefix.v_net_root(name) is vnr:
                    self._construct(name, vnr)
                else:
                    wake(vnr)  # dropped meanwhile: its waiters resolve the name again

            peers.awaiting.append(again)
            return

        def finish(status: int, message: str, minirdr: str | None, cache: bool = True) -> None:
            self._finish(name, vnr, status, message, minirdr, cache)

        if not candidates:
            down = peers.departed_serving(name.server)
            if down:
                # a network fault, not a bad name: answer at once and do not cache it
                finish(
                    S.STATUS_CONNECTION_DISCONNECTED,
                    f"mini-redirector {down[0]!r} is down (restarting?)",
                    None,
                    cache=False,
                )
                return
            finish(
                S.STATUS_BAD_NETWORK_PATH,
                f"no mini-redirector serves the server {name.server!r}",
                None,
            )
            return
        ctx = RxContext(
            request_id=0,
            major=IrpMj.CREATE,
            routine=Routine.RxConstructNetRoot,
            srv_call=name.server,
            net_root=name.share,
            args={"candidates": candidates},
        )

        def then(done: RxCompletion, payload: Payload) -> None:
            result = done.result if isinstance(done.result, dict) else {}
            winner = result.get("minirdr")
            finish(done.status, done.message, winner if isinstance(winner, str) else None)

        try:
            self.sending.send(
                CONNMGR, ctx, None, then, timeout_ms=self.state.settings.construct_timeout_ms
            )
        except NtStatusError as exc:
            finish(exc.status, f"connection manager: {exc.strerror}", None)

    def _finish(
        self,
        name: UncName,
        vnr: VNetRoot,
        status: int,
        message: str,
        minirdr: str | None,
        cache: bool,
    ) -> None:
        """A construction ended: the VNetRoot becomes Good or Bad and its waiters run."""
        if self.prefix.v_net_root(name) is not vnr:
            wake(vnr)  # dropped meanwhile: its waiters resolve the name again
            return
        net_root = vnr.net_root
        if status == S.STATUS_SUCCESS and minirdr in self.state.peers:
            net_root.minirdr = minirdr
            net_root.srv_call.minirdr = minirdr
            # the connection manager owns the SrvCall/NetRoot state machines; the core
            # mirrors their outcome on its own copies
            net_root.srv_call.condition = Condition.GOOD
            net_root.condition = Condition.GOOD
            waiters = vnr.transition(Condition.GOOD)
            self.failures.pop(name.key, None)
            log.info("connected %s via %s", name.net_root_prefix, minirdr)
        else:
            if status == S.STATUS_SUCCESS:
                status = S.STATUS_CONNECTION_DISCONNECTED
                message = f"{minirdr!r} went away during set-up"
            settings = self.state.settings
            vnr.retry_at = self.state.clock()
            if cache:  # a restarting mini-redirector is not the server failing: no back-off
                failures = min(self.failures.get(name.key, 0) + 1, 32)
                self.failures[name.key] = failures
                vnr.retry_at += min(
                    settings.negative_cache_s * 2.0 ** (failures - 1), settings.max_backoff_s
                )
            waiters = vnr.transition(Condition.BAD, status, message)
            self.answers.note_error(status, Routine.RxConstructNetRoot, message)
            log.warning(
                "connect failed: %s",
                message,
                extra={"share": name.net_root_prefix, "status": status_name(status)},
            )
        for resume in waiters:
            assert callable(resume)
            resume()

    def drop_v_net_root(self, v_net_root: VNetRoot) -> None:
        self.prefix.remove_v_net_root(v_net_root)
        wake(v_net_root)

    def forget_failures(self, server_claimed: Callable[[str], bool]) -> None:
        """A mini-redirector that registers (started, restarted, or reloaded with a new
        configuration) may serve what failed before: the shares it claims lose their failed
        state and back-off, so the next request tries again at once."""
        for v_net_root in self.prefix.v_net_roots():
            if v_net_root.condition != Condition.BAD:
                continue
            if not server_claimed(v_net_root.net_root.srv_call.name):
                continue
            self.failures.pop(v_net_root.net_root.prefix.lower(), None)
            v_net_root.retry_at = 0.0
            if not v_net_root.net_root.fcbs:
                self.drop_v_net_root(v_net_root)

    def peer_down(self, name: str) -> None:
        """The mini-redirector ``name`` went down: its SrvCalls and NetRoots go, and what waits
        on them resolves its name again."""
        for srv_call in self.prefix.srv_calls():
            if srv_call.minirdr == name:
                for v_net_root in self.prefix.remove_srv_call(srv_call):
                    wake(v_net_root)
        for v_net_root in self.prefix.v_net_roots():
            if v_net_root.net_root.minirdr == name:
                self.drop_v_net_root(v_net_root)

    def connection_lost(self, net_root: NetRoot, status: int, message: str) -> None:
        """A mini-redirector says the connection under a NetRoot is gone (server dropped it,
        session expired): drop the SrvCall and everything on it, orphan its handles (they are
        re-opened by path on next use) and have the connection manager build it again.

        Handles are orphaned even when the SrvCall was torn down already: a create answered
        after the loss made a handle on the dead connection, and it must be re-opened too."""
        srv_call = net_root.srv_call
        for fobx in self.state.fobxs.values():
            if fobx.fcb.net_root.srv_call is srv_call and fobx.orphaned_status == S.STATUS_SUCCESS:
                fobx.orphaned_status = status
        if self.prefix.srv_call(srv_call.name) is not srv_call:
            return  # already torn down
        log.warning("connection lost server=%s status=0x%08X %s", srv_call.name, status, message)
        self.answers.note_error(status, "connection", f"\\\\{srv_call.name}: {message}")
        self.buffering.connection_lost(srv_call)
        for v_net_root in self.prefix.remove_srv_call(srv_call):
            wake(v_net_root)
        if CONNMGR in self.state.peers:
            note = finalize_note(
                next(self.state.ids),
                srv_call.name,
                minirdr=net_root.minirdr or "",
                server=srv_call.name,
            )
            self.state.out.to_peer(CONNMGR, note)

    def scavenge(self, now: float) -> None:
        """Finalize connections idle for longer than ``idle_timeout_s``: Good NetRoots with no
        open file, and their SrvCall when it was the server's last NetRoot."""
        state = self.state
        idle = [
            v
            for v in self.prefix.v_net_roots()
            if v.condition == Condition.GOOD
            and not v.net_root.fcbs
            and now - v.net_root.last_used > state.settings.idle_timeout_s
        ]
        for v_net_root in idle:
            net_root = v_net_root.net_root
            srv_call = net_root.srv_call
            minirdr = net_root.minirdr
            log.info("scavenging idle connection %s (%s)", net_root.prefix, minirdr)
            self.prefix.remove_v_net_root(v_net_root)
            last = not any(v.net_root.srv_call is srv_call for v in self.prefix.v_net_roots())
            if minirdr is None or minirdr not in state.peers:
                continue
            for routine in (Routine.MRxFinalizeVNetRoot, Routine.MRxFinalizeNetRoot):
                if routine in state.peers[minirdr].routines:
                    note = RxContext(
                        request_id=0,
                        major=IrpMj.CLOSE,
                        routine=routine,
                        srv_call=srv_call.name,
                        net_root=net_root.name,
                        args={"force": False},
                    )
                    self.sending.send_quietly(minirdr, note)
            if last:
                self.prefix.remove_srv_call(srv_call)
                if CONNMGR in state.peers:
                    note = finalize_note(
                        next(state.ids),
                        srv_call.name,
                        minirdr=minirdr,
                        server=srv_call.name,
                        idle=True,
                    )
                    state.out.to_peer(CONNMGR, note)

"""The connection manager: owns SrvCall construction (MRxCreateSrvCall to every candidate, the
winner by provider order, MRxSrvCallWinnerNotify, MRxFinalizeSrvCall for the losers) and NetRoot
construction (MRxCreateVNetRoot on the winner).

It runs as a pykka actor in its own process; the bridge's I/O thread ``tell``s it every message.
All its calls to mini-redirectors go through the core's bus (``target`` names the peer), so the
core's deadlines apply to them too. Nothing here blocks: each step is a message and an answer.
A set-up has one deadline, the RxConstructNetRoot's (``[daemon] connect_timeout``): each set-up
routine gets what is left of it as its own (rdbss/minirdrs/setup.py).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pykka

from rdbss.actors.peer import PeerBridge
from rdbss.model.construction import SrvCallConstruction
from rdbss.model.idempotent import CONNECTION_LOST
from rdbss.model.structs import Condition
from rdbss.wire.constants import IrpMj, Routine
from rdbss.wire.rxcontext import Register, RxCompletion, RxContext
from rdbss.wire.status import NtStatus

log = logging.getLogger("rdbss.connmgr")

S = NtStatus
OnDone = Callable[[RxCompletion], None]


@dataclass(slots=True)
class SrvCallState:
    server: str
    condition: Condition = Condition.IN_TRANSITION
    winner: str | None = None
    status: int = S.STATUS_SUCCESS
    construction: SrvCallConstruction | None = None
    waiting: list[RxContext] = field(default_factory=list)  # RxConstructNetRoot requests
    deadline: float | None = None  # the set-up's (monotonic), from the request that began it


class ConnectionManager(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(self, bridge: PeerBridge) -> None:
        super().__init__()
        self.bridge = bridge
        self.srv_calls: dict[str, SrvCallState] = {}
        self._ids = itertools.count(1)
        self._waiting: dict[int, OnDone] = {}
        self._deadlines: dict[int, float] = {}  # RxConstructNetRoot id -> its deadline

    @staticmethod
    def registration(name: str) -> Register:
        return Register(
            name=name, kind="connmgr", routines=[], lowio_ops=[], servers=[], role="connmgr"
        )

    def on_stop(self) -> None:
        self.bridge.close_thread_socket()

    def on_failure(self, *args: Any) -> None:
        log.error("connection manager actor failed: %r", args)

    # ---------------------------------------------------------------- messages
    def on_receive(self, message: Any) -> None:
        msg, _payload = message
        try:
            if isinstance(msg, RxCompletion):
                on_done = self._waiting.pop(msg.request_id, None)
                if on_done is not None:
                    on_done(msg)
            elif isinstance(msg, RxContext):
                if msg.routine == Routine.RxConstructNetRoot:
                    self._construct_net_root(msg)
                elif msg.routine == Routine.RxFinalizeConnections:
                    args = msg.args or {}
                    server = args.get("server")
                    if isinstance(server, str):
                        force = not args.get("idle", False)
                        self._forget_server(server, str(args.get("minirdr", "")), force)
                    else:
                        self._forget_minirdr(str(args.get("minirdr", "")))
        except Exception:  # an exception in a tell() handler would stop the actor
            log.exception("connection manager failed on %r", msg)

    def _call(
        self,
        target: str,
        routine: Routine,
        on_done: OnDone,
        deadline: float | None = None,
        **fields: Any,
    ) -> None:
        request_id = next(self._ids)
        if deadline is not None:  # a set-up step: what is left of the set-up's deadline
            fields["timeout_ms"] = max(1, int((deadline - time.monotonic()) * 1000))
        ctx = RxContext(
            request_id=request_id, major=IrpMj.CREATE, routine=routine, target=target, **fields
        )
        self._waiting[request_id] = on_done
        self.bridge.post(ctx)

    def _answer(
        self, request: RxContext, status: int, message: str = "", winner: str | None = None
    ) -> None:
        result = {"minirdr": winner} if winner else None
        self._deadlines.pop(request.request_id, None)
        self.bridge.post(RxCompletion(request.request_id, status, result=result, message=message))

    # ---------------------------------------------------------------- SrvCall
    def _construct_net_root(self, request: RxContext) -> None:
        server = request.srv_call or ""
        candidates = [c for c in (request.args or {}).get("candidates", []) if isinstance(c, str)]
        self._deadlines[request.request_id] = time.monotonic() + request.timeout_ms / 1000.0
        key = server.lower()
        state = self.srv_calls.get(key)
        if state is not None and state.condition == Condition.GOOD:
            if state.winner in candidates:
                self._create_v_net_root(state, request, reused=True)
                return
            state = None  # the winner is gone: build the SrvCall again
        if state is not None and state.condition == Condition.IN_TRANSITION:
            state.waiting.append(request)
            return
        state = SrvCallState(server=server)
        state.waiting.append(request)
        state.construction = SrvCallConstruction(server, candidates)
        state.deadline = self._deadlines[request.request_id]
        self.srv_calls[key] = state
        log.info("constructing SrvCall %s candidates=%s", server, candidates)
        if not candidates:
            self._finish_srv_call(state)
            return
        for candidate in candidates:
            self._call(
                candidate,
                Routine.MRxCreateSrvCall,
                self._srv_call_callback(state, candidate),
                state.deadline,
                srv_call=server,
            )

    def _srv_call_callback(self, state: SrvCallState, candidate: str) -> OnDone:
        return lambda done: self._srv_call_answer(state, candidate, done)

    def _srv_call_answer(self, state: SrvCallState, candidate: str, done: RxCompletion) -> None:
        construction = state.construction
        if construction is None or construction.done:
            if done.status == S.STATUS_SUCCESS and candidate != state.winner:
                self._finalize_loser(state.server, candidate)
            return
        construction.record(candidate, done.status, done.message)
        if construction.done:
            self._finish_srv_call(state)

    def _finish_srv_call(self, state: SrvCallState) -> None:
        construction = state.construction
        assert construction is not None
        winner = construction.winner
        for loser in construction.losers:
            self._finalize_loser(state.server, loser)
        if winner is None:
            status, message = construction.failure
            self._srv_call_failed(state, status, message)
            return
        self._call(
            winner,
            Routine.MRxSrvCallWinnerNotify,
            lambda done: self._winner_answer(state, winner, done),
            state.deadline,
            srv_call=state.server,
            args={"winner": True},
        )

    def _finalize_loser(self, server: str, loser: str) -> None:
        log.info("finalizing losing SrvCall %s on %s", server, loser)
        self._call(
            loser,
            Routine.MRxFinalizeSrvCall,
            lambda done: None,
            srv_call=server,
            args={"force": False},
        )

    def _winner_answer(self, state: SrvCallState, winner: str, done: RxCompletion) -> None:
        if done.status != S.STATUS_SUCCESS:
            self._srv_call_failed(state, done.status, done.message)
            return
        state.condition = Condition.GOOD
        state.winner = winner
        log.info("SrvCall %s is good, winner %s", state.server, winner)
        waiting, state.waiting = state.waiting, []
        for request in waiting:
            self._create_v_net_root(state, request)

    def _srv_call_failed(self, state: SrvCallState, status: int, message: str) -> None:
        state.condition = Condition.BAD
        state.status = status
        log.warning("SrvCall %s failed status=0x%08X %s", state.server, status, message)
        waiting, state.waiting = state.waiting, []
        self.srv_calls.pop(state.server.lower(), None)  # the core caches the failure
        for request in waiting:
            self._answer(request, status, message)

    # ---------------------------------------------------------------- NetRoot / VNetRoot
    def _create_v_net_root(
        self, state: SrvCallState, request: RxContext, reused: bool = False
    ) -> None:
        """MRxCreateVNetRoot on the SrvCall's winner. On a ``reused`` SrvCall (built for an
        earlier request) whose connection turns out lost, the SrvCall is built again once and
        the VNetRoot asked again: a connection that dropped while idle is not an error of the
        share asked for now."""
        winner = state.winner
        assert winner is not None

        def answered(done: RxCompletion) -> None:
            lost = done.status in CONNECTION_LOST
            if lost or done.status == S.STATUS_IO_TIMEOUT:
                # the connection is gone, or the winner died or hung: build it afresh
                if self.srv_calls.get(state.server.lower()) is state:
                    del self.srv_calls[state.server.lower()]
                    if lost:
                        self._forget_server(state.server, winner, force=True)
                if lost and reused:
                    log.info("SrvCall %s was lost while idle; building it again", state.server)
                    self._construct_net_root(request)
                    return
            self._answer(request, done.status, done.message, winner)

        self._call(
            winner,
            Routine.MRxCreateVNetRoot,
            answered,
            self._deadlines.get(request.request_id),
            srv_call=state.server,
            net_root=request.net_root,
        )

    def _forget_server(self, server: str, minirdr: str, force: bool) -> None:
        """The connection to ``server`` was lost (force) or idle: finalize the mini-redirector's
        SrvCall (it drops the connection); the next request builds it again."""
        state = self.srv_calls.pop(server.lower(), None)
        winner = state.winner if state is not None else minirdr
        why = "lost" if force else "idle"
        log.info("connection to %s %s; finalizing its SrvCall on %s", server, why, winner)
        if winner:
            self._call(
                winner,
                Routine.MRxFinalizeSrvCall,
                lambda done: None,
                srv_call=server,
                args={"force": force},
            )

    def _forget_minirdr(self, minirdr: str) -> None:
        for key, state in list(self.srv_calls.items()):
            if state.winner == minirdr:
                del self.srv_calls[key]
                log.info("forgot SrvCall %s (mini-redirector %s went down)", state.server, minirdr)

"""The device Fcb (management): the core's own control codes (ping, status, a peer's end) and
those it hands to a mini-redirector (MRxDevFcbXXXControlFile: shares, faults), and requests a
peer sends to another (the connection manager calling a mini-redirector)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rdbss.core.answers import Answers
from rdbss.core.buffering import Buffering
from rdbss.core.sending import Sending
from rdbss.core.services import CoreState
from rdbss.core.types import Payload, Peer
from rdbss.wire.constants import FsctlCode, Routine
from rdbss.wire.rxcontext import RxCompletion, RxContext
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus

_SHARE_CONTROLS = frozenset(
    {FsctlCode.RDBSS_LIST_SHARES, FsctlCode.RDBSS_ADD_SHARE, FsctlCode.RDBSS_REMOVE_SHARE}
)
#: Management codes the core hands to a mini-redirector (MRxDevFcbXXXControlFile).
_MINIRDR_CONTROLS = _SHARE_CONTROLS | {FsctlCode.RDBSS_SET_FAULTS, FsctlCode.RDBSS_LIST_FAULTS}


class Device:
    def __init__(
        self,
        state: CoreState,
        answers: Answers,
        sending: Sending,
        buffering: Buffering,
        status: Callable[[], dict[str, Any]],
        peer_down: Callable[[str, int, str], None],
    ) -> None:
        self.state = state
        self.answers = answers
        self.sending = sending
        self.buffering = buffering
        self.status = status
        self.peer_down = peer_down

    def control(self, ident: bytes, ctx: RxContext) -> None:
        code = ctx.lowio.code if ctx.lowio else 0
        args = ctx.args or {}
        if code == FsctlCode.RDBSS_PING:
            self.answers.answer(ident, ctx, S.STATUS_SUCCESS, result={"pong": True})
        elif code == FsctlCode.RDBSS_STATUS:
            self.answers.answer(ident, ctx, S.STATUS_SUCCESS, result=self.status())
        elif code == FsctlCode.RDBSS_PEER_DOWN:
            name = args.get("name")
            if not isinstance(name, str):
                raise NtStatusError(S.STATUS_INVALID_PARAMETER, "peer_down needs a name")
            self.peer_down(name, S.STATUS_CONNECTION_DISCONNECTED, str(args.get("reason", "")))
            self.answers.answer(ident, ctx, S.STATUS_SUCCESS)
        elif code in _MINIRDR_CONTROLS:
            target = args.get("minirdr")
            if not isinstance(target, str) and code in _SHARE_CONTROLS:
                # share management defaults to the (first) local-folder mini-redirector
                target = next(
                    (p.name for p in self.state.peers.values() if p.kind == "local"), None
                )
            if target is None or target not in self.state.peers:
                raise NtStatusError(S.STATUS_BAD_NETWORK_NAME, f"no mini-redirector {target!r}")
            if code == FsctlCode.RDBSS_REMOVE_SHARE:
                share = str(args.get("share", "")).lower()
                for v_net_root in self.state.prefix.v_net_roots():
                    net_root = v_net_root.net_root
                    if net_root.minirdr == target and net_root.name.lower() == share:
                        self.buffering.close_delayed_on(net_root, None, "the share is removed")
            ctx.routine = Routine.MRxDevFcbXXXControlFile
            self.sending.send(
                target, ctx, None, self.answers.relay(ident, ctx), owner=(ident, ctx.request_id)
            )
        else:
            raise NtStatusError(
                S.STATUS_INVALID_DEVICE_REQUEST, f"unknown control code 0x{code:08X}"
            )

    def peer_request(self, peer: Peer, ctx: RxContext, payload: Payload) -> None:
        """A request from a peer (the connection manager calling a mini-redirector): route it
        to its target and route the answer back."""
        target = ctx.target
        origin_id = ctx.request_id
        source = peer.name
        if ctx.routine == Routine.RxFinalizeConnections or target is None:
            return

        def then(done: RxCompletion, payload: Payload) -> None:
            done.request_id = origin_id
            self.state.out.to_peer(source, done, payload)  # type: ignore[arg-type]

        try:
            self.sending.send(target, ctx, payload, then)
        except NtStatusError as exc:
            then(RxCompletion(origin_id, exc.status, message=exc.strerror or ""), None)

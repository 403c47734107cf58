"""The deadline of a connection set-up, shared by the network mini-redirectors. Pure code: the
clock is injected, nothing here touches a socket.

``[daemon] connect_timeout`` is the deadline of a whole set-up, from the first request on a
share that is not connected to the moment the share is usable. The core waits for a set-up
``connect_timeout + ANSWER_MARGIN_S``; the connection manager gives each set-up routine
(MRxCreateSrvCall, MRxSrvCallWinnerNotify, MRxCreateVNetRoot) what is left of that as its
RX_CONTEXT's ``timeout_ms``; a mini-redirector ends its part ``ANSWER_MARGIN_S`` before that
deadline, so its STATUS_IO_TIMEOUT, which names the server and the phase that did not finish
(TCP connect, negotiate, authenticate, tree connect / share check), reaches the core before the
core's own deadline would end the request with a less precise message.

A set-up that finishes after its deadline does not count: the mini-redirector closes what it
built and answers STATUS_IO_TIMEOUT (the core has given up on it, and a connection nobody asked
for must not be left behind).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rdbss.wire.rxcontext import RxContext
from rdbss.wire.status import NtStatus, NtStatusError

#: A set-up routine answers this long before its RX_CONTEXT's deadline (time for the answer to
#: travel back through the connection manager to the core).
ANSWER_MARGIN_S = 0.25
#: The least a set-up step is given, however little is left (a step that cannot start fails
#: with the deadline's own message instead).
MIN_STEP_S = 0.05

TCP_CONNECT = "TCP connect"
NEGOTIATE = "negotiate"
AUTHENTICATE = "authenticate"
TREE_CONNECT = "tree connect"
SHARE_CHECK = "share check"


def setup_timeout_ms(connect_timeout_s: float) -> int:
    """How long the core waits for a set-up: ``connect_timeout`` plus the answer's margin."""
    return round((connect_timeout_s + ANSWER_MARGIN_S) * 1000)


class SetupDeadline:
    """The deadline of one set-up routine and the phase it is in."""

    def __init__(
        self,
        server: str,
        seconds: float,
        clock: Callable[[], float] = time.monotonic,
        phase: str = TCP_CONNECT,
    ) -> None:
        self.server = server
        self.seconds = max(0.0, seconds)
        self.clock = clock
        self.at = clock() + self.seconds
        self.phase = phase

    @classmethod
    def of(
        cls,
        ctx: RxContext,
        server: str,
        phase: str = TCP_CONNECT,
        clock: Callable[[], float] = time.monotonic,
    ) -> SetupDeadline:
        """The deadline of a set-up routine: its RX_CONTEXT's, less the answer's margin."""
        return cls(server, ctx.timeout_ms / 1000.0 - ANSWER_MARGIN_S, clock, phase)

    def remaining(self) -> float:
        return max(0.0, self.at - self.clock())

    @property
    def passed(self) -> bool:
        return self.clock() >= self.at

    def enter(self, phase: str) -> float:
        """Start ``phase``: the seconds it may take; STATUS_IO_TIMEOUT when none are left."""
        self.phase = phase
        left = self.remaining()
        if left <= 0:
            raise self.expired()
        return max(MIN_STEP_S, left)

    def expired(self, phase: str | None = None) -> NtStatusError:
        """The STATUS_IO_TIMEOUT of this set-up, naming the server and the phase."""
        return NtStatusError(
            NtStatus.STATUS_IO_TIMEOUT,
            f"server {self.server!r} did not answer during {phase or self.phase}: the "
            "connection set-up passed its deadline ([daemon] connect_timeout)",
        )

    def check(self) -> None:
        """After a step finished: STATUS_IO_TIMEOUT if it finished too late."""
        if self.passed:
            raise self.expired()

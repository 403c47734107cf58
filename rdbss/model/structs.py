"""The RDBSS structures the core keeps: SrvCall, NetRoot, VNetRoot, Fcb, SrvOpen, Fobx, with the
RX_BLOCK_CONDITION state machine (see docs/routines.md, Connections and Create, collapsing and
close). Pure code: no sockets, no clocks of its own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from rdbss.wire.status import NtStatus


class Condition(IntEnum):
    UNINITIALIZED = 0
    IN_TRANSITION = 1
    CLOSING = 2
    GOOD = 3
    BAD = 4
    CLOSED = 5

    @property
    def stable(self) -> bool:
        return self >= Condition.GOOD


class TransitionError(Exception):
    """An illegal condition change (a programming error, never a user error)."""


_ALLOWED: dict[Condition, frozenset[Condition]] = {
    Condition.UNINITIALIZED: frozenset({Condition.IN_TRANSITION}),
    Condition.IN_TRANSITION: frozenset({Condition.GOOD, Condition.BAD, Condition.CLOSING}),
    Condition.GOOD: frozenset({Condition.CLOSING, Condition.BAD, Condition.IN_TRANSITION}),
    Condition.BAD: frozenset({Condition.IN_TRANSITION, Condition.CLOSING}),
    Condition.CLOSING: frozenset({Condition.CLOSED}),
    Condition.CLOSED: frozenset(),
}


@dataclass(slots=True)
class Node:
    """Common part of the connection structures: condition, status and a transition wait list."""

    condition: Condition = Condition.UNINITIALIZED
    status: int = NtStatus.STATUS_SUCCESS
    message: str = ""  # readable reason for a Bad condition
    retry_at: float = 0.0  # when a Bad node may be tried again (monotonic seconds)
    waiters: list[object] = field(default_factory=list)

    def transition(
        self, to: Condition, status: int = NtStatus.STATUS_SUCCESS, message: str = ""
    ) -> list[object]:
        """Move to ``to``; when the new condition is stable, hand back (and clear) the waiters."""
        if to not in _ALLOWED[self.condition]:
            raise TransitionError(f"{self.condition.name} -> {to.name}")
        self.condition = to
        self.status = status
        self.message = message
        if to.stable:
            waiting, self.waiters = self.waiters, []
            return waiting
        return []


@dataclass(slots=True)
class SrvCall(Node):
    name: str = ""  # server name as first given
    minirdr: str | None = None  # the winner


@dataclass(slots=True)
class NetRoot(Node):
    srv_call: SrvCall = field(default_factory=SrvCall)
    name: str = ""  # share name
    minirdr: str | None = None
    fcbs: dict[str, Fcb] = field(default_factory=dict)  # lower-cased share-relative path -> Fcb
    last_used: float = 0.0  # monotonic time of the last open or close on it (the scavenger)

    @property
    def prefix(self) -> str:
        return f"\\\\{self.srv_call.name}\\{self.name}"


@dataclass(slots=True)
class VNetRoot(Node):
    """A user's view of a NetRoot (credentials, deeper root). One default view per NetRoot today."""

    net_root: NetRoot = field(default_factory=NetRoot)
    user: str | None = None


@dataclass(slots=True)
class Fcb:
    net_root: NetRoot
    path: str  # share-relative
    directory: bool = False
    srv_opens: list[SrvOpen] = field(default_factory=list)
    delete_pending: bool = False
    serial: int = 0  # the core's number for it (keys its cached blocks)
    buffering: int = 0  # FCB_STATE buffering bits now in force (model/buffering.py)
    locked: bool = False  # a byte-range lock was asked for: no data caching from then on
    generation: int = 0  # bumped by every change of its data: a read older than it fills nothing
    # write-behind (WRITEBUFFERING): acknowledged writes not sent yet, in order
    dirty: list[tuple[int, bytearray]] = field(default_factory=list)  # (offset, data)
    dirty_bytes: int = 0
    dirty_since: float = 0.0
    dirty_fobx: Fobx | None = None  # the handle that wrote them (the only one open)
    flushing: int = 0  # deferred writes sent and not completed
    flush_waiters: list[Callable[[], None]] = field(default_factory=list)
    write_error: tuple[int, str] | None = None  # a deferred write failed: the next request says so

    @property
    def handles(self) -> int:
        return sum(len(so.fobxs) for so in self.srv_opens)

    @property
    def key(self) -> str:
        return self.path.lower()


@dataclass(slots=True)
class SrvOpen:
    fcb: Fcb
    minirdr: str
    mrx_id: int  # the mini-redirector's own id for this open
    desired_access: int = 0
    share_access: int = 0
    create_options: int = 0
    condition: Condition = Condition.GOOD
    fobxs: list[Fobx] = field(default_factory=list)
    peer_pid: int = 0  # the mini-redirector process that holds it (its state dies with it)
    grant: int = 0  # the buffering bits its mini-redirector granted (Register.buffering)
    close_delayed_at: float | None = None  # CLOSE_DELAYED since then: no handle, kept open
    collapsed: int = 0  # opens that reused it instead of a new MRxCreate


@dataclass(slots=True)
class Fobx:
    """One client handle."""

    id: int
    srv_open: SrvOpen
    owner: bytes  # the client connection (ZeroMQ identity) that opened it
    orphaned_status: int = NtStatus.STATUS_SUCCESS  # non-success once its SrvOpen is lost
    reopen_failed: bool = False  # re-opening by path failed for good: the handle stays lost
    enumerated: bool = False  # it has queried its directory (an enumeration is under way)

    @property
    def fcb(self) -> Fcb:
        return self.srv_open.fcb

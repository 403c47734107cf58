"""The types and small helpers every part of the core shares: the settings, a registered
peer, a request sent to a peer, a client request not answered yet, the outbox the I/O side
provides, and the constants of batching and compounds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rdbss.model.structs import NetRoot, SrvOpen, VNetRoot
from rdbss.wire.constants import IrpMj, Routine, RxFlags
from rdbss.wire.rxcontext import (
    CompletionBundle,
    Compound,
    CompoundCompletion,
    Heartbeat,
    RxCancel,
    RxCompletion,
    RxContext,
)
from rdbss.wire.status import NtStatus, status_name

S = NtStatus
Payload = Any  # bytes | memoryview | zmq.Frame: whatever the transport hands us, passed through
Then = Callable[[RxCompletion, Payload], None]

CONNMGR = "connmgr"
#: Requests held back for one mini-redirector in a batch leave once this many wait, so that it
#: works on them while the core reads the rest (a pipeline instead of turns), while a compound
#: of 512 items or more still has several parts in flight.
CORK_ITEMS = 128
#: Ids the core gives the items of a client's compound: above any id a client can send (the
#: codec caps integers at 2**64 - 1), so their answers are told apart from real ones.
SUB_ID_BASE = 1 << 64
#: RxFlags as plain ints: IntFlag arithmetic costs a microsecond on every request
RELATED = int(RxFlags.RELATED)
BUNDLE_OK = int(RxFlags.BUNDLE_OK)


class Outbox(Protocol):
    def to_client(
        self,
        ident: bytes,
        done: RxCompletion | CompoundCompletion | CompletionBundle,
        payload: Payload = None,
    ) -> None: ...

    def to_peer(
        self,
        name: str,
        msg: RxContext | RxCancel | Heartbeat | Compound,
        payload: Payload = None,
    ) -> bool:
        """Send to a registered peer; False when it cannot be reached."""
        ...


@dataclass(slots=True)
class CoreSettings:
    provider_order: list[str] = field(default_factory=list)
    negative_cache_s: float = 2.0  # how long a failed NetRoot answers with its status...
    max_backoff_s: float = 30.0  # ...doubling with every failure in a row, up to this
    idle_timeout_s: float = 300.0  # a connection with no open file idle this long is finalized
    max_inflight_per_client: int = 4096
    max_handles_per_client: int = 65536
    sweep_interval_s: float = 5.0  # how often handles of vanished client processes are closed
    peer_timeout_s: float = 3.0  # no heartbeat for this long: the peer is down
    construct_timeout_ms: int = 30_250  # a set-up: connect_timeout + the answer's margin
    max_timeout_ms: int = 600_000
    close_delay_s: float = 5.0  # a closed SrvOpen is kept this long for a re-open (0: never)
    max_delayed_closes: int = 64  # per SrvCall (MaximumNumberOfCloseDelayedFiles)
    cache_bytes: int = 64 << 20  # the read cache, every Fcb together
    write_behind_s: float = 0.0  # WRITEBUFFERING: deferred writes go out after this (0: never)
    dirty_bytes: int = 16 << 20  # deferred writes, every Fcb together
    attr_cache_entries: int = 4096  # files whose attributes are kept (model/attrcache.py)
    attr_max_age_s: float = 30.0  # how long a kept attribute answers a stat
    cancel_grace_s: float = 1.0  # a cancelled request's peer has this long to confirm it
    # the peers the configuration names (connmgr, mini-redirectors): until each registered, or
    # registration_grace_s after the core started, a name no peer serves yet waits for them
    expected_peers: tuple[str, ...] = ()
    registration_grace_s: float = 10.0


@dataclass(slots=True)
class Peer:
    name: str
    role: str
    kind: str
    routines: frozenset[str]
    lowio_ops: frozenset[int]
    servers: list[str]
    pid: int
    registered_at: float
    last_seen: float
    requests: int = 0
    pending: int = 0  # requests it holds, as its last heartbeat said (queued + STATUS_PENDING)
    host: str = ""
    buffering: int = 0  # the FCB_STATE bits it grants (Register.buffering)

    def claims(self, server: str) -> bool:
        s = server.lower()
        return any(claim == "*" or claim.lower() == s for claim in self.servers)


@dataclass(slots=True)
class Pending:
    """A request the core sent to a peer and is waiting on."""

    peer: str
    deadline: float
    then: Then
    origin: str | None
    routine: str
    net_root: NetRoot | None = None  # the connection the request used, if any
    started: float = 0.0
    owner: tuple[bytes, int] | None = None  # (client, its request id) when sent on its behalf
    cancel_reason: str | None = None  # set once an RxCancel went to the peer


@dataclass(slots=True)
class LiveRequest:
    """A client request not answered yet: where it waits, so a cancel can find it."""

    ident: bytes
    request_id: int  # the client's own id
    core_id: int | None = None  # the request the core last sent on its behalf
    parked: tuple[VNetRoot, Callable[[], None]] | None = None  # waiting for a connection
    cancelled: str | None = None  # the cancel reason, once cancelled
    deadline: float = 0.0  # when its client stops waiting (monotonic seconds)
    retries: int = 0  # times sent again after its connection was lost (model/idempotent.py)


@dataclass(slots=True)
class RecentError:
    at: float
    status: int
    routine: str
    message: str


def cancel_status(reason: str) -> int:
    """What a cancelled request ends with: a passed deadline is a timeout, anything else (the
    client asked, the client is gone) STATUS_CANCELLED."""
    return S.STATUS_IO_TIMEOUT if reason == "deadline" else S.STATUS_CANCELLED


def event(ctx: RxContext, status: int | None = None) -> dict[str, object]:
    """The structured keys of a log event about a request (rdbss.logs.EVENT_KEYS)."""
    keys: dict[str, object] = {"req": ctx.origin}
    if ctx.path and ctx.path.startswith("\\\\"):
        keys["share"] = "\\".join(ctx.path.split("\\")[:4])
    if status is not None:
        keys["status"] = status_name(status)
    return keys


def address(
    ctx: RxContext, routine: Routine, net_root: NetRoot, path: str, fobx: int | None
) -> None:
    """Make a client's create the routine's call on ``path`` of ``net_root``."""
    ctx.routine = routine
    ctx.srv_call = net_root.srv_call.name
    ctx.net_root = net_root.name
    ctx.path = path
    ctx.fobx = fobx


def as_sent(
    ctx: RxContext,
    request_id: int,
    path: str | None,
    flags: int,
    fobx: int | None,
    timeout_ms: int,
) -> None:
    """Undo what the core wrote on a client's request on its way (``address``, the SrvOpen, the
    core's id), so it can be sent again as the client sent it, within ``timeout_ms``."""
    ctx.request_id, ctx.path, ctx.flags, ctx.fobx = request_id, path, flags, fobx
    ctx.routine = ctx.srv_open = ctx.srv_call = ctx.net_root = None
    ctx.timeout_ms = timeout_ms


def srv_open_context(srv_open: SrvOpen, major: int, routine: Routine, **fields: Any) -> RxContext:
    """A request of the core's own about one SrvOpen (cleanup, close, buffering change): the
    SrvOpen's id and the names of its Fcb, NetRoot and SrvCall filled in."""
    fcb = srv_open.fcb
    return RxContext(
        request_id=0,
        major=major,
        routine=routine,
        srv_open=srv_open.mrx_id,
        srv_call=fcb.net_root.srv_call.name,
        net_root=fcb.net_root.name,
        path=fcb.path,
        **fields,
    )


def finalize_note(request_id: int, srv_call: str | None = None, **args: Any) -> RxContext:
    """RxFinalizeConnections for the connection manager: what to tear down (``args``)."""
    return RxContext(
        request_id=request_id,
        major=IrpMj.FILE_SYSTEM_CONTROL,
        routine=Routine.RxFinalizeConnections,
        srv_call=srv_call,
        args=args,
    )


def as_bytes(payload: Payload) -> bytes:
    """The bytes of a payload (a zmq.Frame, memoryview or bytes)."""
    if isinstance(payload, bytes):
        return payload
    data = getattr(payload, "bytes", None)
    if isinstance(data, bytes):
        return data
    return bytes(payload)

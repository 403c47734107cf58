"""The RDBSS core: resolves names through the prefix table, keeps the Fcb/SrvOpen/Fobx tables,
forwards routines to the right mini-redirector, tracks every pending request with a deadline and
completes it when the answer arrives (STATUS_PENDING semantics).

It never blocks: a request whose NetRoot is still being set up waits on that NetRoot's transition
list, not on the core. Open collapsing, delayed close, the read cache and write-behind live in
core_buffering.py (``BufferingMixin``); this module calls them at its hooks.

This class holds no sockets; ``CoreServer`` (core_server.py) feeds it messages and carries out
what it sends through the ``Outbox``.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from rdbss.actors.bus import client_alive
from rdbss.actors.core_buffering import BufferingMixin, srv_open_context
from rdbss.actors.metrics import NullMetrics
from rdbss.model.buffering import (
    FcbState,
    conflicts,
    describe,
)
from rdbss.model.dispatch import is_query_open, routine_for
from rdbss.model.idempotent import CONNECTION_LOST, is_idempotent, may_retry, replayable
from rdbss.model.names import UncName, parse_unc
from rdbss.model.prefix import PrefixTable
from rdbss.model.sharing import check_create_parameters, check_share_access
from rdbss.model.structs import Condition, Fcb, Fobx, NetRoot, SrvOpen, VNetRoot
from rdbss.shm import Maps
from rdbss.wire.codec import DEFAULT_LIMITS
from rdbss.wire.constants import (
    READ_ACCESS,
    WRITE_ACCESS,
    CreateDisposition,
    CreateInformation,
    FileInformationClass,
    FsctlCode,
    IrpMj,
    LowIoOp,
    Routine,
    RxFlags,
)
from rdbss.wire.framing import bundles
from rdbss.wire.rxcontext import (
    LEAVING,
    REGISTERED_NEW,
    REGISTERED_STILL,
    UNKNOWN_PEER,
    CompletionBundle,
    Compound,
    CompoundCompletion,
    CreateParameters,
    Heartbeat,
    LowIoParameters,
    Register,
    RxCancel,
    RxCompletion,
    RxContext,
)
from rdbss.wire.status import NETWORK_ERRORS, NtStatus, NtStatusError, status_name

log = logging.getLogger("rdbss.core")

#: Requests held back for one mini-redirector in a batch leave once this many wait, so that it
#: works on them while the core reads the rest (a pipeline instead of turns). 128, not 32:
#: fewer messages each way (the mini-redirector's CPU per read in compounds 8.8-9.0 -> 7.1 us,
#: per pipelined read 48.6-51.1 -> 42.4-47.6 us across the processes; alternating runs), and
#: still four parts in flight for a compound of 512 items or more
CORK_ITEMS = 128
#: RxFlags as plain ints: IntFlag arithmetic costs a microsecond on every request
_RELATED = int(RxFlags.RELATED)
_BUNDLE_OK = int(RxFlags.BUNDLE_OK)

S = NtStatus
Payload = Any  # bytes | memoryview | zmq.Frame: whatever the transport hands us, passed through
Then = Callable[[RxCompletion, Payload], None]

CONNMGR = "connmgr"
_MAX_ABANDONED = 1024  # abandoned creates remembered, to close what they open if they succeed


_SHARE_CONTROLS = frozenset(
    {FsctlCode.RDBSS_LIST_SHARES, FsctlCode.RDBSS_ADD_SHARE, FsctlCode.RDBSS_REMOVE_SHARE}
)
#: Management codes the core hands to a mini-redirector (MRxDevFcbXXXControlFile).
_MINIRDR_CONTROLS = _SHARE_CONTROLS | {FsctlCode.RDBSS_SET_FAULTS, FsctlCode.RDBSS_LIST_FAULTS}

#: Error statuses that are part of normal operation, not worth showing as recent errors.
_ORDINARY = frozenset(
    {
        S.STATUS_END_OF_FILE,
        S.STATUS_NO_SUCH_FILE,
        S.STATUS_OBJECT_NAME_NOT_FOUND,
        S.STATUS_OBJECT_NAME_COLLISION,
    }
)


#: Ids the core gives the items of a client's compound: above any id a client can send (the
#: codec caps integers at 2**64 - 1), so their answers are told apart from real ones.
SUB_ID_BASE = 1 << 64

#: Related items that may travel in the same message as their create (the mini-redirector
#: resolves the handle itself); others wait for the create's answer.
_RELATED_IN_BATCH = frozenset(
    {
        IrpMj.READ,
        IrpMj.WRITE,
        IrpMj.QUERY_INFORMATION,
        IrpMj.QUERY_VOLUME_INFORMATION,
        IrpMj.QUERY_EA,
        IrpMj.FLUSH_BUFFERS,
        IrpMj.CLOSE,
    }
)


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


def _event(ctx: RxContext, status: int | None = None) -> dict[str, object]:
    """The structured keys of a log event about a request (rdbss.logs.EVENT_KEYS)."""
    event: dict[str, object] = {"req": ctx.origin}
    if ctx.path and ctx.path.startswith("\\\\"):
        event["share"] = "\\".join(ctx.path.split("\\")[:4])
    if status is not None:
        event["status"] = status_name(status)
    return event


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


def _cancel_status(reason: str) -> int:
    """What a cancelled request ends with: a passed deadline is a timeout, anything else (the
    client asked, the client is gone) STATUS_CANCELLED."""
    return S.STATUS_IO_TIMEOUT if reason == "deadline" else S.STATUS_CANCELLED


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
class _Chain:
    """A create in a client's compound and the related items after it."""

    create: RxContext
    peer: str | None = None  # set when the create went out in the current batch to this peer
    status: int | None = None  # the create's status, once answered
    fobx: int | None = None  # its handle, once it succeeded
    deferred: list[tuple[int, RxContext, Payload]] = field(default_factory=list)


def _address(
    ctx: RxContext, routine: Routine, net_root: NetRoot, path: str, fobx: int | None
) -> None:
    """Make a client's create the routine's call on ``path`` of ``net_root``."""
    ctx.routine = routine
    ctx.srv_call = net_root.srv_call.name
    ctx.net_root = net_root.name
    ctx.path = path
    ctx.fobx = fobx


def _stat_pair(items: list[RxContext], index: int) -> bool:
    """Whether the create at ``index`` is followed by its related close and nothing after that
    acts on its handle (no related item before the next create): a candidate query open."""
    if index + 1 >= len(items):
        return False
    close = items[index + 1]
    if close.major != IrpMj.CLOSE or not close.flags & _RELATED:
        return False
    for item in items[index + 2 :]:
        if item.major == IrpMj.CREATE:
            return True
        if item.flags & _RELATED:
            return False
    return True


@dataclass(slots=True)
class _CompoundState:
    """A client's compound under way: one answer slot per item."""

    ident: bytes
    request_id: int
    item_ids: list[int]
    results: list[RxCompletion | None]
    payloads: dict[int, Payload] = field(default_factory=dict)
    chains: dict[int, _Chain] = field(default_factory=dict)  # create's index -> chain
    left: int = 0
    # a compound that may be sent again whole after a lost connection (model/idempotent.py):
    # its items, what the first attempt changes in them, its deadline and retries so far
    items: list[RxContext] | None = None
    sent_as: list[tuple[int, str | None, int, int | None]] = field(default_factory=list)
    origin: str | None = None
    deadline: float = 0.0
    retries: int = 0


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
    cancel_grace_s: float = 1.0  # a cancelled request's peer has this long to confirm it
    # the peers the configuration names (connmgr, mini-redirectors): until each registered, or
    # registration_grace_s after the core started, a name no peer serves yet waits for them
    expected_peers: tuple[str, ...] = ()
    registration_grace_s: float = 10.0


@dataclass(slots=True)
class RecentError:
    at: float
    status: int
    routine: str
    message: str


class RdbssCore(BufferingMixin):
    def __init__(
        self,
        outbox: Outbox,
        clock: Callable[[], float],
        settings: CoreSettings,
        metrics: NullMetrics | None = None,
    ) -> None:
        self.out = outbox
        self.metrics = metrics or NullMetrics()
        self.clock = clock
        self.settings = settings
        self.prefix = PrefixTable()
        self.peers: dict[str, Peer] = {}
        self.departed: dict[str, Peer] = {}  # went down; the supervisor brings them back
        self._failures: dict[str, int] = {}  # NetRoot key -> failed constructions in a row
        self._started = clock()
        self._awaiting_peers: list[Callable[[], None]] = []  # set-ups waiting for registrations
        self._handles_of: dict[bytes, int] = {}  # client -> open handles
        # local clients: their process is gone; remote ones: the server probes them
        self.is_client_alive: Callable[[bytes], bool] = client_alive
        self._inflight_of: dict[bytes, int] = {}  # client -> requests under way
        self._next_sweep = 0.0
        self._next_scavenge = 0.0
        self.fobxs: dict[int, Fobx] = {}
        self.pending: dict[int, Pending] = {}
        self._live: dict[tuple[bytes, int], LiveRequest] = {}  # client requests not answered
        # creates answered without their mini-redirector (deadline, cancel): core id -> where
        # they went, so an open that still succeeds later is closed again
        self._abandoned_creates: dict[int, tuple[str, NetRoot]] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._ids = itertools.count(1)
        self._fobx_ids = itertools.count(1)
        self.stopping = False
        self.completed = 0
        self.recent_errors: list[RecentError] = []
        self._init_buffering(settings)
        self.shared = Maps()  # client arenas, for writes whose bytes must leave them (rdbss.shm)
        # compounds: messages to mini-redirectors held back while one is processed (sent as one
        # Compound per peer when the outermost batch ends), and the clients' compounds under way
        self._cork: dict[str, list[tuple[RxContext, Payload]]] | None = None
        self._cork_depth = 0
        self._cancels_after: list[tuple[str, RxCancel]] = []  # sent once the cork is flushed
        # answers held back in a batch, per client that takes them bundled (RxFlags.BUNDLE_OK)
        self._answers: dict[bytes, list[tuple[RxCompletion, Payload]]] | None = None
        self._bundle_ok: set[bytes] = set()
        self._sub_ids = itertools.count(SUB_ID_BASE)
        self._subs: dict[int, tuple[_CompoundState, int]] = {}

    # ------------------------------------------------------------------ entry points (I/O side)
    def on_client(self, ident: bytes, ctx: RxContext | Compound, payload: Payload) -> None:
        ctx.origin = f"{ident.hex()[-6:]}:{ctx.request_id}"
        inflight = self._inflight_of.get(ident, 0)
        self._inflight_of[ident] = inflight + 1
        if isinstance(ctx, Compound):
            self._on_compound(ident, ctx, inflight)
            return
        self._live[(ident, ctx.request_id)] = LiveRequest(
            ident, ctx.request_id, deadline=self.clock() + ctx.timeout_ms / 1000.0
        )
        if ctx.flags & _BUNDLE_OK:
            self._bundle_ok.add(ident)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("request major=0x%02x fobx=%s", ctx.major, ctx.fobx, extra=_event(ctx))
        try:
            if inflight >= self.settings.max_inflight_per_client:
                raise NtStatusError(
                    S.STATUS_INSUFFICIENT_RESOURCES,
                    f"too many requests in flight from this client "
                    f"(limit {self.settings.max_inflight_per_client})",
                )
            self._dispatch(ident, ctx, payload)
        except NtStatusError as exc:
            self._answer(ident, ctx, exc.status, message=exc.strerror or "")

    def on_cancel(self, ident: bytes, cancel: RxCancel) -> None:
        """A client cancels one of its own requests (an IRP cancel). Only that client's requests
        are looked up; an unknown, finished or already cancelled one is ignored."""
        live = self._live.get((ident, cancel.request_id))
        if live is None or live.cancelled is not None:
            log.debug("cancel of no pending request req=%s:%d", ident.hex()[-6:], cancel.request_id)
            return
        self._cancel(live, cancel.reason)

    def _cancel(self, live: LiveRequest, reason: str) -> None:
        """RX_CONTEXT_FLAG_CANCELLED: a request parked on a connection is answered at once; one
        held by a mini-redirector is cancelled there (its cancel routine, or it is never run)
        and answered by the mini-redirector, or after ``cancel_grace_s``."""
        live.cancelled = reason
        origin = f"{live.ident.hex()[-6:]}:{live.request_id}"
        log.info("cancel req=%s reason=%s", origin, reason)
        status = _cancel_status(reason)
        if live.parked is not None:
            v_net_root, resume = live.parked
            live.parked = None
            if resume in v_net_root.waiters:
                v_net_root.waiters.remove(resume)
                self._to_client(
                    live.ident,
                    RxCompletion(
                        live.request_id, status, message="cancelled while waiting to connect"
                    ),
                )
                return
        pending = self.pending.get(live.core_id) if live.core_id is not None else None
        if pending is not None and pending.cancel_reason is None:
            assert live.core_id is not None
            self._cancel_pending(live.core_id, pending, reason)
        # else: nothing the core can stop (a close under way): it completes as usual

    def _cancel_pending(self, core_id: int, pending: Pending, reason: str) -> None:
        """Tell the peer holding a request to drop it, and bound how long the core waits for it."""
        pending.cancel_reason = reason
        peer = self.peers.get(pending.peer)
        if peer is not None and peer.role == "minirdr":
            cancel = RxCancel(core_id, reason)
            if self._cork is not None:  # after the request it names, which may be corked
                self._cancels_after.append((pending.peer, cancel))
            else:
                self.out.to_peer(pending.peer, cancel)
        if core_id not in self.pending:
            return  # already answered (its deadline passed): only the peer had to hear it
        grace = self.clock() + self.settings.cancel_grace_s
        if grace < pending.deadline:
            pending.deadline = grace
            heapq.heappush(self._deadlines, (grace, core_id))

    def _park(
        self, ident: bytes, request_id: int, name: UncName, resume: Callable[[], None]
    ) -> None:
        """Remember where a client request waits for its connection (to cancel it there)."""
        live = self._live.get((ident, request_id))
        v_net_root = self.prefix.v_net_root(name)
        if live is not None and v_net_root is not None and resume in v_net_root.waiters:
            live.parked = (v_net_root, resume)

    def _dispatch(self, ident: bytes, ctx: RxContext, payload: Payload) -> None:
        """Route one client request (or compound item); raises NtStatusError to refuse it."""
        if self.stopping and ctx.major != IrpMj.CLOSE:
            raise NtStatusError(S.STATUS_REDIRECTOR_NOT_STARTED, "the daemon is stopping")
        if (
            ctx.major == IrpMj.CREATE
            and self._handles_of.get(ident, 0) >= self.settings.max_handles_per_client
        ):
            raise NtStatusError(
                S.STATUS_TOO_MANY_OPENED_FILES,
                f"too many open handles for this client "
                f"(limit {self.settings.max_handles_per_client})",
            )
        if ctx.major == IrpMj.CREATE:
            self._create(ident, ctx)
        elif ctx.fobx is None and ctx.major in (
            IrpMj.FILE_SYSTEM_CONTROL,
            IrpMj.DEVICE_CONTROL,
        ):
            self._device_control(ident, ctx)
        else:
            self._file_request(ident, ctx, payload)

    def on_peer(self, name: str, msg: Any, payload: Payload) -> None:
        now = self.clock()
        if isinstance(msg, Register):
            self._register(name, msg, now)
            return
        peer = self.peers.get(name)
        if peer is None:
            # unknown (e.g. the core restarted): ask it to register again
            self.out.to_peer(name, Heartbeat(name="core", seq=UNKNOWN_PEER))
            return
        peer.last_seen = now
        if isinstance(msg, Heartbeat):
            if msg.seq == LEAVING:
                self.peer_down(name, S.STATUS_CONNECTION_DISCONNECTED, "the process is stopping")
                return
            peer.pending = msg.pending
            self.out.to_peer(name, Heartbeat(name="core", seq=msg.seq))
        elif isinstance(msg, RxCompletion):
            self._complete(msg, payload)
        elif isinstance(msg, CompoundCompletion):
            # a mini-redirector's answer to a batch: each item completes as if alone; what the
            # continuations send meanwhile goes out batched again
            payload_of = dict(zip(msg.payload_items, msg.payloads, strict=True))
            with self.batch():
                for index, item in enumerate(msg.items):
                    self._complete(item, payload_of.get(index))
        elif isinstance(msg, RxContext):
            self._peer_request(peer, msg, payload)

    def tick(self) -> None:
        """Expire deadlines and silent peers. Call often (every poll wake-up)."""
        now = self.clock()
        if self._awaiting_peers and not self._expecting_peers():
            self._wake_awaiting_peers()  # the grace is over: they fail as usual now
        while self._deadlines and self._deadlines[0][0] <= now:
            _, core_id = heapq.heappop(self._deadlines)
            pending = self.pending.get(core_id)
            if pending is None or pending.deadline > now:
                continue  # answered, or an entry its cancel's grace replaced
            del self.pending[core_id]
            if pending.cancel_reason in (None, "deadline"):
                log.warning(
                    "request timed out req=%s routine=%s peer=%s",
                    pending.origin,
                    pending.routine,
                    pending.peer,
                )
                if pending.cancel_reason is None:
                    self._cancel_pending(core_id, pending, "deadline")  # drop the work
                done = RxCompletion(
                    core_id,
                    S.STATUS_IO_TIMEOUT,
                    message=f"{pending.routine} on {pending.peer!r} did not answer in time",
                )
            else:
                done = RxCompletion(
                    core_id,
                    _cancel_status(pending.cancel_reason),
                    message=f"{pending.routine} cancelled ({pending.cancel_reason}); "
                    f"{pending.peer!r} did not confirm in time, its answer will be discarded",
                )
            if pending.routine == Routine.MRxCreate and pending.net_root is not None:
                self._abandoned_creates[core_id] = (pending.peer, pending.net_root)
                if len(self._abandoned_creates) > _MAX_ABANDONED:
                    del self._abandoned_creates[next(iter(self._abandoned_creates))]
            self._run_then(pending, done, None)
        limit = now - self.settings.peer_timeout_s
        for peer in list(self.peers.values()):
            if peer.last_seen < limit:
                self.peer_down(peer.name, S.STATUS_IO_TIMEOUT, "stopped answering heartbeats")
        if self._dirty:
            self.flush_deferred_writes(now)
        if self._delayed:
            self.scavenge_delayed_closes(now)
        if now >= self._next_sweep:
            self._next_sweep = now + self.settings.sweep_interval_s
            self.sweep_dead_clients()
        if now >= self._next_scavenge:
            self._next_scavenge = now + min(1.0, self.settings.idle_timeout_s / 2)
            self.scavenge(now)
            self.metrics.snapshot(self.status)

    def scavenge(self, now: float) -> None:
        """Finalize connections idle for longer than ``idle_timeout_s``: Good NetRoots with no
        open file, and their SrvCall when it was the server's last NetRoot."""
        idle = [
            v
            for v in self.prefix.v_net_roots()
            if v.condition == Condition.GOOD
            and not v.net_root.fcbs
            and now - v.net_root.last_used > self.settings.idle_timeout_s
        ]
        for v_net_root in idle:
            net_root = v_net_root.net_root
            srv_call = net_root.srv_call
            minirdr = net_root.minirdr
            log.info("scavenging idle connection %s (%s)", net_root.prefix, minirdr)
            self.prefix.remove_v_net_root(v_net_root)
            last = not any(v.net_root.srv_call is srv_call for v in self.prefix.v_net_roots())
            if minirdr is None or minirdr not in self.peers:
                continue
            for routine in (Routine.MRxFinalizeVNetRoot, Routine.MRxFinalizeNetRoot):
                if routine in self.peers[minirdr].routines:
                    note = RxContext(
                        request_id=0,
                        major=IrpMj.CLOSE,
                        routine=routine,
                        srv_call=srv_call.name,
                        net_root=net_root.name,
                        args={"force": False},
                    )
                    with contextlib.suppress(NtStatusError):
                        self._send(minirdr, note, None, lambda done, payload: None)
            if last:
                self.prefix.remove_srv_call(srv_call)
                if CONNMGR in self.peers:
                    self.out.to_peer(
                        CONNMGR,
                        RxContext(
                            request_id=next(self._ids),
                            major=IrpMj.FILE_SYSTEM_CONTROL,
                            routine=Routine.RxFinalizeConnections,
                            srv_call=srv_call.name,
                            args={"minirdr": minirdr, "server": srv_call.name, "idle": True},
                        ),
                    )

    def next_deadline(self) -> float | None:
        return self._deadlines[0][0] if self._deadlines else None

    # ------------------------------------------------------------------ peers
    def _register(self, name: str, reg: Register, now: float) -> None:
        if reg.name != name:
            log.error("peer %r registered as %r; ignored", name, reg.name)
            return
        known = self.peers.get(name)
        if known is not None and known.pid == reg.pid and known.host == reg.host:
            # the same process again (it missed our answers for a while, e.g. a link that came
            # back): it still holds its connections and handles, so nothing is torn down
            known.last_seen = now
            self.out.to_peer(name, Heartbeat(name="core", seq=REGISTERED_STILL))
            return
        if known is not None:
            # a restarted process under the same name: whatever the old one held is gone
            self.peer_down(name, S.STATUS_CONNECTION_DISCONNECTED, "registered again (restarted)")
        self.departed.pop(name, None)
        self.peers[name] = Peer(
            name=name,
            role=reg.role,
            kind=reg.kind,
            routines=frozenset(reg.routines),
            lowio_ops=frozenset(reg.lowio_ops),
            servers=list(reg.servers),
            pid=reg.pid,
            registered_at=now,
            last_seen=now,
            host=reg.host,
            buffering=reg.buffering,
        )
        self._forget_failures(self.peers[name])
        self._wake_awaiting_peers()
        log.info(
            "registered peer=%s role=%s kind=%s pid=%d host=%s routines=%d",
            name,
            reg.role,
            reg.kind,
            reg.pid,
            reg.host or "-",
            len(reg.routines),
        )
        self.out.to_peer(name, Heartbeat(name="core", seq=REGISTERED_NEW))

    def _forget_failures(self, peer: Peer) -> None:
        """A mini-redirector that registers (started, restarted, or reloaded with a new
        configuration) may serve what failed before: the shares it claims lose their failed
        state and back-off, so the next request tries again at once."""
        for v_net_root in self.prefix.v_net_roots():
            if v_net_root.condition != Condition.BAD:
                continue
            if not peer.claims(v_net_root.net_root.srv_call.name):
                continue
            self._failures.pop(v_net_root.net_root.prefix.lower(), None)
            v_net_root.retry_at = 0.0
            if not v_net_root.net_root.fcbs:
                self._drop_v_net_root(v_net_root)

    def peer_down(self, name: str, status: int, reason: str) -> None:
        """A peer died, exited or went silent: complete its in-flight requests at once, drop its
        connections, orphan its handles. Everything else goes on untouched."""
        peer = self.peers.pop(name, None)
        if peer is None:
            return
        self.departed[name] = peer
        self.metrics.peer_down(name, reason)
        log.warning("peer down peer=%s pid=%d reason=%s", name, peer.pid, reason)
        message = f"{peer.role} {name!r} went down: {reason}"
        for core_id, pending in list(self.pending.items()):
            if pending.peer == name:
                del self.pending[core_id]
                self._run_then(pending, RxCompletion(core_id, status, message=message), None)
        for srv_call in self.prefix.srv_calls():
            if srv_call.minirdr == name:
                for v_net_root in self.prefix.remove_srv_call(srv_call):
                    self._wake(v_net_root)
        for v_net_root in self.prefix.v_net_roots():
            if v_net_root.net_root.minirdr == name:
                self._drop_v_net_root(v_net_root)
        for fobx in self.fobxs.values():
            if fobx.srv_open.minirdr == name:
                fobx.orphaned_status = S.STATUS_CONNECTION_DISCONNECTED
        for srv_open in list(self._delayed.values()):
            if srv_open.minirdr == name:
                self._close_delayed(srv_open, "its mini-redirector went down")
        for fcb in list(self._dirty.values()):
            if fcb.dirty_fobx is not None and fcb.dirty_fobx.srv_open.minirdr == name:
                self._lose_deferred(fcb, f"mini-redirector {name!r} went down")
        if peer.role == "minirdr" and CONNMGR in self.peers:
            note = RxContext(
                request_id=next(self._ids),
                major=IrpMj.FILE_SYSTEM_CONTROL,
                routine=Routine.RxFinalizeConnections,
                args={"minirdr": name},
            )
            self.out.to_peer(CONNMGR, note)

    # ------------------------------------------------------------------ sending and completing
    def _to_client(self, ident: bytes, done: RxCompletion, payload: Payload = None) -> None:
        """Every client request is answered exactly once, here."""
        if done.request_id >= SUB_ID_BASE:
            self._collect(done, payload)  # an item of a compound
            return
        self._live.pop((ident, done.request_id), None)
        bundle = self._answers is not None and ident in self._bundle_ok
        self._answered(ident)
        if bundle:
            assert self._answers is not None
            self._answers.setdefault(ident, []).append((done, payload))
            return
        self.out.to_client(ident, done, payload)

    def _answered(self, ident: bytes) -> None:
        """One more of the client's requests is answered: count it, and forget what its
        requests in flight said (bundling) once none is left."""
        self.completed += 1
        left = self._inflight_of.get(ident, 0) - 1
        if left > 0:
            self._inflight_of[ident] = left
        else:
            self._inflight_of.pop(ident, None)
            self._bundle_ok.discard(ident)  # its next request says so again

    def _answer(
        self,
        ident: bytes,
        ctx: RxContext,
        status: int,
        information: int = 0,
        result: Any = None,
        message: str = "",
        payload: Payload = None,
    ) -> None:
        self._note_error(status, ctx.routine or f"IRP_MJ 0x{ctx.major:02x}", message)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("answer", extra=_event(ctx, status))
        self._to_client(
            ident, RxCompletion(ctx.request_id, status, information, result, message), payload
        )

    def _note_error(self, status: int, routine: str, message: str) -> None:
        """Remember an error for ``status`` (not warnings, not the ordinary ends of things)."""
        if status >> 30 != 3 or status in _ORDINARY:
            return
        self.recent_errors.append(RecentError(self.clock(), status, routine, message))
        del self.recent_errors[:-20]

    def _send(
        self,
        peer_name: str,
        ctx: RxContext,
        payload: Payload,
        then: Then,
        timeout_ms: int | None = None,
        net_root: NetRoot | None = None,
        owner: tuple[bytes, int] | None = None,
    ) -> None:
        """Send ``ctx`` (already carrying its routine) to a peer and wait for it without blocking:
        ``then`` runs with the completion, a timeout or the peer's death. ``net_root`` names the
        connection the request uses: a completion saying that connection is lost tears it down
        so the next request builds it again. ``owner`` (client, request id) is the client
        request it serves, so that request's cancel reaches the peer; a request already
        cancelled is not sent (MINIRDR_CALL on a cancelled RX_CONTEXT: STATUS_CANCELLED)."""
        live = self._live.get(owner) if owner is not None else None
        if live is not None and live.cancelled is not None:
            raise NtStatusError(_cancel_status(live.cancelled), "the request was cancelled")
        peer = self.peers.get(peer_name)
        routine = ctx.routine or ""
        if peer is None:
            raise NtStatusError(
                S.STATUS_CONNECTION_DISCONNECTED, f"{peer_name!r} is not running (restarting?)"
            )
        if peer.role == "minirdr":
            if routine not in peer.routines:
                raise NtStatusError(
                    S.STATUS_NOT_IMPLEMENTED, f"{peer_name!r} does not implement {routine}"
                )
            if routine == Routine.MRxLowIOSubmit:
                op = ctx.lowio.operation if ctx.lowio else -1
                if op not in peer.lowio_ops:
                    name = LowIoOp(op).name if op in LowIoOp._value2member_map_ else str(op)
                    raise NtStatusError(
                        S.STATUS_NOT_IMPLEMENTED,
                        f"{peer_name!r} does not implement low I/O {name}",
                    )
        core_id = next(self._ids)
        wanted = timeout_ms if timeout_ms is not None else ctx.timeout_ms
        timeout = min(max(wanted, 1), self.settings.max_timeout_ms)
        # forwarded in place (no copy); the caller's id comes back if the send fails, because
        # the error answer to the client is built from this same context
        origin_id, origin_timeout = ctx.request_id, ctx.timeout_ms
        ctx.request_id = core_id
        ctx.timeout_ms = timeout
        if self._cork is not None and peer.role == "minirdr":
            batch = self._cork.get(peer_name)
            if batch is None:
                batch = self._cork[peer_name] = []
            elif len(batch) >= CORK_ITEMS and not ctx.flags & _RELATED:
                # a long batch leaves now, so the mini-redirector works on it while the rest
                # is read (never between a create and its related items)
                self._cork[peer_name] = []
                self._send_batch(peer_name, batch)
                batch = self._cork.setdefault(peer_name, [])
            batch.append((ctx, payload))
        elif not self.out.to_peer(peer_name, ctx, payload):
            ctx.request_id, ctx.timeout_ms = origin_id, origin_timeout
            self.peer_down(peer_name, S.STATUS_CONNECTION_DISCONNECTED, "unreachable")
            raise NtStatusError(S.STATUS_CONNECTION_DISCONNECTED, f"{peer_name!r} is unreachable")
        deadline = self.clock() + timeout / 1000.0
        self.pending[core_id] = Pending(
            peer_name, deadline, then, ctx.origin, routine, net_root, self.clock(), owner
        )
        if live is not None:
            live.core_id = core_id
        heapq.heappush(self._deadlines, (deadline, core_id))
        if len(self._deadlines) > 2 * len(self.pending) + 1024:
            # answered requests leave their entry until it expires: under load that is
            # rate x timeout entries, so drop them once they outnumber the pending ones
            self._deadlines = [(p.deadline, i) for i, p in self.pending.items()]
            heapq.heapify(self._deadlines)
        peer.requests += 1

    def _complete(self, done: RxCompletion, payload: Payload) -> None:
        pending = self.pending.pop(done.request_id, None)
        if pending is None:
            log.debug("late or unknown completion id=%d dropped", done.request_id)
            abandoned = self._abandoned_creates.pop(done.request_id, None)
            if abandoned is not None and done.status == S.STATUS_SUCCESS:
                self._close_abandoned(done, *abandoned)
            return
        if done.status in CONNECTION_LOST and pending.net_root is not None:
            self._connection_lost(pending.net_root, done.status, done.message)
        self._run_then(pending, done, payload)

    def _close_abandoned(self, done: RxCompletion, peer: str, net_root: NetRoot) -> None:
        """A create answered after the core gave up on it opened a SrvOpen no handle refers to:
        close it again (MRxCloseSrvOpen) so the mini-redirector does not hold it forever."""
        result = done.result if isinstance(done.result, dict) else {}
        mrx_id = result.get("srv_open")
        if not isinstance(mrx_id, int) or peer not in self.peers:
            return
        log.info(
            "closing the open of an abandoned create id=%d srv_open=%d", done.request_id, mrx_id
        )
        close = RxContext(
            request_id=0,
            major=IrpMj.CLOSE,
            routine=Routine.MRxCloseSrvOpen,
            srv_open=mrx_id,
            srv_call=net_root.srv_call.name,
            net_root=net_root.name,
        )
        with contextlib.suppress(NtStatusError):
            self._send(peer, close, None, lambda done, payload: None)

    def _connection_lost(self, net_root: NetRoot, status: int, message: str) -> None:
        """A mini-redirector says the connection under a NetRoot is gone (server dropped it,
        session expired): drop the SrvCall and everything on it, orphan its handles (they are
        re-opened by path on next use) and have the connection manager build it again.

        Handles are orphaned even when the SrvCall was torn down already: a create answered
        after the loss made a handle on the dead connection, and it must be re-opened too."""
        srv_call = net_root.srv_call
        for fobx in self.fobxs.values():
            if fobx.fcb.net_root.srv_call is srv_call and fobx.orphaned_status == S.STATUS_SUCCESS:
                fobx.orphaned_status = status
        if self.prefix.srv_call(srv_call.name) is not srv_call:
            return  # already torn down
        log.warning("connection lost server=%s status=0x%08X %s", srv_call.name, status, message)
        self._note_error(status, "connection", f"\\\\{srv_call.name}: {message}")
        for srv_open in list(self._delayed.values()):
            if srv_open.fcb.net_root.srv_call is srv_call:
                self._close_delayed(srv_open, "the connection was lost")
        for fcb in list(self._dirty.values()):
            if fcb.net_root.srv_call is srv_call:
                self._lose_deferred(fcb, f"the connection to \\\\{srv_call.name} was lost")
        for v_net_root in self.prefix.remove_srv_call(srv_call):
            self._wake(v_net_root)
        if CONNMGR in self.peers:
            note = RxContext(
                request_id=next(self._ids),
                major=IrpMj.FILE_SYSTEM_CONTROL,
                routine=Routine.RxFinalizeConnections,
                srv_call=srv_call.name,
                args={"minirdr": net_root.minirdr or "", "server": srv_call.name},
            )
            self.out.to_peer(CONNMGR, note)

    def _run_then(self, pending: Pending, done: RxCompletion, payload: Payload) -> None:
        if type(self.metrics) is not NullMetrics:  # the status name costs a lookup per answer
            self.metrics.request_done(
                pending.routine,
                pending.peer,
                status_name(done.status),
                self.clock() - pending.started,
            )
        try:
            pending.then(done, payload)
        except Exception:  # a bug in a continuation must not take the core down
            log.exception("continuation failed req=%s routine=%s", pending.origin, pending.routine)

    def _relay(self, ident: bytes, ctx: RxContext) -> Then:
        """The usual continuation: hand the completion back to the client as it came."""
        request_id = ctx.request_id

        def then(done: RxCompletion, payload: Payload) -> None:
            self._note_error(done.status, ctx.routine or "", done.message)
            done.request_id = request_id
            if log.isEnabledFor(logging.DEBUG):
                log.debug("answer", extra=_event(ctx, done.status))
            self._to_client(ident, done, payload)

        return then

    def _retry_left(self, ident: bytes, request_id: int, done: RxCompletion) -> int | None:
        """A client request (not a compound's item) failed with ``done``: when its connection
        was lost (torn down by now) and it has retries and time left (model/idempotent.py), count
        the retry and return the milliseconds left before its deadline; else None. The caller
        checked that the request is idempotent."""
        live = self._live.get((ident, request_id))
        if live is None or live.cancelled is not None:
            return None
        left_ms = (live.deadline - self.clock()) * 1000.0
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

    def _retrying(self, ident: bytes, ctx: RxContext, payload: Payload, then: Then) -> Then:
        """Wrap a handle request's continuation: when its connection was lost, the request runs
        again from the start (its handle, orphaned by the loss, is re-opened on the connection
        built again) instead of failing; ``then`` gets the final answer."""
        request_id = ctx.request_id

        def again(done: RxCompletion, data: Payload) -> None:
            left = self._retry_left(ident, request_id, done)
            if left is None:
                then(done, data)
                return
            ctx.request_id, ctx.timeout_ms = request_id, left
            self._resume(ident, ctx, payload)

        return again

    # ------------------------------------------------------------------ create
    def _create(self, ident: bytes, ctx: RxContext) -> None:
        if ctx.path is None:
            raise NtStatusError(S.STATUS_OBJECT_NAME_INVALID, "create needs a path")
        if ctx.create is not None:
            check_create_parameters(ctx.create.disposition, ctx.create.create_options)
        self._open(ident, ctx, parse_unc(ctx.path), 0)

    def _open(self, ident: bytes, ctx: RxContext, name: UncName, attempt: int) -> None:
        def resume() -> None:
            self._open_resumed(ident, ctx, name, attempt)

        try:
            v_net_root = self._find_or_construct(name, resume)
            if v_net_root is None:
                self._park(ident, ctx.request_id, name, resume)
            else:
                self._create_on(ident, ctx, name, v_net_root)
        except NtStatusError as exc:
            self._answer(ident, ctx, exc.status, message=exc.strerror or "")

    def _open_resumed(self, ident: bytes, ctx: RxContext, name: UncName, attempt: int) -> None:
        """A create parked on a NetRoot in transition wakes up: the NetRoot became Good or Bad,
        or it was dropped (its mini-redirector went down) and the name must be resolved again."""
        v_net_root = self.prefix.v_net_root(name)
        if v_net_root is not None and v_net_root.condition == Condition.BAD:
            self._answer(
                ident,
                ctx,
                v_net_root.status,
                message=f"cannot connect to {name.net_root_prefix}: {v_net_root.message}",
            )
        elif attempt < 3:
            self._open(ident, ctx, name, attempt + 1)
        else:
            self._answer(
                ident,
                ctx,
                S.STATUS_CONNECTION_DISCONNECTED,
                message=f"connecting to {name.net_root_prefix} kept being interrupted",
            )

    def _create_on(
        self, ident: bytes, ctx: RxContext, name: UncName, vnr: VNetRoot, collapse: bool = True
    ) -> None:
        """RxCollapseOrCreateSrvOpen: a compatible open of a file already open reuses its
        SrvOpen (a new Fobx, no MRxCreate); any other goes to the mini-redirector, after the
        server opens kept for a delayed close that conflict with it are closed and cached data
        it would make stale is purged (what an oplock break gives before the open proceeds)."""
        net_root = vnr.net_root
        net_root.last_used = self.clock()
        minirdr = net_root.minirdr
        assert minirdr is not None
        create = ctx.create
        existing = net_root.fcbs.get(name.path.lower())
        if existing is not None:
            self._flush(existing)  # deferred writes reach the server before this open
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
                candidate = self._collapsible(existing, create, minirdr) if collapse else None
                if candidate is not None:
                    self._collapse(ident, ctx, name, vnr, candidate)
                    return
                for srv_open in [so for so in existing.srv_opens if not so.fobxs]:
                    held = (srv_open.desired_access, srv_open.share_access)
                    if conflicts(
                        create.desired_access, create.share_access, create.disposition, held
                    ):
                        self._close_delayed(srv_open, "a conflicting open")
                self._rebuffer(existing, create.desired_access)
        request_id = ctx.request_id
        fobx_id = next(self._fobx_ids)
        _address(ctx, Routine.MRxCreate, net_root, name.path, fobx_id)
        retry = is_idempotent(ctx)

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
                        serial=next(self._fcb_serials),
                    )
                    net_root.fcbs[key] = fcb
                peer = self.peers.get(minirdr)
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
                    self._purge(fcb)  # whatever was cached of the file is gone
                fcb.srv_opens.append(srv_open)
                fobx = Fobx(fobx_id, srv_open, ident)
                srv_open.fobxs.append(fobx)
                self.fobxs[fobx_id] = fobx
                self._handles_of[ident] = self._handles_of.get(ident, 0) + 1
                self._rebuffer(fcb)
                done.result = {**result, "fobx": fobx_id}
                live = self._live.get((ident, request_id))
                if live is not None and live.cancelled is not None:
                    # cancelled while the mini-redirector opened it: nobody will use the handle
                    self._release(fobx, ctx.origin, lambda done, payload: None)
                    done = RxCompletion(
                        request_id,
                        _cancel_status(live.cancelled),
                        message="cancelled; the file was opened and closed again",
                    )
            elif done.status == S.STATUS_SUCCESS:
                done.status = S.STATUS_INVALID_NETWORK_RESPONSE
                done.message = f"{minirdr!r} answered a create without a srv_open id"
            else:
                fcb = net_root.fcbs.get(name.path.lower())
                if fcb is not None:
                    self._rebuffer(fcb)  # the open that changed the state did not happen
                left = self._retry_left(ident, request_id, done) if retry else None
                if left is not None:  # its connection was lost: open on the one built again
                    ctx.request_id, ctx.timeout_ms = request_id, left
                    self._open(ident, ctx, name, 0)
                    return
            self._to_client(ident, done, payload)

        self._send(minirdr, ctx, None, then, net_root=net_root, owner=(ident, request_id))

    # ------------------------------------------------------------------ connections
    def _find_or_construct(self, name: UncName, resume: Callable[[], None]) -> VNetRoot | None:
        """The Good VNetRoot for ``name``, or None after parking ``resume`` on one being built."""
        now = self.clock()
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

    def _expecting_peers(self) -> bool:
        """True while a peer the configuration names has not registered since the core started,
        within the registration grace: a core restarted by the supervisor comes up before the
        connection manager and the mini-redirectors have registered with it again."""
        if self.clock() - self._started >= self.settings.registration_grace_s:
            return False
        return any(name not in self.peers for name in self.settings.expected_peers)

    def _wake_awaiting_peers(self) -> None:
        waiting, self._awaiting_peers = self._awaiting_peers, []
        for resume in waiting:
            resume()

    def _construct(self, name: UncName, vnr: VNetRoot) -> None:
        candidates = self._candidates(name.server)
        unknown = not candidates and not any(p.claims(name.server) for p in self.departed.values())
        if (unknown or CONNMGR not in self.peers) and self._expecting_peers():
            # not "no such server" yet: who serves it may still be registering (a known server
            # whose mini-redirector went down is answered at once below)
            def again() -> None:
                if self.prefix.v_net_root(name) is vnr:
                    self._construct(name, vnr)
                else:
                    self._wake(vnr)  # dropped meanwhile: its waiters resolve the name again

            self._awaiting_peers.append(again)
            return

        def finish(status: int, message: str, minirdr: str | None, cache: bool = True) -> None:
            if self.prefix.v_net_root(name) is not vnr:
                self._wake(vnr)  # dropped meanwhile: its waiters resolve the name again
                return
            net_root = vnr.net_root
            if status == S.STATUS_SUCCESS and minirdr in self.peers:
                net_root.minirdr = minirdr
                net_root.srv_call.minirdr = minirdr
                # the connection manager owns the SrvCall/NetRoot state machines; the core
                # mirrors their outcome on its own copies
                net_root.srv_call.condition = Condition.GOOD
                net_root.condition = Condition.GOOD
                waiters = vnr.transition(Condition.GOOD)
                self._failures.pop(name.key, None)
                log.info("connected %s via %s", name.net_root_prefix, minirdr)
            else:
                if status == S.STATUS_SUCCESS:
                    status = S.STATUS_CONNECTION_DISCONNECTED
                    message = f"{minirdr!r} went away during set-up"
                vnr.retry_at = self.clock()
                if cache:  # a restarting mini-redirector is not the server failing: no back-off
                    failures = min(self._failures.get(name.key, 0) + 1, 32)
                    self._failures[name.key] = failures
                    vnr.retry_at += min(
                        self.settings.negative_cache_s * 2.0 ** (failures - 1),
                        self.settings.max_backoff_s,
                    )
                waiters = vnr.transition(Condition.BAD, status, message)
                self._note_error(status, Routine.RxConstructNetRoot, message)
                log.warning(
                    "connect failed: %s",
                    message,
                    extra={"share": name.net_root_prefix, "status": status_name(status)},
                )
            for resume in waiters:
                assert callable(resume)
                resume()

        if not candidates:
            down = [p.name for p in self.departed.values() if p.claims(name.server)]
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
            self._send(CONNMGR, ctx, None, then, timeout_ms=self.settings.construct_timeout_ms)
        except NtStatusError as exc:
            finish(exc.status, f"connection manager: {exc.strerror}", None)

    def _drop_v_net_root(self, v_net_root: VNetRoot) -> None:
        self.prefix.remove_v_net_root(v_net_root)
        self._wake(v_net_root)

    @staticmethod
    def _wake(v_net_root: VNetRoot) -> None:
        waiters, v_net_root.waiters = v_net_root.waiters, []
        for resume in waiters:
            assert callable(resume)
            resume()

    def _candidates(self, server: str) -> list[str]:
        minirdrs = [p for p in self.peers.values() if p.role == "minirdr" and p.claims(server)]
        order = {name: i for i, name in enumerate(self.settings.provider_order)}
        minirdrs.sort(key=lambda p: (order.get(p.name, len(order)), p.name))
        # a mini-redirector that names the server exactly goes before a catch-all "*"
        minirdrs.sort(key=lambda p: 0 if server.lower() in (s.lower() for s in p.servers) else 1)
        return [p.name for p in minirdrs]

    # ------------------------------------------------------------------ file requests
    def _fobx(self, ident: bytes, ctx: RxContext) -> Fobx:
        fobx = self.fobxs.get(ctx.fobx) if ctx.fobx is not None else None
        if fobx is None or fobx.owner != ident:
            raise NtStatusError(S.STATUS_INVALID_HANDLE, f"no open handle {ctx.fobx}")
        return fobx

    def _file_request(self, ident: bytes, ctx: RxContext, payload: Payload) -> None:
        fobx = self._fobx(ident, ctx)
        if ctx.major == IrpMj.CLOSE:
            self._close(ident, ctx, fobx)
            return
        if fobx.orphaned_status != S.STATUS_SUCCESS:
            if fobx.reopen_failed:
                raise NtStatusError(
                    fobx.orphaned_status,
                    "the handle was lost when its mini-redirector went down and could not be "
                    "re-opened; open the file again",
                )
            self._reopen(ident, ctx, fobx, payload, 0)
            return
        routine, op = routine_for(ctx)
        if op is not None:
            if ctx.lowio is None:
                ctx.lowio = LowIoParameters(operation=op)
            ctx.lowio.operation = op
        srv_open = fobx.srv_open
        fcb = srv_open.fcb
        if ctx.args and "shm" in ctx.args:
            payload = self._unshare(ident, ctx, srv_open, op, payload)
        if fcb.write_error is not None:
            status, message = fcb.write_error
            fcb.write_error = None
            raise NtStatusError(status, f"a deferred write of {fcb.path} failed: {message}")
        if (
            op == LowIoOp.WRITE
            and fcb.buffering & FcbState.WRITEBUFFERING_ENABLED
            and self._defer_write(ident, ctx, fobx, payload)
        ):
            return
        if fcb.dirty or fcb.flushing:
            # sent first: the mini-redirector applies them before this request
            self._flush(fcb, ctx.timeout_ms)
            if routine == Routine.MRxFlush and fcb.flushing:
                # a flush answers once the deferred writes are done (and says if one failed)
                fcb.flush_waiters.append(lambda: self._resume(ident, ctx, payload))
                return
        ctx.routine = routine
        ctx.srv_open = srv_open.mrx_id
        ctx.srv_call = fcb.net_root.srv_call.name
        ctx.net_root = fcb.net_root.name
        ctx.path = fcb.path
        if (
            op == LowIoOp.READ
            and fcb.buffering & FcbState.READCACHING_ENABLED
            and srv_open.desired_access & READ_ACCESS
            and self._cached_read(ident, ctx, fobx)
        ):
            return
        then = self._relay(ident, ctx)
        if op == LowIoOp.WRITE:
            then = self._writing(fcb, ctx, payload, then)
        elif op in (LowIoOp.SHAREDLOCK, LowIoOp.EXCLUSIVELOCK) and not fcb.locked:
            fcb.locked = True  # locks are checked by the mini-redirector: no more caching
            self._rebuffer(fcb)
        elif routine == Routine.MRxSetFileInfo and ctx.info is not None:
            info_class = ctx.info.info_class
            if info_class == FileInformationClass.FileRenameInformation:
                then = self._prepare_rename(ident, ctx, fobx)  # refuses a bad target
                # the names change: server opens kept for delayed closes there go first
                self.close_delayed_on(fcb.net_root, None, "a rename")
            elif info_class == FileInformationClass.FileDispositionInformation:
                self.close_delayed_on(fcb.net_root, fcb, "a delete")
                then = self._track_disposition(ctx, fcb, then)
            elif info_class in (
                FileInformationClass.FileEndOfFileInformation,
                FileInformationClass.FileAllocationInformation,
            ):
                then = self._changing(fcb, then)
        if is_idempotent(ctx, enumerating=fobx.enumerated):
            then = self._retrying(ident, ctx, payload, then)
        if routine == Routine.MRxQueryDirectory:
            fobx.enumerated = True
        self._send(
            srv_open.minirdr,
            ctx,
            payload,
            then,
            net_root=fcb.net_root,
            owner=(ident, ctx.request_id),
        )

    def _unshare(
        self, ident: bytes, ctx: RxContext, srv_open: SrvOpen, op: int | None, payload: Payload
    ) -> Payload:
        """The shared-memory hint (rdbss.shm) works between a client and a mini-redirector of
        this host only. Elsewhere a READ's bytes come back in the answer instead, and a WRITE's
        are copied out of the client's arena here and sent as its payload, as they are for a
        write the core may keep (write-behind). A WRITE with the hint from a client on another
        host, or with a payload too, is refused."""
        if op == LowIoOp.WRITE:
            if ident[:1] != b"c" or payload is not None:
                raise NtStatusError(
                    S.STATUS_INVALID_PARAMETER,
                    "shared memory is for writes without a payload from this host's clients",
                )
            if self._shares_memory(ident, srv_open.minirdr) and not (
                srv_open.fcb.buffering & FcbState.WRITEBUFFERING_ENABLED
            ):
                return None
            assert ctx.lowio is not None
            view = self.shared.target(ctx.args, ctx.lowio.length)
            assert view is not None
            with view:
                payload = bytes(view)
        elif self._shares_memory(ident, srv_open.minirdr):
            return payload
        ctx.args = {k: v for k, v in (ctx.args or {}).items() if k not in ("shm", "shm_off")}
        return payload

    def _shares_memory(self, ident: bytes, minirdr: str | None) -> bool:
        """A client and a mini-redirector that can share /dev/shm: both on this host."""
        peer = self.peers.get(minirdr or "")
        return ident[:1] == b"c" and peer is not None and not peer.host

    def _resume(self, ident: bytes, ctx: RxContext, payload: Payload) -> None:
        try:
            self._file_request(ident, ctx, payload)
        except NtStatusError as exc:
            self._answer(ident, ctx, exc.status, message=exc.strerror or "")

    def _reopen(
        self, ident: bytes, ctx: RxContext, fobx: Fobx, payload: Payload, attempt: int
    ) -> None:
        """Re-establish a handle whose SrvOpen died with its mini-redirector: open the same
        path again (same access, share and options, but FILE_OPEN: never create or truncate),
        then carry on with the request that found it orphaned. While the mini-redirector is
        still down the request gets the network status and the handle stays orphaned."""
        srv_open = fobx.srv_open
        fcb = srv_open.fcb
        name = UncName(fcb.net_root.srv_call.name, fcb.net_root.name, fcb.path)

        def resume() -> None:
            v_net_root = self.prefix.v_net_root(name)
            if v_net_root is not None and v_net_root.condition == Condition.BAD:
                self._answer(
                    ident,
                    ctx,
                    v_net_root.status,
                    message=f"cannot re-open the handle: {v_net_root.message}",
                )
            elif attempt < 3:
                self._reopen(ident, ctx, fobx, payload, attempt + 1)
            else:
                self._answer(
                    ident,
                    ctx,
                    fobx.orphaned_status,
                    message="re-opening the handle kept being interrupted",
                )

        try:
            v_net_root = self._find_or_construct(name, resume)
        except NtStatusError as exc:
            self._answer(
                ident, ctx, exc.status, message=f"cannot re-open the handle: {exc.strerror}"
            )
            return
        if v_net_root is None:
            self._park(ident, ctx.request_id, name, resume)
            return  # parked until the NetRoot is built again
        minirdr = v_net_root.net_root.minirdr
        assert minirdr is not None
        reopen = RxContext(
            request_id=0,
            major=IrpMj.CREATE,
            routine=Routine.MRxCreate,
            timeout_ms=ctx.timeout_ms,
            path=fcb.path,
            fobx=fobx.id,
            srv_call=name.server,
            net_root=name.share,
            create=CreateParameters(
                desired_access=srv_open.desired_access,
                share_access=srv_open.share_access,
                disposition=CreateDisposition.FILE_OPEN,
                create_options=srv_open.create_options,
            ),
            origin=ctx.origin,
        )

        def then(done: RxCompletion, _payload: Payload) -> None:
            result = done.result if isinstance(done.result, dict) else {}
            mrx_id = result.get("srv_open")
            if fobx.id not in self.fobxs:
                return  # closed meanwhile
            current = self.prefix.v_net_root(name) is v_net_root
            if done.status == S.STATUS_SUCCESS and isinstance(mrx_id, int) and not current:
                # the connection it re-opened on was lost again meanwhile (another request
                # found out): that open is dead with it, re-open on the next connection
                resume()
                return
            if done.status in CONNECTION_LOST:
                resume()  # torn down by now: re-open on the connection built again
                return
            if done.status == S.STATUS_SUCCESS and isinstance(mrx_id, int):
                self._rehome(fcb, v_net_root.net_root)
                if any(
                    f.orphaned_status == S.STATUS_SUCCESS for f in srv_open.fobxs if f is not fobx
                ):
                    # another handle of this (collapsed) SrvOpen re-opened it first: this
                    # second server open is not needed
                    self._close_extra(minirdr, mrx_id, fcb, ctx.origin)
                else:
                    srv_open.mrx_id = mrx_id
                    srv_open.minirdr = minirdr
                    srv_open.peer_pid = self.peers[minirdr].pid if minirdr in self.peers else 0
                    for other in srv_open.fobxs:
                        if not other.reopen_failed:
                            other.orphaned_status = S.STATUS_SUCCESS
                fobx.orphaned_status = S.STATUS_SUCCESS
                log.info("re-opened handle fobx=%d path=%s via %s", fobx.id, fcb.path, minirdr)
                try:
                    self._file_request(ident, ctx, payload)
                except NtStatusError as exc:
                    self._answer(ident, ctx, exc.status, message=exc.strerror or "")
                return
            if done.status not in NETWORK_ERRORS and done.status != S.STATUS_CANCELLED:
                fobx.reopen_failed = True  # the file is gone or refused: no more attempts
                fobx.orphaned_status = done.status
            self._answer(
                ident, ctx, done.status, message=f"cannot re-open the handle: {done.message}"
            )

        try:
            self._send(
                minirdr,
                reopen,
                None,
                then,
                net_root=v_net_root.net_root,
                owner=(ident, ctx.request_id),
            )
        except NtStatusError as exc:
            self._answer(ident, ctx, exc.status, message=exc.strerror or "")

    def _rehome(self, fcb: Fcb, net_root: NetRoot) -> None:
        """A handle of ``fcb`` was re-opened on ``net_root``, the NetRoot built again after its
        own was torn down: the Fcb (its SrvOpens, their handles) moves there. Otherwise it keeps
        pointing at the dead NetRoot, and the next loss of the new connection neither finds nor
        orphans its handles, and the scavenger sees the new connection as idle. When the file
        was opened again on the new NetRoot meanwhile, its SrvOpens join that Fcb (one Fcb per
        file and NetRoot)."""
        old = fcb.net_root
        if old is net_root:
            return
        if old.fcbs.get(fcb.key) is fcb:
            del old.fcbs[fcb.key]
        there = net_root.fcbs.get(fcb.key)
        if there is None:
            fcb.net_root = net_root
            net_root.fcbs[fcb.key] = fcb
            return
        for srv_open in fcb.srv_opens:
            srv_open.fcb = there
            there.srv_opens.append(srv_open)
        fcb.srv_opens.clear()
        there.write_error = there.write_error or fcb.write_error
        self._purge(fcb)
        self._rebuffer(there)

    def _close_extra(self, minirdr: str, mrx_id: int, fcb: Fcb, origin: str | None) -> None:
        close = RxContext(
            request_id=0,
            major=IrpMj.CLOSE,
            routine=Routine.MRxCloseSrvOpen,
            srv_open=mrx_id,
            srv_call=fcb.net_root.srv_call.name,
            net_root=fcb.net_root.name,
            path=fcb.path,
            origin=origin,
        )
        with contextlib.suppress(NtStatusError):
            self._send(minirdr, close, None, lambda done, payload: None)

    def _prepare_rename(self, ident: bytes, ctx: RxContext, fobx: Fobx) -> Then:
        """Rename targets arrive as UNC names; the mini-redirector gets a share-relative path."""
        assert ctx.info is not None
        target = ctx.info.args.get("target")
        if not isinstance(target, str):
            raise NtStatusError(S.STATUS_INVALID_PARAMETER, "rename needs a target name")
        fcb = fobx.fcb
        net_root = fcb.net_root
        if target.startswith(("\\\\", "//")):
            name = parse_unc(target)
            if name.key != net_root.prefix.lower():
                raise NtStatusError(
                    S.STATUS_NOT_SAME_DEVICE, "rename cannot move a file to another share"
                )
            new_path = name.path
        else:
            new_path = parse_unc(f"{net_root.prefix}\\{target}").path
        if not new_path:
            raise NtStatusError(S.STATUS_ACCESS_DENIED, "cannot rename onto the share root")
        ctx.info.args["target"] = new_path
        relay = self._relay(ident, ctx)

        def then(done: RxCompletion, payload: Payload) -> None:
            if done.status == S.STATUS_SUCCESS:
                net_root.fcbs.pop(fcb.key, None)
                fcb.path = new_path
                net_root.fcbs[fcb.key] = fcb
            relay(done, payload)

        return then

    def _track_disposition(self, ctx: RxContext, fcb: Fcb, relay: Then) -> Then:
        assert ctx.info is not None
        delete = bool(ctx.info.args.get("delete", True))

        def then(done: RxCompletion, payload: Payload) -> None:
            if done.status == S.STATUS_SUCCESS:
                fcb.delete_pending = delete
            relay(done, payload)

        return then

    def _close(self, ident: bytes, ctx: RxContext, fobx: Fobx) -> None:
        """IRP_MJ_CLEANUP then IRP_MJ_CLOSE: forget the handle at once (close never fails for
        the caller), tell the mini-redirector, answer when it has closed its SrvOpen."""
        request_id = ctx.request_id
        fcb = fobx.fcb
        self._flush(fcb, ctx.timeout_ms)
        if fcb.flushing:  # the close answers once the deferred writes are done
            fcb.flush_waiters.append(lambda: self._resume(ident, ctx, None))
            return
        error = fcb.write_error
        fcb.write_error = None

        def answer(done: RxCompletion, payload: Payload) -> None:
            # the handle is gone whatever the mini-redirector says; report what it said
            done.request_id = request_id
            if error is not None and done.status == S.STATUS_SUCCESS:
                done.status = error[0]
                done.message = f"a deferred write of {fcb.path} failed: {error[1]}"
            self._to_client(ident, done, None)

        self._release(fobx, ctx.origin, answer)

    def _release(self, fobx: Fobx, origin: str | None, then: Then, delay: bool = True) -> None:
        """Drop a handle from the tables and close it on its mini-redirector (MRxCleanupFobx,
        then MRxCloseSrvOpen when it was the SrvOpen's last handle, unless the SrvOpen is kept
        for a delayed close); ``then`` gets the close's completion, or SUCCESS when there was
        nothing to close remotely."""
        self._flush(fobx.fcb)  # sent before the cleanup and close
        srv_open = fobx.srv_open
        peer = self.peers.get(srv_open.minirdr)
        alive = peer is not None and peer.pid == srv_open.peer_pid
        delayed = (
            delay
            and alive
            and len(srv_open.fobxs) == 1
            and peer is not None
            and Routine.MRxCloseSrvOpen in peer.routines
            and self._may_delay(srv_open, fobx)
        )
        self._unlink(fobx, delayed)
        if delayed:
            self._delay_close(srv_open)
        done = RxCompletion(0, S.STATUS_SUCCESS)
        if peer is None or peer.pid != srv_open.peer_pid:
            # the process that held this SrvOpen is gone, and its state with it: a handle that
            # could write says so instead of pretending its unflushed writes are safe
            if srv_open.desired_access & WRITE_ACCESS and not srv_open.fobxs:
                done.status = S.STATUS_CONNECTION_DISCONNECTED
                done.message = (
                    f"mini-redirector {srv_open.minirdr!r} ended while this handle was open; "
                    "writes not flushed before may not have reached the server"
                )
            then(done, None)
            return
        # the same process still holds the SrvOpen (even if its connection dropped): it closes
        # it and reports, e.g., data it staged and could not upload

        def handle_ctx(major: int, routine: Routine) -> RxContext:
            return srv_open_context(srv_open, major, routine, fobx=fobx.id, origin=origin)

        if Routine.MRxCleanupFobx in peer.routines:
            cleanup = handle_ctx(IrpMj.CLEANUP, Routine.MRxCleanupFobx)
            with contextlib.suppress(NtStatusError):
                self._send(peer.name, cleanup, None, lambda done, payload: None)
        if srv_open.fobxs or delayed or Routine.MRxCloseSrvOpen not in peer.routines:
            then(done, None)
            return
        try:
            self._send(peer.name, handle_ctx(IrpMj.CLOSE, Routine.MRxCloseSrvOpen), None, then)
        except NtStatusError:
            then(done, None)

    def holds(self, ident: bytes) -> bool:
        """Whether a client has open handles (a request without a handle ends by its deadline,
        well within the time a quiet remote client is remembered)."""
        return bool(self._handles_of.get(ident))

    def _unlink(self, fobx: Fobx, delayed: bool = False) -> None:
        """Drop a handle from the core's tables; its SrvOpen too when it was the last handle
        (unless kept for a delayed close), and its Fcb, purged, when that was the Fcb's last
        SrvOpen. The Fcb's buffering state follows the handles left."""
        del self.fobxs[fobx.id]
        self._handles_of[fobx.owner] -= 1
        if not self._handles_of[fobx.owner]:
            del self._handles_of[fobx.owner]
        srv_open = fobx.srv_open
        srv_open.fcb.net_root.last_used = self.clock()
        fcb = srv_open.fcb
        srv_open.fobxs.remove(fobx)
        if not srv_open.fobxs and not delayed:
            fcb.srv_opens.remove(srv_open)
            if not fcb.srv_opens:
                if fcb.net_root.fcbs.get(fcb.key) is fcb:
                    del fcb.net_root.fcbs[fcb.key]
                self._purge(fcb)
        if fcb.srv_opens:
            self._rebuffer(fcb)

    # ------------------------------------------------------------------ compounds
    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Hold back what is sent to mini-redirectors until the outermost block ends, then
        send one message per peer (a Compound when it carries several requests). The server
        wraps each drain of a socket in one: requests that arrived together travel together,
        and nothing waits for more to arrive. Answers for a client that takes bundles leave
        as one CompletionBundle at the end, likewise."""
        self.begin_batch()
        try:
            yield
        finally:
            self.end_batch()

    def begin_batch(self) -> None:
        """``batch()`` without a generator, for the server's loop (every wake-up opens one)."""
        if self._cork is None:
            self._cork = {}
        if self._answers is None:
            self._answers = {}
        self._cork_depth += 1

    def end_batch(self) -> None:
        self._cork_depth -= 1
        if self._cork_depth == 0:
            if self._cork or self._cancels_after:
                self._flush_cork()
            else:
                self._cork = None
            if self._answers:
                self._flush_answers()
            else:
                self._answers = None

    def _flush_answers(self) -> None:
        answers, self._answers = self._answers, None
        limits = DEFAULT_LIMITS
        for ident, ready in (answers or {}).items():
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

    def _flush_cork(self) -> None:
        cork, self._cork = self._cork, None
        for peer_name, batch in (cork or {}).items():
            self._send_batch(peer_name, batch)
        cancels, self._cancels_after = self._cancels_after, []
        for peer_name, cancel in cancels:
            self.out.to_peer(peer_name, cancel)

    def _send_batch(self, peer_name: str, batch: list[tuple[RxContext, Payload]]) -> None:
        """Held-back requests to one mini-redirector: one message, a Compound when several."""
        for part in _split_batch(batch, DEFAULT_LIMITS.max_compound_items):
            if not part:
                continue
            if len(part) == 1:
                sent = self.out.to_peer(peer_name, part[0][0], part[0][1])
            else:
                cx = Compound(0, [ctx for ctx, _ in part])
                for index, (_, payload) in enumerate(part):
                    if payload is not None:
                        cx.payload_items.append(index)
                        cx.payloads.append(payload)
                sent = self.out.to_peer(peer_name, cx)
            if sent:
                continue
            message = f"{peer_name!r} is unreachable"
            for ctx, _ in part:
                pending = self.pending.pop(ctx.request_id, None)
                if pending is not None:
                    self._run_then(
                        pending,
                        RxCompletion(
                            ctx.request_id, S.STATUS_CONNECTION_DISCONNECTED, message=message
                        ),
                        None,
                    )
            self.peer_down(peer_name, S.STATUS_CONNECTION_DISCONNECTED, "unreachable")

    def _on_compound(
        self, ident: bytes, cx: Compound, inflight: int, retries: int = 0, deadline: float = 0.0
    ) -> None:
        """A client's compound: every item goes the way it would alone (so a create still waits
        for its connection, a handle is still re-opened...), but what they send to the
        mini-redirectors leaves as one message per peer, and the client gets one answer when
        every item has one. A RELATED item acts on the previous create's handle: it rides in
        the same message as that create when it can, else waits for the create's answer."""
        n = len(cx.items)
        state = _CompoundState(ident, cx.request_id, [i.request_id for i in cx.items], [None] * n)
        state.left = n
        refusal: NtStatusError | None = None
        wanted = sum(
            i.lowio.length for i in cx.items if i.major == IrpMj.READ and i.lowio is not None
        )
        if inflight >= self.settings.max_inflight_per_client:
            refusal = NtStatusError(
                S.STATUS_INSUFFICIENT_RESOURCES,
                f"too many requests in flight from this client "
                f"(limit {self.settings.max_inflight_per_client})",
            )
        elif wanted > DEFAULT_LIMITS.max_compound_payload_bytes:
            refusal = NtStatusError(
                S.STATUS_INVALID_PARAMETER,
                f"the compound's reads ask for {wanted} bytes; at most "
                f"{DEFAULT_LIMITS.max_compound_payload_bytes} fit in one answer",
            )
        if refusal is not None or n == 0:
            status = refusal.status if refusal is not None else S.STATUS_SUCCESS
            message = refusal.strerror or "" if refusal is not None else ""
            self._note_error(status, "compound", message)
            self._finish_compound(state, status, message)
            return
        payload_of = dict(zip(cx.payload_items, cx.payloads, strict=True))
        if not payload_of and replayable(cx.items):
            state.items, state.origin, state.retries = cx.items, cx.origin, retries
            state.sent_as = [(i.major, i.path, i.flags, i.fobx) for i in cx.items]
            state.deadline = deadline or self.clock() + cx.timeout_ms / 1000.0
        for index, item in enumerate(cx.items):  # first, as a query open answers two items
            sub_id = next(self._sub_ids)
            self._subs[sub_id] = (state, index)
            item.request_id = sub_id
            item.origin = f"{cx.origin}/{index}"
            if item.timeout_ms <= 0:
                item.timeout_ms = cx.timeout_ms
        chain: _Chain | None = None
        fused = -1  # the close answered with its create's query open
        with self.batch():
            for index, item in enumerate(cx.items):
                if index == fused:
                    continue
                payload = payload_of.get(index)
                if item.major == IrpMj.CREATE:
                    if _stat_pair(cx.items, index) and self._query_open(
                        ident, item, cx.items[index + 1]
                    ):
                        fused, chain = index + 1, None
                        continue
                    chain = _Chain(item)
                    state.chains[index] = chain
                    self._item(ident, item, payload)
                    answered = state.results[index]
                    if answered is not None:
                        chain.status = answered.status
                    else:
                        chain.peer = self._batched_to(item)
                elif item.flags & _RELATED:
                    if chain is None:
                        self._answer(
                            ident,
                            item,
                            S.STATUS_INVALID_HANDLE,
                            message="a related item with no create before it in the compound",
                        )
                    else:
                        self._related(ident, chain, index, item, payload)
                else:
                    self._item(ident, item, payload)

    def _query_open(self, ident: bytes, create: RxContext, close: RxContext) -> bool:
        """A create for attributes and its related close (a stat) as one MRxQueryOpen
        (IRP_MJ_QUERY_OPEN): no Fcb, SrvOpen or Fobx made and dropped here, no open and close
        in the mini-redirector. Only when the file has no Fcb here (nothing open or kept
        for a delayed close: no deferred writes or cached size to show, no delete pending or
        share access to check), its connection is up and its mini-redirector has the routine;
        False to take both items the usual way, which also answers every error but the
        file's own."""
        if self.stopping or create.path is None or not is_query_open(create.create):
            return False
        try:
            name = parse_unc(create.path)
        except NtStatusError:
            return False
        v_net_root = self.prefix.v_net_root(name)
        if v_net_root is None or v_net_root.condition != Condition.GOOD:
            return False
        net_root = v_net_root.net_root
        minirdr = net_root.minirdr
        peer = self.peers.get(minirdr) if minirdr is not None else None
        if (
            minirdr is None
            or peer is None
            or Routine.MRxQueryOpen not in peer.routines
            or name.path.lower() in net_root.fcbs
        ):
            return False
        net_root.last_used = self.clock()
        create_id, close_id = create.request_id, close.request_id
        _address(create, Routine.MRxQueryOpen, net_root, name.path, None)

        def then(done: RxCompletion, payload: Payload) -> None:
            self._note_error(done.status, Routine.MRxQueryOpen, done.message)
            result = done.result
            if done.status == S.STATUS_SUCCESS:
                # a create's answer (its handle already closed again), then the close's
                result = {**(result if isinstance(result, dict) else {}), "fobx": 0}
                closed = RxCompletion(close_id, S.STATUS_SUCCESS)
            else:
                closed = RxCompletion(close_id, done.status, message="the compound's create failed")
            opened = RxCompletion(create_id, done.status, done.information, result, done.message)
            self._to_client(ident, opened, None)
            self._to_client(ident, closed, None)

        try:
            self._send(minirdr, create, None, then, net_root=net_root, owner=(ident, create_id))
        except NtStatusError as exc:
            self._answer(ident, create, exc.status, message=exc.strerror or "")
            self._answer(ident, close, exc.status, message="the compound's create failed")
        return True

    def _item(self, ident: bytes, ctx: RxContext, payload: Payload) -> None:
        try:
            self._dispatch(ident, ctx, payload)
        except NtStatusError as exc:
            self._answer(ident, ctx, exc.status, message=exc.strerror or "")
        except Exception:  # a bug must cost one item, never the compound or the core
            log.exception("compound item failed req=%s", ctx.origin)
            self._answer(
                ident, ctx, S.STATUS_INTERNAL_ERROR, message="internal error in the rdbss core"
            )

    def _batched_to(self, ctx: RxContext) -> str | None:
        """The peer whose held-back batch ``ctx`` just joined, if it did."""
        pending = self.pending.get(ctx.request_id)
        if pending is None or self._cork is None:
            return None
        batch = self._cork.get(pending.peer)
        return pending.peer if batch and batch[-1][0] is ctx else None

    def _related(
        self, ident: bytes, chain: _Chain, index: int, item: RxContext, payload: Payload
    ) -> None:
        if chain.status is not None:  # the create has answered
            if chain.status != S.STATUS_SUCCESS:
                self._answer(ident, item, chain.status, message="the compound's create failed")
                return
            item.fobx = chain.fobx
            item.flags &= ~_RELATED
            self._item(ident, item, payload)
            return
        if (
            chain.peer is None
            or chain.deferred
            or not self._ride_along(ident, chain, item, payload)
        ):
            chain.deferred.append((index, item, payload))

    def _ride_along(self, ident: bytes, chain: _Chain, item: RxContext, payload: Payload) -> bool:
        """Put a related item in the same batch as its create (the mini-redirector gives it the
        create's SrvOpen); False when it must wait for the create's answer instead."""
        peer_name = chain.peer
        peer = self.peers.get(peer_name) if peer_name is not None else None
        create = chain.create
        pending = self.pending.get(create.request_id)
        if (
            peer is None
            or peer_name is None
            or pending is None
            or pending.routine != Routine.MRxCreate  # collapsed: no new SrvOpen to act on
            or item.major not in _RELATED_IN_BATCH
            or (item.major == IrpMj.CLOSE and Routine.MRxCloseSrvOpen not in peer.routines)
        ):
            return False
        fobx_id = create.fobx
        item.fobx = fobx_id
        item.srv_open = None
        item.srv_call = create.srv_call
        item.net_root = create.net_root
        item.path = create.path
        item.flags |= _RELATED
        if item.major == IrpMj.CLOSE:
            # no MRxCleanupFobx first: what it releases (enumerations, change watches, locks,
            # all per handle) comes from routines that never ride along with their create
            request_id = item.request_id

            def closed(done: RxCompletion, _payload: Payload) -> None:
                fobx = self.fobxs.get(fobx_id) if fobx_id is not None else None
                if fobx is not None:
                    self._unlink(fobx)  # the create's answer came first and registered it
                done.request_id = request_id
                self._to_client(ident, done, None)

            item.routine = Routine.MRxCloseSrvOpen
            item.major = IrpMj.CLOSE
            try:
                self._send(peer_name, item, None, closed, net_root=pending.net_root)
            except NtStatusError as exc:
                self._answer(ident, item, exc.status, message=exc.strerror or "")
            return True
        try:
            routine, op = routine_for(item)
            if op is not None:
                if item.lowio is None:
                    item.lowio = LowIoParameters(operation=op)
                item.lowio.operation = op
            item.routine = routine
            self._send(
                peer_name, item, payload, self._relay(ident, item), net_root=pending.net_root
            )
        except NtStatusError as exc:
            self._answer(ident, item, exc.status, message=exc.strerror or "")
        return True

    def _collect(self, done: RxCompletion, payload: Payload) -> None:
        """The answer to one item of a compound; the compound is answered with its last."""
        entry = self._subs.pop(done.request_id, None)
        if entry is None:
            return
        state, index = entry
        state.results[index] = done
        if payload is not None:
            state.payloads[index] = payload
        state.left -= 1
        chain = state.chains.get(index)
        if chain is not None:
            chain.status = done.status
            if done.status == S.STATUS_SUCCESS and isinstance(done.result, dict):
                fobx = done.result.get("fobx")
                chain.fobx = fobx if isinstance(fobx, int) else None
            deferred, chain.deferred = chain.deferred, []
            if deferred:
                with self.batch():
                    for j, item, item_payload in deferred:
                        self._related(state.ident, chain, j, item, item_payload)
        if state.left == 0 and not self._replay(state):
            self._finish_compound(state, S.STATUS_SUCCESS, "")

    def _replay(self, state: _CompoundState) -> bool:
        """A compound whose items all answered: when one found its connection lost (torn down
        by now) and the compound may be sent again (model/idempotent.py), send it again whole,
        as the client sent it, on the connection built again; False to answer it as it is."""
        if state.items is None:
            return False
        lost = next(
            (d for d in state.results if d is not None and d.status in CONNECTION_LOST), None
        )
        left_ms = (state.deadline - self.clock()) * 1000.0
        if lost is None or not may_retry(lost.status, state.retries, left_ms):
            return False
        items = state.items
        for item, item_id, (major, path, flags, fobx) in zip(
            items, state.item_ids, state.sent_as, strict=True
        ):
            item.request_id, item.major, item.path, item.flags, item.fobx = (
                item_id,
                major,
                path,
                flags,
                fobx,
            )
            item.routine = item.srv_open = item.srv_call = item.net_root = None
            item.timeout_ms = min(item.timeout_ms, int(left_ms))
        log.info(
            "sending compound req=%s again (%s: %s)",
            state.origin,
            status_name(lost.status),
            lost.message,
        )
        again = Compound(
            request_id=state.request_id, items=items, timeout_ms=int(left_ms), origin=state.origin
        )
        self._on_compound(state.ident, again, 0, state.retries + 1, state.deadline)
        return True

    def _finish_compound(self, state: _CompoundState, status: int, message: str) -> None:
        answer = CompoundCompletion(state.request_id, status, message=message)
        for index, done in enumerate(state.results):
            if done is None:
                continue  # only when the whole compound was refused
            done.request_id = state.item_ids[index]
            payload = state.payloads.get(index)
            if payload is not None:
                answer.payload_items.append(index)
                answer.payloads.append(payload)
            answer.items.append(done)
        self._answered(state.ident)
        self.out.to_client(state.ident, answer, None)

    def sweep_dead_clients(self) -> int:
        """Close the handles of local client processes that are gone (a client that crashed or
        exited without closing). Returns how many handles were closed."""
        closed = 0
        for owner in list(self._handles_of.keys() | {live.ident for live in self._live.values()}):
            if self.is_client_alive(owner):
                continue
            # its requests first: a queued one must not run, a pending one must let go
            for live in [r for r in self._live.values() if r.ident == owner]:
                if live.cancelled is None:
                    self._cancel(live, "gone")
            handles = [f for f in self.fobxs.values() if f.owner == owner]
            if handles:
                log.info("client %s is gone; closing its %d handles", owner.hex(), len(handles))
            for fobx in handles:
                self._release(fobx, f"{owner.hex()[-6:]}:sweep", lambda done, payload: None)
                closed += 1
        return closed

    # ------------------------------------------------------------------ device FCB (management)
    def _device_control(self, ident: bytes, ctx: RxContext) -> None:
        code = ctx.lowio.code if ctx.lowio else 0
        args = ctx.args or {}
        if code == FsctlCode.RDBSS_PING:
            self._answer(ident, ctx, S.STATUS_SUCCESS, result={"pong": True})
        elif code == FsctlCode.RDBSS_STATUS:
            self._answer(ident, ctx, S.STATUS_SUCCESS, result=self.status())
        elif code == FsctlCode.RDBSS_PEER_DOWN:
            name = args.get("name")
            if not isinstance(name, str):
                raise NtStatusError(S.STATUS_INVALID_PARAMETER, "peer_down needs a name")
            self.peer_down(name, S.STATUS_CONNECTION_DISCONNECTED, str(args.get("reason", "")))
            self._answer(ident, ctx, S.STATUS_SUCCESS)
        elif code in _MINIRDR_CONTROLS:
            target = args.get("minirdr")
            if not isinstance(target, str) and code in _SHARE_CONTROLS:
                # share management defaults to the (first) local-folder mini-redirector
                target = next((p.name for p in self.peers.values() if p.kind == "local"), None)
            if target is None or target not in self.peers:
                raise NtStatusError(S.STATUS_BAD_NETWORK_NAME, f"no mini-redirector {target!r}")
            if code == FsctlCode.RDBSS_REMOVE_SHARE:
                share = str(args.get("share", "")).lower()
                for v_net_root in self.prefix.v_net_roots():
                    net_root = v_net_root.net_root
                    if net_root.minirdr == target and net_root.name.lower() == share:
                        self.close_delayed_on(net_root, None, "the share is removed")
            ctx.routine = Routine.MRxDevFcbXXXControlFile
            self._send(target, ctx, None, self._relay(ident, ctx), owner=(ident, ctx.request_id))
        else:
            raise NtStatusError(
                S.STATUS_INVALID_DEVICE_REQUEST, f"unknown control code 0x{code:08X}"
            )

    def _peer_request(self, peer: Peer, ctx: RxContext, payload: Payload) -> None:
        """A request from a peer (the connection manager calling a mini-redirector): route it
        to its target and route the answer back."""
        target = ctx.target
        origin_id = ctx.request_id
        source = peer.name
        if ctx.routine == Routine.RxFinalizeConnections or target is None:
            return

        def then(done: RxCompletion, payload: Payload) -> None:
            done.request_id = origin_id
            self.out.to_peer(source, done, payload)  # type: ignore[arg-type]

        try:
            self._send(target, ctx, payload, then)
        except NtStatusError as exc:
            then(RxCompletion(origin_id, exc.status, message=exc.strerror or ""), None)

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "peers": [
                {
                    "name": p.name,
                    "role": p.role,
                    "kind": p.kind,
                    "pid": p.pid,
                    "host": p.host,
                    "routines": sorted(p.routines),
                    "lowio_ops": sorted(p.lowio_ops),
                    "servers": p.servers,
                    "up_s": round(now - p.registered_at, 3),
                    "requests": p.requests,
                    "buffering": describe(p.buffering),
                    "pending": p.pending,
                }
                for p in self.peers.values()
            ],
            "connections": [
                {
                    "name": v.net_root.prefix,
                    "condition": v.condition.name,
                    "status": v.status,
                    "message": v.message,
                    "minirdr": v.net_root.minirdr,
                    "fcbs": len(v.net_root.fcbs),
                    "idle_s": round(now - v.net_root.last_used, 1)
                    if v.net_root.last_used
                    else None,
                    "retry_in_s": (
                        round(max(0.0, v.retry_at - now), 1)
                        if v.condition == Condition.BAD
                        else None
                    ),
                }
                for v in self.prefix.v_net_roots()
            ],
            "handles": len(self.fobxs),
            "cancelling": sum(1 for p in self.pending.values() if p.cancel_reason is not None),
            "clients": len(self._handles_of.keys() | self._inflight_of.keys()),
            "pending": len(self.pending),
            "completed": self.completed,
            "recent_errors": [
                {
                    "age_s": round(now - e.at, 3),
                    "status": e.status,
                    "routine": e.routine,
                    "message": e.message,
                }
                for e in self.recent_errors
            ],
            "stopping": self.stopping,
            "buffering": self._buffering_status(now),
        }


def _split_batch(
    batch: list[tuple[RxContext, Payload]], limit: int
) -> Iterator[list[tuple[RxContext, Payload]]]:
    """Parts of at most ``limit`` requests, cut before an item that is not RELATED where
    possible (a related item must travel with its create)."""
    start = 0
    while len(batch) - start > limit:
        cut = start + limit
        while cut > start + 1 and batch[cut][0].flags & _RELATED:
            cut -= 1
        if cut == start + 1 and batch[cut][0].flags & _RELATED:
            cut = start + limit  # one chain longer than a whole part: no clean cut exists
        yield batch[start:cut]
        start = cut
    yield batch[start:]

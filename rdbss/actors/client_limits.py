"""Per-client limits and fairness at the core's intake (pure: no sockets; the core server drives
it): one client's load must not take memory without bound nor another client's latency.

``FairIntake`` keeps one queue per client between the client socket and the core. While other
clients are about (sent something within ``ACTIVE_S``), at most ``window`` requests of a client
run at once in the core and its mini-redirectors; the rest wait in the client's queue, and the
queues are served round robin, one request per client in turn, so a client with thousands of
requests in flight puts at most ``window`` of them ahead of another client's next request. A
client alone may run ``solo_window`` at once: its pipelining (and the core's batching of what
it sends to a mini-redirector) is not cut when no one else waits. Requests that wait by design
(a change notify, a byte-range lock) run at once outside the window: a client's pending
notifies must never hold up its reads; so do management requests (FSCTLs the core answers
itself, such as the supervisor's health check), which also do not make a client count as about.
A client with ``max_requests`` requests running or queued gets STATUS_INSUFFICIENT_RESOURCES for
the next at once (send fewer at a time). A queued request keeps its deadline: one still queued
when it passes is answered STATUS_IO_TIMEOUT, and one that runs late runs with what is left.

``UnreadAnswers`` counts the bytes of large answers ZeroMQ still holds for a client (sent with a
tracker: done once the bytes have left for the client's socket). A client that does not read
its answers (``max_bytes`` or more held) gets STATUS_QUOTA_EXCEEDED for its new requests, and a
large read answer past the limit is replaced by that status (a read is safe to repeat), so the
core holds at most about ``max_bytes`` per client, whatever the client does.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from rdbss.wire.constants import IrpMj, IrpMn
from rdbss.wire.rxcontext import Compound, RxContext

DEFAULT_WINDOW = 8  # requests of one client running at once beside other clients
DEFAULT_SOLO_WINDOW = 64  # ... and when it is the only client about
ACTIVE_S = 1.0  # a client that sent something this recently is about
DEFAULT_MAX_REQUESTS = 4096  # requests of one client running or queued
DEFAULT_MAX_UNREAD_BYTES = 128 << 20  # answers one client has not read yet
TRACK_BYTES = 64 << 10  # answers at least this large are tracked (smaller ones are few bytes)

_DIRECTORY_CONTROL = int(IrpMj.DIRECTORY_CONTROL)
_NOTIFY = int(IrpMn.NOTIFY_CHANGE_DIRECTORY)
_LOCK_CONTROL = int(IrpMj.LOCK_CONTROL)
_FILE_SYSTEM_CONTROL = int(IrpMj.FILE_SYSTEM_CONTROL)


def waits_by_design(ctx: RxContext) -> bool:
    """A request that may stay pending for long without anything being wrong."""
    return ctx.major == _LOCK_CONTROL or (ctx.major == _DIRECTORY_CONTROL and ctx.minor == _NOTIFY)


#: majors outside the window whatever their minor: byte-range locks, management
_OUTSIDE_MAJORS = frozenset({_LOCK_CONTROL, _FILE_SYSTEM_CONTROL})


def _outside_window(msg: RxContext | Compound) -> bool:
    """Waits by design, or management (see the module docstring)."""
    if type(msg) is not RxContext:
        assert isinstance(msg, Compound)
        return any(waits_by_design(item) for item in msg.items)
    major = msg.major
    return major in _OUTSIDE_MAJORS or (major == _DIRECTORY_CONTROL and msg.minor == _NOTIFY)


@dataclass(slots=True, eq=False)
class Queued:
    """A client request waiting at the intake."""

    msg: RxContext | Compound
    payload: Any
    deadline: float  # monotonic


@dataclass(slots=True, eq=False)
class _Client:
    queue: deque[Queued] = field(default_factory=deque)
    running: set[int] = field(default_factory=set)  # in the window
    waiting: set[int] = field(default_factory=set)  # waits by design, outside the window
    ready: bool = False  # in the round-robin order


class FairIntake:
    """The clients' queues (see the module docstring)."""

    def __init__(
        self,
        window: int = DEFAULT_WINDOW,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        solo_window: int = DEFAULT_SOLO_WINDOW,
    ) -> None:
        if window < 1 or max_requests < 1 or solo_window < window:
            raise ValueError("the intake needs windows and a request limit of at least 1")
        self.window = window
        self.solo_window = solo_window
        self.max_requests = max_requests
        self._clients: dict[bytes, _Client] = {}
        self._order: deque[bytes] = deque()  # clients with queued requests and room to run
        self._seen: dict[bytes, float] = {}  # client -> when it last sent something
        self._limit = solo_window
        self._queued = 0  # requests in all the queues: the core's loop asks after every poll

    def _about(self, ident: bytes, now: float) -> None:
        """Note a client's request; the window is the solo one while no other is about."""
        seen = self._seen
        seen[ident] = now
        if len(seen) > 1:
            for other, at in list(seen.items()):
                if now - at > ACTIVE_S:
                    del seen[other]
            self._limit = self.solo_window if len(seen) <= 1 else self.window
        else:
            self._limit = self.solo_window

    def admit(self, ident: bytes, msg: RxContext | Compound, payload: Any, now: float) -> str:
        """ "run" (run it now; it counts until ``done``), "queued" (``next`` hands it out
        later) or "full" (refuse it: STATUS_INSUFFICIENT_RESOURCES)."""
        client = self._clients.get(ident)
        if client is None:
            client = self._clients[ident] = _Client()
        if len(client.queue) + len(client.running) + len(client.waiting) >= self.max_requests:
            return "full"
        request_id = msg.request_id
        if _outside_window(msg):
            client.waiting.add(request_id)
            return "run"
        self._about(ident, now)
        if not client.queue and len(client.running) < self._limit:
            client.running.add(request_id)
            return "run"
        client.queue.append(Queued(msg, payload, now + msg.timeout_ms / 1000.0))
        self._queued += 1
        self._make_ready(ident, client)
        return "queued"

    def _make_ready(self, ident: bytes, client: _Client) -> None:
        if not client.ready and client.queue and len(client.running) < self._limit:
            client.ready = True
            self._order.append(ident)

    def next(self, now: float) -> tuple[bytes, Queued] | None:
        """The next queued request to run, round robin between clients; its deadline is made
        relative to ``now`` again (what is left of it)."""
        while self._order:
            ident = self._order.popleft()
            client = self._clients.get(ident)
            if client is None:
                continue
            client.ready = False
            if not client.queue or len(client.running) >= self._limit:
                continue
            item = client.queue.popleft()
            self._queued -= 1
            client.running.add(item.msg.request_id)
            item.msg.timeout_ms = max(1, int((item.deadline - now) * 1000))
            self._make_ready(ident, client)
            return ident, item
        return None

    def done(self, ident: bytes, request_id: int) -> None:
        """A request of the client was answered: its place is free."""
        client = self._clients.get(ident)
        if client is None:
            return
        client.running.discard(request_id)
        if client.waiting:
            client.waiting.discard(request_id)
        if client.queue:
            self._make_ready(ident, client)
        elif not client.running and not client.waiting:
            del self._clients[ident]

    def cancel(self, ident: bytes, request_id: int) -> Queued | None:
        """Take a request out of its queue (the client cancelled it before it ran)."""
        client = self._clients.get(ident)
        if client is None:
            return None
        for item in client.queue:
            if item.msg.request_id == request_id:
                client.queue.remove(item)
                self._queued -= 1
                return item
        return None

    def expired(self, now: float) -> list[tuple[bytes, Queued]]:
        """Queued requests whose deadline passed, taken out of their queues."""
        out: list[tuple[bytes, Queued]] = []
        for ident, client in self._clients.items():
            if any(item.deadline <= now for item in client.queue):
                late = [item for item in client.queue if item.deadline <= now]
                client.queue = deque(item for item in client.queue if item.deadline > now)
                out.extend((ident, item) for item in late)
                self._queued -= len(late)
        return out

    def forget(self, ident: bytes) -> list[Queued]:
        """A client that is gone: its queued requests (never run) and its counts go."""
        client = self._clients.pop(ident, None)
        if client is None:
            return []
        self._queued -= len(client.queue)
        return list(client.queue)

    def clients(self) -> list[bytes]:
        return list(self._clients)

    def queued(self, ident: bytes | None = None) -> int:
        if ident is not None:
            client = self._clients.get(ident)
            return len(client.queue) if client is not None else 0
        return self._queued


class Tracker(Protocol):
    @property
    def done(self) -> bool: ...


class UnreadAnswers:
    """Bytes of tracked answers ZeroMQ still holds, per client (see the module docstring)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_UNREAD_BYTES) -> None:
        self.max_bytes = max_bytes
        self._sent: dict[bytes, deque[tuple[Tracker, int]]] = {}
        self._bytes: dict[bytes, int] = {}

    def add(self, ident: bytes, tracker: Tracker, nbytes: int) -> None:
        self._sent.setdefault(ident, deque()).append((tracker, nbytes))
        self._bytes[ident] = self._bytes.get(ident, 0) + nbytes

    def unread(self, ident: bytes) -> int:
        """What the client has not read yet (answers leave in order: done ones are at the
        front)."""
        sent = self._sent.get(ident)
        if sent is None:
            return 0
        total = self._bytes[ident]
        while sent and sent[0][0].done:
            total -= sent.popleft()[1]
        if not sent:
            del self._sent[ident]
            del self._bytes[ident]
            return 0
        self._bytes[ident] = total
        return total

    def unread_mib_text(self, ident: bytes | None = None) -> str:
        held = self.total() if ident is None else self.unread(ident)
        return f"{held / (1 << 20):.1f} MiB"

    def over(self, ident: bytes) -> bool:
        return ident in self._sent and self.unread(ident) >= self.max_bytes

    def forget(self, ident: bytes) -> None:
        self._sent.pop(ident, None)
        self._bytes.pop(ident, None)

    def total(self) -> int:
        return sum(self.unread(ident) for ident in list(self._sent))

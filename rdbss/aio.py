"""The asyncio client: many requests in flight on one connection to the daemon.

    async with rdbss.aio.AsyncClient() as c:
        h = await c.create(r"\\\\local\\data\\big.bin")
        blocks = await asyncio.gather(*(c.read_handle(h.fobx, i << 16, 1 << 16)
                                        for i in range(64)))
        await c.close_handle(h.fobx)

Requests are built and parsed by ``rdbss.requests`` exactly as in the blocking client; one task
reads completions and hands each to the coroutine waiting for its request id. Every call has a
deadline (the request's timeout plus a grace period), and a failure raises the same
``NtStatusError`` subclasses as the blocking client.

Cancelling the task that awaits a request (``task.cancel()``, ``asyncio.wait_for``, a
``TaskGroup`` failing) cancels the request on the daemon: a queued request is never run, a
pending change-notify wait or waiting lock is dropped by its mini-redirector.

    async with rdbss.aio.AsyncClient() as c:
        d = await c.create(r"\\\\local\\data", options=CreateOptions.FILE_DIRECTORY_FILE)
        try:
            changes = await asyncio.wait_for(c.watch(d.fobx), 5)
        except TimeoutError:
            changes = []                  # the wait is gone from the daemon too
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import zmq

from rdbss import requests as rq
from rdbss import shm
from rdbss.actors.bus import (
    connect_client_socket,
    new_context,
    readable,
    recv_frames,
    send_frames,
)
from rdbss.client import (
    SHM_IN_FLIGHT,
    SMALL_WRITE_BYTES,
    SOCKET_WRITES_IN_FLIGHT,
    LinkWatch,
    daemon_endpoints,
)
from rdbss.config import Config, RemoteDaemon
from rdbss.deadlines import Deadlines
from rdbss.link import core_went_away, no_connection
from rdbss.model.idempotent import CONNECTION_LOST
from rdbss.requests import FileInfo, Handle, Outcome
from rdbss.wire import (
    Access,
    Codec,
    CompletionBundle,
    Compound,
    CompoundCompletion,
    CreateDisposition,
    CreateOptions,
    FsctlCode,
    NtStatus,
    NtStatusError,
    RequestBundle,
    RxCancel,
    RxCompletion,
    RxContext,
    RxFlags,
    WireError,
    error_for_status,
    pack_frames,
    unpack_frames,
)
from rdbss.wire.framing import bundles

__all__ = ["AsyncClient", "FileInfo", "Handle", "Outcome"]

Answer = tuple[RxCompletion | CompoundCompletion, memoryview | None]

S = NtStatus

#: RxFlags as plain ints: IntFlag arithmetic costs a microsecond on every request
_BUNDLE_OK = int(RxFlags.BUNDLE_OK)
T = TypeVar("T")
GRACE_S = 2.0
CANCEL_LINGER_MS = 500  # how long closing waits to deliver the cancels of what was in flight
READ_CHUNK = 1 << 20
#: requests of one event-loop turn sent as one RequestBundle, at most this many to a message
BUNDLE_ITEMS = 256
#: ...and once this many are waiting they leave at once, so the daemon starts on them while the
#: tasks ask for more
BUNDLE_EARLY = 16


_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)


class AsyncClient:
    """A connection to the daemon for asyncio programs. Use it from one event loop."""

    def __init__(
        self,
        runtime_dir: str | Path | None = None,
        *,
        config: Config | None = None,
        timeout: float | None = None,
        remote: RemoteDaemon | None = None,
        shared_memory: bool | None = None,
    ) -> None:
        endpoints, self.timeout = daemon_endpoints(runtime_dir, config, timeout, remote)
        self.runtime_dir = endpoints.runtime_dir
        # large reads through /dev/shm (rdbss.shm): by default with a daemon on this host
        if shared_memory is None:
            shared_memory = endpoints.curve is None and shm.available()
        self._shared_memory = shared_memory
        self._slots: _Slots | None = None
        # a plain socket whose descriptor the event loop watches: zmq.asyncio's futures cost
        # more per message than everything else here
        self._zctx = new_context()
        self._sock = self._zctx.socket(zmq.DEALER)
        # sends never block; EAGAIN means no connection (ZMQ_IMMEDIATE): the request is held
        self._sock.setsockopt(zmq.SNDHWM, 0)
        self._watch = LinkWatch(self._sock, endpoints)
        connect_client_socket(self._sock, endpoints)
        self._codec = Codec(trusted=True)  # it decodes the daemon's answers only
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Answer]] = {}
        # when each request stops waiting for its answer: one loop timer for the earliest
        # (a timer per request costs more than anything else here), how long each waits
        self._deadlines = Deadlines()
        self._wait_s: dict[int, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd: int = cast(int, self._sock.getsockopt(zmq.FD))
        self._link_fd: int = cast(int, self._watch.monitor.getsockopt(zmq.FD))
        self._drain_soon = False
        # requests issued in this turn of the event loop, sent together at its end (_flush)
        self._outbox: dict[int, tuple[RxContext, rq.Data | None]] = {}
        # requests waiting for a connection to the daemon (the first call, a core restarting),
        # in the order they were issued; sent when it comes, failed when rdbss.link says so
        self._held: dict[int, tuple[RxContext | Compound, rq.Data | None]] = {}
        self._closed = False

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        # what is still in flight is cancelled on the daemon too, not left running there
        in_flight = [rid for rid, future in self._waiting.items() if not future.done()]
        for request_id in in_flight:
            self._cancel(request_id, "client")
        self._closed = True
        self._outbox.clear()  # never sent: their futures fail below
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._held.clear()
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_reader(self._link_fd)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(error_for_status(S.STATUS_CANCELLED, "the client was closed"))
        self._watch.close()
        self._sock.close(linger=CANCEL_LINGER_MS if in_flight else 0)
        self._zctx.term()
        if self._slots is not None:
            self._slots.close()

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            loop.add_reader(self._fd, self._drain)
            loop.add_reader(self._link_fd, self._on_link)
            loop.call_soon(self._on_link)  # what happened before the loop watched
        elif self._loop is not loop:
            raise RuntimeError("an AsyncClient belongs to the event loop that first used it")
        return loop

    def _drain(self) -> None:
        """Hand every completion that has arrived to its waiting request. ZeroMQ's descriptor
        is edge-triggered: this runs when it signals and after every batch of sends."""
        self._drain_soon = False
        if self._closed:
            return
        sock = self._sock
        while cast(int, sock.getsockopt(_EVENTS)) & _POLLIN:
            frames = recv_frames(sock, _NOBLOCK)
            try:
                msg, payload = unpack_frames(self._codec, frames)
            except WireError:
                continue
            if isinstance(msg, (RxCompletion, CompoundCompletion)):
                self._deliver(msg, payload)
            elif isinstance(msg, CompletionBundle):
                payload_of = dict(zip(msg.payload_items, msg.payloads, strict=True))
                for index, done in enumerate(msg.items):
                    self._deliver(done, payload_of.get(index))

    def _on_link(self) -> None:
        """The connection's news (``rdbss.link``): a lost connection fails what was sent on it;
        held requests go when a connection is up, or fail when they cannot wait for one."""
        if self._closed:
            return
        if self._watch.read():
            self._drain()  # the answers that made it before the connection went
            lost = core_went_away(self._watch.link.where)
            for request_id, future in list(self._waiting.items()):
                sent = request_id not in self._outbox and request_id not in self._held
                if sent and not future.done():
                    future.set_exception(error_for_status(lost.status, lost.strerror or ""))
        if not self._held:
            return
        if self._watch.link.up:
            self._release_held()
            return
        error = self._watch.refusal()
        if error is not None:
            held, self._held = self._held, {}
            for request_id in held:
                self._fail(request_id, error_for_status(error.status, error.strerror or ""))

    def _release_held(self) -> None:
        """Send the held requests in order, up to the first that finds no connection."""
        for request_id, (msg, payload) in list(self._held.items()):
            future = self._waiting.get(request_id)
            if future is None or future.done():
                del self._held[request_id]
                continue
            try:
                send_frames(self._sock, pack_frames(self._codec, msg, payload), _NOBLOCK)
            except zmq.Again:
                return
            except (WireError, zmq.ZMQError) as exc:
                self._fail(request_id, exc)
            del self._held[request_id]
        if self._loop is not None:
            self._drain_later(self._loop)

    def _hold(self, msg: RxContext | Compound, payload: rq.Data | None) -> None:
        self._held[msg.request_id] = (msg, payload)

    def _deliver(self, msg: RxCompletion | CompoundCompletion, payload: memoryview | None) -> None:
        future = self._waiting.pop(msg.request_id, None)
        if future is not None and not future.done():
            future.set_result((msg, payload))

    async def call(
        self,
        ctx: RxContext,
        payload: rq.Data | None = None,
        *,
        ok: tuple[int, ...] = (S.STATUS_SUCCESS,),
    ) -> tuple[RxCompletion, memoryview | None]:
        """Send one request and wait (with its deadline) for its completion."""
        done, data = await self._exchange(ctx, payload)
        if not isinstance(done, RxCompletion):
            raise error_for_status(S.STATUS_INVALID_NETWORK_RESPONSE, "a compound answer")
        if done.status not in ok:
            raise error_for_status(done.status, done.message)
        return done, data

    def _cancel(self, request_id: int, reason: str) -> None:
        """Send RxCancel without waiting (works inside a task being cancelled). It is never
        answered itself; the request's own answer, if any, finds no waiter and is dropped."""
        if self._closed:
            return
        if self._outbox.pop(request_id, None) is not None:
            return  # not sent yet: now it never is
        if self._held.pop(request_id, None) is not None:
            return
        with contextlib.suppress(zmq.ZMQError):
            self._sock.send_multipart(
                pack_frames(self._codec, RxCancel(request_id, reason)), _NOBLOCK
            )

    async def _exchange(self, msg: RxContext | Compound, payload: rq.Data | None) -> Answer:
        if self._closed:
            raise error_for_status(S.STATUS_INVALID_HANDLE, "the client is closed")
        loop = self._bind_loop()
        self._watch.renew()  # after a refused handshake: this request's connection is a new one
        msg.request_id = next(self._ids)
        future: asyncio.Future[Answer] = loop.create_future()
        self._waiting[msg.request_id] = future
        wait_s = msg.timeout_ms / 1000.0 + GRACE_S
        when = loop.time() + wait_s
        self._deadlines.add(msg.request_id, when)
        self._wait_s[msg.request_id] = wait_s
        if self._timer is None or when < self._timer_at:
            self._arm(loop, when)
        try:
            if isinstance(msg, RxContext):
                msg.flags |= _BUNDLE_OK  # answers may come bundled: _drain opens them
                self._outbox[msg.request_id] = (msg, payload)
                if len(self._outbox) == 1:
                    loop.call_soon(self._flush)
                elif len(self._outbox) >= BUNDLE_EARLY:
                    self._flush()  # the daemon starts on these while the tasks ask for more
            else:
                self._flush()  # what was asked before it leaves before it
                frames = pack_frames(self._codec, msg, payload)
                if self._held or not self._watch.link.up:
                    self._hold(msg, payload)
                    self._on_link()
                else:
                    try:
                        send_frames(self._sock, frames, _NOBLOCK)
                    except zmq.Again:
                        self._hold(msg, payload)
                self._drain_later(loop)
            return await future
        except asyncio.CancelledError:
            self._cancel(msg.request_id, "client")  # the caller gave up: so does the daemon
            raise
        except NtStatusError as exc:
            if exc.status == S.STATUS_IO_TIMEOUT:  # no answer in time: dropped there too
                self._cancel(msg.request_id, "deadline")
            raise
        finally:
            self._deadlines.forget(msg.request_id)
            self._wait_s.pop(msg.request_id, None)
            self._waiting.pop(msg.request_id, None)
            self._held.pop(msg.request_id, None)

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._expire_due)
        self._timer_at = when

    def _expire_due(self) -> None:
        """The timer: requests past their deadline fail with STATUS_IO_TIMEOUT (their
        ``_exchange`` cancels them on the daemon); then the timer waits for the next one."""
        self._timer = None
        loop = self._loop
        if loop is None or self._closed:
            return
        # a timer may fire a hair before its time: what is due within a millisecond is due
        for request_id in self._deadlines.due(loop.time() + 1e-3):
            future = self._waiting.get(request_id)
            wait_s = self._wait_s.pop(request_id, 0.0)
            if future is not None and not future.done():
                if request_id in self._held:  # never sent: no connection all that time
                    future.set_exception(no_connection(self._watch.link.where, wait_s))
                    continue
                message = f"no answer from the daemon in {wait_s:.1f} s"
                future.set_exception(error_for_status(S.STATUS_IO_TIMEOUT, message))
        when = self._deadlines.next()
        if when is not None:
            self._arm(loop, when)

    def _drain_later(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._drain_soon:
            self._drain_soon = True
            loop.call_soon(self._drain)

    def _flush(self) -> None:
        """Send the requests issued in this turn of the event loop: one alone as itself,
        several as RequestBundles (each still answered on its own). What cannot be sent fails
        its own request."""
        if not self._closed and readable(self._watch.monitor):
            self._on_link()  # a connection lost while idle must not fail these requests
        outbox, self._outbox = self._outbox, {}
        if not outbox or self._closed or self._loop is None:
            return
        # a request whose caller gave up before its turn ended (its future is cancelled at
        # once) is never sent
        waiting = self._waiting
        items = [
            (msg, payload)
            for request_id, (msg, payload) in outbox.items()
            if (future := waiting.get(request_id)) is not None and not future.done()
        ]
        if not items:
            return
        if self._held or not self._watch.link.up:  # no connection yet: they wait, in order
            for msg, payload in items:
                self._hold(msg, payload)
            self._on_link()
            return
        if len(items) == 1:
            self._send_or_fail(items[0][0], items[0][1])
        else:
            limits = self._codec.limits
            for bundle in bundles(
                items, RequestBundle, BUNDLE_ITEMS, limits.max_compound_payload_bytes
            ):
                self._send_bundle(bundle)
        self._drain_later(self._loop)

    def _send_bundle(self, bundle: RequestBundle) -> None:
        try:
            frames = pack_frames(self._codec, bundle)
            if len(frames[0]) > self._codec.limits.max_header_bytes:
                raise WireError("bundle header too large")  # long paths: each on its own
            send_frames(self._sock, frames, _NOBLOCK)
        except zmq.Again:  # the connection went: they wait for the next
            payload_of = dict(zip(bundle.payload_items, bundle.payloads, strict=True))
            for index, msg in enumerate(bundle.items):
                self._hold(msg, payload_of.get(index))
        except WireError:  # one item cannot travel: find it, send the others
            payload_of = dict(zip(bundle.payload_items, bundle.payloads, strict=True))
            for index, msg in enumerate(bundle.items):
                self._send_or_fail(msg, payload_of.get(index))
        except zmq.ZMQError as exc:
            for msg in bundle.items:
                self._fail(msg.request_id, exc)

    def _send_or_fail(self, msg: RxContext, payload: rq.Data | None) -> None:
        try:
            send_frames(self._sock, pack_frames(self._codec, msg, payload), _NOBLOCK)
        except zmq.Again:  # the connection went: it waits for the next
            self._hold(msg, payload)
        except (WireError, zmq.ZMQError) as exc:
            self._fail(msg.request_id, exc)

    def _fail(self, request_id: int, exc: Exception) -> None:
        future = self._waiting.get(request_id)
        if future is None or future.done():
            return
        if isinstance(exc, zmq.ZMQError):
            exc = error_for_status(S.STATUS_CONNECTION_DISCONNECTED, f"cannot send: {exc}")
        future.set_exception(exc)

    # ------------------------------------------------------------------ compounds
    async def compound(self, requests: Sequence[rq.Request[Any]]) -> list[Outcome[Any]]:
        """As ``Client.compound``: many requests in compound messages, each item's Outcome.
        A long list goes out as several compounds, all in flight at once."""
        parts = list(rq.split_compound(requests))

        async def one(part: Sequence[rq.Request[Any]]) -> list[Outcome[Any]]:
            answer, _ = await self._exchange(rq.compound(part, self._timeout_ms), None)
            return rq.parse_compound(part, answer)

        outcomes: list[Outcome[Any]] = []
        for result in await asyncio.gather(*(one(part) for part in parts)):
            outcomes += result
        return outcomes

    async def stat_many(self, paths: Sequence[str]) -> list[FileInfo | OSError]:
        """As ``Client.stat_many``: a FileInfo or the error, per path."""
        requests = [r for path in paths for r in rq.stat_items(path, self._timeout_ms)]
        outcomes = await self.compound(requests)
        infos: list[FileInfo | OSError] = []
        for k in range(len(paths)):
            outcome = outcomes[2 * k]
            if outcome.ok:
                infos.append(outcome.unwrap().info)
            else:
                error = outcome.error()
                assert isinstance(error, OSError)
                infos.append(error)
        return infos

    async def read_many(self, fobx: int, ranges: Iterable[tuple[int, int]]) -> list[bytes]:
        """As ``Client.read_many``: the bytes of each (offset, length) range."""
        requests = [rq.read(fobx, off, length, self._timeout_ms) for off, length in ranges]
        return [outcome.unwrap() for outcome in await self.compound(requests)]

    async def run(self, request: rq.Request[T]) -> T:
        done, data = await self.call(request.ctx, request.payload, ok=request.ok)
        return request.parse(done, data)

    @property
    def _timeout_ms(self) -> int:
        return int(self.timeout * 1000)

    # ------------------------------------------------------------------ handles
    async def create(self, path: str, **kwargs: Any) -> Handle:
        """IRP_MJ_CREATE; keyword arguments as ``Client.create``."""
        return await self.run(rq.create(path, self._timeout_ms, **kwargs))

    async def close_handle(self, fobx: int) -> None:
        await self.run(rq.close(fobx, self._timeout_ms))

    async def read_handle(self, fobx: int, offset: int, length: int) -> bytes:
        return await self.run(rq.read(fobx, offset, length, self._timeout_ms))

    async def readinto(self, fobx: int, offset: int, buffer: Any) -> int:
        """Read ``len(buffer)`` bytes at ``offset`` into ``buffer`` (anything writable that
        supports the buffer protocol); the count, short at the end of the file. Large reads go
        through shared memory with a daemon on this host, in slot-sized pieces in flight at
        once."""
        view = memoryview(buffer).cast("B")
        if not self._shared_memory or len(view) < shm.MIN_READ_BYTES:
            return await self.run(rq.read_into(fobx, offset, view, self._timeout_ms))
        pieces = [view[at : at + shm.SLOT_BYTES] for at in range(0, len(view), shm.SLOT_BYTES)]
        counts = await asyncio.gather(
            *(
                self._in_slot(
                    len(piece),
                    functools.partial(
                        rq.read_into, fobx, offset + k * shm.SLOT_BYTES, piece, self._timeout_ms
                    ),
                )
                for k, piece in enumerate(pieces)
            )
        )
        total = 0
        for piece, count in zip(pieces, counts, strict=True):
            total += count
            if count < len(piece):
                break  # the end of the file
        return total

    @contextlib.asynccontextmanager
    async def read_view(self, fobx: int, offset: int, length: int) -> AsyncIterator[memoryview]:
        """Zero-copy read: a view of up to ``length`` bytes at ``offset`` (shorter at the end of
        the file), valid inside the ``async with`` block only. With a daemon on this host and
        up to a slot (4 MiB), the view is of this client's shared-memory slot, filled by the
        mini-redirector; otherwise of the bytes that came through the sockets."""
        if not self._shared_memory or not 0 < length <= shm.SLOT_BYTES:
            yield memoryview(await self.read_handle(fobx, offset, length))
            return
        slots = self._shared_slots()
        arena, slot = await slots.get()
        try:
            view = arena.view(slot, length)
            shared = (arena.args(slot), view)
            request = rq.read_into(fobx, offset, view, self._timeout_ms, shared)
            count = await slots.run(arena, self.run(request))
            piece = view[:count]
            try:
                yield piece
            finally:
                piece.release()
                view.release()
        finally:
            slots.put(arena, slot)

    def _shared_slots(self) -> _Slots:
        if self._slots is None:
            self._slots = _Slots()
        return self._slots

    async def _in_slot(self, size: int, request: Callable[[rq.Shared], rq.Request[int]]) -> int:
        """One request that uses a shared-memory slot of ``size`` bytes: waits for a free slot,
        gives it back after, and retires the arena if the request did not settle."""
        slots = self._shared_slots()
        arena, slot = await slots.get()
        try:
            shared = (arena.args(slot), arena.view(slot, size))
            return await slots.run(arena, self.run(request(shared)))
        finally:
            slots.put(arena, slot)

    async def write_handle(self, fobx: int, offset: int, data: rq.Data) -> int:
        """Write at ``offset`` (-1 appends); the bytes written. Large writes go through shared
        memory with a daemon on this host, in slot-sized pieces; writes over one message's
        limit through the sockets, in pieces of that limit. As ``Client.write_handle``, the
        pieces of a write at an offset are kept in flight (SHM_IN_FLIGHT through shared
        memory, SOCKET_WRITES_IN_FLIGHT through the sockets) and the call returns once every
        piece sent was answered: the bytes up to the first short piece, or the failure of the
        first failed piece in offset order; appends go one piece after the other."""
        view = memoryview(data).cast("B")
        shared_memory = self._shared_memory and len(view) >= shm.MIN_WRITE_BYTES
        step = shm.SLOT_BYTES if shared_memory else rq.MAX_WRITE_BYTES
        in_flight = 1
        if offset != -1 and len(view) > step:
            in_flight = SHM_IN_FLIGHT if shared_memory else SOCKET_WRITES_IN_FLIGHT

        async def one(where: int, piece: memoryview) -> int:
            if shared_memory:
                write = functools.partial(rq.write, fobx, where, piece, self._timeout_ms)
                return await self._in_slot(len(piece), write)
            return await self.run(rq.write(fobx, where, piece, self._timeout_ms))

        pieces = iter(rq.write_pieces(offset, len(view), step))
        flying: deque[tuple[asyncio.Task[int], int]] = deque()
        total = 0
        stop = False  # a piece failed or came back short: send no more, count no more

        def send() -> bool:
            nxt = None if stop else next(pieces, None)
            if nxt is None:
                return False
            where, start, end = nxt
            flying.append((asyncio.ensure_future(one(where, view[start:end])), end - start))
            return True

        failure: OSError | None = None
        try:
            while len(flying) < in_flight and send():
                pass
            while flying:
                task, size = flying[0]
                try:
                    count = await task
                except OSError as exc:
                    flying.popleft()
                    if not stop:  # the first failure in offset order; the rest still answer
                        failure, stop = exc, True
                    continue
                flying.popleft()
                if not stop:
                    total += count
                    stop = count < size
                send()
        finally:
            # given up on (a cancel, an interrupt): the pieces still in flight are cancelled
            # and awaited, so that none outlives the call
            for task, _ in flying:
                task.cancel()
            if flying:
                await asyncio.gather(*(task for task, _ in flying), return_exceptions=True)
        if failure is not None:
            raise failure
        return total

    async def query_info(self, fobx: int) -> FileInfo:
        return await self.run(rq.query_info(fobx, self._timeout_ms))

    async def set_info(self, fobx: int, info_class: int, **args: Any) -> None:
        await self.run(rq.set_info(fobx, self._timeout_ms, info_class, **args))

    async def query_security(self, fobx: int, info: int = rq.OWNER_GROUP_DACL) -> dict[str, Any]:
        """As ``Client.query_security`` on an open handle."""
        return await self.run(rq.query_security(fobx, info, self._timeout_ms))

    async def set_security(self, fobx: int, info: int, fields: dict[str, Any]) -> None:
        """IRP_MJ_SET_SECURITY on an open handle: SecurityInformation bits and the fields."""
        await self.run(rq.set_security(fobx, info, fields, self._timeout_ms))

    async def flush_handle(self, fobx: int) -> None:
        await self.run(rq.flush(fobx, self._timeout_ms))

    async def query_directory(self, fobx: int, pattern: str = "*") -> list[FileInfo] | None:
        return await self.run(rq.query_directory(fobx, self._timeout_ms, pattern))

    async def watch(
        self,
        fobx: int,
        completion_filter: int = 0x3,
        *,
        tree: bool = False,
        timeout: float | None = None,
    ) -> list[dict[str, Any]] | None:
        """As ``Client.watch``: wait for changes in an open directory. Cancelling the awaiting
        task cancels the wait on the daemon."""
        timeout_ms = int((timeout if timeout is not None else self.timeout) * 1000)
        return await self.run(rq.notify(fobx, completion_filter, timeout_ms, tree=tree))

    async def lock(
        self, fobx: int, offset: int, length: int, *, exclusive: bool = True, wait: bool = False
    ) -> None:
        """As ``Client.lock``. Cancelling the task awaiting a waiting lock withdraws it: a later
        unlock grants the range to the next waiter, never to this one."""
        await self.run(
            rq.lock(fobx, offset, length, self._timeout_ms, exclusive=exclusive, wait=wait)
        )

    async def unlock(self, fobx: int, offset: int, length: int) -> None:
        await self.run(rq.unlock(fobx, offset, length, self._timeout_ms))

    # ------------------------------------------------------------------ path operations
    async def stat(self, path: str) -> FileInfo:
        """Open for attributes and close, as one compound (one round trip)."""
        answer, _ = await self._exchange(rq.stat_compound(path, self._timeout_ms), None)
        return rq.stat_result(answer)

    async def listdir(self, path: str, pattern: str = "*") -> list[str]:
        """As ``Client.listdir``: the open and the first two batches in one compound."""
        outcomes = await self.compound(rq.list_items(path, self._timeout_ms, pattern))
        if outcomes[0].status in CONNECTION_LOST:  # (sent again alone, as the core does that)
            handle = await self.run(rq.list_open(path, self._timeout_ms))
        else:
            handle = outcomes[0].unwrap()
        try:
            entries, over = rq.list_result(outcomes)
            names = [e.name for e in entries]
            while not over:
                batch = await self.query_directory(handle.fobx, pattern)
                if batch is None:
                    break
                names.extend(e.name for e in batch)
        finally:
            await self.close_handle(handle.fobx)
        return names

    async def read_bytes(self, path: str, *, in_flight: int = 8) -> bytes:
        """The whole file: as ``Client.read_bytes``, one compound for a small file; a longer
        one is read again from its start: up to WHOLE_READ_BYTES as one more compound, a larger
        one through an open file, up to ``in_flight`` chunks at once."""
        outcomes = await self.compound(rq.read_file_items(path, self._timeout_ms))
        data = rq.read_file_result(outcomes)
        if len(data) < rq.SMALL_READ_BYTES:
            return data
        window = rq.whole_read_window(outcomes)
        if window is not None:
            items = rq.read_file_items(path, self._timeout_ms, window)
            data = rq.read_file_result(await self.compound(items))
            if len(data) < window:
                return data
        handle = await self.create(path, options=CreateOptions.FILE_NON_DIRECTORY_FILE)
        try:
            size = handle.info.size
            offsets = range(0, size, READ_CHUNK)
            parts: list[bytes] = []
            for start in range(0, len(offsets), in_flight):
                batch = offsets[start : start + in_flight]
                parts += await asyncio.gather(
                    *(self.read_handle(handle.fobx, off, READ_CHUNK) for off in batch)
                )
            tail = await self.read_handle(handle.fobx, size, READ_CHUNK)  # grew meanwhile?
            return b"".join(parts) + tail
        finally:
            await self.close_handle(handle.fobx)

    async def write_bytes(self, path: str, data: bytes, *, in_flight: int = 8) -> int:
        """As ``Client.write_bytes``: up to SMALL_WRITE_BYTES as one compound (create, write,
        close); more in chunks, up to ``in_flight`` at once."""
        if len(data) <= SMALL_WRITE_BYTES:
            items = rq.write_file_items(path, data, self._timeout_ms)
            written = rq.write_file_result(await self.compound(items))
            if written == len(data):
                return written
        handle = await self.create(
            path,
            access=Access.GENERIC_WRITE,
            disposition=CreateDisposition.FILE_OVERWRITE_IF,
            options=CreateOptions.FILE_NON_DIRECTORY_FILE,
        )
        view = memoryview(data)
        try:
            offsets = range(0, len(view), READ_CHUNK)
            written = 0
            for start in range(0, len(offsets), in_flight):
                batch = offsets[start : start + in_flight]
                counts = await asyncio.gather(
                    *(
                        self.write_handle(handle.fobx, off, view[off : off + READ_CHUNK])
                        for off in batch
                    )
                )
                written += sum(counts)
            return written
        finally:
            await self.close_handle(handle.fobx)

    # ------------------------------------------------------------------ management
    async def ping(self) -> bool:
        result = await self.run(rq.control(FsctlCode.RDBSS_PING, self._timeout_ms))
        return bool(result.get("pong"))

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.run(
            rq.control(FsctlCode.RDBSS_STATUS, self._timeout_ms)
        )
        return result


class _Slots:
    """The asyncio client's shared-memory slots (rdbss.shm), one per request in flight. A
    request that did not settle (a deadline, a cancel) may still be using its slot: its arena
    is retired, a new one takes over, and no slot of the old one is handed out again."""

    def __init__(self) -> None:
        self.arena = shm.Arena()
        self._free: asyncio.Queue[tuple[shm.Arena, int]] = asyncio.Queue()
        self._fill()

    def _fill(self) -> None:
        for slot in range(self.arena.slots):
            self._free.put_nowait((self.arena, slot))

    @property
    def idle(self) -> int:
        """Slots free now."""
        return self._free.qsize()

    async def get(self) -> tuple[shm.Arena, int]:
        return await self._free.get()

    def put(self, arena: shm.Arena, slot: int) -> None:
        if arena is self.arena:  # a retired arena's slots are never handed out again
            self._free.put_nowait((arena, slot))

    async def run(self, arena: shm.Arena, request: Awaitable[T]) -> T:
        """Await a request that uses a slot of ``arena``; retire the arena if it did not settle."""
        try:
            return await request
        except BaseException as exc:
            if not shm.settled(exc) and arena is self.arena:
                self.arena = shm.Arena()
                arena.close()
                while not self._free.empty():  # the old arena's free slots
                    self._free.get_nowait()
                self._fill()
            raise

    def close(self) -> None:
        self.arena.close()

"""A network fault proxy: an asyncio TCP proxy between a mini-redirector and its real server on
loopback, for fault experiments where the kernel has no netem.

It listens on a loopback address, forwards every accepted connection to ``target`` and applies,
changeable at run time (``FaultProxy.set``, thread-safe):

- ``latency_ms``  added one-way delay, applied in each direction (a round trip gains twice it);
- ``jitter_ms``   + a uniform 0..jitter delay per chunk, drawn from ``random.Random(seed)``;
  chunks never overtake each other (TCP keeps order), so a large jitter also delays later data;
- ``bandwidth``   bytes/s per direction (a token bucket per direction shared by every connection,
  like one link); 0 = unlimited;
- ``slow_close_ms`` a close (EOF or a graceful close) from either side reaches the other side
  this much later (toxiproxy's slow_close): the peer sees a connection that lingers;
- ``blackhole``   stop forwarding and stop reading (the kernel buffers fill, senders block):
  connections hang, new ones are accepted but not connected upstream; data already read is held,
  not dropped, and flows again when the black hole ends;
- ``refuse``      new connections are closed at once with a RST (the client's connect succeeds,
  its first read fails with ECONNRESET or sees EOF); current connections go on;
- ``reset``       (one-shot, ``set(reset=True)`` or ``reset()``) close every current connection
  with a RST (SO_LINGER 0) on both sides;
- ``seed``        re-seed the jitter generator (the sequence of draws starts over).

The same seed gives the same sequence of jitter draws; which chunk gets which draw depends on how
the kernel splits the stream into reads, which is timing.

    proxy = FaultProxy("127.0.0.1", 445, seed=1).start()   # background thread, returns listening
    ... connect to proxy.host:proxy.port ...
    proxy.set(latency_ms=200, jitter_ms=20)
    proxy.set(reset=True)
    print(proxy.stats())    # bytes_up/bytes_down, accepted, active, reset, refused, ...
    proxy.stop()            # closes everything, joins the thread with a deadline

Command line (runs until SIGTERM/SIGINT or the control command ``stop``)::

    python -m rdbss.faultproxy --listen 127.0.0.1:0 --target 127.0.0.1:445 \\
        --control 127.0.0.1:0 [--seed N] [--latency-ms MS] [--jitter-ms MS] [--bandwidth B/S] \\
        [--slow-close-ms MS]

It prints one JSON line once listening, e.g.
``{"listen": "127.0.0.1:40001", "control": "127.0.0.1:40002", "target": "127.0.0.1:445",
"pid": 1234}``.

Control socket (loopback TCP, no authentication: loopback only): one request per line, one JSON
reply per line. A request is a JSON object ``{"cmd": ..., ...}`` or the same as words::

    {"cmd": "set", "latency_ms": 200, "refuse": false}    set latency_ms=200 refuse=false
    {"cmd": "get"}                                         get       -> the settings
    {"cmd": "stats"}                                       stats     -> the counters
    {"cmd": "reset"}                                       reset     -> RST every connection
    {"cmd": "clear"}                                       clear     -> every setting back to off
    {"cmd": "stop"}                                        stop      -> reply, then exit

Replies: ``{"ok": true, "settings": {...}}`` / ``{"ok": true, "stats": {...}}`` or
``{"ok": false, "error": "..."}``. ``python -m rdbss.faultproxy ctl HOST:PORT 'set latency_ms=200'``
sends one request and prints the reply; ``control_request(address, request)`` does it in Python.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import os
import random
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

CHUNK = 64 * 1024
HIGH_WATER = 1 << 20  # bytes queued in one direction before reading from its source pauses
LOW_WATER = 256 * 1024
CONNECT_TIMEOUT_S = 10.0
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
SET_TIMEOUT_S = 5.0
CONTROL_LINE_LIMIT = 64 * 1024
CONTROL_IDLE_TIMEOUT_S = 300.0

UP = "up"  # client -> target
DOWN = "down"  # target -> client


@dataclass(frozen=True, slots=True)
class ProxySettings:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    bandwidth: float = 0.0  # bytes/s per direction; 0 = unlimited
    slow_close_ms: float = 0.0
    blackhole: bool = False
    refuse: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_NUMBERS = ("latency_ms", "jitter_ms", "bandwidth", "slow_close_ms")
_FLAGS = ("blackhole", "refuse")


def apply_settings(current: ProxySettings, changes: Mapping[str, Any]) -> ProxySettings:
    """``current`` with ``changes`` (settings names only); raises ValueError for a bad one."""
    values = current.to_dict()
    for key, value in changes.items():
        if key in _NUMBERS:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{key} must be a number >= 0, not {value!r}")
            values[key] = float(value)
        elif key in _FLAGS:
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false, not {value!r}")
            values[key] = value
        else:
            raise ValueError(f"unknown setting {key!r}")
    return ProxySettings(**values)


class Delays:
    """One-way delays of successive chunks: latency + uniform(0, jitter) from a seeded RNG.
    Pure; the proxy keeps one per connection direction-agnostic generator."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.random = random.Random(seed)

    def reseed(self, seed: int) -> None:
        self.seed = seed
        self.random = random.Random(seed)

    def next(self, latency_ms: float, jitter_ms: float) -> float:
        """Seconds to hold the next chunk."""
        jitter = self.random.uniform(0.0, jitter_ms) if jitter_ms > 0 else 0.0
        return (latency_ms + jitter) / 1000.0


def parse_address(text: str, *, loopback: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port); ``loopback`` refuses other hosts."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, not {text!r}")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"bad port in {text!r}") from None
    if not 0 <= port < 65536:
        raise ValueError(f"bad port in {text!r}")
    if loopback:
        try:
            ok = ipaddress.ip_address(host).is_loopback
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{host!r} is not a loopback address (the proxy listens on loopback)")
    return host, port


def _set_rst(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _rst(transport: asyncio.BaseTransport | None) -> None:
    """Close with a RST: SO_LINGER 0, then close without flushing."""
    if transport is None or transport.is_closing():
        return
    _set_rst(transport)
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    else:
        transport.close()


class _Bucket:
    """A token bucket for one direction, shared by every connection (one link)."""

    def __init__(self, rate: Callable[[], float]) -> None:
        self._rate = rate
        self._tokens = 0.0
        self._last = 0.0
        self._lock = asyncio.Lock()

    @staticmethod
    def piece(rate: float) -> int:
        """Largest write at ``rate`` so that the stream stays smooth (about 50 pieces/s)."""
        if rate <= 0:
            return CHUNK
        return max(512, min(CHUNK, int(rate / 50)))

    async def take(self, n: int) -> None:
        async with self._lock:
            rate = self._rate()
            if rate <= 0:
                self._tokens = 0.0
                return
            loop = asyncio.get_running_loop()
            now = loop.time()
            burst = max(float(self.piece(rate)), rate * 0.02)
            if self._last == 0.0:
                self._tokens = burst
            else:
                self._tokens = min(burst, self._tokens + (now - self._last) * rate)
            self._last = now
            self._tokens -= n
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / rate)


class _Side(asyncio.Protocol):
    """One socket of a proxied connection (the client's or the upstream one)."""

    def __init__(self, conn: _Connection, name: str) -> None:
        self.conn = conn
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.reading_paused = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.conn.side_made(self)

    def data_received(self, data: bytes) -> None:
        self.conn.received(self, data)

    def eof_received(self) -> bool:
        self.conn.received(self, None)
        return True  # keep the other half open until that direction is delivered

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.can_write.set()
        self.conn.side_lost(self, exc)

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def set_reading(self, paused: bool) -> None:
        if self.transport is None or self.transport.is_closing() or paused == self.reading_paused:
            return
        self.reading_paused = paused
        if paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()


class _Connection:
    """One accepted connection and its upstream: two directions, each a queue of (due, data)
    delivered by one task that honors latency, bandwidth and the black hole."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.client = _Side(self, "client")
        self.upstream = _Side(self, "upstream")
        self.queues: dict[str, deque[tuple[float, bytes | None]]] = {UP: deque(), DOWN: deque()}
        self.queued: dict[str, int] = {UP: 0, DOWN: 0}
        self.last_due: dict[str, float] = {UP: 0.0, DOWN: 0.0}
        self.wakeup: dict[str, asyncio.Event] = {UP: asyncio.Event(), DOWN: asyncio.Event()}
        self.delivered_eof: set[str] = set()
        self.tasks: list[asyncio.Task[None]] = []
        self.upstream_ready = asyncio.Event()
        self.closed = False

    # ---------------------------------------------------------------- wiring
    def side_made(self, side: _Side) -> None:
        if side is self.client:
            self.proxy.on_accept(self)
        else:
            self.upstream_ready.set()
        self.update_reading()

    def source(self, direction: str) -> _Side:
        return self.client if direction == UP else self.upstream

    def sink(self, direction: str) -> _Side:
        return self.upstream if direction == UP else self.client

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks.append(loop.create_task(self._connect()))
        for direction in (UP, DOWN):
            self.tasks.append(loop.create_task(self._deliver(direction)))

    async def _connect(self) -> None:
        await self.proxy.flowing.wait()  # black hole: the connection hangs before connecting
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: self.upstream, self.proxy.target_host, self.proxy.target_port
                ),
                CONNECT_TIMEOUT_S,
            )
        except (OSError, TimeoutError):
            self.proxy.counters["upstream_failures"] += 1
            self.abort(rst=True)

    # ---------------------------------------------------------------- data path
    def received(self, side: _Side, data: bytes | None) -> None:
        direction = UP if side is self.client else DOWN
        settings = self.proxy.settings
        now = asyncio.get_running_loop().time()
        due = now
        if data is not None and (settings.latency_ms > 0 or settings.jitter_ms > 0):
            due = now + self.proxy.delays.next(settings.latency_ms, settings.jitter_ms)
        elif data is None and settings.slow_close_ms > 0:
            due = now + settings.slow_close_ms / 1000.0
        due = max(due, self.last_due[direction])  # bytes never overtake each other
        self.last_due[direction] = due
        self.queues[direction].append((due, data))
        self.queued[direction] += len(data) if data else 0
        self.wakeup[direction].set()
        self.update_reading()

    def update_reading(self) -> None:
        blackhole = self.proxy.settings.blackhole
        for direction in (UP, DOWN):
            queued = self.queued[direction]
            side = self.source(direction)
            if blackhole or queued > HIGH_WATER:
                side.set_reading(True)
            elif queued < LOW_WATER:
                side.set_reading(False)

    async def _deliver(self, direction: str) -> None:
        loop = asyncio.get_running_loop()
        queue = self.queues[direction]
        bucket = self.proxy.buckets[direction]
        sink = self.sink(direction)
        await self.upstream_ready.wait()
        while not self.closed:
            if not queue:
                self.wakeup[direction].clear()
                await self.wakeup[direction].wait()
                continue
            due, data = queue[0]
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.proxy.flowing.wait()
            queue.popleft()
            if data is None:
                if sink.transport is not None and not sink.transport.is_closing():
                    with contextlib.suppress(OSError, RuntimeError):
                        if sink.transport.can_write_eof():
                            sink.transport.write_eof()
                self.delivered_eof.add(direction)
                if len(self.delivered_eof) == 2:
                    self.close()
                return
            view = memoryview(data)
            while view and not self.closed:
                piece = view[: _Bucket.piece(self.proxy.settings.bandwidth)]
                view = view[len(piece) :]
                await bucket.take(len(piece))
                await self.proxy.flowing.wait()
                await sink.can_write.wait()
                if self.closed or sink.transport is None or sink.transport.is_closing():
                    return
                sink.transport.write(bytes(piece))
                self.proxy.counters["bytes_" + direction] += len(piece)
            self.queued[direction] -= len(data)
            self.update_reading()

    # ---------------------------------------------------------------- endings
    def side_lost(self, side: _Side, exc: Exception | None) -> None:
        if self.closed:
            return
        # a reset (or any error) on one side is passed on as a reset to the other side
        other = self.upstream if side is self.client else self.client
        if exc is not None:
            _rst(other.transport)
        elif other.transport is not None:
            linger = self.proxy.settings.slow_close_ms / 1000.0
            if linger > 0:
                asyncio.get_running_loop().call_later(linger, other.transport.close)
            else:
                other.transport.close()
        self.finish()

    def close(self) -> None:
        """Both directions delivered their EOF: close both sockets gracefully."""
        for side in (self.client, self.upstream):
            if side.transport is not None and not side.transport.is_closing():
                side.transport.close()
        self.finish()

    def abort(self, *, rst: bool) -> None:
        for side in (self.client, self.upstream):
            if rst:
                _rst(side.transport)
            elif side.transport is not None and not side.transport.is_closing():
                side.transport.abort()
        self.finish()

    def finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        for event in self.wakeup.values():
            event.set()
        self.upstream_ready.set()
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        self.proxy.on_close(self)


class FaultProxy:
    """A TCP proxy ``host:port`` -> ``target_host:target_port`` with run-time faults."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        **settings: Any,
    ) -> None:
        parse_address(f"{host}:{port}", loopback=True)
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = port
        self.control_port: int | None = None
        self.settings = apply_settings(ProxySettings(), settings)
        self.delays = Delays(seed)
        self.counters: dict[str, int] = dict.fromkeys(
            ("bytes_up", "bytes_down", "accepted", "reset", "refused", "upstream_failures"), 0
        )
        self.connections: set[_Connection] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._control_tasks: set[asyncio.Task[None]] = set()
        self.stopped = threading.Event()  # set when the loop has ended (e.g. control "stop")
        # created on the loop
        self.flowing: asyncio.Event
        self.buckets: dict[str, _Bucket]

    # ---------------------------------------------------------------- life cycle
    def start(self, timeout: float = START_TIMEOUT_S) -> FaultProxy:
        """Run the proxy's event loop in a background thread; return once it listens."""
        if self._thread is not None:
            raise RuntimeError("the proxy was already started")
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise TimeoutError(f"the fault proxy did not start listening in {timeout:.0f} s")
        if self._error is not None:
            self._thread.join(STOP_TIMEOUT_S)
            raise self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
            loop.close()
            self.stopped.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            # let the aborted transports run their connection_lost callbacks (closing sockets)
            loop.run_until_complete(asyncio.sleep(0.01))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self.stopped.set()

    async def _listen(self) -> None:
        self.flowing = asyncio.Event()
        self.buckets = {UP: _Bucket(self._rate), DOWN: _Bucket(self._rate)}
        self._apply_flow()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._accept, self.host, self.port, reuse_address=True)
        self._servers.append(server)
        self.port = int(server.sockets[0].getsockname()[1])

    def _rate(self) -> float:
        return self.settings.bandwidth

    def _accept(self) -> _Side:
        conn = _Connection(self)
        return conn.client

    def on_accept(self, conn: _Connection) -> None:
        self.counters["accepted"] += 1
        if self.settings.refuse:
            self.counters["refused"] += 1
            conn.abort(rst=True)
            return
        self.connections.add(conn)
        conn.start()

    def on_close(self, conn: _Connection) -> None:
        self.connections.discard(conn)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Close the listener, the control socket and every connection; join the thread."""
        loop, thread = self._loop, self._thread
        if thread is None:
            return
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed in between
                loop.call_soon_threadsafe(self._shutdown)
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"the fault proxy thread did not end in {timeout:.0f} s")

    def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.abort(rst=True)
        for task in self._control_tasks:
            task.cancel()
        assert self._loop is not None
        self._loop.stop()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- run-time control
    def _call(self, func: Callable[[], Any], timeout: float = SET_TIMEOUT_S) -> Any:
        """Run ``func`` on the proxy's loop and return its result (inline when not running)."""
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            with self._lock:
                return func()
        if threading.current_thread() is self._thread:
            return func()
        future = asyncio.run_coroutine_threadsafe(self._async(func), loop)
        return future.result(timeout)

    @staticmethod
    async def _async(func: Callable[[], Any]) -> Any:
        return func()

    def set(self, **changes: Any) -> dict[str, Any]:
        """Change settings (see the module docstring); ``reset=True`` also resets every current
        connection and ``seed=N`` re-seeds the jitter. Returns the settings in force."""
        reset = changes.pop("reset", False)
        seed = changes.pop("seed", None)
        if not isinstance(reset, bool):
            raise ValueError(f"reset must be true or false, not {reset!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer, not {seed!r}")
        new = apply_settings(self.settings, changes)  # validates before anything changes

        def apply() -> dict[str, Any]:
            self.settings = new
            if seed is not None:
                self.delays.reseed(seed)
            if self._loop is not None and self._loop.is_running():
                self._apply_flow()
                if reset:
                    self._reset_all()
            return self.settings.to_dict()

        result: dict[str, Any] = self._call(apply)
        return result

    def clear(self) -> dict[str, Any]:
        """Every setting back to off (no latency, no limit, flowing, accepting)."""
        return self.set(**ProxySettings().to_dict())

    def reset(self) -> int:
        """Close every current connection with a RST; returns how many."""
        result: int = self._call(self._reset_all)
        return result

    def _reset_all(self) -> int:
        conns = list(self.connections)
        for conn in conns:
            conn.abort(rst=True)
        self.counters["reset"] += len(conns)
        return len(conns)

    def _apply_flow(self) -> None:
        if self.settings.blackhole:
            self.flowing.clear()
        else:
            self.flowing.set()
        for conn in list(self.connections):
            conn.update_reading()

    def stats(self) -> dict[str, Any]:
        """Bytes forwarded each way and connection counters (a snapshot)."""

        def snapshot() -> dict[str, Any]:
            out: dict[str, Any] = dict(self.counters)
            out["active"] = len(self.connections)
            out["queued_bytes"] = sum(sum(c.queued.values()) for c in self.connections)
            return out

        result: dict[str, Any] = self._call(snapshot)
        return result

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # ---------------------------------------------------------------- control socket
    def serve_control(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen for control requests (module docstring) on loopback; returns the port."""
        parse_address(f"{host}:{port}", loopback=True)
        loop = self._loop
        if loop is None or not loop.is_running():
            raise RuntimeError("start the proxy first")

        async def listen() -> int:
            server = await asyncio.start_server(
                self._control_client, host, port, limit=CONTROL_LINE_LIMIT, reuse_address=True
            )
            self._servers.append(server)
            return int(server.sockets[0].getsockname()[1])

        self.control_port = asyncio.run_coroutine_threadsafe(listen(), loop).result(SET_TIMEOUT_S)
        return self.control_port

    async def _control_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._control_tasks.add(task)
        stop = False
        try:
            while not stop:
                try:
                    line = await asyncio.wait_for(reader.readline(), CONTROL_IDLE_TIMEOUT_S)
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(b'{"ok": false, "error": "line too long"}\n')
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                reply, stop = self.handle_control(line.decode("utf-8", "replace"))
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (OSError, TimeoutError):
            pass
        finally:
            self._control_tasks.discard(task)
            writer.close()
            if stop:
                assert self._loop is not None
                self._loop.call_soon(self._shutdown)

    def handle_control(self, line: str) -> tuple[dict[str, Any], bool]:
        """One control request -> (reply, stop?). Runs on the proxy's loop."""
        try:
            request = parse_control(line)
            cmd = request.pop("cmd")
            if cmd == "set":
                return {"ok": True, "settings": self.set(**request)}, False
            if request:
                raise ValueError(f"{cmd} takes no arguments")
            if cmd == "get":
                return {"ok": True, "settings": self.settings.to_dict()}, False
            if cmd == "stats":
                return {"ok": True, "stats": self.stats()}, False
            if cmd == "reset":
                return {"ok": True, "reset": self.reset()}, False
            if cmd == "clear":
                return {"ok": True, "settings": self.clear()}, False
            if cmd == "stop":
                return {"ok": True, "stopping": True}, True
            raise ValueError(f"unknown command {cmd!r} (set, get, stats, reset, clear, stop)")
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}, False


def parse_control(line: str) -> dict[str, Any]:
    """A control line (a JSON object or ``word key=value ...``) -> {"cmd": ..., ...}."""
    line = line.strip()
    if line.startswith("{"):
        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            raise ValueError('a request needs "cmd"')
        return request
    words = line.split()
    if not words:
        raise ValueError("empty request")
    request = {"cmd": words[0]}
    for word in words[1:]:
        key, sep, raw = word.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, not {word!r}")
        try:
            request[key] = json.loads(raw)
        except json.JSONDecodeError:
            request[key] = raw
    return request


def control_request(
    address: str | tuple[str, int], request: str | Mapping[str, Any], timeout: float = 5.0
) -> dict[str, Any]:
    """Send one control request to a proxy's control socket and return its reply."""
    host, port = parse_address(address) if isinstance(address, str) else address
    line = request if isinstance(request, str) else json.dumps(dict(request))
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(line.strip().encode() + b"\n")
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no reply from the fault proxy")
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the fault proxy closed the control connection")
            buf += data
    reply: dict[str, Any] = json.loads(buf.split(b"\n", 1)[0])
    return reply


# -------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "ctl":
        if len(argv) != 3:
            print("usage: python -m rdbss.faultproxy ctl HOST:PORT REQUEST", file=sys.stderr)
            return 2
        try:
            reply = control_request(argv[1], argv[2])
        except (OSError, ValueError) as exc:
            print(f"faultproxy: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(reply))
        return 0 if reply.get("ok") else 1
    parser = argparse.ArgumentParser(
        prog="python -m rdbss.faultproxy", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--listen", default="127.0.0.1:0", help="loopback HOST:PORT (0: any)")
    parser.add_argument("--target", required=True, help="HOST:PORT of the real server")
    parser.add_argument("--control", help="loopback HOST:PORT of the control socket")
    parser.add_argument("--seed", type=int, default=0, help="jitter seed")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--bandwidth", type=float, default=0.0, help="bytes/s per direction")
    parser.add_argument("--slow-close-ms", type=float, default=0.0, help="delay of a close")
    args = parser.parse_args(argv)
    try:
        listen_host, listen_port = parse_address(args.listen, loopback=True)
        target_host, target_port = parse_address(args.target)
        control = parse_address(args.control, loopback=True) if args.control else None
        proxy = FaultProxy(
            target_host,
            target_port,
            host=listen_host,
            port=listen_port,
            seed=args.seed,
            latency_ms=args.latency_ms,
            jitter_ms=args.jitter_ms,
            bandwidth=args.bandwidth,
            slow_close_ms=args.slow_close_ms,
        )
    except ValueError as exc:
        parser.error(str(exc))
    ending = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: ending.set())
    try:
        proxy.start()
        control_port = proxy.serve_control(*control) if control else None
    except (OSError, TimeoutError) as exc:
        print(f"faultproxy: {exc}", file=sys.stderr)
        proxy.stop()
        return 1
    banner = {
        "listen": proxy.address,
        "control": f"{control[0]}:{control_port}" if control else None,
        "target": f"{target_host}:{target_port}",
        "pid": os.getpid(),
    }
    print(json.dumps(banner), flush=True)
    while not ending.is_set() and not proxy.stopped.is_set():
        ending.wait(0.2)
    proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

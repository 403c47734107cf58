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
import itertools
from pathlib import Path
from typing import Any, TypeVar

import zmq
import zmq.asyncio

from rdbss import requests as rq
from rdbss import shm
from rdbss.client import connect_client_socket, daemon_endpoints
from rdbss.config import Config, RemoteDaemon
from rdbss.requests import FileInfo, Handle
from rdbss.wire import (
    Access,
    Codec,
    CreateDisposition,
    CreateOptions,
    FsctlCode,
    NtStatus,
    RxCancel,
    RxCompletion,
    RxContext,
    WireError,
    error_for_status,
    pack_frames,
    unpack_frames,
)

__all__ = ["AsyncClient", "FileInfo", "Handle"]

S = NtStatus
T = TypeVar("T")
GRACE_S = 2.0
CANCEL_LINGER_MS = 500  # how long closing waits to deliver the cancels of what was in flight
READ_CHUNK = 1 << 20


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
        self._arena: shm.Arena | None = None
        self._slots: asyncio.Queue[int] | None = None
        self._zctx = zmq.asyncio.Context()
        self._zctx.setsockopt(zmq.LINGER, 0)
        self._sock = self._zctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.SNDHWM, 0)
        connect_client_socket(self._sock, endpoints)
        self._codec = Codec()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[tuple[RxCompletion, memoryview | None]]] = {}
        self._reader: asyncio.Task[None] | None = None
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
            with contextlib.suppress(zmq.ZMQError):
                await self._sock.send_multipart(
                    pack_frames(self._codec, RxCancel(request_id, "client"))
                )
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(error_for_status(S.STATUS_CANCELLED, "the client was closed"))
        self._sock.close(linger=CANCEL_LINGER_MS if in_flight else 0)
        self._zctx.term()
        if self._arena is not None:
            self._arena.close()

    async def _read_completions(self) -> None:
        while True:
            frames = await self._sock.recv_multipart(copy=False)
            try:
                msg, payload = unpack_frames(self._codec, frames)
            except WireError:
                continue
            if not isinstance(msg, RxCompletion):
                continue
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
        if self._closed:
            raise error_for_status(S.STATUS_INVALID_HANDLE, "the client is closed")
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read_completions())
        ctx.request_id = next(self._ids)
        future: asyncio.Future[tuple[RxCompletion, memoryview | None]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting[ctx.request_id] = future
        wait_s = ctx.timeout_ms / 1000.0 + GRACE_S
        try:
            await self._sock.send_multipart(pack_frames(self._codec, ctx, payload), copy=False)
            done, data = await asyncio.wait_for(future, wait_s)
        except TimeoutError:
            self._cancel(ctx.request_id, "deadline")
            raise error_for_status(
                S.STATUS_IO_TIMEOUT, f"no answer from the daemon in {wait_s:.1f} s"
            ) from None
        except asyncio.CancelledError:
            self._cancel(ctx.request_id, "client")  # the caller gave up: so does the daemon
            raise
        finally:
            self._waiting.pop(ctx.request_id, None)
        if done.status not in ok:
            raise error_for_status(done.status, done.message)
        return done, data

    def _cancel(self, request_id: int, reason: str) -> None:
        """Send RxCancel without awaiting (works inside a task being cancelled). It is never
        answered itself; the request's own answer, if any, finds no waiter and is dropped."""
        if self._closed:
            return
        try:
            sent = asyncio.ensure_future(
                self._sock.send_multipart(pack_frames(self._codec, RxCancel(request_id, reason)))
            )
        except zmq.ZMQError:
            return
        sent.add_done_callback(lambda f: None if f.cancelled() else f.exception())

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
        arena = self._arena_for_reads()
        step = arena.slot_bytes
        starts = range(0, len(view), step)
        counts = await asyncio.gather(
            *(self._read_piece(fobx, offset + at, view[at : at + step]) for at in starts)
        )
        total = 0
        for at, count in zip(starts, counts, strict=True):
            total += count
            if count < min(step, len(view) - at):
                break  # the end of the file
        return total

    def _arena_for_reads(self) -> shm.Arena:
        if self._arena is None:
            self._arena = shm.Arena()
            self._slots = asyncio.Queue()
            for slot in range(self._arena.slots):
                self._slots.put_nowait(slot)
        return self._arena

    async def _read_piece(self, fobx: int, offset: int, target: memoryview) -> int:
        assert self._arena is not None and self._slots is not None
        slot = await self._slots.get()
        try:
            shared = (self._arena.args(slot), self._arena.view(slot, len(target)))
            return await self.run(rq.read_into(fobx, offset, target, self._timeout_ms, shared))
        finally:
            self._slots.put_nowait(slot)

    async def write_handle(self, fobx: int, offset: int, data: rq.Data) -> int:
        return await self.run(rq.write(fobx, offset, data, self._timeout_ms))

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
        handle = await self.create(path, access=Access.FILE_READ_ATTRIBUTES)
        await self.close_handle(handle.fobx)
        return handle.info

    async def listdir(self, path: str, pattern: str = "*") -> list[str]:
        handle = await self.create(
            path, access=Access.FILE_LIST_DIRECTORY, options=CreateOptions.FILE_DIRECTORY_FILE
        )
        names: list[str] = []
        try:
            while (batch := await self.query_directory(handle.fobx, pattern)) is not None:
                names.extend(e.name for e in batch)
        finally:
            await self.close_handle(handle.fobx)
        return names

    async def read_bytes(self, path: str, *, in_flight: int = 8) -> bytes:
        """The whole file, reading up to ``in_flight`` chunks at once."""
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

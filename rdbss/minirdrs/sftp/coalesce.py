"""The SSH connection's TCP transport, its writes of one event-loop turn sent as one.

asyncssh hands every SSH packet to its transport as soon as it is made, and puts an
SSH_MSG_IGNORE packet before each packet it encrypts, so every SFTP request is two writes, and
each write is a send(2) while the socket's buffer is empty. On a fast network (loopback most of
all, where the kernel delivers to the peer inside the sender's send) a send costs more than
the packet's encryption. Here the writes made during one turn of the event loop (a request and
its IGNORE; the requests sent together: a lookup's realpath and lstat, a READ and its CLOSE,
a chain, a pipelined transfer's pieces) are joined and go out at the end of that turn, after
the callbacks already queued: one send instead of several, and no request waits for a timer.

The transport is put in place by a tunnel connector (``CoalescingConnector``, asyncssh's
``tunnel`` option: an object with ``create_connection``), which opens the TCP connection itself
and wraps the transport the SSH connection is made with. Closing the transport sends what is
gathered first; aborting it drops it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

#: A write of at least this much goes out at once (after what was gathered before it): joining
#: it with others would cost a copy of its bytes for no send saved.
DIRECT_BYTES = 64 << 10


class CoalescingTransport(asyncio.Transport):
    """``transport`` with its writes of one loop turn joined into one write."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes | bytearray | memoryview] = []
        self._pending_bytes = 0

    # ------------------------------------------------------------------ writing
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) >= DIRECT_BYTES:
            self.flush()
            self._transport.write(data)
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)
        self._pending_bytes += len(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Send what was gathered, as one write."""
        pending = self._pending
        if not pending:
            return
        self._pending, self._pending_bytes = [], 0
        if self._transport.is_closing():
            return
        self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._pending_bytes

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending, self._pending_bytes = [], 0
        self._transport.abort()

    # ------------------------------------------------------------------ the rest, as is
    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        limits: tuple[int, int] = self._transport.get_write_buffer_limits()
        return limits

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()


class _Wrapping(asyncio.Protocol):
    """Hands ``inner`` (the SSH connection) a ``CoalescingTransport`` of the TCP transport, and
    everything else the transport says as it comes."""

    def __init__(self, inner: asyncio.Protocol, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = inner
        self._loop = loop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.set_protocol(self.inner)  # from now on the transport talks to it directly
        self.inner.connection_made(CoalescingTransport(transport, self._loop))


class CoalescingConnector:
    """asyncssh's ``tunnel`` option: opens the TCP connection to the server and makes the SSH
    connection on a ``CoalescingTransport`` of it."""

    def __init__(self, family: int = 0) -> None:
        self.family = family

    async def create_connection(
        self, session_factory: Callable[[], asyncio.Protocol], host: str, port: int
    ) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
        loop = asyncio.get_running_loop()
        wrapping: list[_Wrapping] = []

        def factory() -> asyncio.Protocol:
            wrapping.append(_Wrapping(session_factory(), loop))
            return wrapping[0]

        transport, _ = await loop.create_connection(factory, host, port, family=self.family)
        return transport, wrapping[0].inner

    def close(self) -> None:
        """(asyncssh's tunnel interface: nothing of its own to close.)"""

    async def wait_closed(self) -> None:
        """(asyncssh's tunnel interface.)"""

"""The SFTP connection's transport (rdbss/minirdrs/sftp/coalesce.py) over a real loopback TCP
connection: the writes of one loop turn reach the peer in order as one write of the TCP
transport, a large write goes at once after what was gathered, a close sends what was gathered
and an abort drops it."""

from __future__ import annotations

import asyncio
from typing import Any

from rdbss.minirdrs.sftp.coalesce import DIRECT_BYTES, CoalescingConnector, CoalescingTransport


class _Sink(asyncio.Protocol):
    """The server side: everything it received, and when the connection ended."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport


async def _connected() -> tuple[_Client, _Sink, list[int], asyncio.Server]:
    sinks: list[_Sink] = []

    def sink() -> _Sink:
        sinks.append(_Sink())
        return sinks[-1]

    server = await asyncio.get_running_loop().create_server(sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, client = await CoalescingConnector().create_connection(_Client, "127.0.0.1", port)
    assert isinstance(client, _Client)
    wrapper = client.transport
    assert isinstance(wrapper, CoalescingTransport)
    sizes: list[int] = []  # what reached the TCP transport, write by write
    inner = wrapper._transport
    write = inner.write

    def counted(data: Any) -> None:
        sizes.append(len(data))
        write(data)

    inner.write = counted  # type: ignore[method-assign]
    for _ in range(500):  # the server's side of the connection, within 5 s
        if sinks:
            break
        await asyncio.sleep(0.01)
    assert sinks, "the server never saw the connection"
    return client, sinks[0], sizes, server


async def _received(sink: _Sink, size: int) -> bytes:
    for _ in range(500):
        if len(sink.data) >= size:
            break
        await asyncio.sleep(0.01)
    return bytes(sink.data)


def test_the_writes_of_one_turn_go_out_as_one_in_order() -> None:
    async def go() -> None:
        client, sink, sizes, server = await _connected()
        parts = [b"ignore", b"realpath", b"lstat"]
        for part in parts:
            client.transport.write(part)
        assert sizes == []  # gathered until the turn ends
        assert client.transport.get_write_buffer_size() == sum(map(len, parts))
        n = sum(map(len, parts))
        assert await _received(sink, n) == b"".join(parts)
        assert sizes == [n]
        client.transport.write(b"next")
        assert await _received(sink, n + 4) == b"".join(parts) + b"next"
        assert sizes == [n, 4]
        client.transport.close()
        server.close()

    asyncio.run(go())


def test_a_large_write_goes_at_once_after_what_was_gathered() -> None:
    async def go() -> None:
        client, sink, sizes, server = await _connected()
        big = bytes(range(256)) * (DIRECT_BYTES // 256)
        client.transport.writelines([b"small", big, b"after"])
        assert sizes == [5, len(big)]  # the gathered write first, then the large one
        expected = b"small" + big + b"after"
        assert await _received(sink, len(expected)) == expected
        assert sizes == [5, len(big), 5]
        client.transport.close()
        server.close()

    asyncio.run(go())


def test_close_sends_what_was_gathered_and_abort_drops_it() -> None:
    async def go() -> None:
        client, sink, _, server = await _connected()
        client.transport.write(b"last words")
        client.transport.close()
        await asyncio.wait_for(sink.closed, 5)
        assert bytes(sink.data) == b"last words"
        client, sink, sizes, server2 = await _connected()
        client.transport.write(b"never sent")
        client.transport.abort()
        await asyncio.wait_for(sink.closed, 5)
        await asyncio.sleep(0.05)  # the flush the write scheduled finds nothing to send
        assert bytes(sink.data) == b"" and sizes == []
        server.close()
        server2.close()

    asyncio.run(go())

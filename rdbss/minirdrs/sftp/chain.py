"""A chain of related items sent at once on an open just made (``PosixMiniRdr``'s
``create_with_related``): reads, writes, stats and the close of one handle, as ONE coroutine on
the connection's event loop.

SFTP servers process the requests of one channel in order (SFTP v3, section 6: OpenSSH answers
them in order too), so each item's request goes out without waiting for the answer before it,
the close included: the close is processed after every request sent before it. That holds
only when each item is one request sent the moment its task starts: the chain's open is made
``unsplit`` (rdbss/minirdrs/sftp/remote.py ``aopen_and_stat``), and ``chain_of``
(rdbss/model/compound.py) keeps each READ and WRITE within the server's request limits and
ends every chain with its close, so an unsplit handle serves nothing after the chain. The
tasks start in the order they are made, so the requests go out in the items' order; every
answer, the close's too, is awaited before the chain answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import cast

import asyncssh

from rdbss.minirdrs.common.args import show
from rdbss.minirdrs.primitives import ChainItem
from rdbss.minirdrs.sftp.attrs import SftpStat, stat_of
from rdbss.minirdrs.sftp.errors import fail
from rdbss.minirdrs.sftp.remote import Open, aclose_handle, arepin, astat, report_write_error
from rdbss.model.compound import ChainKind
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus


def _step(op: Open, item: ChainItem) -> Callable[[], Awaitable[object]]:
    """The coroutine of one item, its request sent in its first step (as ``read_at``,
    ``write_at``, ``fstat`` and ``close_handle`` do it alone)."""
    handle = op.file
    if item.kind is ChainKind.CLOSE:

        async def close() -> None:
            await aclose_handle(op)
            report_write_error(op)

        return close
    if item.kind is ChainKind.QUERY_INFO:

        async def query() -> SftpStat:
            return stat_of(await astat(op), op.remote)

        return query
    if handle is None:
        access = "reading" if item.kind is ChainKind.READ else "writing"
        error = NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(op.path)} is not open for {access}")

        async def refused() -> None:
            raise error

        return refused
    if item.kind is ChainKind.READ:

        async def read() -> bytes:
            try:
                return cast(bytes, await handle.read(item.length, item.offset))
            except asyncssh.SFTPError as exc:
                fail(exc, "cannot read", op.path)

        return read

    async def write() -> int:
        try:
            # append-only: opened with FXF_APPEND, the server writes at its end
            await handle.write(item.data, 0 if item.offset is None else item.offset)
            await arepin(op)
        except asyncssh.SFTPError as exc:
            fail(exc, "cannot write", op.path)
        return len(item.data)

    return write


async def achain(op: Open, items: list[ChainItem]) -> list[object]:
    """Send every item's request at once, in order, and answer each (its result or the
    exception it raised)."""
    tasks = [asyncio.ensure_future(_step(op, item)()) for item in items]
    return list(await asyncio.gather(*tasks, return_exceptions=True))

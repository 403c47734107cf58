"""The pipelined writes of one SFTP connection, on its event loop: what is in flight, what a new
write must wait for, and the ordering barrier every other request passes first (the rules:
:mod:`rdbss.model.pipelining`).

Used on the connection's event loop only. A routine hands its coroutine to the loop with
``run_coroutine_threadsafe``, which starts coroutines in the order they were handed over, and a
pipelined write registers itself (``begin``) in its first step, before it waits for anything: a
request handed over after it always finds it in flight.
"""

from __future__ import annotations

import asyncio

from rdbss.model.pipelining import overlaps


class WritesInFlight:
    """The writes of one connection not acknowledged yet: each is its task, the open it writes
    through (any object) and its byte range."""

    def __init__(self) -> None:
        self._writes: dict[asyncio.Task[object], tuple[object, tuple[int, int]]] = {}

    def __len__(self) -> int:
        return len(self._writes)

    def begin(self, owner: object, offset: int, length: int) -> list[asyncio.Task[object]]:
        """The current task starts a write of ``owner``'s range: it is in flight from now on
        (until ``end``). Returns the writes in flight it must wait for (the same open's that
        overlap the range: they go to the server first)."""
        task = asyncio.current_task()
        assert task is not None
        span = (offset, length)
        before = [
            other
            for other, (whose, where) in self._writes.items()
            if whose is owner and overlaps(where, span)
        ]
        self._writes[task] = (owner, span)
        return before

    def end(self) -> None:
        """The current task's write is answered (acknowledged, failed or given up on)."""
        task = asyncio.current_task()
        if task is not None:
            self._writes.pop(task, None)

    async def settled(self) -> None:
        """Return once every write in flight now is answered (the ordering barrier). Their
        failures are their own answers': not raised here."""
        if self._writes:
            await asyncio.wait(list(self._writes))

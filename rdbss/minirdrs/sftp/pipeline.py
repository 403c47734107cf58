"""The pipelined transfers (large writes and reads) of one SFTP connection, on its
event loop: what is in flight, what a new one must wait for, and the ordering barrier every
other request passes first (the rules: :mod:`rdbss.model.pipelining`).

Used on the connection's event loop only. A routine hands its coroutine to the loop with
``run_coroutine_threadsafe``, which starts coroutines in the order they were handed over, and a
pipelined transfer registers itself (``begin``) in its first step, before it waits for anything: a
request handed over after it always finds it in flight.
"""

from __future__ import annotations

import asyncio

from rdbss.model.pipelining import overlaps


class InFlight:
    """The transfers of one connection not answered yet: each is its task, the open it goes
    through (any object), its byte range and whether it writes."""

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[object], tuple[object, tuple[int, int], bool]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def begin(
        self, owner: object, offset: int, length: int, *, write: bool
    ) -> list[asyncio.Task[object]]:
        """The current task starts a transfer of ``owner``'s range: it is in flight from now on
        (until ``end``). Returns what it must wait for: a write, the same open's transfers that
        overlap its range (they reach the server first); a read, every write in flight (a
        read never overtakes a write)."""
        task = asyncio.current_task()
        assert task is not None
        span = (offset, length)
        if write:
            before = [
                other
                for other, (whose, where, _) in self._tasks.items()
                if whose is owner and overlaps(where, span)
            ]
        else:
            before = [other for other, (_, _, writes) in self._tasks.items() if writes]
        self._tasks[task] = (owner, span, write)
        return before

    def end(self) -> None:
        """The current task's transfer is answered (done, failed or given up on)."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.pop(task, None)

    async def settled(self) -> None:
        """Return once every transfer in flight now is answered (the ordering barrier). Their
        failures are their own answers': not raised here."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))

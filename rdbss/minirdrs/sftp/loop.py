"""The private asyncio event loop that runs asyncssh for one SFTP mini-redirector.

asyncssh is asynchronous; the routines run on the host's worker threads (one per SrvCall) and
block. :class:`LoopThread` owns one event loop in a daemon thread, started at the first use and
stopped by :meth:`LoopThread.stop`; a routine hands it a coroutine factory and waits for the
result with a deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class LoopThread:
    """A private asyncio loop in a daemon thread; ``run`` waits for a coroutine with a deadline."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=self._main, args=(loop,), name=f"{self._name}-asyncio", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    @staticmethod
    def _main(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
            loop.close()

    @property
    def running(self) -> bool:
        return self._loop is not None

    def run(self, factory: Callable[[], Awaitable[T]], timeout: float) -> T:
        """Run ``factory()`` on the loop; TimeoutError after ``timeout`` seconds (the coroutine
        is cancelled), concurrent.futures.CancelledError if the loop stopped meanwhile."""

        future = self.submit(factory)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result in {timeout:.1f} s") from None

    def submit(self, factory: Callable[[], Awaitable[T]]) -> concurrent.futures.Future[T]:
        """Start ``factory()`` on the loop without waiting for it; coroutines start in the order
        they were handed over (``run`` or ``submit``)."""

        async def call() -> T:
            return await factory()

        return asyncio.run_coroutine_threadsafe(call(), self._get())

    def stop(self, timeout: float = 3.0) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # already closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

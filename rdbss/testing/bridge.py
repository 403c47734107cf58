"""A stand-in for the bus in tests of the mini-redirector host: records what the host sends to
the core, from any thread, so a test drives ``MiniRdrHost`` without sockets."""

from __future__ import annotations

import time
from typing import Any

from rdbss.wire.rxcontext import RxCompletion


class RecordingBridge:
    """Records what the host sends (``send`` on its I/O thread, ``post`` from any other)."""

    def __init__(self) -> None:
        self.sent: list[RxCompletion] = []
        self.handler: Any = None
        self.pending_count: Any = None

    def send(self, msg: Any, payload: Any = None) -> None:
        self.sent.append(msg)

    post = send

    def close_thread_socket(self) -> None:
        """A worker's end: there is no socket to close."""

    def answers(self, count: int, timeout: float = 10.0) -> list[RxCompletion]:
        """What was sent, once there are at least ``count`` (AssertionError after
        ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while len(self.sent) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        if len(self.sent) < count:
            raise AssertionError(f"{len(self.sent)} answers of {count}: {self.sent}")
        return self.sent

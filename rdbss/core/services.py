"""What every part of the core is handed: the outbox and clock of the I/O side, the settings,
the metrics sink, and the tables several parts read and change (registered peers, the prefix
table, the open handles)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rdbss.core.types import CoreSettings, Outbox, Peer
from rdbss.model.prefix import PrefixTable
from rdbss.model.structs import Fobx

StatusSource = Callable[[], dict[str, Any]]


class Metrics(Protocol):
    """Where the core reports what it did (rdbss.actors.metrics implements it)."""

    def request_done(self, routine: str, minirdr: str, status: str, seconds: float) -> None: ...

    def peer_down(self, peer: str, reason: str) -> None: ...

    def snapshot(self, status: StatusSource) -> None: ...


class NoMetrics:
    """Metrics off: nothing is measured, the core's status is not even built."""

    def request_done(self, routine: str, minirdr: str, status: str, seconds: float) -> None:
        pass

    def peer_down(self, peer: str, reason: str) -> None:
        pass

    def snapshot(self, status: StatusSource) -> None:
        pass


@dataclass(slots=True)
class CoreState:
    out: Outbox
    clock: Callable[[], float]
    settings: CoreSettings
    metrics: Metrics
    timed: bool  # whether metrics want each request's time (a status lookup per answer)
    prefix: PrefixTable = field(default_factory=PrefixTable)
    peers: dict[str, Peer] = field(default_factory=dict)
    departed: dict[str, Peer] = field(default_factory=dict)  # went down; the supervisor restarts
    fobxs: dict[int, Fobx] = field(default_factory=dict)
    handles_of: dict[bytes, int] = field(default_factory=dict)  # client -> open handles
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    fobx_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    stopping: bool = False

"""The daemon's processes as child specifications, and the restart rule. Pure code.

Modelled on Erlang/OTP's supervisor: each child is described by data (a ``ChildSpec``: its
role, its restart type, how long it may take to stop, what it does for the others) and the
supervisor applies what ``decide_restart`` answers when one exits. The rules:

- a ``PERMANENT`` child is restarted whatever its exit; ``TRANSIENT`` only after an abnormal
  exit (a code other than 0); ``TEMPORARY`` never;
- at most ``RestartPolicy.intensity`` restarts within ``period_s`` (OTP's intensity and
  period); past that the child stays down and ``rdbss status`` says so;
- the first restart in a period is immediate (a warm standby takes over), the next ones back
  off exponentially from ``backoff_initial_s`` up to ``backoff_max_s``;
- an exit because the core dropped the peer (a core restart, a link back after a cut) is the
  reconnect protocol, not a failure: restarted at once and not counted;
- when a peer of the core dies, the core is told at once, so that the peer's in-flight
  requests complete with STATUS_CONNECTION_DISCONNECTED instead of waiting out their deadlines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Restart(StrEnum):
    """When an exited child is started again (OTP's restart types)."""

    PERMANENT = "permanent"  # always
    TRANSIENT = "transient"  # only after an abnormal exit (code other than 0)
    TEMPORARY = "temporary"  # never


class Role(StrEnum):
    """What a process runs (``python -m rdbss.actors.process ROLE NAME RUNTIME_DIR``)."""

    CORE = "core"
    CONNMGR = "connmgr"
    MINIRDR = "minirdr"


#: how long the core may take to stop: it drains in-flight requests first
CORE_SHUTDOWN_S = 15.0
#: how long any other process may take to stop before it is killed
PEER_SHUTDOWN_S = 5.0


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One supervised process, as data.

    ``serves_bus``: it binds the bus socket the others connect to, so it starts first and the
    others once the socket exists; it also stops first (draining) before the others stop.
    ``peer``: it registers with the core, so the core is told when it dies and its
    registration (or, on a node, its alive file) shows whether it is hung.
    ``standby``: it may have a warm standby process, started ahead, that takes over.
    ``reloadable``: a configuration reload may start, restart or stop it."""

    role: Role
    name: str
    restart: Restart = Restart.PERMANENT
    shutdown_s: float = PEER_SHUTDOWN_S
    serves_bus: bool = False
    peer: bool = True
    standby: bool = False
    reloadable: bool = False


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """The supervisor's restart intensity (OTP's supervisor flags) and back-off."""

    intensity: int = 5  # at most this many restarts...
    period_s: float = 30.0  # ...within this window, else give up
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 5.0


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class _Daemon(Protocol):
    """What ``child_specs`` reads of a configuration (rdbss.config.Config)."""

    @property
    def node(self) -> object | None: ...

    @property
    def minirdrs(self) -> Sequence[_Named]: ...


def minirdr_spec(name: str) -> ChildSpec:
    return ChildSpec(Role.MINIRDR, name, standby=True, reloadable=True)


def child_specs(config: _Daemon, connmgr: str = Role.CONNMGR.value) -> list[ChildSpec]:
    """The processes of a daemon, in start order: the core, the connection manager and one
    mini-redirector per ``[[minirdr]]`` table; on a node (``[node]``: the core runs on another
    host) the mini-redirectors only."""
    specs = [minirdr_spec(m.name) for m in config.minirdrs]
    if config.node is not None:
        return specs
    core = ChildSpec(
        Role.CORE, Role.CORE.value, shutdown_s=CORE_SHUTDOWN_S, serves_bus=True, peer=False
    )
    return [core, ChildSpec(Role.CONNMGR, connmgr), *specs]


@dataclass(frozen=True, slots=True)
class RestartDecision:
    """What the supervisor does about one exit.

    ``restart``: start the child again after ``delay_s``; otherwise it stays down
    (``gave_up`` when the intensity was exceeded, not when its restart type says so).
    ``history``: the restart times to remember for the next decision. ``tell_core``: tell the
    core at once that this peer is down."""

    restart: bool
    delay_s: float
    history: tuple[float, ...]
    gave_up: bool = False
    tell_core: bool = False
    reason: str = ""
    clean: bool = False  # a restart the protocol asked for (the core dropped it), not a failure


def decide_restart(
    spec: ChildSpec,
    history: Sequence[float],
    now: float,
    policy: RestartPolicy,
    *,
    exit_code: int | None = 1,
    dropped: bool = False,
) -> RestartDecision:
    """The decision for a child that exited with ``exit_code`` at ``now``, whose counted
    restarts happened at the times in ``history``. ``dropped``: it exited because the core
    dropped it (the reconnect protocol): restarted at once, not counted, core not told."""
    kept = tuple(t for t in history if now - t <= policy.period_s)
    if dropped:
        return RestartDecision(True, 0.0, kept, reason="the core dropped it", clean=True)
    tell_core = spec.peer
    if spec.restart is Restart.TEMPORARY or (spec.restart is Restart.TRANSIENT and exit_code == 0):
        return RestartDecision(False, 0.0, kept, tell_core=tell_core, reason="not restarted")
    if len(kept) >= policy.intensity:
        reason = f"restarted {len(kept)} times in {policy.period_s:.0f} s; giving up"
        return RestartDecision(False, 0.0, kept, gave_up=True, tell_core=tell_core, reason=reason)
    # the first restart in a period at once (a standby takes over), then backing off
    tries = len(kept)
    delay = (
        0.0 if not tries else min(policy.backoff_initial_s * 2 ** (tries - 1), policy.backoff_max_s)
    )
    return RestartDecision(True, delay, (*kept, now), tell_core=tell_core, reason="exited")

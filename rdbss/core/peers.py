"""The peers registered with the core (the connection manager and the mini-redirectors), those
that went down, and who serves a server name. Set-ups that arrive before the configured peers
registered again (a core restarted by the supervisor) wait here for them."""

from __future__ import annotations

from collections.abc import Callable

from rdbss.core.services import CoreState
from rdbss.core.types import Peer
from rdbss.wire.rxcontext import Register


class Peers:
    def __init__(self, state: CoreState) -> None:
        self.state = state
        self.peers = state.peers
        self.departed = state.departed
        self.started = state.clock()
        self.awaiting: list[Callable[[], None]] = []  # set-ups waiting for registrations

    def same_process(self, name: str, reg: Register) -> Peer | None:
        """The registered peer ``reg`` comes from again (same pid and host), if it is."""
        known = self.peers.get(name)
        if known is not None and known.pid == reg.pid and known.host == reg.host:
            return known
        return None

    def add(self, name: str, reg: Register, now: float) -> Peer:
        self.departed.pop(name, None)
        peer = self.peers[name] = Peer(
            name=name,
            role=reg.role,
            kind=reg.kind,
            routines=frozenset(reg.routines),
            lowio_ops=frozenset(reg.lowio_ops),
            servers=list(reg.servers),
            pid=reg.pid,
            registered_at=now,
            last_seen=now,
            host=reg.host,
            buffering=reg.buffering,
        )
        return peer

    def remove(self, name: str) -> Peer | None:
        """A peer went down: it is remembered as departed (the supervisor brings it back)."""
        peer = self.peers.pop(name, None)
        if peer is not None:
            self.departed[name] = peer
        return peer

    def candidates(self, server: str) -> list[str]:
        """The mini-redirectors that claim ``server``, in the order they are tried: those that
        name it exactly before a catch-all "*", then by the configured provider order."""
        minirdrs = [p for p in self.peers.values() if p.role == "minirdr" and p.claims(server)]
        order = {name: i for i, name in enumerate(self.state.settings.provider_order)}
        minirdrs.sort(key=lambda p: (order.get(p.name, len(order)), p.name))
        minirdrs.sort(key=lambda p: 0 if server.lower() in (s.lower() for s in p.servers) else 1)
        return [p.name for p in minirdrs]

    def departed_serving(self, server: str) -> list[str]:
        return [p.name for p in self.departed.values() if p.claims(server)]

    def expecting(self) -> bool:
        """True while a peer the configuration names has not registered since the core started,
        within the registration grace: a core restarted by the supervisor comes up before the
        connection manager and the mini-redirectors have registered with it again."""
        settings = self.state.settings
        if self.state.clock() - self.started >= settings.registration_grace_s:
            return False
        return any(name not in self.peers for name in settings.expected_peers)

    def wake_awaiting(self) -> None:
        waiting, self.awaiting = self.awaiting, []
        for resume in waiting:
            resume()

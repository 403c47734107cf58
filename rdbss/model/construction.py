"""SrvCall construction (see docs/routines.md, Connections): ask every candidate mini-redirector
to create the SrvCall, pick the winner by provider order, finalize the losers. Pure state
machine; the connection manager sends the calls it asks for and feeds back the answers."""

from __future__ import annotations

from dataclasses import dataclass, field

from rdbss.wire.status import NtStatus


@dataclass(slots=True)
class SrvCallConstruction:
    server: str
    candidates: list[str]  # in provider order
    results: dict[str, int] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """Finished when every candidate answered, or when the best-placed one that can still
        answer has succeeded (no later answer can beat it)."""
        if not self.candidates:
            return True
        for name in self.candidates:
            status = self.results.get(name)
            if status is None:
                return False
            if status == NtStatus.STATUS_SUCCESS:
                return True
        return True

    def record(self, minirdr: str, status: int, message: str = "") -> None:
        if minirdr in self.candidates and minirdr not in self.results:
            self.results[minirdr] = status
            self.messages[minirdr] = message

    @property
    def winner(self) -> str | None:
        for name in self.candidates:
            if self.results.get(name) == NtStatus.STATUS_SUCCESS:
                return name
        return None

    @property
    def losers(self) -> list[str]:
        """Candidates that created a SrvCall but did not win: they must be finalized."""
        winner = self.winner
        return [
            name
            for name, status in self.results.items()
            if status == NtStatus.STATUS_SUCCESS and name != winner
        ]

    @property
    def failure(self) -> tuple[int, str]:
        """The status (and message) to report when nobody won: the first candidate's answer in
        provider order, as the last callback's status in RDBSS; BAD_NETWORK_PATH when none."""
        for name in self.candidates:
            status = self.results.get(name)
            if status is not None and status != NtStatus.STATUS_BAD_NETWORK_PATH:
                return status, self.messages.get(name, "")
        if not self.candidates:
            return NtStatus.STATUS_BAD_NETWORK_PATH, f"no mini-redirector serves {self.server!r}"
        return NtStatus.STATUS_BAD_NETWORK_PATH, f"no mini-redirector accepted {self.server!r}"

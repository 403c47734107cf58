"""When a stopping core may close its client sockets.

A client socket sets ZMQ_IMMEDIATE (rdbss.link), and libzmq drops the answers such a socket
has received but its owner has not yet read when the connection goes down. So an answer sent
just before the core closes can be lost although it left the core: the client then reports
STATUS_CONNECTION_DISCONNECTED for a request that ran. A stopping core therefore keeps its
client connections open a grace period after its last answer, as long as any client is still
connected to read it; a client that has hung up has read what it wanted."""

from __future__ import annotations

#: how long a stopping core keeps answered clients' connections open for them to read
ANSWER_GRACE_S = 1.0


def may_close(
    *,
    now: float,
    pending: int,
    drain_until: float,
    last_answer_at: float | None,
    connected: int,
    grace_s: float = ANSWER_GRACE_S,
) -> bool:
    """True when the core may close: the drain deadline passed, or nothing is pending and
    no answer may still be unread (none sent within ``grace_s``, or no client connected)."""
    if now >= drain_until:
        return True
    if pending:
        return False
    if connected <= 0 or last_answer_at is None:
        return True
    return now >= last_answer_at + grace_s

"""What a client knows of its connection to the daemon, and what a caller is told when that
connection is not there. Fed the client socket's monitor events (ZMQ_EVENT_*, with the
time), it answers two questions: did a connection that carried requests just go (those
requests are lost with it), and may a request wait for the connection or must it fail now,
with which status. Pure: no sockets (the clients read the events, ``rdbss.client``).

The rules, and why:
- A request is sent only on a connection whose ZeroMQ handshake succeeded (the client socket
  sets ZMQ_IMMEDIATE): nothing waits in a queue for a core that may never come, and nothing
  sent to a dead core is delivered later to its successor behind the caller's back.
- A connection that drops (the core died, or its heartbeats stopped) fails what was in flight
  on it at once with STATUS_CONNECTION_DISCONNECTED: it cannot be answered any more. It is
  never retried silently (a write may have run); the next call reconnects.
- With no connection, a local client asks the daemon's lock (``daemon_pid``): no daemon is
  STATUS_REDIRECTOR_NOT_STARTED at once; a running one restarts its core, so the request waits
  for it (up to its deadline).
- A remote daemon's CURVE handshake refused by its allow-list (ZAP 400) is STATUS_LOGON_FAILURE
  at once; a handshake that fails otherwise (e.g. the wrong core key) too. A remote port that
  refuses connections for ``REMOTE_WAIT_S`` is STATUS_REMOTE_NOT_LISTENING (as ECONNREFUSED is
  everywhere in rdbss): over tcp:// a stopped daemon and a core restarting look the same, so
  a short wait lets a restart through, a longer one (``REMOTE_RESTART_WAIT_S``) once this
  client has been connected (its core going away is most likely a restart).
"""

from __future__ import annotations

from dataclasses import dataclass

import zmq

from rdbss.wire import NtStatus, NtStatusError, error_for_status

S = NtStatus

#: how long a remote daemon's port may refuse connections before a request fails: never
#: connected yet, and after a connection was lost (the remote supervisor restarts a core in ~1 s)
REMOTE_WAIT_S = 1.0
REMOTE_RESTART_WAIT_S = 5.0

HANDSHAKE_SUCCEEDED = int(zmq.EVENT_HANDSHAKE_SUCCEEDED)
HANDSHAKE_FAILED_AUTH = int(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
HANDSHAKE_FAILED = frozenset(
    {int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL), int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)}
)
CONNECT_RETRIED = int(zmq.EVENT_CONNECT_RETRIED)
DISCONNECTED = int(zmq.EVENT_DISCONNECTED)
#: the events a client's monitor asks for
EVENTS = (
    HANDSHAKE_SUCCEEDED
    | HANDSHAKE_FAILED_AUTH
    | int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    | int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
    | CONNECT_RETRIED
    | DISCONNECTED
)


def daemon_not_running(where: str) -> NtStatusError:
    return error_for_status(
        S.STATUS_REDIRECTOR_NOT_STARTED,
        f"the rdbss daemon is not running at {where}: start it with `rdbss daemon start`",
    )


def core_went_away(where: str) -> NtStatusError:
    return error_for_status(
        S.STATUS_CONNECTION_DISCONNECTED,
        f"the daemon's core went away (connection to {where} lost) with this request in "
        "flight; it may or may not have run, and the handles opened before are gone. The next "
        "call reconnects to the restarted core",
    )


def no_connection(where: str, waited_s: float) -> NtStatusError:
    return error_for_status(
        S.STATUS_IO_TIMEOUT,
        f"no connection to the rdbss daemon at {where} in {waited_s:.1f} s "
        "(its core does not accept connections: see the daemon's log)",
    )


@dataclass(slots=True)
class Link:
    """The state of one client socket's connection. ``where`` names the daemon in messages
    (its ipc path or tcp:// endpoint); ``key`` is this client's public key (Z85) over tcp://."""

    where: str
    remote: bool
    key: str = ""
    up: bool = False
    #: the last handshake's failure: "auth" (the allow-list refused the key), "handshake"
    #: (failed otherwise), or "" (none since the last success)
    failed: str = ""
    #: when connecting started failing (since the connection was last up), or None
    failing_since: float | None = None
    #: a connection has been up before (a remote core going away is then waited for longer)
    was_up: bool = False

    def on_event(self, event: int, now: float) -> bool:
        """Take one monitor event; True when a connection that was up went down (whatever was
        in flight on it is lost)."""
        if event == HANDSHAKE_SUCCEEDED:
            self.up, self.failed, self.failing_since, self.was_up = True, "", None, True
            return False
        if self.failing_since is None:
            self.failing_since = now
        if event == HANDSHAKE_FAILED_AUTH:
            self.failed = "auth"
        elif event in HANDSHAKE_FAILED:
            self.failed = "handshake"
        elif event == DISCONNECTED:
            lost, self.up = self.up, False
            return lost
        return False

    def reset(self) -> None:
        """The socket connects again (after a refused handshake, which ZeroMQ does not retry)."""
        self.up, self.failed, self.failing_since = False, "", None

    def refusal(self, now: float, daemon_running: bool | None) -> NtStatusError | None:
        """Why a request cannot wait for the connection (the error to raise), or None: wait.
        ``daemon_running``: a local client's look at the daemon's lock (None for remote)."""
        if self.up:
            return None
        if self.failed == "auth":
            return error_for_status(
                S.STATUS_LOGON_FAILURE,
                f"key refused by {self.where}: add this client's public key {self.key} to the "
                "daemon's authorized_keys file as a client key ('KEY NAME client')",
            )
        if self.failed == "handshake":
            return error_for_status(
                S.STATUS_LOGON_FAILURE,
                f"the CURVE handshake with {self.where} failed: check the daemon's public key "
                "this client uses ($RDBSS_CORE_KEY or [client] core_key)",
            )
        if not self.remote:
            return None if daemon_running else daemon_not_running(self.where)
        allowance = REMOTE_RESTART_WAIT_S if self.was_up else REMOTE_WAIT_S
        if self.failing_since is not None and now - self.failing_since >= allowance:
            return error_for_status(
                S.STATUS_REMOTE_NOT_LISTENING,
                f"no rdbss daemon listening at {self.where} (connection refused for "
                f"{now - self.failing_since:.1f} s): start it there with `rdbss daemon start`, "
                "or check the address ($RDBSS_CONNECT or [client] connect)",
            )
        return None

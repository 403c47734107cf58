"""The client's link rules (rdbss.link), alone: which monitor events lose what was in flight,
and when a request must fail instead of waiting for a connection, with which status."""

from __future__ import annotations

from rdbss.link import (
    CONNECT_RETRIED,
    DISCONNECTED,
    HANDSHAKE_FAILED_AUTH,
    HANDSHAKE_SUCCEEDED,
    REMOTE_RESTART_WAIT_S,
    REMOTE_WAIT_S,
    Link,
)
from rdbss.wire import NtStatus

S = NtStatus
NO_DETAIL = 0x800  # ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL


def test_only_a_connection_that_was_up_loses_requests_when_it_drops() -> None:
    link = Link("/run/rdbss.sock", remote=False)
    assert not link.on_event(CONNECT_RETRIED, 0.0)
    assert not link.on_event(DISCONNECTED, 0.1)  # never up: nothing was sent on it
    assert not link.on_event(HANDSHAKE_SUCCEEDED, 0.2) and link.up
    assert link.on_event(DISCONNECTED, 0.3) and not link.up
    assert not link.on_event(DISCONNECTED, 0.4)  # told once
    # three losses in a row: each one counts again
    for t in (1.0, 2.0, 3.0):
        link.on_event(HANDSHAKE_SUCCEEDED, t)
        assert link.on_event(DISCONNECTED, t + 0.5)


def test_a_local_request_waits_for_a_restarting_core_and_fails_without_a_daemon() -> None:
    link = Link("/run/rdbss.sock", remote=False)
    link.on_event(CONNECT_RETRIED, 0.0)
    assert link.refusal(100.0, daemon_running=True) is None  # the supervisor restarts the core
    error = link.refusal(0.0, daemon_running=False)
    assert error is not None and error.status == S.STATUS_REDIRECTOR_NOT_STARTED
    assert "/run/rdbss.sock" in (error.strerror or "")
    assert "rdbss daemon start" in (error.strerror or "")
    link.on_event(HANDSHAKE_SUCCEEDED, 1.0)
    assert link.refusal(1.0, daemon_running=False) is None  # up: nothing to refuse


def test_a_refused_key_fails_at_once_naming_the_daemon_and_the_key() -> None:
    link = Link("tcp://10.0.0.1:7701", remote=True, key="K" * 40)
    link.on_event(HANDSHAKE_FAILED_AUTH, 0.0)
    link.on_event(DISCONNECTED, 0.0)
    error = link.refusal(0.0, None)
    assert error is not None and error.status == S.STATUS_LOGON_FAILURE
    assert "key refused by tcp://10.0.0.1:7701" in (error.strerror or "")
    assert "K" * 40 in (error.strerror or "")
    link.reset()  # the socket connects again: the next call tries anew
    assert link.refusal(0.0, None) is None


def test_a_failed_handshake_points_at_the_core_key() -> None:
    link = Link("tcp://10.0.0.1:7701", remote=True)
    link.on_event(NO_DETAIL, 0.0)
    error = link.refusal(0.0, None)
    assert error is not None and error.status == S.STATUS_LOGON_FAILURE
    assert "core_key" in (error.strerror or "")


def test_a_remote_port_refusing_connections_fails_after_the_restart_allowance() -> None:
    link = Link("tcp://10.0.0.1:7701", remote=True)
    assert link.refusal(50.0, None) is None  # no news at all: wait (for the deadline)
    link.on_event(CONNECT_RETRIED, 10.0)
    link.on_event(CONNECT_RETRIED, 10.5)
    assert link.refusal(10.0 + REMOTE_WAIT_S / 2, None) is None
    error = link.refusal(10.0 + REMOTE_WAIT_S, None)
    assert error is not None and error.status == S.STATUS_REMOTE_NOT_LISTENING
    assert "tcp://10.0.0.1:7701" in (error.strerror or "")
    link.on_event(HANDSHAKE_SUCCEEDED, 12.0)  # it came back: the allowance starts over,
    link.on_event(DISCONNECTED, 13.0)  # longer once connected (a core restarting)
    link.on_event(CONNECT_RETRIED, 13.1)
    assert link.refusal(13.0 + REMOTE_WAIT_S, None) is None
    error = link.refusal(13.0 + REMOTE_RESTART_WAIT_S, None)
    assert error is not None and error.status == S.STATUS_REMOTE_NOT_LISTENING

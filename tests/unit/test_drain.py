"""rdbss.model.drain: when a stopping core may close its client sockets."""

from __future__ import annotations

from rdbss.model.drain import ANSWER_GRACE_S, may_close


def test_pending_requests_keep_the_core_open_until_the_drain_deadline() -> None:
    assert not may_close(now=5.0, pending=1, drain_until=10.0, last_answer_at=None, connected=1)
    assert may_close(now=10.0, pending=1, drain_until=10.0, last_answer_at=None, connected=1)


def test_a_recent_answer_waits_for_a_connected_client_to_read_it() -> None:
    args = {"pending": 0, "drain_until": 100.0, "last_answer_at": 5.0, "connected": 1}
    assert not may_close(now=5.0 + ANSWER_GRACE_S / 2, **args)
    assert may_close(now=5.0 + ANSWER_GRACE_S, **args)


def test_no_wait_when_every_client_hung_up_or_nothing_was_answered() -> None:
    assert may_close(now=5.0, pending=0, drain_until=100.0, last_answer_at=5.0, connected=0)
    assert may_close(now=5.0, pending=0, drain_until=100.0, last_answer_at=None, connected=3)


def test_the_drain_deadline_bounds_the_grace() -> None:
    assert may_close(now=9.5, pending=0, drain_until=9.5, last_answer_at=9.4, connected=2)

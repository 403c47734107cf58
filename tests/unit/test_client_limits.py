"""Per-client limits and fairness at the core's intake (rdbss.actors.client_limits)."""

from __future__ import annotations

from rdbss.actors.client_limits import FairIntake, UnreadAnswers
from rdbss.wire.constants import IrpMj, IrpMn
from rdbss.wire.rxcontext import RxContext


def _rx(request_id: int, timeout_ms: int = 10_000, notify: bool = False) -> RxContext:
    if notify:
        return RxContext(request_id, int(IrpMj.DIRECTORY_CONTROL),
                         int(IrpMn.NOTIFY_CHANGE_DIRECTORY), timeout_ms=timeout_ms)  # fmt: skip
    return RxContext(request_id, int(IrpMj.READ), timeout_ms=timeout_ms)


def test_a_flooding_client_waits_its_turn_round_robin() -> None:
    intake = FairIntake(window=2, max_requests=100, solo_window=2)
    a, b = b"a", b"b"
    assert [intake.admit(a, _rx(i), None, 0.0) for i in range(5)] == ["run"] * 2 + ["queued"] * 3
    assert intake.admit(b, _rx(100), None, 0.0) == "run"  # b has its own window
    assert intake.next(0.0) is None  # a's window is full
    intake.admit(b, _rx(101), None, 0.0)
    assert intake.admit(b, _rx(102), None, 0.0) == "queued"
    intake.done(a, 0)
    intake.done(b, 100)
    turns = []
    while (turn := intake.next(0.0)) is not None:
        turns.append((turn[0], turn[1].msg.request_id))
    assert turns == [(a, 2), (b, 102)]  # one each, in turn
    intake.done(a, 1)
    intake.done(a, 2)
    turn = intake.next(1.0)
    assert turn is not None and turn[1].msg.request_id == 3
    assert turn[1].msg.timeout_ms == 9_000  # what is left of its deadline


def test_waits_by_design_run_outside_the_window_and_limits_refuse() -> None:
    intake = FairIntake(window=1, max_requests=3, solo_window=1)
    c = b"c"
    assert intake.admit(c, _rx(1, notify=True), None, 0.0) == "run"
    assert intake.admit(c, _rx(2, notify=True), None, 0.0) == "run"
    assert intake.admit(c, _rx(3), None, 0.0) == "run"  # notifies do not fill the window
    assert intake.admit(c, _rx(4), None, 0.0) == "full"  # 3 in flight: the limit
    intake.done(c, 1)
    assert intake.admit(c, _rx(4), None, 0.0) == "queued"
    assert intake.cancel(c, 4) is not None and intake.queued(c) == 0
    intake.admit(c, _rx(5, timeout_ms=500), None, 0.0)
    assert intake.expired(0.4) == []
    late = intake.expired(0.6)
    assert [item.msg.request_id for _, item in late] == [5] and intake.queued() == 0
    for request_id in (2, 3):
        intake.done(c, request_id)
    assert intake.clients() == []  # nothing held: forgotten


def test_the_count_of_queued_requests_follows_every_way_out_of_a_queue() -> None:
    intake = FairIntake(window=1, max_requests=100, solo_window=1)
    a, b = b"a", b"b"
    for i in range(4):
        intake.admit(a, _rx(i, timeout_ms=500 if i == 3 else 10_000), None, 0.0)
    for i in range(10, 13):
        intake.admit(b, _rx(i), None, 0.0)
    assert intake.queued() == 5 == intake.queued(a) + intake.queued(b)  # 3 of a, 2 of b
    assert intake.cancel(a, 1) is not None and intake.queued() == 4
    assert len(intake.expired(1.0)) == 1 and intake.queued() == 3  # a's request 3
    intake.done(b, 10)
    assert intake.next(1.0) is not None and intake.queued() == 2
    assert len(intake.forget(a)) == 1 and intake.queued() == 1 == intake.queued(b)


class _Tracker:
    def __init__(self) -> None:
        self.done = False


def test_unread_answers_count_until_taken() -> None:
    unread = UnreadAnswers(max_bytes=300)
    first, second = _Tracker(), _Tracker()
    unread.add(b"x", first, 200)
    assert not unread.over(b"x")
    unread.add(b"x", second, 200)
    assert unread.over(b"x") and unread.unread(b"x") == 400
    assert not unread.over(b"y")
    first.done = True
    assert unread.unread(b"x") == 200 and not unread.over(b"x")
    second.done = True
    assert unread.unread(b"x") == 0 and unread.total() == 0


def test_a_client_alone_pipelines_deeper() -> None:
    intake = FairIntake(window=2, max_requests=100, solo_window=4)
    a, b = b"a", b"b"
    assert [intake.admit(a, _rx(i), None, 0.0) for i in range(5)] == ["run"] * 4 + ["queued"]
    assert intake.admit(b, _rx(100), None, 0.5) == "run"  # b is about: the window is 2 now
    intake.done(a, 0)
    assert intake.next(0.5) is None  # a still runs 3, more than the shared window
    assert intake.admit(a, _rx(5), None, 2.0) == "queued"  # b gone quiet: solo again...
    intake.done(a, 1)
    turn = intake.next(2.0)
    assert turn is not None and turn[1].msg.request_id == 4

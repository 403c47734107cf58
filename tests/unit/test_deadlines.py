"""The deadline heap of requests in flight (rdbss.deadlines): pure, no clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rdbss.deadlines import SLACK, Deadlines


def test_requests_come_due_in_deadline_order_and_once() -> None:
    d = Deadlines()
    d.add(1, 30.0)
    d.add(2, 0.5)  # asked later, due first
    d.add(3, 10.0)
    assert d.next() == 0.5
    assert d.due(0.4) == []
    assert d.due(10.0) == [2, 3]
    assert d.due(10.0) == []  # forgotten once due
    assert d.next() == 30.0 and len(d) == 1


def test_an_answered_request_never_comes_due_and_a_moved_one_at_its_new_time() -> None:
    d = Deadlines()
    d.add(1, 1.0)
    d.add(2, 2.0)
    d.forget(1)  # answered
    d.add(2, 5.0)  # moved (a cancel's grace)
    assert d.next() == 5.0
    assert d.due(4.0) == []
    assert d.due(5.0) == [2]
    assert d.next() is None and len(d) == 0


def test_the_heap_stays_near_what_is_in_flight() -> None:
    d = Deadlines()
    for request_id in range(100_000):  # answered at once, as under load
        d.add(request_id, 30.0 + request_id)
        if request_id >= 64:
            d.forget(request_id - 64)
    assert len(d) == 64
    assert d.heap_size() <= 2 * 64 + SLACK + 1
    assert d.due(1e9) == list(range(100_000 - 64, 100_000))


@given(st.lists(st.tuples(st.integers(0, 20), st.floats(0, 100), st.booleans()), max_size=200))
def test_due_matches_a_plain_dict_of_the_live_deadlines(
    steps: list[tuple[int, float, bool]],
) -> None:
    d = Deadlines()
    live: dict[int, float] = {}
    for request_id, when, answered in steps:
        if answered:
            d.forget(request_id)
            live.pop(request_id, None)
        else:
            d.add(request_id, when)
            live[request_id] = when
    assert d.next() == (min(live.values()) if live else None)
    due = d.due(50.0)
    assert sorted(due) == sorted(r for r, w in live.items() if w <= 50.0)
    assert [live[r] for r in due] == sorted(live[r] for r in due)

"""Fault rules and the schedule: matching, firing, seeded repeatability, time windows."""

from __future__ import annotations

import pytest

from rdbss.minirdrs.faulty.faults import Action, FaultError, FaultSchedule, parse_rule, parse_rules
from rdbss.wire import LowIoOp, NtStatus


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def schedule(
    rules: list[dict[str, object]], seed: int = 1, clock: Clock | None = None
) -> FaultSchedule:
    return FaultSchedule(parse_rules(rules), seed, clock or Clock())


def test_status_rule_matches_routine_op_and_path() -> None:
    s = schedule(
        [
            {
                "routine": "MRxLowIOSubmit",
                "lowio_op": "read",
                "path": "*.LOG",
                "action": "status",
                "status": "IO_TIMEOUT",
            }
        ]
    )
    hit = s.decide("MRxLowIOSubmit", LowIoOp.READ, r"dir\app.log")
    assert hit is not None and hit.action == Action.STATUS
    assert hit.status == NtStatus.STATUS_IO_TIMEOUT
    assert s.decide("MRxLowIOSubmit", LowIoOp.WRITE, r"dir\app.log") is None
    assert s.decide("MRxLowIOSubmit", LowIoOp.READ, r"dir\app.txt") is None
    assert s.decide("MRxCreate", None, r"dir\app.log") is None


def test_every_nth_and_count() -> None:
    s = schedule([{"action": "disconnect", "every": 3, "count": 2}])
    fired = [s.decide("MRxCreate", None, "x") is not None for _ in range(12)]
    assert fired == [False, False, True, False, False, True] + [False] * 6


def test_the_same_seed_repeats_the_same_faults() -> None:
    rules = [
        {"action": "status", "status": "STATUS_CONNECTION_RESET", "probability": 0.3},
        {"action": "delay", "delay_ms": 10, "jitter_ms": 5},
    ]
    runs = []
    for _ in range(2):
        s = schedule(rules, seed=7)
        runs.append([s.decide("MRxCreate", None, f"f{i}") for i in range(200)])
    assert runs[0] == runs[1]
    statuses = sum(1 for d in runs[0] if d and d.action == Action.STATUS)
    assert 30 < statuses < 90  # about 30 % of 200
    delays = {d.delay_s for d in runs[0] if d and d.action == Action.DELAY}
    assert all(0.010 <= x <= 0.015 for x in delays) and len(delays) > 1
    other = schedule(rules, seed=8)
    assert [other.decide("MRxCreate", None, f"f{i}") for i in range(200)] != runs[0]


def test_time_window_and_replace() -> None:
    clock = Clock()
    s = schedule([{"action": "hang", "after_s": 2, "until_s": 5}], clock=clock)
    assert s.decide("MRxCreate", None, "") is None
    clock.now += 3
    assert s.decide("MRxCreate", None, "").action == Action.HANG  # type: ignore[union-attr]
    clock.now += 3
    assert s.decide("MRxCreate", None, "") is None
    s.replace(parse_rules([{"action": "crash"}]), seed=3)
    assert s.seed == 3 and s.decide("MRxFlush", None, "").action == Action.CRASH  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"action": "explode"}, "action must be one of"),
        ({"action": "status"}, "needs a status"),
        ({"action": "status", "status": "STATUS_SUCCESS"}, "must be a failure"),
        ({"action": "status", "status": "STATUS_NOPE"}, "unknown status"),
        ({"action": "delay", "routine": "MRxNope"}, "unknown routine"),
        ({"action": "delay", "lowio_op": "SPIN"}, "unknown lowio_op"),
        ({"action": "delay", "probability": 2}, "between 0 and 1"),
        ({"action": "delay", "every": 0}, "every must be"),
        ({"action": "delay", "delay_ms": "fast"}, "delay_ms must be"),
        ({"action": "delay", "colour": "red"}, "unknown rule field"),
    ],
)
def test_bad_rules_are_refused_with_a_reason(rule: dict[str, object], message: str) -> None:
    with pytest.raises(FaultError, match=message):
        parse_rule(rule)


def test_describe_reports_counters() -> None:
    s = schedule([{"action": "status", "status": 0xC000020C, "every": 2}])
    for _ in range(4):
        s.decide("MRxCreate", None, "")
    desc = s.rules[0].describe()
    assert desc["status"] == "STATUS_CONNECTION_DISCONNECTED"
    assert (desc["matched"], desc["fired"], desc["every"]) == (4, 2, 2)

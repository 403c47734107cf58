"""Fault rules and the schedule that applies them. Pure code: no sleeping, no exiting — the
schedule only decides; the ``faulty`` mini-redirector carries the decision out.

A rule matches a call by routine, low I/O operation and share-relative path pattern (Windows
wildcards), then fires by probability, every n-th matching call, and/or inside a time window
(seconds since the schedule started). Random draws come from one ``random.Random(seed)``, drawn
only for rules that match, so the same seed and the same sequence of calls repeat the same
faults exactly.

Rule fields (TOML table or dict)::

    routine = "MRxLowIOSubmit"     # a Routine name, or "*" (default)
    lowio_op = "READ"              # optional: a LowIoOp name
    path = "*.log"                 # optional: wildcard on the share-relative path
    action = "status"              # status | delay | hang | crash | disconnect | freeze | spin
    status = "STATUS_IO_TIMEOUT"   # action=status: the NTSTATUS to answer (name or number)
    delay_ms = 200                 # action=delay: added latency
    jitter_ms = 50                 # action=delay: + uniform 0..jitter
    probability = 1.0              # fire with this probability (default 1)
    every = 1                      # fire on every n-th matching call (default 1: every one)
    after_s = 0.0                  # active from this many seconds after start
    until_s = inf                  # active until this many seconds after start
    count = inf                    # fire at most this many times
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rdbss.minirdrs.common.wildcard import is_name_in_expression
from rdbss.wire.constants import LowIoOp, Routine
from rdbss.wire.status import NtStatus


class FaultError(ValueError):
    """A fault rule that cannot be understood."""


class Action(StrEnum):
    STATUS = "status"  # answer an NTSTATUS instead of calling the routine
    DELAY = "delay"  # add latency, then call the routine
    HANG = "hang"  # never answer this call (the core's deadline ends it: STATUS_IO_TIMEOUT)
    CRASH = "crash"  # the mini-redirector process dies at once
    DISCONNECT = "disconnect"  # the connection drops: STATUS_CONNECTION_DISCONNECTED
    FREEZE = "freeze"  # the whole process stops (SIGSTOP): no heartbeats, nothing answers
    SPIN = "spin"  # the process spins holding the interpreter lock (a runaway regex or C call)


@dataclass(slots=True)
class Rule:
    action: Action
    routine: str = "*"
    lowio_op: int | None = None
    path: str | None = None
    status: int = NtStatus.STATUS_UNSUCCESSFUL
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    probability: float = 1.0
    every: int = 1
    after_s: float = 0.0
    until_s: float = math.inf
    count: float = math.inf
    # state
    matched: int = 0
    fired: int = 0

    def matches(self, routine: str, lowio_op: int | None, path: str | None) -> bool:
        if self.routine != "*" and self.routine != routine:
            return False
        if self.lowio_op is not None and self.lowio_op != lowio_op:
            return False
        return self.path is None or is_name_in_expression(self.path, path or "")

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": str(self.action), "routine": self.routine}
        if self.lowio_op is not None:
            out["lowio_op"] = LowIoOp(self.lowio_op).name
        if self.path is not None:
            out["path"] = self.path
        if self.action == Action.STATUS:
            out["status"] = (
                NtStatus(self.status).name
                if self.status in NtStatus._value2member_map_
                else self.status
            )
        if self.action == Action.DELAY:
            out["delay_ms"] = self.delay_ms
            out["jitter_ms"] = self.jitter_ms
        for key in ("probability", "every", "after_s", "until_s", "count"):
            value = getattr(self, key)
            if value not in (1.0, 1, 0.0, math.inf):
                out[key] = value
        out["matched"] = self.matched
        out["fired"] = self.fired
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    status: int = NtStatus.STATUS_SUCCESS
    delay_s: float = 0.0
    rule: int = 0  # index of the rule that fired


def _number(raw: Mapping[str, Any], key: str, default: float, *, minimum: float = 0.0) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise FaultError(f"{key} must be a number >= {minimum}, not {value!r}")
    return float(value)


def parse_status(value: Any) -> int:
    if isinstance(value, bool):
        raise FaultError(f"not a status: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        name = value if value.startswith("STATUS_") else f"STATUS_{value}"
        if name in NtStatus.__members__:
            return int(NtStatus[name])
        try:
            return int(value, 0)
        except ValueError:
            pass
    raise FaultError(f"unknown status {value!r}")


_KEYS = frozenset(
    {
        "action",
        "routine",
        "lowio_op",
        "path",
        "status",
        "delay_ms",
        "jitter_ms",
        "probability",
        "every",
        "after_s",
        "until_s",
        "count",
    }
)


def parse_rule(raw: Mapping[str, Any]) -> Rule:
    if not isinstance(raw, Mapping):
        raise FaultError("a rule must be a table")
    unknown = set(raw) - _KEYS
    if unknown:
        raise FaultError(f"unknown rule field {sorted(unknown)[0]!r}")
    try:
        action = Action(raw.get("action", ""))
    except ValueError:
        raise FaultError(
            f"action must be one of {[a.value for a in Action]}, not {raw.get('action')!r}"
        ) from None
    routine = raw.get("routine", "*")
    if routine != "*" and routine not in Routine.__members__:
        raise FaultError(f"unknown routine {routine!r}")
    lowio_op = raw.get("lowio_op")
    if lowio_op is not None:
        if not isinstance(lowio_op, str) or lowio_op.upper() not in LowIoOp.__members__:
            raise FaultError(f"unknown lowio_op {lowio_op!r}")
        lowio_op = int(LowIoOp[lowio_op.upper()])
    path = raw.get("path")
    if path is not None and not isinstance(path, str):
        raise FaultError("path must be a wildcard string")
    rule = Rule(
        action=action,
        routine=str(routine),
        lowio_op=lowio_op,
        path=path,
        delay_ms=_number(raw, "delay_ms", 0.0),
        jitter_ms=_number(raw, "jitter_ms", 0.0),
        probability=_number(raw, "probability", 1.0),
        every=int(_number(raw, "every", 1, minimum=1)),
        after_s=_number(raw, "after_s", 0.0),
        until_s=_number(raw, "until_s", math.inf),
        count=_number(raw, "count", math.inf),
    )
    if rule.probability > 1:
        raise FaultError("probability must be between 0 and 1")
    if action == Action.STATUS:
        if "status" not in raw:
            raise FaultError("action 'status' needs a status")
        rule.status = parse_status(raw["status"])
        if rule.status == NtStatus.STATUS_SUCCESS:
            raise FaultError("an injected status must be a failure")
    return rule


def parse_rules(raw: Iterable[Mapping[str, Any]]) -> list[Rule]:
    rules = []
    for i, entry in enumerate(raw):
        try:
            rules.append(parse_rule(entry))
        except FaultError as exc:
            raise FaultError(f"rule {i + 1}: {exc}") from None
    return rules


@dataclass
class FaultSchedule:
    rules: list[Rule]
    seed: int = 0
    clock: Callable[[], float] = field(default=lambda: 0.0)
    started: float = 0.0
    random: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        self.started = self.clock()

    def replace(self, rules: list[Rule], seed: int | None = None) -> None:
        """New rules (and optionally a new seed): the schedule starts over."""
        self.rules = rules
        if seed is not None:
            self.seed = seed
        self.random = random.Random(self.seed)
        self.started = self.clock()

    def decide(self, routine: str, lowio_op: int | None, path: str | None) -> Decision | None:
        """The fault for this call, if any: the first rule that matches and fires."""
        elapsed = self.clock() - self.started
        for index, rule in enumerate(self.rules):
            if not rule.matches(routine, lowio_op, path):
                continue
            if not (rule.after_s <= elapsed < rule.until_s) or rule.fired >= rule.count:
                continue
            rule.matched += 1
            if rule.matched % rule.every != 0:
                continue
            if rule.probability < 1.0 and self.random.random() >= rule.probability:
                continue
            rule.fired += 1
            delay = 0.0
            if rule.action == Action.DELAY:
                jitter = self.random.uniform(0, rule.jitter_ms) if rule.jitter_ms else 0.0
                delay = (rule.delay_ms + jitter) / 1000.0
            return Decision(rule.action, rule.status, delay, index)
        return None

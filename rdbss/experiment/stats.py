"""The statistics of a run: per-operation records into 100 ms bins, fault windows, recovery
after each fault step, the isolation of the control loads, and figures across repeats. Pure:
records and step times in, typed results out.

Rules, and their reasons:
- An operation's latency counts from its *intended* start (open loop: its slot on the fixed
  schedule; closed loop: when it started), so time queued behind a stalled backend is measured,
  not hidden (coordinated omission).
- Outcome: ``ok``; ``fail`` (a read-only operation failed: it had no effect); ``info`` (a
  mutating operation failed: the client cannot know whether it took effect - Jepsen's
  indeterminate).
- Bins are 100 ms wide, by completion time, so a 300 ms outage is three empty bins, not a dip
  inside a one-second average.
- A fault window is where a fault was in force: from a lasting step (set_faults, stop, proxy,
  reset_storm) to its own ``duration_s`` or to the next step that ends it on the same target
  (clear_faults, cont, another proxy step), else to the end of the load; from an instantaneous
  step (kill, restart) to the first success of an operation of the main load started after it.
- Recovery of a step, from the moment its fault ended (the end of a lasting fault, the step
  itself for an instantaneous one such as a kill, a restart or a reset): ``first_success_s``,
  to the first successful completion of an operation started at or after that moment;
  ``back_to_90_s``, to the start of the first sliding window (at least 0.5 s, or 20
  operations at the baseline rate) whose successful operations per second reach 90 % of the
  baseline: the mean rate over the clean bins before the step (after the first 0.5 s, outside
  every earlier window and recovery).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from rdbss.experiment.schema import ENDING_ACTIONS, MUTATING, FaultStep

BIN_S = 0.1
RECOVERY_FRACTION = 0.9
WARMUP_S = 0.5
MIN_RECOVERY_WINDOW_S = 0.5
RECOVERY_WINDOW_OPS = 20


class OpRecord(msgspec.Struct, frozen=True, array_like=True):
    load: str
    client: int
    seq: int
    kind: str
    file: int
    intended: float  # seconds since the load started: when the operation should have started
    start: float  # when it started
    end: float  # when it ended
    status: str | None  # None: success; else the NTSTATUS name (or the exception type)

    @property
    def ok(self) -> bool:
        return self.status is None

    @property
    def outcome(self) -> str:
        if self.status is None:
            return "ok"
        return "info" if self.kind in MUTATING else "fail"

    @property
    def latency_ms(self) -> float:
        return (self.end - self.intended) * 1000.0


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


class Bin(msgspec.Struct, frozen=True):
    t: float  # the bin's start (seconds since the load started)
    ok: int
    fail: int
    info: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    by_status: dict[str, int]

    @property
    def errors(self) -> int:
        return self.fail + self.info


def bins(records: Iterable[OpRecord], duration_s: float, width: float = BIN_S) -> list[Bin]:
    """One Bin per ``width`` seconds, by completion time, up to the last completion."""
    records = list(records)
    last = max([duration_s, *(r.end for r in records)])
    count = max(1, math.ceil(last / width - 1e-9))
    buckets: list[list[OpRecord]] = [[] for _ in range(count)]
    for r in records:
        buckets[min(count - 1, max(0, int(r.end / width)))].append(r)
    result = []
    for i, bucket in enumerate(buckets):
        latencies = sorted(r.latency_ms for r in bucket)
        outcomes = Counter(r.outcome for r in bucket)
        statuses = Counter(r.status for r in bucket if r.status is not None)
        result.append(
            Bin(
                t=round(i * width, 3),
                ok=outcomes["ok"],
                fail=outcomes["fail"],
                info=outcomes["info"],
                p50_ms=rounded(percentile(latencies, 50)),
                p99_ms=rounded(percentile(latencies, 99)),
                max_ms=rounded(latencies[-1] if latencies else math.nan),
                by_status=dict(sorted(statuses.items())),
            )
        )
    return result


class Window(msgspec.Struct, frozen=True):
    step: int  # the index of the step that started it
    label: str
    start: float
    end: float
    lasting: bool  # a lasting fault (its end is when it was lifted)


def first_success_after(records: Sequence[OpRecord], t: float) -> float | None:
    """The earliest completion of a successful operation started at or after ``t``."""
    ends = [r.end for r in records if r.ok and r.start >= t]
    return min(ends) if ends else None


def fault_windows(
    steps: Sequence[tuple[FaultStep, float]],
    records: Sequence[OpRecord],
    load_end: float,
    ended: Mapping[int, float] | None = None,
) -> list[Window]:
    """The window of each step that starts a fault (see the module docstring). ``steps``: the
    steps that ran, with the time each ran at; ``ended``: when the runner undid a step with a
    ``duration_s`` (its index -> time), else ``at + duration_s``."""
    ended = ended or {}
    windows = []
    for i, (step, at) in enumerate(steps):
        if step.action in ENDING_ACTIONS:
            continue
        if step.lasting:
            if step.duration_s is not None:
                end = ended.get(step.index, at + step.duration_s)
            else:
                end = load_end
                for later, later_at in steps[i + 1 :]:
                    same = later.target == step.target
                    ends = later.action in ENDING_ACTIONS or (
                        later.action == "proxy" and later.lasting
                    )
                    if same and ends:
                        end = later_at
                        break
            windows.append(Window(step.index, step.label, at, max(at, end), True))
        else:
            success = first_success_after(records, at)
            end = success if success is not None else load_end
            windows.append(Window(step.index, step.label, at, max(at + BIN_S, end), False))
    return windows


class Recovery(msgspec.Struct, frozen=True):
    step: int
    label: str
    fault_start: float
    fault_end: float  # the moment recovery counts from
    baseline_ops_s: float | None  # successful operations per second before the step
    first_success_s: float | None
    back_to_90_s: float | None


def _ok_rate(all_bins: Sequence[Bin], start: int, stop: int, width: float) -> float:
    span = all_bins[start:stop]
    return sum(b.ok for b in span) / (len(span) * width) if span else 0.0


def recoveries(
    windows: Sequence[Window],
    all_bins: Sequence[Bin],
    records: Sequence[OpRecord],
    duration_s: float,
    width: float = BIN_S,
    fraction: float = RECOVERY_FRACTION,
) -> list[Recovery]:
    """The recovery after each window, in order (see the module docstring)."""
    full = [b for b in all_bins if b.t + width <= duration_s + 1e-9]
    disturbed: list[tuple[float, float]] = []
    result = []
    for window in sorted(windows, key=lambda w: w.start):
        clean = [
            b
            for b in full
            if b.t >= WARMUP_S
            and b.t + width <= window.start + 1e-9
            and b.errors == 0
            and not any(s < b.t + width and b.t < e for s, e in disturbed)
        ]
        baseline = sum(b.ok for b in clean) / (len(clean) * width) if clean else None
        ref = window.end if window.lasting else window.start
        success = first_success_after(records, ref)
        first = None if success is None else max(0.0, success - ref)
        back: float | None = None
        if baseline:
            span = max(
                1, math.ceil(max(MIN_RECOVERY_WINDOW_S, RECOVERY_WINDOW_OPS / baseline) / width)
            )
            first_bin = int(ref / width + 1e-9)
            for i in range(first_bin, len(full) - span + 1):
                if _ok_rate(full, i, i + span, width) >= fraction * baseline:
                    back = max(0.0, full[i].t - ref)
                    break
        recovered_at = ref + back if back is not None else duration_s
        disturbed.append((window.start, recovered_at))
        result.append(
            Recovery(
                window.step,
                window.label,
                round(window.start, 3),
                round(ref, 3),
                rounded(baseline, 1),
                rounded(first),
                rounded(back),
            )
        )
    return result


class LatencySummary(msgspec.Struct, frozen=True):
    ops: int
    ok: int
    errors: int
    seconds: float  # the time this side covers
    ops_s: float | None  # successful operations per second
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    errors_by_status: dict[str, int]


def summarize(records: Sequence[OpRecord], seconds: float) -> LatencySummary:
    latencies = sorted(r.latency_ms for r in records)
    statuses = Counter(r.status for r in records if r.status is not None)
    ok = sum(1 for r in records if r.ok)
    return LatencySummary(
        ops=len(records),
        ok=ok,
        errors=len(records) - ok,
        seconds=round(seconds, 3),
        ops_s=rounded(ok / seconds, 1) if seconds > 0 else None,
        p50_ms=rounded(percentile(latencies, 50)),
        p90_ms=rounded(percentile(latencies, 90)),
        p99_ms=rounded(percentile(latencies, 99)),
        max_ms=rounded(latencies[-1] if latencies else math.nan),
        errors_by_status=dict(statuses.most_common()),
    )


class Isolation(msgspec.Struct, frozen=True):
    """One load's operations inside the fault windows against outside them (by intended start)."""

    load: str
    inside: LatencySummary
    outside: LatencySummary
    p99_ratio: float | None  # inside / outside
    statement: str


def _merged(windows: Sequence[Window], duration_s: float) -> list[tuple[float, float]]:
    spans = sorted((max(0.0, w.start), min(duration_s, w.end)) for w in windows)
    merged: list[tuple[float, float]] = []
    for s, e in spans:
        if e <= s:
            continue
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def isolation(
    load: str, records: Sequence[OpRecord], windows: Sequence[Window], duration_s: float
) -> Isolation:
    spans = _merged(windows, duration_s)
    inside_s = sum(e - s for s, e in spans)

    def is_inside(r: OpRecord) -> bool:
        return any(s <= r.intended < e for s, e in spans)

    inside = summarize([r for r in records if is_inside(r)], inside_s)
    outside = summarize([r for r in records if not is_inside(r)], duration_s - inside_s)
    ratio = None
    if inside.p99_ms is not None and outside.p99_ms:
        ratio = round(inside.p99_ms / outside.p99_ms, 2)
    statement = (
        f"{load}: {inside.errors} errors in {inside.ops} ops inside the fault windows "
        f"({inside_s:.1f} s), {outside.errors} in {outside.ops} outside; "
        f"p99 {_ms(inside.p99_ms)} inside vs {_ms(outside.p99_ms)} outside"
        + (f" (x{ratio:g})" if ratio is not None else "")
    )
    return Isolation(load, inside, outside, ratio, statement)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


class Spread(msgspec.Struct, frozen=True):
    median: float
    min: float
    max: float
    n: int


def spread(values_per_run: Sequence[Mapping[str, float | None]]) -> dict[str, Spread]:
    """Each figure across runs as median and spread; a figure missing in a run is left out of
    that figure's n."""
    names: list[str] = []
    for values in values_per_run:
        names += [k for k in values if k not in names]
    result = {}
    for name in names:
        xs = [v for run in values_per_run if (v := run.get(name)) is not None]
        if xs:
            result[name] = Spread(
                round(statistics.median(xs), 3), round(min(xs), 3), round(max(xs), 3), len(xs)
            )
    return result

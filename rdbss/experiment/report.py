"""The report of a run as typed structs, its key figures, the text summary, and the files written
to the report folder: ``report.json``, ``summary.txt``, ``ops.csv`` (or ``ops.parquet`` when
pyarrow is installed: one row per operation, for pandas), the figures and ``report.html``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from rdbss.experiment.faults import StepResult
from rdbss.experiment.integrity import Integrity
from rdbss.experiment.stats import Bin, Isolation, OpRecord, Recovery, Spread, Window

VERDICT_ORDER = ("OK", "UNVERIFIED", "CORRUPTED", "LOST")


class RunInfo(msgspec.Struct):
    name: str
    file: str | None
    command: str  # the command line that reproduces the run
    version: str
    seeds: dict[str, int]  # load name -> its seed
    started_at: str
    elapsed_s: float
    daemon_pid: int | None
    runtime_dir: str | None
    proxies: dict[str, str]
    run: int = 0  # which repeat (0-based)


class ClientDigest(msgspec.Struct):
    client: int
    ops_executed: int
    ops_sha256: str
    plan_prefix_sha256: str
    first_ops: list[str]


class LoadResult(msgspec.Struct):
    name: str
    role: str  # main | control
    model: str
    root: str
    duration_s: float
    ops: int
    ok: int
    fail: int
    info: int
    by_kind: dict[str, dict[str, int]]
    errors: dict[str, int]  # by status
    isolation: Isolation
    integrity: Integrity
    clients: list[ClientDigest]
    bins: list[Bin]


class Report(msgspec.Struct):
    experiment: RunInfo
    config: dict[str, Any]
    loads: list[LoadResult]
    faults: list[StepResult]
    windows: list[Window]
    recoveries: list[Recovery]
    verdict: str  # the worst integrity verdict of every load
    blast_radius: list[str]  # one statement per control load
    runner_errors: list[str]
    faulty_state_before_clearing: dict[str, Any]
    reproducibility: str
    figures: dict[str, float | None] = {}

    @property
    def main(self) -> LoadResult:
        return self.loads[0]

    @property
    def controls(self) -> list[LoadResult]:
        return self.loads[1:]


def worst(verdicts: Sequence[str]) -> str:
    return max(verdicts, key=VERDICT_ORDER.index, default="OK")


def key_figures(report: Report) -> dict[str, float | None]:
    """The figures a repeat summarizes and ``compare`` puts side by side (flat names)."""
    figures: dict[str, float | None] = {}
    for load in report.loads:
        n = load.name
        iso = load.isolation
        figures[f"{n}.ops_ok"] = load.ok
        figures[f"{n}.errors"] = load.fail + load.info
        for side, summary in (("inside", iso.inside), ("outside", iso.outside)):
            figures[f"{n}.{side}.errors"] = summary.errors
            figures[f"{n}.{side}.ops_s"] = summary.ops_s
            figures[f"{n}.{side}.p50_ms"] = summary.p50_ms
            figures[f"{n}.{side}.p99_ms"] = summary.p99_ms
        figures[f"{n}.acknowledged"] = load.integrity.acknowledged
        figures[f"{n}.lost"] = load.integrity.lost
        figures[f"{n}.corrupted"] = load.integrity.corrupted
        figures[f"{n}.indeterminate"] = load.integrity.indeterminate
    for rec in report.recoveries:
        figures[f"step{rec.step + 1}.first_success_s"] = rec.first_success_s
        figures[f"step{rec.step + 1}.back_to_90_s"] = rec.back_to_90_s
    return figures


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:g}{unit}"


def summary_text(report: Report) -> str:
    exp = report.experiment
    lines = [
        f"experiment {exp.name} ({exp.file or 'inline'}), run {exp.run + 1}, "
        f"started {exp.started_at}, rdbss {exp.version}",
        f"command: {exp.command}",
        "seeds: " + ", ".join(f"{k}={v}" for k, v in exp.seeds.items()),
    ]
    for load in report.loads:
        lines.append(
            f"{load.role} load {load.name} ({load.model} loop, {load.root}): {load.ops} ops in "
            f"{load.duration_s:g} s: {load.ok} ok, {load.fail} failed, {load.info} indeterminate"
        )
        for kind, counts in sorted(load.by_kind.items()):
            lines.append(f"  {kind:7} ok={counts['ok']} errors={counts['errors']}")
        if load.errors:
            lines += [f"  {name}: {n}" for name, n in load.errors.items()]
        lines.append(f"  isolation: {load.isolation.statement}")
    lines.append("fault steps:")
    if not report.faults:
        lines.append("  none")
    for step in report.faults:
        at = f"t={step.at:.2f}s" if step.at is not None else f"t={step.t:.2f}s (not run)"
        lines.append(f"  {at}  {step.what}: {step.detail}")
    lines.append("recovery (from the end of each fault):")
    if not report.recoveries:
        lines.append("  none")
    for rec in report.recoveries:
        lines.append(
            f"  {rec.label}: fault {rec.fault_start:.2f}-{rec.fault_end:.2f} s; first success "
            f"after {_fmt(rec.first_success_s, ' s')}; back to 90% of "
            f"{_fmt(rec.baseline_ops_s, ' ops/s')} after {_fmt(rec.back_to_90_s, ' s')}"
        )
    lines.append("blast radius:")
    lines += [f"  {s}" for s in report.blast_radius] or ["  no control load"]
    lines.append("integrity:")
    for load in report.loads:
        i = load.integrity
        lines.append(
            f"  {load.name}: {i.verdict} ({i.files} files; acknowledged={i.acknowledged} "
            f"lost={i.lost} corrupted={i.corrupted} indeterminate={i.indeterminate})"
        )
    if report.verdict in ("LOST", "CORRUPTED"):
        bad = [f.name for load in report.loads for f in load.integrity.bad_files]
        lines.append(f"!!! DATA {report.verdict}: " + ", ".join(bad) + " !!!")
    elif report.verdict == "UNVERIFIED":
        lines.append("!!! UNVERIFIED: some files could not be read back !!!")
    else:
        lines.append("nothing acknowledged was lost")
    if report.runner_errors:
        lines.append("runner problems: " + "; ".join(report.runner_errors))
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("load", "client", "seq", "kind", "file", "intended", "start", "end", "status")


def write_records(records: Sequence[OpRecord], out: Path) -> Path:
    """Every operation, one row each: ops.parquet when pyarrow is installed, else ops.csv
    (times in seconds since the load started; ``latency_ms`` and ``outcome`` derived)."""
    columns: dict[str, list[Any]] = {f: [getattr(r, f) for r in records] for f in CSV_FIELDS}
    columns["latency_ms"] = [round(r.latency_ms, 3) for r in records]
    columns["outcome"] = [r.outcome for r in records]
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        path = out / "ops.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(zip(*columns.values(), strict=True))
        return path
    path = out / "ops.parquet"
    pyarrow.parquet.write_table(pyarrow.table(columns), path)
    return path


def read_records(out: Path) -> list[OpRecord]:
    path = out / "ops.csv"
    if not path.exists():
        import pyarrow.parquet

        rows = pyarrow.parquet.read_table(out / "ops.parquet").to_pylist()
    else:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    return [
        OpRecord(
            str(r["load"]),
            int(r["client"]),
            int(r["seq"]),
            str(r["kind"]),
            int(r["file"]),
            float(r["intended"]),
            float(r["start"]),
            float(r["end"]),
            (str(r["status"]) or None) if r["status"] is not None else None,
        )
        for r in rows
    ]


def encode(value: Any) -> bytes:
    return msgspec.json.format(msgspec.json.encode(value), indent=2) + b"\n"


def read_report(folder: Path) -> Report:
    return msgspec.json.decode((folder / "report.json").read_bytes(), type=Report)


class RepeatSummary(msgspec.Struct):
    name: str
    runs: int
    verdict: str
    run_folders: list[str]
    figures: dict[str, Spread]


def repeat_summary(name: str, reports: Sequence[Report], folders: Sequence[str]) -> RepeatSummary:
    from rdbss.experiment.stats import spread

    return RepeatSummary(
        name,
        len(reports),
        worst([r.verdict for r in reports]),
        list(folders),
        spread([r.figures for r in reports]),
    )


def folder_figures(folder: Path) -> tuple[str, dict[str, Spread]]:
    """A report folder's figures: a repeat's medians and spreads (repeat.json), or a single
    run's figures as spreads of one."""
    repeat = folder / "repeat.json"
    if repeat.exists():
        summary = msgspec.json.decode(repeat.read_bytes(), type=RepeatSummary)
        return summary.name, summary.figures
    report = read_report(folder)
    figures = {k: Spread(v, v, v, 1) for k, v in report.figures.items() if v is not None}
    return report.experiment.name, figures


def compare_text(a: tuple[str, Mapping[str, Spread]], b: tuple[str, Mapping[str, Spread]]) -> str:
    """Two folders' figures side by side, with B/A for each figure both have."""
    (name_a, fa), (name_b, fb) = a, b
    names = list(fa) + [k for k in fb if k not in fa]
    width = max([len(n) for n in names] + [10])
    lines = [f"{'figure':{width}}  {'A: ' + name_a:>28}  {'B: ' + name_b:>28}  {'B/A':>7}"]

    def cell(s: Spread | None) -> str:
        if s is None:
            return "-"
        if s.n == 1:
            return f"{s.median:g}"
        return f"{s.median:g} [{s.min:g}..{s.max:g}]"

    for name in names:
        sa, sb = fa.get(name), fb.get(name)
        ratio = "-"
        if sa is not None and sb is not None and sa.median:
            ratio = f"{sb.median / sa.median:.2f}"
        lines.append(f"{name:{width}}  {cell(sa):>28}  {cell(sb):>28}  {ratio:>7}")
    return "\n".join(lines) + "\n"

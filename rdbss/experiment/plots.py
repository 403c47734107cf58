"""The figures of a report (matplotlib, Agg, no pyplot state) and ``report.html``: one file that
opens offline, with every figure embedded as a base64 PNG and the tables a reader needs (blast
radius, recovery, integrity, fault steps, command, seeds and version).

Every time figure shades the fault windows and shares the time axis (seconds since the load
started), so an outage reads across latency, throughput and errors at the same x.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from rdbss.experiment.report import (
    LoadResult,
    Report,
    compare_text,
    folder_figures,
    read_records,
)
from rdbss.experiment.stats import BIN_S, OpRecord

OUTCOME_COLORS = {"ok": "tab:blue", "fail": "tab:red", "info": "tab:orange"}
OUTCOME_LABELS = {"ok": "ok", "fail": "failed", "info": "indeterminate"}
DPI = 100


def _figure(rows: int, height: float = 2.6) -> tuple[Figure, list[Any]]:
    fig = Figure(figsize=(10, 0.8 + height * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, list(axes)


def _shade(ax: Any, report: Report, labels: bool = False) -> None:
    for w in report.windows:
        ax.axvspan(w.start, w.end, color="tab:red", alpha=0.12, lw=0, zorder=0)
        if labels:
            ax.annotate(
                w.label,
                xy=(w.start, 0.98),
                xycoords=("data", "axes fraction"),
                xytext=(2, 0),
                textcoords="offset points",
                va="top",
                ha="left",
                fontsize=7,
                color="darkred",
                zorder=5,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            )


def _log_ms(ax: Any) -> None:
    ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _pos: f"{value:g}")
    ax.yaxis.set_major_formatter(plain)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def latency_figure(report: Report, records: Sequence[OpRecord], path: Path) -> Path:
    """Every operation's latency at its intended start, coloured by outcome."""
    fig, axes = _figure(len(report.loads))
    for ax, load in zip(axes, report.loads, strict=True):
        mine = [r for r in records if r.load == load.name]
        for outcome, color in OUTCOME_COLORS.items():
            pts = [r for r in mine if r.outcome == outcome]
            if pts:
                ax.scatter(
                    [r.intended for r in pts],
                    [max(r.latency_ms, 0.01) for r in pts],
                    s=4,
                    color=color,
                    label=f"{OUTCOME_LABELS[outcome]} ({len(pts)})",
                    rasterized=True,
                    zorder=2,
                )
        _shade(ax, report, labels=True)
        if mine:
            _log_ms(ax)
            ax.legend(loc="upper right", fontsize=8, markerscale=3)
        ax.set_ylabel("latency (ms)")
        ax.set_title(f"{load.role} load {load.name}: latency of each operation", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[-1].set_xlabel("intended start (s since the load started)")
    return _save(fig, path)


def throughput_figure(report: Report, path: Path) -> Path:
    """Successes and failures per 100 ms bin, as operations per second."""
    fig, axes = _figure(len(report.loads))
    scale = 1.0 / BIN_S
    for ax, load in zip(axes, report.loads, strict=True):
        xs = [b.t for b in load.bins]
        ok = [b.ok * scale for b in load.bins]
        bad = [b.errors * scale for b in load.bins]
        ax.bar(xs, ok, width=BIN_S, align="edge", color="tab:blue", label="ok/s", zorder=2)
        ax.bar(
            xs,
            bad,
            width=BIN_S,
            align="edge",
            bottom=ok,
            color="tab:red",
            label="failed/s",
            zorder=2,
        )
        _shade(ax, report)
        ax.set_ylabel("ops/s (100 ms bins)")
        ax.set_title(f"{load.role} load {load.name}: throughput", fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    axes[-1].set_xlabel("s since the load started")
    return _save(fig, path)


def errors_figure(report: Report, path: Path) -> Path:
    """Failed operations per 100 ms bin by status, stacked, per load."""
    fig, axes = _figure(len(report.loads), height=2.0)
    for ax, load in zip(axes, report.loads, strict=True):
        xs = [b.t for b in load.bins]
        statuses = sorted({s for b in load.bins for s in b.by_status})
        bottom = [0.0] * len(xs)
        for status in statuses:
            ys = [float(b.by_status.get(status, 0)) for b in load.bins]
            ax.bar(xs, ys, width=BIN_S, align="edge", bottom=bottom, label=status, zorder=2)
            bottom = [a + b for a, b in zip(bottom, ys, strict=True)]
        _shade(ax, report)
        if statuses:
            ax.legend(loc="upper right", fontsize=7)
        else:
            ax.text(0.5, 0.5, "no errors", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylabel("errors / bin")
        ax.set_title(f"{load.role} load {load.name}: errors by status", fontsize=10)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("s since the load started")
    return _save(fig, path)


def recovery_figure(report: Report, path: Path) -> Path:
    """Per fault step: time to the first success and back to 90 % of the pre-fault rate."""
    fig = Figure(figsize=(10, 1.2 + 0.45 * max(2, len(report.recoveries))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    recs = report.recoveries
    if recs:
        ys = list(range(len(recs)))[::-1]
        first = [r.first_success_s or 0.0 for r in recs]
        back = [r.back_to_90_s or 0.0 for r in recs]
        ax.barh([y + 0.2 for y in ys], first, height=0.4, color="tab:green", label="first success")
        ax.barh([y - 0.2 for y in ys], back, height=0.4, color="tab:purple", label="back to 90%")
        for y, r in zip(ys, recs, strict=True):
            missing = " (not recovered)" if r.back_to_90_s is None and r.baseline_ops_s else ""
            ax.annotate(
                f"{r.first_success_s if r.first_success_s is not None else '-'} s / "
                f"{r.back_to_90_s if r.back_to_90_s is not None else '-'} s{missing}",
                xy=(max(first[ys.index(y)], back[ys.index(y)]), y),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        ax.set_yticks(ys, [r.label for r in recs])
        ax.set_xlabel("seconds after the fault ended")
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no fault steps", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    ax.set_title(f"{report.experiment.name}: recovery after each fault", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def isolation_figure(report: Report, path: Path) -> Path:
    """p50 and p99 of every load inside the fault windows and outside."""
    fig = Figure(figsize=(10, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    names, values, colors = [], [], []
    for load in report.loads:
        for side, color in (("outside", "tab:gray"), ("inside", "tab:red")):
            summary = getattr(load.isolation, side)
            for q in ("p50_ms", "p99_ms"):
                names.append(f"{load.name}\n{q[:3]} {side}")
                values.append(getattr(summary, q) or 0.0)
                colors.append(color)
    ax.bar(range(len(values)), values, color=colors)
    for i, v in enumerate(values):
        text = f"{v:.0f}" if v >= 100 else f"{v:.3g}"
        ax.annotate(text, xy=(i, v), xytext=(0, 2), textcoords="offset points", ha="center",
                    fontsize=7)  # fmt: skip
    ax.set_xticks(range(len(names)), names, fontsize=7)
    if any(values):
        _log_ms(ax)
    ax.set_ylabel("latency (ms)")
    ax.set_title("latency inside the fault windows (red) and outside (grey)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def plot(report: Report, out: Path, records: Sequence[OpRecord] | None = None) -> list[Path]:
    """The report's PNGs; the latency scatter needs the records (else read from ops.csv)."""
    if records is None:
        records = read_records(out)
    return [
        latency_figure(report, records, out / "latency.png"),
        throughput_figure(report, out / "throughput.png"),
        errors_figure(report, out / "errors.png"),
        recovery_figure(report, out / "recovery.png"),
        isolation_figure(report, out / "isolation.png"),
    ]


# ================================================================================ HTML
CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1040px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ccc;
padding: 2px 8px; text-align: right; } th { background: #f3f3f3; } td.l, th.l { text-align: left; }
img { max-width: 100%; } code, pre { background: #f6f6f6; padding: 2px 4px; }
.ok { color: #176117; font-weight: bold; } .bad { color: #b00; font-weight: bold; }
"""


def _esc(value: Any) -> str:
    return html.escape("-" if value is None else str(value))


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    def cells(tag: str, values: Sequence[Any]) -> str:
        return "".join(
            f"<{tag}{' class=l' if i < left else ''}>{_esc(v)}</{tag}>"
            for i, v in enumerate(values)
        )

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><tr>{cells('th', head)}</tr>{body}</table>"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{_esc(path.stem)}" src="data:image/png;base64,{data}"></p>'


def _isolation_rows(loads: Sequence[LoadResult]) -> list[list[Any]]:
    rows = []
    for load in loads:
        for side in ("inside", "outside"):
            s = getattr(load.isolation, side)
            rows.append(
                [
                    f"{load.name} ({load.role})",
                    side,
                    s.ops,
                    s.errors,
                    s.ops_s,
                    s.p50_ms,
                    s.p90_ms,
                    s.p99_ms,
                    s.max_ms,
                ]
            )
    return rows


def render_html(report: Report, figures: Sequence[Path], out: Path) -> Path:
    exp = report.experiment
    verdict_class = "ok" if report.verdict == "OK" else "bad"
    by_name = {p.stem: p for p in figures}
    parts = [
        f"<!doctype html><html><head><meta charset=utf-8><title>{_esc(exp.name)}</title>"
        f"<style>{CSS}</style></head><body>",
        f"<h1>Experiment {_esc(exp.name)}</h1>",
        f"<p>Integrity: <span class={verdict_class}>{_esc(report.verdict)}</span> · run "
        f"{exp.run + 1} · started {_esc(exp.started_at)} · {exp.elapsed_s:.1f} s · rdbss "
        f"{_esc(exp.version)}</p>",
        "<h2>Blast radius</h2><ul>"
        + "".join(f"<li>{_esc(s)}</li>" for s in report.blast_radius or ["no control load"])
        + "</ul>",
        _table(
            ["load", "window", "ops", "errors", "ok/s", "p50 ms", "p90 ms", "p99 ms", "max ms"],
            _isolation_rows(report.loads),
            left=2,
        ),
    ]
    if "isolation" in by_name:
        parts.append(_img(by_name["isolation"]))
    parts.append("<h2>Latency of every operation</h2>")
    parts.append(
        "<p>At each operation's intended start; shaded: fault windows. Open-loop latency counts "
        "from the operation's slot on the schedule, so waiting behind a stalled backend shows.</p>"
    )
    for name, title in (
        ("latency", None),
        ("throughput", "Throughput per 100 ms"),
        ("errors", "Errors by status over time"),
        ("recovery", "Recovery after each fault"),
    ):
        if title:
            parts.append(f"<h2>{title}</h2>")
        if name in by_name:
            parts.append(_img(by_name[name]))
    parts.append(
        _table(
            [
                "step",
                "fault from",
                "fault until",
                "baseline ok/s",
                "first success s",
                "back to 90% s",
            ],
            [
                [
                    r.label,
                    r.fault_start,
                    r.fault_end,
                    r.baseline_ops_s,
                    r.first_success_s,
                    r.back_to_90_s,
                ]
                for r in report.recoveries
            ],
        )
    )
    parts.append("<h2>Integrity</h2>")
    parts.append(
        _table(
            ["load", "verdict", "files", "acknowledged", "lost", "corrupted", "indeterminate"],
            [
                [
                    ld.name,
                    ld.integrity.verdict,
                    ld.integrity.files,
                    ld.integrity.acknowledged,
                    ld.integrity.lost,
                    ld.integrity.corrupted,
                    ld.integrity.indeterminate,
                ]
                for ld in report.loads
            ],
        )
    )
    parts.append("<h2>Fault steps</h2>")
    parts.append(
        _table(
            ["#", "planned s", "ran at s", "ended s", "what", "result"],
            [[s.index + 1, s.t, s.at, s.ended_at, s.what, s.detail] for s in report.faults],
            left=0,
        )
    )
    parts.append("<h2>Loads</h2>")
    parts.append(
        _table(
            ["load", "role", "model", "root", "ops", "ok", "failed", "indeterminate"],
            [
                [ld.name, ld.role, ld.model, ld.root, ld.ops, ld.ok, ld.fail, ld.info]
                for ld in report.loads
            ],
            left=4,
        )
    )
    parts.append("<h2>Reproduce</h2>")
    parts.append(f"<pre>{_esc(exp.command)}</pre>")
    parts.append("<p>Seeds: " + _esc(", ".join(f"{k}={v}" for k, v in exp.seeds.items())) + "</p>")
    parts.append(f"<p>{_esc(report.reproducibility)}</p>")
    if report.runner_errors:
        parts.append("<h2>Runner problems</h2><ul>")
        parts += [f"<li>{_esc(e)}</li>" for e in report.runner_errors]
        parts.append("</ul>")
    parts.append("</body></html>\n")
    path = out / "report.html"
    path.write_text("".join(parts))
    return path


def render_compare(folder_a: Path, folder_b: Path, out: Path) -> Path:
    """compare.html: the two folders' figures table and their figures side by side."""
    a, b = folder_figures(folder_a), folder_figures(folder_b)
    parts = [
        f"<!doctype html><html><head><meta charset=utf-8><title>compare</title>"
        f"<style>{CSS} .pair {{ display: flex; gap: 8px; }} .pair div {{ flex: 1; }}"
        "</style></head><body>",
        f"<h1>A: {_esc(a[0])} ({_esc(folder_a)}) vs B: {_esc(b[0])} ({_esc(folder_b)})</h1>",
        f"<pre>{_esc(compare_text(a, b))}</pre>",
    ]
    for name in ("isolation", "latency", "throughput", "errors", "recovery"):
        pa = _first_png(folder_a, name)
        pb = _first_png(folder_b, name)
        if pa or pb:
            parts.append(f"<h2>{name}</h2><div class=pair>")
            parts += [f"<div>{_img(p) if p else 'missing'}</div>" for p in (pa, pb)]
            parts.append("</div>")
    parts.append("</body></html>\n")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "compare.html"
    path.write_text("".join(parts))
    return path


def _first_png(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.png", folder / "run-1" / f"{name}.png"):
        if candidate.exists():
            return candidate
    return None

"""Writing one run's folder: report, summary, records and (when matplotlib is there) plots.

This sits above both report.py (the data) and plots.py (the figures), so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rdbss.experiment.report import Report, encode, summary_text, write_records
from rdbss.experiment.stats import OpRecord


def write_outputs(report: Report, records: Sequence[OpRecord], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_bytes(encode(report))
    (out / "summary.txt").write_text(summary_text(report))
    write_records(records, out)
    try:
        from rdbss.experiment.plots import plot, render_html
    except ImportError as exc:  # matplotlib is optional: pip install 'rdbss[experiment]'
        (out / "plots-missing.txt").write_text(f"no plots: {exc}\n")
        return
    figures = plot(report, out, records)
    render_html(report, figures, out)

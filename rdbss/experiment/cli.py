"""``rdbss experiment run|plan|compare`` (also ``python -m rdbss.experiment``).

- ``run FILE [--out DIR] [--repeat N]``: one run writes its report into DIR; N runs write
  ``DIR/run-K`` each (the loads' seeds derived from the file's, run 1 keeping them) and
  ``DIR/repeat.json`` / ``repeat.txt`` with every figure as median [min..max].
- ``plan FILE [--client N] [--count N]``: the seeded operations of one client, without running.
- ``compare DIR_A DIR_B [--out DIR]``: two report folders' figures side by side (a repeat's
  medians when the folder holds one), printed and rendered as ``compare.html``.

Exit status: 0 when nothing acknowledged was lost, 1 when something was (or a run failed), 2
for a bad experiment file or bad arguments.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import datetime
from pathlib import Path

import msgspec

from rdbss.config import ConfigError
from rdbss.experiment.plan import derived_seed, ops_digest, plan_operations
from rdbss.experiment.schema import Experiment, ExperimentError, load_experiment


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["run", "plan", "compare"])
    parser.add_argument(
        "file",
        nargs="+",
        help="run/plan: the experiment file (TOML), e.g. deploy/experiments/kill-local.toml; "
        "compare: two report folders",
    )
    parser.add_argument("--out", help="report folder (default: ./experiment-<name>-<time>)")
    parser.add_argument("--repeat", type=int, default=1, help="run: how many runs (default 1)")
    parser.add_argument("--client", type=int, default=0, help="plan: which client's operations")
    parser.add_argument("--count", type=int, default=20, help="plan: how many operations")


def with_run_seeds(experiment: Experiment, run: int) -> Experiment:
    """The experiment of repeat ``run``: every load's seed derived from the file's."""
    replace = msgspec.structs.replace
    loads = [replace(spec, seed=derived_seed(spec.seed, run)) for spec in experiment.loads]
    return replace(experiment, load=loads[0], controls=tuple(loads[1:]))


def _plan(experiment: Experiment, client: int, count: int) -> int:
    if not 0 <= client < experiment.load.clients:
        raise ExperimentError(f"--client must be 0..{experiment.load.clients - 1}")
    ops = plan_operations(experiment.load, client, max(0, count))
    for op in ops:
        print(op.key())
    print(f"sha256 {ops_digest(ops)}")
    return 0


def _compare(folders: list[str], out: str | None) -> int:
    from rdbss.experiment.report import compare_text, folder_figures

    if len(folders) != 2:
        raise ExperimentError("compare needs two report folders: DIR_A DIR_B")
    a, b = (Path(f) for f in folders)
    for folder in (a, b):
        if not (folder / "report.json").exists() and not (folder / "repeat.json").exists():
            raise ExperimentError(f"{folder}: not a report folder (no report.json/repeat.json)")
    sys.stdout.write(compare_text(folder_figures(a), folder_figures(b)))
    try:
        from rdbss.experiment.plots import render_compare
    except ImportError:
        return 0
    path = render_compare(a, b, Path(out) if out else Path("."))
    print(f"compare: {path}", file=sys.stderr)
    return 0


def _run(experiment: Experiment, source: str, out: Path, repeat: int) -> int:
    from rdbss.experiment.report import encode, repeat_summary, summary_text
    from rdbss.experiment.runner import Runner

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    command = shlex.join(["rdbss", "experiment", "run", source, "--out", str(out)])
    if repeat > 1:
        command += f" --repeat {repeat}"
    reports, folders = [], []
    for run in range(repeat):
        folder = out if repeat == 1 else out / f"run-{run + 1}"
        if repeat > 1:
            log(f"experiment {experiment.name}: run {run + 1} of {repeat}")
        report = Runner(
            with_run_seeds(experiment, run),
            folder,
            log=log,
            command=command,
            run_index=run,
            progress=sys.stderr,
        ).run()
        sys.stdout.write(summary_text(report))
        log(f"report: {folder}/report.html")
        reports.append(report)
        folders.append(folder.name)
    if repeat > 1:
        summary = repeat_summary(experiment.name, reports, folders)
        (out / "repeat.json").write_bytes(encode(summary))
        lines = [f"{experiment.name}: {repeat} runs, integrity {summary.verdict}"]
        lines += [
            f"  {name}: {s.median:g} [{s.min:g}..{s.max:g}]" for name, s in summary.figures.items()
        ]
        text = "\n".join(lines) + "\n"
        (out / "repeat.txt").write_text(text)
        sys.stdout.write(text)
    verdicts = [r.verdict for r in reports]
    if any(v != "OK" for v in verdicts):
        log(f"experiment: integrity {', '.join(verdicts)}")
        return 1
    return 0


def command(args: argparse.Namespace) -> int:
    """``rdbss experiment run|plan|compare``: 0 when nothing acknowledged was lost, 1 otherwise."""
    files = args.file if isinstance(args.file, list) else [args.file]
    if args.action == "compare":
        return _compare(files, args.out)
    if len(files) != 1:
        raise ExperimentError(f"{args.action} takes one experiment file")
    repeat = getattr(args, "repeat", 1)
    if repeat < 1:
        raise ExperimentError("--repeat must be at least 1")
    experiment = load_experiment(Path(files[0]))
    if args.action == "plan":
        return _plan(experiment, args.client, args.count)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path(f"experiment-{experiment.name}-{stamp}")
    return _run(experiment, files[0], out, repeat)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rdbss.experiment", description="run a fault-injection experiment"
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return command(args)
    except ConfigError as exc:
        print(f"experiment: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"experiment: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

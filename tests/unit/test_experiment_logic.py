"""The pure parts of the experiment runner (rdbss/experiment/): parsing experiment files,
planning the operation sequence, the time series and recovery times, the integrity model and the
daemon configuration it writes. No processes, no sockets, no sleeping."""

from __future__ import annotations

import math
import sys
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from rdbss.config import parse_config
from rdbss.experiment import (
    ExperimentError,
    FaultStep,
    FileSet,
    IntegrityModel,
    LoadSpec,
    OpRecord,
    config_toml,
    daemon_config,
    derived_seed,
    file_name,
    integrity_summary,
    iter_plan,
    load_experiment,
    lost_after_steps,
    ops_digest,
    owned_files,
    parse_experiment,
    percentile,
    placeholders,
    plan_operations,
    substitute,
    write_content,
)
from rdbss.experiment.daemon import check_env
from rdbss.experiment.faults import StepResult, fill, timeline
from rdbss.experiment.report import (
    LoadResult,
    Report,
    RunInfo,
    key_figures,
    read_records,
    summary_text,
    write_records,
)
from rdbss.experiment.stats import (
    Recovery,
    Spread,
    Window,
    bins,
    fault_windows,
    isolation,
    recoveries,
    spread,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "experiments" / "kill-local.toml"

LOAD = LoadSpec(
    root=r"\\flaky\data\exp",
    mix=(("read", 0.5), ("stat", 0.3), ("write", 0.2)),
    files=FileSet(count=10, size=256),
    clients=3,
    seed=42,
)

MINIMAL = """
[setup]
[[setup.minirdr]]
name = "flaky"
kind = "faulty"
wraps = "local"
[setup.minirdr.options]
server = "flaky"
shares = { data = "{tmp}/flaky" }

[load]
root = '\\\\flaky\\data'
"""


# ------------------------------------------------------------------------------ the plan
def test_the_plan_is_a_pure_function_of_the_spec_and_seed() -> None:
    for client in range(LOAD.clients):
        first = plan_operations(LOAD, client, 500)
        assert first == plan_operations(LOAD, client, 500)
        assert ops_digest(first) == ops_digest(plan_operations(LOAD, client, 500))
        # a prefix of a longer plan: how many ops ran (timing) never changes what they were
        assert plan_operations(LOAD, client, 800)[:500] == first
    other_seed = replace(LOAD, seed=43)
    assert plan_operations(other_seed, 0, 100) != plan_operations(LOAD, 0, 100)
    assert plan_operations(LOAD, 0, 100) != plan_operations(LOAD, 1, 100)


def test_the_plan_follows_the_mix_and_writes_only_owned_files() -> None:
    ops = plan_operations(LOAD, 1, 4000)
    counts = Counter(op.kind for op in ops)
    assert set(counts) == {"read", "stat", "write"}
    assert abs(counts["read"] / 4000 - 0.5) < 0.05
    assert abs(counts["stat"] / 4000 - 0.3) < 0.05
    assert abs(counts["write"] / 4000 - 0.2) < 0.05
    mine = set(owned_files(LOAD, 1))
    assert mine == {1, 4, 7}
    assert {op.file for op in ops if op.kind == "write"} <= mine
    assert {op.file for op in ops if op.kind == "read"} == set(range(10))  # reads go anywhere
    assert [op.seq for op in ops] == list(range(4000))
    # each file has exactly one writer
    owners = [c for c in range(LOAD.clients) for _ in owned_files(LOAD, c)]
    assert len(owners) == LOAD.files.count
    with_list = replace(LOAD, mix=(("list", 1.0),))
    assert {op.file for op in plan_operations(with_list, 0, 10)} == {-1}


def test_write_contents_are_unique_and_repeatable() -> None:
    seen = set()
    for client in range(LOAD.clients):
        for op in plan_operations(LOAD, client, 300):
            if op.kind == "write":
                content = write_content(LOAD, op.client, op.seq, op.file)
                assert content == write_content(LOAD, op.client, op.seq, op.file)
                assert len(content) == 256
                seen.add(content)
    initial = {write_content(LOAD, -1, i, i) for i in range(LOAD.files.count)}
    assert len(initial) == LOAD.files.count and not initial & seen
    writes = sum(
        1 for c in range(LOAD.clients) for op in plan_operations(LOAD, c, 300) if op.kind == "write"
    )
    assert len(seen) == writes
    tiny = replace(LOAD, files=FileSet(count=2, size=1))
    assert write_content(tiny, 0, 1, 0).startswith(b"rdbss-experiment")  # never shorter


def test_file_names() -> None:
    assert file_name(LOAD, 3) == "exp-003.bin"
    big = replace(LOAD, files=FileSet(count=20000, size=1, prefix="f"))
    assert file_name(big, 7) == "f00007.bin"
    assert next(iter_plan(LOAD, 0)).key() == plan_operations(LOAD, 0, 1)[0].key()


# ------------------------------------------------------------------------------ statistics
def _rec(end: float, status: str | None = None, *, kind: str = "read", lat: float = 0.002,
         intended: float | None = None, load: str = "main") -> OpRecord:  # fmt: skip
    start = end - lat
    return OpRecord(load, 0, 0, kind, 0, start if intended is None else intended, start, end,
                    status)  # fmt: skip


def _steady(rate: float, until: float, *, gap: tuple[float, float] | None = None,
            load: str = "main") -> list[OpRecord]:  # fmt: skip
    """Successful operations every 1/rate s up to ``until``, none ending inside ``gap``."""
    out = []
    t = 0.0005
    while t < until:
        if not (gap and gap[0] <= t < gap[1]):
            out.append(_rec(t, load=load))
        t += 1.0 / rate
    return out


def test_bins_are_100_ms_and_count_outcomes_and_latency_from_the_intended_start() -> None:
    records = [
        _rec(0.05),
        _rec(0.07, "STATUS_IO_TIMEOUT"),  # a failed read
        _rec(0.15, "STATUS_IO_TIMEOUT", kind="write"),  # a failed write: indeterminate
        _rec(0.25, intended=0.0, lat=0.01),  # queued 240 ms behind its slot
    ]
    result = bins(records, 0.4)
    assert [b.t for b in result] == [0.0, 0.1, 0.2, 0.3]
    assert [(b.ok, b.fail, b.info) for b in result] == [(1, 1, 0), (0, 0, 1), (1, 0, 0), (0, 0, 0)]
    assert result[0].by_status == {"STATUS_IO_TIMEOUT": 1}
    assert result[2].p50_ms == pytest.approx(250.0)
    assert result[3].p50_ms is None
    late = bins([*records, _rec(0.47)], 0.4)
    assert len(late) == 5  # in flight at the end: counted in a bin of its own
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0
    assert math.isnan(percentile([], 50))


def _step(index: int, t: float, action: str, target: str = "flaky", **kw: Any) -> FaultStep:
    return FaultStep(index, t, action, target, **kw)


def test_fault_windows_from_durations_ending_steps_and_instant_faults() -> None:
    records = _steady(100, 6.0, gap=(3.0, 3.4))
    steps = [
        (_step(0, 0.5, "set_faults", duration_s=0.5), 0.5),
        (_step(1, 1.5, "stop"), 1.5),
        (_step(2, 2.0, "cont"), 2.0),
        (_step(3, 3.0, "kill"), 3.0),
        (_step(4, 4.0, "proxy", "p", settings={"latency_ms": 5}), 4.0),
        (_step(5, 4.5, "proxy", "p", settings={"blackhole": True}), 4.5),
        (_step(7, 4.6, "proxy", "p", settings={"reset": True}), 4.6),
        (_step(6, 5.0, "set_faults"), 5.0),
    ]
    windows = fault_windows(steps, records, 6.0, ended={0: 1.02})
    spans = [(w.step, w.start, round(w.end, 2), w.lasting) for w in windows]
    assert spans == [
        (0, 0.5, 1.02, True),  # undone by the runner at 1.02
        (1, 1.5, 2.0, True),  # until the cont on the same target
        (3, 3.0, 3.4, False),  # until the first success of an operation started after it
        (4, 4.0, 4.5, True),  # a later proxy step on the same proxy ends it
        (5, 4.5, 6.0, True),  # nothing ends it (a reset lasts no time): the end of the load
        (7, 4.6, 4.7, False),  # a reset: instantaneous
        (6, 5.0, 6.0, True),
    ]


def test_recovery_counts_from_the_end_of_the_fault() -> None:
    # 100 ok/s; a fault 2.0-2.5 s with nothing completing until 2.8, then full rate again
    records = _steady(100, 6.0, gap=(2.0, 2.8))
    [window] = fault_windows([(_step(0, 2.0, "stop", duration_s=0.5), 2.0)], records, 6.0)
    [rec] = recoveries([window], bins(records, 6.0), records, 6.0)
    assert rec.baseline_ops_s == pytest.approx(100, rel=0.02)
    assert rec.fault_end == 2.5
    assert rec.first_success_s == pytest.approx(0.3, abs=0.02)
    assert rec.back_to_90_s == pytest.approx(0.3, abs=0.11)


def test_recovery_is_none_when_the_rate_never_comes_back() -> None:
    records = _steady(100, 2.0) + [_rec(2.0 + 0.1 * k) for k in range(40)]  # 10/s after 2 s
    [window] = fault_windows([(_step(0, 2.0, "kill"), 2.0)], records, 6.0)
    [rec] = recoveries([window], bins(records, 6.0), records, 6.0)
    assert rec.first_success_s is not None
    assert rec.back_to_90_s is None


def test_a_later_fault_leaves_an_earlier_disturbance_out_of_its_baseline() -> None:
    records = _steady(100, 2.0) + _steady(40, 4.0, gap=(0, 2.0)) + _steady(100, 8.0, gap=(0, 4))
    first_window = Window(0, "1", 2.0, 2.0, True)  # its recovery never reaches 90 % before 4 s
    second_window = Window(1, "2", 6.0, 6.2, True)
    first, second = recoveries([first_window, second_window], bins(records, 8.0), records, 8.0)
    assert first.back_to_90_s is None or first.back_to_90_s >= 1.9
    assert second.baseline_ops_s == pytest.approx(100, rel=0.05)  # 2-4 s left out


def test_isolation_compares_inside_and_outside_the_windows() -> None:
    control = _steady(50, 4.0, load="ctl")
    slow = [_rec(1.5 + 0.01 * k, lat=0.05, load="ctl") for k in range(5)]
    windows = [Window(0, "1", 1.0, 2.0, True), Window(1, "2", 1.5, 2.5, True)]
    iso = isolation("ctl", control + slow, windows, 4.0)
    assert iso.inside.seconds == 1.5 and iso.outside.seconds == 2.5  # overlaps merged
    assert iso.inside.errors == iso.outside.errors == 0
    assert iso.inside.ops == 75 + 5 and iso.outside.ops == 125
    assert iso.inside.max_ms == pytest.approx(50.0)
    assert iso.statement.startswith("ctl: 0 errors in 80 ops inside the fault windows (1.5 s)")


def test_spread_gives_median_min_max_and_skips_missing_figures() -> None:
    result = spread([{"a": 1.0, "b": None}, {"a": 3.0, "b": 2.0}, {"a": 2.0}])
    assert result["a"] == Spread(2.0, 1.0, 3.0, 3)
    assert result["b"] == Spread(2.0, 2.0, 2.0, 1)


def test_derived_seeds_keep_run_one_and_differ_after() -> None:
    assert derived_seed(42, 0) == 42
    seeds = {derived_seed(42, k) for k in range(1, 6)}
    assert len(seeds) == 5 and 42 not in seeds
    assert derived_seed(42, 3) == derived_seed(42, 3)


def test_the_timeline_undoes_lasting_steps_and_spreads_a_reset_storm() -> None:
    steps = (
        _step(0, 1.0, "set_faults", duration_s=0.5),
        _step(1, 2.0, "reset_storm", "p", duration_s=0.35, interval_s=0.1),
        _step(2, 3.0, "kill"),
    )
    entries = [(e.t, e.what, e.step) for e in timeline(steps)]
    assert entries == [
        (1.0, "do", 0),
        (1.5, "undo", 0),
        (2.0, "do", 1),
        (2.1, "reset", 1),
        (2.2, "reset", 1),
        (pytest.approx(2.3), "reset", 1),
        (3.0, "do", 2),
    ]


# ------------------------------------------------------------------------------ integrity
def test_integrity_model_verdicts() -> None:
    model = IntegrityModel()
    v1, v2, v3 = b"version-1" * 10, b"version-2" * 10, b"version-3" * 10
    for name in "abcdef":
        model.acknowledged(name, v1, -1.0)
    model.acknowledged("a", v2, 1.0)  # a later acknowledged write wins
    model.failed("c", v2)  # a failed write that took effect anyway
    model.failed("d", v2)  # a failed overwrite that stopped half-way
    model.failed("e", v3)
    assert model.verify("a", v2).verdict == "OK"
    assert model.verify("a", v1).verdict == "LOST"  # the acknowledged v2 vanished
    assert model.verify("b", v1).verdict == "OK"
    assert model.verify("c", v2).verdict == "UNACKED_APPLIED"
    assert model.verify("c", v1).verdict == "OK"
    assert model.verify("d", v2[:7]).verdict == "TORN_BY_FAILED_WRITE"
    assert model.verify("d", b"").verdict == "TORN_BY_FAILED_WRITE"
    assert model.verify("e", b"garbage").verdict == "CORRUPTED"  # no write produced it
    assert model.verify("f", None).verdict == "UNREADABLE"
    assert model.verify("f", None, missing=True).verdict == "LOST"  # no write deletes a file
    assert model.verify("never-written", b"x").verdict == "UNKNOWN"
    model.acknowledged("d", v3, 2.0)  # a successful write supersedes the failed ones
    assert model.verify("d", v2[:7]).verdict == "CORRUPTED"
    assert model.verify("d", v1).verdict == "LOST"
    lost = model.verify("a", v1)
    assert lost.acked_at == 1.0 and lost.found_size == len(v1) and lost.lost


def test_integrity_summary_and_attribution_to_steps() -> None:
    model = IntegrityModel()
    model.acknowledged("x", b"0", -1.0)
    model.acknowledged("y", b"0", -1.0)
    model.acknowledged("z", b"0", -1.0)
    model.acknowledged("x", b"1", 0.5)
    model.acknowledged("y", b"2", 1.5)
    model.acknowledged("z", b"3", 5.0)
    model.failed("x", b"4")
    verdicts = [model.verify("x", b"1"), model.verify("y", b"0"), model.verify("z", b"junk")]
    summary = integrity_summary("main", verdicts, model, 3)
    assert summary.verdict == "LOST"
    assert (summary.lost, summary.corrupted) == (1, 1)
    assert (summary.acknowledged, summary.indeterminate) == (3, 1)
    assert [v.name for v in summary.bad_files] == ["y", "z"]
    assert summary.by_verdict == {"CORRUPTED": 1, "LOST": 1, "OK": 1}
    per_step, later = lost_after_steps(verdicts, [1.0, 2.0, 4.0])
    assert per_step == [[], ["y"], []] and later == ["z"]
    assert integrity_summary("m", [model.verify("x", b"1")], model, 3).verdict == "OK"
    assert integrity_summary("m", [model.verify("x", None)], model, 3).verdict == "UNVERIFIED"


# ------------------------------------------------------------------------------ files
def test_the_example_experiment_parses() -> None:
    exp = load_experiment(EXAMPLE)
    assert exp.name == "kill-local"
    assert exp.load.clients == 2 and exp.load.duration_s == 7
    assert [s.action for s in exp.faults] == ["set_faults", "kill"]
    assert exp.faults[0].duration_s == 1.5
    assert [c.name for c in exp.controls] == ["ctl"] and exp.controls[0].model == "open"
    assert exp.faults[0].rules[0]["status"].startswith("STATUS_")
    assert "STATUS_" in exp.faults[0].describe()


def test_daemon_config_gets_a_private_runtime_dir_and_placeholders(tmp_path: Path) -> None:
    exp = load_experiment(EXAMPLE)
    config = daemon_config(exp, tmp_path, placeholders(tmp_path, {}, {}))
    assert config["daemon"]["runtime_dir"] == str(tmp_path / "run")
    assert config["minirdr"][0]["options"]["shares"]["data"] == f"{tmp_path}/flaky"
    text = config_toml(config)
    parsed = parse_config(text)  # the daemon reads what the runner writes
    assert parsed.runtime_dir == tmp_path / "run"
    assert parsed.request_timeout == 5.0
    assert parsed.minirdrs[0].options["wraps"] == "local"
    assert tomllib.loads(text)["minirdr"][0]["options"]["shares"]["data"] == f"{tmp_path}/flaky"


def test_toml_writer_round_trips_awkward_values() -> None:
    config = {
        "daemon": {"log_level": "info", "provider_order": ["a"]},
        "minirdr": [
            {
                "name": "a",
                "kind": "faulty",
                "seed": 3,
                "options": {"shares": {"odd key": 'q"uote\\back\nslash é'}, "x": 1.5},
                "rules": [{"action": "status", "until_s": math.inf, "flag": True}],
            }
        ],
    }
    assert tomllib.loads(config_toml(config)) == config


def test_substitute_keeps_a_whole_placeholder_typed() -> None:
    replaced = substitute(
        {"port": "{proxy.p.port}", "url": "http://h:{proxy.p.port}/", "l": ["{tmp}/x", 3]},
        {"{proxy.p.port}": 4455, "{tmp}": "/tmp/r"},
    )
    assert replaced == {"port": 4455, "url": "http://h:4455/", "l": ["/tmp/r/x", 3]}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[[fault]]\nt = 1\naction = 'explode'\nminirdr = 'flaky'\n", "action must be one of"),
        ("[[fault]]\naction = 'kill'\nminirdr = 'flaky'\n", "t must be a number"),
        ("[[fault]]\nt = 1\naction = 'kill'\n", "needs minirdr"),
        ("[[fault]]\nt = 1\naction = 'set_faults'\nminirdr = 'flaky'\n", "needs rules"),
        (
            "[[fault]]\nt = 1\naction = 'set_faults'\nminirdr = 'flaky'\n"
            "rules = [{ action = 'status', status = 'STATUS_NOPE' }]\n",
            "unknown status",
        ),
        ("[[fault]]\nt = 1\naction = 'proxy'\nproxy = 'nope'\n", "proxy must name"),
        ("[bogus]\n", "unknown key 'bogus'"),
        ("[[fault]]\nt = 1\naction = 'kill'\nminirdr = 'flaky'\nduration_s = 1\n", "lasting"),
        ("[[fault]]\nt = 1\naction = 'reset_storm'\nproxy = 'nope'\n", "needs duration_s"),
        ("[[fault]]\nt = 1\naction = 'disk_full'\n", "needs path"),
        ("[[fault]]\nt = 1\naction = 'command'\ncommand = 'ls'\n", "argv strings"),
        ("[[fault]]\nt = 1\naction = 'restart'\nserver = 'x'\n", "server must name a"),
        ("[[setup.volume]]\npath = '/mnt'\n", "under {tmp}/"),
        ("[[setup.server]]\nname = 's'\ncommand = 'x'\nready = 'h:1'\n", "list of strings"),
        ("[[control]]\nroot = 'nope'\n", "UNC folder"),
        ("[[control]]\nname = 'main'\nroot = '//c/d'\n", "two loads have the same name"),
    ],
)
def test_bad_experiment_files_are_refused(extra: str, message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        parse_experiment(tomllib.loads(MINIMAL + extra))


@pytest.mark.parametrize(
    ("load", "message"),
    [
        ("root = 'relative'", "UNC"),
        ("root = '\\\\\\\\s\\\\d'\nmix = { explode = 1.0 }", "unknown operation"),
        ("root = '\\\\\\\\s\\\\d'\nmix = { read = 0 }", "add up to 0"),
        ("root = '\\\\\\\\s\\\\d'\nclients = 0", "clients must be"),
        ("root = '\\\\\\\\s\\\\d'\nclients = 4\nfiles = { count = 2 }", "one file per client"),
        ("root = '\\\\\\\\s\\\\d'\nduration_s = 'long'", "duration_s must be"),
        ("root = '\\\\\\\\s\\\\d'\nmodel = 'open'", "needs rate > 0"),
        ("root = '\\\\\\\\s\\\\d'\nmodel = 'fast'", "model must be one of"),
    ],
)
def test_bad_loads_are_refused(load: str, message: str) -> None:
    text = MINIMAL.split("[load]")[0] + "[load]\n" + load + "\n"
    with pytest.raises(ExperimentError, match=message):
        parse_experiment(tomllib.loads(text))


def test_setup_from_a_config_path_and_proxies(tmp_path: Path) -> None:
    (tmp_path / "daemon.toml").write_text(
        '[[minirdr]]\nname = "local"\nkind = "local"\nserver = "local"\n'
        '[minirdr.shares]\ndata = "{tmp}/data"\n'
    )
    exp_file = tmp_path / "e.toml"
    exp_file.write_text(
        '[setup]\nconfig = "daemon.toml"\n'
        '[[setup.proxy]]\nname = "p"\ntarget = "127.0.0.1:445"\nsettings = { latency_ms = 5 }\n'
        "[load]\nroot = '//local/data'\n"
        "[[fault]]\nt = 1\naction = 'proxy'\nproxy = 'p'\nsettings = { reset = true }\n"
    )
    exp = load_experiment(exp_file)
    assert exp.config["minirdr"][0]["name"] == "local"
    assert exp.proxies[0].target == "127.0.0.1:445"
    assert exp.load.root == r"\\local\data"
    assert exp.faults[0].describe() == "proxy p: reset=True"
    bad = tmp_path / "bad.toml"
    bad.write_text(exp_file.read_text().replace("latency_ms = 5", "latency_ms = -5"))
    with pytest.raises(ExperimentError, match="latency_ms"):
        load_experiment(bad)


def test_summary_text_reports_a_loss_loudly() -> None:
    model = IntegrityModel()
    model.acknowledged("exp-001.bin", b"v1", -1.0)
    model.acknowledged("exp-001.bin", b"v2", 0.2)
    verdicts = [model.verify("exp-001.bin", b"v1")]
    records = [_rec(0.1), _rec(0.2, "STATUS_IO_TIMEOUT")]
    windows = [Window(0, "1: kill flaky", 0.5, 0.6, False)]
    load = LoadResult(
        name="main", role="main", model="closed", root=r"\\flaky\data", duration_s=1.0,
        ops=2, ok=1, fail=1, info=0, by_kind={"read": {"ok": 1, "errors": 1}},
        errors={"STATUS_IO_TIMEOUT": 1}, isolation=isolation("main", records, windows, 1.0),
        integrity=integrity_summary("main", verdicts, model, 1), clients=[],
        bins=bins(records, 1.0),
    )  # fmt: skip
    report = Report(
        experiment=RunInfo(
            "x", None, "rdbss experiment run x.toml", "0", {"main": 1}, "now", 1.0, None, None, {}
        ),
        config={},
        loads=[load],
        faults=[StepResult(0, 0.5, "kill", "flaky", "SIGKILL flaky", 0.5, None, True, "pid 1")],
        windows=windows,
        recoveries=[Recovery(0, "1: kill flaky", 0.5, 0.5, None, None, None)],
        verdict="LOST",
        blast_radius=[],
        runner_errors=[],
        faulty_state_before_clearing={},
        reproducibility="",
    )
    text = summary_text(report)
    assert "!!! DATA LOST: exp-001.bin !!!" in text
    assert "main: LOST (1 files; acknowledged=1 lost=1 corrupted=0 indeterminate=0)" in text
    assert "first success after -; back to 90% of - after -" in text
    assert "STATUS_IO_TIMEOUT: 1" in text
    assert "command: rdbss experiment run x.toml" in text
    figures = key_figures(report)
    assert figures["main.lost"] == 1 and figures["step1.back_to_90_s"] is None


def test_new_fault_kinds_parse_and_describe_themselves() -> None:
    text = (
        MINIMAL
        + "[[setup.proxy]]\nname = 'p'\ntarget = '127.0.0.1:{port.srv}'\n"
        + "[[setup.server]]\nname = 'srv'\ncommand = ['srv', '{port.srv}']\n"
        + "ready = '127.0.0.1:{port.srv}'\n"
        + "[[setup.volume]]\npath = '{tmp}/vol'\nsize_mb = 8\n"
        + "[[fault]]\nt = 1\naction = 'reset_storm'\nproxy = 'p'\nduration_s = 0.5\n"
        + "[[fault]]\nt = 2\naction = 'disk_full'\npath = '{tmp}/vol'\nduration_s = 1\n"
        + "[[fault]]\nt = 3\naction = 'command'\ncommand = ['/usr/bin/true', 'x']\n"
        + "[[fault]]\nt = 4\naction = 'restart'\nserver = 'srv'\n"
        + "[[fault]]\nt = 5\naction = 'proxy'\nproxy = 'p'\nsettings = { reset = true }\n"
        + "[[fault]]\nt = 6\naction = 'kill'\nminirdr = 'connmgr'\n"
    )
    exp = parse_experiment(tomllib.loads(text))
    assert [s.describe() for s in exp.faults] == [
        "TCP reset storm on p every 0.1 s for 0.5 s",
        "fill the volume of {tmp}/vol for 1 s",
        "run /usr/bin/true x",
        "restart server srv",
        "proxy p: reset=True",
        "SIGKILL connmgr",
    ]
    assert [s.lasting for s in exp.faults] == [True, True, False, False, False, False]
    assert exp.volumes[0].size_mb == 8 and exp.servers[0].ready == "127.0.0.1:{port.srv}"


def test_placeholders_give_free_ports_this_python_and_the_environment(tmp_path: Path) -> None:
    text = '{"a": "{port.one}", "b": "{port.two} {port.one}"}'
    rep = placeholders(tmp_path, {"p": ("127.0.0.1", 4000)}, {"HOME": "/h"}, text)
    assert rep["{tmp}"] == str(tmp_path) and rep["{env.HOME}"] == "/h"
    assert rep["{proxy.p.port}"] == 4000 and rep["{python}"].endswith(("python", "python3"))
    assert {type(rep["{port.one}"]), type(rep["{port.two}"])} == {int}
    assert rep["{port.one}"] != rep["{port.two}"]
    assert substitute("{port.one}", rep) == rep["{port.one}"]  # a whole placeholder stays an int
    with pytest.raises(ExperimentError, match="but RDBSS_NOPE is not set"):
        check_env(["x", {"y": "{env.RDBSS_NOPE}"}])


def test_disk_full_refuses_a_large_volume(tmp_path: Path) -> None:
    import os

    stat = os.statvfs(tmp_path)
    if stat.f_bavail * stat.f_frsize <= (1 << 30):
        pytest.skip("this machine's /tmp has under 1 GiB free")
    with pytest.raises(RuntimeError, match="disk_full fills only a small volume"):
        fill(tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("parquet", [False, True])
def test_records_round_trip_through_csv_and_parquet(
    parquet: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if parquet:
        pytest.importorskip("pyarrow")
    else:
        monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    records = [_rec(0.5), _rec(0.7, "STATUS_IO_TIMEOUT", kind="write", intended=0.1)]
    path = write_records(records, tmp_path)
    assert path.name == ("ops.parquet" if parquet else "ops.csv")
    assert read_records(tmp_path) == records

"""The pure parts of the experiment runner (rdbss/experiment.py): parsing experiment files,
planning the operation sequence, the time series and recovery times, the integrity model and the
daemon configuration it writes. No processes, no sockets, no sleeping."""

from __future__ import annotations

import math
import tomllib
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rdbss.config import parse_config
from rdbss.experiment import (
    ExperimentError,
    FileSet,
    IntegrityModel,
    LoadSpec,
    OpRecord,
    config_toml,
    daemon_config,
    file_name,
    integrity_summary,
    iter_plan,
    load_experiment,
    lost_after_steps,
    ops_digest,
    owned_files,
    parse_experiment,
    percentile,
    plan_operations,
    recovery_times,
    substitute,
    summary_text,
    time_series,
    write_content,
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


# ------------------------------------------------------------------------------ time series
def _records(spec: dict[int, tuple[int, int]]) -> list[OpRecord]:
    """{second: (ok, errors)} -> records finishing inside that second."""
    out = []
    for second, (ok, errors) in spec.items():
        for i in range(ok + errors):
            end = second + (i + 0.5) / (ok + errors)
            status = None if i < ok else "STATUS_IO_TIMEOUT"
            out.append(OpRecord(0, len(out), "read", 0, end - 0.002, end, status))
    return out


def test_time_series_counts_and_percentiles() -> None:
    records = _records({0: (10, 0), 1: (5, 2), 3: (4, 0)})
    series = time_series(records, 4.0)
    assert [s["t"] for s in series] == [0, 1, 2, 3]
    assert [s["throughput"] for s in series] == [10, 5, 0, 4]
    assert series[1]["errors"] == 2
    assert series[1]["errors_by_status"] == {"STATUS_IO_TIMEOUT": 2}
    assert series[0]["p50_ms"] == pytest.approx(2.0, abs=0.01)
    assert series[2]["p50_ms"] is None and series[2]["ops"] == 0
    assert all(s["full"] for s in series)
    late = time_series([*records, OpRecord(0, 99, "read", 0, 3.9, 4.6, None)], 4.0)
    assert len(late) == 5 and not late[4]["full"]  # in flight at the end: counted, not full
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0
    assert math.isnan(percentile([], 50))


def _series(throughput: list[float], errors: dict[int, int] | None = None) -> list[dict[str, Any]]:
    errors = errors or {}
    return [
        {"t": t, "full": True, "throughput": v, "errors": errors.get(t, 0)}
        for t, v in enumerate(throughput)
    ]


def test_recovery_time_is_the_first_good_second_after_the_fault() -> None:
    # 100 ops/s, a fault at 2.3 s: degraded in seconds 2 and 3, errors in 4, good from 5
    series = _series([100, 100, 60, 10, 90, 95, 100], {4: 3})
    [rec] = recovery_times(series, [2.3])
    assert rec.baseline == 100
    assert rec.recovered_second == 5
    assert rec.recovery_s == pytest.approx(2.7)


def test_recovery_is_zero_when_the_fault_second_is_already_good() -> None:
    [rec] = recovery_times(_series([100, 100, 99, 100]), [2.0])
    assert rec.recovery_s == 0.0 and rec.recovered_second == 2


def test_recovery_threshold_is_80_percent_of_the_clean_seconds_before() -> None:
    # 79 % is not back; 80 % is
    series = _series([100, 100, 79, 80])
    assert recovery_times(series, [2.0])[0].recovered_second == 3
    # seconds with errors are not part of the baseline
    series = _series([100, 10, 100, 50, 100], {1: 5})
    assert recovery_times(series, [3.0])[0].baseline == 100


def test_a_later_fault_does_not_count_an_earlier_disturbance_as_its_baseline() -> None:
    series = _series([100, 100, 20, 20, 100, 100, 30, 100], {2: 1, 3: 1, 6: 2})
    first, second = recovery_times(series, [2.0, 6.0])
    assert first.recovered_second == 4 and first.recovery_s == 2.0
    assert second.baseline == 100  # seconds 2 and 3 (disturbed) are left out
    assert second.recovered_second == 7 and second.recovery_s == 1.0


def test_no_recovery_before_the_end_is_none_and_no_baseline_still_works() -> None:
    [rec] = recovery_times(_series([100, 100, 0, 0]), [2.0])
    assert rec.recovery_s is None and rec.recovered_second is None
    [rec] = recovery_times(_series([0, 50, 50], {0: 4}), [0.0])
    assert rec.baseline is None and rec.recovered_second == 1  # any error-free progress
    partial = [
        {"t": 0, "full": True, "throughput": 100, "errors": 2},
        {"t": 1, "full": False, "throughput": 100, "errors": 0},
    ]
    assert recovery_times(partial, [0.5])[0].recovery_s is None  # a partial second never counts


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
    assert model.verify("e", b"garbage").verdict == "LOST"
    assert model.verify("f", None).verdict == "UNREADABLE"
    assert model.verify("f", None, missing=True).verdict == "LOST"  # no write deletes a file
    assert model.verify("never-written", b"x").verdict == "UNKNOWN"
    model.acknowledged("d", v3, 2.0)  # a successful write supersedes the failed ones
    assert model.verify("d", v2[:7]).verdict == "LOST"
    lost = model.verify("a", v1)
    assert lost.acked_at == 1.0 and lost.found_size == len(v1) and lost.lost


def test_integrity_summary_and_attribution_to_steps() -> None:
    model = IntegrityModel()
    model.acknowledged("x", b"1", -1.0)
    model.acknowledged("y", b"2", 1.5)
    model.acknowledged("z", b"3", 5.0)
    verdicts = [model.verify("x", b"1"), model.verify("y", b"old"), model.verify("z", b"old")]
    summary = integrity_summary(verdicts)
    assert summary["verdict"] == "LOST"
    assert [v["name"] for v in summary["lost"]] == ["y", "z"]
    assert summary["by_verdict"] == {"LOST": 2, "OK": 1}
    per_step, later = lost_after_steps(verdicts, [1.0, 2.0, 4.0])
    assert per_step == [[], ["y"], []] and later == ["z"]
    assert integrity_summary([model.verify("x", b"1")])["verdict"] == "OK"
    assert integrity_summary([model.verify("x", None)])["verdict"] == "UNVERIFIED"


# ------------------------------------------------------------------------------ files
def test_the_example_experiment_parses() -> None:
    exp = load_experiment(EXAMPLE)
    assert exp.name == "kill-local"
    assert exp.load.clients == 2 and exp.load.duration_s == 7
    assert [s.action for s in exp.faults] == ["set_faults", "clear_faults", "kill"]
    assert exp.faults[0].rules[0]["status"].startswith("STATUS_")
    assert "STATUS_" in exp.faults[0].describe()


def test_daemon_config_gets_a_private_runtime_dir_and_placeholders(tmp_path: Path) -> None:
    exp = load_experiment(EXAMPLE)
    config = daemon_config(exp, tmp_path, {})
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
    ],
)
def test_bad_experiment_files_are_refused(extra: str, message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        parse_experiment(tomllib.loads(MINIMAL + extra))


@pytest.mark.parametrize(
    ("load", "message"),
    [
        ("root = 'relative'", "UNC"),
        ("root = '\\\\\\\\s\\\\d'\nmix = { delete = 1.0 }", "unknown operation"),
        ("root = '\\\\\\\\s\\\\d'\nmix = { read = 0 }", "add up to 0"),
        ("root = '\\\\\\\\s\\\\d'\nclients = 0", "clients must be"),
        ("root = '\\\\\\\\s\\\\d'\nclients = 4\nfiles = { count = 2 }", "one file per client"),
        ("root = '\\\\\\\\s\\\\d'\nduration_s = 'long'", "duration_s must be"),
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
    assert exp.proxies[0].target == ("127.0.0.1", 445)
    assert exp.load.root == r"\\local\data"
    assert exp.faults[0].describe() == "proxy p: reset=True"
    bad = tmp_path / "bad.toml"
    bad.write_text(exp_file.read_text().replace("latency_ms = 5", "latency_ms = -5"))
    with pytest.raises(ExperimentError, match="latency_ms"):
        load_experiment(bad)


def test_summary_text_reports_a_loss_loudly() -> None:
    report = {
        "experiment": {"name": "x", "file": None, "started_at": "now", "elapsed_s": 1.0},
        "ops": {"total": 3, "ok": 2, "errors": 1, "by_kind": {"write": {"ok": 2, "errors": 1}}},
        "errors": {"STATUS_IO_TIMEOUT": 1},
        "faults": [
            {
                "t": 0.5,
                "at": 0.5,
                "what": "SIGKILL flaky",
                "detail": "SIGKILL pid 1",
                "recovery_s": None,
                "lost_files": ["exp-001.bin"],
            }
        ],
        "integrity": {
            "verdict": "LOST",
            "files": 1,
            "writes_acknowledged": 2,
            "by_verdict": {"LOST": 1},
            "lost": [{"name": "exp-001.bin"}],
            "unreadable": [],
        },
    }
    text = summary_text(report)
    assert "!!! DATA LOSS: 1 file(s) lost an acknowledged write: exp-001.bin !!!" in text
    assert "not recovered before the end" in text
    assert "STATUS_IO_TIMEOUT: 1" in text

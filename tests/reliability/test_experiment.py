"""The experiment runner end to end (rdbss/experiment/): a real daemon of its own with a
``faulty`` mini-redirector wrapping ``local``, two load clients, an injected-status window and a
SIGKILL of the faulty process; then the report, the figures, the integrity verdict and the
reproducibility of the planned operations. Also runs the shipped example experiment; the fault
isolation experiment against a real WebDAV server with a control share is in
test_experiment_isolation.py."""

from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from rdbss.experiment import load_experiment, ops_digest, plan_operations
from rdbss.experiment.faults import FaultActions
from rdbss.faultproxy import FaultProxy
from tests.reliability.experiment_runs import ROOT, experiment_cli, run_experiment

EXAMPLE = ROOT / "deploy" / "experiments" / "kill-local.toml"
INJECTED = "STATUS_NETWORK_BUSY"

EXPERIMENT = f"""
[experiment]
name = "short"

[setup.daemon]
request_timeout = 5.0

[[setup.minirdr]]
name = "flaky"
kind = "faulty"
wraps = "local"
seed = 1
[setup.minirdr.options]
server = "flaky"
[setup.minirdr.options.shares]
data = "{{tmp}}/flaky"

[[setup.proxy]]                  # started and stopped by the runner; nothing uses it here
name = "net"
target = "127.0.0.1:9"

[load]
root = '\\\\flaky\\data\\exp'
clients = 2
rate = 100
duration_s = 7
seed = 11
timeout_s = 5.0
mix = {{ stat = 0.3, read = 0.5, write = 0.2 }}
[load.files]
count = 8
size = 2048

[[fault]]
t = 0.5
action = "proxy"
proxy = "net"
settings = {{ latency_ms = 100, blackhole = true }}
duration_s = 0.3

[[fault]]
t = 1.2
action = "set_faults"
minirdr = "flaky"
seed = 5
[[fault.rules]]
routine = "MRxLowIOSubmit"
lowio_op = "READ"
action = "status"
status = "{INJECTED}"

[[fault]]
t = 2.2
action = "clear_faults"
minirdr = "flaky"

[[fault]]
t = 3.2
action = "kill"
minirdr = "flaky"

[[fault]]
t = 4.6
action = "stop"
minirdr = "flaky"

[[fault]]
t = 5.0
action = "cont"
minirdr = "flaky"
"""

REPORT_KEYS = {
    "experiment",
    "config",
    "loads",
    "faults",
    "windows",
    "recoveries",
    "verdict",
    "blast_radius",
    "runner_errors",
    "reproducibility",
    "figures",
}
BIN_KEYS = {"t", "ok", "fail", "info", "p50_ms", "p99_ms", "max_ms", "by_status"}
FIGURES = ("latency", "throughput", "errors", "recovery", "isolation")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def assert_real_figure(path: Path) -> None:
    width, height = png_size(path)
    assert width >= 400 and height >= 200
    assert path.stat().st_size > 8_000  # axes, text and data, not an empty canvas
    import matplotlib.image

    pixels = matplotlib.image.imread(str(path))
    colors = {tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::7].tolist()}
    assert len(colors) > 20


def pid_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    base = tmp_path_factory.mktemp("experiment")
    path = base / "short.toml"
    path.write_text(EXPERIMENT)
    out = base / "out"
    proc = run_experiment(path, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    return path, report, proc.stdout


def test_the_report_has_the_expected_content(short_run: tuple[Path, dict[str, Any], str]) -> None:
    _, report, _ = short_run
    assert set(report) >= REPORT_KEYS
    assert report["experiment"]["name"] == "short"
    assert report["experiment"]["seeds"] == {"main": 11}
    assert report["experiment"]["command"].startswith("rdbss experiment run ")
    assert report["config"]["experiment"]["load"]["clients"] == 2
    assert "[[minirdr]]" in report["config"]["daemon_toml"]
    [main] = report["loads"]
    assert main["model"] == "open" and main["role"] == "main"
    bins = main["bins"]
    assert len(bins) >= 70  # 100 ms bins over 7 s
    assert all(set(b) >= BIN_KEYS for b in bins)
    assert main["ok"] > 200
    assert sum(b["ok"] + b["fail"] + b["info"] for b in bins) == main["ops"]


def test_faults_were_injected_and_recovered_from(
    short_run: tuple[Path, dict[str, Any], str],
) -> None:
    _, report, _ = short_run
    steps = report["faults"]
    actions = ["proxy", "set_faults", "clear_faults", "kill", "stop", "cont"]
    assert [s["action"] for s in steps] == actions
    for step in steps:
        assert step["ok"], step
        assert abs(step["at"] - step["t"]) < 1.0
    assert steps[0]["detail"] == (
        "proxy settings: latency_ms=100, blackhole=True; "
        "then proxy settings back: latency_ms=0.0, blackhole=False"
    )
    assert steps[0]["ended_at"] == pytest.approx(0.8, abs=0.5)
    assert steps[3]["detail"].startswith("SIGKILL pid ")
    # the restarted process was stopped for 0.4 s (less than the 3 s heartbeat limit) and went on
    restarted = steps[4]["detail"].split()[-1]
    assert steps[4]["detail"] == f"SIGSTOP pid {restarted}" != steps[3]["detail"]
    assert steps[5]["detail"] == f"SIGCONT pid {restarted}"
    # windows: set_faults..clear_faults, the kill until the first success, stop..cont
    windows = {w["step"]: w for w in report["windows"]}
    assert windows[1]["start"] == steps[1]["at"] and windows[1]["end"] == steps[2]["at"]
    assert windows[4]["start"] == steps[4]["at"] and windows[4]["end"] == steps[5]["at"]
    assert steps[3]["at"] < windows[3]["end"] < steps[3]["at"] + 3.0
    for rec in report["recoveries"]:
        assert isinstance(rec["first_success_s"], int | float), rec
        assert 0 <= rec["first_success_s"] < 5.0  # a restart included, on a busy machine
    # the window: every read failed with the injected status; the kill: in-flight requests
    # completed at once with STATUS_CONNECTION_DISCONNECTED
    [main] = report["loads"]
    assert main["errors"][INJECTED] > 10
    assert "STATUS_CONNECTION_DISCONNECTED" in main["errors"]
    assert report["runner_errors"] == []
    injected_in = [b["t"] for b in main["bins"] if INJECTED in b["by_status"]]
    # only inside the window, by completion time in 100 ms bins
    assert injected_in and min(injected_in) >= steps[1]["at"] - 0.1
    assert max(injected_in) < steps[2]["at"] + 0.2


def test_no_acknowledged_write_was_lost(short_run: tuple[Path, dict[str, Any], str]) -> None:
    _, report, stdout = short_run
    assert report["verdict"] == "OK"
    integrity = report["loads"][0]["integrity"]
    assert integrity["verdict"] == "OK", integrity
    assert integrity["lost"] == integrity["corrupted"] == 0 and integrity["bad_files"] == []
    assert integrity["files"] == 8
    assert integrity["acknowledged"] > 20
    assert "nothing acknowledged was lost" in stdout


def test_the_figures_and_summary_exist(short_run: tuple[Path, dict[str, Any], str]) -> None:
    path, report, stdout = short_run
    out = path.parent / "out"
    for name in FIGURES:
        assert_real_figure(out / f"{name}.png")
    summary = (out / "summary.txt").read_text()
    assert summary == stdout
    assert INJECTED in summary and "first success after" in summary
    assert (out / "daemon.log").exists()
    columns = ["load", "client", "seq", "kind", "file", "intended", "start", "end", "status"]
    columns += ["latency_ms", "outcome"]
    if (out / "ops.parquet").exists():  # pyarrow is installed
        import pyarrow.parquet

        table = pyarrow.parquet.read_table(out / "ops.parquet")
        assert table.column_names == columns
        assert table.num_rows == report["loads"][0]["ops"]
        assert not (out / "ops.csv").exists()
    else:
        rows = (out / "ops.csv").read_text().splitlines()
        assert rows[0] == ",".join(columns)
        assert len(rows) == report["loads"][0]["ops"] + 1
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES)
    assert "http://" not in html and "https://" not in html  # opens offline


def test_the_runner_stopped_everything_it_started(
    short_run: tuple[Path, dict[str, Any], str],
) -> None:
    _, report, _ = short_run
    pid = report["experiment"]["daemon_pid"]
    assert isinstance(pid, int) and pid_gone(pid)
    killed = int(report["faults"][3]["detail"].split()[-1])
    assert pid_gone(killed)
    assert not Path(report["experiment"]["runtime_dir"]).exists()
    host, port = report["experiment"]["proxies"]["net"].split(":")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=5).close()


def test_the_same_experiment_plans_the_same_operations(
    short_run: tuple[Path, dict[str, Any], str],
) -> None:
    path, report, _ = short_run
    first, second = load_experiment(path), load_experiment(path)
    for entry in report["loads"][0]["clients"]:
        client, n = entry["client"], entry["ops_executed"]
        assert n > 50
        planned = plan_operations(first.load, client, n)
        assert planned == plan_operations(second.load, client, n)
        # what the run executed is exactly the plan's prefix, whatever the timing
        assert entry["ops_sha256"] == entry["plan_prefix_sha256"] == ops_digest(planned)
        assert entry["first_ops"] == [op.key() for op in planned[:10]]
    outputs = [experiment_cli("plan", str(path), "--client", "1").stdout for _ in range(2)]
    assert outputs[0] == outputs[1] and outputs[0].count("\n") == 21


def test_the_shipped_example_runs(tmp_path: Path) -> None:
    proc = run_experiment(EXAMPLE, tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["verdict"] == "OK"
    assert all(s["ok"] for s in report["faults"])
    assert "STATUS_UNEXPECTED_NETWORK_ERROR" in report["loads"][0]["errors"]
    assert [ld["isolation"]["outside"]["errors"] for ld in report["loads"][1:]] == [0]
    for name in FIGURES:
        png_size(tmp_path / "out" / f"{name}.png")


def test_a_bad_experiment_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(EXPERIMENT.replace('action = "kill"', 'action = "explode"'))
    proc = run_experiment(path, tmp_path / "out")
    assert proc.returncode == 2
    assert "action must be one of" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_proxy_step_changes_the_fault_proxy_and_its_duration_undoes_it(tmp_path: Path) -> None:
    """The runner's proxy steps, against a real FaultProxy (no daemon needed)."""
    exp_file = tmp_path / "proxy.toml"
    exp_file.write_text(
        EXPERIMENT.split("[[fault]]")[0].replace(
            "[load]", '[[setup.proxy]]\nname = "p"\ntarget = "127.0.0.1:9"\n\n[load]'
        )
        + '[[fault]]\nt = 1\naction = "proxy"\nproxy = "p"\nduration_s = 0.5\n'
        + "settings = { latency_ms = 50, bandwidth = 1000, reset = true }\n"
    )
    experiment = load_experiment(exp_file)
    proxy = FaultProxy("127.0.0.1", 9, latency_ms=7).start()
    try:
        actions = FaultActions(lambda: None, {"p": proxy}, {})
        step = experiment.faults[0]
        detail = actions.do(None, step)  # type: ignore[arg-type]
        assert detail == "proxy settings: latency_ms=50, bandwidth=1000, reset=True"
        assert proxy.settings.latency_ms == 50 and proxy.settings.bandwidth == 1000
        assert actions.undo(None, step) == (  # type: ignore[arg-type]
            "proxy settings back: latency_ms=7.0, bandwidth=0.0"
        )
        assert proxy.settings.latency_ms == 7 and proxy.settings.bandwidth == 0
    finally:
        proxy.stop()


def test_repeat_derives_seeds_and_compare_puts_two_folders_side_by_side(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    tiny = EXPERIMENT.split("[[fault]]")[0].replace("duration_s = 7", "duration_s = 1.5")
    path.write_text(tiny + '[[fault]]\nt = 0.6\naction = "kill"\nminirdr = "flaky"\n')
    out = tmp_path / "rep"
    proc = run_experiment(path, out, "--repeat", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    repeat = json.loads((out / "repeat.json").read_text())
    assert repeat["runs"] == 2 and repeat["verdict"] == "OK"
    assert repeat["run_folders"] == ["run-1", "run-2"]
    ops = repeat["figures"]["main.ops_ok"]
    assert ops["n"] == 2 and ops["min"] <= ops["median"] <= ops["max"]
    assert repeat["figures"]["main.lost"] == {"median": 0, "min": 0, "max": 0, "n": 2}
    reports = [json.loads((out / f"run-{k}" / "report.json").read_text()) for k in (1, 2)]
    seeds = [r["experiment"]["seeds"]["main"] for r in reports]
    assert seeds[0] == 11 and seeds[1] != 11  # run 1 is the file's own experiment
    assert [r["experiment"]["run"] for r in reports] == [0, 1]
    assert reports[1]["experiment"]["command"].endswith("--repeat 2")
    assert (out / "repeat.txt").read_text().startswith("short: 2 runs, integrity OK")

    compared = experiment_cli(
        "compare", str(out), str(out / "run-2"), "--out", str(tmp_path / "cmp")
    )
    assert compared.returncode == 0, compared.stderr
    lines = compared.stdout.splitlines()
    assert lines[0].split()[:2] == ["figure", "A:"]
    row = next(line for line in lines if line.startswith("main.ops_ok "))
    assert f"{ops['min']:g}..{ops['max']:g}" in row  # A: the repeat's median and spread
    html = (tmp_path / "cmp" / "compare.html").read_text()
    assert html.count("data:image/png;base64,") == 2 * len(FIGURES)

    bad = experiment_cli("compare", str(out), str(tmp_path))
    assert bad.returncode == 2 and "not a report folder" in bad.stderr

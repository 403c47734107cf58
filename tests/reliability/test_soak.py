"""Soak (marked slow; run with: bash scripts/test.sh -m slow): a long load under a random but
seeded fault schedule — injected network and authentication statuses, hangs, dropped
connections, SIGKILL and SIGSTOP/SIGCONT of the mini-redirector — then every file is read back
and checked against the model of acknowledged writes. Nothing acknowledged may be lost, the
daemon must come back after each fault, and the same seed gives the same schedule."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from rdbss.experiment import Runner, load_experiment

SEED = 20261125
DURATION_S = 60.0
STATUSES = [
    "STATUS_IO_TIMEOUT",
    "STATUS_CONNECTION_DISCONNECTED",
    "STATUS_CONNECTION_RESET",
    "STATUS_NETWORK_UNREACHABLE",
    "STATUS_USER_SESSION_DELETED",
    "STATUS_LOGON_FAILURE",
]
ROUTINES = ["MRxCreate", "MRxLowIOSubmit", "MRxQueryFileInfo", "MRxCloseSrvOpen", "*"]


def schedule(seed: int) -> list[str]:
    """The fault steps, as TOML, drawn from ``seed``."""
    rng = random.Random(seed)
    steps: list[str] = []
    t = 3.0
    while t < DURATION_S - 8:
        kind = rng.choice(["rules", "rules", "kill", "freeze"])
        if kind == "rules":
            action = rng.choice(["status", "status", "disconnect", "delay", "hang"])
            rule = [
                f'routine = "{rng.choice(ROUTINES)}"',
                f'action = "{action}"',
                f"probability = {rng.choice([0.05, 0.2, 0.5])}",
            ]
            if action == "status":
                rule.append(f'status = "{rng.choice(STATUSES)}"')
            if action == "delay":
                rule.append(f"delay_ms = {rng.choice([20, 200, 1500])}")
            if action == "hang":
                rule[-1] = "count = 2"
            steps.append(
                f't = {t:.1f}\naction = "set_faults"\nminirdr = "flaky"\n'
                f"seed = {rng.randrange(1000)}\n[[fault.rules]]\n" + "\n".join(rule)
            )
            t += rng.uniform(2, 5)
            steps.append(f't = {t:.1f}\naction = "clear_faults"\nminirdr = "flaky"')
        elif kind == "kill":
            steps.append(f't = {t:.1f}\naction = "kill"\nminirdr = "flaky"')
        else:
            steps.append(f't = {t:.1f}\naction = "stop"\nminirdr = "flaky"')
            t += rng.uniform(0.3, 2.0)
            steps.append(f't = {t:.1f}\naction = "cont"\nminirdr = "flaky"')
        t += rng.uniform(3, 6)
    return steps


def experiment_file(tmp_path: Path, seed: int) -> Path:
    text = (
        f"""[experiment]
name = "soak"

[setup.daemon]
request_timeout = 4.0
connect_timeout = 4.0

[[setup.minirdr]]
name = "flaky"
kind = "faulty"
wraps = "local"
seed = {seed}
[setup.minirdr.options]
server = "flaky"
[setup.minirdr.options.shares]
data = "{{tmp}}/flaky"

[load]
root = '\\\\flaky\\data\\soak'
clients = 3
rate = 200
duration_s = {DURATION_S}
seed = {seed}
timeout_s = 4.0
mix = {{ stat = 0.3, read = 0.4, write = 0.3 }}
[load.files]
count = 24
size = 8192

"""
        + "\n\n".join(f"[[fault]]\n{step}" for step in schedule(seed))
        + "\n"
    )
    path = tmp_path / "soak.toml"
    path.write_text(text)
    return path


def test_the_schedule_repeats_for_a_seed() -> None:
    assert schedule(SEED) == schedule(SEED)
    assert schedule(SEED) != schedule(SEED + 1)
    assert len(schedule(SEED)) >= 8


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_soak_random_faults_lose_nothing_acknowledged(tmp_path: Path) -> None:
    experiment = load_experiment(experiment_file(tmp_path, SEED))
    report: dict[str, Any] = Runner(experiment, tmp_path / "out").run()
    integrity = report["integrity"]
    assert integrity["verdict"] == "OK", integrity
    assert integrity["writes_acknowledged"] > 100
    assert report["runner_errors"] == []
    assert report["ops"]["ok"] > report["ops"]["errors"]  # it kept serving through the faults
    last = report["timeseries"][-3:]
    assert all(s["errors"] == 0 for s in last), last  # and it came back at the end

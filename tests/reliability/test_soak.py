"""Soak (marked slow; run with: bash scripts/test.sh -m slow): a long load under a random but
seeded fault schedule — injected network and authentication statuses, hangs, dropped
connections, SIGKILL and SIGSTOP/SIGCONT of the mini-redirector — then every file is read back
and checked against the model of acknowledged writes. Nothing acknowledged may be lost, the
daemon must come back after each fault, and the same seed gives the same schedule.

And a leak check: the RSS of every daemon process after a warm-up against the same after a
long mixed load (a memory bound, not a time bound)."""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from rdbss import requests as rq
from rdbss.client import Client
from rdbss.experiment import load_experiment
from rdbss.experiment.runner import Runner
from rdbss.wire import Access, CreateDisposition
from tests.daemon import Daemon, rss_bytes, running_daemon, wait_until

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
ROUTINES = [
    "MRxCreate",
    "MRxQueryOpen",
    "MRxLowIOSubmit",
    "MRxQueryFileInfo",
    "MRxCloseSrvOpen",
    "*",
]


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
    report = Runner(experiment, tmp_path / "out").run()
    integrity = report.main.integrity
    assert report.verdict == "OK", integrity
    assert integrity.acknowledged > 100
    assert report.runner_errors == []
    assert report.main.ok > report.main.fail + report.main.info  # it kept serving the faults
    last = report.main.bins[-30:-2]
    assert all(b.errors == 0 for b in last), last  # and it came back at the end


# ----------------------------------------------------------------------------- memory

LEAK_BOUND = 8 << 20  # bytes of RSS growth allowed per process after warm-up
WARM_ROUNDS = 300
ROUNDS = 2000  # ~20 requests each: a leak of a few hundred bytes per request shows


def one_round(c: Client, d: Daemon, k: int) -> None:
    """A bit of everything: single requests, compounds, read-ahead, errors, renames, and
    connections to alias servers that the short idle timeout keeps tearing down."""
    share = d.share
    name = rf"{share}\soak{k % 40}.bin"
    c.write_bytes(name, bytes([k % 251]) * (3000 + k % 5000))
    assert c.stat(name).size == 3000 + k % 5000
    with c.open(name, "rb", buffering=0) as f:
        while f.read(1024):
            pass
    c.stat_many([name, rf"{share}\missing{k}", rf"\\srv{k % 8}\data"])
    h = c.create(name)
    c.read_many(h.fobx, [(0, 500), (500, 500), (9000, 10)])
    c.close_handle(h.fobx)
    c.compound(
        [
            rq.create(
                rf"{share}\chain{k % 7}.txt",
                5000,
                access=Access.GENERIC_WRITE,
                disposition=CreateDisposition.FILE_OVERWRITE_IF,
            ),
            rq.related(rq.write(0, 0, b"chain", 5000)),
            rq.related(rq.close(0, 5000)),
        ]
    )
    with pytest.raises(FileNotFoundError):
        c.read_bytes(rf"{share}\nope{k}")
    if k % 10 == 0:
        c.rename(name, rf"{share}\renamed.bin", replace=True)
        c.listdir(share)
        c.remove(rf"{share}\renamed.bin")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_daemon_memory_stays_bounded_under_long_load() -> None:
    extra = """
[[minirdr]]
name = "aliases"
kind = "local"
server = "srv0"
aliases = ["srv1", "srv2", "srv3", "srv4", "srv5", "srv6", "srv7"]
[minirdr.shares]
data = "{folder}"
"""
    folder = tempfile.mkdtemp(prefix="rdbss-soak-")
    try:
        with running_daemon(extra.format(folder=folder), idle_timeout=1.0) as d:
            with d.client() as c:
                for k in range(WARM_ROUNDS):
                    one_round(c, d, k)
                time.sleep(2.5)  # idle connections scavenged: the steady state includes that
                before = {name: rss_bytes(pid) for name, pid in d.processes().items()}
                for k in range(WARM_ROUNDS, WARM_ROUNDS + ROUNDS):
                    one_round(c, d, k)
                time.sleep(2.5)
                wait_until(lambda: c.status()["pending"] == 0, 10)
                assert c.status()["handles"] == 0
                after = {name: rss_bytes(pid) for name, pid in d.processes().items()}
            assert set(after) == set(before) == {"core", "connmgr", "local", "aliases"}
            growth = {name: after[name] - before[name] for name in after}
            print("RSS growth after warm-up (bytes):", growth)
            assert all(g <= LEAK_BOUND for g in growth.values()), growth
    finally:
        shutil.rmtree(folder, ignore_errors=True)

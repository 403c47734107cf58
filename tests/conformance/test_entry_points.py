"""The public entry point ``python -m rdbss.testing``: it runs the suite against a configured
backend and passes, refuses at once (with the reason, an NtStatus name where there is one) when
the run cannot start, and fails when the mini-redirector breaks the contract."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from rdbss.testing.backend import faulty_config
from rdbss.testing.daemon import Daemon, running_daemon, write_config

#: Deadline of one run of the command (the whole suite against the local folder).
SUITE_DEADLINE_S = 240.0
#: A run that cannot start says so within this (no test runs, no wait for a daemon).
REFUSAL_DEADLINE_S = 20.0


def command(*args: str, timeout: float = SUITE_DEADLINE_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rdbss.testing", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def local_args(d: Daemon) -> list[str]:
    return [
        "--config",
        str(d.config_path),
        "--minirdr",
        "local",
        "--root",
        "//local/data",
        "--host-dir",
        str(d.share_dir),
    ]


@pytest.mark.timeout(SUITE_DEADLINE_S + 30)
def test_the_suite_passes_against_the_local_backend() -> None:
    with running_daemon() as d:
        done = command(*local_args(d), "--", "-q", "-p", "no:xdist")
        # the run worked in a folder of its own under the root
        runs = [p.name for p in d.share_dir.iterdir()]
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
    assert " failed" not in done.stdout
    assert len(runs) == 1 and runs[0].startswith("rdbss-conformance-"), runs


def test_a_daemon_that_does_not_run_is_refused_at_once(tmp_path: Path) -> None:
    config, _ = write_config(tmp_path)
    started = time.monotonic()
    done = command(
        "--config", str(config), "--minirdr", "local", "--root", "//local/data", timeout=60
    )
    took = time.monotonic() - started
    assert done.returncode == 11, done.stderr
    assert "STATUS_REDIRECTOR_NOT_STARTED" in done.stderr
    assert "passed" not in done.stdout and took < REFUSAL_DEADLINE_S


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--config", "/nonexistent/rdbss.toml"], 10, "does not exist"),
        (["--root", "not-a-unc-name"], 10, "is not a UNC name"),
        (["--minirdr", "nosuch"], 10, "configures no mini-redirector 'nosuch'"),
        (["--root", "//local/nosuch"], 13, "STATUS_BAD_NETWORK_NAME"),
        (["--root", "//local/data/missing"], 13, "STATUS_OBJECT_NAME_NOT_FOUND"),
    ],
    ids=["missing-config", "bad-root", "unknown-minirdr", "unknown-share", "missing-folder"],
)
def test_a_run_that_cannot_start_says_why(args: list[str], code: int, says: str) -> None:
    with running_daemon() as d:
        options = dict(zip(local_args(d)[::2], local_args(d)[1::2], strict=True))
        options.update(zip(args[::2], args[1::2], strict=True))
        done = command(*(w for pair in options.items() for w in pair), timeout=60)
    assert done.returncode == code, done.stdout[-2000:] + done.stderr
    assert says in done.stderr
    assert "passed" not in done.stdout


#: A mini-redirector that breaks the contract: the local one, with every READ failing.
FAILING_READS = """
[[minirdr.rules]]
routine = "MRxLowIOSubmit"
lowio_op = "READ"
action = "status"
status = "STATUS_DEVICE_NOT_READY"
"""


def test_a_broken_mini_redirector_fails_the_suite(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    with running_daemon(extra_config=faulty_config(folder, FAILING_READS)) as d:
        done = command(
            "--config",
            str(d.config_path),
            "--minirdr",
            "flaky",
            "--root",
            "//flaky/data",
            "--host-dir",
            str(folder),
            "--",
            "-q",
            "-p",
            "no:xdist",
            "-k",
            "test_write_and_read_at_offsets or test_data_written_directly",
        )
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-2000:]
    assert "2 failed" in done.stdout
    assert "STATUS_DEVICE_NOT_READY" in done.stdout

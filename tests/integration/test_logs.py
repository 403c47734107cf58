"""The daemon's logs as a user reads them: JSON lines (log_format = "json") from every process
on stderr and in the log file, a failed request's share and status as keys, and the file
rotated by size while the processes keep writing to the new one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rdbss.wire import NtStatusError
from tests.daemon import running_daemon, wait_until


def events(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_on_stderr_and_in_a_rotated_file(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "rdbss.log"
    extra = f'log_format = "json"\nlog_file = "{log_file}"\nlog_file_max_mib = 0.0005\n'
    with running_daemon(daemon_extra=extra) as d:
        with d.client() as c, pytest.raises(NtStatusError):
            c.read_bytes(r"\\nosuchserver\data\f.txt")  # a connect failure is logged
        wait_until(lambda: (log_file.parent / "rdbss.log.1").exists(), timeout=15.0)
        wait_until(lambda: any("connect failed" in str(e["msg"]) for e in events(d.log())), 10)
        stderr = events(d.log())  # every line is one JSON object
        with d.client() as c, pytest.raises(NtStatusError):
            c.read_bytes(r"\\othermissing\data\f.txt")
        wait_until(lambda: "othermissing" in log_file.read_text(), timeout=10.0)
    assert {e["proc"] for e in stderr} >= {"supervisor", "core", "local"}
    failed = next(e for e in stderr if "connect failed" in str(e["msg"]))
    assert failed["share"] == r"\\nosuchserver\data" and str(failed["status"]).startswith("STATUS_")
    rotated = events((log_file.parent / "rdbss.log.1").read_text())
    assert all(e["level"] in ("debug", "info", "warning", "error") for e in rotated)
    assert events(log_file.read_text())  # the processes followed the rotation

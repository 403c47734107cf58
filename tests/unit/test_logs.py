"""Log lines: logfmt quoting, JSON lines, journald priorities, the request keys, rotation."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from rdbss.logs import EventFormatter, logfmt_value, rotate


def record(msg: str, level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("rdbss.core", level, __file__, 1, msg, None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_logfmt_quotes_only_what_needs_it() -> None:
    assert logfmt_value("plain") == "plain"
    assert logfmt_value("two words") == '"two words"'
    assert logfmt_value('say "hi"') == '"say \\"hi\\""'
    assert logfmt_value("a=b") == '"a=b"'
    assert logfmt_value("") == '""'
    assert logfmt_value("line\nbreak\\") == '"line\\nbreak\\\\"'


def test_logfmt_line_has_the_request_keys_and_no_repr() -> None:
    rec = record("connect failed: it's down", req="ab12:7", share=r"\\srv\data", status="X")
    line = EventFormatter("core").format(rec)
    assert "\n" not in line
    assert 'msg="connect failed: it\'s down"' in line  # no repr quoting
    assert line.endswith(r'req=ab12:7 share="\\\\srv\\data" status=X')
    assert " level=info proc=core " in line


def test_json_lines_and_tracebacks_stay_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = record("failed", logging.ERROR)
        rec.exc_info = sys.exc_info()
    line = EventFormatter("minirdr", "json").format(rec)
    assert "\n" not in line
    event = json.loads(line)
    assert event["level"] == "error" and event["proc"] == "minirdr" and event["msg"] == "failed"
    assert "ValueError: boom" in event["exc"]


def test_journald_priority_prefix_only_on_the_journal_stream(tmp_path: Path) -> None:
    script = (
        "import logging; from rdbss.logs import setup_logging; setup_logging('core');"
        "logging.getLogger('x').error('bad'); logging.getLogger('x').warning('hm')"
    )
    out = tmp_path / "stderr"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    with out.open("wb") as f:
        info = os.fstat(f.fileno())
        journal = {**env, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        run = [sys.executable, "-c", script]
        subprocess.run(run, stderr=f, env=journal, check=True, timeout=30)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("<3>ts=") and lines[1].startswith("<4>ts=")
    with out.open("wb") as f:  # another stream (a terminal, a file): no prefixes
        other = {**env, "JOURNAL_STREAM": "1:1"}
        subprocess.run([sys.executable, "-c", script], stderr=f, env=other, check=True, timeout=30)
    assert out.read_text().startswith("ts=")


def test_rotate_by_size_keeps_the_newest_backups(tmp_path: Path) -> None:
    log = tmp_path / "rdbss.log"
    assert not rotate(log, 10, 2)  # no file yet
    for text in ("first-----", "second----", "third-----"):
        log.write_text(text)
        assert rotate(log, 10, 2)
    assert not log.exists()
    assert (tmp_path / "rdbss.log.1").read_text() == "third-----"
    assert (tmp_path / "rdbss.log.2").read_text() == "second----"
    assert not (tmp_path / "rdbss.log.3").exists()
    log.write_text("small")
    assert not rotate(log, 10, 2)

"""The rdbss command, run as a user runs it, against a real daemon."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path

from tests.daemon import Daemon


def ok(d: Daemon, *args: str) -> str:
    proc = d.cli(*args)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def test_put_ls_cat_get_mv_rm(daemon: Daemon, tmp_path: Path) -> None:
    local = tmp_path / "report.csv"
    local.write_bytes(b"a,b\n1,2\n" * 1000)
    ok(daemon, "put", "-q", str(local), "//local/data/")
    assert (daemon.share_dir / "report.csv").read_bytes() == local.read_bytes()
    assert "report.csv" in ok(daemon, "ls", "//local/data").split()
    listing = json.loads(ok(daemon, "--json", "ls", "//local/data", "*.csv"))
    assert [e["name"] for e in listing] == ["report.csv"] and listing[0]["size"] == 8000
    assert ok(daemon, "cat", r"\\local\data\report.csv").encode() == local.read_bytes()
    ok(daemon, "mkdir", "-p", "//local/data/x/y")
    ok(daemon, "mv", "//local/data/report.csv", "//local/data/x/y/r.csv")
    out = tmp_path / "back.csv"
    ok(daemon, "get", "-q", "//local/data/x/y/r.csv", str(out))
    assert out.read_bytes() == local.read_bytes()
    info = json.loads(ok(daemon, "--json", "stat", "//local/data/x/y/r.csv"))
    assert info["size"] == 8000 and info["directory"] is False
    # the local share is this user's folder: owner and permission bits from the file itself
    st = (daemon.share_dir / "x" / "y" / "r.csv").stat()
    assert info["owner"] == pwd.getpwuid(st.st_uid).pw_name
    assert info["permissions"] == f"{st.st_mode & 0o7777:04o}"
    ok(daemon, "rm", "-r", "//local/data/x")
    assert not (daemon.share_dir / "x").exists()


def test_errors_print_the_status_and_exit_1(daemon: Daemon) -> None:
    proc = daemon.cli("cat", "//local/data/does-not-exist")
    assert proc.returncode == 1
    assert b"STATUS_OBJECT_NAME_NOT_FOUND (0xC0000034)" in proc.stderr
    proc = daemon.cli("ls", "//local/data/../..")
    assert proc.returncode == 1 and b"STATUS_OBJECT_PATH_SYNTAX_BAD" in proc.stderr
    proc = daemon.cli("rm", "//local/data")
    assert proc.returncode == 1
    proc = daemon.cli("frobnicate")
    assert proc.returncode == 2


def test_use_lists_and_adds_shares(daemon: Daemon, tmp_path: Path) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    (folder / "song.txt").write_text("la")
    ok(daemon, "use", "add", "music", str(folder))
    listing = ok(daemon, "use")
    assert "\\\\local\\music" in listing and str(folder) in listing
    assert ok(daemon, "cat", "//local/music/song.txt") == "la"
    ok(daemon, "use", "rm", "music")
    assert "music" not in json.loads(ok(daemon, "--json", "use"))["shares"]


def test_status_table_and_json(daemon: Daemon) -> None:
    ok(daemon, "ls", "//local/data")
    table = ok(daemon, "status")
    assert "PROCESS" in table and "local" in table and "GOOD" in table
    data = json.loads(ok(daemon, "--json", "daemon", "status"))
    assert data["running"] is True and data["pid"] == daemon.pid
    assert {p["name"] for p in data["peers"]} == {"connmgr", "local"}


def test_second_start_reports_the_running_daemon(daemon: Daemon) -> None:
    out = ok(daemon, "daemon", "start")
    assert f"already running (pid {daemon.pid})" in out
    assert os.path.exists(daemon.runtime_dir / "rdbss.sock")


def test_cp_copies_trees_both_ways(daemon: Daemon, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "a" / "b").mkdir(parents=True)
    (src / "top.txt").write_bytes(b"top")
    (src / "a" / "b" / "deep.bin").write_bytes(os.urandom(5 << 20))
    ok(daemon, "mkdir", "-p", "//local/data/cpdst")
    out = json.loads(ok(daemon, "--json", "cp", "-r", "-q", str(src), "//local/data/cpdst"))
    assert out == {"files": 2, "bytes": 3 + (5 << 20)}
    remote = daemon.share_dir / "cpdst" / "tree"
    assert (remote / "a" / "b" / "deep.bin").read_bytes() == (src / "a/b/deep.bin").read_bytes()
    back = tmp_path / "back"
    ok(daemon, "cp", "-r", "-q", "//local/data/cpdst/tree", str(back))
    assert (back / "top.txt").read_bytes() == b"top"
    assert (back / "a" / "b" / "deep.bin").read_bytes() == (src / "a/b/deep.bin").read_bytes()
    proc = daemon.cli("cp", "//local/data/cpdst", str(tmp_path / "x"))
    assert proc.returncode == 1 and b"use -r" in proc.stderr


def test_bash_completion_completes_commands_and_options(daemon: Daemon) -> None:
    script = ok(daemon, "completion", "bash")
    probe = (
        script
        + """
COMP_WORDS=(rdbss da); COMP_CWORD=1; _rdbss; echo "${COMPREPLY[*]}"
COMP_WORDS=(rdbss daemon st); COMP_CWORD=2; _rdbss; echo "${COMPREPLY[*]}"
"""
    )
    result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=10)
    first, second = result.stdout.strip().splitlines()
    assert first == "daemon"
    assert set(second.split()) >= {"start", "status", "stop"}

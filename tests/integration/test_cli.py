"""The rdbss command, run as a user runs it, against a real daemon."""

from __future__ import annotations

import argparse
import json
import os
import pty
import pwd
import re
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemon import Daemon, write_config


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


def ok_in(d: Daemon, cwd: Path, *args: str) -> str:
    proc = d.cli(*args, cwd=cwd, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def make_tree(root: Path) -> dict[str, bytes]:
    """A nested tree with spaces and non-ASCII names; relative path -> content."""
    files = {
        "top.txt": b"top",
        "my photos/été 2024/plage à midi.jpg": os.urandom(300_000),
        "my photos/été 2024/empty.bin": b"",
        "my photos/日本/東京.txt": "こんにちは".encode(),
        "a/b/c/deep.bin": os.urandom(5 << 20),
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "empty folder").mkdir()
    return files


def tree_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_cp_trees_with_relative_and_absolute_paths_both_ways(
    daemon: Daemon, tmp_path: Path
) -> None:
    files = make_tree(tmp_path / "src tree")
    # relative upload into an existing folder: the tree keeps its name there
    ok(daemon, "mkdir", "-p", "//local/data/up")
    out = json.loads(ok_in(daemon, tmp_path, "--json", "cp", "-r", "src tree", "//local/data/up"))
    assert out["files"] == 5 and out["bytes"] == sum(map(len, files.values()))
    assert out["target"] == r"\\local\data\up\src tree"
    assert tree_of(daemon.share_dir / "up" / "src tree") == files
    assert (daemon.share_dir / "up" / "src tree" / "empty folder").is_dir()
    # relative download to a new name: folders, not names containing backslashes
    ok_in(daemon, tmp_path, "cp", "-r", "-q", "//local/data/up/src tree", "back")
    assert tree_of(tmp_path / "back") == files
    assert not [p for p in (tmp_path / "back").rglob("*") if "\\" in p.name]
    # absolute paths, the other spelling of UNC names, put and get
    ok(daemon, "put", "-r", "-q", str(tmp_path / "src tree"), "\\\\local\\data\\abs")
    assert tree_of(daemon.share_dir / "abs") == files
    ok(daemon, "get", "-r", "-q", "//local/data/abs", str(tmp_path / "abs back"))
    assert tree_of(tmp_path / "abs back") == files
    # a folder without -r: a named status, exit 1
    proc = daemon.cli("cp", "//local/data/up", str(tmp_path / "x"))
    assert proc.returncode == 1 and b"STATUS_FILE_IS_A_DIRECTORY" in proc.stderr
    assert b"use -r" in proc.stderr


def test_put_get_single_files_relative(daemon: Daemon, tmp_path: Path) -> None:
    (tmp_path / "notes ü.txt").write_text("héllo")
    ok_in(daemon, tmp_path, "put", "-q", "notes ü.txt", "//local/data/")
    assert (daemon.share_dir / "notes ü.txt").read_text() == "héllo"
    work = tmp_path / "w"
    work.mkdir()
    ok_in(daemon, work, "get", "-q", "//local/data/notes ü.txt")  # into the working directory
    assert (work / "notes ü.txt").read_text() == "héllo"
    ok_in(daemon, work, "get", "-q", "//local/data/notes ü.txt", "renamed.txt")
    assert (work / "renamed.txt").read_text() == "héllo"
    assert sorted(p.name for p in work.iterdir()) == ["notes ü.txt", "renamed.txt"]  # no leftovers
    proc = daemon.cli("put", "notes ü.txt", "elsewhere", cwd=tmp_path)
    assert proc.returncode == 2 and b"not //server/share" in proc.stderr


def _on_a_terminal(d: Daemon, *args: str, cwd: Path) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; the exit code and all it drew."""
    leader, follower = pty.openpty()
    env = dict(os.environ, COLUMNS="160", TERM="xterm")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rdbss.cli", "--config", str(d.config_path), *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, b"".join(chunks).decode(errors="replace")


def test_progress_on_a_terminal_and_silence_otherwise(daemon: Daemon, tmp_path: Path) -> None:
    make_tree(tmp_path / "tree")
    code, drawn = _on_a_terminal(daemon, "cp", "-r", "tree", "//local/data/prog", cwd=tmp_path)
    assert code == 0, drawn
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)
    assert "5/5 files" in plain  # the file count of the tree
    assert "5.3/5.3 MiB" in plain  # bytes done of the total
    assert re.search(r"\d+(\.\d+)? [KMG]?i?B/s", plain)  # the rate
    assert re.search(r"\d:\d\d:\d\d", plain)  # the time left
    # the same copy through pipes: no progress, only the summary line; --quiet: nothing
    proc = daemon.cli("cp", "-r", "tree", "//local/data/prog2", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == b""
    assert proc.stdout.decode().startswith("5 files, 5.3 MiB")
    proc = daemon.cli("put", "-r", "--quiet", "tree", "//local/data/prog3", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == b"" and proc.stderr == b""


def test_json_anywhere_and_errors_as_json(daemon: Daemon, tmp_path: Path) -> None:
    (daemon.share_dir / "j.txt").write_text("j")
    before = json.loads(ok(daemon, "--json", "ls", "//local/data", "j*"))
    after = json.loads(ok(daemon, "ls", "//local/data", "j*", "--json"))
    assert before == after and [e["name"] for e in after] == ["j.txt"]
    proc = daemon.cli("stat", "//local/data/missing", "--json")
    assert proc.returncode == 1 and proc.stdout == b""
    assert json.loads(proc.stderr) == {
        "status": "STATUS_OBJECT_NAME_NOT_FOUND",
        "code": 0xC0000034,
        "message": "\\missing not found",
    }
    proc = daemon.cli("frobnicate", "--json")
    error = json.loads(proc.stderr)
    assert proc.returncode == 2 and error["status"] == "STATUS_INVALID_PARAMETER"
    assert "frobnicate" in error["message"]
    proc = daemon.cli("put", "--json", str(tmp_path / "nothing-here"), "//local/data/")
    error = json.loads(proc.stderr)
    assert proc.returncode == 1 and error["status"] == "STATUS_OBJECT_NAME_NOT_FOUND"
    proc = daemon.cli("--version")
    assert proc.returncode == 0 and re.match(rb"rdbss \S+", proc.stdout)


def test_every_command_has_a_purpose_and_an_example(daemon: Daemon) -> None:
    top = ok(daemon, "--help")
    assert "exit codes:" in top and "3  daemon status" in top
    listed = dict(re.findall(r"^    (\w[\w-]*)\s{2,}(\S.*)$", top, re.MULTILINE))
    assert {"ls", "cp", "put", "get", "stat", "daemon", "completion"} <= set(listed)
    assert "example" in ok(daemon, "daemon", "status", "--help")
    # every command and daemon subcommand, as --help prints it (without a process each)
    from rdbss.cli.parser import build_parser

    def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    commands = subcommands(build_parser())
    everything = {
        **commands,
        **{f"daemon {k}": v for k, v in subcommands(commands["daemon"]).items()},
    }
    assert set(listed) <= set(everything)
    for name, parser in everything.items():
        text = parser.format_help()
        assert re.search(r"^examples?:\n  rdbss ", text, re.MULTILINE), name
        assert parser.description and "\n" not in parser.description.strip(), name


def test_stat_names_attributes_and_shows_times(daemon: Daemon) -> None:
    path = daemon.share_dir / ".ro.txt"
    path.write_text("r")
    path.chmod(0o444)
    os.utime(path, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    try:
        text = ok(daemon, "stat", "//local/data/.ro.txt")
        data = json.loads(ok(daemon, "stat", "//local/data/.ro.txt", "--json"))
    finally:
        path.chmod(0o644)
    assert re.search(r"attributes: (READONLY\|HIDDEN|HIDDEN\|READONLY)$", text, re.MULTILINE)
    assert re.search(
        r"last_write_time: 2023-11-1[45] \d\d:\d\d:\d\d\.123456789 [+-]\d{4}$", text, re.MULTILINE
    )
    assert data["attributes"] == 0x3 and data["last_write_time"] == 1_700_000_000_123_456_789


def test_ls_server_lists_its_shares(daemon: Daemon, tmp_path: Path) -> None:
    assert ok(daemon, "ls", "//local").split() == ["data/"]
    (tmp_path / "music").mkdir()
    ok(daemon, "use", "add", "music", str(tmp_path / "music"))
    try:
        shares = json.loads(ok(daemon, "ls", "\\\\LOCAL", "--json"))
        assert [(s["name"], s["kind"]) for s in shares] == [("data", "local"), ("music", "local")]
        assert "music" in ok(daemon, "ls", "-l", "//local/")
    finally:
        ok(daemon, "use", "rm", "music")
    proc = daemon.cli("ls", "//nosuchserver", "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stderr)["status"] == "STATUS_BAD_NETWORK_PATH"


def test_exit_codes(daemon: Daemon, tmp_path: Path) -> None:
    config, _ = write_config(tmp_path / "stopped")  # a daemon that was never started
    base = [sys.executable, "-m", "rdbss.cli", "--config", str(config)]
    proc = subprocess.run([*base, "daemon", "status"], capture_output=True, timeout=30)
    assert proc.returncode == 3
    proc = subprocess.run([*base, "--json", "ls", "//local/data"], capture_output=True, timeout=30)
    assert proc.returncode == 1
    assert json.loads(proc.stderr)["status"] == "STATUS_REDIRECTOR_NOT_STARTED"
    broken = tmp_path / "broken.toml"
    broken.write_text("[daemon\n")
    proc = subprocess.run(
        [sys.executable, "-m", "rdbss.cli", "--config", str(broken), "ls", "//local/data"],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 2 and b"configuration" in proc.stderr
    assert daemon.cli("mkdir", "//local/data/exit-ok").returncode == 0


@pytest.fixture
def rdbss_on_path(daemon: Daemon, tmp_path: Path) -> dict[str, str]:
    """An ``rdbss`` command on PATH for this daemon, as a shell's completion calls it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "rdbss"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m rdbss.cli "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        RDBSS_CONFIG=str(daemon.config_path),
        PYTHONPATH=os.pathsep.join(sys.path),
    )


def _bash_complete(env: dict[str, str], line: str) -> list[str]:
    """What bash offers for ``line`` (cursor at its end) with `rdbss completion bash` loaded."""
    words = line.split(" ")
    probe = (
        'eval "$(rdbss completion bash)"\n'
        f"COMP_LINE={line!r}; COMP_POINT={len(line)}; COMP_CWORD={len(words) - 1}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        '_python_argcomplete rdbss "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "-c", probe], capture_output=True, text=True, timeout=30, env=env
    )
    assert result.returncode == 0, result.stderr
    return [w.rstrip(" ") for w in result.stdout.splitlines() if w]  # one match: "word "


def test_bash_completion_of_commands_and_remote_paths(
    daemon: Daemon, rdbss_on_path: dict[str, str]
) -> None:
    (daemon.share_dir / "comp dir").mkdir(exist_ok=True)
    (daemon.share_dir / "comp.txt").write_text("c")
    assert _bash_complete(rdbss_on_path, "rdbss da") == ["daemon"]
    assert set(_bash_complete(rdbss_on_path, "rdbss daemon st")) >= {"start", "status", "stop"}
    assert _bash_complete(rdbss_on_path, "rdbss ls //loc") == ["//local/"]
    assert _bash_complete(rdbss_on_path, "rdbss ls //local/da") == ["//local/data/"]
    offered = _bash_complete(rdbss_on_path, "rdbss cat //local/data/comp")
    assert sorted(offered) == sorted(["//local/data/comp\\ dir/", "//local/data/comp.txt"])


def test_completion_hooks_for_zsh_and_fish(daemon: Daemon, rdbss_on_path: dict[str, str]) -> None:
    zsh = ok(daemon, "completion", "zsh")
    fish = ok(daemon, "completion", "fish")
    assert zsh.startswith("#compdef rdbss") and "complete --command rdbss" in fish
    # what both hooks run: rdbss itself in argcomplete's protocol, answers in a file
    answers = Path(daemon.base / "answers")
    line = "rdbss get //local/data/"
    env = dict(
        rdbss_on_path,
        _ARGCOMPLETE="1",
        _ARGCOMPLETE_SHELL="fish",
        _ARGCOMPLETE_STDOUT_FILENAME=str(answers),
        COMP_LINE=line,
        COMP_POINT=str(len(line)),
    )
    (daemon.share_dir / "fishy.txt").write_text("f")
    proc = subprocess.run(["rdbss"], env=env, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "//local/data/fishy.txt" in re.split(r"[\n\v]", answers.read_text())

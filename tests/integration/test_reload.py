"""Configuration reload (SIGHUP / rdbss daemon reload): added mini-redirectors start, removed
ones stop, changed ones restart, and the unchanged ones keep running with their connections."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.daemon import Daemon, running_daemon, wait_until

EXTRA = """
[[minirdr]]
name = "extra"
kind = "local"
server = "extra"
[minirdr.shares]
data = "{folder}"
"""


def peers(d: Daemon) -> dict[str, int]:
    with d.client() as c:
        return {p["name"]: p["pid"] for p in c.status()["peers"]}


def test_reload_applies_only_what_changed(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for folder, text in ((one, "one"), (two, "two")):
        folder.mkdir()
        (folder / "f.txt").write_text(text)
    with running_daemon() as d:
        local_pid = peers(d)["local"]
        with d.client() as c:
            c.write_bytes(d.share + r"\keep.txt", b"kept")
            handle = c.create(d.share + r"\keep.txt")  # an open handle on the unchanged one

            original = d.config_path.read_text()
            d.config_path.write_text(original + EXTRA.format(folder=one))
            assert d.cli("daemon", "reload").returncode == 0
            wait_until(lambda: "extra" in peers(d), timeout=15.0)
            assert c.read_bytes(r"\\extra\data\f.txt") == b"one"
            first = peers(d)["extra"]

            d.config_path.write_text(original + EXTRA.format(folder=two))  # changed
            assert d.cli("daemon", "reload").returncode == 0
            wait_until(lambda: peers(d).get("extra") not in (None, first), timeout=15.0)
            assert c.read_bytes(r"\\extra\data\f.txt") == b"two"

            d.config_path.write_text(original)  # removed
            assert d.cli("daemon", "reload").returncode == 0
            wait_until(lambda: "extra" not in peers(d), timeout=15.0)

            d.config_path.write_text("this is not toml [")  # refused: keeps running
            bad = d.cli("daemon", "reload")  # the CLI itself refuses to read it...
            assert bad.returncode == 2 and b"not valid TOML" in bad.stderr
            os.kill(d.pid, signal.SIGHUP)  # ...and a SIGHUP (systemd's ExecReload) is survived
            wait_until(lambda: "configuration refused" in d.log(), timeout=15.0)
            assert peers(d)["local"] == local_pid  # never restarted
            assert c.read_handle(handle.fobx, 0, 4) == b"kept"  # the handle never noticed
            c.close_handle(handle.fobx)
            log = d.log()
    assert "configuration refused, keeping the running one" in log

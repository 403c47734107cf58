"""Configuration reload (SIGHUP / rdbss daemon reload): added mini-redirectors start, removed
ones stop, changed ones restart, and the unchanged ones keep running with their connections."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from rdbss.wire import NtStatus, NtStatusError
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


# an option the local mini-redirector rejects, and a mini-redirector added in the same file
BAD_OPTION = EXTRA.replace('server = "extra"', 'server = "extra"\nnotify_interval = -1') + (
    EXTRA.replace("extra", "added")
)


def restarts(d: Daemon) -> dict[str, int]:
    status = json.loads(d.cli("--json", "daemon", "status").stdout)
    return {p["name"]: p["restarts"] for p in status["processes"]}


def test_a_refused_reload_changes_nothing_and_a_reload_is_not_a_restart(tmp_path: Path) -> None:
    one = tmp_path / "one"
    one.mkdir()
    (one / "f.txt").write_text("one")
    with running_daemon(extra_config=EXTRA.format(folder=one)) as d, d.client() as c:
        before = peers(d)
        original = d.config_path.read_text()
        # one mini-redirector's option is rejected: the whole new file is refused, the
        # running children keep their old configuration and the added one does not start
        d.config_path.write_text(
            original.split('[[minirdr]]\nname = "extra"')[0] + BAD_OPTION.format(folder=one)
        )
        refused = d.cli("daemon", "reload")
        assert refused.returncode == 2, refused
        assert b"minirdr[1] (extra).notify_interval" in refused.stderr
        os.kill(d.pid, signal.SIGHUP)  # systemd's ExecReload: the answer is in reload.json
        wait_until(lambda: (d.runtime_dir / "reload.json").exists(), timeout=10.0)
        answer = json.loads((d.runtime_dir / "reload.json").read_text())
        assert answer["ok"] is False and "notify_interval" in answer["message"]
        assert peers(d) == before  # nothing restarted, nothing added
        assert c.read_bytes(r"\\extra\data\f.txt") == b"one"

        # a share that failed is in back-off ("failed recently; not retried yet")...
        for _ in range(2):
            with pytest.raises(NtStatusError) as failed:
                c.read_bytes(r"\\later\data\f.txt")
            assert failed.value.status == NtStatus.STATUS_BAD_NETWORK_PATH
        # ...a reload that adds who serves it clears that at once, and a changed
        # mini-redirector restarted by a reload does not count as a restart
        changed = EXTRA.format(folder=one).replace(
            'server = "extra"', 'server = "extra"\naliases = ["later"]'
        )
        d.config_path.write_text(original.split('[[minirdr]]\nname = "extra"')[0] + changed)
        applied = d.cli("daemon", "reload")
        assert applied.returncode == 0 and b"restarted extra" in applied.stdout, applied
        wait_until(lambda: peers(d).get("extra") not in (None, before["extra"]), timeout=15.0)
        stale = [x for x in c.status()["connections"] if x["condition"] == "BAD"]
        assert stale == []  # the failure and its back-off are gone with the reload
        assert c.read_bytes(r"\\later\data\f.txt") == b"one"
        assert restarts(d) == {name: 0 for name in restarts(d)}
